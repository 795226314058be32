//! What a receiver knows of one sender.
//!
//! Owns `Remote` (the sender's objects in progress, what is done, its
//! frontier, GRTT and probe, the NACK state for whole objects missed),
//! `LossMeter` (loss from gaps in its packet counter) and `Delivery` (the
//! rate its data arrives at, reported in feedback). It decides no NACK and
//! sends nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::block::InObject;
use super::nack::Nack;
use crate::time::Time;
use crate::wire::Frontier;

/// Packet loss seen from one sender, from gaps in its packet counter.
#[derive(Default)]
pub(super) struct LossMeter {
    pub(super) next_seq: Option<u64>,
    pub(super) expected: u64,
    pub(super) received: u64,
    pub(super) estimate: f64,
}

impl LossMeter {
    pub(super) fn on_seq(&mut self, seq: u64) {
        match self.next_seq {
            None => {
                self.next_seq = Some(seq.wrapping_add(1));
                self.expected += 1;
            }
            Some(next) if seq >= next => {
                self.expected += (seq - next).min(1 << 20) + 1;
                self.next_seq = Some(seq.wrapping_add(1));
            }
            Some(_) => {}
        }
        self.received += 1;
        if self.expected >= 256 {
            let sample = 1.0 - (self.received as f64 / self.expected as f64).min(1.0);
            self.estimate = 0.5 * self.estimate + 0.5 * sample;
            self.expected = 0;
            self.received = 0;
        }
    }
}

/// Shortest window a delivered rate is measured over.
pub(super) const DELIVERY_WINDOW: Duration = Duration::from_millis(50);

/// A pause in a sender's data longer than this starts a new window: an idle
/// sender is not a slow path.
pub(super) const DELIVERY_GAP: Duration = Duration::from_millis(100);

/// What a sender's data arrives at: bytes per second over windows of at
/// least `DELIVERY_WINDOW`, reported in feedback (`Feedback::received`).
#[derive(Default)]
pub(super) struct Delivery {
    /// When the current window started, and when its last datagram came.
    pub(super) window: Option<(Time, Time)>,
    pub(super) bytes: u64,
    pub(super) rate: Option<u32>,
}

impl Delivery {
    pub(super) fn on_datagram(&mut self, now: Time, len: usize) {
        match &mut self.window {
            Some((_, last)) if now.saturating_since(*last) <= DELIVERY_GAP => *last = (*last).max(now),
            _ => {
                self.window = Some((now, now));
                self.bytes = 0;
            }
        }
        self.bytes += len as u64;
    }

    /// Bytes per second now: the current window's if it is long enough, else the last one's.
    pub(super) fn current(&self, now: Time) -> Option<f64> {
        if let Some((start, last)) = self.window {
            let span = now.min(last + DELIVERY_GAP).saturating_since(start);
            if span >= DELIVERY_WINDOW {
                return Some(self.bytes as f64 / span.as_secs_f64());
            }
        }
        self.rate.map(f64::from)
    }

    /// The rate of the last full window, closing the current one if it is long enough.
    pub(super) fn report(&mut self, now: Time) -> Option<u32> {
        if let Some((start, last)) = self.window {
            let span = now.min(last + DELIVERY_GAP).saturating_since(start);
            if span >= DELIVERY_WINDOW {
                let rate = self.bytes as f64 / span.as_secs_f64();
                self.rate = Some(rate.min(f64::from(u32::MAX)) as u32);
                self.window = Some((now, now));
                self.bytes = 0;
            }
        }
        self.rate
    }
}

pub(super) struct Remote {
    pub(super) base: u32,
    pub(super) got_command: bool,
    pub(super) done_below: u32,
    pub(super) done: BTreeSet<u32>,
    pub(super) objects: BTreeMap<u32, InObject>,
    pub(super) frontier: Option<Frontier>,
    pub(super) grtt: Duration,
    /// The median loss of the group, as the sender advertises it.
    pub(super) group_loss: f64,
    pub(super) probe: Option<(u64, Time)>,
    pub(super) reply_due: Option<Time>,
    pub(super) missing: Nack,
    pub(super) loss: LossMeter,
    pub(super) delivery: Delivery,
    /// When a packet of the sender itself last arrived.
    pub(super) heard: Time,
    /// While the sender is silent: the holder its missing objects are
    /// asked of (the one whose summary told of them), and NACK rounds sent
    /// to it with none of its repair heard since.
    pub(super) proxy: Option<(u32, u32)>,
    /// Repair from the holder is flowing: NACKs for this sender wait until
    /// then, but a round still goes every `QUIET_MAX` (what was lost of the
    /// holder's repair is asked again; a chat does not wait out a file).
    pub(super) quiet_until: Time,
    /// When NACKs last went to the holder.
    pub(super) proxy_nacked: Time,
    /// Objects of the group's history taken from `history_from`'s summary
    /// (from, below): asked of it, whoever else is heard.
    pub(super) history: Option<(u32, u32)>,
}

/// The longest NACKs for a silent sender wait while its holder's repair flows.
pub(super) const QUIET_MAX: Duration = Duration::from_millis(500);

impl Remote {
    /// A packet of the sender itself arrived: it is not silent, and its
    /// missing objects are asked of it again.
    pub(super) fn heard_from_itself(&mut self, now: Time) {
        self.heard = now;
        self.proxy = None;
    }

    /// Until when NACKs for this sender wait, if they do now (see `quiet_until`).
    pub(super) fn quiet(&self, now: Time) -> Option<Time> {
        if self.proxy.is_none() || self.quiet_until <= now {
            return None;
        }
        Some(self.quiet_until.min(self.proxy_nacked + QUIET_MAX)).filter(|&q| q > now)
    }

    /// Whether `object` is of the history taken from the archive.
    pub(super) fn is_history(&self, object: u32) -> bool {
        self.history.is_some_and(|(from, below)| object >= from && object < below)
    }

    pub(super) fn is_done(&self, object: u32) -> bool {
        object < self.done_below || self.done.contains(&object)
    }
    pub(super) fn mark_done(&mut self, object: u32) {
        self.done.insert(object);
        while self.done.remove(&self.done_below) {
            self.done_below = self.done_below.wrapping_add(1);
        }
    }
    /// Objects behind the frontier of which not one packet arrived (bounded).
    pub(super) fn missing_objects(&self, limit: usize) -> Vec<u32> {
        let Some(f) = self.frontier else { return Vec::new() };
        let end = if f.blocks_sent > 0 { f.object.wrapping_add(1) } else { f.object };
        (self.done_below..end).filter(|o| !self.objects.contains_key(o) && !self.done.contains(o)).take(limit).collect()
    }
}
