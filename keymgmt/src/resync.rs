//! When a member may ask the key server for the group's keys again.
//!
//! Owns that one rule. A member asks when it sees it is behind: a rekey it
//! cannot apply (a gap in epochs) or a packet claiming a later epoch. The
//! claim is not authenticated (it is read before the packet can be opened),
//! so a forger could make every member ask the key server on every packet;
//! the gate lets one request through per `interval`. Time is an argument;
//! it sends nothing and holds no key.

use std::time::{Duration, Instant};

/// The shortest time between two resyncs by default.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(3);

/// One member's resync requests, at most one per interval.
#[derive(Clone, Debug)]
pub struct ResyncGate {
    interval: Duration,
    last: Option<Instant>,
}

impl Default for ResyncGate {
    fn default() -> ResyncGate {
        ResyncGate::new(RESYNC_INTERVAL)
    }
}

impl ResyncGate {
    /// At most one resync per `interval`; the first is let through at once.
    pub fn new(interval: Duration) -> ResyncGate {
        ResyncGate { interval, last: None }
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
    fn a_clock_going_back_does_not_open_the_gate() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut g = ResyncGate::default();
        assert!(g.may_ask(t0));
        assert!(!g.may_ask(t0 - Duration::from_secs(5)));
    }
}
