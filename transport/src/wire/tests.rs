//! Unit tests of the wire codec: round trips of every packet type and
//! codec type (strategies in `wire/strategies.rs`), refusal of changed
//! bytes, rebuilt short headers, and the documented sizes. Tests only; the
//! transport's fuzz tests (`tests/fuzz.rs`) cover hostile input.

use super::strategies::Spread::Full;
use super::strategies::{Symbols, command, data_header, entry, feedback, header, holdings};
use super::*;
use crate::seal::KeyedSum as SumSeal;
use proptest::prelude::*;

/// What a receiver that accepted the packet just before `h` knows.
fn reference_for(h: &Header) -> impl FnOnce(u32, bool) -> Option<u64> + use<> {
    let top = (h.seq & !RECEIVER_SEQ_BIT).saturating_sub(1);
    move |_, _| Some(top)
}

/// A data header naming any symbol, and a symbol of its size.
fn data() -> impl Strategy<Value = (DataHeader, Vec<u8>)> {
    data_header(Full, Symbols::Any).prop_map(|d| (d, vec![d.kind as u8; usize::from(d.geometry.symbol_size())]))
}

fn round_trip(h: Header, body: Body<'_>) {
    let mut seal = SumSeal(42);
    let mut buf = Vec::new();
    seal_packet(&mut seal, &h, &body, &mut buf).unwrap();
    let (h2, b2) = open_packet(&mut seal, &mut buf, h.session, reference_for(&h)).unwrap();
    assert_eq!(h, h2);
    assert_eq!(body, b2);
}

proptest! {
    #[test]
    fn data_round_trips(h in header(PacketType::Data, Full), (d, sym) in data(), info in any::<bool>()) {
        let h = Header { seq: h.seq & !RECEIVER_SEQ_BIT, ..h };
        round_trip(h, Body::Data(d.frame(info), &sym));
    }

    #[test]
    fn feedback_round_trips(h in header(PacketType::Feedback, Full), f in feedback(Full)) {
        round_trip(h, Body::Feedback(f));
    }

    #[test]
    fn repair_round_trips(h in header(PacketType::Repair, Full), origin in any::<u32>(), (d, sym) in data()) {
        let k = u32::from(d.geometry.symbols_in(d.block));
        let d = DataHeader { esi: k + d.esi % 1000, ..d };
        let h = Header { seq: h.seq | RECEIVER_SEQ_BIT, ..h };
        round_trip(h, Body::Repair(origin, d.frame(true), &sym));
    }

    #[test]
    fn holdings_round_trip(h in header(PacketType::Holdings, Full), s in holdings(Full)) {
        round_trip(h, Body::Holdings(s));
    }

    #[test]
    fn command_round_trips(h in header(PacketType::Command, Full), c in command(Full)) {
        round_trip(h, Body::Command(c));
    }

    #[test]
    fn every_codec_type_round_trips_alone(
        (d, _) in data(),
        info in any::<bool>(),
        e in entry(Full),
        f in feedback(Full),
        c in command(Full),
    ) {
        use crate::codec::tests::assert_round_trip;
        assert_round_trip(&d.frame(info));
        assert_round_trip(&e);
        assert_round_trip(&f);
        assert_round_trip(&c);
    }

    #[test]
    fn random_bytes_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..2000), top in any::<Option<u64>>()) {
        let _ = peek_header(&bytes);
        let _ = open_packet(&mut SumSeal(1), &mut bytes, 0, |_, _| top);
    }

    /// Any single-byte change to a sealed packet is refused (never parsed into something else).
    #[test]
    fn mutated_packets_are_refused(h in header(PacketType::Feedback, Full), f in feedback(Full), at in any::<usize>(), x in 1u8..=255) {
        let mut seal = SumSeal(7);
        let mut buf = Vec::new();
        seal_packet(&mut seal, &h, &Body::Feedback(f), &mut buf).unwrap();
        let i = at % buf.len();
        buf[i] ^= x;
        prop_assert!(open_packet(&mut seal, &mut buf, h.session, reference_for(&h)).is_err());
    }

    /// The same for data packets, in both header forms: a changed byte of
    /// the compressed header rebuilds another header, which the seal refuses.
    #[test]
    fn mutated_data_packets_are_refused(h in header(PacketType::Data, Full), (d, sym) in data(), long in any::<bool>(),
                                        at in any::<usize>(), x in 1u8..=255) {
        let seq = (h.seq & !RECEIVER_SEQ_BIT & !(LONG_EVERY - 1)) + u64::from(!long);
        let h = Header { seq, ..h };
        prop_assert_eq!(h.is_long(), long);
        let mut seal = SumSeal(7);
        let mut buf = Vec::new();
        seal_packet(&mut seal, &h, &Body::Data(d.frame(at % 2 == 0), &sym), &mut buf).unwrap();
        let i = at % buf.len();
        buf[i] ^= x;
        prop_assert!(open_packet(&mut seal, &mut buf, h.session, reference_for(&h)).is_err());
    }

    /// A short header's counter is rebuilt exactly from any reference up
    /// to 2^31 packets behind or ahead of it.
    #[test]
    fn short_counters_are_rebuilt(counter in 0u64..(1 << 62), back in 1i64..(1 << 31), ahead in any::<bool>()) {
        let top = if ahead { counter.saturating_add(back as u64 - 1) } else { counter.saturating_sub(back as u64) };
        let h = Header { packet_type: PacketType::Data, session: 5, node: 9, epoch: 0, seq: counter | 1 };
        let mut buf = Vec::new();
        h.encode(&mut buf, false);
        let peek = peek_header(&buf).unwrap();
        prop_assert!(!peek.long);
        prop_assert_eq!(peek.expand(5, 0, Some(top)).unwrap(), h);
    }

    /// A rebuilt counter never leaves the counter space (63 bits: the top
    /// bit is the role), whatever the reference.
    #[test]
    fn rebuilt_counters_stay_below_the_role_bit(top in prop_oneof![any::<u64>(), Just(RECEIVER_SEQ_BIT - 1)],
                                                low in any::<u32>()) {
        let h = Header { packet_type: PacketType::Data, session: 5, node: 9, epoch: 0, seq: u64::from(low) | 1 };
        let mut buf = Vec::new();
        h.encode(&mut buf, false);
        let r = peek_header(&buf).unwrap().expand(5, 0, Some(top & !RECEIVER_SEQ_BIT)).unwrap();
        prop_assert_eq!(r.seq & RECEIVER_SEQ_BIT, 0);
        prop_assert_eq!(r.seq as u32, low | 1);
    }

    /// Epochs within 2^15 of the receiver's newest are rebuilt exactly.
    #[test]
    fn epochs_are_rebuilt_near_the_newest(current in any::<u32>(), delta in -32_767i64..32_768) {
        let epoch = i64::from(current) + delta;
        prop_assume!((0..=i64::from(u32::MAX)).contains(&epoch));
        let h = Header { packet_type: PacketType::Command, session: 1, node: 2, epoch: epoch as u32, seq: 3 };
        let mut buf = Vec::new();
        h.encode(&mut buf, false);
        prop_assert_eq!(peek_header(&buf).unwrap().expand(1, current, None).unwrap(), h);
    }

    /// Bodies parsed without a seal (as if the seal were broken) still never panic.
    #[test]
    fn unsealed_bodies_never_panic(t in 1u8..5, body in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = Body::read(PacketType::from_u8(t).unwrap(), &body);
    }
}

