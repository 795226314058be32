//! Speak TAK (issue 22), across hosts: the README's group on a namespace
//! testbed, a TAK device on its own host made of takproto (PyPI, a library
//! no one here wrote: `tests/tak_peer.py`), and two lsim members that
//! bridge to it: bob from his chat client (`lsim chat --tak`) in CoT XML,
//! carol's host as a service (`lsim tak-bridge`) in TAK Protocol v1. The TAK device's position report and GeoChat reach alice, signed by
//! a bridge; alice's chat and position reach the TAK device in both forms,
//! parsed by takproto; the two bridges never echo each other or
//! themselves; and hostile CoT (a DTD with entities, 60 KB of garbage, a
//! wrong type, a position off the globe, malformed v1) is counted and
//! never reaches the group.
//!
//! Needs root, ip, nft, python3 with takproto (`.ci/run` installs them);
//! elsewhere it says so and passes, unless `LSIM_REQUIRE_SERVERS=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test harness

use std::time::Duration;

use lsim_tests::crew::{Crew, chat_seen, who_until};
use lsim_tests::{Proc, Testbed, can_run_testbed, root};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn takproto_present() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import takproto"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var("LSIM_REQUIRE_SERVERS").is_err(), "python3 with takproto is required");
        eprintln!("skipping the TAK test: no python3 with takproto (pip install takproto)");
    }
    ok
}

#[test]
fn a_tak_device_and_the_group_share_chat_and_positions_through_two_bridges() {
    if !can_run_testbed("the TAK test") || !takproto_present() {
        return;
    }
    let users = ["alice", "bob", "carol"];
    let (crew, _server) = Crew::up("tak", 5, &users);
    let mut alice = crew.join(
        "alice",
        1,
        &[crew.member_argv("alice", 1), vec!["--position".into(), "47.6205,-122.3493".into()]].concat(),
    );
    // bob bridges from his chat client, carol's host runs the bridge as a
    // service (`lsim tak-bridge`: no terminal input, ends on SIGTERM).
    let bridge = |user: &str, h: u8, format: &str| {
        let mut member = crew.member_argv(user, h);
        if user == "carol" {
            let chat = member.iter().position(|w| w == "chat").unwrap();
            member[chat] = "tak-bridge".into();
        }
        let argv = [member, vec!["--tak".into(), Testbed::addr(h), "--tak-format".into(), format.into()]].concat();
        let p = crew.join(user, h, &argv);
        p.wait(secs(10), "the bridge", |l| l.starts_with("-- bridging to TAK"));
        p
    };
    let mut bob = bridge("bob", 2, "xml");
    let mut carol = bridge("carol", 3, "v1");
    who_until(&mut alice, &["bob", "carol"], secs(20));

    let script = root().join("tests/tak_peer.py").display().to_string();
    let device = Proc::start(
        "takdevice",
        crew.tb.command(4, &["python3".into(), script, Testbed::addr(4), "20".into(), "lsim".into()]),
        "",
    );
    let mark = alice.mark();
    std::thread::sleep(secs(4));
    alice.say("hello TAK team");
    // Positions go out when shared (alice's --position again in a minute): now, while the device listens.
    alice.say("/pos 47.6205,-122.3493");

    // TAK → group: the chat, signed by a bridge, and the position, listed by /who.
    let line = chat_seen(&alice, mark, "bob", "ENGINE 7 (TAK): water at the north gate", secs(30));
    eprintln!("alice: {line}");
    let who = |p: &mut Proc| {
        let m = p.mark();
        p.say("/who");
        p.wait_from(m, secs(10), "ENGINE 7's position", |l| {
            l.starts_with("-- position: ENGINE 7 (TAK) at -33.85680, 151.21530")
        })
    };
    let pos = who(&mut alice);
    assert!(pos.contains("(via bob)") || pos.contains("(via carol)"), "{pos}");

    // Group → TAK, parsed by takproto: the chat in both forms, alice's position.
    let got = |pred: &dyn Fn(&str) -> bool, what: &str| device.wait(secs(30), what, |l| pred(l));
    got(
        &|l| l.starts_with("GOT xml uid=GeoChat.lsim.alice.lsim.") && l.contains("text=hello TAK team"),
        "alice's chat in XML",
    );
    got(
        &|l| l.starts_with("GOT v1 uid=GeoChat.lsim.alice.lsim.") && l.contains("text=hello TAK team"),
        "alice's chat in v1",
    );
    got(&|l| l.contains("uid=lsim.alice type=a-f-G-U-C callsign=alice lat=47.6205"), "alice's position");

    // Nothing echoes: the device's chat comes into the group at most once
    // per bridge, and nothing the group said comes back to it as TAK's.
    std::thread::sleep(secs(5));
    let lines = alice.lines();
    let relayed = lines.iter().filter(|l| l.contains("(TAK): water at the north gate")).count();
    assert!((1..=2).contains(&relayed), "{relayed} copies: {lines:?}");
    assert!(!lines.iter().any(|l| l.contains("(TAK): hello TAK team")), "the group's chat came back: {lines:?}");
    assert!(!lines.iter().any(|l| l.contains("(TAK): ENGINE 7 (TAK)")), "a bridge relayed a bridge: {lines:?}");
    assert!(!lines.iter().any(|l| l.contains("EVIL")), "hostile CoT reached the group: {lines:?}");
    for p in [&mut bob, &mut carol] {
        if p.name == "carol" {
            p.signal_and_wait("-TERM");
        } else {
            p.say("/quit");
        }
        let stats = p.wait(secs(20), "the bridge's counters", |l| l.starts_with("-- TAK bridge:"));
        eprintln!("{}: {stats}", p.name);
        assert!(!stats.contains(" 0 looped"), "the other bridge's events were not seen and refused: {stats}");
        let malformed: u64 = stats.split("dropped ").nth(1).and_then(|r| r.split(' ').next()).unwrap().parse().unwrap();
        assert!(malformed >= 5, "the hostile datagrams were not all refused as malformed: {stats}");
    }
    let echoed: Vec<String> = device.lines().into_iter().filter(|l| l.contains("(TAK): ")).collect();
    assert!(echoed.is_empty(), "the device's own chat came back to it: {echoed:?}");
    let bad = device.lines().into_iter().filter(|l| l.starts_with("BAD")).collect::<Vec<_>>();
    assert!(bad.is_empty(), "takproto could not read: {bad:?}");
}
