//! NACK timing on the receiver side: when to speak, when to stay quiet.
//!
//! Owns the pure functions of NORM's feedback timers (RFC 5740 §5.3, RFC 5401
//! §3.4 "Randomized backoff"). They take the group RTT and a random draw and
//! return durations; no state, no clock.

use std::time::Duration;

use crate::rng::Rng;

/// NORM's truncated exponential backoff (RFC 5401 §3.4.2): a delay in
/// `[0, k·GRTT)` drawn with density rising toward the end of the window, so
/// that out of `group_size` receivers only about one answers early and the
/// rest hear it and suppress. λ = ln(group_size) + 1.
///
/// `urgency` in [0, 1] shortens the window for a receiver that needs more
/// than is usual (see `urgency`): the receivers with the largest need tend to
/// speak first, and a NACK that states the largest count suppresses every
/// smaller one.
pub fn nack_backoff(rng: &mut Rng, grtt: Duration, k: f64, group_size: f64, urgency: f64) -> Duration {
    let max = grtt.as_secs_f64() * k;
    let lambda = group_size.max(1.0).ln() + 1.0;
    let u = rng.next_f64();
    // Inverse CDF of F(t) = (e^(λt/T) - 1) / (e^λ - 1) on [0, T).
    let fraction = (1.0 + u * (lambda.exp() - 1.0)).ln() / lambda;
    let scale = 1.0 - 0.75 * urgency.clamp(0.0, 1.0);
    Duration::from_secs_f64((max * fraction * scale).max(0.0))
}

/// How unusual a receiver's need is: 0 when it needs no more than its own
/// typical loss would explain, toward 1 as the need grows past twice that.
/// `needed` symbols of a block of `k` with the receiver's loss estimate `loss`.
pub fn urgency(needed: u32, k: u32, loss: f64) -> f64 {
    let expected = (f64::from(k) * loss.clamp(0.0, 1.0)).max(1.0);
    ((f64::from(needed) / expected - 1.0) / 1.0).clamp(0.0, 1.0)
}

/// How long a receiver stays quiet about a block after it NACKed it or heard
/// an equal-or-larger NACK: long enough for the sender's aggregation window
/// and the repair to arrive ((k + 2)·GRTT, RFC 5740 §5.3).
pub fn nack_holdoff(grtt: Duration, k: f64) -> Duration {
    grtt.mul_f64(k + 2.0)
}

/// How long the sender collects NACKs for a block before answering with the
/// largest count ((k + 1)·GRTT, RFC 5740 §5.3 "repair cycle").
pub fn repair_aggregation(grtt: Duration, k: f64) -> Duration {
    grtt.mul_f64(k + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_in_window_and_favours_the_end() {
        let mut rng = Rng::new(3);
        let grtt = Duration::from_millis(10);
        let draws: Vec<f64> =
            (0..10_000).map(|_| nack_backoff(&mut rng, grtt, 4.0, 1000.0, 0.0).as_secs_f64()).collect();
        assert!(draws.iter().all(|&d| (0.0..0.040).contains(&d)));
        let early = draws.iter().filter(|&&d| d < 0.010).count();
        let late = draws.iter().filter(|&&d| d >= 0.030).count();
        assert!(early * 20 < late, "early {early} late {late}");
    }

    #[test]
    fn urgent_receivers_speak_sooner() {
        let grtt = Duration::from_millis(10);
        let mean = |urg: f64| {
            let mut rng = Rng::new(9);
            (0..1000).map(|_| nack_backoff(&mut rng, grtt, 4.0, 100.0, urg).as_secs_f64()).sum::<f64>() / 1000.0
        };
        assert!(mean(1.0) < 0.5 * mean(0.0));
        assert_eq!(urgency(6, 64, 0.1), 0.0);
        assert!(urgency(13, 64, 0.1) >= 1.0);
    }

    #[test]
    fn holdoff_covers_aggregation() {
        let g = Duration::from_millis(7);
        assert!(nack_holdoff(g, 4.0) > repair_aggregation(g, 4.0));
    }
}
