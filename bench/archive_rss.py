"""Peak resident memory (VmHWM) of `lsim server` with and without its
archive, and of two `lsim chat` members, on loopback: alice sends one file
of MIB MiB (default 20) of random bytes to bob. Used for BENCHMARKS.md
("The archive at the command post").

usage: MIB=20 python3 bench/archive_rss.py archive|none   (after cargo build -p lsim-tools)
"""
import os, subprocess, sys, time, tempfile, threading, random
lsim = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "debug", "lsim")
archive = sys.argv[1] == "archive"
d = tempfile.mkdtemp(prefix="rss-")
env = dict(os.environ, XDG_CONFIG_HOME=os.path.join(d, "cfg"))
for u in ["alice", "bob"]:
    subprocess.run([lsim, "user", "add", u, "--data-dir", f"{d}/server", "--password-stdin"], input=f"{u}-pw\n", text=True, check=True, env=env, capture_output=True)
x, k = random.randint(20000, 30000), random.randint(30001, 40000)
grp = f"239.192.81.{random.randint(1,250)}:{random.randint(20000,40000)}"
cmd = [lsim, "server", "--data-dir", f"{d}/server", "--xmpp-listen", f"127.0.0.1:{x}", "--keyserver-listen", f"127.0.0.1:{k}", "--group", grp, "--allow-plain"]
if not archive: cmd.append("--no-archive")
srv = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
time.sleep(3)
def member(u):
    p = subprocess.Popen([lsim, "chat", "--jid", f"{u}@localhost", "--room", "lsim@conference.localhost", "--server", f"127.0.0.1:{x}", "--tls", "disabled", "--allow-plain", "--iface", "127.0.0.1", "--password-stdin", "--no-open", "--download-dir", f"{d}/{u}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    p.stdin.write(f"{u}-pw\n"); p.stdin.flush()
    lines = []
    threading.Thread(target=lambda: [lines.append(l) for l in p.stdout], daemon=True).start()
    return p, lines
bob, bl = member("bob"); time.sleep(3)
alice, al = member("alice"); time.sleep(4)
f = os.path.join(d, "big.bin"); open(f, "wb").write(os.urandom(int(os.environ.get("MIB","20")) << 20))
alice.stdin.write(f"/send {f}\n"); alice.stdin.flush()
t0 = time.time()
while not any("received big.bin" in l for l in bl):
    if time.time() - t0 > 120: print("bob never got it"); break
    time.sleep(0.5)
time.sleep(5)
def hwm(p):
    for l in open(f"/proc/{p.pid}/status"):
        if l.startswith("VmHWM"): return l.split()[1]
print(f"{sys.argv[1]}: server VmHWM {hwm(srv)} kB, bob {hwm(bob)} kB, alice {hwm(alice)} kB; bob got it in {time.time()-t0-5:.1f} s")
for p in (alice, bob):
    p.stdin.write("/quit\n"); p.stdin.flush()
time.sleep(3)
for p in (alice, bob, srv):
    p.terminate()
