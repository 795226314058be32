//! `lsim keygen`, `send` and `recv` as separate processes over loopback multicast.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test harness

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

mod common;

use common::{Proc, data, lsim};

fn temp(name: &str) -> PathBuf {
    common::temp("tools", name)
}

fn group(test: u8) -> String {
    let pid = std::process::id();
    format!("239.80.{}.{test}:{}", pid % 250, 40_000 + pid % 20_000 + u32::from(test))
}

fn keygen(dir: &Path, name: &str, suite: &str) -> PathBuf {
    let key = dir.join(name);
    let out = lsim().args(["keygen", "--suite", suite, "--out"]).arg(&key).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    key
}

fn recv(group: &str, key: &Path, dir: &Path, extra: &[&str]) -> Child {
    lsim()
        .args(["recv", "--once", "--json", "--iface", "127.0.0.1", "--group", group, "--key-file"])
        .arg(key)
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `file` from a sender at 200 Mbit/s to three receivers (each started with
/// `recv_args`); every process must succeed. Returns the sender's JSON, and
/// each receiver's JSON with its directory.
fn to_three_receivers(
    dir: &Path,
    key: &Path,
    g: &str,
    file: &Path,
    recv_args: &[&str],
) -> (serde_json::Value, Vec<(serde_json::Value, PathBuf)>) {
    let outs: Vec<PathBuf> = (0..3).map(|i| dir.join(format!("rx{i}"))).collect();
    let rxs: Vec<Child> = outs.iter().map(|o| recv(g, key, o, recv_args)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let sent = lsim()
        .args(["send", "--json", "--iface", "127.0.0.1", "--rate", "200", "--group", g, "--key-file"])
        .arg(key)
        .arg(file)
        .output()
        .unwrap();
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    let received = rxs
        .into_iter()
        .zip(outs)
        .map(|(rx, out)| {
            let o = rx.wait_with_output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            (serde_json::from_slice(&o.stdout).unwrap(), out)
        })
        .collect();
    (serde_json::from_slice(&sent.stdout).unwrap(), received)
}

#[test]
fn a_file_reaches_three_receivers_through_loss_bit_exact() {
    let dir = temp("three");
    let key = keygen(&dir, "group.key", "aes-256-gcm");
    let g = group(1);
    let file = dir.join("map of sector 4.bin");
    let content = data(6_000_000, 1);
    std::fs::write(&file, &content).unwrap();
    let (stats, received) =
        to_three_receivers(&dir, &key, &g, &file, &["--simulated-loss", "0.05", "--idle-timeout", "20"]);
    assert!(stats["repair_packets"].as_u64().unwrap() > 0, "the loss must have been repaired: {stats}");
    for (_, out) in &received {
        let got = std::fs::read(out.join("map of sector 4.bin")).unwrap();
        assert!(got == content, "file differs at a receiver");
        // Nothing but the file: no temporary left behind.
        assert_eq!(std::fs::read_dir(out).unwrap().count(), 1);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A key of `suite` with the same session as `right`, so only the seal
/// tells their packets apart: what an outsider forging packets holds.
fn outsider_key(dir: &Path, right: &Path, suite: &str) -> PathBuf {
    let wrong = keygen(dir, "wrong.key", suite);
    let right_text = std::fs::read_to_string(right).unwrap();
    let session = right_text.lines().find(|l| l.starts_with("session")).unwrap();
    let wrong_text = std::fs::read_to_string(&wrong).unwrap();
    let forged: String =
        wrong_text.lines().map(|l| if l.starts_with("session") { session } else { l }).collect::<Vec<_>>().join("\n");
    std::fs::write(&wrong, forged + "\n").unwrap();
    wrong
}

#[test]
fn packets_under_another_key_are_dropped_and_counted() {
    let dir = temp("wrongkey");
    let right = keygen(&dir, "right.key", "chacha20-poly1305");
    let wrong = outsider_key(&dir, &right, "chacha20-poly1305");
    let g = group(2);
    let file = dir.join("secret.txt");
    std::fs::write(&file, data(100_000, 2)).unwrap();
    let out = dir.join("rx");
    let rx = recv(&g, &right, &out, &["--idle-timeout", "2"]);
    std::thread::sleep(Duration::from_millis(300));
    let sent = lsim()
        .args(["send", "--iface", "127.0.0.1", "--linger", "0", "--group", &g, "--key-file"])
        .arg(&wrong)
        .arg(&file)
        .output()
        .unwrap();
    assert!(sent.status.success());
    let o = rx.wait_with_output().unwrap();
    assert!(!o.status.success(), "nothing may be received");
    let stats: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // The outsider's first packets carry its full counter and fail the seal;
    // the rest have short headers from a node never heard, dropped unopened.
    let n = |k: &str| stats[k].as_u64().unwrap();
    assert!(n("dropped_bad_seal") >= 1 && n("dropped_bad_seal") + n("dropped_no_reference") >= 70, "{stats}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "no file, not even a temporary one");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The id `lsim keygen` printed for the key it wrote.
fn keygen_id(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let out = lsim().args(["keygen", "--out"]).arg(&key).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let id = text.split("key file id ").nth(1).unwrap().trim().trim_end_matches(')').to_string();
    assert_eq!(id.len(), 8, "{text}");
    (key, id)
}

/// A receiver holding another key file than the sender's (a user's slip, not
/// an attack) says so, naming its key file id, and exits 2: not "the sender
/// is gone". Both ends print their ids so the two can be compared.
#[test]
fn a_receiver_with_another_key_file_says_so_and_exits_2() {
    let dir = temp("otherkey");
    let (a, a_id) = keygen_id(&dir, "a.key");
    let (b, b_id) = keygen_id(&dir, "b.key");
    assert_ne!(a_id, b_id);
    let g = group(8);
    let file = dir.join("briefing.pdf");
    std::fs::write(&file, data(300_000, 8)).unwrap();
    let out = dir.join("rx");
    let rx = recv(&g, &b, &out, &["--idle-timeout", "2"]);
    std::thread::sleep(Duration::from_millis(300));
    let sent = lsim()
        .args(["send", "--iface", "127.0.0.1", "--linger", "0", "--group", &g, "--key-file"])
        .arg(&a)
        .arg(&file)
        .output()
        .unwrap();
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    assert!(String::from_utf8_lossy(&sent.stderr).contains(&format!("key file id {a_id}")));
    let o = rx.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("receiving with key file id {b_id}")), "{err}");
    let last = err.lines().last().unwrap();
    assert!(last.contains("packets arrived under a key this receiver does not hold"), "{err}");
    assert!(last.contains(&format!("(our key file id {b_id})")) && last.contains("another key file"), "{err}");
    assert!(!err.contains("sender is gone"), "{err}");
    let stats: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(stats["dropped_unopened"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(stats["key_file_id"], b_id.as_str());
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "nothing written");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An outsider floods the group at line rate during a transfer, two ways at
/// once: an unpaced `lsim send` under a key of its own (well-formed packets
/// with the group's session and the sender's node id, failing only the
/// seal), and a thread blasting random datagrams. The file still reaches
/// both receivers bit-exact, the flood is counted, and what it costs a
/// receiver stays bounded per packet.
#[test]
fn an_outsider_flooding_at_line_rate_is_dropped_and_the_file_still_lands() {
    use std::net::UdpSocket;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let dir = temp("flood");
    let key = keygen(&dir, "group.key", "aes-256-gcm");
    let wrong = outsider_key(&dir, &key, "aes-256-gcm");
    let g = group(7);
    let file = dir.join("incident plan.pdf");
    let content = data(4 << 20, 7);
    std::fs::write(&file, &content).unwrap();
    // The outsider's own file: large, so it never runs out while we measure.
    let junk = dir.join("junk.bin");
    std::fs::File::create(&junk).unwrap().set_len(1 << 30).unwrap();

    let outs: Vec<PathBuf> = (0..2).map(|i| dir.join(format!("rx{i}"))).collect();
    let rxs: Vec<Proc> = outs
        .iter()
        .map(|o| Proc::new(recv(&g, &key, o, &["--idle-timeout", "60", "--simulated-loss", "0.02"])))
        .collect();
    let forger = Proc::new(
        lsim()
            .args(["send", "--iface", "127.0.0.1", "--rate", "100000", "--linger", "0", "--group", &g, "--key-file"])
            .arg(&wrong)
            .arg(&junk)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let blasted = Arc::new(AtomicU64::new(0));
    let blaster = {
        let (stop, blasted, to) = (stop.clone(), blasted.clone(), g.clone());
        std::thread::spawn(move || {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_multicast_loop_v4(true).unwrap();
            let mut x = 0x9e37_79b9_7f4a_7c15_u64;
            let mut buf = [0u8; 1200];
            while !stop.load(Ordering::Relaxed) {
                for b in buf.chunks_mut(8) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
                }
                let len = 40 + (x % 1160) as usize;
                if s.send_to(&buf[..len], &to).is_ok() {
                    blasted.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let sent = lsim()
        .args(["send", "--json", "--iface", "127.0.0.1", "--rate", "100", "--group", &g, "--key-file"])
        .arg(&key)
        .arg(&file)
        .output()
        .unwrap();
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    let sent: serde_json::Value = serde_json::from_slice(&sent.stdout).unwrap();
    let mut stats = Vec::new();
    for rx in rxs {
        let o = rx.output();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        stats.push(serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    blaster.join().unwrap();
    drop(forger);
    let blasted = blasted.load(Ordering::Relaxed);
    eprintln!("sender: {sent}\nblasted {blasted} random datagrams");
    for (st, out) in stats.iter().zip(&outs) {
        eprintln!("receiver: {st}");
        assert!(std::fs::read(out.join("incident plan.pdf")).unwrap() == content, "file differs at a receiver");
        assert_eq!(std::fs::read_dir(out).unwrap().count(), 1, "the file and nothing else");
        let n = |k: &str| st[k].as_u64().unwrap();
        let forged = n("dropped_bad_seal") + n("dropped_no_reference");
        assert!(forged > 10_000, "the forged packets must arrive and be dropped: {st}");
        assert!(n("dropped_malformed") + n("dropped_other_session") > 10_000, "the random ones too: {st}");
        // What a dropped packet costs: the whole process's CPU over every
        // datagram it took in, flood and file together.
        let per_packet_us = st["cpu_s"].as_f64().unwrap() * 1e6 / n("packets_in") as f64;
        assert!(per_packet_us < 100.0, "{per_packet_us:.1} µs of CPU per packet in");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_sender_killed_mid_file_leaves_no_file_under_its_name() {
    let dir = temp("killed");
    let key = keygen(&dir, "k", "blowfish-cbc-hmac-sha256");
    let g = group(3);
    let file = dir.join("big.bin");
    std::fs::write(&file, data(4_000_000, 3)).unwrap();
    let out = dir.join("rx");
    let rx = recv(&g, &key, &out, &["--idle-timeout", "1.5"]);
    std::thread::sleep(Duration::from_millis(300));
    // 8 Mbit/s: 4 MB takes 4 s; kill it after one.
    let mut sender = lsim()
        .args(["send", "--iface", "127.0.0.1", "--rate", "8", "--group", &g, "--key-file"])
        .arg(&key)
        .arg(&file)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    assert!(std::fs::read_dir(&out).unwrap().count() > 0, "the transfer had begun: a temporary file is being written");
    sender.kill().unwrap();
    sender.wait().unwrap();
    let o = rx.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("sender is gone"), "{err}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "no file and no temporary left");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn keygen_refuses_to_overwrite_and_recv_refuses_a_bad_key_file() {
    let dir = temp("keygen");
    let key = keygen(&dir, "k", "aes-256-gcm");
    let again = lsim().args(["keygen", "--out"]).arg(&key).output().unwrap();
    assert!(!again.status.success());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    std::fs::write(dir.join("bad"), "lsim-key 1\nsuite rot13\n").unwrap();
    let o = lsim()
        .args(["recv", "--group", "239.1.1.1:5000", "--dir"])
        .arg(&dir)
        .arg("--key-file")
        .arg(dir.join("bad"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("line 2") && err.contains("rot13"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn members_naming_a_repairer_are_repaired_by_it_not_by_the_sender() {
    let dir = temp("repairer");
    let key = keygen(&dir, "k", "aes-256-gcm");
    let g = group(5);
    let file = dir.join("site plan.bin");
    let content = data(3_000_000, 5);
    std::fs::write(&file, &content).unwrap();
    let repairer_out = dir.join("repairer");
    let repairer = recv(&g, &key, &repairer_out, &["--repairer", "--node", "7777", "--idle-timeout", "20"]);
    let outs: Vec<PathBuf> = (0..3).map(|i| dir.join(format!("member{i}"))).collect();
    let members: Vec<Child> = outs
        .iter()
        .map(|o| recv(&g, &key, o, &["--repairer-node", "7777", "--simulated-loss", "0.1", "--idle-timeout", "20"]))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let sent = lsim()
        .args(["send", "--json", "--iface", "127.0.0.1", "--rate", "40", "--group", &g, "--key-file"])
        .arg(&key)
        .arg(&file)
        .output()
        .unwrap();
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    let sender: serde_json::Value = serde_json::from_slice(&sent.stdout).unwrap();
    let mut relayed = 0;
    for (m, out) in members.into_iter().zip(&outs) {
        let o = m.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(std::fs::read(out.join("site plan.bin")).unwrap() == content, "file differs at a member");
        let stats: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        relayed += stats["relayed_feedback"].as_u64().unwrap();
    }
    let o = repairer.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(repairer_out.join("site plan.bin")).unwrap() == content);
    let rep: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let local = rep["local_repairs"].as_u64().unwrap();
    let from_sender = sender["repair_packets"].as_u64().unwrap();
    assert!(relayed > 0, "members asked the repairer");
    assert!(local > 0, "the repairer answered: {rep}");
    assert!(
        from_sender < local,
        "the repairer, not the sender, did the repairing: sender {from_sender}, repairer {local}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// One big file through a sender and three receivers: every process's peak
/// memory stays within 64 MiB (issue 8's bound), and every copy is exact.
/// CI runs it with 64 MiB; `LSIM_BIG_MIB=2048 cargo test --release -p
/// lsim-tools --test loopback -- --ignored big` runs the 2 GiB version.
fn big_file_in_bounded_memory(mib: u64) {
    let dir = temp(&format!("big{mib}"));
    let key = keygen(&dir, "k", "aes-256-gcm");
    let g = group(6);
    let file = dir.join("big.bin");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        for chunk in 0..mib {
            f.write_all(&data(1 << 20, chunk as u32)).unwrap();
        }
    }
    let (sent, received) =
        to_three_receivers(&dir, &key, &g, &file, &["--simulated-loss", "0.02", "--idle-timeout", "30"]);
    let mut peaks = vec![sent["peak_rss_kib"].clone()];
    for (stats, out) in &received {
        peaks.push(stats["peak_rss_kib"].clone());
        let same = std::process::Command::new("cmp").arg(&file).arg(out.join("big.bin")).status().unwrap();
        assert!(same.success(), "{}: the copy differs", out.display());
    }
    eprintln!("{mib} MiB: peak RSS of the sender and the three receivers, KiB: {peaks:?}");
    for p in &peaks {
        let kib = p.as_u64().expect("peak_rss_kib on Linux");
        assert!(kib <= 64 * 1024, "a process peaked at {kib} KiB: {peaks:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_64_mib_file_in_bounded_memory() {
    big_file_in_bounded_memory(64);
}

#[test]
#[ignore = "long: 2 GiB through four processes (LSIM_BIG_MIB sets the size)"]
fn big_file_in_bounded_memory_long() {
    let mib = std::env::var("LSIM_BIG_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(2048);
    big_file_in_bounded_memory(mib);
}
