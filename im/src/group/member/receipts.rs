//! Our files for some members, until their recipients confirm them: what
//! we wait for, and the receipts heard on multicast that end the wait.
//!
//! Owns the waiting list and its bound. It must not sign or check receipts
//! itself (`group::receipt` does) nor send them (the running member queues
//! ours for files we receive).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::{MemberEvent, Via};
use crate::group::{receipt, signed};

/// Files for some members whose receipts a member waits for at most.
const MAX_AWAITING: usize = 1024;

/// One of our files for some members, until its recipients confirm it.
pub(super) struct Awaiting {
    path: PathBuf,
    size: u64,
    /// Recipients who have not confirmed yet.
    waiting: HashSet<String>,
}

/// Starts waiting for the receipts of `to` for our file `object`.
pub(super) fn expect(awaiting: &mut HashMap<u32, Awaiting>, object: u32, path: &Path, size: u64, to: &[String]) {
    // Bounded: the oldest file still unconfirmed is forgotten first.
    if awaiting.len() >= MAX_AWAITING
        && let Some(&oldest) = awaiting.keys().min()
    {
        awaiting.remove(&oldest);
    }
    let waiting = to.iter().cloned().collect();
    awaiting.insert(object, Awaiting { path: path.to_path_buf(), size, waiting });
}

/// A receipt heard on multicast: for one of our files for some members, a
/// recipient confirming it holds the file (once per recipient). Receipts
/// for other senders' files are dropped unchecked; a forged one for ours is
/// shown as unreadable.
pub(super) fn on_receipt(
    bytes: &[u8],
    node: u32,
    server: &ed25519_dalek::VerifyingKey,
    awaiting: &mut HashMap<u32, Awaiting>,
    from_node: u32,
    revoked: &dyn Fn(&str) -> bool,
) -> Option<MemberEvent> {
    let (for_node, object) = receipt::peek(bytes)?;
    if for_node != node || !awaiting.contains_key(&object) {
        return None;
    }
    let r = match receipt::open(bytes, server, signed::now_ms()) {
        Ok(r) => r,
        Err(e) => {
            return Some(MemberEvent::Unreadable {
                from: format!("node {from_node}"),
                via: Via::Multicast,
                why: e.to_string(),
            });
        }
    };
    if revoked(&r.user) {
        let why = format!("a receipt signed by {}, whose certificate the key server revoked", r.user);
        return Some(MemberEvent::Unreadable { from: format!("node {from_node}"), via: Via::Multicast, why });
    }
    let file = awaiting.get_mut(&object)?;
    if r.size != file.size || !file.waiting.remove(&r.user) {
        return None;
    }
    let ev = MemberEvent::FileDelivered { path: file.path.clone(), object, to: r.user };
    if file.waiting.is_empty() {
        awaiting.remove(&object);
    }
    Some(ev)
}
