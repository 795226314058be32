//! When a member may ask the key server for the group's keys again.
//!
//! Owns that one rule. A member asks when it sees it is behind: a rekey it
//! cannot apply (a gap in epochs) or a packet claiming a later epoch. The
//! claim is not authenticated (it is read before the packet can be opened),
//! so a forger could make every member ask the key server on every packet;
//! the gate lets one request through per `interval`. A packet's claim also
//! waits `AHEAD_WAIT` for the rekey that brings its epoch: at a rekey, a
//! packet under the new epoch (from the command post's archive, or a member
//! whose copy came first) often arrives before the rekey itself, and asking
//! then would send every member to the key server on every rekey. Time is
//! an argument; it sends nothing and holds no key.

use std::time::{Duration, Instant};

/// The shortest time between two resyncs by default.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(3);

/// How long a packet's claim of a later epoch waits for the rekey that
/// brings it before the member asks the key server.
pub const AHEAD_WAIT: Duration = Duration::from_secs(1);

/// One member's resync requests, at most one per interval.
#[derive(Clone, Debug)]
pub struct ResyncGate {
    interval: Duration,
    last: Option<Instant>,
    /// The newest epoch a packet claimed, and when the first claim came.
    ahead: Option<(u32, Instant)>,
}

impl Default for ResyncGate {
    fn default() -> ResyncGate {
        ResyncGate::new(RESYNC_INTERVAL)
    }
}

impl ResyncGate {
    /// At most one resync per `interval`; the first is let through at once.
    pub fn new(interval: Duration) -> ResyncGate {
        ResyncGate { interval, last: None, ahead: None }
    }

    /// A packet claimed `epoch` at `now` (ours is older): wait for its rekey.
    pub fn ahead(&mut self, epoch: u32, now: Instant) {
        let since = self.ahead.map_or(now, |(_, t)| t);
        let newest = self.ahead.map_or(epoch, |(e, _)| e.max(epoch));
        self.ahead = Some((newest, since));
    }

    /// When the claim waiting for its rekey falls due.
    pub fn ahead_due_at(&self) -> Option<Instant> {
        self.ahead.map(|(_, t)| t + AHEAD_WAIT)
    }

    /// At or after [`ahead_due_at`](Self::ahead_due_at): true if the member,
    /// now at `current`, is still behind the claim and may ask. The claim
    /// is settled, unless the gate kept a member still behind from asking
    /// (then it falls due again after another wait).
    pub fn ahead_due(&mut self, now: Instant, current: Option<u32>) -> bool {
        match self.ahead {
            Some((epoch, since)) if now.saturating_duration_since(since) >= AHEAD_WAIT => {
                self.ahead = None;
                if current.is_some_and(|c| c >= epoch) {
                    return false;
                }
                let ask = self.may_ask(now);
                if !ask {
                    // The gate is shut: try again later (the receiver reports an epoch once).
                    self.ahead = Some((epoch, now));
                }
                ask
            }
            _ => false,
        }
    }

    /// True if the member may ask now (and then counts it as asked).
    pub fn may_ask(&mut self, now: Instant) -> bool {
        let open = self.last.is_none_or(|t| now.saturating_duration_since(t) >= self.interval);
        if open {
            self.last = Some(now);
        }
        open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_request_goes_at_once_and_a_flood_gets_one_per_interval() {
        let t0 = Instant::now();
        let mut g = ResyncGate::default();
        assert!(g.may_ask(t0));
        // A forged packet every millisecond for ten seconds.
        let asked = (1..10_000).filter(|ms| g.may_ask(t0 + Duration::from_millis(*ms))).count();
        assert_eq!(asked, 3, "at 3, 6 and 9 s");
    }

    #[test]
    fn a_claim_waits_for_its_rekey_and_asks_only_if_the_rekey_never_came() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // The rekey to 8 arrives 60 ms after a packet under 8: no request.
        let mut g = ResyncGate::default();
        g.ahead(8, t0);
        g.ahead(8, t0 + ms(30));
        assert_eq!(g.ahead_due_at(), Some(t0 + AHEAD_WAIT), "the first claim sets the time");
        assert!(!g.ahead_due(t0 + ms(500), Some(8)), "not due yet");
        assert!(!g.ahead_due(t0 + AHEAD_WAIT, Some(8)), "the rekey came: nothing to ask");
        assert_eq!(g.ahead_due_at(), None);
        // The rekey never came: one request, after the wait.
        g.ahead(9, t0 + ms(2000));
        assert!(g.ahead_due(t0 + ms(2000) + AHEAD_WAIT, Some(8)));
        // A newer claim while waiting counts; the gate still holds.
        g.ahead(10, t0 + ms(4000));
        g.ahead(11, t0 + ms(4100));
        assert!(!g.ahead_due(t0 + ms(5000), Some(10)), "asked 2 s ago");
        assert_eq!(g.ahead_due_at(), Some(t0 + ms(5000) + AHEAD_WAIT), "kept for when the gate opens");
        assert!(!g.ahead_due(t0 + ms(5500), Some(10)), "not due again yet");
        assert!(g.ahead_due(t0 + ms(6000), Some(10)), "3 s after the last request");
        assert_eq!(g.ahead_due_at(), None);
    }

    #[test]
    fn a_clock_going_back_does_not_open_the_gate() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut g = ResyncGate::default();
        assert!(g.may_ask(t0));
        assert!(!g.may_ask(t0 - Duration::from_secs(5)));
    }
}
