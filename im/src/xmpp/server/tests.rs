//! The server's unit tests: outbox bounds, the writer's batching, the rate
//! bucket and where negotiation parsers stop. The servers on loopback are
//! tested in `im/tests/server.rs`.

#![allow(clippy::unwrap_used)]
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::bucket::Bucket;
use super::negotiation::negotiation_stop;
use super::outbox::{Outbox, write_session};
use super::shared::{Ending, Switchboard};
use super::transport::Io;
use crate::xmpp::element::Element;
use crate::xmpp::hub::{Hub, SessionId};
use crate::xmpp::jid::Jid;
use crate::xmpp::stanza::NS_MUC;
use crate::xmpp::stream::{NS_CLIENT, NS_SASL, NS_TLS};

fn outbox(capacity: usize) -> (Outbox, mpsc::Receiver<Box<str>>, watch::Receiver<Option<Ending>>) {
    outbox_bytes(capacity, 1 << 20)
}

fn outbox_bytes(
    capacity: usize,
    max_bytes: usize,
) -> (Outbox, mpsc::Receiver<Box<str>>, watch::Receiver<Option<Ending>>) {
    let (tx, rx) = mpsc::channel(capacity);
    let (kill, kill_rx) = watch::channel(None);
    (
        Outbox { tx: Some(tx), queued: Arc::new(AtomicUsize::new(0)), max_bytes, kill, generation: 0, sm: None },
        rx,
        kill_rx,
    )
}

/// Binds `id` as `nick@localhost/r` and joins it to the room `lsim`.
fn bind_and_join(core: &mut Switchboard, id: SessionId, nick: &str) {
    let jid = Jid::parse(&format!("{nick}@localhost/r")).unwrap();
    let outputs = core.hub.bind(id, jid);
    core.dispatch(outputs);
    let join = Element::new("presence", NS_CLIENT)
        .attr("to", format!("lsim@conference.localhost/{nick}"))
        .child(Element::new("x", NS_MUC));
    let outputs = core.hub.stanza(id, join);
    core.dispatch(outputs);
}

/// A session whose queue is full is closed with policy-violation and
/// leaves the room; the others get their stanzas and see it leave.
#[test]
fn a_full_queue_closes_only_that_session() {
    let mut core = Switchboard { hub: Hub::new("localhost"), outboxes: HashMap::new() };
    let (fast, mut fast_rx, fast_kill) = outbox(64);
    let (slow, mut slow_rx, slow_kill) = outbox(3);
    core.outboxes.insert(1, fast);
    core.outboxes.insert(2, slow);
    for (id, nick) in [(1, "fast"), (2, "slow")] {
        bind_and_join(&mut core, id, nick);
    }
    // slow's queue holds fast's presence, its own and the subject: full.
    while fast_rx.try_recv().is_ok() {}
    let message = Element::new("message", NS_CLIENT).attr("to", "lsim@conference.localhost").attr("type", "groupchat");
    let outputs = core.hub.stanza(1, message);
    core.dispatch(outputs);
    assert_eq!(*slow_kill.borrow(), Some(Ending::Error("policy-violation")));
    assert_eq!(*fast_kill.borrow(), None);
    assert!(!core.outboxes.contains_key(&2));
    assert_eq!(core.hub.occupants("lsim"), vec!["fast"]);
    let got: Vec<Box<str>> = std::iter::from_fn(|| fast_rx.try_recv().ok()).collect();
    assert!(got.iter().any(|t| t.starts_with("<message")));
    assert!(got.iter().any(|t| t.starts_with("<presence") && t.contains("type='unavailable'")));
    assert_eq!(std::iter::from_fn(|| slow_rx.try_recv().ok()).count(), 3);
}

