//! Fault campaigns on `lsim send` and `lsim recv` as separate processes over
//! loopback multicast (issue 8), each a seeded series of rounds. CI runs a
//! few rounds; `LSIM_CAMPAIGN_ROUNDS=N` runs N and `LSIM_CAMPAIGN_SEED=S`
//! replays the run that printed seed S.
//!
//! What every round checks, all along (polling the receivers' directories)
//! and at the end: nothing ever appears under a final name but the exact
//! file; and once every receiver has ended, no file at all is left but the
//! exact copies (no partial file, no temporary).
//!
//! - The sender is killed -9 at a random point of the file. The receivers
//!   either give up (and keep nothing) or are still waiting; either way the
//!   same file sent again arrives bit-exact at all three.
//! - One of three receivers is killed -9 at a random point of the file and
//!   started again in the same directory, while the sender still sends or
//!   after it has gone. The other two are unaffected. The restarted one
//!   catches up on the same transfer (it NACKs every block it missed) if the
//!   sender stays long enough to repair them; otherwise it gives up keeping
//!   nothing (not even the killed process's partial file), and a re-send
//!   gets it the file.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test harness

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use lsim_testsupport::campaign::{rounds, seed};
use lsim_transport::rng::Rng;

mod common;

use common::{Proc, data, lsim};

fn temp_dir(name: &str) -> PathBuf {
    common::temp("faults", name)
}

/// A group and port of its own for each round of each test.
fn group(test: u8, round: usize) -> String {
    let pid = std::process::id();
    let round = (round % 60) as u32;
    format!(
        "239.81.{}.{}:{}",
        pid % 250,
        u32::from(test) * 60 + round,
        20_000 + pid % 10_000 + u32::from(test) * 60 + round
    )
}

fn keygen(dir: &Path) -> PathBuf {
    let key = dir.join("group.key");
    let out = lsim().args(["keygen", "--suite", "aes-256-gcm", "--out"]).arg(&key).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    key
}

