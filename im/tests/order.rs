//! Per-sender chat order under heavy loss: three senders' transport cores
//! each send 1,000 chats to four receivers' cores over an in-memory medium
//! that drops 20 % of every datagram at every destination (data, NACKs and
//! repair alike), in virtual time; each receiver's completed chat objects go
//! through the member's [`ChatOrder`]. Every receiver must show every
//! message of every sender exactly once, in the order it was sent, with
//! nothing given up as missing and nothing late.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test harness

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use lsim_im::group::order::{ChatOrder, DEFAULT_WAIT, Placement};
use lsim_keymgmt::key::SecretKey;
use lsim_keymgmt::suite::{GroupSeal, SuiteId};
use lsim_transport::rng::Rng;
use lsim_transport::time::Time;
use lsim_transport::wire::ObjectKind;
use lsim_transport::{Receiver, ReceiverConfig, ReceiverEvent, Sender, SenderConfig};
use proptest::prelude::*;

const SENDERS: u32 = 3;
const RECEIVERS: u32 = 4;
const SESSION: u32 = 77;

/// One node on the medium: a sender or a receiver core.
enum Node {
    Tx(Box<Sender<GroupSeal>>),
    Rx(Box<Receiver<GroupSeal>>, ChatOrder, HashMap<(u32, u32), Vec<u8>>),
}

impl Node {
    fn datagram(&mut self, now: Time, bytes: &[u8]) {
        match self {
            Node::Tx(s) => s.handle_datagram(now, bytes),
            Node::Rx(r, ..) => r.handle_datagram(now, bytes),
        }
    }
    fn timeout(&mut self, now: Time) {
        match self {
            Node::Tx(s) => s.handle_timeout(now),
            Node::Rx(r, ..) => r.handle_timeout(now),
        }
    }
    fn next_timeout(&self) -> Option<Time> {
        match self {
            Node::Tx(s) => s.poll_timeout(),
            Node::Rx(r, o, _) => {
                let order = o.poll_timeout().map(instant_to_time);
                [r.poll_timeout(), order].into_iter().flatten().min()
            }
        }
    }
    fn transmit(&mut self, now: Time, buf: &mut Vec<u8>) -> Option<usize> {
        match self {
            Node::Tx(s) => s.poll_transmit(now, buf).map(|t| t.len),
            Node::Rx(r, ..) => r.poll_transmit(now, buf).map(|t| t.len),
        }
    }
}

thread_local! {
    static BASE: Instant = Instant::now();
}

fn time_to_instant(t: Time) -> Instant {
    BASE.with(|b| *b + Duration::from_micros(t.as_micros()))
}

fn instant_to_time(i: Instant) -> Time {
    BASE.with(|b| Time::from_micros(i.saturating_duration_since(*b).as_micros() as u64))
}

/// A datagram on the air: (arrival, sequence, destination, bytes).
type InFlight = (Time, u64, usize, Vec<u8>);

/// What each receiver showed, per sender: (message number, placement).
type Shown = Vec<HashMap<u32, Vec<(u32, Placement)>>>;

