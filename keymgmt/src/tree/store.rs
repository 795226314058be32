//! The key tree's persistence: the byte format in which the key server's
//! store keeps a tree, queue included (`KeyTree::to_bytes`), and the reader
//! that checks stored bytes are a tree before one is built from them
//! (`KeyTree::from_bytes`).
//!
//! Owns the format (magic, version, the order of the fields) and every check
//! on bytes read back. It must not touch the tree's rules (placing, marking,
//! rekeying: `super`), the files the bytes live in (the key server's store)
//! or the network.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use zeroize::Zeroizing;

use super::{KeyTree, Kind, MAX_DEGREE, MemberId, NO_NODE, Node, NodeId, Request, TreeError};
use crate::key::SecretKey;
use crate::rekey::{Reader, Short};

/// Version of the persistence format.
pub const FORMAT_VERSION: u8 = 1;

const MAGIC: &[u8; 4] = b"LSKT";
const NODE_MIN_LEN: usize = 4 + 4 + 4 + SecretKey::LEN + 1;
const REQUEST_MIN_LEN: usize = 1 + 8;

impl From<Short> for TreeError {
    fn from(s: Short) -> TreeError {
        TreeError::Corrupt(format!("truncated {}: need {} bytes, have {}", s.what, s.need, s.have))
    }
}

impl KeyTree {
    /// The tree's state for the key server's store, queue included. The bytes
    /// hold every key of the group: keep them as secret as the keys.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut len = 4 + 1 + 1 + 4 * 5;
        len += self
            .nodes
            .values()
            .map(|n| NODE_MIN_LEN + if matches!(n.kind, Kind::Leaf(_)) { 8 } else { 0 })
            .sum::<usize>();
        len += 4;
        len += self
            .pending
            .iter()
            .map(|(_, r)| REQUEST_MIN_LEN + if matches!(r, Request::Join(_)) { 32 } else { 0 })
            .sum::<usize>();
        // Sized up front: a growing Vec would leave copies of keys in freed memory.
        let mut out = Zeroizing::new(Vec::with_capacity(len));
        out.extend_from_slice(MAGIC);
        out.push(FORMAT_VERSION);
        out.push(self.degree);
        for v in [self.group, self.epoch, self.next_node, self.root.0, self.nodes.len() as u32] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        let mut ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let Some(n) = self.nodes.get(&id) else { continue };
            out.extend_from_slice(&id.0.to_be_bytes());
            out.extend_from_slice(&n.parent.map_or(NO_NODE, |p| p.0).to_be_bytes());
            out.extend_from_slice(&n.version.to_be_bytes());
            out.extend_from_slice(n.key.as_bytes());
            match n.kind {
                Kind::Interior(_) => out.push(0),
                Kind::Leaf(m) => {
                    out.push(1);
                    out.extend_from_slice(&m.0.to_be_bytes());
                }
            }
        }
        out.extend_from_slice(&(self.pending.len() as u32).to_be_bytes());
        for (member, request) in &self.pending {
            match request {
                Request::Join(key) => {
                    out.push(1);
                    out.extend_from_slice(&member.0.to_be_bytes());
                    out.extend_from_slice(key.as_bytes());
                }
                Request::Leave => {
                    out.push(2);
                    out.extend_from_slice(&member.0.to_be_bytes());
                }
            }
        }
        out
    }

    /// Reads a tree written by `to_bytes`, checking that it is one (every
    /// length bounded by the input, never panics).
    pub fn from_bytes(bytes: &[u8]) -> Result<KeyTree, TreeError> {
        let mut r = Reader::new(bytes);
        let h = StoredHeader::read(&mut r)?;
        let (mut nodes, members) = read_nodes(&mut r, &h)?;
        link_children(&mut nodes, &h)?;
        let (open, leaves) = index_nodes(&mut nodes, &h)?;
        let (pending, queued) = read_requests(&mut r, &members)?;
        if r.left() != 0 {
            return Err(TreeError::Corrupt(format!("{} trailing bytes", r.left())));
        }
        let StoredHeader { group, degree, epoch, next_node, root, .. } = h;
        Ok(KeyTree { group, degree, epoch, next_node, root, nodes, members, open, leaves, pending, queued })
    }
}