/// The queue is bounded in bytes too: large messages to a room of slow
/// readers cannot pile up `send_queue × max_stanza_bytes` per occupant.
#[test]
fn a_queue_over_its_byte_budget_closes_only_that_session() {
    let mut core = Switchboard { hub: Hub::new("localhost"), outboxes: HashMap::new() };
    let (fast, mut fast_rx, fast_kill) = outbox_bytes(1024, 64 * 1024);
    let (slow, _slow_rx, slow_kill) = outbox_bytes(1024, 64 * 1024);
    let slow_queued = slow.queued.clone();
    core.outboxes.insert(1, fast);
    core.outboxes.insert(2, slow);
    for (id, nick) in [(1, "fast"), (2, "slow")] {
        bind_and_join(&mut core, id, nick);
    }
    let big = "x".repeat(10_000);
    let mut sent = 0;
    while core.outboxes.contains_key(&2) {
        // fast reads (and its writer gives the bytes back); slow does not.
        while fast_rx.try_recv().is_ok() {}
        core.outboxes[&1].queued.store(0, Ordering::Release);
        let message = Element::new("message", NS_CLIENT)
            .attr("to", "lsim@conference.localhost")
            .attr("type", "groupchat")
            .child(Element::new("body", NS_CLIENT).text(big.as_str()));
        let outputs = core.hub.stanza(1, message);
        core.dispatch(outputs);
        sent += 1;
        assert!(sent < 20, "slow was never closed");
    }
    // Far below the 1,024 stanzas of the count bound.
    assert!(sent <= 7, "{sent}");
    assert!(slow_queued.load(Ordering::Acquire) <= 64 * 1024);
    assert_eq!(*slow_kill.borrow(), Some(Ending::Error("policy-violation")));
    assert_eq!(*fast_kill.borrow(), None);
    assert_eq!(core.hub.occupants("lsim"), vec!["fast"]);
    // A stanza larger than the whole budget still goes into an empty queue.
    let (mut lone, mut lone_rx, _k) = outbox_bytes(4, 100);
    assert!(lone.push(&Element::new("message", NS_CLIENT).child(Element::new("body", NS_CLIENT).text(big.as_str()))));
    assert!(!lone.push(&Element::new("message", NS_CLIENT)));
    assert!(lone_rx.try_recv().unwrap().contains(big.as_str()));
}

/// The writer joins what is queued into few writes, sends it all, and
/// gives the bytes back to the budget.
#[tokio::test]
async fn the_writer_batches_the_queue_and_releases_its_bytes() {
    let (ours, mut theirs) = tokio::io::duplex(1 << 20);
    let (_r, w) = tokio::io::split(Box::new(ours) as Io);
    let (mut o, rx, kill_rx) = outbox_bytes(4096, 1 << 20);
    for i in 0..1000 {
        assert!(o.push(&Element::new("presence", NS_CLIENT).attr("id", i.to_string())));
    }
    let queued = o.queued.clone();
    let total = queued.load(Ordering::Acquire);
    let Outbox { tx, kill: _keep, .. } = o;
    drop(tx);
    write_session(w, rx, queued.clone(), kill_rx, Duration::from_secs(5)).await;
    let mut got = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut theirs, &mut got).await.unwrap();
    assert_eq!(got.matches("<presence").count(), 1000);
    assert_eq!(got.len(), total + "</stream:stream>".len());
    assert!(got.ends_with("</stream:stream>"));
    assert_eq!(queued.load(Ordering::Acquire), 0);
}

#[test]
fn bucket_allows_a_burst_then_the_rate() {
    let start = Instant::now();
    let mut b = Bucket::new(10, 5);
    b.last = start;
    assert_eq!((0..10).filter(|_| b.take(start)).count(), 5);
    assert!(b.take(start + Duration::from_millis(100)));
    assert!(!b.take(start + Duration::from_millis(100)));
    let mut unlimited = Bucket::new(0, 0);
    assert!((0..10_000).all(|_| unlimited.take(start)));
}

#[test]
fn negotiation_stops_at_every_sasl_step_and_starttls() {
    assert!(negotiation_stop(&Element::new("starttls", NS_TLS)));
    assert!(negotiation_stop(&Element::new("auth", NS_SASL)));
    assert!(negotiation_stop(&Element::new("response", NS_SASL)));
    assert!(!negotiation_stop(&Element::new("message", NS_CLIENT)));
}
