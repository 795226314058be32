//! What a receiver had of each sender, kept across a restart of its
//! process: a member killed, or whose handheld rebooted, fetches what it
//! missed while it was down (from the sender, or from holders while the
//! sender is silent) and nothing it had already.
//!
//! Owns `progress` (what to keep) and `resume_sender` (taking it back).
//! It must not write anything down (the application keeps it where it
//! keeps its own state) nor ask for anything (`nack` does, once the
//! sender or a holder says how far it got).

use super::*;

/// Objects above a sender's watermark kept as done, at most.
pub(super) const MAX_RESUME_DONE: usize = 256;

/// What a receiver had of one sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderProgress {
    /// The sender's node.
    pub origin: u32,
    /// Every object below this one was delivered or given up.
    pub next: u32,
    /// Objects from `next` on that were delivered too (at most `MAX_RESUME_DONE`).
    pub done: Vec<u32>,
    /// The sender's last packet counter here: tells a restarted sender.
    pub counter: u64,
}

impl<S: Seal> Receiver<S> {
    /// What this receiver has of each sender it heard, for a later run.
    pub fn progress(&self) -> Vec<SenderProgress> {
        let mut out: Vec<SenderProgress> = self
            .remotes
            .iter()
            .filter_map(|(&origin, r)| {
                let counter = self.framer.counter_of(origin)?;
                let done = r.done.iter().copied().filter(|&o| o >= r.done_below).take(MAX_RESUME_DONE).collect();
                Some(SenderProgress { origin, next: r.done_below, done, counter })
            })
            .collect();
        out.sort_by_key(|p| p.origin);
        out
    }

    /// Takes back what an earlier run had of a sender (`progress`): its
    /// objects from `next` on, except those in `done`, are wanted from the
    /// sender (if it still holds them) or, while it is silent, from a
    /// holder. If the sender restarted since, its first packet says so
    /// (`SenderRestarted`) and this is forgotten. A sender this receiver
    /// already knows, or one past `max_senders`, is left as it is.
    pub fn resume_sender(&mut self, now: Time, p: &SenderProgress) {
        if p.origin == self.cfg.node || self.remotes.contains_key(&p.origin) {
            return;
        }
        self.now = self.now.max(now);
        self.framer.recall(p.origin, p.counter);
        let Some(r) = self.remote(p.origin) else { return };
        // Taken as if its first command had come: the watermark stays ours.
        r.got_command = true;
        r.base = p.next;
        r.done_below = p.next;
        r.done = p.done.iter().copied().filter(|&o| o > p.next).take(MAX_RESUME_DONE).collect();
    }
}