/// `lsim recv --once` into `dir`, giving up after `idle` seconds without a sender.
fn recv(g: &str, key: &Path, dir: &Path, idle: f64) -> Proc {
    let child = lsim()
        .args(["recv", "--once", "--json", "--iface", "127.0.0.1", "--group", g, "--key-file"])
        .arg(key)
        .arg("--dir")
        .arg(dir)
        .args(["--idle-timeout", &idle.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Proc::new(child)
}

/// `lsim send` of `file` at `mbit` Mbit/s.
fn send(g: &str, key: &Path, file: &Path, mbit: u32) -> Proc {
    let child = lsim()
        .args([
            "send",
            "--iface",
            "127.0.0.1",
            "--linger",
            "1",
            "--rate",
            &mbit.to_string(),
            "--group",
            g,
            "--key-file",
        ])
        .arg(key)
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Proc::new(child)
}

/// The receivers' directories and the one file that may appear in them.
struct Downloads<'a> {
    dirs: &'a [PathBuf],
    name: &'a str,
    content: &'a [u8],
}

impl Downloads<'_> {
    /// Nothing under a final name but the exact file (temporaries, hidden,
    /// are allowed while a receiver runs).
    fn check_final_names(&self, when: &str) {
        for d in self.dirs {
            for e in std::fs::read_dir(d).unwrap() {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                assert_eq!(name, self.name, "{when}: an unexpected file in {}", d.display());
                // Written under a temporary name and renamed only when
                // verified: if it is there, it is whole.
                let got = std::fs::read(d.join(&name)).unwrap();
                assert!(
                    got == self.content,
                    "{when}: {} holds a wrong or partial {name} ({} bytes)",
                    d.display(),
                    got.len()
                );
            }
        }
    }

    /// What `dir` holds once its receiver has ended: the file's name, if it
    /// is there; anything else (a temporary included) fails the test.
    fn settled(&self, dir: &Path, when: &str) -> bool {
        self.check_final_names(when);
        let names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        match names.as_slice() {
            [] => false,
            [n] if n == self.name => true,
            _ => panic!("{when}: {} holds {names:?} after its receiver ended", dir.display()),
        }
    }

    /// Waits for `procs` to end (checking the directories meanwhile) and
    /// returns their outputs.
    fn wait(&self, procs: Vec<Proc>, limit: Duration, when: &str) -> Vec<Output> {
        let mut procs = procs;
        let start = Instant::now();
        while !procs.iter_mut().all(Proc::finished) {
            self.check_final_names(when);
            assert!(start.elapsed() < limit, "{when}: still running after {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        procs.into_iter().map(Proc::output).collect()
    }
}

#[test]
fn a_sender_killed_mid_file_leaves_nothing_and_a_re_send_arrives_whole() {
    let mut rng = Rng::new(seed("kill -9 of lsim send"));
    let dir = temp_dir("sender");
    let key = keygen(&dir);
    let name = "sector map.bin";
    let (mut gave_up, mut waited) = (0, 0);
    // The two endings alternate, so that even a short run sees both.
    let first = rng.below(2);
    for round in 0..rounds(3) {
        let content = data(1_500_000 + rng.below(1_000_000) as usize, round as u32);
        let file = dir.join(name);
        std::fs::write(&file, &content).unwrap();
        let outs: Vec<PathBuf> = (0..3).map(|i| dir.join(format!("r{round}-rx{i}"))).collect();
        let landing = Downloads { dirs: &outs, name, content: &content };
        let g = group(1, round);
        let rxs: Vec<Proc> = outs.iter().map(|o| recv(&g, &key, o, 2.0)).collect();
        std::thread::sleep(Duration::from_millis(300));
        // 8 Mbit/s: about 1.5 to 2.5 s for the file; killed somewhere in it.
        let sender = send(&g, &key, &file, 8);
        let kill_at = Duration::from_millis(100 + rng.below(1300));
        std::thread::sleep(kill_at);
        sender.kill();
        let when = format!("round {round} (sender killed after {kill_at:?})");
        let rxs = if (round as u64 + first).is_multiple_of(2) {
            // The receivers give up on the dead sender and keep nothing.
            for o in landing.wait(rxs, Duration::from_secs(20), &when) {
                let err = String::from_utf8_lossy(&o.stderr);
                assert!(!o.status.success() && err.contains("sender is gone"), "{when}: {err}");
            }
            for o in &outs {
                assert!(!landing.settled(o, &when), "{when}: a file arrived from a killed sender");
            }
            gave_up += 1;
            outs.iter().map(|o| recv(&g, &key, o, 10.0)).collect()
        } else {
            // The same file again while they still wait on the dead sender.
            waited += 1;
            rxs
        };
        std::thread::sleep(Duration::from_millis(300));
        let resend = send(&g, &key, &file, 100);
        let when = format!("{when}, re-sent");
        for o in landing.wait(rxs, Duration::from_secs(30), &when) {
            assert!(o.status.success(), "{when}: {}", String::from_utf8_lossy(&o.stderr));
        }
        for o in &outs {
            assert!(landing.settled(o, &when), "{when}: no file in {}", o.display());
        }
        let o = landing.wait(vec![resend], Duration::from_secs(20), &when).remove(0);
        assert!(o.status.success(), "{when}: the re-send: {}", String::from_utf8_lossy(&o.stderr));
        for o in &outs {
            std::fs::remove_dir_all(o).unwrap();
        }
    }
    eprintln!("sender kill campaign: receivers gave up {gave_up} times, waited for the re-send {waited} times");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_receiver_killed_and_restarted_mid_file_ends_with_the_exact_file() {
    let mut rng = Rng::new(seed("kill -9 and restart of lsim recv"));
    let dir = temp_dir("receiver");
    let key = keygen(&dir);
    let name = "survey.bin";
    // Restarted while the sender still sent, yet it ended before the catching up did.
    let (mut caught_up, mut re_sent, mut late_catch_up) = (0, 0, 0);
    // Restarted while the sender still sends, and after it is gone, in turn.
    let first = rng.below(2);
    for round in 0..rounds(4) {
        let content = data(2_000_000 + rng.below(1_000_000) as usize, 100 + round as u32);
        let file = dir.join(name);
        std::fs::write(&file, &content).unwrap();
        let outs: Vec<PathBuf> = (0..3).map(|i| dir.join(format!("r{round}-rx{i}"))).collect();
        let landing = Downloads { dirs: &outs, name, content: &content };
        let g = group(2, round);
        let mut rxs: Vec<Option<Proc>> = outs.iter().map(|o| Some(recv(&g, &key, o, 3.0))).collect();
        std::thread::sleep(Duration::from_millis(300));
        // 8 Mbit/s: 2 to 3 s for the file.
        let mut sender = send(&g, &key, &file, 8);
        let victim = rng.below(3) as usize;
        let kill_at = Duration::from_millis(100 + rng.below(1800));
        std::thread::sleep(kill_at);
        rxs[victim].take().unwrap().kill();
        let late = !(round as u64 + first).is_multiple_of(2);
        let mut when = format!("round {round} (receiver {victim} killed after {kill_at:?}");
        if late {
            // Down until the sender has finished and gone.
            when += ", restarted after the sender ended)";
            let start = Instant::now();
            while !sender.finished() {
                landing.check_final_names(&when);
                assert!(start.elapsed() < Duration::from_secs(30), "{when}: the sender never ended");
                std::thread::sleep(Duration::from_millis(50));
            }
        } else {
            let down = Duration::from_millis(rng.below(500));
            when += &format!(", down {down:?})");
            std::thread::sleep(down);
            landing.check_final_names(&when);
        }
        let sending = !sender.finished();
        rxs[victim] = Some(recv(&g, &key, &outs[victim], 3.0));
        let rxs: Vec<Proc> = rxs.into_iter().map(Option::unwrap).collect();
        let mut outputs = landing.wait(rxs, Duration::from_secs(30), &when);
        for (i, o) in outputs.iter().enumerate() {
            if i != victim {
                assert!(
                    o.status.success(),
                    "{when}: receiver {i} was affected: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                assert!(landing.settled(&outs[i], &when));
            }
        }
        let o = landing.wait(vec![sender], Duration::from_secs(20), &when).remove(0);
        assert!(o.status.success(), "{when}: the sender: {}", String::from_utf8_lossy(&o.stderr));
        let restarted = outputs.remove(victim);
        let stderr = String::from_utf8_lossy(&restarted.stderr).into_owned();
        if landing.settled(&outs[victim], &when) {
            // Back while the sender still sent: it NACKed the blocks it
            // missed and got the whole file from the same transfer.
            assert!(sending, "{when}: a file with no sender left");
            assert!(restarted.status.success(), "{when}: {stderr}");
            caught_up += 1;
        } else {
            // The sender ended before it could repair everything the
            // restarted receiver missed (always so when it was back only
            // after the sender had gone): it gave up and kept nothing, the
            // killed process's partial file included; a re-send gets it the file.
            assert!(!restarted.status.success() && stderr.contains("sender is gone"), "{when}: {stderr}");
            let rx = recv(&g, &key, &outs[victim], 10.0);
            std::thread::sleep(Duration::from_millis(300));
            let resend = send(&g, &key, &file, 100);
            let when = format!("{when}, re-sent");
            let o = landing.wait(vec![rx], Duration::from_secs(30), &when).remove(0);
            assert!(o.status.success(), "{when}: {}", String::from_utf8_lossy(&o.stderr));
            assert!(landing.settled(&outs[victim], &when), "{when}: no file after the re-send");
            let o = landing.wait(vec![resend], Duration::from_secs(20), &when).remove(0);
            assert!(o.status.success(), "{when}: the re-send: {}", String::from_utf8_lossy(&o.stderr));
            if sending {
                late_catch_up += 1;
            }
            re_sent += 1;
        }
        for o in &outs {
            std::fs::remove_dir_all(o).unwrap();
        }
    }
    eprintln!(
        "receiver restart campaign: caught up on the same transfer {caught_up} times, got it from a re-send {re_sent} \
         times ({late_catch_up} of them restarted while the sender still sent)"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// One `lsim chat` member, driven through stdin, its stdout read line by line.
struct Chat {
    /// Killed with the member.
    _proc: Proc,
    stdin: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Chat {
    fn start(user: &str, xmpp: u16, download: &Path, rate_mbit: u32) -> Chat {
        use std::io::{BufRead, Write};
        let mut c = lsim()
            .args(["chat", "--jid", &format!("{user}@localhost"), "--room", "lsim@conference.localhost"])
            .args(["--server", &format!("127.0.0.1:{xmpp}"), "--tls", "disabled", "--allow-plain", "--no-open"])
            .args(["--iface", "127.0.0.1", "--password-stdin", "--rate", &rate_mbit.to_string()])
            .arg("--download-dir")
            .arg(download)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = c.stdin.take().unwrap();
        writeln!(stdin, "{user}-pw").unwrap();
        let out = c.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Chat { _proc: Proc::new(c), stdin, lines, seen: Vec::new() }
    }

    fn say(&mut self, line: &str) {
        use std::io::Write;
        writeln!(self.stdin, "{line}").unwrap();
    }

    /// Waits for a line containing `needle` (or one already seen).
    fn expect(&mut self, needle: &str, when: &str) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("{when}: never saw {needle:?}; saw {:?}", self.seen),
            }
        }
    }
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn a_file_and_chat_under_way_get_through_when_the_group_server_is_killed() {
    let mut rng = Rng::new(seed("kill -9 of lsim server mid-transfer"));
    for round in 0..rounds(2) {
        let dir = temp_dir(&format!("server{round}"));
        let users = ["ann", "ben", "cat"];
        for user in users {
            use std::io::Write;
            let mut add = lsim()
                .args(["user", "add", user, "--data-dir"])
                .arg(dir.join("server"))
                .arg("--password-stdin")
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            add.stdin.take().unwrap().write_all(format!("{user}-pw\n").as_bytes()).unwrap();
            assert!(add.wait().unwrap().success());
        }
        let (xmpp, keys) = (free_tcp_port(), free_udp_port());
        let g = group(3, round);
        let mut server = Proc::new(
            lsim()
                .args(["server", "--data-dir"])
                .arg(dir.join("server"))
                .args([
                    "--xmpp-listen",
                    &format!("127.0.0.1:{xmpp}"),
                    "--keyserver-listen",
                    &format!("127.0.0.1:{keys}"),
                ])
                .args(["--group", &g, "--iface", "127.0.0.1", "--allow-plain"])
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", xmpp)).is_err() {
            assert!(Instant::now() < deadline && !server.finished(), "lsim server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        // ann sends at 8 Mbit/s: 4 to 6 s for the file.
        let mut members: Vec<Chat> =
            users.iter().map(|u| Chat::start(u, xmpp, &dir.join(u), if *u == "ann" { 8 } else { 10 })).collect();
        let joined: Vec<u32> = members
            .iter_mut()
            .map(|m| {
                let line = m.expect("-- in the group", "joining");
                line.split("epoch ").nth(1).and_then(|r| r.split(',').next()).unwrap().parse().unwrap()
            })
            .collect();
        // Everyone at the last join's epoch before ann sends under it.
        let last = *joined.iter().max().unwrap();
        for (m, epoch) in members.iter_mut().zip(joined) {
            if epoch < last {
                m.expect(&format!("-- new group key (epoch {last})"), "the last join");
            }
        }
        let name = "fire line.bin";
        let content = data(4_000_000 + rng.below(2_000_000) as usize, 300 + round as u32);
        std::fs::write(dir.join(name), &content).unwrap();
        members[0].say(&format!("/send {}", dir.join(name).display()));
        members[1].expect("-- receiving:", "the transfer starting");
        // Killed -9 somewhere in the transfer: the XMPP server and the key server at once.
        let kill_at = Duration::from_millis(rng.below(2000));
        std::thread::sleep(kill_at);
        server.kill();
        let killed = Instant::now();
        let when = format!("round {round}: lsim server killed {kill_at:?} into the transfer");
        // Still under way: nobody has the file yet.
        for (m, user) in members.iter_mut().zip(users).skip(1) {
            while let Ok(line) = m.lines.try_recv() {
                m.seen.push(line);
            }
            assert!(
                !m.seen.iter().any(|l| l.contains("-- received")),
                "{when}: {user} had the file before the kill: {:?}",
                m.seen
            );
        }
        members[0].say("still here after the server died");
        for (m, user) in members.iter_mut().zip(users).skip(1) {
            m.expect("!! XMPP lost", &when);
            m.expect("<ann> still here after the server died", &when);
            let line = m.expect(&format!("-- received {name} from"), &when);
            let got = std::fs::read(dir.join(user).join(name)).unwrap();
            assert!(got == content, "{when}: {user} got a different file ({line})");
            let names: Vec<String> = std::fs::read_dir(dir.join(user))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            assert_eq!(names, [name], "{when}: {user}'s download directory");
        }
        eprintln!("{when}: chat and file delivered {:?} after the kill", killed.elapsed());
        drop(members);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
