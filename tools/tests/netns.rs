//! `lsim send`/`recv` between real hosts: network namespaces on a bridge
//! that floods multicast like a radio, per-receiver random loss with
//! nftables, and an 11 Mbit/s token bucket on the sender's link. Needs root
//! (CI runs as root; `.ci/run` installs nftables and iproute2); elsewhere it
//! says so and does nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test harness

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

fn sh(args: &[&str]) -> Output {
    Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn ok(args: &[&str]) {
    let o = sh(args);
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

fn can_run() -> bool {
    let root = sh(&["id", "-u"]).stdout.starts_with(b"0");
    let tools = ["ip", "nft", "tc"].iter().all(|t| sh(&["sh", "-c", &format!("command -v {t}")]).status.success());
    if !(root && tools) {
        eprintln!("skipping the namespace test: needs root and ip, nft, tc (CI has them)");
    }
    root && tools
}

/// Namespaces `<prefix>-hub` (the bridge) and one per host; removed on drop, even after a panic.
struct Lab {
    prefix: String,
    hosts: Vec<String>,
}

impl Lab {
    fn new(hosts: &[&str]) -> Lab {
        let prefix = format!("lsim{}", std::process::id() % 100_000);
        let lab = Lab { prefix: prefix.clone(), hosts: hosts.iter().map(|h| format!("{prefix}-{h}")).collect() };
        let hub = format!("{prefix}-hub");
        ok(&["ip", "netns", "add", &hub]);
        ok(&["ip", "-n", &hub, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"]);
        ok(&["ip", "-n", &hub, "link", "set", "br0", "up"]);
        for (i, ns) in lab.hosts.iter().enumerate() {
            let (a, b) = (format!("{prefix}h{i}"), format!("{prefix}p{i}"));
            ok(&["ip", "netns", "add", ns]);
            ok(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
            ok(&["ip", "link", "set", &a, "netns", ns]);
            ok(&["ip", "link", "set", &b, "netns", &hub]);
            ok(&["ip", "-n", ns, "link", "set", &a, "name", "eth0"]);
            ok(&["ip", "-n", ns, "addr", "add", &format!("10.213.0.{}/24", 10 + i), "dev", "eth0"]);
            ok(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
            ok(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            ok(&["ip", "-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0"]);
            ok(&["ip", "-n", &hub, "link", "set", &b, "master", "br0"]);
            ok(&["ip", "-n", &hub, "link", "set", &b, "up"]);
        }
        lab
    }

    fn addr(&self, i: usize) -> String {
        format!("10.213.0.{}", 10 + i)
    }

    /// Independent random loss of `percent` % of UDP arriving at host `i`.
    fn loss(&self, i: usize, percent: u32) {
        let ns = &self.hosts[i];
        ok(&["ip", "netns", "exec", ns, "nft", "add", "table", "inet", "lsim"]);
        ok(&["ip", "netns", "exec", ns, "nft", "add chain inet lsim input { type filter hook input priority 0 ; }"]);
        let rule = format!("add rule inet lsim input meta l4proto udp numgen random mod 100 < {percent} drop");
        ok(&["ip", "netns", "exec", ns, "nft", &rule]);
    }

    /// A token bucket on host `i`'s link.
    fn rate(&self, i: usize, rate: &str) {
        ok(&["ip", "-n", &self.hosts[i], "link", "set", "eth0", "txqueuelen", "1000"]);
        ok(&[
            "ip",
            "netns",
            "exec",
            &self.hosts[i],
            "tc",
            "qdisc",
            "add",
            "dev",
            "eth0",
            "root",
            "tbf",
            "rate",
            rate,
            "burst",
            "10kb",
            "latency",
            "100ms",
        ]);
    }

    fn run(&self, i: usize, args: &[&str], extra: &[&Path]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.hosts[i], env!("CARGO_BIN_EXE_lsim")]).args(args).args(extra);
        c
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.hosts.iter().chain([&format!("{}-hub", self.prefix)]) {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
    }
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lsim-netns-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn one_sender_three_receivers_with_loss_and_a_radio_rate_limit() {
    if !can_run() {
        return;
    }
    let dir = temp("lab");
    let lab = Lab::new(&["s", "r0", "r1", "r2"]);
    for (i, p) in [(1, 5), (2, 10), (3, 20)] {
        lab.loss(i, p);
    }
    lab.rate(0, "11mbit");
    let key = dir.join("group.key");
    let o = Command::new(env!("CARGO_BIN_EXE_lsim")).args(["keygen", "--out"]).arg(&key).output().unwrap();
    assert!(o.status.success());
    let file = dir.join("briefing.bin");
    let content: Vec<u8> = (0..2_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8).collect();
    std::fs::write(&file, &content).unwrap();
    let group = "239.213.0.1:47000";
    let rxs: Vec<(Child, PathBuf)> = (1..4)
        .map(|i| {
            let out = dir.join(format!("r{i}"));
            let args = ["recv", "--once", "--json", "--idle-timeout", "20", "--group", group, "--iface", &lab.addr(i)];
            let child = lab
                .run(i, &args, &[Path::new("--key-file"), &key, Path::new("--dir"), &out])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (child, out)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let args = ["send", "--json", "--rate", "10", "--group", group, "--iface", &lab.addr(0)];
    let sent = lab.run(0, &args, &[Path::new("--key-file"), &key, &file]).output().unwrap();
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    let stats: serde_json::Value = serde_json::from_slice(&sent.stdout).unwrap();
    eprintln!("sender: {stats}");
    for (rx, out) in rxs {
        let o = rx.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        eprintln!("receiver: {}", String::from_utf8_lossy(&o.stdout).trim());
        assert!(std::fs::read(out.join("briefing.bin")).unwrap() == content, "file differs");
    }
    // 20 % loss at the worst receiver is repaired with fresh symbols, not per-receiver retransmission.
    let repair = stats["repair_packets"].as_f64().unwrap() / stats["source_packets"].as_f64().unwrap();
    assert!(repair > 0.15 && repair < 0.6, "repair per source {repair}");
    drop(lab);
    std::fs::remove_dir_all(&dir).unwrap();
}
