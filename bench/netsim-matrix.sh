#!/usr/bin/env bash
# The transport in the simulator: a 16 MiB file on an 11 Mbit/s shared medium
# to N receivers at several losses, plus REFERENCE.md's N = 16 efficiency
# columns. Prints a Markdown table (one simulation per row) for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p lsim-netsim
netsim=target/release/netsim

row() { # label, scenario, overrides...
  local label=$1 file=$2; shift 2
  local args=()
  for o in "$@"; do args+=(--set "$o"); done
  "$netsim" run "netsim/scenarios/$file.toml" --json "${args[@]}" | python3 -c '
import json, sys
r = json.load(sys.stdin)
cols = [sys.argv[1], r["delivered_all"], "%.3f" % r["repair_per_source"], "%.2f" % r["nacks_per_repaired_block"],
        "%.3f" % r["medium_per_object_byte"], "%.2f" % r["completion_s"], "%.2f" % r["goodput_mbps"], "%.1f" % r["wall_s"]]
print("| " + " | ".join(str(c) for c in cols) + " |")
' "$label"
}

echo "| case | all verified | repair/source | NACKs/repaired block | medium bytes/object byte | completion (virtual s) | goodput (Mbit/s) | wall s |"
echo "|---|---|---|---|---|---|---|---|"
for n in 1 3 16 100; do
  for p in 0 0.05 0.2 0.5; do
    if [ "$p" = 0 ]; then row "N=$n, no loss" file-16mib receivers=$n loss.model=none
    else row "N=$n, p=$p" file-16mib receivers=$n loss.model=bernoulli loss.p=$p; fi
  done
  row "N=$n, bursty 10%/8" bursty receivers=$n
done
for p in 0.05 0.10 0.20; do
  row "efficiency N=16, p=$p, K=64" efficiency-n16 loss.p=$p
done
row "implosion N=100, p=0.10" implosion-n100
row "1000 chats, N=16, p=0.05" chat-1000
row "1000 chats, N=100, p=0.20" chat-1000 receivers=100 loss.p=0.2