/// What the receivers showed, and how many objects the transport completed
/// after a later one of the same sender (what the order had to mend).
fn run(seed: u64, chats: u32, loss: f64) -> (Shown, usize) {
    let key = SecretKey::from_bytes([7; 32]);
    let seal = || GroupSeal::new(SuiteId::Aes256Gcm, 1, &key);
    let mut nodes: Vec<Node> = Vec::new();
    for s in 0..SENDERS {
        let cfg = SenderConfig { session: SESSION, node: s + 1, rate: 2_000_000, ..SenderConfig::default() };
        nodes.push(Node::Tx(Box::new(Sender::new(cfg, seal()).unwrap())));
    }
    for r in 0..RECEIVERS {
        let node = 0x8000_0000 | (r + 100);
        // As a member's: nothing from before it first heard a sender.
        let cfg = ReceiverConfig {
            session: SESSION,
            node,
            seed: seed ^ u64::from(node),
            accept_backlog: false,
            ..ReceiverConfig::default()
        };
        nodes.push(Node::Rx(Box::new(Receiver::new(cfg, seal())), ChatOrder::new(DEFAULT_WAIT), HashMap::new()));
    }
    let mut shown: Shown = vec![HashMap::new(); RECEIVERS as usize];
    let mut highest: HashMap<(usize, u32), u32> = HashMap::new();
    let mut overtaken = 0;
    let mut rng = Rng::new(seed);
    let mut air: BinaryHeap<Reverse<InFlight>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut now = Time::ZERO;
    let mut buf = Vec::new();
    let gap = Duration::from_millis(15);
    // The group is up before anyone chats: each sender says hello (message
    // number u32::MAX, not counted) every 100 ms for a second, as a member's
    // beacons and receipts would, so every receiver has heard every sender.
    let mut hellos = 0;
    let mut next_hello = Time::ZERO;
    let mut next_chat = Time::ZERO + Duration::from_secs(1);
    let mut sent = 0u32;
    let end = Time::ZERO + gap * chats + Duration::from_secs(31);
    while now < end {
        if hellos < 10 && now >= next_hello {
            for node in nodes.iter_mut().take(SENDERS as usize) {
                if let Node::Tx(tx) = node {
                    tx.send_bytes(ObjectKind::Chat, u32::MAX.to_be_bytes().to_vec()).unwrap();
                }
            }
            hellos += 1;
            next_hello = next_hello + Duration::from_millis(100);
        }
        // Each sender queues its next chat on schedule: the message number in the body.
        if sent < chats && now >= next_chat {
            for node in nodes.iter_mut().take(SENDERS as usize) {
                if let Node::Tx(tx) = node {
                    let mut body = sent.to_be_bytes().to_vec();
                    body.resize(120, 0x55);
                    tx.send_bytes(ObjectKind::Chat, body).unwrap();
                }
            }
            sent += 1;
            next_chat = next_chat + gap;
        }
        for i in 0..nodes.len() {
            nodes[i].timeout(now);
            while let Some(len) = nodes[i].transmit(now, &mut buf) {
                for j in 0..nodes.len() {
                    if j != i && !rng.chance(loss) {
                        let delay = Duration::from_micros(2_000 + rng.below(1_000));
                        seq += 1;
                        air.push(Reverse((now + delay, seq, j, buf[..len].to_vec())));
                    }
                }
            }
        }
        while let Some(Reverse((at, _, _, _))) = air.peek()
            && *at <= now
        {
            let Reverse((_, _, j, bytes)) = air.pop().unwrap();
            nodes[j].datagram(now, &bytes);
        }
        for (r, node) in nodes.iter_mut().skip(SENDERS as usize).enumerate() {
            let Node::Rx(rx, order, partial) = node else { continue };
            let t = time_to_instant(now);
            while let Some(e) = rx.poll_event() {
                match e {
                    ReceiverEvent::ObjectStarted { sender, object, kind, .. } => {
                        order.heard_from(sender, rx.first_object(sender).unwrap_or(object), t);
                        order.started(sender, object, kind, t);
                        partial.insert((sender, object), Vec::new());
                    }
                    ReceiverEvent::ObjectData { sender, object, data, .. } => {
                        partial.entry((sender, object)).or_default().extend(data);
                    }
                    ReceiverEvent::ObjectComplete { sender, object } => {
                        let top = highest.entry((r, sender)).or_insert(object);
                        if object < *top {
                            overtaken += 1;
                        }
                        *top = (*top).max(object);
                        let bytes = partial.remove(&(sender, object)).unwrap_or_default();
                        order.complete(sender, object, bytes, t);
                    }
                    ReceiverEvent::ObjectLost { sender, object } => order.lost(sender, object, t),
                    ReceiverEvent::EpochAhead { .. }
                    | ReceiverEvent::ObjectProgress { .. }
                    | ReceiverEvent::SenderRestarted { .. } => {}
                }
            }
            order.handle_timeout(t);
            while let Some(m) = order.poll() {
                let n = u32::from_be_bytes(m.bytes[..4].try_into().unwrap());
                shown[r].entry(m.sender).or_default().push((n, m.placement));
            }
        }
        let next = nodes
            .iter()
            .filter_map(Node::next_timeout)
            .chain(air.peek().map(|Reverse((t, ..))| *t))
            .chain((sent < chats).then_some(next_chat))
            .chain((hellos < 10).then_some(next_hello))
            .min()
            .unwrap_or(end);
        now = next.max(now + Duration::from_micros(100));
    }
    (shown, overtaken)
}

fn check((shown, overtaken): &(Shown, usize), chats: u32) {
    assert!(*overtaken > 0, "the loss never made a message overtake an earlier one: the test tests nothing");
    for (r, by_sender) in shown.iter().enumerate() {
        assert_eq!(by_sender.len(), SENDERS as usize, "receiver {r} heard from every sender");
        for (sender, messages) in by_sender {
            let messages: Vec<(u32, Placement)> = messages.iter().filter(|(n, _)| *n != u32::MAX).copied().collect();
            let numbers: Vec<u32> = messages.iter().map(|(n, _)| *n).collect();
            let expected: Vec<u32> = (0..chats).collect();
            assert!(
                numbers == expected,
                "receiver {r}, sender {sender}: shown out of order or incomplete (first difference at {:?})",
                numbers
                    .iter()
                    .zip(&expected)
                    .position(|(a, b)| a != b)
                    .map(|i| &messages[i.saturating_sub(2)..(i + 3).min(messages.len())])
            );
            assert!(messages.iter().all(|(_, p)| *p == Placement::InOrder), "receiver {r}, sender {sender}");
        }
    }
}

#[test]
fn a_thousand_chats_from_each_of_three_senders_at_20_percent_loss_show_in_order() {
    let result = run(1, 1_000, 0.20);
    eprintln!("{} completions overtook an earlier message and were put back in order", result.1);
    check(&result, 1_000);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4))]
    #[test]
    fn order_holds_for_any_seed(seed in any::<u64>()) {
        check(&run(seed, 300, 0.20), 300);
    }
}
