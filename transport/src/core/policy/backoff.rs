//! NACK timing on the receiver side: when to speak, when to stay quiet.
//!
//! Owns the pure functions of NORM's feedback timers (RFC 5740 §5.3, RFC 5401
//! §3.4 "Randomized backoff"). They take the group RTT and a random draw and
//! return durations; no state, no clock.

use std::time::Duration;

use crate::rng::Rng;

/// When a receiver sends its NACK for a block, after the block was found incomplete.
///
/// The random part is NORM's truncated exponential backoff (RFC 5401 §3.4.2):
/// a fraction of the window `k·GRTT` whose density rises toward its end, so
/// that of `group_size` receivers only about one answers early and the rest
/// hear it and suppress. λ = ln(group_size) + 1.
///
/// `urgency` (see [`urgency`]) orders receivers by how unusual their need is:
/// each third of a standard deviation of need moves a receiver 0.2 windows
/// earlier (0.6 windows per z unit, roughly one GRTT per symbol at 10 % loss
/// and K = 64, more than a NACK takes to reach the others), and narrows its
/// random part from the whole window to a quarter of it. Because a NACK stating
/// the largest count suppresses every smaller one, letting the largest needs
/// speak first is what keeps NACKs near one per block in large groups; with
/// plain NORM timing the counts arrive in random order and each new maximum
/// is one more NACK. Ordinary receivers wait up to 2.8 windows instead of 1:
/// repair rounds take longer, the stream does not (the sender keeps sending
/// new blocks while it repairs old ones).
pub fn nack_backoff(rng: &mut Rng, grtt: Duration, k: f64, group_size: f64, urgency: f64) -> Duration {
    let window = grtt.as_secs_f64() * k;
    let lambda = group_size.max(1.0).ln() + 1.0;
    let u = rng.next_f64();
    // Inverse CDF of F(x) = (e^(λx) - 1) / (e^λ - 1) on [0, 1).
    let fraction = (1.0 + u * (lambda.exp() - 1.0)).ln() / lambda;
    let urgency = urgency.clamp(0.0, 1.0);
    let offset = 1.8 * (1.0 - urgency);
    let width = 1.0 - 0.75 * urgency;
    Duration::from_secs_f64((window * (offset + width * fraction)).max(0.0))
}

/// How unusual a receiver's need is, 0 to 1: its z-score against the need
/// that loss `loss` gives a block of `k` symbols on average (Poisson
/// approximation, mean s = k·loss, deviation √s), divided by 3. Receivers
/// measure against the group's median loss (as the sender advertises it, or
/// their own if higher), so with different losses the largest absolute need
/// still tends to speak first.
pub fn urgency(needed: u32, k: u32, loss: f64) -> f64 {
    let s = (f64::from(k) * loss.clamp(0.0, 1.0)).max(1.0);
    let z = (f64::from(needed) - s) / s.sqrt();
    (z / 3.0).clamp(0.0, 1.0)
}

/// How long a receiver stays quiet about a block after it NACKed it or heard
/// an equal-or-larger NACK: long enough for the sender's aggregation window
/// and the repair to arrive. RFC 5740 §5.3 uses (k + 2)·GRTT, which ends just
/// as the repair of the earliest NACK arrives; two more GRTTs of margin keep
/// a receiver from asking again for what is already on its way (the holdoff
/// is also extended while repair symbols for the block keep arriving).
pub fn nack_holdoff(grtt: Duration, k: f64) -> Duration {
    grtt.mul_f64(k + 4.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_in_window_and_favours_the_end() {
        let mut rng = Rng::new(3);
        let grtt = Duration::from_millis(10);
        let draws: Vec<f64> =
            (0..10_000).map(|_| nack_backoff(&mut rng, grtt, 4.0, 1000.0, 0.0).as_secs_f64() - 0.072).collect();
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
        // Calm receivers wait out the urgent slots first; the most urgent draw from a quarter window.
        let mut rng = Rng::new(4);
        assert!((0..1000).all(|_| nack_backoff(&mut rng, grtt, 4.0, 100.0, 0.0) >= Duration::from_millis(72)));
        assert!((0..1000).all(|_| nack_backoff(&mut rng, grtt, 4.0, 100.0, 1.0) < Duration::from_millis(10)));
        assert_eq!(urgency(6, 64, 0.1), 0.0);
        assert!(urgency(10, 64, 0.1) > 0.3 && urgency(10, 64, 0.1) < 0.5);
        assert_eq!(urgency(14, 64, 0.1), 1.0);
    }
}