#[test]
fn refuses_symbols_outside_the_object() {
    let g = Geometry::new(1000, 100, 4).unwrap();
    let mut buf = Vec::new();
    let h = DataHeader { object: 3, kind: ObjectKind::File, geometry: g, block: 3, esi: 0 };
    h.frame(true).encode(&mut buf);
    let err = DataFrame::read(&mut Reader::new(&buf)).unwrap_err();
    assert_eq!(err.to_string(), "object 3 block 3 esi 0: block past the end of the object");
    // Without the info it reads, and fails when the receiver completes it.
    buf.clear();
    h.frame(false).encode(&mut buf);
    let f = DataFrame::read(&mut Reader::new(&buf)).unwrap();
    assert_eq!(f.complete(h.info()).unwrap_err().to_string(), err.to_string());
    let other = ObjectInfo { kind: ObjectKind::Chat, ..h.info() };
    let with = DataHeader { block: 0, ..h }.frame(true);
    assert!(with.complete(other).unwrap_err().to_string().contains("differs from what the object said"));
}

#[test]
fn relayed_symbols_are_repair_symbols_with_their_object_info() {
    let g = Geometry::new(1000, 100, 4).unwrap();
    let relayed = |esi: u32, info: bool| {
        let mut buf = 7u32.to_be_bytes().to_vec();
        DataHeader { object: 3, kind: ObjectKind::File, geometry: g, block: 0, esi }.frame(info).encode(&mut buf);
        buf.extend_from_slice(&[0u8; 100]);
        Body::read(PacketType::Repair, &buf).map(|_| ())
    };
    assert_eq!(relayed(5, true), Ok(()));
    assert!(matches!(relayed(5, false), Err(WireError::Form(_))));
    let err = relayed(3, true).unwrap_err();
    assert!(err.to_string().contains("must be a repair symbol"), "{err}");
}

