//! Enrollment without typing fingerprints (issue 20): `lsim user invite`
//! on a running group server prints a one-time code (and a QR code, and a
//! PNG that zbarimg, a reader no one here wrote, decodes to the same
//! code); `lsim chat --invite CODE` on a new device enrolls with the code
//! alone, joins and chats, and saves a profile with which a plain
//! `lsim chat` joins again. The same code a second time, an expired code
//! and a code with one character changed are refused with one-line
//! errors; so are invitations for bad or taken names. Neither the audit
//! log nor the server's files hold the code's secret. A device keeps its
//! signing key across runs: dave restarted is not flagged, but his profile
//! copied to another device (someone else with his password) makes alice
//! say "dave's key changed", once.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test harness

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use lsim_tests::{Proc, binary, free_port, lsim, text};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// `lsim chat` as a new device whose configuration lives in `home`.
fn device(name: &str, home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(binary("lsim"));
    c.env("XDG_CONFIG_HOME", home).arg("chat").args(args).args(["--iface", "127.0.0.1", "--no-open"]);
    c.arg("--download-dir").arg(home.join(format!("dl-{name}")));
    c
}

/// One line of error, and failure.
fn refused(o: &std::process::Output, want: &str) {
    let said = text(o);
    assert!(
        !o.status.success() && said.contains(want) && said.trim().lines().count() == 1,
        "wanted one line saying {want:?}, got: {said}"
    );
}

