//! Sender and receiver cores driven together in memory, no simulator: the
//! properties that must hold packet by packet.

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::geometry::Geometry;
use crate::seal::KeyedSum;
use crate::stats::DropReason;
use crate::time::Time;
use crate::wire::{
    self, Body, Command, DataHeader, Echo, Feedback, Frontier, Header, NackEntry, ObjectKind, PacketType, Probe,
};

const KEY: KeyedSum = KeyedSum(0x5eed);

fn sender() -> Sender<KeyedSum> {
    Sender::new(SenderConfig { node: 1, rate: 0, symbol_size: 100, block_symbols: 16, ..Default::default() }, KEY)
        .unwrap()
}

fn receiver(node: u32) -> Receiver<KeyedSum> {
    Receiver::new(ReceiverConfig { node, seed: u64::from(node), ..Default::default() }, KEY)
}

/// Everything the sender has to send at `now`.
fn drain(tx: &mut Sender<KeyedSum>, now: Time) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while let Some(t) = tx.poll_transmit(now, &mut buf) {
        out.push(buf[..t.len].to_vec());
    }
    out
}

fn delivered(rx: &mut Receiver<KeyedSum>) -> (Vec<u8>, bool) {
    let (mut data, mut complete) = (Vec::new(), false);
    while let Some(e) = rx.poll_event() {
        match e {
            ReceiverEvent::ObjectData { data: d, .. } => data.extend(d),
            ReceiverEvent::ObjectComplete { .. } => complete = true,
            _ => {}
        }
    }
    (data, complete)
}

