//! Sending as fast as the slowest receiver keeps up, from the delay it adds.
//!
//! Owns `RateControl`: a delay-based controller in the spirit of LEDBAT (RFC
//! 6817). Each probe echo gives a round trip that includes the time the probe
//! waited in a receiver's socket queue behind data; the smallest round trip
//! seen is the path without queues. A single echo can be late for reasons
//! that are not a queue (a busy host deschedules a receiver for a few
//! milliseconds), so a receiver's delay is the smallest of its last few
//! samples (LEDBAT's current-delay filter): a queue delays them all. The
//! slowest receiver's delay governs: one receiver keeping up says nothing
//! about another falling behind. While the
//! extra delay stays under a target
//! the rate grows; above it the rate falls in proportion, at most once per
//! round trip (the queue needs that long to show the change). A receiver that
//! falls behind is seen within a few milliseconds, long before its socket
//! buffer overflows, and without confusing the link's random loss for
//! congestion. Pure arithmetic on samples; the sender owns the pacer.

use std::collections::HashMap;
use std::time::Duration;

use crate::time::Time;

/// How long the smallest round trip stands before a fresh one may replace it
/// (a route or a host's load can change for good).
const BASE_WINDOW: Duration = Duration::from_secs(5);

/// Samples of one receiver its current delay is the smallest of.
const FILTER: usize = 3;

/// A receiver not heard from for this long no longer counts.
const FORGET: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
struct Recent {
    samples: [Duration; FILTER],
    next: usize,
    at: Time,
}

/// A delay-based rate controller.
#[derive(Clone, Debug)]
pub struct RateControl {
    recent: HashMap<u32, Recent>,
    ceiling: f64,
    floor: f64,
    rate: f64,
    target: Duration,
    base: Option<(Duration, Time)>,
    next_decrease: Time,
}

impl RateControl {
    /// A controller between `floor` and `ceiling` bytes per second, keeping
    /// queueing delay near `target`. It starts at a quarter of the ceiling:
    /// a start at the ceiling fills slow receivers' queues for a whole round
    /// trip before the first echo can tell.
    pub fn new(ceiling: u64, floor: u64, target: Duration) -> RateControl {
        let ceiling = ceiling.max(1) as f64;
        RateControl {
            recent: HashMap::new(),
            ceiling,
            floor: (floor as f64).min(ceiling),
            rate: (ceiling / 4.0).max(floor as f64).min(ceiling),
            target,
            base: None,
            next_decrease: Time::ZERO,
        }
    }

    /// The rate now, bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate as u64
    }

    /// The queueing delay `rtt` shows over the smallest round trip seen.
    pub fn queueing(&self, rtt: Duration) -> Duration {
        self.base.map_or(Duration::ZERO, |(b, _)| rtt.saturating_sub(b))
    }

    /// One round-trip sample from receiver `from` at `now`; returns the new rate if it changed.
    pub fn on_rtt(&mut self, now: Time, from: u32, rtt: Duration) -> Option<u64> {
        match self.base {
            Some((b, at)) if rtt >= b && now.saturating_since(at) < BASE_WINDOW => {}
            _ => self.base = Some((rtt, now)),
        }
        let r = self.recent.entry(from).or_insert(Recent { samples: [Duration::MAX; FILTER], next: 0, at: now });
        r.samples[r.next] = rtt;
        r.next = (r.next + 1) % FILTER;
        r.at = now;
        self.recent.retain(|_, r| now.saturating_since(r.at) < FORGET);
        let current = self.recent.values().filter_map(|r| r.samples.iter().copied().min()).max().unwrap_or(rtt);
        let queue = self.queueing(current).as_secs_f64();
        let target = self.target.as_secs_f64().max(1e-6);
        // +1 with an empty queue, 0 at the target, -1 at twice the target and beyond.
        let off = ((target - queue) / target).clamp(-1.0, 1.0);
        let before = self.rate;
        if off >= 0.0 {
            self.rate = (self.rate * (1.0 + 0.02 * off)).min(self.ceiling);
        } else if now >= self.next_decrease {
            self.rate = (self.rate * (1.0 + 0.3 * off)).max(self.floor);
            self.next_decrease = now + current;
        }
        (self.rate != before).then_some(self.rate as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(m: u64) -> Duration {
        Duration::from_millis(m)
    }

    #[test]
    fn falls_when_a_queue_builds_and_recovers_when_it_drains() {
        let mut c = RateControl::new(100_000_000, 1_000_000, ms(2));
        let t = |m: u64| Time::ZERO + ms(m);
        assert_eq!(c.rate(), 25_000_000);
        for _ in 0..100 {
            c.on_rtt(t(0), 1, ms(1));
        }
        assert_eq!(c.rate(), 100_000_000, "grows to the ceiling while no queue builds");
        // One late echo is not a queue.
        assert_eq!(c.on_rtt(t(1), 1, ms(9)), None);
        for i in 2..FILTER as u64 {
            assert_eq!(c.on_rtt(t(i), 1, ms(9)), None);
        }
        let after = c.on_rtt(t(10), 1, ms(9)).unwrap();
        assert_eq!(after, 70_000_000);
        // Within one round trip of the decrease: no second cut.
        assert_eq!(c.on_rtt(t(11), 1, ms(9)), None);
        assert!(c.on_rtt(t(30), 1, ms(9)).unwrap() < after);
        let low = c.rate();
        for i in 0..200 {
            c.on_rtt(t(40 + i), 1, ms(1));
        }
        assert!(c.rate() > low);
        assert!(c.rate() <= 100_000_000);
    }

    #[test]
    fn the_slowest_receiver_governs() {
        let mut c = RateControl::new(100_000_000, 1_000_000, ms(2));
        let t = |m: u64| Time::ZERO + ms(m);
        let mut cut = false;
        for i in 0..10 {
            c.on_rtt(t(2 * i), 1, ms(1));
            cut |= c.on_rtt(t(2 * i + 1), 2, ms(20)).is_some();
        }
        assert!(cut && c.rate() < 100_000_000);
    }

    #[test]
    fn never_below_the_floor() {
        let mut c = RateControl::new(10_000_000, 2_000_000, ms(2));
        for i in 0..100 {
            c.on_rtt(Time::ZERO + ms(10 * i), 1, if i == 0 { ms(1) } else { ms(50) });
        }
        assert_eq!(c.rate(), 2_000_000);
    }
}
