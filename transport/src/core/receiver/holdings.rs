//! What a receiver makes of holders' summaries (`Holdings`): a silent
//! sender's objects it missed become missing, asked of the holder; and
//! what a holder running this receiver needs to say (which senders are
//! silent, and how far each got).
//!
//! Owns `on_holdings`, `silent_senders` and `heard_at`. It must not send
//! anything (NACKs go out through `nack`'s timers and `queue_feedback`) nor
//! decide when a holder speaks (the `Repairer` does).

use super::*;

impl<S: Seal> Receiver<S> {
    /// A holder's summary of silent senders: for each one silent here too,
    /// what it holds beyond what we have becomes missing, asked of it.
    /// Senders never heard of here are left alone (what they sent before we
    /// first heard them is not ours to fetch).
    pub(super) fn on_holdings(&mut self, now: Time, from: u32, h: &Holdings) {
        let silent_after = self.cfg.silent_after;
        for e in &h.entries {
            if e.origin == self.cfg.node || e.origin == from {
                continue;
            }
            let Some(r) = self.remotes.get_mut(&e.origin) else { continue };
            if now.saturating_since(r.heard) < silent_after {
                continue;
            }
            let moved = advance(&mut r.frontier, e.frontier);
            if r.proxy.is_none() {
                r.proxy = Some((from, 0));
            }
            if moved {
                self.stats.holdings_taken += 1;
            }
            self.sweep(now, e.origin);
        }
    }

    /// The senders silent here for `silent_after`, each with what this
    /// receiver knows of its stream: its frontier and the lowest object it
    /// delivers (for a holder's summary).
    pub(in crate::core) fn silent_senders(&self, now: Time) -> Vec<(u32, Frontier, u32)> {
        let mut out: Vec<(u32, Frontier, u32)> = self
            .remotes
            .iter()
            .filter(|(_, r)| now.saturating_since(r.heard) >= self.cfg.silent_after)
            .filter_map(|(&n, r)| r.frontier.map(|f| (n, f, r.base)))
            .collect();
        out.sort_by_key(|e| e.0);
        out
    }

    /// When `sender` was last heard itself.
    pub(in crate::core) fn heard_at(&self, sender: u32) -> Option<Time> {
        self.remotes.get(&sender).map(|r| r.heard)
    }
}