pub(super) fn object(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// Runs sender and receivers until quiet, dropping the sender's packets
/// listed in `lose(receiver, packet number)`; feedback always arrives.
fn exchange(tx: &mut Sender<KeyedSum>, rxs: &mut [Receiver<KeyedSum>], lose: impl Fn(usize, usize) -> bool) {
    let mut now = Time::ZERO;
    let mut sent = 0;
    let mut buf = Vec::new();
    for _ in 0..10_000 {
        for p in drain(tx, now) {
            for (i, rx) in rxs.iter_mut().enumerate() {
                if !lose(i, sent) {
                    rx.handle_datagram(now, &p);
                }
            }
            sent += 1;
        }
        for i in 0..rxs.len() {
            while let Some(t) = rxs[i].poll_transmit(now, &mut buf) {
                tx.handle_datagram(now, &buf[..t.len]);
                for (j, other) in rxs.iter_mut().enumerate() {
                    if j != i {
                        other.handle_datagram(now, &buf[..t.len]);
                    }
                }
            }
        }
        let next = rxs.iter().filter_map(Receiver::poll_timeout).chain(tx.poll_timeout()).min();
        match next {
            Some(t) if t < Time::from_micros(60_000_000) => {
                now = now.max(t);
                tx.handle_timeout(now);
                rxs.iter_mut().for_each(|r| r.handle_timeout(now));
            }
            _ => break,
        }
        if tx.is_idle() && rxs.iter().all(|r| r.objects_in_progress() == 0) && now > Time::from_micros(5_000_000) {
            break;
        }
    }
}

#[test]
fn symbols_heard_before_their_object_info_are_dropped_then_repaired() {
    let mut tx = sender();
    let mut rxs = vec![receiver(2)];
    // A chat line first: the receiver knows the sender (and its counter).
    tx.send_bytes(ObjectKind::Chat, b"file follows".to_vec()).unwrap();
    for p in drain(&mut tx, Time::ZERO) {
        rxs[0].handle_datagram(Time::ZERO, &p);
    }
    assert!(delivered(&mut rxs[0]).1);
    // Then a file, of which the receiver loses every packet among the first
    // 40 that carries the object info.
    let data = object(50_000);
    tx.send_bytes(ObjectKind::File, data.clone()).unwrap();
    let (mut without, mut known) = (0, false);
    for (n, p) in drain(&mut tx, Time::ZERO).into_iter().enumerate() {
        let (data, info) = match open_test(&mut p.clone()) {
            Ok((_, Body::Data(f, _))) => (true, f.info.is_some()),
            _ => (false, false),
        };
        if n < 40 && info {
            continue;
        }
        known |= info;
        without += u64::from(data && !known);
        rxs[0].handle_datagram(Time::ZERO, &p);
    }
    assert!(without >= 20, "most symbols of a file travel without the info: {without} before the first heard");
    assert_eq!(rxs[0].stats().dropped(DropReason::NoInfo), without, "each symbol heard before the info is dropped");
    exchange(&mut tx, &mut rxs, |_, _| false);
    let (got, complete) = delivered(&mut rxs[0]);
    assert!(complete && got == data, "repaired: got {} of {} bytes", got.len(), data.len());
}

#[test]
fn a_forged_packet_changes_nothing() {
    let mut tx = sender();
    let data = object(5000);
    tx.send_bytes(ObjectKind::File, data.clone()).unwrap();
    let packets = drain(&mut tx, Time::ZERO);
    let mut rx = receiver(2);
    for p in &packets {
        // A forgery first: same packet, one payload byte changed.
        let mut f = p.clone();
        let last = f.len() - 9;
        f[last] ^= 0x40;
        rx.handle_datagram(Time::ZERO, &f);
        rx.handle_datagram(Time::ZERO, p);
    }
    let (got, complete) = delivered(&mut rx);
    assert!(complete && got == data, "got {} of {} bytes, complete {complete}", got.len(), data.len());
    assert_eq!(rx.stats().dropped(DropReason::BadSeal), packets.len() as u64);
}

#[test]
fn a_replayed_packet_is_dropped_and_counted() {
    let mut tx = sender();
    tx.send_bytes(ObjectKind::Chat, b"once".to_vec()).unwrap();
    let packets = drain(&mut tx, Time::ZERO);
    let mut rx = receiver(2);
    for p in &packets {
        rx.handle_datagram(Time::ZERO, p);
        rx.handle_datagram(Time::ZERO, p);
    }
    let events: Vec<_> = std::iter::from_fn(|| rx.poll_event()).collect();
    assert_eq!(events.iter().filter(|e| matches!(e, ReceiverEvent::ObjectComplete { .. })).count(), 1);
    assert_eq!(rx.stats().dropped(DropReason::Replay), packets.len() as u64);
}

#[test]
fn lost_symbols_are_repaired_and_every_receiver_decodes() {
    let mut tx = sender();
    let data = object(50_000);
    tx.send_bytes(ObjectKind::File, data.clone()).unwrap();
    let mut rxs: Vec<_> = (2..6).map(receiver).collect();
    // Each receiver loses its own random fifth of the packets.
    exchange(&mut tx, &mut rxs, |i, n| crate::rng::Rng::new((i as u64) << 32 | n as u64).chance(0.2));
    for rx in &mut rxs {
        let (got, complete) = delivered(rx);
        assert!(complete && got == data, "got {} of {} bytes, complete {complete}", got.len(), data.len());
    }
    let s = tx.stats();
    assert!(s.repair_sent > 0);
    // Repair follows the worst receiver (20 %), not the union of losses (everything).
    assert!(s.repair_sent < s.source_sent / 2, "{} repair for {} source", s.repair_sent, s.source_sent);
}

pub(super) fn feedback(target: u32, entries: Vec<NackEntry>) -> Body<'static> {
    Body::Feedback(Feedback { target, echo: None, loss: 0, relay: None, overflow: None, received: None, entries })
}

pub(super) fn sealed(node: u32, seq: u64, body: &Body<'_>) -> Vec<u8> {
    let h = Header { packet_type: body.packet_type(), session: 1, node, epoch: 0, seq };
    let mut out = Vec::new();
    wire::seal_packet(&mut KEY.clone(), &h, body, &mut out).unwrap();
    out
}

/// Opens a packet a core of these tests produced (session 1; every counter
/// here starts at 0, so 0 is a fine reference for short headers).
pub(super) fn open_test(p: &mut [u8]) -> Result<(Header, Body<'_>), wire::WireError> {
    wire::open_packet(&mut KEY.clone(), p, 1, |_, _| Some(0))
}

