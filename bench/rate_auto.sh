#!/usr/bin/env bash
# `lsim send --rate auto` on the namespace testbed (issue 7), as root.
#
# 1. One sender, three receivers on one bridge; an 11 Mbit/s token bucket on
#    the sender's link (its radio), 5 % random loss at every receiver. An
#    8 MiB file with --rate auto (ceiling 100 Mbit/s), then with a fixed
#    --rate 10.5 (set by hand near the link) as the reference. Target: a
#    goodput of at least 90 % of the link's payload rate × (1 − loss).
# 2. Two senders in region 0, two receivers in region 1, the 11 Mbit/s token
#    bucket on region 0's link to the router: both senders' traffic waits in
#    that one queue. Each sends an 8 MiB file on its own group, both with
#    --rate auto; each receiver host runs one receiver per group. Target: the
#    two goodputs within 20 % of each other.
#
# Every receiver's copy is checked against the file's SHA-256.
#
#   sudo bench/rate_auto.sh            # CARGO_TARGET_DIR is honoured
#   RUNS=3 SIZE_MIB=8 sudo -E bench/rate_auto.sh
set -euo pipefail

cd "$(dirname "$0")/.."
RUNS=${RUNS:-1}
SIZE_MIB=${SIZE_MIB:-8}
LOSS=5
LINK_MBIT=11
TARGET_DIR=${CARGO_TARGET_DIR:-target}
NAME=ra

cargo build --release -q -p lsim-tools -p lsim-netsim
LSIM=$(realpath "$TARGET_DIR/release/lsim")
NETSIM=$(realpath "$TARGET_DIR/release/netsim")

WORK=$(mktemp -d /tmp/rate_auto.XXXXXX)
cleanup() {
    "$NETSIM" testbed down --name "$NAME" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

head -c $((SIZE_MIB << 20)) /dev/urandom >"$WORK/file"
SUM=$(sha256sum "$WORK/file" | cut -d' ' -f1)
"$LSIM" keygen --out "$WORK/key" >/dev/null

# The payload share of the link: a data packet is 22 + 25 bytes of headers,
# 1400 of symbol and a 16-byte tag, plus 28 of IP and UDP on the wire
# (the token bucket counts the Ethernet header too: 14 more).
TARGET_MBPS=$(python3 -c "p=1400/(22+25+1400+16+28+14); print(f'{$LINK_MBIT*p*(1-$LOSS/100):.3f}')")
echo "link ${LINK_MBIT} Mbit/s, ${LOSS}% loss: payload rate after loss ${TARGET_MBPS} Mbit/s (90%: $(python3 -c "print(f'{0.9*$TARGET_MBPS:.2f}')"))"

tb() { "$NETSIM" testbed "$@" --name "$NAME"; }
in_ns() { local host=$1; shift; "$NETSIM" testbed exec --name "$NAME" "$host" -- "$@"; }

# check DIR...: every receiver's copy is the file.
check() {
    local bad=0
    for d in "$@"; do
        if [ "$(sha256sum "$d/file" 2>/dev/null | cut -d' ' -f1)" != "$SUM" ]; then
            echo "  MISMATCH or missing: $d/file"
            bad=1
        fi
    done
    return $bad
}

# single RATE LABEL: one sender (r0h0) to three receivers (r0h1..3).
single() {
    local rate=$1 label=$2 dirs=() pids=()
    for h in 1 2 3; do
        local d="$WORK/$label-r$h"
        mkdir -p "$d"
        in_ns "r0h$h" "$LSIM" recv --once --json --idle-timeout 30 --group 239.7.0.1:5000 --iface "10.1.0.$((h + 1))" \
            --key-file "$WORK/key" --dir "$d" >"$d.json" 2>"$d.err" &
        pids+=($!)
        dirs+=("$d")
    done
    sleep 0.5
    local t0 t1
    t0=$(date +%s.%N)
    in_ns r0h0 "$LSIM" send --rate "$rate" --max-rate 100 --json --no-loopback --linger 2 --group 239.7.0.1:5000 \
        --iface 10.1.0.1 --key-file "$WORK/key" "$WORK/file" >"$WORK/$label-send.json" 2>"$WORK/$label-send.err" &
    local sender=$! ends=""
    for p in "${pids[@]}"; do
        wait "$p" || true
        ends="$ends $(date +%s.%N)"
    done
    t1=$(date +%s.%N)
    wait "$sender" || true
    local ok=ok
    check "${dirs[@]}" || ok=FAILED
    python3 - "$t0" "$t1" "$SIZE_MIB" "$TARGET_MBPS" "$label" "$ok" "$WORK/$label-send.json" "$ends" "${dirs[@]/%/.json}" <<'EOF'
import json, sys
t0, t1, mib, target, label, ok, sj = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7]
receivers = []
for path in sys.argv[9:]:
    try:
        receivers.append(json.load(open(path)))
    except Exception:
        pass
ends = sorted(float(e) - t0 for e in sys.argv[8].split())
g = mib * 8 * 1048576 / (t1 - t0) / 1e6
try:
    s = json.load(open(sj))
except Exception:
    s = {}
# From the sender's first packet (not the process start) to the last receiver's verified copy.
if "started_unix_s" in s:
    first = s["started_unix_s"]
    g = mib * 8 * 1048576 / (max(float(e) for e in sys.argv[8].split()) - first) / 1e6
    print(f"  {label:<10} first packet to every receiver's exit:  {g:5.2f} Mbit/s = {100 * g / target:5.1f}%")
    # When each receiver had verified and renamed its copy (its own clock, the same machine's).
    verified = [f["verified_unix_s"] for r in receivers for f in r.get("files", []) if "verified_unix_s" in f]
    if len(verified) == len(sys.argv[9:]) and verified:
        gv = mib * 8 * 1048576 / (max(verified) - first) / 1e6
        print(f"  {label:<10} first packet to every copy verified:  {gv:5.2f} Mbit/s = {100 * gv / target:5.1f}%"
              f"  (receivers exited {max(float(e) for e in sys.argv[8].split()) - max(verified):.2f} s later)")
extra = " ".join(f"{k}={s[k]:.2f}" if isinstance(s[k], float) else f"{k}={s[k]}" for k in ("final_rate_mbps", "goodput_mbps", "wire_per_byte", "grtt_ms", "repair_packets", "nacks_received") if k in s)
print(f"  {label:<10} {t1 - t0:6.2f} s  goodput {g:5.2f} Mbit/s = {100 * g / target:5.1f}% of payload rate after loss  [{ok}] "
      f"receivers done at {' '.join(f'{e:.2f}' for e in ends)} s; sender: {extra}")
if "goodput_mbps" in s:
    print(f"  {'':<10} sender's own goodput (start of sending to idle) {s['goodput_mbps']:5.2f} Mbit/s = {100 * s['goodput_mbps'] / target:5.1f}%")
EOF
}

