//! Positions from a GPS receiver (issue 22), across hosts: Debian's gpsd on
//! alice's host reads a GPS receiver (NMEA over its UDP source, sent by
//! `tests/nmea_receiver.py`); alice runs `lsim chat --position gpsd`. bob,
//! on another host, sees her position with gpsd's accuracy, and sees it
//! follow her when she moves 500 m; when gpsd goes away alice says so
//! once and the group goes on.
//!
//! Needs root, ip, nft and gpsd (`.ci/run` installs them); elsewhere it
//! says so and passes, unless `LSIM_REQUIRE_SERVERS=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test harness

use std::time::Duration;

use lsim_tests::crew::{Crew, chat_seen};
use lsim_tests::{Proc, can_run_testbed, root};

const GPSD: &str = "/usr/sbin/gpsd";
/// Where gpsd reads the receiver's sentences, inside alice's host.
const NMEA_PORT: &str = "15000";

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn gpsd_present() -> bool {
    let ok = std::path::Path::new(GPSD).exists();
    if !ok {
        assert!(std::env::var("LSIM_REQUIRE_SERVERS").is_err(), "gpsd is required");
        eprintln!("skipping the gpsd test: no {GPSD} (apt install gpsd)");
    }
    ok
}

fn receiver(crew: &Crew, lat: &str, lon: &str) -> Proc {
    let script = root().join("tests/nmea_receiver.py").display().to_string();
    let argv = ["python3".to_string(), script, NMEA_PORT.into(), lat.into(), lon.into(), "600".into()];
    let p = Proc::start("receiver", crew.tb.command(1, &argv), "");
    p.wait(secs(10), "the receiver", |l| l.starts_with("receiver at"));
    p
}

/// bob's `/who` line for alice, once `pred` holds for it.
fn alice_at(bob: &mut Proc, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + secs(40);
    loop {
        let m = bob.mark();
        bob.say("/who");
        std::thread::sleep(Duration::from_millis(500));
        let found = bob.lines().into_iter().skip(m).find(|l| l.starts_with("-- position: alice at") && pred(l));
        if let Some(l) = found {
            return l;
        }
        assert!(std::time::Instant::now() < deadline, "bob never listed {what}:\n{}", bob.lines().join("\n"));
        std::thread::sleep(secs(1));
    }
}

#[test]
fn a_members_gps_position_reaches_the_group_and_follows_her_as_she_moves() {
    if !can_run_testbed("the gpsd test") || !gpsd_present() {
        return;
    }
    let (crew, _server) = Crew::up("gpsd", 3, &["alice", "bob"]);
    let sock = crew.work.path().join("gpsd.sock").display().to_string();
    let gpsd_argv: Vec<String> =
        [GPSD, "-N", "-n", "-b", "-S", "2947", "-F", &sock, &format!("udp://127.0.0.1:{NMEA_PORT}")]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let gpsd = Proc::start("gpsd", crew.tb.command(1, &gpsd_argv), "");
    let first = receiver(&crew, "47.6205", "-122.3493");
    // bob first: a member gets what is sent while it is a member.
    let mut bob = crew.join("bob", 2, &crew.member_argv("bob", 2));
    let mut alice =
        crew.join("alice", 1, &[crew.member_argv("alice", 1), vec!["--position".into(), "gpsd".into()]].concat());
    alice.wait(secs(10), "gpsd's answer", |l| l.starts_with("-- gpsd 3.") && l.ends_with("at 127.0.0.1:2947"));
    alice.wait(secs(20), "a fix", |l| l == "-- gpsd: a fix at 47.62050, -122.34930");

    // gpsd's accuracy (its eph, from the receiver's HDOP) comes along.
    let line = alice_at(&mut bob, "alice at her first place", |l| l.contains("at 47.62050, -122.34930 ±"));
    eprintln!("bob: {line}");
    assert!(!line.contains("(via"), "alice's own position, not relayed: {line}");

    // She walks 500 m north: the group follows within seconds.
    drop(first);
    let moved_at = std::time::Instant::now();
    let _second = receiver(&crew, "47.6250", "-122.3493");
    let line = alice_at(&mut bob, "alice 500 m north", |l| l.contains("at 47.62500, -122.34930"));
    eprintln!("bob, {:?} after she moved: {line}", moved_at.elapsed());

    // gpsd goes away: alice says so once, and the group goes on.
    drop(gpsd);
    alice.wait(secs(15), "gpsd's loss", |l| l.starts_with("!! gpsd at 127.0.0.1:2947:") && l.contains("trying again"));
    let mark = bob.mark();
    alice.say("my GPS is down, still here");
    chat_seen(&bob, mark, "alice", "my GPS is down, still here", secs(20));
    std::thread::sleep(secs(12));
    let lost = alice.lines().iter().filter(|l| l.starts_with("!! gpsd at")).count();
    assert_eq!(lost, 1, "one line per outage, not one per retry: {:?}", alice.lines());
}