type Nodes = HashMap<NodeId, Node>;
type Members = BTreeMap<MemberId, NodeId>;
type ByDepth = BTreeSet<(u32, NodeId)>;
type Queue = Vec<(MemberId, Request)>;

/// The fixed fields at the front of a stored tree.
struct StoredHeader {
    group: u32,
    degree: u8,
    epoch: u32,
    next_node: u32,
    root: NodeId,
    count: usize,
}

impl StoredHeader {
    fn read(r: &mut Reader<'_>) -> Result<StoredHeader, TreeError> {
        if r.take(4, "magic")? != MAGIC {
            return Err(corrupt("not a key tree (bad magic)"));
        }
        let version = r.u8("format version")?;
        if version != FORMAT_VERSION {
            return Err(TreeError::Corrupt(format!("format version {version}, expected {FORMAT_VERSION}")));
        }
        let degree = r.u8("degree")?;
        if !(2..=MAX_DEGREE).contains(&degree) {
            return Err(TreeError::Degree(degree));
        }
        let group = r.u32("group")?;
        let epoch = r.u32("epoch")?;
        let next_node = r.u32("next node id")?;
        let root = NodeId(r.u32("root id")?);
        let count = r.u32("node count")? as usize;
        if next_node == NO_NODE {
            return Err(corrupt("next node id is the reserved id"));
        }
        // Checked before anything is allocated for them.
        if count.saturating_mul(NODE_MIN_LEN) > r.left() {
            return Err(TreeError::Corrupt(format!("{count} nodes cannot fit in {} bytes", r.left())));
        }
        Ok(StoredHeader { group, degree, epoch, next_node, root, count })
    }
}

/// The nodes, in strictly increasing id order, without their children lists or depths.
fn read_nodes(r: &mut Reader<'_>, h: &StoredHeader) -> Result<(Nodes, Members), TreeError> {
    let mut nodes = HashMap::with_capacity(h.count);
    let mut members = BTreeMap::new();
    let mut last: Option<u32> = None;
    for _ in 0..h.count {
        let id = r.u32("node id")?;
        if last.is_some_and(|l| id <= l) || id >= h.next_node {
            return Err(TreeError::Corrupt(format!("node id {id} out of order or not below {}", h.next_node)));
        }
        last = Some(id);
        let parent = match r.u32("parent id")? {
            NO_NODE => None,
            p => Some(NodeId(p)),
        };
        let version = r.u32("version")?;
        if version > h.epoch {
            return Err(TreeError::Corrupt(format!("node {id} has key version {version} after epoch {}", h.epoch)));
        }
        let key = Box::new(SecretKey::from_bytes(r.array("key")?));
        let kind = match r.u8("node kind")? {
            0 => Kind::Interior(Vec::new()),
            1 => {
                let member = MemberId(r.u64("member id")?);
                if members.insert(member, NodeId(id)).is_some() {
                    return Err(TreeError::Corrupt(format!("{member} has two leaves")));
                }
                Kind::Leaf(member)
            }
            k => return Err(TreeError::Corrupt(format!("node {id} of unknown kind {k}"))),
        };
        nodes.insert(NodeId(id), Node { parent, depth: 0, version, key, kind });
    }
    Ok((nodes, members))
}