# pair: two senders (r0h0, r0h1) through link0 to two receivers (r1h0, r1h1), one group each.
pair() {
    local label=$1 dirs=() pids=() t0 s
    for s in 0 1; do
        for h in 0 1; do
            local d="$WORK/$label-s$s-r$h"
            mkdir -p "$d"
            in_ns "r1h$h" "$LSIM" recv --once --json --idle-timeout 30 --ttl 4 --group "239.7.1.$s:$((5100 + 2 * s))" \
                --iface "10.2.0.$((h + 1))" --key-file "$WORK/key" --dir "$d" >"$d.json" 2>"$d.err" &
            pids+=("$s:$!")
            dirs+=("$d")
        done
    done
    sleep 0.5
    t0=$(date +%s.%N)
    for s in 0 1; do
        in_ns "r0h$s" "$LSIM" send --rate auto --max-rate 100 --ttl 4 --json --no-loopback --linger 2 \
            --group "239.7.1.$s:$((5100 + 2 * s))" --iface "10.1.0.$((s + 1))" --key-file "$WORK/key" "$WORK/file" \
            >"$WORK/$label-send$s.json" 2>"$WORK/$label-send$s.err" &
        pids+=("S:$!")
    done
    # The time each sender's last receiver finished.
    local end0=0 end1=0
    for e in "${pids[@]}"; do
        local who=${e%%:*} pid=${e#*:}
        wait "$pid" || true
        local now
        now=$(date +%s.%N)
        case $who in
            0) end0=$now ;;
            1) end1=$now ;;
        esac
    done
    local ok=ok
    check "${dirs[@]}" || ok=FAILED
    python3 - "$t0" "$end0" "$end1" "$SIZE_MIB" "$TARGET_MBPS" "$label" "$ok" "$WORK/$label-send0.json" "$WORK/$label-send1.json" <<'EOF'
import json, sys
t0, e0, e1, mib, target, label, ok = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6], sys.argv[7]
g = [mib * 8 * 1048576 / (e - t0) / 1e6 for e in (e0, e1)]
rates = []
for sj in sys.argv[8:10]:
    try:
        rates.append(json.load(open(sj)).get("final_rate_mbps"))
    except Exception:
        rates.append(None)
split = max(g) / min(g)
print(f"  {label:<10} sender A {g[0]:5.2f}, sender B {g[1]:5.2f} Mbit/s (A/B done at {e0 - t0:.2f}/{e1 - t0:.2f} s): "
      f"ratio {split:.2f} ({'within' if split <= 1.2 else 'NOT within'} 20%), together {sum(g):5.2f} = "
      f"{100 * sum(g) / target:.1f}% [{ok}] final rates {rates}")
EOF
}

for run in $(seq 1 "$RUNS"); do
    echo "run $run: one sender, three receivers, ${LINK_MBIT} Mbit/s tbf on the sender, ${LOSS}% loss at each receiver"
    tb down >/dev/null 2>&1 || true
    tb up --regions 1 --hosts 4 >/dev/null
    tb rate r0h0 "${LINK_MBIT}mbit" >/dev/null
    for h in 1 2 3; do tb loss "r0h$h" $LOSS >/dev/null; done
    single auto "auto-$run"
    single 10.5 "fixed-$run"
    tb down >/dev/null

    echo "run $run: two senders (region 0) through one ${LINK_MBIT} Mbit/s link to two receivers (region 1), ${LOSS}% loss"
    tb up --regions 2 --hosts 2 >/dev/null
    tb rate link0 "${LINK_MBIT}mbit" >/dev/null
    for h in 0 1; do tb loss "r1h$h" $LOSS >/dev/null; done
    pair "pair-$run"
    tb down >/dev/null
done
