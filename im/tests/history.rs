//! Room history on join (XEP-0045 §7.2.15) from the embedded server: a
//! member coming back asks for the last 5 messages and gets exactly those,
//! oldest first, stamped (XEP-0203) and marked as history by our client;
//! a malformed request is refused with `bad-request` and joins nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod scenario;

use std::time::Duration;

use lsim_im::xmpp::client::{Client, ClientEvent};
use lsim_im::xmpp::element::Element;
use lsim_im::xmpp::history::parse_stamp;
use lsim_im::xmpp::room::{NS_DELAY, RoomEvent};
use lsim_im::xmpp::stanza::NS_MUC;
use lsim_im::xmpp::stream::NS_CLIENT;
use scenario::{Target, USERS, wait_for};

fn joined(e: &ClientEvent) -> bool {
    matches!(e, ClientEvent::Room { event: RoomEvent::Joined { .. }, .. })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_gets_the_last_five_messages_stamped() {
    let server = common::Embedded::start("history", false, &USERS).await;
    let t = Target { addr: server.addr(), domain: "localhost".into(), trust: None, muc: "conference.localhost".into() };
    let room = t.room();
    let mut alice = Client::spawn(t.config("alice", "alice-pw"));
    alice.join(room.clone(), "alice", 0).await;
    wait_for(&mut alice, "alice in", joined).await;
    for i in 0..8 {
        alice.send_group(&room, Some(&format!("said {i}")), None).await;
        wait_for(&mut alice, "the echo", |e| matches!(e, ClientEvent::Room { event: RoomEvent::Message { .. }, .. }))
            .await;
    }

    let mut bob = Client::spawn(t.config("bob", "bob-pw"));
    bob.join(room.clone(), "bob", 5).await;
    wait_for(&mut bob, "bob in", joined).await;
    // The history follows bob's own presence, before the subject.
    let mut history = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, bob.next_event()).await {
        if let ClientEvent::Room { event: RoomEvent::Message { message, delayed, .. }, .. } = ev {
            assert!(delayed, "history is marked as history");
            history.push(message.body.unwrap_or_default());
        }
    }
    assert_eq!(history, ["said 3", "said 4", "said 5", "said 6", "said 7"]);
    alice.stop().await;
    bob.stop().await;
}

/// The raw delay stamps and the refusal of a bad request, on the wire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stamps_are_real_times_and_bad_requests_are_refused() {
    use lsim_im::xmpp::client::connect;
    let server = common::Embedded::start("history-raw", false, &USERS).await;
    let t = Target { addr: server.addr(), domain: "localhost".into(), trust: None, muc: "conference.localhost".into() };
    let room = t.room();
    let mut alice = Client::spawn(t.config("alice", "alice-pw"));
    alice.join(room.clone(), "alice", 0).await;
    wait_for(&mut alice, "alice in", joined).await;
    let t0 = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    alice.send_group(&room, Some("stamped"), None).await;
    wait_for(&mut alice, "the echo", |e| matches!(e, ClientEvent::Room { event: RoomEvent::Message { .. }, .. })).await;

    let mut s = connect(&t.config("bob", "bob-pw")).await.unwrap();
    let join = |history: Element| {
        Element::new("presence", NS_CLIENT)
            .attr("to", format!("{room}/bob"))
            .child(Element::new("x", NS_MUC).child(history))
    };
    s.send(&join(Element::new("history", NS_MUC).attr("maxstanzas", "-1"))).await.unwrap();
    let refusal = tokio::time::timeout(Duration::from_secs(5), s.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(refusal.get_attr("type"), Some("error"), "{}", refusal.to_xml());
    assert!(refusal.to_xml().contains("bad-request"), "{}", refusal.to_xml());
    s.send(&join(Element::new("history", NS_MUC).attr("since", "1970-01-01T00:00:00Z"))).await.unwrap();
    let stamp = loop {
        let e = tokio::time::timeout(Duration::from_secs(5), s.recv()).await.unwrap().unwrap().unwrap();
        if let Some(d) = e.get_child("delay", NS_DELAY) {
            break d.get_attr("stamp").unwrap().to_string();
        }
    };
    let at = parse_stamp(&stamp).unwrap();
    assert!(at >= t0 && at <= t0 + 5_000, "stamp {stamp} is not when the room got it");
    s.close().await;
    alice.stop().await;
}
