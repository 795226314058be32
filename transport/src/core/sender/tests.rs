//! The sender alone, driven by its own deadlines: when it wakes, and when it
//! says it may stop. Exchanges with receivers are in `core::tests`.

use std::time::Duration;

use super::*;
use crate::core::tests::{feedback, object, sealed};
use crate::linger::LingerConfig;
use crate::seal::KeyedSum;

const QUIET: Duration = Duration::from_secs(1);
const MOST: Duration = Duration::from_secs(4);

/// A sender with a short linger that has sent one small object.
fn lingering_sender() -> Sender<KeyedSum> {
    let cfg = SenderConfig {
        node: 1,
        rate: 0,
        symbol_size: 100,
        block_symbols: 16,
        linger: LingerConfig { quiet: QUIET, most: MOST },
        ..Default::default()
    };
    let mut tx = Sender::new(cfg, KeyedSum(0x5eed)).unwrap();
    tx.send_bytes(ObjectKind::File, object(1_000)).unwrap();
    tx
}

/// Runs `tx` by its own `poll_timeout` until `until`, feeding it a NACK for
/// block 0 at each time in `nacks`; returns when it went idle first and
/// when it said it may stop.
fn run(tx: &mut Sender<KeyedSum>, nacks: &[Time], until: Time) -> (Option<Time>, Option<Time>) {
    let (mut now, mut buf) = (Time::ZERO, Vec::new());
    let (mut idle, mut stop, mut seq) = (None, None, 0);
    let mut nacks = nacks.iter().copied().peekable();
    while now < until {
        tx.handle_timeout(now);
        while tx.poll_transmit(now, &mut buf).is_some() {}
        while let Some(e) = tx.poll_event() {
            match e {
                SenderEvent::Idle => idle = idle.or(Some(now)),
                SenderEvent::MayStop => {
                    assert!(stop.is_none(), "MayStop said twice for one object");
                    stop = Some(now);
                }
                _ => {}
            }
        }
        let next = tx.poll_timeout().expect("a sender always has a deadline");
        assert!(next >= now, "woken in the past");
        match nacks.peek() {
            Some(&n) if n <= next => {
                now = n.max(now);
                seq += 1;
                let nack = NackEntry::Block { object: 0, block: 0, needed: 1 };
                tx.handle_datagram(now, &sealed(2, seq, &feedback(1, vec![nack])));
                nacks.next();
            }
            _ => now = next,
        }
    }
    (idle, stop)
}

#[test]
fn an_idle_sender_may_stop_a_quiet_time_after_its_last_source_and_wakes_itself_for_it() {
    let mut tx = lingering_sender();
    let (idle, stop) = run(&mut tx, &[], Time::from_micros(10_000_000));
    let (idle, stop) = (idle.expect("went idle"), stop.expect("said it may stop"));
    // The 1,000-byte object is all sent at time 0; the flushes end before the quiet time.
    assert!(idle < Time::ZERO + QUIET, "idle at {idle:?}");
    assert_eq!(stop, Time::ZERO + QUIET, "exactly the quiet time after the last source (its own deadline woke it)");
}

#[test]
fn a_late_nack_is_answered_and_the_quiet_time_starts_again() {
    let mut tx = lingering_sender();
    let late = Time::ZERO + QUIET / 2;
    let before = tx.stats().repair_sent;
    let (_, stop) = run(&mut tx, &[late], Time::from_micros(10_000_000));
    assert!(tx.stats().repair_sent > before, "the late NACK got its repair");
    let stop = stop.expect("said it may stop");
    assert!(stop >= late + QUIET, "stopped at {stop:?}, within the quiet time of the NACK at {late:?}");
    assert!(stop <= late + QUIET + Duration::from_millis(100), "but not much later: {stop:?}");
}

#[test]
fn a_receiver_nacking_without_end_holds_the_sender_at_most_the_longest_linger() {
    let mut tx = lingering_sender();
    let nacks: Vec<Time> = (1..200).map(|i| Time::from_micros(i * 50_000)).collect();
    // (a NACK every 50 ms: never a quiet second)
    let (_, stop) = run(&mut tx, &nacks, Time::from_micros(20_000_000));
    let stop = stop.expect("said it may stop although NACKs never ended");
    // The 1,000-byte object is all sent at once, at time 0.
    assert!(stop >= Time::ZERO + MOST && stop <= Time::ZERO + MOST + Duration::from_millis(60), "{stop:?}");
    assert!(tx.stats().nacks_received >= 50, "the NACKs kept coming");
}

#[test]
fn a_new_object_rearms_the_linger() {
    let mut tx = lingering_sender();
    let (_, first) = run(&mut tx, &[], Time::from_micros(2_000_000));
    assert!(first.is_some());
    tx.send_bytes(ObjectKind::Chat, object(100)).unwrap();
    let (_, again) = run(&mut tx, &[], Time::from_micros(6_000_000));
    assert!(again.is_some(), "said again for the new object");
}

#[test]
fn a_paced_sender_never_asks_to_be_woken_in_the_past() {
    // A probe or flush falls due while the pacer waits: the deadline is the
    // pacer's, not the past (a driver would spin until then).
    let cfg =
        SenderConfig { rate: 50_000, queue_target: None, symbol_size: 100, block_symbols: 16, ..Default::default() };
    let mut tx = Sender::new(cfg, KeyedSum(7)).unwrap();
    tx.send_bytes(ObjectKind::File, object(20_000)).unwrap();
    let (mut now, mut buf, mut sent) = (Time::ZERO, Vec::new(), 0);
    for _ in 0..10_000 {
        while tx.poll_transmit(now, &mut buf).is_some() {
            sent += 1;
        }
        let Some(next) = tx.poll_timeout() else { break };
        assert!(next > now || sent == 0, "woken at {next:?} when it is already {now:?}");
        now = next;
        tx.handle_timeout(now);
        if tx.is_idle() {
            break;
        }
    }
    assert!(sent >= 200, "the whole object went out, paced: {sent} packets");
}

#[test]
fn a_file_reports_its_progress_in_twentieths_and_chat_does_not() {
    let mut tx = Sender::new(
        SenderConfig { node: 1, rate: 0, symbol_size: 100, block_symbols: 16, ..Default::default() },
        KeyedSum(3),
    )
    .unwrap();
    tx.send_bytes(ObjectKind::Chat, object(1_500)).unwrap();
    let file = tx.send_bytes(ObjectKind::File, object(10_000)).unwrap();
    let mut buf = Vec::new();
    while tx.poll_transmit(Time::ZERO, &mut buf).is_some() && tx.stats().source_sent < 200 {}
    let mut seen = Vec::new();
    while let Some(e) = tx.poll_event() {
        if let SenderEvent::ObjectProgress { object, sent, len } = e {
            assert_eq!((object, len), (file, 10_000), "only the file reports progress");
            seen.push(sent);
        }
    }
    // 100 symbols: one report per 5 symbols, the last (100 %) is ObjectSent's.
    assert_eq!(seen, (1..20).map(|i| i * 500).collect::<Vec<u64>>());
}
