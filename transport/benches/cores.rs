//! Source symbols per second through `Sender` → `Receiver`, in memory.
//!
//! One 4 MiB object (T = 1400) crosses from a sender core to a receiver core
//! under a virtual clock: no socket, no sleeping. Without loss this measures
//! the cores' cost per packet (framing, sealing, opening, block assembly, in
//! order delivery). With 10% loss it adds the whole repair cycle: NACK
//! backoff, repair answered at once, fresh RaptorQ repair symbols and decoding. The seal
//! is a toy keyed checksum, so real cryptography is not in the figures.
//!
//! Every iteration checks that the receiver completed the object and handed
//! out exactly its bytes, so a broken path cannot pass for a fast one.

#![allow(clippy::expect_used, clippy::unwrap_used)] // bench harness: a broken path must abort the run

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use lsim_transport::rng::Rng;
use lsim_transport::seal::{Nonce, Seal, SealError};
use lsim_transport::wire::ObjectKind;
use lsim_transport::{Receiver, ReceiverConfig, ReceiverEvent, Sender, SenderConfig, Time};

const OBJECT_LEN: usize = 4 << 20;
const SYMBOL_SIZE: u16 = 1400;
const KEY: u64 = 0x6c73_696d_2d62_656e;
/// Seed of the medium's drops: every iteration loses the same datagrams.
const LOSS_SEED: u64 = 7;
/// Virtual time by which a transfer must have completed (it needs a few seconds).
const GIVE_UP: Time = Time::from_micros(600_000_000);

/// A keyed 16-byte checksum over header and ciphertext, and an xor keystream
/// over the body. Not cryptography: it touches every byte both ways, as a
/// real seal does, and refuses anything sealed under another key or epoch.
struct ToySeal {
    key: u64,
}

const EPOCH: u32 = 1;

/// SplitMix64's finaliser.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl ToySeal {
    fn keystream(&self, nonce: Nonce) -> [u8; 8] {
        mix(self.key ^ (u64::from(nonce.node) << 32) ^ nonce.seq.rotate_left(17)).to_le_bytes()
    }

    fn tag(&self, nonce: Nonce, header: &[u8], payload: &[u8]) -> [u8; 16] {
        let mut a = mix(self.key ^ nonce.seq);
        let mut b = mix(self.key.rotate_left(32) ^ u64::from(nonce.node) ^ ((payload.len() as u64) << 32));
        for chunk in header.chunks(8).chain(payload.chunks(8)) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            let w = u64::from_le_bytes(w);
            a = (a ^ w).wrapping_mul(0x0000_0100_0000_01b3);
            b = b.rotate_left(23).wrapping_add(w);
        }
        let mut tag = [0u8; 16];
        tag[..8].copy_from_slice(&mix(a).to_le_bytes());
        tag[8..].copy_from_slice(&mix(a ^ b).to_le_bytes());
        tag
    }

    fn xor(&self, nonce: Nonce, payload: &mut [u8]) {
        let ks = self.keystream(nonce);
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= ks[i & 7];
        }
    }
}

impl Seal for ToySeal {
    fn tag_len(&self) -> usize {
        16
    }
    fn current_epoch(&self) -> u32 {
        EPOCH
    }
    fn seal(
        &mut self,
        epoch: u32,
        nonce: Nonce,
        header: &[u8],
        payload: &mut [u8],
        tag: &mut [u8],
    ) -> Result<(), SealError> {
        if epoch != EPOCH {
            return Err(SealError::UnknownEpoch(epoch));
        }
        self.xor(nonce, payload);
        tag.copy_from_slice(&self.tag(nonce, header, payload));
        Ok(())
    }
    fn open(
        &mut self,
        epoch: u32,
        nonce: Nonce,
        header: &[u8],
        payload: &mut [u8],
        tag: &[u8],
    ) -> Result<(), SealError> {
        if epoch != EPOCH {
            return Err(SealError::UnknownEpoch(epoch));
        }
        if self.tag(nonce, header, payload) != tag {
            return Err(SealError::BadTag);
        }
        self.xor(nonce, payload);
        Ok(())
    }
}

/// One benchmark case: block size K and the share of sender datagrams the medium drops.
#[derive(Clone, Copy)]
struct Case {
    block_symbols: u16,
    loss: f64,
}

impl Case {
    fn name(&self) -> String {
        format!("k{}/loss{}", self.block_symbols, (self.loss * 100.0).round())
    }
}

/// What one transfer did.
struct Outcome {
    delivered: u64,
    complete: bool,
    end: Time,
    repair_sent: u64,
    repair_rounds: u64,
    blocks_repaired: u64,
}

