//! People come and go (issue 20, first part): `lsim user` against a running
//! group of four on loopback. Revoking carol while she keeps chatting moves
//! the others to a new epoch within a second, ends her XMPP session, keeps
//! everything she sends from everyone (within the old epoch's 2 s grace her
//! signature is refused, as the rekey names her revoked; after it her
//! packets no longer open), and refuses her login, also after the server
//! restarts; `passwd` ends the
//! user's session, the old password fails and the new one works; bad names,
//! unknown users and a caller without rights get one-line errors and change
//! nothing; every action is in the audit log.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test harness

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use lsim_tests::{Proc, binary, free_port, lsim, text};

struct Group {
    dir: String,
    xmpp: u16,
    keys: u16,
    mc: String,
}

impl Group {
    fn server(&self) -> Proc {
        let mut c = Command::new(binary("lsim"));
        c.args(["server", "--data-dir", &self.dir, "--xmpp-listen", &format!("127.0.0.1:{}", self.xmpp)]).args([
            "--keyserver-listen",
            &format!("127.0.0.1:{}", self.keys),
            "--group",
            &self.mc,
            "--allow-plain",
        ]);
        let p = Proc::start("server", c, "");
        p.wait(Duration::from_secs(20), "the server up", |l| l.contains("the group key is at epoch"));
        p
    }

    fn chat(&self, user: &str, password: &str) -> Proc {
        let mut c = Command::new(binary("lsim"));
        c.args(["chat", "--jid", &format!("{user}@localhost"), "--room", "lsim@conference.localhost"])
            .args(["--server", &format!("127.0.0.1:{}", self.xmpp), "--tls", "disabled", "--allow-plain"])
            .args(["--iface", "127.0.0.1", "--password-stdin", "--no-open", "--download-dir"])
            .arg(Path::new(&self.dir).join(format!("dl-{user}")));
        Proc::start(user, c, &format!("{password}\n"))
    }

    fn user(&self, verb: &str, name: &str, stdin: &str) -> Output {
        let mut args = vec!["user", verb];
        if !name.is_empty() {
            args.push(name);
        }
        args.extend(["--data-dir", &self.dir]);
        if matches!(verb, "add" | "passwd") {
            args.push("--password-stdin");
        }
        lsim(&args, stdin)
    }
}

fn epoch_line(l: &str) -> Option<u32> {
    l.strip_prefix("-- new group key (epoch ")?.strip_suffix(')')?.parse().ok()
}