#[test]
fn repair_rounds_use_fresh_symbols() {
    let mut tx = sender();
    tx.send_bytes(ObjectKind::File, object(1600)).unwrap();
    drain(&mut tx, Time::ZERO);
    let nack = |seq| sealed(7, seq, &feedback(1, vec![NackEntry::Block { object: 0, block: 0, needed: 3 }]));
    let esis = |packets: Vec<Vec<u8>>| -> Vec<u32> {
        packets
            .into_iter()
            .filter_map(|mut p| match open_test(&mut p) {
                Ok((_, Body::Data(h, _))) => Some(h.esi),
                _ => None,
            })
            .collect()
    };
    tx.handle_datagram(Time::ZERO, &nack(1));
    let first = esis(drain(&mut tx, Time::ZERO));
    // A second round, after the first closed.
    let later = Time::from_micros(10_000_000);
    tx.handle_datagram(later, &nack(2));
    let second = esis(drain(&mut tx, later));
    assert_eq!((first.len(), second.len()), (3, 3));
    assert!(first.iter().chain(&second).all(|&e| e >= 16), "repair ESIs start at K");
    assert!(first.iter().all(|e| !second.contains(e)), "{first:?} then {second:?}");
}

/// Repair packets among `packets`.
fn repairs(packets: &[Vec<u8>]) -> usize {
    packets
        .iter()
        .filter(|p| {
            let mut p = p.to_vec();
            matches!(open_test(&mut p), Ok((_, Body::Data(h, _))) if h.esi >= 16)
        })
        .count()
}

#[test]
fn one_receivers_claimed_loss_neither_inflates_nor_starves_anothers_repair() {
    // 10 kB/s of 100-byte symbols: a budget of 50 a second, at least 64 (four blocks).
    let cfg = SenderConfig { node: 1, rate: 10_000, symbol_size: 100, block_symbols: 16, ..Default::default() };
    let mut tx = Sender::new(cfg, KEY).unwrap();
    tx.send_bytes(ObjectKind::File, object(16 * 100 * 20)).unwrap();
    let mut now = Time::ZERO;
    while tx.stats().source_sent < 320 && now < Time::from_micros(60_000_000) {
        drain(&mut tx, now);
        now = now + Duration::from_millis(10);
    }
    assert_eq!(tx.stats().source_sent, 320, "all source out before the NACKs");
    let nack = |node: u32, seq: u64, loss: u16, block: u32, needed: u32| {
        let fb = Feedback {
            target: 1,
            echo: None,
            loss,
            relay: None,
            overflow: None,
            received: None,
            entries: vec![NackEntry::Block { object: 0, block, needed }],
        };
        sealed(node, seq, &Body::Feedback(fb))
    };
    // The rogue claims 100 % loss and a whole block, for every block: its
    // margin is capped at ×2 and its budget (64) runs out after two blocks.
    for block in 0..20 {
        tx.handle_datagram(now, &nack(66, u64::from(block) + 1, u16::MAX, block, 16));
    }
    let rogue = repairs(&drain(&mut tx, now + Duration::from_secs(100)));
    assert_eq!(rogue, 64, "the rogue gets its budget and no more");
    assert_eq!(tx.stats().repair_refused, 20 * 32 - 64);
    // An honest receiver at no loss asks for 3 of a block the rogue did not
    // reach: it gets exactly 3, not 3 scaled by the rogue's claim, and its
    // budget is its own.
    let later = now + Duration::from_secs(100);
    tx.handle_datagram(later, &nack(7, 1, 0, 19, 3));
    assert_eq!(repairs(&drain(&mut tx, later + Duration::from_secs(100))), 3);
}

