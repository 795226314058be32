//! `netsim testbed` as a user runs it: real namespaces, a multicast router
//! between regions, loss changed on a running testbed, and nothing left
//! behind. Needs root and ip, nft, tc, smcrouted and python3 (CI has them);
//! elsewhere it says so and does nothing, unless LSIM_REQUIRE_SERVERS=1. Two
//! regions also need a kernel that routes multicast: without it the routed
//! test skips with that reason even then (a missing kernel feature is a fact
//! of the machine, not a server CI forgot), and `up` must refuse clearly.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test harness

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use lsim_netsim::testbed::multicast_routing_missing;

const GROUP: &str = "239.77.0.1";
const PORT: &str = "47000";

/// Joins GROUP, prints `ready`, then prints every datagram until SECS have passed.
const RECEIVER: &str = r#"
import socket, struct, sys, time
group, port, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", port))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton("0.0.0.0")))
print("ready", flush=True)
end = time.time() + secs
while time.time() < end:
    s.settimeout(max(end - time.time(), 0.001))
    try:
        print(s.recv(100).decode(), flush=True)
    except socket.timeout:
        break
"#;

/// Sends TAG five times to GROUP with multicast TTL.
const SENDER: &str = r#"
import socket, sys, time
group, port, ttl, tag = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
for _ in range(5):
    s.sendto(tag.encode(), (group, port))
    time.sleep(0.05)
"#;

fn tool_exists(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain(["/usr/sbin", "/sbin"].map(PathBuf::from)).any(|d| d.join(tool).is_file())
}

fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let euid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|ids| ids.split_whitespace().nth(1));
    euid == Some("0")
}

