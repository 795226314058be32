//! When a receiver NACKs, and to whom.
//!
//! Owns the NACK state of blocks and of missed objects (`Nack`), the timers
//! that drive it (`Timers`: one deadline per timer), suppression by other
//! receivers' NACKs (NORM's rule: an equal-or-larger request covers ours),
//! the feedback packets queued for the sender, and whether this region's
//! repairer still answers (`RepairerWatch`). The backoff arithmetic is
//! `policy::backoff`'s; decoding is `block`'s.

use std::collections::{BTreeMap, BTreeSet};

use super::Receiver;
use super::block::InBlock;
use crate::backoff;
use crate::seal::Seal;
use crate::time::Time;
use crate::wire::{Echo, Feedback, NackEntry};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Nack {
    /// Not known to be missing yet.
    Idle,
    /// Will NACK at this time unless suppressed.
    Waiting(Time),
    /// Quiet until this time (after NACKing or hearing an equal-or-larger NACK).
    Holdoff(Time),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TimerKey {
    Block { sender: u32, object: u32, block: u32 },
    Missing { sender: u32 },
    Reply { sender: u32 },
}

/// The receiver's timers: one deadline per key (setting one replaces it),
/// fired in time order. What a fired timer means is in the state it names
/// (a block's or a sender's `Nack`, a sender's `reply_due`).
#[derive(Default)]
pub(super) struct Timers {
    at: BTreeMap<TimerKey, Time>,
    order: BTreeSet<(Time, TimerKey)>,
}

impl Timers {
    /// `key` fires at `t` (and not at any time set before).
    pub(super) fn set(&mut self, key: TimerKey, t: Time) {
        if let Some(old) = self.at.insert(key, t) {
            self.order.remove(&(old, key));
        }
        self.order.insert((t, key));
    }

    /// The earliest deadline.
    pub(super) fn next(&self) -> Option<Time> {
        self.order.first().map(|&(t, _)| t)
    }

    /// The earliest timer due at `now`, taken off.
    pub(super) fn pop_due(&mut self, now: Time) -> Option<TimerKey> {
        let &(t, key) = self.order.first()?;
        if t > now {
            return None;
        }
        self.order.pop_first();
        self.at.remove(&key);
        Some(key)
    }
}

/// Whether this region's repairer is answering.
#[derive(Default)]
pub(super) struct RepairerWatch {
    /// Something came from it since the last NACK we sent it.
    pub(super) heard: bool,
    /// NACK rounds sent to it in a row with nothing heard in between.
    pub(super) unanswered: u32,
    /// Gave up on it: NACKs go to the sender.
    pub(super) fallen_back: bool,
}

/// The holdoff after a NACK: the usual one, or, for a sender silent with
/// no holder known (gone, or we are out of range), `silent_after`: a
/// device out of range asks into the void once per `silent_after`, not
/// every round trip, and a holder's summary or the sender's return starts
/// the usual pace again.
fn holdoff_for(silent: bool, usual: std::time::Duration, silent_after: std::time::Duration) -> std::time::Duration {
    if silent { usual.max(silent_after) } else { usual }
}

impl<S: Seal> Receiver<S> {
    /// Another receiver's feedback: suppress our NACKs it already covers.
    pub(super) fn on_peer_feedback(&mut self, now: Time, fb: &Feedback) {
        let k = self.cfg.backoff_k;
        let Some(r) = self.remotes.get_mut(&fb.target) else { return };
        let holdoff = now + backoff::nack_holdoff(r.grtt, k);
        for e in &fb.entries {
            match *e {
                NackEntry::Block { object, block, needed } => {
                    let Some(b) = r.objects.get_mut(&object).and_then(|o| o.blocks.get_mut(&block)) else { continue };
                    // The sender answers a NACK with its receiver's loss as
                    // margin (`budget::with_margin`): a need within that is covered.
                    if let Nack::Waiting(_) = b.nack
                        && b.decoded.is_none()
                        && b.needed() <= crate::budget::with_margin(needed, fb.loss)
                    {
                        b.nack = Nack::Holdoff(holdoff);
                        self.stats.nacks_suppressed += 1;
                    }
                }
                NackEntry::Objects { first, bitmap } => {
                    if let Nack::Waiting(_) = r.missing {
                        let mine = r.missing_objects(64);
                        let covered = |o: &u32| {
                            let i = o.wrapping_sub(first);
                            i < 32 && bitmap & (1 << i) != 0
                        };
                        if !mine.is_empty() && mine.iter().all(covered) {
                            r.missing = Nack::Holdoff(holdoff);
                            self.stats.nacks_suppressed += 1;
                        }
                    }
                }
            }
        }
    }

    /// Arms NACK timers for everything now known to be missing from `sender`.
    pub(super) fn sweep(&mut self, now: Time, sender: u32) {
        let (k, gsize, max_blocks) = (self.cfg.backoff_k, self.cfg.group_size, self.cfg.max_blocks as u32);
        let Some(r) = self.remotes.get_mut(&sender) else { return };
        let Some(f) = r.frontier else { return };
        let grtt = r.grtt;
        let loss = r.loss.estimate.max(r.group_loss);
        for (&object, obj) in r.objects.range_mut(..=f.object) {
            let end = if object < f.object { obj.geometry.blocks() } else { f.blocks_sent.min(obj.geometry.blocks()) };
            let end = end.min(obj.next_deliver.saturating_add(max_blocks));
            while obj.swept < end {
                let b = obj.swept;
                obj.swept += 1;
                let g = obj.geometry;
                let block = obj.blocks.entry(b).or_insert_with(|| InBlock::new(&g, b));
                if block.decoded.is_none() && block.nack == Nack::Idle {
                    let urgency = backoff::urgency(block.needed(), block.k(), loss);
                    let at = now + backoff::nack_backoff(&mut self.rng, grtt, k, gsize, urgency);
                    block.nack = Nack::Waiting(at);
                    self.timers.set(TimerKey::Block { sender, object, block: b }, at);
                }
            }
        }
        if r.missing == Nack::Idle && !r.missing_objects(1).is_empty() {
            let at = now + backoff::nack_backoff(&mut self.rng, grtt, k, gsize, 0.0);
            r.missing = Nack::Waiting(at);
            self.timers.set(TimerKey::Missing { sender }, at);
        }
    }

    /// A block's timer fired: NACK it, or end its holdoff and re-arm.
    pub(super) fn block_timer(&mut self, now: Time, sender: u32, object: u32, b: u32) -> Option<NackEntry> {
        let (k, gsize) = (self.cfg.backoff_k, self.cfg.group_size);
        let r = self.remotes.get_mut(&sender)?;
        let (grtt, loss) = (r.grtt, r.loss.estimate.max(r.group_loss));
        let silent = r.proxy.is_none() && now.saturating_since(r.heard) >= self.cfg.silent_after;
        let quiet = r.quiet(now);
        let block = r.objects.get_mut(&object)?.blocks.get_mut(&b)?;
        if block.decoded.is_some() {
            return None;
        }
        match block.nack {
            Nack::Waiting(t) if t <= now && quiet.is_some() => {
                let q = quiet.unwrap_or(now);
                block.nack = Nack::Waiting(q);
                self.timers.set(TimerKey::Block { sender, object, block: b }, q);
                None
            }
            Nack::Waiting(t) if t <= now => {
                let until = now + holdoff_for(silent, backoff::nack_holdoff(grtt, k), self.cfg.silent_after);
                block.nack = Nack::Holdoff(until);
                self.timers.set(TimerKey::Block { sender, object, block: b }, until);
                self.stats.nacks_sent += 1;
                Some(NackEntry::Block { object, block: b, needed: block.needed() })
            }
            Nack::Holdoff(t) if t <= now => {
                let urgency = backoff::urgency(block.needed(), block.k(), loss);
                let at = now + backoff::nack_backoff(&mut self.rng, grtt, k, gsize, urgency);
                block.nack = Nack::Waiting(at);
                self.timers.set(TimerKey::Block { sender, object, block: b }, at);
                None
            }
            Nack::Holdoff(t) | Nack::Waiting(t) => {
                // Moved later since this timer was armed.
                self.timers.set(TimerKey::Block { sender, object, block: b }, t);
                None
            }
            Nack::Idle => None,
        }
    }

    pub(super) fn missing_timer(&mut self, now: Time, sender: u32) -> Vec<NackEntry> {
        let (k, gsize) = (self.cfg.backoff_k, self.cfg.group_size);
        let Some(r) = self.remotes.get_mut(&sender) else { return Vec::new() };
        let mut entries = Vec::new();
        let quiet = r.quiet(now);
        match r.missing {
            Nack::Waiting(t) if t <= now && quiet.is_some() => {
                let q = quiet.unwrap_or(now);
                r.missing = Nack::Waiting(q);
                self.timers.set(TimerKey::Missing { sender }, q);
            }
            Nack::Waiting(t) if t <= now => {
                let missing = r.missing_objects(32 * 8);
                for o in &missing {
                    match entries.last_mut() {
                        Some(NackEntry::Objects { first, bitmap }) if o.wrapping_sub(*first) < 32 => {
                            *bitmap |= 1 << o.wrapping_sub(*first);
                        }
                        _ => entries.push(NackEntry::Objects { first: *o, bitmap: 1 }),
                    }
                }
                self.stats.nacks_sent += entries.len() as u64;
                let silent = r.proxy.is_none() && now.saturating_since(r.heard) >= self.cfg.silent_after;
                let until = now + holdoff_for(silent, backoff::nack_holdoff(r.grtt, k), self.cfg.silent_after);
                r.missing = Nack::Holdoff(until);
                self.timers.set(TimerKey::Missing { sender }, until);
            }
            Nack::Holdoff(t) if t <= now => {
                r.missing = Nack::Idle;
                if !r.missing_objects(1).is_empty() {
                    let at = now + backoff::nack_backoff(&mut self.rng, r.grtt, k, gsize, 0.0);
                    r.missing = Nack::Waiting(at);
                    self.timers.set(TimerKey::Missing { sender }, at);
                }
            }
            Nack::Holdoff(t) | Nack::Waiting(t) => {
                // Moved later (suppressed) since this timer was armed.
                self.timers.set(TimerKey::Missing { sender }, t);
            }
            Nack::Idle => {}
        }
        entries
    }

    pub(in crate::core) fn queue_feedback(&mut self, now: Time, sender: u32, mut entries: Vec<NackEntry>) {
        let Some(r) = self.remotes.get_mut(&sender) else { return };
        r.reply_due = None;
        // The group's history is asked of the archive that offered it, and
        // of nobody else (others would repair it under epochs we never had).
        if let Some(archive) = self.cfg.history_from
            && r.history.is_some()
        {
            let (history, live): (Vec<NackEntry>, Vec<NackEntry>) = entries.into_iter().partition(|e| match *e {
                NackEntry::Block { object, .. } | NackEntry::Objects { first: object, .. } => r.is_history(object),
            });
            entries = live;
            if !history.is_empty() {
                let per_packet = Feedback::max_entries(self.cfg.max_datagram - 4, self.framer.seal.tag_len()).max(1);
                for chunk in history.chunks(per_packet) {
                    self.stats.relayed_feedback += 1;
                    self.outbox.push_back(Feedback {
                        target: sender,
                        echo: None,
                        loss: 0,
                        relay: Some(archive),
                        overflow: None,
                        received: None,
                        entries: chunk.to_vec(),
                    });
                }
                if entries.is_empty() {
                    return;
                }
            }
        }
        let echo = r.probe.map(|(probe_time, at)| Echo {
            probe_time,
            hold_us: u32::try_from(now.saturating_since(at).as_micros()).unwrap_or(u32::MAX),
        });
        let loss = (r.loss.estimate.clamp(0.0, 1.0) * 65_535.0) as u16;
        let received = r.delivery.report(now);
        // A silent sender's missing objects are asked of the holder that
        // told of them, until it leaves `repairer_patience` rounds unanswered.
        let patience = self.cfg.repairer_patience;
        let proxied = match r.proxy.as_mut() {
            Some((holder, asked)) if !entries.is_empty() && *asked <= patience => {
                *asked += 1;
                r.proxy_nacked = now;
                Some(*holder)
            }
            Some(_) if !entries.is_empty() => {
                r.proxy = None;
                None
            }
            _ => None,
        };
        let relay = if entries.is_empty() { None } else { proxied.or_else(|| self.repairer_to_ask()) };
        let overflow = self.overflow;
        let extra = [relay.is_some(), overflow.is_some(), received.is_some()].iter().filter(|&&x| x).count() * 4;
        let room = self.cfg.max_datagram.saturating_sub(extra);
        let per_packet = Feedback::max_entries(room, self.framer.seal.tag_len()).max(1);
        let mut chunks: Vec<Vec<NackEntry>> = entries.chunks(per_packet).map(<[NackEntry]>::to_vec).collect();
        if chunks.is_empty() {
            chunks.push(Vec::new());
        }
        for entries in chunks {
            if relay.is_some() {
                self.stats.relayed_feedback += 1;
            }
            self.outbox.push_back(Feedback { target: sender, echo, loss, relay, overflow, received, entries });
        }
    }

    /// The repairer to send NACKs to now, if any: the configured one until
    /// `repairer_patience` rounds in a row went unanswered.
    fn repairer_to_ask(&mut self) -> Option<u32> {
        let repairer = self.cfg.repairer?;
        if self.watch.fallen_back {
            return None;
        }
        if self.watch.heard {
            self.watch.heard = false;
            self.watch.unanswered = 0;
        } else {
            self.watch.unanswered += 1;
        }
        if self.watch.unanswered > self.cfg.repairer_patience {
            self.watch.fallen_back = true;
            self.stats.repairer_fallbacks += 1;
            return None;
        }
        Some(repairer)
    }

    /// Names this region's repairer (or none): NACKs go to it from now on,
    /// as long as it answers.
    pub fn set_repairer(&mut self, repairer: Option<u32>) {
        if self.cfg.repairer != repairer {
            self.cfg.repairer = repairer;
            self.watch = RepairerWatch::default();
        }
    }

    /// True while NACKs go to a repairer rather than to the sender.
    pub fn relaying(&self) -> bool {
        self.cfg.repairer.is_some() && !self.watch.fallen_back
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timer_has_one_deadline_the_last_set() {
        let mut timers = Timers::default();
        let (a, b) = (TimerKey::Missing { sender: 1 }, TimerKey::Reply { sender: 1 });
        let ms = |m: u64| Time::from_micros(m * 1000);
        timers.set(a, ms(10));
        timers.set(b, ms(20));
        timers.set(a, ms(30));
        assert_eq!(timers.next(), Some(ms(20)), "a's first deadline is gone");
        assert_eq!(timers.pop_due(ms(25)), Some(b));
        assert_eq!(timers.pop_due(ms(25)), None, "a is not due before 30 ms");
        timers.set(a, ms(5));
        assert_eq!(timers.pop_due(ms(25)), Some(a), "and moves earlier as well");
        assert_eq!((timers.next(), timers.pop_due(ms(100))), (None, None), "each fired once");
    }
}
