//! What sender authentication costs.
//!
//! Chat: signing a message (sender) and opening it (receiver: the key
//! server's certificate and the sender's signature, two Ed25519
//! verifications). Files: a 1 MiB file wrapped and unwrapped with and
//! without the signature (one signature per file over header and SHA-256,
//! so the cost per byte is the hashing either way), and for some members
//! only (the bytes also encrypted with ChaCha20 under a file key wrapped
//! for 8 recipients, one of whom unwraps it).

#![allow(clippy::expect_used, clippy::unwrap_used)] // bench harness: a broken path must abort the run

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;
use lsim_im::group::chat::ChatMessage;
use lsim_im::group::envelope::{Incoming, Outgoing};
use lsim_im::group::signed;
use lsim_keymgmt::cert::{MemberCert, Signer};
use lsim_keymgmt::client::FileKeyOpener;
use lsim_keymgmt::filekey::{self, FileKey, Wrap};
use lsim_keymgmt::key::SecretKey;
use lsim_transport::source::ObjectSource;

fn signer(server: &SigningKey) -> Arc<Signer> {
    let key = SigningKey::from_bytes(&[2; 32]);
    let cert = MemberCert::issue(server, "alice", 1, 1, key.verifying_key().to_bytes(), u64::MAX);
    Arc::new(Signer::new(key, cert))
}

fn chat(c: &mut Criterion) {
    let server = SigningKey::from_bytes(&[1; 32]);
    let vk = server.verifying_key();
    let s = signer(&server);
    let msg = ChatMessage::new("alice", "fire crossed the ridge, moving to sector 4 now");
    let mut group = c.benchmark_group("chat_120B");
    group.bench_function("encode_unsigned", |b| b.iter(|| black_box(msg.encode())));
    group.bench_function("sign", |b| b.iter(|| black_box(signed::sign(&msg, &s))));
    let bytes = signed::sign(&msg, &s);
    group.bench_function("open_verified", |b| b.iter(|| black_box(signed::open(&bytes, &vk, 0).unwrap())));
    group.finish();
    println!("chat bytes: unsigned {}, signed {}", msg.encode().len(), bytes.len());
}

fn files(c: &mut Criterion) {
    let server = SigningKey::from_bytes(&[1; 32]);
    let vk = server.verifying_key();
    let s = signer(&server);
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i * 31 % 251) as u8).collect();
    let mut group = c.benchmark_group("file_1MiB_wrap_unwrap");
    group.throughput(Throughput::Bytes(data.len() as u64));
    let individual = SecretKey::from_bytes([5; 32]);
    let key = FileKey::from_bytes([6; 32]);
    let wraps: Vec<Wrap> = (0..8).map(|m| filekey::wrap(&individual, "lsim", m, &key).unwrap()).collect();
    let opener = || -> FileKeyOpener {
        let individual = individual.clone();
        Arc::new(move |w: &[Wrap]| filekey::unwrap(&individual, "lsim", &w[3]).ok())
    };
    let source: Arc<[u8]> = data.clone().into();
    let outgoing = |kind: &str| match kind {
        "unsigned" => Outgoing::new("f", source.clone()),
        "signed" => Outgoing::signed("f", source.clone(), s.clone()),
        _ => Outgoing::restricted("f", source.clone(), s.clone(), &wraps, &key).unwrap(),
    };
    // Wrapped into `env` and unwrapped into `out`, both reused: the loop
    // allocates nothing sized like the file, which otherwise put about 2 ms
    // of page faults on whichever function ran first.
    let round_trip = |kind: &str, env: &mut Vec<u8>, out: &mut Vec<u8>| {
        let mut o = outgoing(kind);
        o.read_at(0, env).unwrap();
        out.clear();
        let mut inc =
            if kind == "restricted" { Incoming::with_keys(&mut *out, opener()) } else { Incoming::new(&mut *out) };
        inc.push(env).unwrap();
        let (r, _) = inc.finish().unwrap();
        if let Some(sig) = &r.signature {
            sig.verify(&vk, 0).unwrap();
        }
    };
    for kind in ["unsigned", "signed", "restricted"] {
        let mut env = vec![0u8; outgoing(kind).len() as usize];
        let mut out = Vec::with_capacity(data.len());
        round_trip(kind, &mut env, &mut out);
        assert!(out == data, "{kind}");
        group.bench_function(kind, |b| b.iter(|| round_trip(kind, &mut env, &mut out)));
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = chat, files
}
criterion_main!(benches);
