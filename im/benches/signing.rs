//! What sender authentication costs.
//!
//! Chat: signing a message (sender) and opening it (receiver: the key
//! server's certificate and the sender's signature, two Ed25519
//! verifications). Files: a 1 MiB file wrapped and unwrapped with and
//! without the signature (one signature per file over header and SHA-256,
//! so the cost per byte is the hashing either way).

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
    for signed in [false, true] {
        group.bench_function(if signed { "signed" } else { "unsigned" }, |b| {
            b.iter(|| {
                let mut o = if signed {
                    Outgoing::signed("f", data.clone(), s.clone())
                } else {
                    Outgoing::new("f", data.clone())
                };
                let mut env = vec![0u8; o.len() as usize];
                o.read_at(0, &mut env).unwrap();
                let mut inc = Incoming::new(Vec::with_capacity(data.len()));
                inc.push(&env).unwrap();
                let (r, out) = inc.finish().unwrap();
                if let Some(sig) = &r.signature {
                    sig.verify(&vk, 0).unwrap();
                }
                black_box(out.len())
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = chat, files
}
criterion_main!(benches);