#[test]
fn a_measured_grtt_is_advertised_at_once() {
    // Rate-limited, so the sender is still sending source when the echo comes back.
    let cfg = SenderConfig { node: 1, rate: 100_000, symbol_size: 100, block_symbols: 16, ..Default::default() };
    let mut tx = Sender::new(cfg, KEY).unwrap();
    tx.send_bytes(ObjectKind::File, object(16_000)).unwrap();
    let commands = |packets: Vec<Vec<u8>>| -> Vec<Command> {
        packets
            .into_iter()
            .filter_map(|mut p| match open_test(&mut p) {
                Ok((_, Body::Command(c))) => Some(c),
                _ => None,
            })
            .collect()
    };
    let first = commands(drain(&mut tx, Time::ZERO));
    let probe = first.iter().find_map(|c| c.probe).expect("a probe goes out first");
    assert_eq!(first[0].grtt_us, 50_000, "the configured guess");
    // The echo says 2 ms: the guess is replaced, and the next packet tells the receivers.
    let at = Time::from_micros(2_000);
    let echo = Body::Feedback(Feedback {
        target: 1,
        echo: Some(Echo { probe_time: probe.time, hold_us: 0 }),
        loss: 0,
        relay: None,
        overflow: None,
        received: None,
        entries: Vec::new(),
    });
    tx.handle_datagram(at, &sealed(7, 1, &echo));
    assert_eq!(tx.grtt(), Duration::from_millis(2));
    let next = commands(drain(&mut tx, at));
    assert_eq!(next.first().map(|c| c.grtt_us), Some(2_000), "advertised without waiting a probe interval");
}

/// Sends a 20 kB object to `receivers` receivers (nodes 2, 3, …); all hear
/// its first interleaving group (4 blocks of 16 symbols) whole, then the first `decliners` of them decline it, and
/// every receiver loses its own fifth of the rest. Returns the sender's
/// stats, the receivers, and what each decliner delivered before declining.
struct Declined {
    sent: crate::stats::Stats,
    rxs: Vec<Receiver<KeyedSum>>,
    before: Vec<Vec<ReceiverEvent>>,
    data: Vec<u8>,
}

fn declining(receivers: u32, decliners: usize) -> Declined {
    let mut tx = sender();
    let data = object(20_000);
    let id = tx.send_bytes(ObjectKind::File, data.clone()).unwrap();
    let mut rxs: Vec<_> = (2..2 + receivers).map(receiver).collect();
    let packets = drain(&mut tx, Time::ZERO);
    const FIRST_GROUP: usize = 70;
    for p in packets.iter().take(FIRST_GROUP) {
        rxs.iter_mut().for_each(|rx| rx.handle_datagram(Time::ZERO, p));
    }
    let mut before = Vec::new();
    for rx in rxs.iter_mut().take(decliners) {
        before.push(std::iter::from_fn(|| rx.poll_event()).collect());
        rx.decline(1, id);
    }
    for (n, p) in packets.iter().enumerate().skip(FIRST_GROUP) {
        for (i, rx) in rxs.iter_mut().enumerate() {
            if !crate::rng::Rng::new((i as u64) << 32 | n as u64).chance(0.2) {
                rx.handle_datagram(Time::ZERO, p);
            }
        }
    }
    exchange(&mut tx, &mut rxs, |_, _| false);
    Declined { sent: tx.stats().clone(), rxs, before, data }
}

#[test]
fn a_declined_object_is_neither_nacked_nor_delivered_and_the_others_still_get_it() {
    let Declined { mut rxs, before, data, .. } = declining(2, 1);
    // The decliner had the first block when it declined.
    assert!(before[0].iter().any(|e| matches!(e, ReceiverEvent::ObjectData { .. })), "{:?}", before[0]);
    let (got, complete) = delivered(&mut rxs[1]);
    assert!(complete && got == data, "the other receiver still gets it");
    assert!(rxs[1].stats().nacks_sent > 0, "it needed repair, as the decliner would have");
    assert_eq!(rxs[0].stats().nacks_sent, 0, "the decliner asks for nothing");
    assert_eq!(delivered(&mut rxs[0]), (Vec::new(), false), "and hears nothing more of it");
    assert_eq!((rxs[0].objects_in_progress(), rxs[0].buffered()), (0, 0));
}

