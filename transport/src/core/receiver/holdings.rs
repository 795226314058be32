//! What a receiver makes of holders' summaries (`Holdings`): a silent
//! sender's objects it missed become missing, asked of the holder; and
//! what a holder running this receiver needs to say (which senders are
//! silent, and how far each got).
//!
//! Under the history policy `shared`, the archive's summary also offers
//! the group's last objects to members that joined since (`take_history`).
//!
//! Owns `on_holdings`, `take_history`, `silent_senders` and `heard_at`. It must not send
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
            if self.cfg.history_from == Some(from) {
                self.take_history(now, from, e);
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

    /// The group's history as `from` (the archive) offers it: what it holds
    /// of `e.origin` from `e.oldest` on, older than what this receiver has,
    /// is fetched too (once per sender), and asked of `from`. An entry whose
    /// `oldest` is past its frontier offers no history (a sender the
    /// archive holds for others, not shares).
    fn take_history(&mut self, now: Time, from: u32, e: &Holding) {
        if e.oldest > e.frontier.object {
            return;
        }
        let fresh = !self.remotes.contains_key(&e.origin);
        let silent_after = self.cfg.silent_after;
        let Some(r) = self.remote(e.origin) else { return };
        if r.history.is_some() {
            return;
        }
        let below = if fresh || (r.frontier.is_none() && r.objects.is_empty() && r.done.is_empty()) {
            // Nothing of it here yet: all it offers.
            let below = e.frontier.object.wrapping_add(1);
            r.base = e.oldest;
            r.done_below = e.oldest;
            advance(&mut r.frontier, e.frontier);
            below
        } else if e.oldest < r.base {
            // Objects completed since the first packet stay done.
            let (base, done_below) = (r.base, r.done_below);
            if done_below.wrapping_sub(base) > 1 << 16 {
                return;
            }
            r.done.extend(base..done_below);
            r.base = e.oldest;
            r.done_below = e.oldest;
            base
        } else {
            return;
        };
        // The sender's objects the archive shares are all asked of it, the
        // newest too if this receiver took its place as already sent.
        r.history = Some((e.oldest, below.max(e.frontier.object.wrapping_add(1))));
        if r.proxy.is_none() && now.saturating_since(r.heard) >= silent_after {
            r.proxy = Some((from, 0));
        }
        self.stats.holdings_taken += 1;
        self.sweep(now, e.origin);
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
