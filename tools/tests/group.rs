//! The group commands as a user runs them: `lsim demo` end to end, and
//! `lsim user add` + `lsim server` with a member joining it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn lsim() -> Command {
    // Members' signing keys and known keys go to the build's scratch directory.
    let mut c = Command::new(env!("CARGO_BIN_EXE_lsim"));
    c.env("XDG_CONFIG_HOME", concat!(env!("CARGO_TARGET_TMPDIR"), "/lsim-config"));
    c
}

#[test]
fn demo_exits_0_and_prints_both_tables() {
    let out = lsim().arg("demo").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for needle in ["Table 4.1", "registration", "group join", "group leave", "Table 4.2", "195 KB", "1007949 ms"] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    // Secrecy was shown, not just claimed.
    assert!(stdout.contains("reads bob's message: yes"), "{stdout}");
    assert!(stdout.contains("reads it: no"), "{stdout}");
    assert!(stdout.contains("read the earlier chat: no"), "{stdout}");
    // A file for bob only: bob opens it, carol cannot.
    assert!(stdout.contains("bob received casualties.txt from alice"), "{stdout}");
    assert!(stdout.contains("carol: a file for other members went by"), "{stdout}");
    assert!(stdout.contains("alice has bob's signed receipt"), "{stdout}");
    assert!(stdout.contains("bob's next message (private, for bob only): Read it out"), "{stdout}");
    assert!(stdout.contains("carol's next message: All crews"), "{stdout}");
    // The viewer ran once per member per file (two receivers, five files;
    // bob alone for the casualty list).
    assert_eq!(stdout.matches("viewer] showing").count(), 11, "{stdout}");
}

/// Kills the process when the test ends, passing or not.
struct Reaper(std::process::Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn user_add_then_server_then_a_member_chats() {
    let dir = std::env::temp_dir().join(format!("lsim-cli-server-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (user, pw) in [("ann", "ann-pw"), ("ben", "ben-pw")] {
        let mut add = lsim()
            .args(["user", "add", user, "--data-dir"])
            .arg(&dir)
            .arg("--password-stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        add.stdin.take().unwrap().write_all(format!("{pw}\n").as_bytes()).unwrap();
        assert!(add.wait().unwrap().success());
    }
    // The store keeps no password.
    let users = std::fs::read_to_string(dir.join("xmpp-users")).unwrap();
    assert!(!users.contains("ann-pw") && users.contains("ann "));

    let (xmpp, keys) = (free_port(), free_port());
    let pid = std::process::id();
    let group = format!("239.192.78.{}:{}", pid % 250 + 1, 21_000 + pid % 20_000);
    let _server = Reaper(
        lsim()
            .args(["server", "--data-dir"])
            .arg(&dir)
            .args(["--xmpp-listen", &format!("127.0.0.1:{xmpp}"), "--keyserver-listen", &format!("127.0.0.1:{keys}")])
            .args(["--group", &group, "--allow-plain"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", xmpp)).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Two members with `lsim chat`, talking through stdin/stdout.
    let chat = |user: &str, pw: &str, extra: &[&str]| {
        let mut c = lsim()
            .args(["chat", "--jid", &format!("{user}@localhost"), "--room", "lsim@conference.localhost"])
            .args(["--server", &format!("127.0.0.1:{xmpp}"), "--tls", "disabled", "--allow-plain", "--no-open"])
            .args(["--iface", "127.0.0.1", "--password-stdin"])
            .args(extra)
            .arg("--download-dir")
            .arg(dir.join(user))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = c.stdin.take().unwrap();
        writeln!(stdin, "{pw}").unwrap();
        (c, stdin)
    };
    // ann is a fixed post: her position goes out when she is in.
    let (mut ann, mut ann_in) = chat("ann", "ann-pw", &["--position", "47.6205,-122.3493"]);
    let (mut ben, mut ben_in) = chat("ben", "ben-pw", &[]);
    // Read ben's output on a thread until ann's line shows up.
    let ben_out = ben.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(ben_out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    let mut said = false;
    loop {
        assert!(Instant::now() < deadline, "ben never saw ann's message: {seen:?}");
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            if line.contains("<ann> hello from ann") {
                break;
            }
            seen.push(line);
        }
        // Once both are in, ann speaks (again, until ben has it).
        if seen.iter().any(|l| l.contains("in the group")) && !said {
            std::thread::sleep(Duration::from_millis(500));
            writeln!(ann_in, "hello from ann").unwrap();
            said = true;
        }
    }
    // Positions: ben shares his with /pos, and /who lists both, signed by
    // their members (ann's shared again every minute; once is enough here).
    writeln!(ben_in, "/pos -33.5, 151.25").unwrap();
    writeln!(ben_in, "/pos 91,0").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut lines = Vec::new();
    let want = ["-- position: ann at 47.62050, -122.34930", "-- position: ben at -33.50000, 151.25000"];
    while !want.iter().all(|w| lines.iter().any(|l: &String| l.starts_with(w))) {
        assert!(Instant::now() < deadline, "ben's /who never listed both positions: {lines:?}");
        writeln!(ben_in, "/who").unwrap();
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(300)) {
            lines.push(line);
        }
    }
    assert!(lines.iter().any(|l| l.starts_with("!! position off the globe")), "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains("POS1")), "a position shown as chat: {lines:?}");
    writeln!(ann_in, "/quit").unwrap();
    writeln!(ben_in, "/quit").unwrap();
    assert!(ann.wait().unwrap().success());
    assert!(ben.wait().unwrap().success());

    // Group mode of lsim recv / lsim send: the room names the group.
    let group_args = |cmd: &str, user: &str| {
        let mut c = lsim();
        c.args([cmd, "--room", "lsim@conference.localhost", "--jid", &format!("{user}@localhost")])
            .args([
                "--server",
                &format!("127.0.0.1:{xmpp}"),
                "--tls",
                "disabled",
                "--allow-plain",
                "--iface",
                "127.0.0.1",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        c
    };
    let inbox = dir.join("ben-inbox");
    let mut recv = Reaper(group_args("recv", "ben").arg("--dir").arg(&inbox).arg("--once").spawn().unwrap());
    let recv = &mut recv.0;
    writeln!(recv.stdin.take().unwrap(), "ben-pw").unwrap();
    // Wait until ben is in the group before ann sends.
    let recv_out = recv.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(recv_out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        let line = rx.recv_timeout(Duration::from_secs(30)).expect("lsim recv --room never joined");
        if line.contains("in the group") {
            break;
        }
    }
    let file = dir.join("sitrep.txt");
    std::fs::write(&file, "sector 7 clear, 3 crews on the ridge").unwrap();
    // For named members only: someone outside the group is refused by the
    // key server, by name, and nothing is sent.
    let mut refused = group_args("send", "ann")
        .arg(&file)
        .args(["--to", "ben,nobody", "--linger", "0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(refused.stdin.take().unwrap(), "ann-pw").unwrap();
    let out = refused.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("nobody") && !err.contains("\"ben\""), "{err}");
    // For ben only: ann's lsim send exits once ben's signed receipt is in.
    let mut send = group_args("send", "ann").arg(&file).args(["--to", "ben"]).spawn().unwrap();
    writeln!(send.stdin.take().unwrap(), "ann-pw").unwrap();
    let out = send.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.contains("sitrep.txt to ben"), "{said}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while recv.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "lsim recv --room --once did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(recv.wait().unwrap().success());
    assert_eq!(std::fs::read_to_string(inbox.join("sitrep.txt")).unwrap(), "sector 7 clear, 3 crews on the ridge");
    let _ = std::fs::remove_dir_all(&dir);
}
