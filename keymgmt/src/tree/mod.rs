//! The key tree: one group's logical key hierarchy (Wong/Gouda/Lam key
//! graphs, Keystone; RFC 2627 LKH), kept by the key server.
//!
//! Owns the tree's shape (a d-ary tree whose leaves are members and whose
//! root key is the group key), every key in it, the group's epoch, the queue
//! of join and leave requests, the batch rekeying that turns a queue into one
//! new epoch (which keys change, which keys wrap them), and the tree's
//! persistence format (in `store`). It must not touch the network, the
//! signing key or a member's state: it hands out a `Rekey` body for the
//! caller to sign (`rekey`) and paths for the registrar to deliver.
//!
//! # Batching rule (marking algorithm)
//!
//! `commit` processes every queued request as one batch:
//!
//! 1. Leaves first: each leaver's leaf is removed; an interior node left with
//!    no children is removed too (the root stays). The surviving parent gets a
//!    free slot. Every ancestor of a removed node is *marked* and *lost a
//!    member*.
//! 2. Then joins, each placed in: a slot vacated in this batch (its path is
//!    already marked, so the join costs nothing extra); else the shallowest
//!    interior node with a free slot, unless splitting a leaf gives a
//!    shallower place; else the shallowest leaf is split (a new interior node
//!    takes its place with the old leaf and the joiner as children). Every
//!    ancestor of a joiner is marked; a split node is *new*.
//! 3. Every marked node gets a fresh key with version = the new epoch. Its
//!    *audience* is the members who were in its subtree before the batch and
//!    are still there. With no audience nothing is wrapped (only joiners, who
//!    get their paths directly). Otherwise:
//!    - a node that existed, lost no member and is not new: its new key is
//!      wrapped once, under its own previous version (join style; backward
//!      secrecy holds because the new key is fresh);
//!    - a node that lost a member, or is new: its new key is wrapped under
//!      the current key of each child that has an audience (a marked child's
//!      new key); a leaver's leaf is gone and a joiner's leaf has no audience,
//!      so neither is used (forward secrecy).
//! 4. The wraps are ordered deepest node first, so a member unwraps its path
//!    bottom-up in one pass.
//!
//! The keys of a batch are drawn from one fresh 256-bit seed from the system's
//! random generator, through HMAC-SHA256 (node, epoch): every key is fresh and
//! independent of every earlier key, and the only fallible step happens before
//! the tree changes, so a failed `commit` leaves the tree as it was.
//!
//! # Sizes
//!
//! In a full tree of n = d^h members a single leave wraps at most d·h − 1 keys
//! and a single join wraps h keys and hands the joiner h path keys (d = 4,
//! n = 65,536: 31 and 8 + 8). A batch of L leaves wraps at most about
//! L·d·log_d(n/L).

mod store;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use thiserror::Error;
use zeroize::{Zeroize, Zeroizing};

use crate::key::{RandomError, SecretKey, random_bytes};
use crate::rekey::{KeyId, Rekey, WrappedKey};

pub use store::FORMAT_VERSION;

/// The default degree: it minimises the cost of a join plus a leave.
pub const DEFAULT_DEGREE: u8 = 4;
/// The largest degree a tree accepts.
pub const MAX_DEGREE: u8 = 64;

/// Written as the parent of the root; never a node id.
const NO_NODE: u32 = u32::MAX;
const KEY_LABEL: &[u8] = b"lsim/v1/tree-node-key\0";

/// A member of a group, as the key server names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(pub u64);

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "member {}", self.0)
    }
}

/// A node of a key tree. Ids are never reused within a tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