#[test]
fn an_invited_member_enrolls_with_the_code_alone_and_the_code_works_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("server").display().to_string();
    let pid = std::process::id();
    let xmpp = free_port();
    let mc = format!("239.192.81.{}:{}", pid % 250 + 1, 24_000 + pid % 20_000);
    assert!(lsim(&["user", "add", "alice", "--data-dir", &dir, "--password-stdin"], "alice-pw\n").status.success());
    let mut c = Command::new(binary("lsim"));
    c.args(["server", "--data-dir", &dir, "--tls", "--xmpp-listen", &format!("127.0.0.1:{xmpp}")]).args([
        "--keyserver-listen",
        &format!("127.0.0.1:{}", free_port()),
        "--group",
        &mc,
    ]);
    let server = Proc::start("server", c, "");
    server.wait(secs(20), "the server up", |l| l.contains("the group key is at epoch"));
    let pin = server.wait(secs(5), "the certificate", |l| l.starts_with("XMPP TLS"));
    let pin = pin.split_whitespace().last().unwrap().to_string();

    // The invitation: a line, the code, a QR code on the terminal, a PNG.
    let png = tmp.path().join("dave.png");
    let png_s = png.display().to_string();
    let o = lsim(&["user", "invite", "dave", "--data-dir", &dir, "--expires", "1h", "--png", &png_s], "");
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let mut lines = out.lines();
    assert!(lines.next().unwrap().starts_with("invited dave@localhost until "), "{out}");
    let code = lines.next().unwrap().to_string();
    assert!(code.starts_with("LSIM1") && code.len() > 100, "{out}");
    assert!(out.contains('█') && out.contains(&format!("lsim chat --invite {code}")), "{out}");
    match Command::new("zbarimg").args(["-q", "--raw", &png_s]).output() {
        Ok(z) => assert_eq!(String::from_utf8_lossy(&z.stdout).trim(), code, "zbarimg read another code"),
        Err(_) if std::env::var("LSIM_REQUIRE_SERVERS").is_ok_and(|v| v == "1") => panic!("zbarimg is missing"),
        Err(_) => eprintln!("zbarimg missing: the PNG is not read back (apt-get install zbar-tools)"),
    }

    let mut alice = Command::new(binary("lsim"));
    alice.args(["chat", "--jid", "alice@localhost", "--room", "lsim@conference.localhost", "--password-stdin"]).args([
        "--server",
        &format!("127.0.0.1:{xmpp}"),
        "--tls",
        "required",
        "--pin",
        &pin,
        "--iface",
        "127.0.0.1",
        "--no-open",
    ]);
    alice.arg("--download-dir").arg(tmp.path().join("dl-alice"));
    alice.env("XDG_CONFIG_HOME", tmp.path().join("alice-home"));
    let alice = Proc::start("alice", alice, "alice-pw\n");
    alice.wait(secs(30), "alice in", |l| l.starts_with("-- in the group"));

    // dave's device: the code, nothing else.
    let home = tmp.path().join("dave-home");
    let mut dave = Proc::start("dave", device("dave", &home, &["--invite", &code]), "");
    dave.wait(secs(30), "dave enrolled", |l| l.starts_with("-- enrolled as dave@localhost"));
    dave.wait(secs(30), "dave in", |l| l.starts_with("-- in the group"));
    dave.say("hello from dave");
    alice.wait(secs(15), "dave's chat", |l| l.contains("<dave> hello from dave"));
    let profile = std::fs::read_to_string(home.join("lsim/profile.toml")).unwrap();
    assert!(profile.contains("jid = \"dave@localhost\"") && profile.contains(&pin), "{profile}");

    // The same code again, on another device: refused by the server.
    let other = tmp.path().join("other-home");
    let o = device("x", &other, &["--invite", &code]).output().unwrap();
    refused(&o, "already used");
    // One character changed: refused before anything is sent.
    let pos = 40;
    let flip = if &code[pos..=pos] == "A" { "B" } else { "A" };
    let damaged = format!("{}{flip}{}", &code[..pos], &code[pos + 1..]);
    refused(&device("x", &other, &["--invite", &damaged]).output().unwrap(), "damaged");
    // Expired.
    let o = lsim(&["user", "invite", "erin", "--data-dir", &dir, "--expires", "1", "--png", &png_s], "");
    assert!(o.status.success(), "{}", text(&o));
    let erin = String::from_utf8_lossy(&o.stdout).lines().nth(1).unwrap().to_string();
    std::thread::sleep(Duration::from_millis(1500));
    refused(&device("x", &other, &["--invite", &erin]).output().unwrap(), "expired");
    assert!(!other.join("lsim/profile.toml").exists(), "a refused code saved a profile");

    // Bad or taken names, and bounds: one line each.
    for (name, expires, want) in [
        ("a@b", "1h", "not a valid user name"),
        ("bel\u{7}l", "1h", "control"),
        ("alice", "1h", "alice exists"),
        ("dave", "1h", "dave exists"),
        ("frank", "31d", "30 days"),
        ("frank", "soon", "--expires"),
    ] {
        let o = lsim(&["user", "invite", name, "--data-dir", &dir, "--expires", expires, "--png", &png_s], "");
        refused(&o, want);
    }

    // dave again, from the saved profile alone.
    dave.say("/quit");
    drop(dave);
    let mut again = Proc::start("dave again", device("dave", &home, &[]), "");
    again.wait(secs(30), "dave in again", |l| l.starts_with("-- in the group"));
    let mark = alice.mark();
    again.say("dave, back from the profile");
    alice.wait_from(mark, secs(15), "dave's chat", |l| l.contains("<dave> dave, back from the profile"));
    let flagged = |from: usize| alice.lines().iter().skip(from).any(|l| l.contains("dave's key changed"));
    assert!(!flagged(0), "the same device, restarted, was flagged");

    // Someone else with dave's password (his profile copied to another
    // device, which has its own signing key): alice is warned, once.
    again.say("/quit");
    drop(again);
    let thief = tmp.path().join("thief-home");
    std::fs::create_dir_all(thief.join("lsim")).unwrap();
    std::fs::copy(home.join("lsim/profile.toml"), thief.join("lsim/profile.toml")).unwrap();
    let mut other = Proc::start("dave elsewhere", device("dave", &thief, &[]), "");
    other.wait(secs(30), "the copy in", |l| l.starts_with("-- in the group"));
    let mark = alice.mark();
    other.say("it is me, dave");
    let warned = alice.wait_from(mark, secs(15), "the warning", |l| l.contains("dave's key changed"));
    assert!(warned.contains("someone else holding dave's password"), "{warned}");
    alice.wait_from(mark, secs(15), "the chat after it", |l| l.contains("<dave> it is me, dave"));
    other.say("and again");
    alice.wait_from(mark, secs(15), "the next chat", |l| l.contains("<dave> and again"));
    let warnings = alice.lines().iter().skip(mark).filter(|l| l.contains("dave's key changed")).count();
    assert_eq!(warnings, 1, "flagged once");

    // Logged, without the secret.
    let log = text(&lsim(&["user", "log", "--data-dir", &dir], ""));
    assert!(log.contains("invite dave: ok") && log.contains("enroll dave: ok"), "{log}");
    let body = &code[5..];
    for f in ["audit.log", "invites"] {
        let stored = std::fs::read_to_string(Path::new(&dir).join(f)).unwrap();
        assert!(!stored.contains(body) && !stored.contains(&code[10..40]), "{f} holds the code");
    }
    let list = text(&lsim(&["user", "list", "--data-dir", &dir], ""));
    assert!(list.contains("dave") && !list.contains("erin"), "{list}");
}