/// Moves `object` from a sender to a receiver until the receiver completes it.
/// Datagrams from the sender are dropped with probability `case.loss`; the
/// receiver's feedback always arrives. When neither core has anything to
/// send, the clock jumps to the earlier of their next deadlines.
fn transfer(object: &Arc<[u8]>, case: Case) -> Outcome {
    let cfg = SenderConfig {
        node: 1,
        symbol_size: SYMBOL_SIZE,
        block_symbols: case.block_symbols,
        rate: 0,
        ..Default::default()
    };
    let mut tx = Sender::new(cfg, ToySeal { key: KEY }).expect("valid sender config");
    let mut rx = Receiver::new(ReceiverConfig { node: 2, ..Default::default() }, ToySeal { key: KEY });
    if let Err(e) = tx.send(ObjectKind::File, Box::new(Arc::clone(object))) {
        panic!("sender refused the object: {e}");
    }
    let mut medium = Rng::new(LOSS_SEED);
    let mut buf = Vec::with_capacity(2048);
    let mut now = Time::ZERO;
    let mut delivered = 0u64;
    let mut complete = false;
    while !complete {
        let mut moved = false;
        while let Some(t) = tx.poll_transmit(now, &mut buf) {
            moved = true;
            if !medium.chance(case.loss) {
                rx.handle_datagram(now, &buf[..t.len]);
            }
        }
        while let Some(t) = rx.poll_transmit(now, &mut buf) {
            moved = true;
            tx.handle_datagram(now, &buf[..t.len]);
        }
        while let Some(event) = rx.poll_event() {
            match event {
                ReceiverEvent::ObjectData { offset, data, .. } => {
                    assert_eq!(offset, delivered, "data out of order");
                    delivered += data.len() as u64;
                }
                ReceiverEvent::ObjectComplete { .. } => complete = true,
                ReceiverEvent::ObjectLost { object, .. } => panic!("object {object} lost at {now}"),
                ReceiverEvent::ObjectStarted { .. }
                | ReceiverEvent::EpochAhead { .. }
                | ReceiverEvent::SenderRestarted { .. }
                | ReceiverEvent::ObjectProgress { .. } => {}
            }
        }
        if !moved && !complete {
            now = wake_up(now, tx.poll_timeout(), rx.poll_timeout());
            assert!(now < GIVE_UP, "no completion by {now}: {delivered} of {OBJECT_LEN} bytes delivered");
            tx.handle_timeout(now);
            rx.handle_timeout(now);
        }
    }
    Outcome {
        delivered,
        complete,
        end: now,
        repair_sent: tx.stats().repair_sent,
        repair_rounds: tx.stats().repair_rounds,
        blocks_repaired: rx.stats().blocks_repaired,
    }
}

/// The next virtual time to run timers at: the earliest deadline, and never
/// the same instant again (so a core that names `now` cannot stall the loop).
fn wake_up(now: Time, a: Option<Time>, b: Option<Time>) -> Time {
    let next = match (a, b) {
        (Some(a), Some(b)) => a.min(b),
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => panic!("both cores idle at {now} before the object completed"),
    };
    next.max(now + Duration::from_micros(1))
}

/// The cheap per-iteration check that the transfer really happened.
fn check(case: Case, o: &Outcome) {
    assert!(
        o.complete && o.delivered == OBJECT_LEN as u64,
        "{}: delivered {} of {OBJECT_LEN}",
        case.name(),
        o.delivered
    );
    if case.loss > 0.0 {
        assert!(o.repair_sent > 0 && o.blocks_repaired > 0, "{}: lossy transfer without repair", case.name());
    }
}

fn cores(c: &mut Criterion) {
    let mut rng = Rng::new(1);
    let object: Arc<[u8]> = (0..OBJECT_LEN).map(|_| rng.next_u64() as u8).collect();
    let symbols = OBJECT_LEN.div_ceil(usize::from(SYMBOL_SIZE)) as u64;
    let cases = [
        Case { block_symbols: 64, loss: 0.0 },
        Case { block_symbols: 64, loss: 0.1 },
        Case { block_symbols: 1024, loss: 0.0 },
        Case { block_symbols: 1024, loss: 0.1 },
    ];

    let mut group = c.benchmark_group("sender_to_receiver");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::ElementsAndBytes { elements: symbols, bytes: OBJECT_LEN as u64 });
    for case in cases {
        // One untimed run to show what the timed ones do.
        let o = transfer(&object, case);
        check(case, &o);
        eprintln!(
            "{}: {symbols} source symbols, {} repair symbols in {} rounds, {} blocks repaired, {} virtual",
            case.name(),
            o.repair_sent,
            o.repair_rounds,
            o.blocks_repaired,
            o.end
        );
        group.bench_with_input(BenchmarkId::from_parameter(case.name()), &case, |b, &case| {
            b.iter(|| {
                let o = transfer(black_box(&object), case);
                check(case, &o);
                o.delivered
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = cores
}
criterion_main!(benches);