#[test]
fn revoke_passwd_and_bad_requests_against_a_running_group_of_four() {
    let tmp = tempfile::tempdir().unwrap();
    let pid = std::process::id();
    let g = Group {
        dir: tmp.path().join("server").display().to_string(),
        xmpp: free_port(),
        keys: free_port(),
        mc: format!("239.192.80.{}:{}", pid % 250 + 1, 23_000 + pid % 20_000),
    };
    let users = ["alice", "bob", "carol", "dave"];
    for u in users {
        let o = g.user("add", u, &format!("{u}-pw\n"));
        assert!(o.status.success(), "{}", text(&o));
    }
    let mut server = g.server();
    let mut m: Vec<Proc> = users.iter().map(|u| g.chat(u, &format!("{u}-pw"))).collect();
    for p in &m {
        p.wait(Duration::from_secs(30), "the join", |l| l.starts_with("-- in the group"));
    }
    // Everyone has seen everyone's join rekey settle.
    std::thread::sleep(Duration::from_secs(2));
    m[2].say("before the revocation");
    m[0].wait(Duration::from_secs(10), "carol's chat", |l| l.contains("<carol> before the revocation"));

    // Revoke carol while she keeps chatting.
    let marks: Vec<usize> = m.iter().map(Proc::mark).collect();
    let t0 = Instant::now();
    let o = g.user("revoke", "carol", "");
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("revoked carol: 1 session(s) ended, group rekeyed to epoch"), "{}", text(&o));
    for i in [0, 1, 3] {
        let l = m[i].wait_from(marks[i], Duration::from_secs(5), "the rekey", |l| epoch_line(l).is_some());
        let _ = l;
    }
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(1), "the others were on a new epoch after {took:?}");
    server.wait(Duration::from_secs(5), "the revocation in the server's log", |l| {
        l.contains("revoke carol: ok: revoked carol")
    });
    m[2].wait_from(marks[2], Duration::from_secs(5), "the end of carol's session", |l| l.contains("<not-authorized/>"));
    // At once: the old epoch still opens for 2 s (data in flight), but the
    // rekey named carol revoked, so what she signs is refused. After the
    // grace the old epoch is retired: her packets do not even open.
    let marks: Vec<usize> = m.iter().map(Proc::mark).collect();
    for i in 0..10 {
        m[2].say(&format!("after the revocation {i}"));
        std::thread::sleep(Duration::from_millis(350));
    }
    std::thread::sleep(Duration::from_secs(2));
    let refused = [0, 1, 3].iter().any(|&i| {
        m[i].lines()
            .iter()
            .skip(marks[i])
            .any(|l| l.contains("signed by carol, whose certificate the key server revoked"))
    });
    assert!(refused, "no member refused carol's signature within the grace");
    for i in [0, 1, 3] {
        let leaked: Vec<String> =
            m[i].lines().into_iter().skip(marks[i]).filter(|l| l.contains("after the revocation")).collect();
        assert!(leaked.is_empty(), "{} read carol's chat after her revocation: {leaked:?}", m[i].name);
    }
    // Her login is refused.
    let again = g.chat("carol", "carol-pw");
    again.wait(Duration::from_secs(20), "the refused login", |l| l.contains("refused the login"));

    // passwd: bob's session ends; the old password fails, the new works.
    let mark = m[1].mark();
    let o = g.user("passwd", "bob", "bob-new\n");
    assert!(o.status.success() && text(&o).contains("1 session(s) ended"), "{}", text(&o));
    m[1].wait_from(mark, Duration::from_secs(5), "the end of bob's session", |l| l.contains("<not-authorized/>"));
    g.chat("bob", "bob-pw")
        .wait(Duration::from_secs(20), "the old password refused", |l| l.contains("refused the login"));
    g.chat("bob", "bob-new")
        .wait(Duration::from_secs(30), "bob back with the new one", |l| l.starts_with("-- in the group"));

    // Bad requests: one line each, nothing changed.
    let before = text(&g.user("list", "", ""));
    for (verb, name, want) in [
        ("remove", "nosuch", "no user nosuch"),
        ("add", "a@b", "@"),
        ("remove", "a/b", "/"),
        ("remove", "bel\u{7}l", "control"),
        ("add", "carol", "carol is revoked"),
        ("passwd", "nosuch", "no user nosuch"),
    ] {
        let o = g.user(verb, name, "pw\n");
        let said = text(&o);
        assert!(
            !o.status.success() && said.contains(want) && said.trim().lines().count() == 1,
            "{verb} {name:?}: {said}"
        );
    }
    if std::fs::read_to_string("/proc/self/status").unwrap().lines().any(|l| l.starts_with("Uid:\t0\t")) {
        use std::os::unix::process::CommandExt;
        let o = Command::new(binary("lsim"))
            .args(["user", "remove", "alice", "--data-dir", &g.dir])
            .uid(65534)
            .output()
            .unwrap();
        assert!(!o.status.success() && text(&o).contains("only the server's own user or root"), "{}", text(&o));
    }
    assert_eq!(text(&g.user("list", "", "")), before, "a refused request changed the users");
    assert!(before.contains("carol (revoked)") && before.contains("alice"), "{before}");

    // After a restart carol is still revoked.
    drop(m);
    drop(again);
    server.signal_and_wait("-TERM");
    let _server = g.server();
    assert!(text(&g.user("list", "", "")).contains("carol (revoked)"));
    g.chat("carol", "carol-pw")
        .wait(Duration::from_secs(20), "carol refused after the restart", |l| l.contains("refused the login"));
    let log = text(&g.user("log", "", ""));
    assert!(
        log.contains("revoke carol: ok") && log.contains("passwd bob: ok") && log.contains("add carol: refused"),
        "{log}"
    );
}
