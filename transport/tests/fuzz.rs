//! Fuzz tests of everything in the transport that reads bytes from the
//! network: `wire::peek_header`, `wire::open_packet` (header, seal framing
//! and every body type), and the cores that act on what was opened
//! (`Receiver`, `Repairer`, `Sender` via `handle_datagram`).
//!
//! Inputs are arbitrary bytes and, more usefully, valid packets from the
//! real encoder with bytes flipped, inserted, deleted, truncated and
//! integers spliced to extreme values, so that the fuzzing reaches past the
//! first length check. A seal that accepts everything stands in for the
//! group's cipher, so every mutation reaches the body parser.
//!
//! Properties: nothing panics; an accepted packet re-encodes to a packet
//! that opens to the same thing and is no longer than the input; what a
//! core buffers stays within its configured bound.
//!
//! CI runs a modest number of cases. To fuzz for long:
//!
//! ```text
//! LSIM_FUZZ_CASES=1000000 cargo test --release -p lsim-transport --test fuzz
//! ```
//!
//! (the cargo-fuzz targets in `fuzz/` at the repository root cover the same
//! decoders with coverage guidance, on nightly).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use lsim_testsupport::mutate::{config, mutate, mutations};
use lsim_testsupport::seal::OpenSeal;
use lsim_testsupport::wire::Spread::Narrow;
use lsim_testsupport::wire::{Symbols, command, data_header, feedback, header, holdings};
use lsim_transport::geometry::Geometry;
use lsim_transport::wire::{self, Body, DataHeader, Header, MAX_DATAGRAM, ObjectKind, PacketType};
use lsim_transport::{Receiver, ReceiverConfig, Repairer, RepairerConfig, Sender, SenderConfig, Time};
use proptest::prelude::*;

// ------------------------------------------------------------ valid packets

/// The session the fuzzed nodes belong to (most generated headers use it).
const SESSION: u32 = 1;

/// The highest counter a receiver accepted from any node: the generated
/// counters are small, so 0 rebuilds every short header.
fn reference(_: u32, _: bool) -> Option<u64> {
    Some(0)
}

/// A sealed datagram of any packet type, as the real encoder writes it.
fn packet(tag_len: usize) -> impl Strategy<Value = Vec<u8>> {
    let data = (header(PacketType::Data, Narrow), data_header(Narrow, Symbols::Source), any::<u8>(), any::<bool>())
        .prop_map(move |(h, d, fill, info)| {
            let symbol = vec![fill; usize::from(d.geometry.symbol_size())];
            seal(tag_len, &h, &Body::Data(d.frame(info), &symbol))
        });
    let repair = (header(PacketType::Repair, Narrow), 0u32..8, data_header(Narrow, Symbols::Repair), any::<u8>())
        .prop_map(move |(h, origin, d, fill)| {
            let h = Header { seq: h.seq | wire::RECEIVER_SEQ_BIT, ..h };
            let symbol = vec![fill; usize::from(d.geometry.symbol_size())];
            seal(tag_len, &h, &Body::Repair(origin, d.frame(true), &symbol))
        });
    let fb = (header(PacketType::Feedback, Narrow), feedback(Narrow))
        .prop_map(move |(h, f)| seal(tag_len, &h, &Body::Feedback(f)));
    let cmd = (header(PacketType::Command, Narrow), command(Narrow))
        .prop_map(move |(h, c)| seal(tag_len, &h, &Body::Command(c)));
    let held = (header(PacketType::Holdings, Narrow), holdings(Narrow))
        .prop_map(move |(h, s)| seal(tag_len, &h, &Body::Holdings(s)));
    prop_oneof![data, repair, fb, cmd, held]
}

fn seal(tag_len: usize, h: &Header, body: &Body<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    wire::seal_packet(&mut OpenSeal { tag_len }, h, body, &mut out).unwrap();
    out
}

// ------------------------------------------------------------ properties

