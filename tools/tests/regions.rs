//! The repair hierarchy for real: `netsim testbed` builds two regions (radio
//! cells on bridges) joined by a multicast router (smcroute); the sender sits
//! in one, a repairer and three lossy members in the other. Members NACK to
//! the repairer; its repair goes out with TTL 1 and stays in the region; the
//! link into the region carries little more than the file. The same transfer
//! without the repairer is measured for comparison. Needs root (CI runs as
//! root; `.ci/run` installs iproute2, nftables and smcroute); elsewhere it
//! says so and does nothing, unless LSIM_REQUIRE_SERVERS=1 makes that a failure.
//! On a kernel without multicast routing it skips with that reason even then:
//! a missing kernel feature is a fact of the machine, not a missing server.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test harness

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

fn netsim() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_lsim")).with_file_name("netsim")
}

fn sh(args: &[&str]) -> Output {
    Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn can_run() -> bool {
    let root = sh(&["id", "-u"]).stdout.starts_with(b"0");
    let tools = ["ip", "nft", "tc", "smcrouted"]
        .iter()
        .all(|t| sh(&["sh", "-c", &format!("command -v {t} || test -x /usr/sbin/{t}")]).status.success());
    let ok = root && tools && netsim().exists();
    if !ok {
        let why = format!("needs root, ip, nft, tc, smcrouted and the netsim binary at {}", netsim().display());
        assert!(std::env::var("LSIM_REQUIRE_SERVERS").is_err(), "the routed-region test cannot run: {why}");
        eprintln!("skipping the routed-region test: {why}");
        return false;
    }
    // With root and the tools present, what `check` can still find missing is the kernel's.
    let check = Command::new(netsim()).args(["testbed", "check", "--regions", "2"]).output().unwrap();
    if !check.status.success() {
        let why = String::from_utf8_lossy(&check.stderr);
        eprintln!("skipping the routed-region test: {}", why.trim().trim_start_matches("netsim: "));
        return false;
    }
    true
}

/// A testbed brought up for the test and taken down on drop, even after a panic.
struct Testbed {
    name: String,
}

impl Testbed {
    fn up(name: &str) -> Testbed {
        let _ = Command::new(netsim()).args(["testbed", "down", "--name", name]).output();
        let o = Command::new(netsim())
            .args(["testbed", "up", "--name", name, "--regions", "2", "--hosts", "4", "--link-rate", "30mbit"])
            .output()
            .unwrap();
        assert!(o.status.success(), "testbed up: {}", String::from_utf8_lossy(&o.stderr));
        Testbed { name: name.to_string() }
    }

    fn netsim(&self, args: &[&str]) -> Output {
        let o = Command::new(netsim())
            .args(["testbed"])
            .args(args[..1].iter())
            .args(["--name", &self.name])
            .args(&args[1..])
            .output()
            .unwrap();
        assert!(o.status.success(), "testbed {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        o
    }

    /// A counter of the router's interface toward region `r`.
    fn router_counter(&self, r: u32, what: &str) -> u64 {
        let path = format!("/sys/class/net/l{r}/statistics/{what}");
        let o = self.netsim(&["exec", "router", "--", "cat", &path]);
        String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
    }

    fn lsim(&self, host: &str, args: &[&str], extra: &[&Path]) -> Command {
        let mut c = Command::new(netsim());
        c.env("XDG_CONFIG_HOME", concat!(env!("CARGO_TARGET_TMPDIR"), "/lsim-config"));
        c.args(["testbed", "exec", "--name", &self.name, host, "--"])
            .arg(env!("CARGO_BIN_EXE_lsim"))
            .args(args)
            .args(extra);
        c
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = Command::new(netsim()).args(["testbed", "down", "--name", &self.name]).output();
    }
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lsim-regions-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// One transfer from r0h0 to r1h1..r1h3 (10 % loss each), with r1h0 as the
/// region's repairer or not; returns (bytes into region 1, bytes out of the
/// router into region 0 while it ran).
fn transfer(
    tb: &Testbed,
    dir: &Path,
    key: &Path,
    file: &Path,
    content: &[u8],
    repairer: bool,
    port: u16,
) -> (u64, u64) {
    let group = format!("239.77.{}.{}:{port}", std::process::id() % 250, port % 250);
    let common = ["--once", "--json", "--ttl", "8", "--idle-timeout", "20", "--group", &group, "--key-file"];
    let before = (tb.router_counter(1, "tx_bytes"), tb.router_counter(0, "tx_bytes"));
    // (host, extra arguments, output directory) of every receiver: the repairer at r1h0, three members.
    let mut hosts: Vec<(String, Vec<String>, PathBuf)> = Vec::new();
    if repairer {
        let args = ["--repairer", "--node", "4242", "--iface", "10.2.0.1"].map(String::from).to_vec();
        hosts.push(("r1h0".into(), args, dir.join(format!("repairer-{repairer}"))));
    }
    for h in 1..=3 {
        let mut args = vec!["--iface".to_string(), format!("10.2.0.{}", h + 1)];
        if repairer {
            args.extend(["--repairer-node".to_string(), "4242".to_string()]);
        }
        hosts.push((format!("r1h{h}"), args, dir.join(format!("member{h}-{repairer}"))));
    }
    let rxs: Vec<(Child, PathBuf)> = hosts
        .into_iter()
        .map(|(host, args, out)| {
            let args: Vec<&str> = std::iter::once("recv").chain(args.iter().map(String::as_str)).collect();
            let c = tb
                .lsim(&host, &args, &[])
                .args(common)
                .arg(key)
                .arg("--dir")
                .arg(&out)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (c, out)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let sent = tb
        .lsim(
            "r0h0",
            &["send", "--json", "--ttl", "8", "--iface", "10.1.0.1", "--rate", "20", "--group", &group, "--key-file"],
            &[key, file],
        )
        .output()
        .unwrap();
    assert!(sent.status.success(), "send: {}", String::from_utf8_lossy(&sent.stderr));
    for (c, out) in rxs {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}: {}", out.display(), String::from_utf8_lossy(&o.stderr));
        let got = std::fs::read(out.join(file.file_name().unwrap())).unwrap();
        assert!(got == content, "{}: bytes differ", out.display());
    }
    (tb.router_counter(1, "tx_bytes") - before.0, tb.router_counter(0, "tx_bytes") - before.1)
}

#[test]
fn a_repairer_keeps_repair_inside_its_routed_region() {
    if !can_run() {
        return;
    }
    let tb = Testbed::up(&format!("rg{}", std::process::id() % 100_000));
    for h in 1..=3 {
        tb.netsim(&["loss", &format!("r1h{h}"), "10"]);
    }
    let dir = temp("lab");
    let key = dir.join("group.key");
    let o = Command::new(env!("CARGO_BIN_EXE_lsim")).args(["keygen", "--out"]).arg(&key).output().unwrap();
    assert!(o.status.success());
    let file = dir.join("incident map.bin");
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8).collect();
    std::fs::write(&file, &content).unwrap();
    let (with_in, with_back) = transfer(&tb, &dir, &key, &file, &content, true, 41_001);
    let (without_in, _) = transfer(&tb, &dir, &key, &file, &content, false, 41_002);
    let size = content.len() as f64;
    let (a, b) = (with_in as f64 / size, without_in as f64 / size);
    eprintln!(
        "bytes into the lossy region per file byte (Ethernet frames): with a repairer {a:.3}, without {b:.3}; \
         back into the sender's region with a repairer: {with_back} B"
    );
    assert!(a <= 1.15, "with a repairer the link carried {a:.3} × the file");
    assert!(b > a, "without the repairer ({b:.3}) the link must carry more than with it ({a:.3})");
    // Region-scoped repair (TTL 1) never crossed the router back to the sender's cell.
    assert!((with_back as f64) < 0.05 * size, "{with_back} bytes went back into the sender's region");
    std::fs::remove_dir_all(&dir).unwrap();
}
