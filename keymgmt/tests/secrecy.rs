//! Forward and backward secrecy of the key tree, end to end.
//!
//! A key server commits random batches of joins and leaves; every member runs
//! a `MemberKeys` and applies every signed rekey. After every commit all
//! current members hold the tree's group key. At the end, coalitions of
//! members pool every key they ever held and every rekey ever multicast, and
//! unwrap everything they can until nothing new comes out:
//!
//! - forward secrecy: the members who had left by epoch t, together, never
//!   reach the group key of epoch t or later;
//! - backward secrecy: the members who joined at epoch t or later, together
//!   (and including what they learned afterwards), never reach the group key
//!   of an epoch before t.
//!
//! Any set of departed members is inside the first kind of coalition for its
//! last departure, so checking these coalitions covers every set.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test harness

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use ed25519_dalek::SigningKey;
use lsim_keymgmt::key::SecretKey;
use lsim_keymgmt::member::MemberKeys;
use lsim_keymgmt::rekey::{KeyId, Rekey, SignedRekey};
use lsim_keymgmt::tree::{DEFAULT_DEGREE, KeyTree, MemberId};
use proptest::prelude::*;

const GROUP: u32 = 5;

/// Everything one member (live or gone) ever held.
struct Record {
    joined: u32,
    left: Option<u32>,
    ever: HashMap<KeyId, SecretKey>,
}

struct Sim {
    tree: KeyTree,
    server: SigningKey,
    live: BTreeMap<MemberId, MemberKeys>,
    records: BTreeMap<MemberId, Record>,
    /// Every rekey multicast, as an eavesdropper would keep it.
    sent: Vec<Rekey>,
    /// The tree's group key of each epoch, index = epoch.
    group_keys: Vec<SecretKey>,
    next_id: u64,
}

impl Sim {
    fn new(degree: u8) -> Sim {
        let tree = KeyTree::new(GROUP, degree).unwrap();
        let group_keys = vec![tree.group_key().clone()];
        Sim {
            tree,
            server: SigningKey::from_bytes(&[3u8; 32]),
            live: BTreeMap::new(),
            records: BTreeMap::new(),
            sent: Vec::new(),
            group_keys,
            next_id: 0,
        }
    }

    /// One batch: `joins` new members, and the live members at `leave_picks`
    /// (indices taken modulo the group's size) leave.
    fn batch(&mut self, joins: usize, leave_picks: &[usize]) {
        let live: Vec<MemberId> = self.live.keys().copied().collect();
        let leavers: BTreeSet<MemberId> =
            if live.is_empty() { BTreeSet::new() } else { leave_picks.iter().map(|&i| live[i % live.len()]).collect() };
        if joins == 0 && leavers.is_empty() {
            return;
        }
        for &m in &leavers {
            self.tree.request_leave(m).unwrap();
            self.live.remove(&m);
        }
        let mut joiners = Vec::new();
        for _ in 0..joins {
            let m = MemberId(self.next_id);
            self.next_id += 1;
            let key = SecretKey::random().unwrap();
            self.tree.request_join(m, key.clone()).unwrap();
            self.live.insert(m, MemberKeys::new(GROUP, m, key));
            joiners.push(m);
        }
        let batch = self.tree.commit().unwrap();
        let epoch = batch.epoch;
        assert_eq!(epoch as usize, self.group_keys.len(), "the epoch moves by exactly one");
        self.group_keys.push(self.tree.group_key().clone());
        for m in &leavers {
            self.records.get_mut(m).unwrap().left = Some(epoch);
        }

        // Joiners get their paths over the registrar; everyone else hears the multicast.
        for path in &batch.joiner_paths {
            self.live.get_mut(&path.member).unwrap().install_path(path).unwrap();
        }
        let bytes = SignedRekey::sign(&batch.rekey, &self.server).encode();
        let vk = self.server.verifying_key();
        let joiner_set: HashSet<MemberId> = joiners.iter().copied().collect();
        for (m, keys) in &mut self.live {
            if joiner_set.contains(m) {
                assert!(keys.apply(&bytes, &vk).is_err(), "a joiner already has this epoch");
            } else {
                let applied = keys.apply(&bytes, &vk).unwrap();
                assert_eq!(applied.epoch, epoch);
            }
        }
        self.sent.push(SignedRekey::open(&bytes, &vk).unwrap());

        for (m, keys) in &self.live {
            assert_eq!(keys.epoch(), Some(epoch));
            assert_eq!(keys.group_key(), Some(self.tree.group_key()), "{m} disagrees on the group key");
            let record =
                self.records.entry(*m).or_insert_with(|| Record { joined: epoch, left: None, ever: HashMap::new() });
            if record.joined == epoch {
                for e in 0..epoch {
                    assert!(keys.group_key_for(e).is_none(), "joiner {m} holds the key of epoch {e}");
                }
            }
            record.ever.extend(keys.held_keys().map(|(id, k)| (id, k.clone())));
        }
        assert_eq!(self.tree.len(), self.live.len());
    }