/// Opens `datagram`; if it is accepted, checks that the decoded packet is no
/// bigger than its bytes and that re-encoding it gives a packet that opens
/// to the same thing.
fn check_open(tag_len: usize, mut datagram: Vec<u8>) -> bool {
    let len = datagram.len();
    let peeked = wire::peek_header(&datagram);
    let mut seal = OpenSeal { tag_len };
    let Ok((h, body)) = wire::open_packet(&mut seal, &mut datagram, SESSION, reference) else { return false };
    let Ok(peeked) = peeked else { panic!("open accepted what peek refused") };
    assert_eq!((peeked.packet_type, peeked.node), (h.packet_type, h.node));
    assert!(len <= MAX_DATAGRAM);
    match &body {
        Body::Data(d, symbol) | Body::Repair(_, d, symbol) => {
            if let Some(info) = d.info {
                assert_eq!(symbol.len(), usize::from(info.geometry.symbol_size()));
                assert!(d.block < info.geometry.blocks());
            }
            assert!(d.block < lsim_transport::geometry::MAX_BLOCKS && d.esi < 1 << 24);
        }
        Body::Feedback(f) => assert!(f.entries.len() * wire::NACK_ENTRY_LEN <= len, "feedback amplifies"),
        Body::Command(_) => {}
        Body::Holdings(s) => assert!(s.entries.len() * wire::HOLDING_LEN <= len, "holdings amplify"),
    }
    let mut again = Vec::new();
    wire::seal_packet(&mut seal, &h, &body, &mut again).unwrap();
    assert!(again.len() <= len, "re-encoding grew from {len} to {}", again.len());
    // Re-encoded, it may travel short: a receiver that accepted `h` rebuilds its counter.
    let top = (h.seq & !wire::RECEIVER_SEQ_BIT).saturating_sub(1);
    let (h2, body2) =
        wire::open_packet(&mut seal, &mut again, SESSION, |_, _| Some(top)).expect("re-encoded packet refused");
    assert_eq!((h, body), (h2, body2));
    true
}

/// Feeds `datagrams` to a receiver, a repairer and a sender, running their
/// timers and draining their output as a node would.
fn drive_cores(datagrams: &[Vec<u8>]) {
    let rcfg = ReceiverConfig { max_buffered: 4 << 20, max_blocks: 32, max_objects: 64, ..ReceiverConfig::default() };
    let mut receiver = Receiver::new(rcfg.clone(), OpenSeal { tag_len: 0 });
    let mut repairer = Repairer::new(
        RepairerConfig {
            receiver: ReceiverConfig { node: 3, ..rcfg.clone() },
            cache_bytes: 1 << 20,
            ..RepairerConfig::default()
        },
        OpenSeal { tag_len: 0 },
    );
    let mut sender =
        Sender::new(SenderConfig { session: 1, node: 1, ..SenderConfig::default() }, OpenSeal { tag_len: 0 })
            .expect("sender config");
    sender.send_bytes(ObjectKind::Chat, vec![7u8; 3000]).expect("send");
    let mut buf = Vec::new();
    let mut now = Time::ZERO;
    for d in datagrams {
        now = now + Duration::from_millis(7);
        receiver.handle_datagram(now, d);
        repairer.handle_datagram(now, d);
        sender.handle_datagram(now, d);
        for _ in 0..4 {
            now = now + Duration::from_millis(40);
            receiver.handle_timeout(now);
            repairer.handle_timeout(now);
            sender.handle_timeout(now);
            for _ in 0..8 {
                let a = receiver.poll_transmit(now, &mut buf).is_some();
                let b = repairer.poll_transmit(now, &mut buf).is_some();
                let c = sender.poll_transmit(now, &mut buf).is_some();
                if !(a || b || c) {
                    break;
                }
            }
            while receiver.poll_event().is_some() {}
            while repairer.poll_event().is_some() {}
            while sender.poll_event().is_some() {}
        }
        assert!(receiver.buffered() <= rcfg.max_buffered, "receiver buffers {} bytes", receiver.buffered());
        assert!(repairer.receiver().buffered() <= rcfg.max_buffered, "repairer buffers too much");
        assert!(repairer.cached_bytes() <= 2 << 20, "repairer caches {} bytes", repairer.cached_bytes());
    }
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(tag_len in prop_oneof![Just(0usize), Just(8), Just(16)],
                                   bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = check_open(tag_len, bytes);
    }

    #[test]
    fn arbitrary_typed_bodies_never_panic(t in 0u8..6, tag_len in prop_oneof![Just(0usize), Just(16)],
                                          body in prop::collection::vec(any::<u8>(), 0..400)) {
        // A valid long header of any type, so the body parser sees every input.
        let mut d = vec![(wire::VERSION << 4) | 8 | (t & 7), SESSION as u8];
        d.extend_from_slice(&[0u8; wire::HEADER_LEN - 2]);
        d.extend_from_slice(&body);
        let _ = check_open(tag_len, d);
    }

    #[test]
    fn valid_packets_round_trip(tag_len in prop_oneof![Just(0usize), Just(16)], p in packet(16)) {
        // Built with a 16-byte tag; opened with 0 or 16 (0 leaves 16 bytes of trailing garbage).
        let ours = wire::peek_header(&p).is_ok_and(|h| h.session_byte == SESSION as u8);
        let opened = check_open(tag_len, p);
        prop_assert!(opened || !ours || tag_len == 0, "a valid packet of our session was refused");
    }

    #[test]
    fn mutated_packets_never_panic(tag_len in prop_oneof![Just(0usize), Just(16)],
                                   p in packet(0), ms in mutations()) {
        let mut p = p;
        p.extend(std::iter::repeat_n(0u8, tag_len));
        let _ = check_open(tag_len, mutate(p, &ms));
    }

    #[test]
    fn peek_header_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64), pad in prop_oneof![Just(0usize), Just(MAX_DATAGRAM)]) {
        let mut b = bytes;
        b.resize(b.len() + pad, 0);
        if let Ok(h) = wire::peek_header(&b) {
            prop_assert!(b.len() >= h.len() && b.len() <= MAX_DATAGRAM);
            // The header's bytes, written back from what was read, are the same bytes.
            let mut out = vec![(wire::VERSION << 4) | (u8::from(h.long) << 3) | h.packet_type as u8, h.session_byte];
            out.extend_from_slice(&h.node.to_be_bytes());
            out.extend_from_slice(&h.epoch_low.to_be_bytes());
            if h.long {
                out.extend_from_slice(&h.seq_bits.to_be_bytes());
            } else {
                out.extend_from_slice(&(h.seq_bits as u32).to_be_bytes());
            }
            prop_assert_eq!(&out[..], &b[..h.len()]);
        }
    }
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn cores_survive_hostile_packet_sequences(
        seq in prop::collection::vec((packet(0), prop::option::of(mutations())), 1..24)
    ) {
        let datagrams: Vec<Vec<u8>> = seq.into_iter().map(|(p, ms)| match ms {
            Some(ms) => mutate(p, &ms),
            None => p,
        }).collect();
        drive_cores(&datagrams);
    }
}