/// A file for one member of four on a lossy medium: when the other three
/// decline it, the sender repairs only the recipient's losses.
#[test]
fn declining_receivers_cut_the_repair_to_what_the_recipients_need() {
    let Declined { sent: kept, mut rxs, data, .. } = declining(4, 0);
    assert!(rxs.iter_mut().all(|rx| delivered(rx).0 == data));
    let Declined { sent: declined, mut rxs, .. } = declining(4, 3);
    assert!(delivered(&mut rxs[3]).0 == data);
    println!(
        "repair symbols for 200 source symbols, 20 % loss at each of four receivers: all four keep it {}, three decline it {}",
        kept.repair_sent, declined.repair_sent
    );
    assert!(declined.repair_sent < kept.repair_sent, "{} vs {}", declined.repair_sent, kept.repair_sent);
}

/// When a NACK is due: the receiver's next timer that sends feedback, searched up to `limit`.
fn first_nack(rx: &mut Receiver<KeyedSum>, from: Time, limit: Time) -> Option<Time> {
    let mut buf = Vec::new();
    let mut now = from;
    while now <= limit {
        rx.handle_timeout(now);
        while let Some(t) = rx.poll_transmit(now, &mut buf) {
            let mut p = buf[..t.len].to_vec();
            if let Ok((_, Body::Feedback(f))) = open_test(&mut p)
                && !f.entries.is_empty()
            {
                return Some(now);
            }
        }
        now = rx.poll_timeout().unwrap_or(limit + Duration::from_micros(1)).max(now + Duration::from_micros(1));
    }
    None
}

/// A NACK timer armed while the GRTT was long (a queue that has since
/// drained) is pulled in when the sender advertises a much shorter one:
/// the end of a transfer on a shaped radio link waited about a second
/// for NACKs armed under a 120 ms GRTT that had long fallen to 1 ms.
#[test]
fn nack_timers_shrink_when_the_advertised_grtt_does() {
    let run = |new_grtt_us: u32| {
        let mut tx = sender();
        tx.send_bytes(ObjectKind::File, object(3200)).unwrap();
        let mut rx = receiver(2);
        let data: Vec<Vec<u8>> = drain(&mut tx, Time::ZERO)
            .into_iter()
            .filter(|p| p[1] == PacketType::Data as u8)
            .enumerate()
            .filter(|&(i, _)| i != 3)
            .map(|(_, p)| p)
            .collect();
        // Block 0 lacks a symbol once block 1 starts: its NACK is armed
        // under the configured 50 ms guess (a window of about 0.4 s).
        for p in &data {
            rx.handle_datagram(Time::ZERO, p);
        }
        let at = Time::from_micros(1_000);
        let cmd = Command {
            flush: true,
            frontier: Some(Frontier { object: 0, blocks_sent: 2 }),
            oldest: 0,
            grtt_us: new_grtt_us,
            group_loss: 0,
            probe: None,
        };
        rx.handle_datagram(at, &sealed(1, 1 << 40, &Body::Command(cmd)));
        first_nack(&mut rx, at, Time::from_micros(5_000_000)).expect("a NACK goes out")
    };
    let unchanged = run(50_000);
    let shrunk = run(1_000);
    assert!(unchanged >= Time::from_micros(300_000), "the guess's window: {unchanged:?}");
    assert!(shrunk <= Time::from_micros(20_000), "a 1 ms GRTT's window: {shrunk:?}");
}

#[test]
fn impossible_nacks_are_refused_and_counted() {
    let mut tx = sender();
    tx.send_bytes(ObjectKind::File, object(1600)).unwrap();
    drain(&mut tx, Time::ZERO);
    let entries = vec![
        NackEntry::Block { object: 0, block: 0, needed: 9000 },
        NackEntry::Block { object: 0, block: 0, needed: 0 },
        NackEntry::Block { object: 0, block: 5, needed: 1 },
    ];
    tx.handle_datagram(Time::ZERO, &sealed(7, 1, &feedback(1, entries)));
    assert_eq!(tx.stats().dropped(DropReason::Invalid), 3);
    assert!(drain(&mut tx, Time::ZERO).is_empty(), "nothing repaired");
    tx.handle_datagram(
        Time::ZERO,
        &sealed(7, 2, &feedback(1, vec![NackEntry::Block { object: 9, block: 0, needed: 1 }])),
    );
    assert_eq!(tx.stats().dropped(DropReason::Stale), 1, "an object never sent");
}