/// Fills the children lists from the parent links, in id order (the order the
/// tree keeps them in), and checks the root.
fn link_children(nodes: &mut HashMap<NodeId, Node>, h: &StoredHeader) -> Result<(), TreeError> {
    let mut links: Vec<(NodeId, Option<NodeId>)> = nodes.iter().map(|(&id, n)| (id, n.parent)).collect();
    links.sort_unstable();
    for (id, parent) in links {
        match parent {
            None if id == h.root => {}
            None => return Err(TreeError::Corrupt(format!("node {} has no parent and is not the root", id.0))),
            Some(_) if id == h.root => return Err(corrupt("the root has a parent")),
            Some(p) => match nodes.get_mut(&p).and_then(Node::children_mut) {
                Some(children) if children.len() < usize::from(h.degree) => children.push(id),
                Some(_) => return Err(TreeError::Corrupt(format!("node {} has more than {} children", p.0, h.degree))),
                None => return Err(TreeError::Corrupt(format!("node {} hangs from a missing node or a leaf", id.0))),
            },
        }
    }
    match nodes.get(&h.root) {
        Some(n) if matches!(n.kind, Kind::Interior(_)) && n.version == h.epoch => Ok(()),
        // Every commit changes the group key, so the root's version is the epoch.
        Some(n) if matches!(n.kind, Kind::Interior(_)) => {
            Err(TreeError::Corrupt(format!("group key of version {} at epoch {}", n.version, h.epoch)))
        }
        _ => Err(corrupt("no interior root")),
    }
}

/// Sets every depth from the root down and builds the free-slot and leaf
/// indexes; a node the walk does not reach is on a cycle.
fn index_nodes(nodes: &mut HashMap<NodeId, Node>, h: &StoredHeader) -> Result<(ByDepth, ByDepth), TreeError> {
    let mut stack = vec![(h.root, 0u32)];
    let mut reached = 0usize;
    let (mut open, mut leaves) = (BTreeSet::new(), BTreeSet::new());
    while let Some((id, depth)) = stack.pop() {
        let Some(node) = nodes.get_mut(&id) else { continue };
        node.depth = depth;
        reached += 1;
        match &node.kind {
            Kind::Leaf(_) => {
                leaves.insert((depth, id));
            }
            Kind::Interior(children) => {
                if children.is_empty() && id != h.root {
                    return Err(TreeError::Corrupt(format!("interior node {} has no members", id.0)));
                }
                if children.len() < usize::from(h.degree) {
                    open.insert((depth, id));
                }
                stack.extend(children.iter().map(|&c| (c, depth + 1)));
            }
        }
    }
    if reached != nodes.len() {
        return Err(TreeError::Corrupt(format!(
            "{} of {} nodes not under the root",
            nodes.len() - reached,
            nodes.len()
        )));
    }
    Ok((open, leaves))
}

/// The queue, each request consistent with the members.
fn read_requests(
    r: &mut Reader<'_>,
    members: &BTreeMap<MemberId, NodeId>,
) -> Result<(Queue, HashSet<MemberId>), TreeError> {
    let count = r.u32("request count")? as usize;
    if count.saturating_mul(REQUEST_MIN_LEN) > r.left() {
        return Err(TreeError::Corrupt(format!("{count} requests cannot fit in {} bytes", r.left())));
    }
    let mut pending = Vec::with_capacity(count);
    let mut queued = HashSet::with_capacity(count);
    for _ in 0..count {
        let kind = r.u8("request kind")?;
        let member = MemberId(r.u64("request member")?);
        let request = match (kind, members.contains_key(&member)) {
            (1, false) => Request::Join(Box::new(SecretKey::from_bytes(r.array("join key")?))),
            (2, true) => Request::Leave,
            (1 | 2, _) => {
                return Err(TreeError::Corrupt(format!("queued request of kind {kind} contradicts {member}'s state")));
            }
            (k, _) => return Err(TreeError::Corrupt(format!("unknown request kind {k}"))),
        };
        if !queued.insert(member) {
            return Err(TreeError::Corrupt(format!("{member} has two queued requests")));
        }
        pending.push((member, request));
    }
    Ok((pending, queued))
}

fn corrupt(why: &str) -> TreeError {
    TreeError::Corrupt(why.to_owned())
}
