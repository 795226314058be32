#!/usr/bin/env bash
# The original LSIM's Table 4.2 (file transfer times over 802.11b ad hoc)
# beside lsim's transport in the simulator: netsim/scenarios/table42.toml at
# the paper's four file sizes (KB = 1024 bytes). Prints a Markdown table.
# NETSIM=path/to/netsim skips the build.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${NETSIM:-}" ]; then
  cargo build --release -q -p lsim-netsim
  NETSIM="${CARGO_TARGET_DIR:-target}/release/netsim"
fi

echo "| size | original (s) | lsim netsim (s) | speed-up | all verified |"
echo "|---|---|---|---|---|"
for row in "8.5 8704 35.30247" "25 25600 105.98605" "60 61440 305.93453" "195 199680 1007.94938"; do
  read -r kb bytes original <<<"$row"
  # netsim exits 1 when not every receiver verified the file; the table says so.
  "$NETSIM" run netsim/scenarios/table42.toml --json --set "workload.file_bytes=$bytes" | python3 -c '
import json, sys
r = json.load(sys.stdin)
kb, original = sys.argv[1], float(sys.argv[2])
t = r["completion_s"]
print("| %s KB | %.2f | %.3f | %.0fx | %s |" % (kb, original, t, original / max(t, 1e-9), r["delivered_all"]))
' "$kb" "$original" || true
done
