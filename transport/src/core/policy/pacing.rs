//! Sending no faster than the configured rate.
//!
//! Owns `Pacer`, a token bucket: bytes accrue at the rate up to a burst size;
//! a packet may go when the bucket holds its size. It answers "may I send now"
//! and "when may I send next"; it does not decide what to send.

use std::time::Duration;

use crate::time::Time;

/// A token bucket over bytes.
#[derive(Clone, Debug)]
pub struct Pacer {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Time,
}

impl Pacer {
    /// A pacer at `rate` bytes per second (0 = unlimited) with `burst` bytes of credit.
    pub fn new(rate: u64, burst: u64) -> Pacer {
        Pacer { rate: rate as f64, burst: burst.max(1) as f64, tokens: burst as f64, last: Time::ZERO }
    }

    /// The configured rate in bytes per second (0 = unlimited).
    pub fn rate(&self) -> u64 {
        self.rate as u64
    }

    /// Changes the rate, keeping the credit already earned.
    pub fn set_rate(&mut self, rate: u64) {
        self.rate = rate as f64;
    }

    fn refill(&mut self, now: Time) {
        if now > self.last {
            let dt = (now - self.last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
            self.last = now;
        }
    }

    /// True if a packet of `bytes` may be sent at `now`.
    pub fn ready(&mut self, now: Time, bytes: usize) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        self.refill(now);
        self.tokens >= (bytes as f64).min(self.burst)
    }

    /// Takes `bytes` of credit for a packet just sent (may go negative: a debt).
    pub fn spend(&mut self, now: Time, bytes: usize) {
        if self.rate > 0.0 {
            self.refill(now);
            self.tokens -= bytes as f64;
        }
    }

    /// When a packet of `bytes` may go, if not now.
    pub fn next_ready(&self, now: Time, bytes: usize) -> Time {
        if self.rate <= 0.0 {
            return now;
        }
        let tokens = if now > self.last {
            (self.tokens + (now - self.last).as_secs_f64() * self.rate).min(self.burst)
        } else {
            self.tokens
        };
        let missing = (bytes as f64).min(self.burst) - tokens;
        if missing <= 0.0 {
            now
        } else {
            // Round up to the next microsecond so the caller never wakes early.
            now + Duration::from_micros((missing / self.rate * 1e6).ceil() as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_rate() {
        let mut p = Pacer::new(1_000_000, 3000);
        let mut now = Time::ZERO;
        let mut sent = 0usize;
        while now < Time::from_micros(1_000_000) {
            if p.ready(now, 1000) {
                p.spend(now, 1000);
                sent += 1000;
            } else {
                now = p.next_ready(now, 1000);
            }
        }
        // One second at 1 MB/s plus the initial burst.
        assert!((1_000_000..=1_004_000).contains(&sent), "{sent}");
    }

    #[test]
    fn unlimited_is_always_ready() {
        let mut p = Pacer::new(0, 0);
        assert!(p.ready(Time::ZERO, 65_000));
        assert_eq!(p.next_ready(Time::ZERO, 65_000), Time::ZERO);
    }
}
