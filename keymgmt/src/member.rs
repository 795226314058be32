//! What one member holds of one group's keys.
//!
//! Owns `MemberKeys`: the member's individual key, the keys on its path from
//! its leaf to the root (node → version and key), the current group key and
//! epoch, a short window of past epochs' group keys for data still in
//! flight, and the history: past epochs' group keys of its membership that
//! the registrar handed over (epochs it missed, away), for repair of what
//! was sent in them. It applies signed rekeys (signature first, then
//! epochs, then unwrapping bottom-up) and installs paths (and their
//! history) from the registrar. A refused
//! rekey never changes the keys or the epoch. It must not touch the network
//! or the tree: it sees only the bytes a rekey arrives in and the paths the
//! registrar hands over.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use ed25519_dalek::VerifyingKey;

use crate::key::SecretKey;
use crate::rekey::{KeyId, Rekey, RekeyError, SignedRekey};
use crate::suite::MAX_HISTORY_EPOCHS;
use crate::tree::{MemberId, MemberPath, NodeId};

/// Past epochs' group keys a member keeps by default.
pub const DEFAULT_WINDOW: usize = 3;

/// What an applied rekey changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The member's new epoch.
    pub epoch: u32,
    /// How many path keys it learned (the new group key included).
    pub learned: usize,
}

/// The keys of one version of one node, boxed so that moving map entries
/// around never leaves a copy of a key behind.
#[derive(Clone, Debug)]
struct Held {
    version: u32,
    key: Box<SecretKey>,
}

/// The member's path at one epoch.
#[derive(Clone, Debug)]
struct Path {
    epoch: u32,
    leaf: KeyId,
    root: NodeId,
    /// Every node above the leaf, up to and including the root.
    keys: BTreeMap<NodeId, Held>,
}

impl Path {
    fn group_key(&self) -> Option<&SecretKey> {
        self.keys.get(&self.root).map(|h| &*h.key)
    }
}

/// One member's keys for one group.
#[derive(Debug)]
pub struct MemberKeys {
    group: u32,
    member: MemberId,
    individual: SecretKey,
    path: Option<Path>,
    /// Newest first.
    past: VecDeque<(u32, Box<SecretKey>)>,
    window: usize,
    /// Past epochs' group keys of this membership from the registrar, by epoch.
    history: BTreeMap<u32, Box<SecretKey>>,
    resync: bool,
    /// The users the key server revoked, as its last applied rekey said.
    revoked: BTreeSet<String>,
}

impl MemberKeys {
    /// A member of `group` with its individual key, holding no path yet.
    pub fn new(group: u32, member: MemberId, individual_key: SecretKey) -> MemberKeys {
        MemberKeys::with_window(group, member, individual_key, DEFAULT_WINDOW)
    }

    /// The same, keeping `window` past epochs' group keys.
    pub fn with_window(group: u32, member: MemberId, individual_key: SecretKey, window: usize) -> MemberKeys {
        MemberKeys {
            group,
            member,
            individual: individual_key,
            path: None,
            past: VecDeque::new(),
            window,
            history: BTreeMap::new(),
            resync: false,
            revoked: BTreeSet::new(),
        }
    }

    /// Whether the key server revoked `user` (its signatures are refused).
    pub fn is_revoked(&self, user: &str) -> bool {
        self.revoked.contains(user)
    }

    /// Replaces the revoked users with the key server's list as its
    /// registrar gave it (with a path on join or resync, which carries no rekey).
    pub fn set_revoked(&mut self, names: impl IntoIterator<Item = String>) {
        self.revoked = names.into_iter().collect();
    }

    /// The group.
    pub fn group(&self) -> u32 {
        self.group
    }

    /// Who holds these keys.
    pub fn member(&self) -> MemberId {
        self.member
    }

    /// The epoch this member joined in (its leaf key's version), once a
    /// path is installed: the same across logins while it stays a member.
    pub fn joined_epoch(&self) -> Option<u32> {
        self.path.as_ref().map(|p| p.leaf.version)
    }

    /// The current epoch, once a path is installed.
    pub fn epoch(&self) -> Option<u32> {
        self.path.as_ref().map(|p| p.epoch)
    }

    /// The current group key, once a path is installed.
    pub fn group_key(&self) -> Option<&SecretKey> {
        self.path.as_ref().and_then(Path::group_key)
    }

