//! Stream management (XEP-0198) on a flaky link: alice's TCP connection is
//! cut for 20 s (nftables drops every packet of it, as a radio out of range
//! would) while the room goes on talking and she goes on typing; when the
//! link is back her client resumes the session. Nothing is lost in either
//! direction, nothing arrives twice, and the room never shows her leaving —
//! against the embedded server, Prosody and ejabberd.
//!
//! alice reaches the server through a plain TCP forwarder on its own
//! loopback port, so the nftables rule cuts her path alone. Needs root and
//! nft; elsewhere it says so and passes, unless LSIM_REQUIRE_SERVERS=1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod scenario;

use std::process::Command;
use std::time::{Duration, Instant};

use lsim_im::xmpp::client::{Client, ClientEvent};
use lsim_im::xmpp::room::RoomEvent;
use scenario::{Target, USERS, wait_for};

/// How long alice is cut off.
const CUT: Duration = Duration::from_secs(20);

fn can_cut() -> bool {
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0"));
    let nft = common::have("nft");
    if !(root && nft) {
        assert!(!common::required(), "the resumption tests need root and nft (LSIM_REQUIRE_SERVERS=1)");
        eprintln!("skipping: the resumption tests need root and nft");
        return false;
    }
    true
}

fn body_of(ev: &ClientEvent) -> Option<String> {
    match ev {
        ClientEvent::Room { event: RoomEvent::Message { message, .. }, .. } => message.body.clone(),
        _ => None,
    }
}

/// Drains `client`'s events for `time`, returning them.
async fn events_for(client: &mut Client, time: Duration) -> Vec<ClientEvent> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + time;
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, client.next_event()).await {
        out.push(ev);
    }
    out
}

/// The scenario against the server at `target`.
async fn resume_after_cut(target: &Target) {
    let room = target.room();
    let port = common::forwarder(target.addr.clone()).await;
    let mut cfg = target.config("alice", "alice-pw");
    cfg.server = Some(format!("127.0.0.1:{port}"));
    // A dead link is noticed within seconds, as a handheld's client should.
    cfg.keepalive = Duration::from_secs(2);
    cfg.keepalive_timeout = Duration::from_secs(3);
    cfg.connect_timeout = Duration::from_secs(4);
    let mut alice = Client::spawn(cfg);
    alice.join(room.clone(), "alice", 0).await;
    wait_for(&mut alice, "alice in the room", |e| {
        matches!(e, ClientEvent::Room { event: RoomEvent::Joined { .. }, .. })
    })
    .await;
    let mut bob = Client::spawn(target.config("bob", "bob-pw"));
    bob.join(room.clone(), "bob", 0).await;
    wait_for(&mut bob, "bob in the room", |e| matches!(e, ClientEvent::Room { event: RoomEvent::Joined { .. }, .. }))
        .await;
    // Let alice's stream management be enabled and her view settle.
    let _ = events_for(&mut alice, Duration::from_millis(500)).await;

    let cut = common::Cut::start(port).expect("nftables refused the cut");
    let started = Instant::now();
    let mut bob_saw = Vec::new();
    for i in 0..5 {
        bob.send_group(&room, Some(&format!("bob {i}")), None).await;
        alice.send_group(&room, Some(&format!("alice {i}")), None).await;
        bob_saw.extend(events_for(&mut bob, CUT / 5).await);
    }
    let alice_during = events_for(&mut alice, CUT.saturating_sub(started.elapsed())).await;
    drop(cut);
    let mut alice_saw = alice_during;
    alice_saw.extend(events_for(&mut alice, Duration::from_secs(15)).await);
    bob_saw.extend(events_for(&mut bob, Duration::from_secs(2)).await);

    let went_offline = alice_saw.iter().any(|e| matches!(e, ClientEvent::Offline { .. }));
    assert!(went_offline, "alice never noticed the cut: the test tests nothing");
    assert!(
        alice_saw.iter().any(|e| matches!(e, ClientEvent::Online { resumed: true, .. })),
        "alice did not resume: {alice_saw:?}"
    );
    let bobs: Vec<String> = alice_saw.iter().filter_map(body_of).filter(|b| b.starts_with("bob")).collect();
    assert_eq!(bobs, (0..5).map(|i| format!("bob {i}")).collect::<Vec<_>>(), "alice lost or repeated bob's");
    let alices: Vec<String> = bob_saw.iter().filter_map(body_of).filter(|b| b.starts_with("alice")).collect();
    assert_eq!(alices, (0..5).map(|i| format!("alice {i}")).collect::<Vec<_>>(), "bob lost or repeated alice's");
    let flaps: Vec<&ClientEvent> = bob_saw
        .iter()
        .filter(|e| {
            matches!(e, ClientEvent::Room { event: RoomEvent::OccupantLeft { nick }, .. } if nick == "alice")
                || matches!(e, ClientEvent::Room { event: RoomEvent::OccupantJoined(o), .. } if o.nick == "alice")
        })
        .collect();
    assert!(flaps.is_empty(), "the room showed alice leaving or joining: {flaps:?}");
    assert!(!alice_saw.iter().any(|e| matches!(e, ClientEvent::Room { event: RoomEvent::Left, .. })));
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumption_with_the_embedded_server() {
    if !can_cut() {
        return;
    }
    let server = common::Embedded::start("resume", false, &USERS).await;
    let t = Target { addr: server.addr(), domain: "localhost".into(), trust: None, muc: "conference.localhost".into() };
    resume_after_cut(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumption_with_prosody() {
    if !can_cut() {
        return;
    }
    let Some(p) = common::Prosody::start("resume", false, &USERS) else { return };
    let t = Target { addr: p.addr(), domain: "localhost".into(), trust: None, muc: "conference.localhost".into() };
    resume_after_cut(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumption_with_ejabberd() {
    if !can_cut() {
        return;
    }
    let Some(e) = common::Ejabberd::start("resume", false, &USERS) else { return };
    let t = Target { addr: e.addr(), domain: "localhost".into(), trust: None, muc: "conference.localhost".into() };
    resume_after_cut(&t).await;
}

/// A session the server no longer holds (restarted, expired, another
/// user's id) is refused with `<failed/>`, and the client binds anew on
/// the same stream: it is back, only not resumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_session_falls_back_to_a_fresh_bind() {
    use lsim_im::xmpp::client::{Resumption, connect_resuming};
    use lsim_im::xmpp::jid::Jid;
    let server = common::Embedded::start("resume-unknown", false, &USERS).await;
    let t = Target { addr: server.addr(), domain: "localhost".into(), trust: None, muc: "conference.localhost".into() };
    let cfg = t.config("alice", "alice-pw");
    let stale =
        Resumption { id: "0123456789abcdef".into(), handled: 3, jid: Jid::parse("alice@localhost/gone").unwrap() };
    let session = connect_resuming(&cfg, Some(&stale)).await.unwrap();
    assert_eq!(session.resumed, None);
    assert!(session.sm_offered);
    assert_eq!(session.jid.bare(), Jid::bare_of("alice", "localhost"));
    assert_ne!(session.jid, stale.jid, "a fresh bind, not the stale session");
    session.close().await;
}
