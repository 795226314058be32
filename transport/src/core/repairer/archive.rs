//! A holder that keeps more than fits in memory: an archive's repairer.
//!
//! Owns the index of objects the layer above keeps in its own store (on
//! disk, across restarts) and the blocks asked for that are not in the
//! block cache: those are handed out by `poll_wanted`, and come back with
//! `restore`, after which the members' requests waiting for them are
//! answered as for any cached block. It must not read or write the store
//! (the driver does, off the protocol's thread) nor decide what the store
//! keeps (its bounds are the layer above's).

use std::collections::{BTreeMap, HashSet, VecDeque};

use super::{HeldObject, Key, Repairer};
use crate::seal::Seal;
use crate::stats::DropReason;
use crate::time::Time;
use crate::wire::{Frontier, Holding};

/// Blocks asked of the store and not yet restored, at most.
const MAX_WANTED: usize = 4096;

/// What the layer above's store holds, as the repairer needs to know it.
#[derive(Default)]
pub(super) struct Index {
    /// Every stored object: its kind, geometry and epoch.
    objects: BTreeMap<(u32, u32), HeldObject>,
    /// Blocks to ask the store for, and those asked and not yet back.
    wanted: VecDeque<Key>,
    asked: HashSet<Key>,
}

impl Index {
    pub(super) fn holds(&self, origin: u32, object: u32) -> bool {
        self.objects.contains_key(&(origin, object))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// The oldest stored object of `origin`.
    pub(super) fn oldest(&self, origin: u32) -> Option<u32> {
        self.objects.range((origin, 0)..=(origin, u32::MAX)).next().map(|(&(_, o), _)| o)
    }

    /// Origins stored, each with the stored frontier (the newest object,
    /// wholly sent) and oldest object.
    pub(super) fn origins(&self) -> Vec<Holding> {
        let mut out: Vec<Holding> = Vec::new();
        for (&(origin, object), HeldObject { geometry: g, .. }) in &self.objects {
            match out.last_mut() {
                Some(h) if h.origin == origin => h.frontier = Frontier { object, blocks_sent: g.blocks() },
                _ => {
                    out.push(Holding { origin, frontier: Frontier { object, blocks_sent: g.blocks() }, oldest: object })
                }
            }
        }
        out
    }

    pub(super) fn forget_origin(&mut self, origin: u32) {
        self.objects.retain(|&(o, _), _| o != origin);
        self.wanted.retain(|k| k.0 != origin);
        self.asked.retain(|k| k.0 != origin);
    }
}

impl<S: Seal> Repairer<S> {
    /// `object` of `origin` is in the layer above's store (just written, or
    /// found there after a restart): while `origin` is silent this holder
    /// names it in its summaries, and a block asked for that is not in
    /// memory is wanted from the store (`poll_wanted`).
    pub fn archived(&mut self, origin: u32, object: u32, held: HeldObject) {
        self.archive.objects.insert((origin, object), held);
    }

    /// The store dropped `object` of `origin` (its bounds): no longer offered.
    pub fn unarchived(&mut self, origin: u32, object: u32) {
        self.archive.objects.remove(&(origin, object));
        self.archive.wanted.retain(|k| (k.0, k.1) != (origin, object));
        self.archive.asked.retain(|k| (k.0, k.1) != (origin, object));
    }

    /// What `object` of `origin` is, if this holder has heard of it: its
    /// kind and geometry (what a store keeps beside the blocks).
    pub fn object_info(&self, origin: u32, object: u32) -> Option<HeldObject> {
        self.objects.get(&(origin, object)).or_else(|| self.archive.objects.get(&(origin, object))).copied()
    }

    /// Objects in the store, as told by `archived`.
    pub fn archived_objects(&self) -> usize {
        self.archive.objects.len()
    }

    /// The highest packet counter accepted from sender `origin` (what a
    /// store keeps, to tell after a restart whether the sender restarted).
    pub fn sender_counter(&self, origin: u32) -> Option<u64> {
        self.inner.framer.counter_of(origin)
    }

    /// After a restart: sender `origin` had got to packet `counter`. If it
    /// restarted since, its first packet says so (`SenderRestarted`), and
    /// what is stored of its last run must go: its object numbers start again.
    pub fn recall_sender(&mut self, origin: u32, counter: u64) {
        self.inner.framer.recall(origin, counter);
    }

    /// The next block to read from the store, `(origin, object, block)`;
    /// give it back with `restore` (or `unarchived` if it is gone).
    pub fn poll_wanted(&mut self) -> Option<(u32, u32, u32)> {
        let key = self.archive.wanted.pop_front()?;
        self.archive.asked.insert(key);
        Some(key)
    }

    /// A block read from the store: kept as if just decoded, and the
    /// requests waiting for it answered. Bytes of the wrong length are refused.
    pub fn restore(&mut self, now: Time, origin: u32, object: u32, block: u32, bytes: &[u8]) {
        let key = (origin, object, block);
        self.archive.asked.remove(&key);
        let Some(&held) = self.archive.objects.get(&(origin, object)) else { return };
        let g = held.geometry;
        if block >= g.blocks() || bytes.len() != g.block_len(block) {
            self.inner.stats.drop(DropReason::Invalid);
            self.pending.remove(&key);
            return;
        }
        self.remember_object(origin, object, held);
        self.keep_block(now, origin, object, g.block_offset(block), bytes);
    }

    /// A block of a stored object that is not in memory: asked of the
    /// store, with the request waiting for it (true if it waits).
    pub(super) fn want(&mut self, key: Key, needed: u32, loss: u16) -> bool {
        let Some(g) = self.archive.objects.get(&(key.0, key.1)).map(|h| h.geometry) else { return false };
        if key.2 >= g.blocks() {
            return false;
        }
        let needed = if needed == u32::MAX { u32::from(g.symbols_in(key.2)) } else { needed };
        let p = self.pending.entry(key).or_insert((0, 0));
        *p = (p.0.max(needed), p.1.max(loss));
        if !self.archive.asked.contains(&key) && !self.archive.wanted.contains(&key) {
            if self.archive.wanted.len() >= MAX_WANTED {
                self.inner.stats.drop(DropReason::Overload);
                return false;
            }
            self.archive.wanted.push_back(key);
        }
        true
    }

    /// Stored senders this holder's receiver never heard (since a restart):
    /// silent by definition, held for `hold_for` from the first summary.
    pub(super) fn archived_unheard(&self) -> Vec<Holding> {
        self.archive.origins().into_iter().filter(|h| self.inner.heard_at(h.origin).is_none()).collect()
    }
}