#[test]
fn a_symbol_size_that_cannot_fit_a_datagram_is_refused() {
    // A repairer relays it in 16 (long header) + 4 (origin) + 10 (data header) + 13 (object info)
    // + 1430 + 8 (tag) = 1481 > 1472 bytes; 1421 fits exactly.
    let cfg = SenderConfig { symbol_size: 1430, ..Default::default() };
    assert!(matches!(Sender::new(cfg, KEY), Err(ConfigError::SymbolSize { packet: 1481, .. })));
    assert!(Sender::new(SenderConfig { symbol_size: 1421, ..Default::default() }, KEY).is_ok());
    let cfg = SenderConfig { block_symbols: 0, ..Default::default() };
    assert!(matches!(Sender::new(cfg, KEY), Err(ConfigError::BlockSymbols(0))));
}

#[test]
fn a_suppressed_receiver_asks_again_when_repair_never_comes() {
    let mut tx = sender();
    tx.send_bytes(ObjectKind::File, object(3200)).unwrap();
    let packets = drain(&mut tx, Time::ZERO);
    let mut rx = receiver(2);
    // Lose the first symbol of block 0; the rest (and block 1) arrive.
    for p in &packets[2..] {
        rx.handle_datagram(Time::ZERO, p);
    }
    // Another receiver's larger NACK for block 0 suppresses ours...
    let other = sealed(9, 1 << 63, &feedback(1, vec![NackEntry::Block { object: 0, block: 0, needed: 5 }]));
    rx.handle_datagram(Time::from_micros(1), &other);
    assert_eq!(rx.stats().nacks_suppressed, 1);
    // ...but the repair is lost: after the holdoff we must NACK on our own.
    let mut buf = Vec::new();
    let mut asked = None;
    while let Some(now) = rx.poll_timeout() {
        rx.handle_timeout(now);
        if let Some(tr) = rx.poll_transmit(now, &mut buf)
            && let Ok((_, Body::Feedback(f))) = open_test(&mut buf[..tr.len])
            && !f.entries.is_empty()
        {
            asked = Some(f.entries);
            break;
        }
        assert!(now < Time::from_micros(10_000_000), "never asked again");
    }
    assert_eq!(asked, Some(vec![NackEntry::Block { object: 0, block: 0, needed: 1 }]));
}

