//! Not outrunning the receivers' hosts.
//!
//! Owns `OverrunGuard`: a cap on a sender's rate, given what receivers
//! report of datagrams their own socket dropped (the kernel's receive queue
//! was full: the host could not read as fast as the sender sent). Radio loss
//! never shows there, only a receiver falling behind, so the sender may act
//! on it without mistaking loss for congestion: each new report sets the cap
//! a fifth under what the sender was actually sending (at most once per
//! `gap`, long enough for the cut to reach the receiver; a sender whose
//! nominal rate is far above what it achieves would otherwise need many cuts
//! to get anywhere), and the cap grows back linearly, by its configured
//! rate every `RECOVER`, until it no longer binds. It knows nothing of
//! pacing or of the wire.

use std::collections::HashMap;
use std::time::Duration;

use crate::time::Time;

/// What one report of new drops takes off the rate being sent.
pub const CUT: f64 = 0.2;
/// The least share of the configured rate left: a receiver that keeps
/// dropping slows, never stops, the transfer.
pub const FLOOR: f64 = 1.0 / 32.0;
/// The cap grows by the configured rate in this time, without new reports.
pub const RECOVER: Duration = Duration::from_secs(2);
/// Receivers whose last report is kept; past this the table starts over.
const MAX_REPORTERS: usize = 4096;

/// A cap on a sender's rate (see the module doc).
#[derive(Clone, Debug)]
pub struct OverrunGuard {
    /// Bytes per second, while one binds.
    cap: Option<f64>,
    last_cut: Option<Time>,
    last_step: Time,
    /// Each receiver's last reported count of drops.
    seen: HashMap<u32, u32>,
    cuts: u64,
}

impl Default for OverrunGuard {
    fn default() -> OverrunGuard {
        OverrunGuard { cap: None, last_cut: None, last_step: Time::ZERO, seen: HashMap::new(), cuts: 0 }
    }
}

impl OverrunGuard {
    /// Receiver `from` reports `total` datagrams dropped by its socket so
    /// far (a count that only grows, modulo 2^32) while the sender sends
    /// `sending` bytes per second (measured) under a configured `rate`. True
    /// if the cap was cut. A receiver's first report sets its baseline: drops
    /// from before it heard us are not ours to answer.
    pub fn on_report(&mut self, now: Time, from: u32, total: u32, gap: Duration, sending: f64, rate: f64) -> bool {
        self.recover(now, rate);
        if self.seen.len() >= MAX_REPORTERS && !self.seen.contains_key(&from) {
            self.seen.clear();
        }
        let new = self.seen.insert(from, total).map_or(0, |before| total.wrapping_sub(before));
        // A count that went back (a restarted receiver) is a new baseline, not 4 billion drops.
        if new == 0 || new >= 1 << 31 {
            return false;
        }
        if self.last_cut.is_some_and(|t| now.saturating_since(t) < gap) {
            return false;
        }
        let now_cap = self.cap.unwrap_or(rate).min(if sending > 0.0 { sending } else { rate });
        self.cap = Some((now_cap * (1.0 - CUT)).max(rate * FLOOR));
        self.last_cut = Some(now);
        self.cuts += 1;
        true
    }

    /// The rate to use at `now` under a configured `rate` (bytes per second).
    pub fn rate(&mut self, now: Time, rate: f64) -> f64 {
        self.recover(now, rate);
        self.cap.map_or(rate, |c| c.min(rate))
    }

    /// True while a cap binds (it lifts once it has grown back to the rate).
    pub fn capped(&self) -> bool {
        self.cap.is_some()
    }

    /// Cuts so far.
    pub fn cuts(&self) -> u64 {
        self.cuts
    }

    fn recover(&mut self, now: Time, rate: f64) {
        let step = now.saturating_since(self.last_step);
        self.last_step = self.last_step.max(now);
        if let Some(c) = self.cap {
            let c = c + rate * step.as_secs_f64() / RECOVER.as_secs_f64();
            self.cap = (c < rate).then_some(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GAP: Duration = Duration::from_millis(10);
    const RATE: f64 = 1e6;

    fn at(ms: u64) -> Time {
        Time::from_micros(ms * 1000)
    }

    #[test]
    fn new_drops_cap_the_rate_under_what_was_sent_once_per_gap_and_it_grows_back() {
        let mut g = OverrunGuard::default();
        assert!(!g.on_report(at(0), 7, 500, GAP, RATE, RATE), "the first report is a baseline");
        assert!(!g.on_report(at(1), 7, 500, GAP, RATE, RATE), "no new drops");
        // Sending only 600 kB/s of the 1 MB/s configured: the cap starts from what was sent.
        assert!(g.on_report(at(2), 7, 510, GAP, 600e3, RATE));
        assert!((g.rate(at(2), RATE) - 480e3).abs() < 1e-6);
        assert!(!g.on_report(at(5), 7, 520, GAP, 480e3, RATE), "within the gap the cut is still on its way");
        assert!(g.on_report(at(12), 7, 530, GAP, 480e3, RATE));
        let r = g.rate(at(12), RATE);
        assert!((r - 480e3 * 0.8).abs() < 1.0, "the cap starts from what was sent, under the grown cap: {r}");
        assert!(g.capped());
        assert_eq!(g.rate(at(12 + 2_000), RATE), RATE, "back to the whole rate");
        assert!(!g.capped());
        assert_eq!(g.cuts(), 2);
    }

    #[test]
    fn the_cap_never_falls_under_the_floor_and_a_reset_count_is_a_baseline() {
        let mut g = OverrunGuard::default();
        g.on_report(at(0), 1, 0, GAP, RATE, RATE);
        for i in 1..100u32 {
            g.on_report(at(u64::from(i) * 20), 1, i, GAP, RATE, RATE);
        }
        assert!(g.rate(at(1_980), RATE) >= RATE * FLOOR);
        let cuts = g.cuts();
        assert!(!g.on_report(at(3_000), 1, 0, GAP, RATE, RATE), "a restarted receiver's count starts again");
        assert_eq!(g.cuts(), cuts);
    }
}
