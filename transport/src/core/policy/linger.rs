//! When a sender may stop: everything it queued went out, and the receivers
//! have been quiet long enough that no late repair request is coming.
//!
//! Owns that one rule and its bounds. A sender that leaves as soon as its
//! last packet is out strands a receiver whose NACK is still in its backoff
//! window (NORM's `T_backoff = K·GRTT`) or one restarted late that needs a
//! whole file; a sender that waits for total silence can be held for ever by
//! a member NACKing without end. So: once everything queued has been sent,
//! stop when the sender is idle and no NACK has come for `quiet`, and in any
//! case `most` after the last source symbol went out. Pure state and
//! arithmetic on the times it is given; it sends nothing and reads no packet.

use std::time::Duration;

use crate::time::Time;

/// How long a sender lingers for late repair requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LingerConfig {
    /// Silence (no NACK) while idle after which the sender may stop.
    pub quiet: Duration,
    /// The longest linger, from first going idle, whatever the receivers do.
    pub most: Duration,
}

impl LingerConfig {
    /// Quiet for `quiet`, at most ten times that or 30 s in all (what
    /// `lsim send --linger` has always meant).
    pub fn quiet(quiet: Duration) -> LingerConfig {
        LingerConfig { quiet, most: (quiet * 10).max(Duration::from_secs(30)) }
    }
}

impl Default for LingerConfig {
    /// 2 s of silence: several NACK windows at any GRTT the transport
    /// allows, and time for a receiver's end-of-object check.
    fn default() -> LingerConfig {
        LingerConfig::quiet(Duration::from_secs(2))
    }
}

/// One linger: armed when the last source symbol queued goes out, spent
/// once it said the sender may stop, rearmed by the next object queued.
#[derive(Clone, Debug)]
pub struct Linger {
    cfg: LingerConfig,
    /// When everything queued had first been sent.
    since: Option<Time>,
    last_nack: Option<Time>,
    said: bool,
}

impl Linger {
    /// Not armed until the sender goes idle.
    pub fn new(cfg: LingerConfig) -> Linger {
        Linger { cfg, since: None, last_nack: None, said: false }
    }

    /// An object was queued: the linger starts again when it is sent.
    pub fn on_queued(&mut self) {
        (self.since, self.last_nack, self.said) = (None, None, false);
    }

    /// Every source symbol of everything queued has gone out (repair may
    /// still be owed: the linger counts from here, so a receiver NACKing
    /// without end cannot hold the sender past `most`).
    pub fn on_all_sent(&mut self, now: Time) {
        self.since.get_or_insert(now);
    }

    /// A receiver asked for repair.
    pub fn on_nack(&mut self, now: Time) {
        self.last_nack = Some(self.last_nack.map_or(now, |t| t.max(now)));
    }

    /// When the decision could next change (`idle`: the sender is idle now).
    pub fn deadline(&self, idle: bool) -> Option<Time> {
        let since = self.since.filter(|_| !self.said)?;
        let most = since + self.cfg.most;
        Some(if idle { most.min(self.quiet_from(since) + self.cfg.quiet) } else { most })
    }

    /// True exactly once per linger: when the sender may stop at `now`.
    pub fn may_stop(&mut self, now: Time, idle: bool) -> bool {
        let Some(since) = self.since.filter(|_| !self.said) else { return false };
        let quiet = idle && now >= self.quiet_from(since) + self.cfg.quiet;
        self.said = quiet || now >= since + self.cfg.most;
        self.said
    }

    fn quiet_from(&self, since: Time) -> Time {
        self.last_nack.map_or(since, |n| n.max(since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Time {
        Time::from_micros(n * 1000)
    }

    fn linger() -> Linger {
        Linger::new(LingerConfig { quiet: Duration::from_millis(100), most: Duration::from_millis(1000) })
    }

    #[test]
    fn a_sender_with_source_still_to_send_may_not_stop() {
        let mut l = linger();
        assert_eq!(l.deadline(false), None);
        assert!(!l.may_stop(ms(10_000), true));
    }

    #[test]
    fn silence_for_quiet_after_all_was_sent_lets_an_idle_sender_stop_once() {
        let mut l = linger();
        l.on_all_sent(ms(50));
        assert_eq!(l.deadline(true), Some(ms(150)));
        assert!(!l.may_stop(ms(149), true));
        assert!(l.may_stop(ms(150), true));
        assert!(!l.may_stop(ms(151), true), "said once");
        assert_eq!(l.deadline(true), None);
    }

    #[test]
    fn each_nack_restarts_the_silence() {
        let mut l = linger();
        l.on_all_sent(ms(0));
        l.on_nack(ms(80));
        assert!(!l.may_stop(ms(150), true));
        assert_eq!(l.deadline(true), Some(ms(180)));
        // Repair for it: not idle, so the silence cannot end the linger.
        assert!(!l.may_stop(ms(300), false));
        assert!(l.may_stop(ms(300), true));
    }

    #[test]
    fn a_member_nacking_without_end_holds_the_sender_at_most_most() {
        let mut l = linger();
        l.on_all_sent(ms(0));
        for t in (0..1000).step_by(50) {
            l.on_nack(ms(t));
            assert!(!l.may_stop(ms(t), t % 100 == 0));
        }
        assert_eq!(l.deadline(false), Some(ms(1000)));
        assert!(l.may_stop(ms(1000), false));
    }

    #[test]
    fn queueing_again_rearms_and_idle_again_restarts_the_clock() {
        let mut l = linger();
        l.on_all_sent(ms(0));
        assert!(l.may_stop(ms(100), true));
        l.on_queued();
        assert_eq!(l.deadline(true), None);
        l.on_all_sent(ms(500));
        l.on_all_sent(ms(550)); // told again later: the linger started at 500
        assert!(!l.may_stop(ms(599), true));
        assert!(l.may_stop(ms(600), true));
    }

    #[test]
    fn the_cli_meaning_of_linger_is_kept() {
        assert_eq!(LingerConfig::quiet(Duration::from_secs(2)).most, Duration::from_secs(30));
        assert_eq!(LingerConfig::quiet(Duration::from_secs(5)).most, Duration::from_secs(50));
    }
}