    /// Every key a coalition can reach from what its members held and every rekey sent.
    fn closure<'a>(&self, coalition: impl Iterator<Item = &'a Record>) -> HashSet<[u8; 32]> {
        let mut known: HashMap<KeyId, SecretKey> = HashMap::new();
        for r in coalition {
            known.extend(r.ever.iter().map(|(id, k)| (*id, k.clone())));
        }
        loop {
            let mut learned = 0;
            for rekey in &self.sent {
                for w in &rekey.wrapped {
                    if known.contains_key(&w.target()) {
                        continue;
                    }
                    let Some(under) = known.get(&w.under()) else { continue };
                    if let Some(k) = w.open(rekey.group, rekey.epoch, under) {
                        known.insert(w.target(), k);
                        learned += 1;
                    }
                }
            }
            if learned == 0 {
                break;
            }
        }
        known.values().map(|k| *k.as_bytes()).collect()
    }

    fn check_secrecy(&self) {
        let leave_epochs: BTreeSet<u32> = self.records.values().filter_map(|r| r.left).collect();
        for &t in &leave_epochs {
            let gone = self.records.values().filter(|r| r.left.is_some_and(|l| l <= t));
            let reach = self.closure(gone);
            for (e, k) in self.group_keys.iter().enumerate().skip(t as usize) {
                assert!(!reach.contains(k.as_bytes()), "members gone by epoch {t} reach the group key of epoch {e}");
            }
        }
        let join_epochs: BTreeSet<u32> = self.records.values().map(|r| r.joined).collect();
        for &t in &join_epochs {
            let late = self.records.values().filter(|r| r.joined >= t);
            let reach = self.closure(late);
            for (e, k) in self.group_keys.iter().enumerate().take(t as usize) {
                assert!(
                    !reach.contains(k.as_bytes()),
                    "members joined at epoch {t} or later reach the key of epoch {e}"
                );
            }
        }
    }
}

fn run(degree: u8, initial: usize, batches: &[(usize, Vec<usize>)]) {
    let mut sim = Sim::new(degree);
    sim.batch(initial.max(1), &[]);
    for (joins, leaves) in batches {
        sim.batch(*joins, leaves);
    }
    sim.check_secrecy();
}

fn batches(max_joins: usize, max_leaves: usize) -> impl Strategy<Value = Vec<(usize, Vec<usize>)>> {
    proptest::collection::vec((0..=max_joins, proptest::collection::vec(any::<usize>(), 0..=max_leaves)), 1..10)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn small_groups_keep_secrets(degree in 2u8..6, initial in 1usize..40, batches in batches(6, 6)) {
        run(degree, initial, &batches);
    }

}

proptest! {
    // Every member verifies every rekey's signature: a few cases of hundreds of members are seconds.
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn large_groups_keep_secrets(initial in 100usize..1000, batches in batches(40, 40)) {
        run(DEFAULT_DEGREE, initial, &batches);
    }
}

#[test]
fn a_thousand_members_through_heavy_churn() {
    let churn: Vec<(usize, Vec<usize>)> =
        (0..6).map(|i| (50 * i, (0..(300 - 50 * i)).map(|j| j * 7919 + i).collect())).collect();
    run(DEFAULT_DEGREE, 1000, &churn);
}

#[test]
fn everyone_leaves_and_the_group_starts_again() {
    run(3, 10, &[(0, (0..10).collect()), (5, vec![]), (2, vec![0, 1]), (0, (0..5).collect())]);
}