/// Packets a malicious or broken *member* could send (they pass the seal):
/// any geometry, any NACK, any frontier.
fn insider_body() -> impl Strategy<Value = Body<'static>> {
    let data = (any::<u32>(), 1u64..1 << 40, 1u16..1200, 1u16..=56_403, any::<u32>(), any::<u32>()).prop_filter_map(
        "valid geometry",
        |(object, len, t, k, block, esi)| {
            let g = Geometry::new(len, t, k).ok()?;
            let block = block % g.blocks();
            let esi = esi % (u32::from(g.symbols_in(block)) + wire::MAX_REPAIR_SYMBOLS);
            let h = DataHeader { object: object % 64, kind: ObjectKind::File, geometry: g, block, esi };
            // With or without the object info (a member may claim any).
            Some(Body::Data(h.frame(esi.is_multiple_of(2)), Box::leak(vec![0xa5u8; usize::from(t)].into_boxed_slice())))
        },
    );
    let nack = (0u32..8, any::<u32>(), any::<u32>(), any::<bool>()).prop_map(|(o, b, n, objects)| {
        let e = if objects {
            NackEntry::Objects { first: o, bitmap: b }
        } else {
            NackEntry::Block { object: o, block: b % 4, needed: n % 40 }
        };
        Body::Feedback(Feedback {
            target: 1,
            echo: Some(Echo { probe_time: u64::from(n), hold_us: b }),
            loss: n as u16,
            relay: None,
            overflow: None,
            received: None,
            entries: vec![e],
        })
    });
    let cmd = (any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>(), any::<u16>(), any::<u16>()).prop_map(
        |(o, b, oldest, grtt, loss, frac)| {
            Body::Command(Command {
                flush: true,
                frontier: Some(Frontier { object: o % 128, blocks_sent: b }),
                oldest: oldest % 128,
                grtt_us: grtt,
                group_loss: loss,
                probe: Some(Probe { time: u64::from(grtt), reply_fraction: frac }),
            })
        },
    );
    prop_oneof![data, nack, cmd]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever a member sends, the cores neither panic nor hold more than their bounds.
    #[test]
    fn insiders_cannot_break_the_bounds(bodies in prop::collection::vec(insider_body(), 1..120)) {
        let mut rx = Receiver::new(ReceiverConfig { node: 2, max_buffered: 4 << 20, max_objects: 32, ..Default::default() }, KEY);
        let mut tx = sender();
        tx.send_bytes(ObjectKind::File, object(100_000)).unwrap();
        let mut buf = Vec::new();
        let mut now = Time::ZERO;
        for (seq, body) in bodies.iter().enumerate() {
            let p = sealed(if matches!(body, Body::Feedback(_)) { 3 } else { 1 }, seq as u64, body);
            now = now + Duration::from_millis(3);
            rx.handle_datagram(now, &p);
            tx.handle_datagram(now, &p);
            rx.handle_timeout(now);
            tx.handle_timeout(now);
            while rx.poll_transmit(now, &mut buf).is_some() {}
            for _ in 0..200 {
                if tx.poll_transmit(now, &mut buf).is_none() { break; }
            }
            while rx.poll_event().is_some() {}
            prop_assert!(rx.buffered() <= 4 << 20, "buffered {}", rx.buffered());
            prop_assert!(rx.objects_in_progress() <= 32);
        }
    }
}

#[test]
fn packets_of_a_wrong_kind_of_header_are_dropped() {
    let mut rx = receiver(2);
    rx.handle_datagram(Time::ZERO, &[]);
    rx.handle_datagram(Time::ZERO, &[9; 40]);
    let mut other_session = sealed(1, 1, &feedback(2, vec![]));
    other_session[1] ^= 1; // the session byte
    rx.handle_datagram(Time::ZERO, &other_session);
    let h = Header { packet_type: PacketType::Command, session: 1, node: 2, epoch: 0, seq: 5 };
    let mut own = Vec::new();
    let c = Command { flush: false, frontier: None, oldest: 0, grtt_us: 1, group_loss: 0, probe: None };
    wire::seal_packet(&mut KEY.clone(), &h, &Body::Command(c), &mut own).unwrap();
    rx.handle_datagram(Time::ZERO, &own);
    let s = rx.stats();
    assert_eq!(
        (s.dropped(DropReason::Malformed), s.dropped(DropReason::OtherSession), s.dropped(DropReason::Own)),
        (2, 1, 1)
    );
}

#[test]
fn a_restarted_sender_is_heard_afresh() {
    let mut rx = receiver(2);
    let run = |first_seq: u64, texts: &[&str], rx: &mut Receiver<KeyedSum>| {
        let cfg = SenderConfig { node: 1, rate: 0, first_seq, ..Default::default() };
        let mut tx = Sender::new(cfg, KEY).unwrap();
        for t in texts {
            tx.send_bytes(ObjectKind::Chat, t.as_bytes().to_vec()).unwrap();
        }
        for p in drain(&mut tx, Time::ZERO) {
            rx.handle_datagram(Time::ZERO, &p);
        }
        let mut got = Vec::new();
        while let Some(e) = rx.poll_event() {
            if let ReceiverEvent::ObjectData { data, .. } = e {
                got.push(String::from_utf8(data).unwrap());
            }
        }
        got
    };
    assert_eq!(run(1_000, &["one", "two", "three"], &mut rx), ["one", "two", "three"]);
    // The same node restarts (its counter from the wall clock, seconds later) and numbers its objects from 0 again.
    assert_eq!(run(5_000_000_000, &["back", "again"], &mut rx), ["back", "again"]);
}