    /// The group key of `epoch`: the current one or one of the window's past ones.
    pub fn group_key_for(&self, epoch: u32) -> Option<&SecretKey> {
        match &self.path {
            Some(p) if p.epoch == epoch => p.group_key(),
            _ => self.past.iter().find(|(e, _)| *e == epoch).map(|(_, k)| &**k),
        }
    }

    /// Replaces the history with the past epochs' group keys the registrar
    /// gave with the installed path (`Response::Keys`'s history), the
    /// newest `MAX_HISTORY_EPOCHS`. Every epoch must be before the current
    /// one (which past epochs belong to this membership is the key
    /// server's to say: a member back after an eviction for absence gets
    /// those before its new leaf too): otherwise nothing changes and the
    /// history is refused.
    pub fn set_history(&mut self, history: impl IntoIterator<Item = (u32, SecretKey)>) -> Result<(), RekeyError> {
        let Some(path) = &self.path else { return Err(RekeyError::NoKeys { group: self.group }) };
        let current = path.epoch;
        let mut kept = BTreeMap::new();
        for (epoch, key) in history {
            if epoch >= current {
                return Err(RekeyError::Malformed(format!("history epoch {epoch} is not before epoch {current}")));
            }
            kept.insert(epoch, Box::new(key));
            if kept.len() > MAX_HISTORY_EPOCHS {
                kept.pop_first();
            }
        }
        self.history = kept;
        Ok(())
    }