fn can_run() -> bool {
    let missing: Vec<&str> =
        ["ip", "nft", "tc", "smcrouted", "python3"].into_iter().filter(|t| !tool_exists(t)).collect();
    let why = match (is_root(), missing.is_empty()) {
        (true, true) => return true,
        (false, _) => "needs root".to_string(),
        (true, false) => format!("missing {missing:?} (apt-get install iproute2 nftables smcroute python3)"),
    };
    assert!(std::env::var("LSIM_REQUIRE_SERVERS").as_deref() != Ok("1"), "LSIM_REQUIRE_SERVERS=1 but testbed {why}");
    eprintln!("skipping the testbed test: {why} (CI has everything)");
    false
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A testbed with its own state directory; `down` on drop, even after a panic.
struct Testbed {
    name: String,
    state_dir: PathBuf,
}

impl Testbed {
    fn new(suffix: &str) -> Testbed {
        let name = format!("t{}{suffix}", std::process::id() % 100_000);
        let state_dir = std::env::temp_dir().join(format!("lsim-testbed-{name}"));
        Testbed { name, state_dir }
    }

    fn command(&self, sub: &str, rest: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_netsim"));
        c.args(["testbed", sub, "--name", &self.name, "--state-dir"]).arg(&self.state_dir).args(rest);
        c
    }

    fn run(&self, sub: &str, rest: &[&str]) -> Output {
        self.command(sub, rest).output().unwrap()
    }

    fn ok(&self, sub: &str, rest: &[&str]) -> String {
        let o = self.run(sub, rest);
        assert!(o.status.success(), "testbed {sub} {rest:?}: {}{}", text(&o.stdout), text(&o.stderr));
        text(&o.stdout)
    }

    fn exec(&self, host: &str, argv: &[&str]) -> Command {
        let mut rest = vec![host, "--"];
        rest.extend(argv);
        self.command("exec", &rest)
    }

    fn namespaces_left(&self) -> Vec<String> {
        let list = text(&Command::new("ip").args(["netns", "list"]).output().unwrap().stdout);
        let prefix = format!("{}-", self.name);
        list.lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(&prefix))
            .map(String::from)
            .collect()
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = self.run("down", &[]);
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// A multicast receiver that has joined the group.
struct Listener {
    child: Child,
    out: BufReader<ChildStdout>,
}

fn listen(tb: &Testbed, hosts: &[&str], secs: &str) -> Vec<Listener> {
    hosts
        .iter()
        .map(|h| {
            let mut child =
                tb.exec(h, &["python3", "-c", RECEIVER, GROUP, PORT, secs]).stdout(Stdio::piped()).spawn().unwrap();
            let mut out = BufReader::new(child.stdout.take().unwrap());
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            assert_eq!(line.trim(), "ready", "receiver on {h}");
            Listener { child, out }
        })
        .collect()
}

/// Every datagram each listener got, in the order of `listen`'s hosts.
fn heard(listeners: Vec<Listener>) -> Vec<String> {
    listeners
        .into_iter()
        .map(|mut l| {
            let mut rest = String::new();
            l.out.read_to_string(&mut rest).unwrap();
            assert!(l.child.wait().unwrap().success());
            rest
        })
        .collect()
}

fn send(tb: &Testbed, host: &str, ttl: &str, tag: &str) {
    let o = tb.exec(host, &["python3", "-c", SENDER, GROUP, PORT, ttl, tag]).output().unwrap();
    assert!(o.status.success(), "sender on {host}: {}", text(&o.stderr));
}

/// False, after saying why, when the kernel cannot route multicast between regions.
fn can_route() -> bool {
    match multicast_routing_missing() {
        None => true,
        Some(why) => {
            eprintln!("skipping the two-region testbed test: {why}");
            false
        }
    }
}

#[test]
fn two_regions_route_multicast_by_ttl_and_obey_link_loss() {
    if !can_run() || !can_route() {
        return;
    }
    let tb = Testbed::new("a");
    let started = Instant::now();
    tb.ok("up", &["--regions", "2", "--hosts", "2", "--host-rate", "11mbit"]);
    eprintln!("up took {:?}", started.elapsed());
    let status = tb.ok("status", &[]);
    assert!(status.contains("r1h1") && status.contains("10.2.0.2") && status.contains(&format!("{}-rt", tb.name)));

    // Unicast across the router, source address kept.
    let server = "import socket\ns = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
                  s.bind(('', 47001)); s.listen(1); s.settimeout(10); print('ready', flush=True)\n\
                  c, a = s.accept(); c.sendall(('pong from ' + a[0]).encode()); c.close()";
    let mut srv = tb.exec("r1h0", &["python3", "-c", server]).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(srv.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let client =
        "import socket\nc = socket.create_connection(('10.2.0.1', 47001), timeout=5); print(c.recv(100).decode())";
    let o = tb.exec("r0h0", &["python3", "-c", client]).output().unwrap();
    assert_eq!(text(&o.stdout).trim(), "pong from 10.1.0.1", "{}", text(&o.stderr));
    assert!(srv.wait().unwrap().success());
    if tool_exists("ping") {
        let o = tb.exec("r0h0", &["ping", "-c", "1", "-W", "2", "10.2.0.1"]).output().unwrap();
        assert!(o.status.success(), "ping: {}", text(&o.stdout));
    }

    // exec passes stdin, stdout and the exit status through.
    let mut child =
        tb.exec("r0h1", &["sh", "-c", "cat; exit 7"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"hello").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!((o.status.code(), text(&o.stdout).as_str()), (Some(7), "hello"));

    // TTL 1 stays in its region; TTL 4 crosses the router.
    let rx = listen(&tb, &["r0h1", "r1h0"], "1.5");
    send(&tb, "r0h0", "1", "ttl1");
    send(&tb, "r0h0", "4", "ttl4");
    let [same, other] = <[String; 2]>::try_from(heard(rx)).unwrap();
    assert!(same.contains("ttl1") && same.contains("ttl4"), "r0h1 heard {same:?}");
    assert!(other.contains("ttl4") && !other.contains("ttl1"), "r1h0 heard {other:?}");

    // A dead link stops cross-region multicast, not the region's own.
    tb.ok("loss", &["link0", "100"]);
    let rx = listen(&tb, &["r0h1", "r1h0"], "1");
    send(&tb, "r0h0", "4", "cut");
    let [same, other] = <[String; 2]>::try_from(heard(rx)).unwrap();
    assert!(same.contains("cut") && !other.contains("cut"), "r0h1 heard {same:?}, r1h0 heard {other:?}");

    tb.ok("loss", &["link0", "0"]);
    let rx = listen(&tb, &["r1h0"], "1");
    send(&tb, "r0h0", "4", "back");
    assert!(heard(rx)[0].contains("back"), "link0 restored but r1h0 heard nothing");

    tb.ok("rate", &["link1", "2mbit"]);
    tb.ok("rate", &["r0h0", "off"]);
    let o = tb.run("loss", &["link2", "5"]);
    assert!(!o.status.success() && text(&o.stderr).contains("link0..link1"), "{}", text(&o.stderr));

    let started = Instant::now();
    tb.ok("down", &[]);
    eprintln!("down took {:?}", started.elapsed());
    assert_eq!(tb.namespaces_left(), Vec::<String>::new());
    assert!(!tb.state_dir.join(format!("{}.json", tb.name)).exists());
    let o = tb.run("down", &[]);
    assert!(o.status.success() && text(&o.stderr).contains("nothing to do"), "{}", text(&o.stderr));
}

#[test]
fn one_region_is_a_flat_bridge_without_a_router() {
    if !can_run() {
        return;
    }
    let tb = Testbed::new("b");
    tb.ok("up", &["--regions", "1", "--hosts", "2", "--host-loss", "0"]);
    assert!(!tb.namespaces_left().contains(&format!("{}-rt", tb.name)));
    let rx = listen(&tb, &["r0h1"], "1");
    send(&tb, "r0h0", "1", "flat");
    assert!(heard(rx)[0].contains("flat"));
    let o = tb.run("loss", &["link0", "5"]);
    assert!(!o.status.success() && text(&o.stderr).contains("no links"), "{}", text(&o.stderr));
    tb.ok("down", &[]);
    assert_eq!(tb.namespaces_left(), Vec::<String>::new());
}

/// On a kernel without multicast routing, `up --regions 2` fails at once
/// with one line that says what is missing (not smcrouted's timeout), and
/// leaves no namespace and no state file; `check` says the same, and one
/// region still works.
#[test]
fn two_regions_on_a_kernel_without_multicast_routing_fail_fast_and_build_nothing() {
    let Some(why) = multicast_routing_missing() else {
        eprintln!("skipping: this kernel routes multicast (the refusal is for kernels that do not)");
        return;
    };
    if !is_root() {
        eprintln!("skipping: `up` needs root to get as far as the kernel check");
        return;
    }
    let tb = Testbed::new("d");
    let started = Instant::now();
    let o = tb.run("up", &["--regions", "2", "--hosts", "2"]);
    let took = started.elapsed();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(took < Duration::from_secs(2), "took {took:?} to refuse");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(&why) && err.contains("/proc/net/ip_mr_vif"), "{err}");
    assert!(err.contains("without IP multicast routing") && err.contains("--regions 1"), "{err}");
    assert!(!err.contains("smcrouted"), "{err}");
    assert_eq!(tb.namespaces_left(), Vec::<String>::new());
    assert!(!tb.state_dir.join(format!("{}.json", tb.name)).exists());

    let o = Command::new(env!("CARGO_BIN_EXE_netsim")).args(["testbed", "check", "--regions", "2"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains(&why), "{}", text(&o.stderr));
    if ["ip", "nft", "tc"].iter().all(|t| tool_exists(t)) {
        let o =
            Command::new(env!("CARGO_BIN_EXE_netsim")).args(["testbed", "check", "--regions", "1"]).output().unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
}

#[test]
fn down_of_a_testbed_that_is_not_there_is_a_no_op() {
    if !is_root() {
        return;
    }
    let tb = Testbed::new("c");
    let o = tb.run("down", &[]);
    assert!(o.status.success() && text(&o.stderr).contains("nothing to do"), "{}", text(&o.stderr));
    let o = tb.run("status", &[]);
    assert!(!o.status.success() && text(&o.stderr).contains("no testbed named"), "{}", text(&o.stderr));
}

#[test]
fn refuses_clearly_without_root() {
    let o = if is_root() {
        if !tool_exists("setpriv") {
            eprintln!("skipping the non-root test: no setpriv (util-linux)");
            return;
        }
        // A copy nobody can run, outside a target dir that may not be readable by nobody.
        let dir = std::env::temp_dir().join(format!("lsim-testbed-nobody-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("netsim");
        std::fs::copy(env!("CARGO_BIN_EXE_netsim"), &bin).unwrap();
        let o = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .args(["testbed", "up", "--name", "nobody", "--regions", "2"])
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        o
    } else {
        Command::new(env!("CARGO_BIN_EXE_netsim")).args(["testbed", "up", "--name", "nobody"]).output().unwrap()
    };
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("netsim testbed needs root (network namespaces); run it with sudo"),
        "{}",
        text(&o.stderr)
    );
    assert!(!Path::new("/run/lsim-testbed/nobody.json").exists());
}
