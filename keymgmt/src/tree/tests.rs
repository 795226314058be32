//! The key tree's unit tests: requests, epochs, the sizes the theory
//! promises, the order of the wraps, and the persistence format (round
//! trips, damaged and garbage bytes).
//!
//! Owns only tests; it must not touch anything outside them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;

use super::*;

fn key(i: u64) -> SecretKey {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&i.to_be_bytes());
    b[8] = 0x5a;
    SecretKey::from_bytes(b)
}

fn tree_of(n: u64) -> (KeyTree, Batch) {
    let mut t = KeyTree::new(1, DEFAULT_DEGREE).unwrap();
    for i in 0..n {
        t.request_join(MemberId(i), key(i)).unwrap();
    }
    let b = t.commit().unwrap();
    (t, b)
}

/// The node ids on every member's path: the tree's shape, without keys.
fn shape(t: &KeyTree) -> Vec<(MemberId, NodeId, Vec<NodeId>)> {
    t.members()
        .map(|m| {
            let p = t.path_keys(m).unwrap();
            (m, p.leaf, p.keys.iter().map(|k| k.node).collect())
        })
        .collect()
}

#[test]
fn requests_are_checked() {
    assert_eq!(KeyTree::new(1, 1).unwrap_err(), TreeError::Degree(1));
    assert_eq!(KeyTree::new(1, MAX_DEGREE + 1).unwrap_err(), TreeError::Degree(MAX_DEGREE + 1));
    let (mut t, _) = tree_of(3);
    assert_eq!(t.commit().unwrap_err(), TreeError::NothingQueued(1));
    let m = |i| MemberId(i);
    assert_eq!(t.request_join(m(1), key(1)), Err(TreeError::AlreadyMember { group: 1, member: m(1) }));
    assert_eq!(t.request_leave(m(7)), Err(TreeError::NotMember { group: 1, member: m(7) }));
    t.request_leave(m(1)).unwrap();
    assert_eq!(t.request_leave(m(1)), Err(TreeError::AlreadyQueued { group: 1, member: m(1) }));
    t.request_join(m(7), key(7)).unwrap();
    assert_eq!(t.request_leave(m(7)), Err(TreeError::AlreadyQueued { group: 1, member: m(7) }));
    assert_eq!(t.queued(), 2);
    let b = t.commit().unwrap();
    assert_eq!((b.epoch, b.joined.clone(), b.left.clone()), (2, vec![m(7)], vec![m(1)]));
    assert_eq!(t.members().collect::<Vec<_>>(), vec![m(0), m(2), m(7)]);
    assert_eq!(t.queued(), 0);
    // The joiner takes the leaver's slot: no split, no growth.
    assert_eq!(t.depth(m(7)), Some(1));
}

#[test]
fn every_commit_moves_one_epoch_and_changes_the_group_key() {
    let (mut t, b) = tree_of(10);
    assert_eq!((b.epoch, t.epoch(), b.rekey.prev_epoch), (1, 1, 0));
    assert!(b.rekey.wrapped.is_empty(), "nobody held a key before the first batch");
    let mut seen = vec![t.group_key().clone()];
    for i in 0..10 {
        if i % 2 == 0 {
            t.request_leave(MemberId(i)).unwrap();
        } else {
            t.request_join(MemberId(100 + i), key(100 + i)).unwrap();
        }
        let b = t.commit().unwrap();
        assert_eq!((b.epoch, b.rekey.prev_epoch, b.rekey.epoch), (i as u32 + 2, i as u32 + 1, i as u32 + 2));
        assert!(!seen.contains(t.group_key()));
        seen.push(t.group_key().clone());
    }
    t.request_leave(MemberId(1)).unwrap();
    for m in t.members().collect::<Vec<_>>() {
        if m != MemberId(1) {
            t.request_leave(m).unwrap();
        }
    }
    let b = t.commit().unwrap();
    assert!(t.is_empty() && b.rekey.wrapped.is_empty());
    t.request_join(MemberId(1), key(1)).unwrap();
    let b = t.commit().unwrap();
    assert_eq!(b.joiner_paths[0].keys.len(), 1);
    assert_eq!(&b.joiner_paths[0].keys[0].key, t.group_key());
}

#[test]
fn sizes_match_the_theory_at_65536() {
    let (mut t, b) = tree_of(65_536);
    assert_eq!(t.len(), 65_536);
    assert!(t.members().all(|m| t.depth(m) == Some(8)), "a complete 4-ary tree of height 8");
    assert!(b.rekey.wrapped.is_empty());
    assert!(b.joiner_paths.iter().all(|p| p.keys.len() == 8));

    t.request_leave(MemberId(12_345)).unwrap();
    let leave = t.commit().unwrap();
    assert!(leave.keys_sent() <= 32, "leave wrapped {}", leave.keys_sent());
    assert_eq!(leave.keys_sent(), 31);

    t.request_join(MemberId(70_000), key(70_000)).unwrap();
    let join = t.commit().unwrap();
    assert_eq!(t.len(), 65_536);
    assert!(join.keys_sent() <= 16, "join sent {}", join.keys_sent());
    assert_eq!((join.rekey.wrapped.len(), join.joiner_paths[0].keys.len()), (8, 8));

    // One more join needs a split: the tree grows a level where it must.
    t.request_join(MemberId(70_001), key(70_001)).unwrap();
    let grow = t.commit().unwrap();
    assert_eq!(grow.keys_sent(), 18);
    assert_eq!(t.depth(MemberId(70_001)), Some(9));
}

