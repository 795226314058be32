//! The sender's estimate of the group round-trip time.
//!
//! Owns `Grtt`: the estimate, updated from probe echoes as NORM does (RFC 5740
//! §5.1.3: take an increase at once, weighted 0.25·old + 0.75·new; decay slowly
//! toward the largest recent sample once per probe interval), bounded to
//! 1 ms … 15 s. The configured initial value is only a guess: the first sample
//! replaces it outright (decaying from a 50 ms guess to a 1 ms LAN would take
//! six probe intervals, during which every NACK waits fifty times too long).
//! Pure arithmetic; the sender feeds it samples.

use std::time::Duration;

/// Lower bound of the estimate.
pub const GRTT_MIN: Duration = Duration::from_millis(1);
/// Upper bound of the estimate.
pub const GRTT_MAX: Duration = Duration::from_secs(15);

/// A group RTT estimator.
#[derive(Clone, Debug)]
pub struct Grtt {
    estimate: Duration,
    peak: Option<Duration>,
    measured: bool,
}

impl Grtt {
    /// An estimator starting at `initial`.
    pub fn new(initial: Duration) -> Grtt {
        Grtt { estimate: initial.clamp(GRTT_MIN, GRTT_MAX), peak: None, measured: false }
    }

    /// The current estimate.
    pub fn get(&self) -> Duration {
        self.estimate
    }

    /// One receiver's round-trip sample.
    pub fn sample(&mut self, rtt: Duration) {
        let rtt = rtt.clamp(GRTT_MIN, GRTT_MAX);
        self.peak = Some(self.peak.map_or(rtt, |p| p.max(rtt)));
        if !self.measured {
            self.measured = true;
            self.estimate = rtt;
        } else if rtt > self.estimate {
            self.estimate = (self.estimate.mul_f64(0.25) + rtt.mul_f64(0.75)).clamp(GRTT_MIN, GRTT_MAX);
        }
    }

    /// End of a probe interval: if every sample was below the estimate, decay
    /// toward the largest of them.
    pub fn end_interval(&mut self) {
        if let Some(peak) = self.peak.take()
            && peak < self.estimate
        {
            self.estimate = (self.estimate.mul_f64(0.5) + peak.mul_f64(0.5)).clamp(GRTT_MIN, GRTT_MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_sample_replaces_the_guess() {
        let mut g = Grtt::new(Duration::from_millis(50));
        g.sample(Duration::from_millis(2));
        assert_eq!(g.get(), Duration::from_millis(2));
        g.sample(Duration::from_millis(1));
        assert_eq!(g.get(), Duration::from_millis(2));
    }

    #[test]
    fn rises_fast_and_decays_slowly() {
        let mut g = Grtt::new(Duration::from_millis(100));
        g.sample(Duration::from_millis(100));
        g.sample(Duration::from_millis(500));
        assert_eq!(g.get(), Duration::from_millis(400));
        g.end_interval();
        assert_eq!(g.get(), Duration::from_millis(400));
        g.sample(Duration::from_millis(10));
        g.end_interval();
        assert_eq!(g.get(), Duration::from_millis(205));
        for _ in 0..20 {
            g.sample(Duration::from_millis(10));
            g.end_interval();
        }
        assert!(g.get() < Duration::from_millis(11));
        assert!(g.get() >= Duration::from_millis(10));
    }

    #[test]
    fn bounded() {
        let mut g = Grtt::new(Duration::ZERO);
        assert_eq!(g.get(), GRTT_MIN);
        g.sample(Duration::from_secs(100));
        assert!(g.get() <= GRTT_MAX);
    }
}