/// Why the tree refused a request or a stored state.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TreeError {
    /// A join for someone already in the group.
    #[error("{member} is already in group {group}")]
    AlreadyMember {
        /// The group.
        group: u32,
        /// Who.
        member: MemberId,
    },
    /// A leave for someone not in the group.
    #[error("{member} is not in group {group}")]
    NotMember {
        /// The group.
        group: u32,
        /// Who.
        member: MemberId,
    },
    /// A second request for someone whose request is waiting for the next batch.
    #[error("{member} already has a request queued in group {group}")]
    AlreadyQueued {
        /// The group.
        group: u32,
        /// Who.
        member: MemberId,
    },
    /// `commit` with an empty queue.
    #[error("nothing queued in group {0}")]
    NothingQueued(u32),
    /// A degree outside 2..=MAX_DEGREE.
    #[error("tree degree {0} outside 2..={MAX_DEGREE}")]
    Degree(u8),
    /// The group has used every epoch.
    #[error("group {0} has reached the last epoch")]
    EpochExhausted(u32),
    /// The group has used every node id.
    #[error("group {0} has run out of node ids")]
    NodeIdsExhausted(u32),
    /// No randomness for new keys.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// Stored bytes that are not a tree.
    #[error("corrupt key tree: {0}")]
    Corrupt(String),
}

/// One key on a member's path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathKey {
    /// The node.
    pub node: NodeId,
    /// The key's version (the epoch in which it was made).
    pub version: u32,
    /// The key.
    pub key: SecretKey,
}

/// What a member needs to hold a group's keys: given to a joiner, and to a
/// member that resyncs, over the registrar's channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberPath {
    /// The group.
    pub group: u32,
    /// The epoch these keys are current in.
    pub epoch: u32,
    /// Whose path.
    pub member: MemberId,
    /// The member's leaf; its key is the member's individual key.
    pub leaf: NodeId,
    /// The leaf key's version (the epoch the member joined in).
    pub leaf_version: u32,
    /// The keys above the leaf, from its parent to the root; the last is the group key.
    pub keys: Vec<PathKey>,
}

/// What one `commit` produced.
#[derive(Debug)]
pub struct Batch {
    /// The new epoch.
    pub epoch: u32,
    /// The rekey body to sign and multicast to the group.
    pub rekey: Rekey,
    /// Each joiner's whole path, for the registrar to hand over.
    pub joiner_paths: Vec<MemberPath>,
    /// Who joined, in request order.
    pub joined: Vec<MemberId>,
    /// Who left, in request order.
    pub left: Vec<MemberId>,
}

impl Batch {
    /// Keys encrypted for this batch: the multicast wraps plus every key handed to a joiner.
    pub fn keys_sent(&self) -> usize {
        self.rekey.wrapped.len() + self.joiner_paths.iter().map(|p| p.keys.len()).sum::<usize>()
    }
}

#[derive(Clone, Debug)]
enum Request {
    Join(Box<SecretKey>),
    Leave,
}

#[derive(Clone, Debug)]
enum Kind {
    Leaf(MemberId),
    Interior(Vec<NodeId>),
}

#[derive(Clone, Debug)]
struct Node {
    parent: Option<NodeId>,
    depth: u32,
    version: u32,
    /// Boxed so that moving a node (map growth) never leaves a copy of the key behind.
    key: Box<SecretKey>,
    kind: Kind,
}

impl Node {
    fn children(&self) -> &[NodeId] {
        match &self.kind {
            Kind::Interior(c) => c,
            Kind::Leaf(_) => &[],
        }
    }

    fn children_mut(&mut self) -> Option<&mut Vec<NodeId>> {
        match &mut self.kind {
            Kind::Interior(c) => Some(c),
            Kind::Leaf(_) => None,
        }
    }
}

/// A group's key tree.
#[derive(Clone)]
pub struct KeyTree {
    group: u32,
    degree: u8,
    epoch: u32,
    next_node: u32,
    root: NodeId,
    nodes: HashMap<NodeId, Node>,
    members: BTreeMap<MemberId, NodeId>,
    /// Interior nodes with fewer than `degree` children, by depth.
    open: BTreeSet<(u32, NodeId)>,
    /// Leaves, by depth.
    leaves: BTreeSet<(u32, NodeId)>,
    pending: Vec<(MemberId, Request)>,
    queued: HashSet<MemberId>,
}

