//! A third-party client (slixmpp, from PyPI) and ours in the same room: it
//! logs in with SCRAM, joins, sees our presence, and payload messages go
//! both ways.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod scenario;

use std::process::Stdio;
use std::time::Duration;

use lsim_im::xmpp::client::{Client, ClientEvent};
use lsim_im::xmpp::payload::{MemberStatus, Payload};
use lsim_im::xmpp::room::RoomEvent;
use scenario::{Target, USERS, wait_for};

fn have_slixmpp() -> bool {
    let ok = common::have_python_module("slixmpp");
    if !ok {
        assert!(!common::required(), "slixmpp is required (LSIM_REQUIRE_SERVERS=1) but not installed");
        eprintln!("slixmpp not installed: skipping");
    }
    ok
}

/// Runs the slixmpp peer as bob beside our client as alice.
async fn third_party(target: &Target) -> String {
    let room = target.room();
    let mut alice = Client::spawn(target.config("alice", "alice-pw"));
    alice.join(room.clone(), "alice", 0).await;
    wait_for(&mut alice, "alice joined", |e| matches!(e, ClientEvent::Room { event: RoomEvent::Joined { .. }, .. }))
        .await;
    let (host, port) = target.addr.rsplit_once(':').unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/slixmpp_peer.py");
    let peer = tokio::process::Command::new("python3")
        .arg(script)
        .args([&format!("bob@{}/slix", target.domain), "bob-pw", host, port, &room.to_string(), "slixbob", "alice"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_for(
        &mut alice,
        "slixmpp's presence",
        |e| matches!(e, ClientEvent::Room { event: RoomEvent::OccupantJoined(o), .. } if o.nick == "slixbob"),
    )
    .await;
    let ev = wait_for(
        &mut alice,
        "slixmpp's payload",
        |e| matches!(e, ClientEvent::Room { event: RoomEvent::Message { nick: Some(n), .. }, .. } if n == "slixbob"),
    )
    .await;
    let ClientEvent::Room { event: RoomEvent::Message { message, .. }, .. } = ev else { unreachable!() };
    let payload = Payload::parse(message.payload.as_ref().expect("payload from slixmpp")).unwrap();
    assert_eq!(payload, Payload::Status(MemberStatus { node: 99, epoch: 4, loss_permille: 25, repairs: None }));
    let reply = Payload::Status(MemberStatus { node: 1, epoch: 4, loss_permille: 0, repairs: None });
    alice.send_group(&room, Some("hello slixmpp"), Some(reply.to_element())).await;
    let out = tokio::time::timeout(Duration::from_secs(60), peer.wait_with_output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "slixmpp peer failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("saw alice") && stdout.contains("payload from alice: node=1 epoch=4"), "{stdout}");
    alice.stop().await;
    stdout
}

#[tokio::test]
async fn slixmpp_with_prosody() {
    if !have_slixmpp() {
        return;
    }
    let Some(p) = common::Prosody::start("slix", false, &USERS) else { return };
    let t = Target { addr: p.addr(), domain: "localhost".into(), trust: None, muc: "conference.localhost".into() };
    let out = third_party(&t).await;
    assert!(out.contains("SASL SCRAM"), "{out}");
}

#[tokio::test]
async fn slixmpp_with_the_embedded_server() {
    if !have_slixmpp() {
        return;
    }
    // Plaintext, PLAIN not allowed: slixmpp must use SCRAM.
    let mut e = common::Embedded::start("slix", false, &USERS).await;
    let t = Target { addr: e.addr(), domain: "localhost".into(), trust: None, muc: "conference.localhost".into() };
    let out = third_party(&t).await;
    assert!(out.contains("SASL SCRAM"), "{out}");
    e.stop().await;
}