/// A sender that announces the largest object the wire allows; the cores
/// must keep to their memory bounds.
#[test]
fn cores_bound_memory_for_huge_objects() {
    let g =
        Geometry::new(lsim_transport::geometry::MAX_OBJECT_LEN, u16::MAX, lsim_transport::geometry::MAX_BLOCK_SYMBOLS);
    let Ok(g) = g else { return };
    let mut datagrams = Vec::new();
    for object in 0..4u32 {
        for block in 0..3u32 {
            let h = Header {
                packet_type: PacketType::Data,
                session: 1,
                node: 1,
                epoch: 0,
                seq: u64::from(object * 3 + block),
            };
            let d = DataHeader { object, kind: ObjectKind::File, geometry: g, block, esi: 0 };
            let symbol = vec![1u8; usize::from(g.symbol_size())];
            let mut out = Vec::new();
            // A 65535-byte symbol does not fit a datagram; the cores must refuse it, not buffer it.
            if wire::seal_packet(&mut OpenSeal { tag_len: 0 }, &h, &Body::Data(d.frame(true), &symbol), &mut out)
                .is_ok()
            {
                datagrams.push(out);
            }
        }
    }
    let small = Geometry::new(1 << 30, 1400, lsim_transport::geometry::MAX_BLOCK_SYMBOLS).unwrap();
    for object in 4..40u32 {
        let h = Header { packet_type: PacketType::Data, session: 1, node: 1, epoch: 0, seq: u64::from(100 + object) };
        let d = DataHeader { object, kind: ObjectKind::File, geometry: small, block: object % small.blocks(), esi: 1 };
        let symbol = vec![2u8; 1400];
        let mut out = Vec::new();
        wire::seal_packet(&mut OpenSeal { tag_len: 0 }, &h, &Body::Data(d.frame(object % 2 == 0), &symbol), &mut out)
            .unwrap();
        datagrams.push(out);
    }
    drive_cores(&datagrams);
}
