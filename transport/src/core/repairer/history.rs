//! Who a holder repairs what: the group's history policy, as the key
//! server's host tells a holder (the archive). Under `joined`, each member
//! is served only what was sent since its run of membership began; under
//! `shared`, the last N objects go to every member, re-sealed under the
//! current epoch, and the holder's summaries offer them.
//!
//! Owns the members' join epochs and the shared set, the check of a
//! request against them, and the shared part of a summary. It must not
//! seal anything (the repairer picks the epoch with `is_shared`) nor decide
//! which objects are shared (the layer above counts the last N).

use std::collections::{BTreeSet, HashMap};

use super::{HeldObject, MAX_HOLDINGS, Repairer};
use crate::seal::Seal;
use crate::wire::{Frontier, Holding};

/// The members' join epochs and the shared history, once told.
#[derive(Default)]
pub(super) struct Readers {
    /// Each member's receiver node and the epoch its membership began at.
    /// `None`: whoever asks.
    members: Option<HashMap<u32, u32>>,
    /// The shared history. `None`: the policy `joined`.
    shared: Option<BTreeSet<(u32, u32)>>,
}

impl Readers {
    /// Whether the policy is `shared` with something to share.
    pub(super) fn shares(&self) -> bool {
        self.shared.as_ref().is_some_and(|s| !s.is_empty())
    }
}

impl<S: Seal> Repairer<S> {
    /// The group's members as the key server knows them: each one's
    /// receiver node and the epoch it joined at (the history policy
    /// `joined`). From then on a request is refused (and counted,
    /// `repair_refused_policy`) when it comes from a node not listed or
    /// asks for an object sent before its member joined. The repair's seal
    /// (the object's epoch) already keeps such a member from reading it;
    /// this spares the air. Replaced whole on every call.
    pub fn set_members(&mut self, joined: HashMap<u32, u32>) {
        self.readers.members = Some(joined);
    }

    /// The history policy `shared`: these objects (the last N the group
    /// sent, as the layer above counts them) are served to every member,
    /// whenever it joined, and their repair is sealed under the current
    /// epoch, so that a member that joined since can read it: every member
    /// of now can. This holder's summaries name them all the time (as the
    /// oldest object of their sender it offers), for members to fetch
    /// (`ReceiverConfig::history_from`); what it holds of other senders it
    /// names as offering no history (`oldest` past the frontier). Replaced
    /// whole on every call.
    pub fn set_shared(&mut self, objects: impl IntoIterator<Item = (u32, u32)>) {
        self.readers.shared = Some(objects.into_iter().collect());
    }

    /// Whether `object` of `origin` is in the shared history (its repair
    /// goes under the current epoch).
    pub(super) fn is_shared(&self, origin: u32, object: u32) -> bool {
        self.readers.shared.as_ref().is_some_and(|s| s.contains(&(origin, object)))
    }

    /// Whether `from` may be repaired `object` of `origin` (see `set_members`).
    pub(super) fn may_serve(&mut self, from: u32, origin: u32, object: u32) -> bool {
        let Some(members) = &self.readers.members else { return true };
        let epoch = self.object_info(origin, object).map(|h: HeldObject| h.epoch);
        let shared = self.is_shared(origin, object);
        let ok = match (members.get(&from), epoch) {
            (None, _) => false,
            (Some(_), _) if shared => true,
            (Some(&joined), Some(epoch)) => epoch >= joined,
            // Not held here: nothing to serve (and what is passed upstream
            // is sealed by whoever holds it).
            (Some(_), None) => true,
        };
        if !ok {
            self.inner.stats.repair_refused_policy += 1;
        }
        ok
    }

    /// A summary's entries under `shared`: what is held of a sender is
    /// named as offering no history (`oldest` past the frontier), but what
    /// is shared of it, whatever other holders said.
    pub(super) fn offer_shared(&self, entries: &mut Vec<Holding>) {
        if self.readers.shared.is_none() {
            return;
        }
        for e in entries.iter_mut() {
            e.oldest = e.frontier.object.wrapping_add(1);
        }
        for h in self.shared_holdings() {
            if let Some(e) = entries.iter_mut().find(|e| e.origin == h.origin) {
                e.oldest = h.oldest;
                if (h.frontier.object, h.frontier.blocks_sent) > (e.frontier.object, e.frontier.blocks_sent) {
                    e.frontier = h.frontier;
                }
            } else if entries.len() < MAX_HOLDINGS {
                entries.push(h);
            }
        }
    }

    /// The shared history, per sender: its oldest and newest shared object.
    fn shared_holdings(&self) -> Vec<Holding> {
        let mut out: Vec<Holding> = Vec::new();
        for &(origin, object) in self.readers.shared.iter().flatten() {
            let Some(g) = self.object_info(origin, object).map(|h| h.geometry) else { continue };
            let frontier = Frontier { object, blocks_sent: g.blocks() };
            match out.last_mut() {
                Some(h) if h.origin == origin => h.frontier = frontier,
                _ => out.push(Holding { origin, frontier, oldest: object }),
            }
        }
        out
    }
}