impl fmt::Debug for KeyTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyTree")
            .field("group", &self.group)
            .field("degree", &self.degree)
            .field("epoch", &self.epoch)
            .field("members", &self.members.len())
            .field("nodes", &self.nodes.len())
            .field("queued", &self.pending.len())
            .finish()
    }
}

/// What one batch changed, as the marking algorithm records it.
#[derive(Default)]
struct Marks {
    /// Nodes whose key changes (closed under "parent of").
    marked: HashSet<NodeId>,
    /// Nodes whose subtree lost a member (closed under "parent of").
    lost: HashSet<NodeId>,
    /// Nodes made in this batch: split nodes and joiners' leaves.
    fresh: HashSet<NodeId>,
    /// Slots freed by leaves in this batch, one entry per free slot.
    vacated: Vec<NodeId>,
}

/// The batch's key generator: HMAC-SHA256 under a fresh random seed.
struct KeyGen {
    prf: Hmac<Sha256>,
    group: u32,
    epoch: u32,
}

impl KeyGen {
    fn new(group: u32, epoch: u32) -> Result<KeyGen, RandomError> {
        let mut seed = Zeroizing::new([0u8; 64]);
        random_bytes(&mut seed[..])?;
        // A 64-byte key is exactly one SHA-256 block: the infallible constructor.
        let prf = Hmac::<Sha256>::new((&*seed).into());
        Ok(KeyGen { prf, group, epoch })
    }

    fn key(&self, node: NodeId) -> Box<SecretKey> {
        let mut mac = self.prf.clone();
        mac.update(KEY_LABEL);
        mac.update(&self.group.to_be_bytes());
        mac.update(&node.0.to_be_bytes());
        mac.update(&self.epoch.to_be_bytes());
        let mut bytes = [0u8; SecretKey::LEN];
        bytes.copy_from_slice(&mac.finalize().into_bytes());
        let key = Box::new(SecretKey::from_bytes(bytes));
        bytes.zeroize();
        key
    }
}

impl KeyTree {
    /// An empty tree for `group` of the given degree, at epoch 0.
    pub fn new(group: u32, degree: u8) -> Result<KeyTree, TreeError> {
        if !(2..=MAX_DEGREE).contains(&degree) {
            return Err(TreeError::Degree(degree));
        }
        let root = NodeId(0);
        let node = Node {
            parent: None,
            depth: 0,
            version: 0,
            key: Box::new(SecretKey::random()?),
            kind: Kind::Interior(Vec::new()),
        };
        Ok(KeyTree {
            group,
            degree,
            epoch: 0,
            next_node: 1,
            root,
            nodes: HashMap::from([(root, node)]),
            members: BTreeMap::new(),
            open: BTreeSet::from([(0, root)]),
            leaves: BTreeSet::new(),
            pending: Vec::new(),
            queued: HashSet::new(),
        })
    }

    /// The group.
    pub fn group(&self) -> u32 {
        self.group
    }

    /// The tree's degree.
    pub fn degree(&self) -> u8 {
        self.degree
    }

    /// The current epoch: 0 before the first commit, then one more per batch.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The current group key (the root's key).
    pub fn group_key(&self) -> &SecretKey {
        match self.nodes.get(&self.root) {
            Some(n) => &n.key,
            // Every constructor puts the root in `nodes` and nothing removes it.
            None => unreachable!("key tree without its root"),
        }
    }

