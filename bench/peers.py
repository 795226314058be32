#!/usr/bin/env python3
"""Side by side on one emulated network: lsim against uftp and udpcast.

One sender and three receivers in network namespaces on a bridge that floods
multicast like a radio; per-receiver random loss with nftables; optionally a
token bucket on the sender's link. The same file goes to all three receivers
with each tool; every receiver's copy is checked (uftp exits 0 even when a
receiver missed the file). Reports wall time until the last receiver holds a
verified copy, goodput, sender wire bytes / file size (the sender interface's
tx counter), feedback bytes (the receivers' tx counters) and failures.

Run as root from the repository root. It installs what it lacks from
Debian's packages (uftp, udpcast, nftables, iproute2) and builds lsim in
release (into $CARGO_TARGET_DIR if set, else target/):

    sudo python3 bench/peers.py --size-mib 64 --loss 0 5 20 --tools null lsim uftp --repeat 2
    sudo python3 bench/peers.py --size-mib 8 --loss 5 --rate-mbit 11 --tools lsim uftp
    sudo python3 bench/peers.py --size-mib 64 --loss 0 --lsim-rate 600 --lsim-arg=--block-symbols=2048

`null` is the lab's ceiling, not a tool: datagrams sent and counted as fast
as the kernel goes (transport/examples/blast.rs), no seal, no repair, no
file; its last column counts receivers that got every datagram.

lsim runs as a user runs it, with no flags beyond the group, the key file
and the file (its sender adapts its rate and block size, and loops its
multicast back only when something on its host listens); --lsim-rate fixes
its --rate and --lsim-arg passes more `lsim send` arguments, for
comparisons. uftp gets -R --rate-mbit (unlimited, -R -1,
without one).
udpcast gets a named rendezvous group (its all-hosts default does not reach
receivers in other namespaces) and every udpcast process runs under
`timeout -k`: with loss it can hang in its handshake, which shows as a row
with 0/3 after the timeout.
"""
import argparse, hashlib, json, os, shutil, subprocess, sys, tempfile, time

P = f"peer{os.getpid() % 10000}"
HOSTS = ["s", "r0", "r1", "r2"]
GROUP, PORT = "239.214.0.1", 47100
# udpcast's default rendezvous (224.0.0.1, all-hosts) does not reach udp-receiver between namespaces: name one.
UDPCAST_RDV = "239.214.0.4"
# udpcast can hang when a handshake packet is lost (and can ignore SIGTERM): every process runs under timeout -k.
UDPCAST_TIMEOUT = 180
# Extra `lsim send` arguments (--lsim-arg).
LSIM_SEND_ARGS = []
STATS_DIR = None  # --stats: where each lsim run's --json statistics go


PEERS = {"uftp": "uftp", "uftpd": "uftp", "udp-sender": "udpcast", "udp-receiver": "udpcast", "nft": "nftables",
         "ip": "iproute2", "tc": "iproute2"}


def ensure_tools():
    """Installs the Debian packages of the peers and lab tools that are missing."""
    missing = sorted({pkg for cmd, pkg in PEERS.items() if shutil.which(cmd) is None})
    if missing:
        print(f"installing {' '.join(missing)}", file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True, env=env)


def sh(*args, check=True, **kw):
    return subprocess.run(list(args), check=check, capture_output=True, text=True, **kw)


def ns(h):
    return f"{P}-{h}"


def addr(i):
    return f"10.214.0.{10 + i}"


