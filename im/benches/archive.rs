//! What the archive costs to write: 1 MiB of a file's blocks into the
//! store (sealed at rest, one redb transaction committed with fsync), in
//! the batches the archive's store thread makes: a whole MiB of blocks at
//! once (data arriving faster than the disk commits), and one block per
//! transaction (a slow trickle, the worst case per byte). And reading one
//! block back, as a catch-up does. Beside them, the floor: the same bytes
//! written to a plain file and fsynced once.

#![allow(clippy::expect_used, clippy::unwrap_used)] // bench harness: a broken path must abort the run

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lsim_im::group::archive::{ArchiveStore, Limits, Put};
use lsim_transport::geometry::Geometry;
use lsim_transport::wire::ObjectKind;

/// The default geometry's block: 64 symbols of 1440 bytes.
const BLOCK: usize = 64 * 1440;

fn puts(object: u32, blocks: u32) -> Vec<Put> {
    let geometry = Geometry::new(u64::from(blocks) * BLOCK as u64, 1440, 64).unwrap();
    (0..blocks)
        .map(|b| Put {
            key: (1, object, b),
            kind: ObjectKind::File,
            geometry,
            epoch: 1,
            bytes: vec![(object as u8) ^ (b as u8); BLOCK],
            counter: Some(u64::from(object)),
        })
        .collect()
}

fn write(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = ArchiveStore::open(&dir.path().join("bench.redb"), &[9; 32], Limits::default()).unwrap();
    let per_mib = (1 << 20) / BLOCK as u32 + 1;
    let mut g = c.benchmark_group("archive");
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Bytes(u64::from(per_mib) * BLOCK as u64));
    let mut object = 0;
    g.bench_function("write 1 MiB, one transaction", |b| {
        b.iter(|| {
            object += 1;
            store.put(&puts(object, per_mib)).unwrap();
        })
    });
    g.bench_function("write 1 MiB, a transaction per block", |b| {
        b.iter(|| {
            object += 1;
            for p in puts(object, per_mib) {
                store.put(&[p]).unwrap();
            }
        })
    });
    // The floor beside it: the same bytes to a plain file, fsynced once.
    let plain = dir.path().join("plain.bin");
    let bytes = vec![7u8; per_mib as usize * BLOCK];
    g.bench_function("plain file 1 MiB, write and fsync", |b| {
        b.iter(|| {
            use std::io::Write;
            let mut f = std::fs::File::create(&plain).unwrap();
            f.write_all(&bytes).unwrap();
            f.sync_all().unwrap();
        })
    });
    g.throughput(Throughput::Bytes(BLOCK as u64));
    g.bench_function("read one block", |b| b.iter(|| store.block((1, 1, 3)).unwrap().unwrap()));
    g.finish();
}

criterion_group!(benches, write);
criterion_main!(benches);