    /// The history's epochs and group keys, oldest first (for the member's
    /// seals to `remember`; `group_key_for` does not look there).
    pub fn history(&self) -> impl Iterator<Item = (u32, &SecretKey)> + '_ {
        self.history.iter().map(|(&e, k)| (e, &**k))
    }

    /// Whether the member must resync over the registrar: a rekey showed it
    /// missed earlier ones (`Gap`), or an authentic rekey did not reach it
    /// (`CannotUnwrap`). Installing a path clears it.
    pub fn needs_resync(&self) -> bool {
        self.resync
    }

    /// Every key the member holds for the group: its leaf (individual) key
    /// and its path keys, with their ids.
    pub fn held_keys(&self) -> impl Iterator<Item = (KeyId, &SecretKey)> + '_ {
        let leaf = self.path.as_ref().map(|p| (p.leaf, &self.individual));
        let path = self
            .path
            .iter()
            .flat_map(|p| p.keys.iter().map(|(&node, h)| (KeyId { node, version: h.version }, &*h.key)));
        leaf.into_iter().chain(path)
    }

    /// Installs the path the registrar handed over (on join, or on resync
    /// after a gap). A path older than the member's epoch is refused.
    pub fn install_path(&mut self, path: &MemberPath) -> Result<(), RekeyError> {
        if path.group != self.group {
            return Err(RekeyError::WrongGroup { expected: self.group, got: path.group });
        }
        if path.member != self.member {
            return Err(RekeyError::Malformed(format!("path of {} given to {}", path.member, self.member)));
        }
        let Some(root) = path.keys.last() else {
            return Err(RekeyError::Malformed("empty path".into()));
        };
        if root.version != path.epoch {
            return Err(RekeyError::Malformed(format!(
                "group key of version {} in a path for epoch {}",
                root.version, path.epoch
            )));
        }
        let mut keys = BTreeMap::new();
        for k in &path.keys {
            if k.node == path.leaf
                || keys.insert(k.node, Held { version: k.version, key: Box::new(k.key.clone()) }).is_some()
            {
                return Err(RekeyError::Malformed(format!("node {} twice in a path", k.node.0)));
            }
        }
        let new = Path {
            epoch: path.epoch,
            leaf: KeyId { node: path.leaf, version: path.leaf_version },
            root: root.node,
            keys,
        };
        if let Some(current) = &self.path
            && path.epoch < current.epoch
        {
            return Err(RekeyError::Replayed { epoch: path.epoch, current: current.epoch });
        }
        self.advance(new);
        self.resync = false;
        Ok(())
    }

    /// Applies a signed rekey as it arrived from the group. Checks, in order:
    /// framing (`Truncated`, `Malformed`), the key server's signature
    /// (`BadSignature`), the group (`WrongGroup`), the epochs (`NoKeys`,
    /// `Replayed`, `Gap`), then unwraps bottom-up (`CannotUnwrap`). Any error
    /// leaves the keys and epoch as they were.
    pub fn apply(&mut self, signed: &[u8], server: &VerifyingKey) -> Result<Applied, RekeyError> {
        let rekey = SignedRekey::open(signed, server)?;
        self.apply_verified(&rekey)
    }

    fn apply_verified(&mut self, rekey: &Rekey) -> Result<Applied, RekeyError> {
        if rekey.group != self.group {
            return Err(RekeyError::WrongGroup { expected: self.group, got: rekey.group });
        }
        let current = self.path.as_ref().ok_or(RekeyError::NoKeys { group: self.group })?;
        if rekey.epoch <= current.epoch {
            return Err(RekeyError::Replayed { epoch: rekey.epoch, current: current.epoch });
        }
        if rekey.prev_epoch != current.epoch {
            let err = RekeyError::Gap { current: current.epoch, got: rekey.prev_epoch };
            self.resync = true;
            return Err(err);
        }
        match self.unwrap_path(current, rekey) {
            Some(next) => {
                let learned = next.keys.iter().filter(|(_, h)| h.version == rekey.epoch).count();
                self.advance(next);
                // Signed with the keys: the newest list replaces the last.
                self.revoked = rekey.revoked.iter().cloned().collect();
                Ok(Applied { epoch: rekey.epoch, learned })
            }
            None => {
                self.resync = true;
                Err(RekeyError::CannotUnwrap { epoch: rekey.epoch })
            }
        }
    }

    /// The path after `rekey`, on a copy: one pass over the wraps (they come
    /// deepest first), each opened if we hold its wrapping key. `None` unless
    /// it reaches the new group key.
    fn unwrap_path(&self, current: &Path, rekey: &Rekey) -> Option<Path> {
        let mut next = current.clone();
        next.epoch = rekey.epoch;
        for w in &rekey.wrapped {
            if next.keys.get(&w.node).is_some_and(|h| h.version == w.version) {
                continue;
            }
            let under = w.under();
            let under_key = if under == next.leaf {
                Some(&self.individual)
            } else {
                next.keys.get(&under.node).filter(|h| h.version == under.version).map(|h| &*h.key)
            };
            let Some(key) = under_key.and_then(|k| w.open(rekey.group, rekey.epoch, k)) else { continue };
            next.keys.insert(w.node, Held { version: w.version, key: Box::new(key) });
        }
        next.keys.get(&next.root).is_some_and(|h| h.version == rekey.epoch).then_some(next)
    }

    /// Moves to `next`, keeping the group key being replaced in the window.
    fn advance(&mut self, next: Path) {
        if let Some(old) = self.path.take()
            && old.epoch < next.epoch
            && let Some(key) = old.group_key()
        {
            self.past.push_front((old.epoch, Box::new(key.clone())));
            self.past.truncate(self.window);
        }
        self.path = Some(next);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::tree::{DEFAULT_DEGREE, KeyTree};

    const GROUP: u32 = 9;

    struct World {
        tree: KeyTree,
        server: SigningKey,
        members: BTreeMap<u64, MemberKeys>,
    }

    /// What a test compares to prove a refused rekey changed nothing.
    type Snapshot = (Option<u32>, Option<SecretKey>, Vec<(KeyId, SecretKey)>, Vec<Option<SecretKey>>);

    fn snapshot(m: &MemberKeys) -> Snapshot {
        let held = m.held_keys().map(|(id, k)| (id, k.clone())).collect();
        let past = (0..20).map(|e| m.group_key_for(e).cloned()).collect();
        (m.epoch(), m.group_key().cloned(), held, past)
    }

    impl World {
        fn new(n: u64) -> World {
            let mut w = World {
                tree: KeyTree::new(GROUP, DEFAULT_DEGREE).unwrap(),
                server: SigningKey::from_bytes(&[7u8; 32]),
                members: BTreeMap::new(),
            };
            w.join(&(0..n).collect::<Vec<_>>());
            w
        }

        /// Commits the queue, returns the signed rekey bytes, installs joiners' paths.
        fn commit(&mut self) -> Vec<u8> {
            let batch = self.tree.commit().unwrap();
            for path in &batch.joiner_paths {
                self.members.get_mut(&path.member.0).unwrap().install_path(path).unwrap();
            }
            SignedRekey::sign(&batch.rekey, &self.server).encode()
        }

        fn join(&mut self, ids: &[u64]) -> Vec<u8> {
            for &i in ids {
                let key = SecretKey::random().unwrap();
                self.tree.request_join(MemberId(i), key.clone()).unwrap();
                self.members.insert(i, MemberKeys::new(GROUP, MemberId(i), key));
            }
            self.commit()
        }

        fn leave(&mut self, ids: &[u64]) -> Vec<u8> {
            for &i in ids {
                self.tree.request_leave(MemberId(i)).unwrap();
                self.members.remove(&i);
            }
            self.commit()
        }

        fn apply_all(&mut self, bytes: &[u8], skip: &[u64]) {
            let vk = self.server.verifying_key();
            for (i, m) in &mut self.members {
                if !skip.contains(i) && m.epoch() != Some(self.tree.epoch()) {
                    m.apply(bytes, &vk).unwrap();
                }
            }
        }
    }

    #[test]
    fn members_follow_joins_and_leaves() {
        let mut w = World::new(20);
        let r = w.leave(&[3, 4, 17]);
        w.apply_all(&r, &[]);
        let r = w.join(&[100, 101]);
        w.apply_all(&r, &[]);
        for m in w.members.values() {
            assert_eq!(m.group_key(), Some(w.tree.group_key()));
            assert_eq!(m.epoch(), Some(w.tree.epoch()));
        }
        let veteran = &w.members[&0];
        assert!(veteran.group_key_for(1).is_some() && veteran.group_key_for(2).is_some());
        assert!(w.members[&100].group_key_for(2).is_none(), "a joiner holds no earlier group key");
    }

    #[test]
    fn refused_rekeys_have_distinct_errors_and_change_nothing() {
        let mut w = World::new(16);
        let good = w.leave(&[5]);
        let vk = w.server.verifying_key();
        let m = w.members.get_mut(&0).unwrap();
        let before = snapshot(m);

        let mut forged = good.clone();
        let last = forged.len() - 70;
        forged[last] ^= 1; // inside the last wrapped key's ciphertext
        assert_eq!(m.apply(&forged, &vk), Err(RekeyError::BadSignature));

        let body = SignedRekey::decode(&good).unwrap().verify(&vk).unwrap();
        let resigned = SignedRekey::sign(&body, &SigningKey::from_bytes(&[8u8; 32])).encode();
        assert_eq!(m.apply(&resigned, &vk), Err(RekeyError::BadSignature));

        assert!(matches!(m.apply(&good[..good.len() - 1], &vk), Err(RekeyError::Truncated { .. })));
        assert!(matches!(m.apply(&good[..3], &vk), Err(RekeyError::Truncated { .. })));
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(matches!(m.apply(&trailing, &vk), Err(RekeyError::Malformed(_))));

        let mut other_group = body.clone();
        other_group.group = GROUP + 1;
        let other_group = SignedRekey::sign(&other_group, &w.server).encode();
        assert_eq!(m.apply(&other_group, &vk), Err(RekeyError::WrongGroup { expected: GROUP, got: GROUP + 1 }));

        let mut empty = body.clone();
        empty.wrapped.clear();
        let empty = SignedRekey::sign(&empty, &w.server).encode();
        assert_eq!(m.apply(&empty, &vk), Err(RekeyError::CannotUnwrap { epoch: 2 }));
        assert_eq!(snapshot(m), before);
        assert!(m.needs_resync());

        m.apply(&good, &vk).unwrap();
        let after = snapshot(m);
        assert_eq!(m.apply(&good, &vk), Err(RekeyError::Replayed { epoch: 2, current: 2 }));
        assert_eq!(snapshot(m), after);

        let mut old = body;
        old.epoch = 1;
        old.prev_epoch = 0;
        old.wrapped.clear();
        let old = SignedRekey::sign(&old, &w.server).encode();
        assert_eq!(m.apply(&old, &vk), Err(RekeyError::Replayed { epoch: 1, current: 2 }));
        assert_eq!(snapshot(m), after);
        assert_eq!(m.group_key(), Some(w.tree.group_key()));
    }

    #[test]
    fn departed_member_cannot_unwrap() {
        let mut w = World::new(16);
        let key = SecretKey::random().unwrap();
        let mut gone = MemberKeys::new(GROUP, MemberId(99), key.clone());
        w.tree.request_join(MemberId(99), key).unwrap();
        let batch = w.tree.commit().unwrap();
        gone.install_path(&batch.joiner_paths[0]).unwrap();
        w.tree.request_leave(MemberId(99)).unwrap();
        let batch = w.tree.commit().unwrap();
        let bytes = SignedRekey::sign(&batch.rekey, &w.server).encode();
        let before = snapshot(&gone);
        assert_eq!(gone.apply(&bytes, &w.server.verifying_key()), Err(RekeyError::CannotUnwrap { epoch: 3 }));
        assert_eq!(snapshot(&gone), before);
    }

    #[test]
    fn missed_rekeys_give_gap_then_resync_recovers() {
        let mut w = World::new(30);
        let mut missed = Vec::new();
        for i in 0..3 {
            let r = w.leave(&[10 + i]);
            w.apply_all(&r, &[0]);
            missed.push(r);
        }
        let r = w.join(&[200]);
        w.apply_all(&r, &[0]);
        let vk = w.server.verifying_key();
        let m = w.members.get_mut(&0).unwrap();
        let before = snapshot(m);
        assert!(!m.needs_resync());
        assert_eq!(m.apply(&r, &vk), Err(RekeyError::Gap { current: 1, got: 4 }));
        assert!(m.needs_resync());
        assert_eq!(snapshot(m), before);

        m.install_path(&w.tree.path_keys(MemberId(0)).unwrap()).unwrap();
        assert!(!m.needs_resync());
        assert_eq!(m.epoch(), Some(5));
        assert_eq!(m.group_key(), Some(w.tree.group_key()));
        assert!(m.group_key_for(1).is_some(), "the epoch it held stays in the window");
        assert_eq!(m.apply(&missed[0], &vk), Err(RekeyError::Replayed { epoch: 2, current: 5 }));
        let r = w.leave(&[20]);
        w.apply_all(&r, &[]);
        assert_eq!(w.members[&0].group_key(), Some(w.tree.group_key()));
    }

    #[test]
    fn window_keeps_the_last_three_epochs() {
        let mut w = World::new(8);
        for i in 0..5 {
            let r = w.leave(&[i]);
            w.apply_all(&r, &[]);
        }
        let m = &w.members[&7];
        assert_eq!(m.epoch(), Some(6));
        assert!(m.group_key_for(6).is_some());
        assert!((3..=5).all(|e| m.group_key_for(e).is_some()));
        assert!(m.group_key_for(2).is_none() && m.group_key_for(1).is_none());
    }

    #[test]
    fn the_history_holds_only_past_epochs() {
        let mut w = World::new(4);
        let r = w.join(&[10]);
        w.apply_all(&r, &[]);
        for i in 0..3 {
            let r = w.leave(&[i]);
            w.apply_all(&r, &[]);
        }
        let m = w.members.get_mut(&10).unwrap();
        assert_eq!((m.joined_epoch(), m.epoch()), (Some(2), Some(5)));
        let key = |e: u32| SecretKey::from_bytes([e as u8; 32]);
        m.set_history((2..5).map(|e| (e, key(e)))).unwrap();
        assert_eq!(
            m.history().map(|(e, k)| (e, k.clone())).collect::<Vec<_>>(),
            [(2, key(2)), (3, key(3)), (4, key(4))]
        );
        for bad in [5, 9] {
            assert!(matches!(m.set_history([(3, key(3)), (bad, key(bad))]), Err(RekeyError::Malformed(_))), "{bad}");
        }
        assert_eq!(m.history().count(), 3, "a refused history changes nothing");
        let mut fresh = MemberKeys::new(GROUP, MemberId(50), SecretKey::random().unwrap());
        assert_eq!(fresh.set_history([(1, key(1))]), Err(RekeyError::NoKeys { group: GROUP }));
    }

    #[test]
    fn no_keys_and_bad_paths() {
        let w = World::new(4);
        let mut fresh = MemberKeys::new(GROUP, MemberId(50), SecretKey::random().unwrap());
        let mut tree = w.tree.clone();
        tree.request_leave(MemberId(0)).unwrap();
        let bytes = SignedRekey::sign(&tree.commit().unwrap().rekey, &w.server).encode();
        assert_eq!(fresh.apply(&bytes, &w.server.verifying_key()), Err(RekeyError::NoKeys { group: GROUP }));
        let path = w.tree.path_keys(MemberId(1)).unwrap();
        assert!(matches!(fresh.install_path(&path), Err(RekeyError::Malformed(_))));
        let mut other = MemberKeys::new(GROUP + 1, MemberId(1), SecretKey::random().unwrap());
        assert!(matches!(other.install_path(&path), Err(RekeyError::WrongGroup { .. })));
    }
}
