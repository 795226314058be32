//! Throughput of the group cipher suites.
//!
//! Two cases per suite: one 1400-byte packet sealed and then opened (a sender's
//! and a receiver's work per packet, each packet with its own nonce, and for
//! Blowfish its own random IV), and one 64 KiB standalone message encrypted and
//! then decrypted (a fresh per-message subkey each time). Throughput counts the
//! payload bytes once, so MB/s is what one core carries end to end.

#![allow(clippy::expect_used, clippy::unwrap_used)] // bench harness: a broken path must abort the run

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lsim_keymgmt::key::SecretKey;
use lsim_keymgmt::suite::{EpochKeys, SuiteId};
use lsim_transport::seal::Nonce;

const PACKET: usize = 1400;
const MESSAGE: usize = 64 * 1024;
/// The transport's fixed header is authenticated alongside each packet.
const HEADER: [u8; 24] = [0x42; 24];

fn keys(suite: SuiteId) -> EpochKeys {
    EpochKeys::derive(suite, 1, &SecretKey::from_bytes([7; 32]))
}

fn packets(c: &mut Criterion) {
    let mut group = c.benchmark_group("packet_seal_open_1400B");
    group.throughput(Throughput::Bytes(PACKET as u64));
    for suite in SuiteId::ALL {
        let keys = keys(suite);
        let (mut sender, mut receiver) = (suite.cipher(), suite.cipher());
        let mut payload = vec![0xa5u8; PACKET];
        let mut trailer = vec![0u8; suite.trailer_len()];
        let mut seq = 0u64;
        group.bench_function(suite.name(), |b| {
            b.iter(|| {
                seq += 1;
                let nonce = Nonce { node: 1, seq };
                sender.seal_packet(&keys, nonce, &HEADER, &mut payload, &mut trailer).unwrap();
                receiver.open_packet(&keys, nonce, &HEADER, black_box(&mut payload), &trailer).unwrap();
            })
        });
    }
    group.finish();
}

fn messages(c: &mut Criterion) {
    let mut group = c.benchmark_group("message_encrypt_decrypt_64KiB");
    group.throughput(Throughput::Bytes(MESSAGE as u64));
    for suite in SuiteId::ALL {
        let keys = keys(suite);
        let cipher = suite.cipher();
        let plaintext = vec![0x5au8; MESSAGE];
        group.bench_function(suite.name(), |b| {
            b.iter(|| {
                let sealed = cipher.encrypt_message(&keys, b"room@conference", black_box(&plaintext)).unwrap();
                let opened = cipher.decrypt_message(&keys, b"room@conference", &sealed).unwrap();
                assert_eq!(opened.len(), MESSAGE);
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = packets, messages
}
criterion_main!(benches);
