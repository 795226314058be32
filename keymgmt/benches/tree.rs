//! Rekey computation at n = 100,000 members (d = 4): the key server's cost
//! of one batch, from `commit()` through wrapping to the Ed25519 signature.
//!
//! Three cases: a single join, a single leave, and one batch of 1,000 leaves.
//! Each timed commit is undone by an untimed one (the joiner leaves again, the
//! leavers rejoin), so the group stays at 100,000 members however many
//! iterations criterion runs. Before timing, the bench prints the bytes of the
//! signed rekey and of joiners' paths per member change.

#![allow(clippy::expect_used, clippy::unwrap_used)] // bench harness: a broken path must abort the run

use std::collections::HashSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;
use lsim_keymgmt::key::SecretKey;
use lsim_keymgmt::rekey::SignedRekey;
use lsim_keymgmt::tree::{Batch, DEFAULT_DEGREE, KeyTree, MemberId};

const N: u64 = 100_000;
const BATCH_LEAVES: usize = 1_000;
/// Bytes a path key takes on the registrar channel (node, version, key).
const PATH_KEY_BYTES: usize = 4 + 4 + 32;

struct Server {
    tree: KeyTree,
    signer: SigningKey,
    /// Picks leavers spread over the tree, deterministically.
    lcg: u64,
    next_joiner: u64,
}

impl Server {
    fn new() -> Server {
        let mut tree = KeyTree::new(1, DEFAULT_DEGREE).unwrap();
        for i in 0..N {
            tree.request_join(MemberId(i), SecretKey::random().unwrap()).unwrap();
        }
        tree.commit().unwrap();
        Server { tree, signer: SigningKey::from_bytes(&[9u8; 32]), lcg: 1, next_joiner: 1 << 40 }
    }

    /// Commit and sign: what the key server does per batch.
    fn rekey(&mut self) -> (Batch, SignedRekey) {
        let batch = self.tree.commit().unwrap();
        let signed = SignedRekey::sign(&batch.rekey, &self.signer);
        (batch, signed)
    }

    fn pick(&mut self) -> MemberId {
        self.lcg = self.lcg.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        MemberId((self.lcg >> 33) % N)
    }

    fn leavers(&mut self, n: usize) -> Vec<MemberId> {
        let mut seen = HashSet::with_capacity(n);
        let mut v = Vec::with_capacity(n);
        while v.len() < n {
            let m = self.pick();
            if seen.insert(m) {
                v.push(m);
            }
        }
        v
    }

    fn join(&mut self) -> ((Batch, SignedRekey), MemberId) {
        let m = MemberId(self.next_joiner);
        self.next_joiner += 1;
        self.tree.request_join(m, SecretKey::random().unwrap()).unwrap();
        (self.rekey(), m)
    }

    fn leave(&mut self, members: &[MemberId]) -> (Batch, SignedRekey) {
        for &m in members {
            self.tree.request_leave(m).unwrap();
        }
        self.rekey()
    }

    fn rejoin(&mut self, members: &[MemberId]) {
        for &m in members {
            self.tree.request_join(m, SecretKey::random().unwrap()).unwrap();
        }
        self.tree.commit().unwrap();
    }
}

fn report(what: &str, changes: usize, (batch, signed): &(Batch, SignedRekey)) {
    let paths: usize = batch.joiner_paths.iter().map(|p| p.keys.len() * PATH_KEY_BYTES).sum();
    eprintln!(
        "{what}: {} wrapped keys, signed rekey {} B multicast ({} B per member change), joiner paths {} B unicast",
        batch.rekey.wrapped.len(),
        signed.encoded_len(),
        signed.encoded_len() / changes,
        paths,
    );
}

fn tree(c: &mut Criterion) {
    let mut s = Server::new();

    let (joined, m) = s.join();
    report("single join at n = 100,000", 1, &joined);
    s.leave(&[m]);
    let one = s.leavers(1);
    let left = s.leave(&one);
    report("single leave at n = 100,000", 1, &left);
    s.rejoin(&one);
    let many = s.leavers(BATCH_LEAVES);
    let left = s.leave(&many);
    report("batch of 1,000 leaves at n = 100,000", many.len(), &left);
    s.rejoin(&many);

    c.bench_function("commit+sign/single join/n=100000", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let m = MemberId(s.next_joiner);
                s.next_joiner += 1;
                s.tree.request_join(m, SecretKey::random().unwrap()).unwrap();
                let t = Instant::now();
                black_box(s.rekey());
                spent += t.elapsed();
                s.leave(&[m]);
            }
            spent
        })
    });
    c.bench_function("commit+sign/single leave/n=100000", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let one = s.leavers(1);
                s.tree.request_leave(one[0]).unwrap();
                let t = Instant::now();
                black_box(s.rekey());
                spent += t.elapsed();
                s.rejoin(&one);
            }
            spent
        })
    });
    c.bench_function("commit+sign/1000 leaves/n=100000", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let many = s.leavers(BATCH_LEAVES);
                for &m in &many {
                    s.tree.request_leave(m).unwrap();
                }
                let t = Instant::now();
                black_box(s.rekey());
                spent += t.elapsed();
                s.rejoin(&many);
            }
            spent
        })
    });
    assert_eq!(s.tree.len() as u64, N);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = tree
}
criterion_main!(benches);