    /// The members, in id order.
    pub fn members(&self) -> impl Iterator<Item = MemberId> + '_ {
        self.members.keys().copied()
    }

    /// Whether `member` is in the group.
    pub fn contains(&self, member: MemberId) -> bool {
        self.members.contains_key(&member)
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the group has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Number of requests waiting for the next batch.
    pub fn queued(&self) -> usize {
        self.pending.len()
    }

    /// Keys above `member`'s leaf (its path length), if it is a member.
    pub fn depth(&self, member: MemberId) -> Option<u32> {
        self.members.get(&member).and_then(|l| self.nodes.get(l)).map(|n| n.depth)
    }

    /// Queues a join; `individual_key` is the member's individual key (given
    /// at registration), which becomes its leaf key.
    pub fn request_join(&mut self, member: MemberId, individual_key: SecretKey) -> Result<(), TreeError> {
        let group = self.group;
        if self.queued.contains(&member) {
            return Err(TreeError::AlreadyQueued { group, member });
        }
        if self.members.contains_key(&member) {
            return Err(TreeError::AlreadyMember { group, member });
        }
        self.queued.insert(member);
        self.pending.push((member, Request::Join(Box::new(individual_key))));
        Ok(())
    }

    /// Queues a leave.
    pub fn request_leave(&mut self, member: MemberId) -> Result<(), TreeError> {
        let group = self.group;
        if self.queued.contains(&member) {
            return Err(TreeError::AlreadyQueued { group, member });
        }
        if !self.members.contains_key(&member) {
            return Err(TreeError::NotMember { group, member });
        }
        self.queued.insert(member);
        self.pending.push((member, Request::Leave));
        Ok(())
    }

    /// Processes every queued request as one batch (see the module doc) and
    /// moves to the next epoch. On error the tree is unchanged.
    pub fn commit(&mut self) -> Result<Batch, TreeError> {
        if self.pending.is_empty() {
            return Err(TreeError::NothingQueued(self.group));
        }
        let epoch = self.epoch.checked_add(1).ok_or(TreeError::EpochExhausted(self.group))?;
        // A join makes at most two nodes (a split and a leaf).
        let joins = self.pending.iter().filter(|(_, r)| matches!(r, Request::Join(_))).count() as u64;
        if u64::from(self.next_node) + 2 * joins >= u64::from(NO_NODE) {
            return Err(TreeError::NodeIdsExhausted(self.group));
        }
        let keygen = KeyGen::new(self.group, epoch)?;

        // Nothing below can fail: the tree changes only from here on.
        let pending = std::mem::take(&mut self.pending);
        self.queued.clear();
        let mut marks = Marks::default();
        let mut left = Vec::new();
        let mut joins = Vec::new();
        for (member, request) in pending {
            match request {
                Request::Leave => left.push(member),
                Request::Join(key) => joins.push((member, key)),
            }
        }
        for &member in &left {
            self.vacate(member, &mut marks);
        }
        let mut joined = Vec::with_capacity(joins.len());
        for (member, key) in joins {
            self.place(member, key, epoch, &keygen, &mut marks);
            joined.push(member);
        }

        let order = self.rekey_order(&marks);
        let new_keys: HashMap<NodeId, Box<SecretKey>> = order.iter().map(|&n| (n, keygen.key(n))).collect();
        let wrapped = self.wrap(&order, &marks, &new_keys, epoch);
        for (id, key) in new_keys {
            if let Some(node) = self.nodes.get_mut(&id) {
                node.key = key;
                node.version = epoch;
            }
        }
        let prev_epoch = self.epoch;
        self.epoch = epoch;

        let joiner_paths = joined.iter().filter_map(|&m| self.path_keys(m).ok()).collect();
        Ok(Batch {
            epoch,
            rekey: Rekey { group: self.group, epoch, prev_epoch, wrapped, revoked: Vec::new() },
            joiner_paths,
            joined,
            left,
        })
    }

    /// `member`'s current path, for a resync over the registrar.
    pub fn path_keys(&self, member: MemberId) -> Result<MemberPath, TreeError> {
        let leaf_id = self.members.get(&member).copied();
        let Some((leaf_id, leaf)) = leaf_id.and_then(|id| Some((id, self.nodes.get(&id)?))) else {
            return Err(TreeError::NotMember { group: self.group, member });
        };
        let mut keys = Vec::with_capacity(leaf.depth as usize);
        let mut at = leaf.parent;
        while let Some((id, node)) = at.and_then(|id| Some((id, self.nodes.get(&id)?))) {
            keys.push(PathKey { node: id, version: node.version, key: (*node.key).clone() });
            at = node.parent;
        }
        Ok(MemberPath { group: self.group, epoch: self.epoch, member, leaf: leaf_id, leaf_version: leaf.version, keys })
    }

    /// Removes a leaver's leaf, prunes interior nodes left empty, and marks
    /// the way up as having lost a member.
    fn vacate(&mut self, member: MemberId, marks: &mut Marks) {
        let Some(leaf) = self.members.remove(&member) else { return };
        let Some(node) = self.nodes.remove(&leaf) else { return };
        self.leaves.remove(&(node.depth, leaf));
        let mut child = leaf;
        let mut at = node.parent;
        while let Some(id) = at {
            let Some(parent) = self.nodes.get_mut(&id) else { return };
            if let Some(children) = parent.children_mut() {
                children.retain(|&c| c != child);
            }
            let (depth, grandparent) = (parent.depth, parent.parent);
            if parent.children().is_empty() && id != self.root {
                self.nodes.remove(&id);
                self.open.remove(&(depth, id));
                marks.marked.remove(&id);
                marks.lost.remove(&id);
                child = id;
                at = grandparent;
                continue;
            }
            self.open.insert((depth, id));
            marks.vacated.push(id);
            mark_up(&self.nodes, Some(id), &mut marks.lost);
            mark_up(&self.nodes, Some(id), &mut marks.marked);
            return;
        }
    }

    /// Gives a joiner a leaf and marks the way up.
    fn place(&mut self, member: MemberId, key: Box<SecretKey>, epoch: u32, keygen: &KeyGen, marks: &mut Marks) {
        let slot = self.vacated_slot(marks).unwrap_or_else(|| self.best_slot(epoch, keygen, marks));
        let leaf = self.alloc();
        let depth = self.nodes.get(&slot).map_or(0, |n| n.depth) + 1;
        self.nodes.insert(leaf, Node { parent: Some(slot), depth, version: epoch, key, kind: Kind::Leaf(member) });
        self.adopt(slot, leaf);
        self.leaves.insert((depth, leaf));
        self.members.insert(member, leaf);
        marks.fresh.insert(leaf);
        mark_up(&self.nodes, Some(slot), &mut marks.marked);
    }

    fn vacated_slot(&self, marks: &mut Marks) -> Option<NodeId> {
        while let Some(id) = marks.vacated.pop() {
            if self.nodes.get(&id).is_some_and(|n| matches!(n.kind, Kind::Interior(_)) && self.has_room(n)) {
                return Some(id);
            }
        }
        None
    }

    /// The shallowest place for a new leaf: a free slot, or a split leaf if that is shallower.
    fn best_slot(&mut self, epoch: u32, keygen: &KeyGen, marks: &mut Marks) -> NodeId {
        match (self.open.first().copied(), self.leaves.first().copied()) {
            (Some((slot_depth, slot)), Some((leaf_depth, _))) if slot_depth <= leaf_depth => slot,
            (Some((_, slot)), None) => slot,
            (_, Some((_, leaf))) => self.split(leaf, epoch, keygen, marks),
            // A tree without a free slot is full down to its leaves, so it has leaves.
            (None, None) => self.root,
        }
    }

    /// Puts a new interior node in `leaf`'s place, with `leaf` as its only child.
    fn split(&mut self, leaf: NodeId, epoch: u32, keygen: &KeyGen, marks: &mut Marks) -> NodeId {
        let id = self.alloc();
        let Some(old) = self.nodes.get_mut(&leaf) else { return self.root };
        let (parent, depth) = (old.parent, old.depth);
        old.parent = Some(id);
        old.depth = depth + 1;
        self.leaves.remove(&(depth, leaf));
        self.leaves.insert((depth + 1, leaf));
        if let Some(children) = parent.and_then(|p| self.nodes.get_mut(&p)).and_then(Node::children_mut) {
            children.retain(|&c| c != leaf);
            insert_sorted(children, id);
        }
        let node = Node { parent, depth, version: epoch, key: keygen.key(id), kind: Kind::Interior(vec![leaf]) };
        self.nodes.insert(id, node);
        self.open.insert((depth, id));
        marks.fresh.insert(id);
        id
    }

    fn adopt(&mut self, parent: NodeId, child: NodeId) {
        let degree = usize::from(self.degree);
        let Some(p) = self.nodes.get_mut(&parent) else { return };
        let depth = p.depth;
        if let Some(children) = p.children_mut() {
            insert_sorted(children, child);
            if children.len() >= degree {
                self.open.remove(&(depth, parent));
            }
        }
    }

    fn has_room(&self, node: &Node) -> bool {
        node.children().len() < usize::from(self.degree)
    }

    fn alloc(&mut self) -> NodeId {
        let id = NodeId(self.next_node);
        self.next_node += 1;
        id
    }

    /// The marked nodes still in the tree, deepest first (then by id).
    fn rekey_order(&self, marks: &Marks) -> Vec<NodeId> {
        let mut order: Vec<(u32, NodeId)> =
            marks.marked.iter().filter_map(|&id| self.nodes.get(&id).map(|n| (n.depth, id))).collect();
        order.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        order.into_iter().map(|(_, id)| id).collect()
    }

    /// The multicast wraps of one batch, in `order`.
    fn wrap(
        &self,
        order: &[NodeId],
        marks: &Marks,
        new_keys: &HashMap<NodeId, Box<SecretKey>>,
        epoch: u32,
    ) -> Vec<WrappedKey> {
        // Whether a node's subtree holds members from before the batch. Marked
        // nodes are decided before their parents; an unmarked node is either a
        // joiner's leaf (no) or unchanged and non-empty (yes).
        let mut audience: HashMap<NodeId, bool> = HashMap::with_capacity(order.len());
        let heard = |audience: &HashMap<NodeId, bool>, c: NodeId| match audience.get(&c) {
            Some(&a) => a,
            None => !marks.fresh.contains(&c),
        };
        let mut wrapped = Vec::new();
        for &id in order {
            let (Some(node), Some(key)) = (self.nodes.get(&id), new_keys.get(&id)) else { continue };
            let listeners: Vec<NodeId> = node.children().iter().copied().filter(|&c| heard(&audience, c)).collect();
            audience.insert(id, !listeners.is_empty());
            if listeners.is_empty() {
                continue;
            }
            let target = KeyId { node: id, version: epoch };
            if marks.lost.contains(&id) || marks.fresh.contains(&id) {
                for c in listeners {
                    let under = match (new_keys.get(&c), self.nodes.get(&c)) {
                        (Some(k), _) => Some((KeyId { node: c, version: epoch }, &**k)),
                        (None, Some(n)) => Some((KeyId { node: c, version: n.version }, &*n.key)),
                        (None, None) => None,
                    };
                    if let Some((under, under_key)) = under {
                        wrapped.push(WrappedKey::seal(self.group, epoch, target, key, under, under_key));
                    }
                }
            } else {
                let under = KeyId { node: id, version: node.version };
                wrapped.push(WrappedKey::seal(self.group, epoch, target, key, under, &node.key));
            }
        }
        wrapped
    }
}

/// Adds `from` and its ancestors to `set`, stopping at the first one already
/// there (the set is closed under "parent of").
fn mark_up(nodes: &HashMap<NodeId, Node>, from: Option<NodeId>, set: &mut HashSet<NodeId>) {
    let mut at = from;
    while let Some(id) = at {
        if !set.insert(id) {
            return;
        }
        at = nodes.get(&id).and_then(|n| n.parent);
    }
}

fn insert_sorted(children: &mut Vec<NodeId>, id: NodeId) {
    let at = children.partition_point(|&c| c < id);
    children.insert(at, id);
}
