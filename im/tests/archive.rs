#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The archive's store survives `kill -9` in the middle of writing: a
//! writer process (this test binary again) is killed while it commits
//! blocks as fast as it can, five times over; after each kill the store
//! opens, every block in it opens and equals what was written, its byte
//! count is the sum of its objects', and the next writer goes on from it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use lsim_im::group::archive::{ArchiveStore, Limits, Put};
use lsim_transport::geometry::Geometry;
use lsim_transport::wire::ObjectKind;

const KEY: [u8; 32] = [0x42; 32];
const BLOCK: usize = 64 * 1024;
const WRITER: &str = "LSIM_ARCHIVE_TEST_WRITER";

fn content(object: u32, block: u32) -> Vec<u8> {
    (0..BLOCK).map(|i| (i as u32).wrapping_mul(2_654_435_761).wrapping_add(object * 7 + block) as u8).collect()
}

fn geometry() -> Geometry {
    Geometry::new(8 * BLOCK as u64, 1024, 64).unwrap()
}

/// Writes objects of 8 blocks, one transaction each, until killed.
fn writer(path: &Path) {
    let mut store = ArchiveStore::open(path, &KEY, Limits::default()).unwrap();
    let mut object = store.objects().unwrap().iter().map(|(k, _)| k.1 + 1).max().unwrap_or(0);
    loop {
        let puts: Vec<Put> = (0..8)
            .map(|b| Put {
                key: (1, object, b),
                kind: ObjectKind::File,
                geometry: geometry(),
                epoch: 1,
                bytes: content(object, b),
                counter: Some(u64::from(object)),
            })
            .collect();
        store.put(&puts).unwrap();
        println!("committed {object}");
        object += 1;
    }
}

#[test]
fn a_kill_mid_write_leaves_only_whole_blocks() {
    if let Some(path) = std::env::var_os(WRITER) {
        writer(Path::new(&path));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("archive.redb");
    let mut committed_before = 0;
    for round in 0..5u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "a_kill_mid_write_leaves_only_whole_blocks", "--nocapture", "--test-threads=1"])
            .env(WRITER, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = 0;
        while seen < 3 {
            let line = lines.next().expect("the writer stopped").unwrap();
            seen += usize::from(line.starts_with("committed"));
        }
        // Somewhere inside a later transaction.
        std::thread::sleep(Duration::from_millis(3 + round * 7));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let store = ArchiveStore::open(&path, &KEY, Limits::default()).unwrap();
        let objects = store.objects().unwrap();
        assert!(objects.len() >= committed_before + 3, "round {round}: {} objects", objects.len());
        for (i, &((origin, object), meta)) in objects.iter().enumerate() {
            assert_eq!((origin, object), (1, i as u32), "objects are whole and in order");
            for b in 0..8 {
                let got = store.block((1, object, b)).unwrap().expect("a block of a committed object is missing");
                assert!(got == content(object, b), "object {object} block {b} differs");
            }
            assert_eq!(meta.kind, ObjectKind::File);
        }
        assert!(store.block((1, objects.len() as u32, 0)).unwrap().is_none(), "half an object");
        assert_eq!(store.bytes(), objects.iter().map(|(_, m)| m.bytes).sum::<u64>());
        assert_eq!(store.counters().unwrap(), vec![(1, objects.len() as u64 - 1)]);
        committed_before = objects.len();
        eprintln!("round {round}: {} objects whole after the kill", objects.len());
    }
}
