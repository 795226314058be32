//! How much repair one NACK may get.
//!
//! Owns two rules that keep one receiver — honest but unlucky, or a member
//! gone rogue — from spending the group's capacity on repair:
//!
//! - **The margin is the requester's own.** A NACK for `needed` symbols is
//!   answered with `needed / (1 - p)`, where `p` is the loss the *requesting*
//!   receiver reports, capped at [`MAX_MARGIN_LOSS`]. (It used to be the
//!   worst loss any receiver reported, so one receiver claiming 100 % made
//!   every round for everyone ten times too large.)
//! - **Each requester has a budget** ([`RepairBudget`]): a token bucket of
//!   repair symbols that fills at a share of the sending rate. What a NACK
//!   asks beyond it is not sent; the requester asks again next round, and the
//!   others, whose buckets are untouched, are repaired as before.
//!
//! It decides counts only; which symbols go out, and when, is the sender's
//! and the repairer's business. Requesters are known by the node id in their
//! feedback, which the group seal authenticates as "some member", not as that
//! node: a member inventing node ids gets a bucket for each (see the README's
//! security model). The sender's bound on repair runs still holds then.

use std::collections::HashMap;
use std::time::Duration;

use crate::time::Time;

/// The largest loss a margin is scaled for: a requester claiming more gets at
/// most twice what it asks.
pub const MAX_MARGIN_LOSS: f64 = 0.5;

/// Requesters with a bucket of their own; past this, requesters not heard
/// from for [`FORGET_AFTER`] are forgotten, and if none is, newcomers share one.
pub const MAX_REQUESTERS: usize = 4096;

/// A requester silent this long starts again with a full bucket.
pub const FORGET_AFTER: Duration = Duration::from_secs(30);

/// The rate a budget assumes when the sender has none (sends as fast as
/// polled): 1 Gbit/s, in bytes per second.
const UNPACED_RATE: u64 = 125_000_000;

/// The node id the shared bucket is filed under when the table is full.
const OVERFLOW: u32 = u32::MAX;

/// `needed` scaled for the requester's reported loss (1/65535ths), capped.
pub fn with_margin(needed: u32, loss: u16) -> u32 {
    let p = (f64::from(loss) / 65_535.0).min(MAX_MARGIN_LOSS);
    ((f64::from(needed) / (1.0 - p)).round() as u32).max(needed)
}

struct Bucket {
    tokens: f64,
    last: Time,
}

/// Per-requester token buckets of repair symbols (see the module doc).
pub struct RepairBudget {
    share: f64,
    floor: u32,
    buckets: HashMap<u32, Bucket>,
    limited: u64,
}

impl RepairBudget {
    /// Buckets that fill at `share` of the sending rate (0 < share ≤ 1) and
    /// hold one second of that, but never less than `floor` symbols (a few
    /// blocks, so a receiver that lost a burst is repaired in one round).
    pub fn new(share: f64, floor: u32) -> RepairBudget {
        RepairBudget { share: share.clamp(0.01, 1.0), floor, buckets: HashMap::new(), limited: 0 }
    }

    /// Symbols requested beyond a budget, and not sent, so far.
    pub fn limited(&self) -> u64 {
        self.limited
    }

    /// Grants `from` up to `want` repair symbols at `now`, when the sender
    /// sends `rate` bytes per second (0: unpaced) of `symbol_size`-byte
    /// symbols. Returns the count granted and takes it from the bucket.
    pub fn grant(&mut self, now: Time, from: u32, want: u32, rate: u64, symbol_size: u16) -> u32 {
        let rate = if rate == 0 { UNPACED_RATE } else { rate };
        let per_sec = self.share * rate as f64 / f64::from(symbol_size.max(1));
        let cap = per_sec.max(f64::from(self.floor));
        let key = self.key(now, from);
        let b = self.buckets.entry(key).or_insert(Bucket { tokens: cap, last: now });
        if now > b.last {
            b.tokens = (b.tokens + (now - b.last).as_secs_f64() * per_sec).min(cap);
            b.last = now;
        }
        let granted = (b.tokens.max(0.0).floor() as u32).min(want);
        b.tokens -= f64::from(granted);
        self.limited += u64::from(want - granted);
        granted
    }

    /// The bucket `from` is charged to: its own, or the shared one when the
    /// table is full of requesters heard from recently.
    fn key(&mut self, now: Time, from: u32) -> u32 {
        if self.buckets.contains_key(&from) || self.buckets.len() < MAX_REQUESTERS {
            return from;
        }
        self.buckets.retain(|_, b| now.saturating_since(b.last) < FORGET_AFTER);
        if self.buckets.len() < MAX_REQUESTERS { from } else { OVERFLOW }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYMBOL: u16 = 1000;
    /// 1 MB/s of 1000-byte symbols: 1000 symbols a second; half is 500.
    const RATE: u64 = 1_000_000;

    #[test]
    fn the_margin_is_capped() {
        assert_eq!(with_margin(10, 0), 10);
        assert_eq!(with_margin(9, 6_554), 10, "10 % loss");
        assert_eq!(with_margin(10, u16::MAX), 20, "a claimed 100 % gets at most twice");
        assert_eq!(with_margin(1, 100), 1, "never less than asked");
    }

    #[test]
    fn a_requester_gets_its_share_of_the_rate_and_no_more() {
        let mut b = RepairBudget::new(0.5, 64);
        let t0 = Time::from_micros(1_000_000);
        assert_eq!(b.grant(t0, 7, 400, RATE, SYMBOL), 400, "a full bucket answers a burst");
        assert_eq!(b.grant(t0, 7, 400, RATE, SYMBOL), 100, "the rest of the second's 500");
        assert_eq!(b.grant(t0, 7, 400, RATE, SYMBOL), 0);
        // Ten seconds of asking for 1000 a second: about 500 a second granted.
        let mut got = 0;
        for ms in (100..=10_000).step_by(100) {
            got += b.grant(t0 + Duration::from_millis(ms), 7, 100, RATE, SYMBOL);
        }
        assert!((4_900..=5_000).contains(&got), "granted {got} in 10 s at 500/s");
        assert_eq!(b.limited(), 300 + 400 + (100 * 100 - u64::from(got)));
        // Another requester is untouched by 7's appetite.
        assert_eq!(b.grant(t0 + Duration::from_secs(10), 8, 400, RATE, SYMBOL), 400);
    }

    #[test]
    fn the_bucket_never_holds_less_than_the_floor() {
        // A slow link: 10 kB/s of 1000-byte symbols is 5 a second at half.
        let mut b = RepairBudget::new(0.5, 64);
        assert_eq!(b.grant(Time::ZERO, 1, 100, 10_000, SYMBOL), 64);
    }

    #[test]
    fn a_full_table_shares_one_bucket_among_newcomers() {
        let mut b = RepairBudget::new(0.5, 10);
        let now = Time::from_micros(1);
        for node in 0..MAX_REQUESTERS as u32 {
            b.grant(now, node, 1, RATE, SYMBOL);
        }
        let a = b.grant(now, 1 << 30, 400, RATE, SYMBOL);
        let c = b.grant(now, (1 << 30) + 1, 400, RATE, SYMBOL);
        assert_eq!(a + c, 500, "two newcomers share one bucket");
        // Once the old ones have gone quiet, a newcomer gets its own.
        let later = now + FORGET_AFTER + Duration::from_secs(1);
        assert_eq!(b.grant(later, (1 << 30) + 2, 400, RATE, SYMBOL), 400);
    }
}