#[test]
fn a_receiver_whose_socket_overflows_slows_its_sender_until_it_keeps_up() {
    let cfg = SenderConfig {
        node: 1,
        rate: 1_000_000,
        queue_target: None,
        symbol_size: 100,
        block_symbols: 16,
        ..Default::default()
    };
    let mut tx = Sender::new(cfg, KEY).unwrap();
    let mut rx = receiver(2);
    tx.send_bytes(ObjectKind::File, object(50_000)).unwrap();
    let mut buf = Vec::new();
    // What the pacer lets out at once: a command and the file's first symbols.
    while let Some(t) = tx.poll_transmit(Time::ZERO, &mut buf) {
        rx.handle_datagram(Time::ZERO, &buf[..t.len]);
    }
    assert_eq!(rx.objects_in_progress(), 1);
    let mut feedback = |rx: &mut Receiver<KeyedSum>, tx: &mut Sender<KeyedSum>, now: Time| {
        let mut n = 0;
        while let Some(t) = rx.poll_transmit(now, &mut buf) {
            let mut p = buf[..t.len].to_vec();
            if let Ok((_, Body::Feedback(f))) = open_test(&mut p) {
                assert!(f.overflow.is_some(), "once counted, every feedback carries the count");
            }
            tx.handle_datagram(now, &buf[..t.len]);
            n += 1;
        }
        n
    };
    // The driver's first count is a baseline: nothing is sent for it.
    rx.handle_overflow(Time::ZERO, 40);
    assert_eq!(feedback(&mut rx, &mut tx, Time::ZERO), 0);
    let ms = |n: u64| Time::from_micros(n * 1000);
    // A probe reply carries the baseline to the sender.
    rx.queue_feedback(ms(1), 1, Vec::new());
    assert_eq!(feedback(&mut rx, &mut tx, ms(1)), 1);
    assert_eq!(tx.rate(), 1_000_000);
    // The socket drops more: the sender hears it at once and slows by a fifth.
    rx.handle_overflow(ms(2), 55);
    assert_eq!(feedback(&mut rx, &mut tx, ms(2)), 1);
    assert_eq!(tx.stats().overrun_cuts, 1);
    assert_eq!(tx.rate(), 800_000);
    // With no more drops the rate grows back to the whole.
    let _ = tx.poll_transmit(ms(2 + 3_000), &mut buf);
    assert_eq!(tx.rate(), 1_000_000);
}

/// Blocks go out interleaved four at a time and decode whole, so decoded
/// data comes in steps; progress follows the symbols held, in twentieths,
/// from the first group on.
#[test]
fn progress_comes_in_twentieths_ahead_of_decoding() {
    let mut tx = sender();
    let mut rx = receiver(2);
    let data = object(20_000);
    tx.send_bytes(ObjectKind::File, data).unwrap();
    let mut progress = Vec::new();
    let mut first_data = None;
    for (i, p) in drain(&mut tx, Time::ZERO).iter().enumerate() {
        rx.handle_datagram(Time::ZERO, p);
        while let Some(e) = rx.poll_event() {
            match e {
                ReceiverEvent::ObjectProgress { got, .. } => progress.push((i, got)),
                ReceiverEvent::ObjectData { .. } if first_data.is_none() => first_data = Some(i),
                _ => {}
            }
        }
    }
    assert_eq!(progress.len(), 20, "{progress:?}");
    assert!(progress.windows(2).all(|w| w[0].1 < w[1].1), "{progress:?}");
    assert_eq!(progress.last().map(|p| p.1), Some(20_000));
    let first_data = first_data.expect("decoded");
    assert!(progress.iter().filter(|(i, _)| *i < first_data).count() >= 2, "progress before the first group decodes");
}