#[test]
fn batched_leaves_share_path_keys() {
    let (mut t, _) = tree_of(4096);
    for i in (0..4096).step_by(64) {
        t.request_leave(MemberId(i)).unwrap();
    }
    let b = t.commit().unwrap();
    // 64 single leaves would wrap 64 × 23 keys; L·d·log_d(n/L) = 64·4·3 = 768.
    assert!(b.rekey.wrapped.len() <= 768, "{} wraps", b.rekey.wrapped.len());
    assert!(b.rekey.wrapped.len() < 64 * 23);
}

#[test]
fn wraps_come_deepest_first() {
    let (mut t, _) = tree_of(300);
    let depth = |t: &KeyTree, node: NodeId| t.nodes.get(&node).map(|n| n.depth).unwrap();
    for i in 0..20 {
        t.request_leave(MemberId(i * 7)).unwrap();
        t.request_join(MemberId(1000 + i), key(1000 + i)).unwrap();
    }
    let b = t.commit().unwrap();
    let depths: Vec<u32> = b.rekey.wrapped.iter().map(|w| depth(&t, w.node)).collect();
    assert!(depths.windows(2).all(|d| d[0] >= d[1]));
    assert!(b.rekey.wrapped.iter().all(|w| w.version == b.epoch && w.under_version <= b.epoch));
}

#[test]
fn garbage_and_damaged_state_is_refused() {
    for bytes in [&b""[..], b"LSKT", b"LSKT\x01\x04", b"nonsense that is long enough to read a header"] {
        assert!(KeyTree::from_bytes(bytes).is_err());
    }
    let (t, _) = tree_of(5);
    let good = t.to_bytes();
    let mut huge_count = good.to_vec();
    huge_count[22..26].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(KeyTree::from_bytes(&huge_count).is_err());
    let mut bad_degree = good.to_vec();
    bad_degree[5] = 200;
    assert_eq!(KeyTree::from_bytes(&bad_degree).unwrap_err(), TreeError::Degree(200));
}

fn ops() -> impl Strategy<Value = Vec<Vec<(bool, u8)>>> {
    proptest::collection::vec(proptest::collection::vec((any::<bool>(), 0u8..60), 1..12), 1..8)
}

/// Applies batches of requests (ones that make no sense are skipped);
/// the last batch stays queued.
fn build(batches: &[Vec<(bool, u8)>], degree: u8) -> KeyTree {
    let mut t = KeyTree::new(3, degree).unwrap();
    for (i, batch) in batches.iter().enumerate() {
        for &(join, m) in batch {
            let m = u64::from(m);
            let _ = if join { t.request_join(MemberId(m), key(m)) } else { t.request_leave(MemberId(m)) };
        }
        if i + 1 < batches.len() && t.queued() > 0 {
            t.commit().unwrap();
        }
    }
    t
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn persistence_round_trips(batches in ops(), degree in 2u8..6) {
        let mut t = build(&batches, degree);
        let bytes = t.to_bytes();
        prop_assert_eq!(bytes.capacity(), bytes.len(), "sized up front: no reallocation left key copies");
        let mut back = KeyTree::from_bytes(&bytes).unwrap();
        prop_assert_eq!(&back.to_bytes()[..], &bytes[..]);
        prop_assert_eq!(back.group_key(), t.group_key());
        prop_assert_eq!(shape(&back), shape(&t));
        prop_assert_eq!(back.queued(), t.queued());
        // The restored tree makes the same decisions.
        if t.queued() > 0 {
            let (a, b) = (t.commit().unwrap(), back.commit().unwrap());
            prop_assert_eq!(shape(&back), shape(&t));
            let ids = |b: &Batch| b.rekey.wrapped.iter().map(|w| (w.target(), w.under())).collect::<Vec<_>>();
            prop_assert_eq!(ids(&a), ids(&b));
        }
    }

    #[test]
    fn damaged_state_never_panics(batches in ops(), cut in 0usize..4000, at in 0usize..4000, bit in 0u8..8) {
        let t = build(&batches, 4);
        let mut bytes = t.to_bytes().to_vec();
        if let Some(b) = bytes.get_mut(at) {
            *b ^= 1 << bit;
        }
        bytes.truncate(cut);
        if let Ok(back) = KeyTree::from_bytes(&bytes) {
            // Whatever loads must be a tree that works.
            let mut back = back;
            let _ = back.request_join(MemberId(999), key(999));
            prop_assert!(back.commit().is_ok());
        }
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = KeyTree::from_bytes(&bytes);
        let mut prefixed = b"LSKT\x01\x04".to_vec();
        prefixed.extend_from_slice(&bytes);
        let _ = KeyTree::from_bytes(&prefixed);
    }
}