def lab_up(loss, rate):
    hub = ns("hub")
    sh("ip", "netns", "add", hub)
    sh("ip", "-n", hub, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
    sh("ip", "-n", hub, "link", "set", "br0", "up")
    # The bridge stands for the air: it must not run the host's IP netfilter
    # hooks on every frame it forwards (br_netfilter is on by default in a new
    # namespace, and that work is charged to the sender's CPU here).
    for fam in ("iptables", "ip6tables", "arptables"):
        sh("ip", "netns", "exec", hub, "sysctl", "-q", "-w", f"net.bridge.bridge-nf-call-{fam}=0", check=False)
    for i, h in enumerate(HOSTS):
        n, a, b = ns(h), f"{P}h{i}", f"{P}p{i}"
        sh("ip", "netns", "add", n)
        sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        sh("ip", "link", "set", a, "netns", n)
        sh("ip", "link", "set", b, "netns", hub)
        sh("ip", "-n", n, "link", "set", a, "name", "eth0")
        sh("ip", "-n", n, "addr", "add", f"{addr(i)}/24", "dev", "eth0")
        for dev in ("eth0", "lo"):
            sh("ip", "-n", n, "link", "set", dev, "up")
        sh("ip", "-n", n, "route", "add", "224.0.0.0/4", "dev", "eth0")
        sh("ip", "-n", hub, "link", "set", b, "master", "br0")
        sh("ip", "-n", hub, "link", "set", b, "up")
        if i > 0 and loss > 0:
            ex = ["ip", "netns", "exec", n, "nft"]
            sh(*ex, "add", "table", "inet", "lab")
            sh(*ex, "add chain inet lab input { type filter hook input priority 0 ; }")
            sh(*ex, f"add rule inet lab input meta l4proto udp numgen random mod 100 < {loss} drop")
    if rate:
        sh("ip", "netns", "exec", ns("s"), "tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate",
           f"{rate}mbit", "burst", "10kb", "latency", "100ms")


def lab_down():
    for h in HOSTS + ["hub"]:
        sh("ip", "netns", "del", ns(h), check=False)


def tx_bytes(h):
    out = sh("ip", "-n", ns(h), "-j", "-s", "link", "show", "dev", "eth0").stdout
    return json.loads(out)[0]["stats64"]["tx"]["bytes"]


def in_ns(h, *cmd):
    return ["ip", "netns", "exec", ns(h), *cmd]


def stats_out(name):
    """Where one lsim process's statistics go: a file under --stats, else nowhere."""
    if STATS_DIR is None:
        return [], subprocess.DEVNULL
    os.makedirs(STATS_DIR, exist_ok=True)
    return ["--json"], open(os.path.join(STATS_DIR, f"{time.strftime('%H%M%S')}-{name}.json"), "w")


def run_lsim(work, src, lsim):
    key = os.path.join(work, "k")
    sh(lsim, "keygen", "--out", key, "--force")
    rx = []
    for i in (1, 2, 3):
        d = os.path.join(work, f"lsim-r{i}")
        flag, out = stats_out(f"recv{i}")
        rx.append((subprocess.Popen(in_ns(HOSTS[i], lsim, "recv", "--once", "--idle-timeout", "30", "--group",
                                          f"{GROUP}:{PORT}", "--key-file", key, "--dir", d, *flag),
                                    stdout=out, stderr=subprocess.DEVNULL), d))
    time.sleep(0.5)
    t0 = time.time()
    flag, out = stats_out("send")
    sender = subprocess.Popen(in_ns("s", lsim, "send", "--group", f"{GROUP}:{PORT}", "--key-file", key,
                                    *LSIM_SEND_ARGS, *flag, src), stdout=out)
    ends = []
    for p, d in rx:
        p.wait(timeout=900)
        ends.append(time.time())
    sender.wait(timeout=60)
    return max(ends) - t0, [os.path.join(d, os.path.basename(src)) for _, d in rx]


def run_uftp(work, src, rate, cc=None):
    rx = []
    for i in (1, 2, 3):
        d = os.path.join(work, f"uftp-r{i}")
        os.makedirs(d, exist_ok=True)
        rx.append((subprocess.Popen(in_ns(HOSTS[i], "uftpd", "-d", "-U", f"0x{0x10 + i:08x}", "-D", d,
                                          "-I", "eth0", "-M", GROUP, "-p", str(PORT + 1)),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), d))
    time.sleep(0.5)
    ids = ",".join(f"0x{0x10 + i:08x}" for i in (1, 2, 3))
    t0 = time.time()
    r = "-1" if rate == 0 else str(int(rate * 1000))
    # With -C tfmcc, uftp finds its own rate (TFMCC); -R is then its ceiling.
    extra = ["-C", cc] if cc else []
    subprocess.run(in_ns("s", "uftp", *extra, "-Y", "aes256-gcm", "-h", "sha256", "-R", r, "-H", ids, "-I", "eth0", "-M", GROUP,
                         "-P", "239.214.0.2", "-p", str(PORT + 1), src), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=900)
    wall = time.time() - t0
    for p, _ in rx:
        p.terminate()
        p.wait(timeout=10)
    return wall, [os.path.join(d, os.path.basename(src)) for _, d in rx]


def run_udpcast(work, src, rate):
    rx = []
    for i in (1, 2, 3):
        out = os.path.join(work, f"udpcast-r{i}", os.path.basename(src))
        os.makedirs(os.path.dirname(out), exist_ok=True)
        rx.append((subprocess.Popen(["timeout", "-k", "5", str(UDPCAST_TIMEOUT)] + in_ns(
            HOSTS[i], "udp-receiver", "--nokbd", "--interface", "eth0", "--portbase", str(PORT + 10),
            "--mcast-rdv-address", UDPCAST_RDV, "--file", out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out))
    time.sleep(0.5)
    t0 = time.time()
    args = ["udp-sender", "--nokbd", "--interface", "eth0", "--portbase", str(PORT + 10), "--min-receivers", "3",
            "--mcast-data-address", "239.214.0.3", "--mcast-rdv-address", UDPCAST_RDV, "--file", src]
    if rate:
        args += ["--max-bitrate", f"{rate}m"]
    subprocess.run(["timeout", "-k", "5", str(UDPCAST_TIMEOUT)] + in_ns("s", *args), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    ends = []
    for p, _ in rx:
        p.wait(timeout=UDPCAST_TIMEOUT + 30)
        ends.append(time.time())
    return max(ends) - t0, [out for _, out in rx]


def run_null(work, src, blast):
    """The lab's ceiling: datagrams sent and counted, nothing else (transport/examples/blast.rs).

    Returns the wall time until the last receiver has every datagram (or gave
    up one second after the last it got) and how many receivers got them all."""
    size = os.path.getsize(src)
    rx = [subprocess.Popen(in_ns(HOSTS[i], blast, "recv", f"{GROUP}:{PORT + 20}", addr(i), str(size)),
                           stdout=subprocess.PIPE, text=True) for i in (1, 2, 3)]
    time.sleep(0.5)
    t0 = time.time()
    subprocess.run(in_ns("s", blast, "send", f"{GROUP}:{PORT + 20}", addr(0), str(size)), check=True,
                   capture_output=True, timeout=120)
    got, ends = [], []
    for p in rx:
        out = p.communicate(timeout=60)[0].split()
        ends.append(time.time())
        got.append(int(out[0]))
    whole = -(-size // 1472)
    # A receiver that missed some waited a second for more: its end is when the last one came.
    wall = max(ends) - t0 - (1.0 if min(got) < whole else 0.0)
    return wall, sum(g == whole for g in got)


def digest(path):
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=64)
    ap.add_argument("--loss", type=int, nargs="+", default=[0, 5, 20])
    ap.add_argument("--rate-mbit", type=float, default=0, help="tbf on the sender's link (0: none)")
    ap.add_argument("--lsim-rate", help="lsim --rate in Mbit/s, or auto (default: none given, lsim's default)")
    ap.add_argument("--tools", nargs="+", default=["lsim", "uftp", "udpcast"],
                    help="lsim, uftp, udpcast, and null: the lab's ceiling, datagrams only (no file, no repair)")
    ap.add_argument("--uftp-cc", choices=["tfmcc"], help="uftp's congestion control (-C); default: none, a fixed -R")
    ap.add_argument("--lsim-arg", action="append", default=[], help="extra `lsim send` argument (repeatable)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each tool at each loss")
    ap.add_argument("--stats", metavar="DIR", help="keep each lsim process's --json statistics in DIR")
    a = ap.parse_args()
    if a.lsim_rate:
        LSIM_SEND_ARGS.extend(["--rate", a.lsim_rate])
    LSIM_SEND_ARGS.extend(a.lsim_arg)
    global STATS_DIR
    STATS_DIR = a.stats
    ensure_tools()
    sh("cargo", "build", "--release", "-q", "-p", "lsim-tools")
    sh("cargo", "build", "--release", "-q", "-p", "lsim-transport", "--example", "blast")
    target = os.path.abspath(os.environ.get("CARGO_TARGET_DIR", "target"))
    lsim = os.path.join(target, "release", "lsim")
    blast = os.path.join(target, "release", "examples", "blast")
    work = tempfile.mkdtemp(prefix="lsim-peers-")
    try:  # the work directory holds copies of the payload: never leave it behind
        src = os.path.join(work, "payload.bin")
        with open(src, "wb") as f:
            f.write(os.urandom(a.size_mib << 20))
        want, size = digest(src), a.size_mib << 20
        print(f"| tool | loss | link | wall s | goodput Mbit/s | wire bytes / file | feedback bytes | receivers with a verified copy |")
        print("|---|---|---|---|---|---|---|---|")
        for loss in a.loss:
            for tool in [t for _ in range(a.repeat) for t in a.tools]:
                lab_down()
                lab_up(loss, a.rate_mbit)
                try:
                    before = {h: tx_bytes(h) for h in HOSTS}
                    null_ok = None
                    if tool == "lsim":
                        wall, outs = run_lsim(work, src, lsim)
                    elif tool == "null":
                        wall, null_ok = run_null(work, src, blast)
                        outs = []
                    elif tool == "uftp":
                        wall, outs = run_uftp(work, src, a.rate_mbit, a.uftp_cc)
                    else:
                        wall, outs = run_udpcast(work, src, a.rate_mbit)
                    after = {h: tx_bytes(h) for h in HOSTS}
                    # The null tool delivers no file: its column counts receivers that got every datagram.
                    ok = null_ok if null_ok is not None else sum(digest(o) == want for o in outs)
                    wire = (after["s"] - before["s"]) / size
                    fb = sum(after[h] - before[h] for h in HOSTS[1:])
                    link = f"{a.rate_mbit:g} Mbit/s" if a.rate_mbit else "veth"
                    print(f"| {tool} | {loss} % | {link} | {wall:.2f} | {size * 8 / wall / 1e6:.1f} | {wire:.3f} | {fb} | {ok}/3 |",
                          flush=True)
                except Exception as e:  # a tool that hangs or fails is a row, not the end of the run
                    print(f"| {tool} | {loss} % | | failed: {e} | | | | 0/3 |", flush=True)
                finally:
                    lab_down()
                    for d in os.listdir(work):
                        if d != "payload.bin" and d != "k":
                            shutil.rmtree(os.path.join(work, d), ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("run as root: it creates network namespaces")
    main()
