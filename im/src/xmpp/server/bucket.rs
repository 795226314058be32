//! The stanza rate limit of a bound session: a token bucket.
//!
//! Owns only its arithmetic; it must not read clocks (the time is an
//! argument to [`Bucket::take`]) nor end sessions (its caller does).

use tokio::time::Instant;

/// A token bucket: `rate` stanzas a second on average, `burst` at once.
pub(super) struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    pub(super) last: Instant,
}

impl Bucket {
    pub(super) fn new(rate: u32, burst: u32) -> Bucket {
        let burst = f64::from(burst.max(1));
        Bucket { rate: f64::from(rate), burst, tokens: burst, last: Instant::now() }
    }

    pub(super) fn take(&mut self, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