#[test]
fn feedback_count_must_match_bytes() {
    let f = Feedback {
        target: 1,
        echo: None,
        loss: 0,
        relay: None,
        overflow: None,
        received: None,
        entries: vec![NackEntry::Objects { first: 1, bitmap: 3 }],
    };
    let mut buf = Vec::new();
    f.encode(&mut buf);
    buf[FEEDBACK_FIXED_LEN - 1] = 200; // claims 200 entries, carries one
    assert!(matches!(Feedback::read(&mut Reader::new(&buf)), Err(WireError::Truncated { .. })));
}

#[test]
fn short_headers_need_a_reference_and_the_due_form() {
    let h = Header { packet_type: PacketType::Data, session: 0x1234_5678, node: 4, epoch: 2, seq: 65 };
    let mut buf = Vec::new();
    h.encode(&mut buf, false);
    assert_eq!(buf.len(), SHORT_HEADER_LEN);
    let peek = peek_header(&buf).unwrap();
    assert_eq!(peek.expand(0x1234_5678, 2, None), Err(WireError::NoReference(4)));
    assert_eq!(peek.expand(0x1234_5600, 2, Some(64)), Err(WireError::OtherSession(0x78)));
    assert_eq!(peek.expand(0x1234_5678, 2, Some(64)), Ok(h));
    // The counter one below rebuilds 64, a multiple of LONG_EVERY: that one travels long.
    buf[11] = 64;
    assert!(matches!(peek_header(&buf).unwrap().expand(0x1234_5678, 2, Some(63)), Err(WireError::Form(_))));
    // A long Data packet must carry a sender's counter, a long Repair packet a receiver's.
    let mut long = Vec::new();
    Header { seq: 64 | RECEIVER_SEQ_BIT, ..h }.encode(&mut long, true);
    assert!(matches!(peek_header(&long), Err(WireError::Form(_))));
    long[0] = (VERSION << 4) | 8 | PacketType::Repair as u8;
    assert!(peek_header(&long).is_ok());
    // Feedback and commands are always long.
    buf[0] = (VERSION << 4) | PacketType::Feedback as u8;
    assert!(matches!(peek_header(&buf), Err(WireError::Form(_))));
}

#[test]
fn the_symbol_size_for_a_suite_fits_every_packet_of_it() {
    assert_eq!(symbol_size_for(1472, 16), 1413);
    assert_eq!(symbol_size_for(1472, 24), 1405);
    assert_eq!(symbol_size_for(10, 16), 0);
    for tag in [0, 16, 24] {
        assert_eq!(symbol_packet_len(symbol_size_for(1472, tag), tag), 1472);
    }
}

#[test]
fn sizes_match_the_documented_layout() {
    let mut buf = Vec::new();
    Header { packet_type: PacketType::Data, session: 0, node: 0, epoch: 0, seq: 0 }.encode(&mut buf, false);
    assert_eq!(buf.len(), HEADER_LEN);
    buf.clear();
    let h = Header { packet_type: PacketType::Data, session: 0, node: 0, epoch: 0, seq: 1 };
    h.encode(&mut buf, false);
    assert_eq!(buf.len(), SHORT_HEADER_LEN);
    buf.clear();
    h.encode(&mut buf, true);
    assert_eq!(buf.len(), HEADER_LEN);
    buf.clear();
    let g = Geometry::new(1, 1, 1).unwrap();
    let d = DataHeader { object: 0, kind: ObjectKind::Chat, geometry: g, block: 0, esi: 0 };
    d.frame(false).encode(&mut buf);
    assert_eq!(buf.len(), DATA_HEADER_LEN);
    buf.clear();
    d.frame(true).encode(&mut buf);
    assert_eq!(buf.len(), DATA_HEADER_LEN + OBJECT_INFO_LEN);
    buf.clear();
    Command { flush: true, frontier: None, oldest: 0, grtt_us: 0, group_loss: 0, probe: None }.encode(&mut buf);
    assert_eq!(buf.len(), COMMAND_LEN);
    buf.clear();
    Feedback { target: 0, echo: None, loss: 0, relay: None, overflow: None, received: None, entries: vec![] }
        .encode(&mut buf);
    assert_eq!(buf.len(), FEEDBACK_FIXED_LEN);
}
