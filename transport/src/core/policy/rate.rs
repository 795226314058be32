//! Sending as fast as the path carries, from the delay the sender's own queue adds.
//!
//! Owns `RateControl`: a delay-based controller in the spirit of LEDBAT (RFC
//! 6817) and LEDBAT++ (draft-irtf-iccrg-ledbat-plus-plus), rate-based instead
//! of window-based. Each probe echo gives a round trip; the smallest round
//! trip seen lately is the path without queues, and the rest is queueing: at
//! the sender's radio (or token bucket) when the rate is above what the link
//! carries, or in a receiver's socket when it cannot keep up. Random loss on
//! the radio says nothing here: lost probes are merely samples not taken, so
//! the rate never falls for loss alone (the failing of loss-driven TFMCC on
//! wireless).
//!
//! - A receiver's delay is the smallest of its samples over the last
//!   `FILTER_SPAN` (at least `FILTER` samples); the slowest receiver's
//!   governs. On a loaded host the kernel or a process stalls for up to
//!   ~150 ms now and then: no echo for that long, then a burst of late ones.
//!   A queue delays every sample; a stall does not outlast the span.
//! - The base round trip is the minimum over `BASE_BUCKETS` one-second
//!   buckets (LEDBAT's base history): it follows a route change within
//!   seconds yet never mistakes a standing queue for the path.
//! - Slow start: from `START` (or `ceiling / 16` if lower) the rate grows by
//!   e every eight base round trips (50 to 100 ms, `SLOW_START_EFOLD`) until
//!   the first queue, then drops by a quarter (what it overshot while the
//!   queue took to show).
//! - Increase, while the filtered queue is under the target: additive,
//!   `INCREASE_PER_S` at an empty queue, in proportion to the room
//!   the *latest* samples leave (so a queue or a stall stops it at once),
//!   and back to the rate before the last decrease within about `RECOVER`
//!   (a decrease for a stall costs little).
//! - Decrease, while the filtered queue is over the target: by what drains
//!   the excess within `DRAIN`, at most `MAX_CUT` (10 %) the first time and
//!   doubling while the queue outlasts the cuts (up to half), once per round
//!   trip plus filter span, and not while the queue is already draining. A
//!   drained excess leaves the bottleneck a few packets, never idle.
//! - What the receivers report they get (`on_delivery`, bytes per second
//!   over windows of 50 ms or more) bounds a decrease: when a queue shows,
//!   the rate falls at once to what the slowest receiver gets, scaled up for
//!   its reported loss (at most `RADIO_LOSS`), if that is below the cut.
//!   Eight senders starting at once on one 11 Mbit/s cell each send eight
//!   times their share; cuts of 10 % that double took a second and a half
//!   and thousands of queue drops to get there, the delivered rate takes one.
//!   Loss alone still never cuts: a path that carries the rate delivers it
//!   less the loss, and the scale-up puts that back.
//! - Additive increase and multiplicative decrease on a delay that senders
//!   sharing a queue all see converge to equal shares, like TCP's AIMD.
//!
//! Pure arithmetic on samples; the sender owns the pacer and the probes.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::time::Time;

/// Queueing delay an adaptive sender aims for (`SenderConfig::queue_target`):
/// enough for receivers to read in batches, far below a NACK round.
pub const QUEUE_TARGET: Duration = Duration::from_millis(5);

/// Length of one bucket of the base-delay history.
const BASE_BUCKET: Duration = Duration::from_secs(1);

/// The most loss a delivered rate is scaled up for: radio loss above this is
/// rare, while a receiver behind an overflowing queue reports far more (its
/// gaps are the queue's drops), and its delivered rate must not be scaled
/// back up to the rate that overflowed it.
const RADIO_LOSS: f64 = 0.3;

/// The deepest single decrease to a delivered rate (to a quarter): one odd
/// report cannot stop a sender.
const DELIVERY_CUT: f64 = 0.25;

/// Buckets of base-delay history kept.
const BASE_BUCKETS: usize = 10;

/// Samples a receiver's delay is at least the smallest of.
const FILTER: usize = 3;

/// Span of samples a receiver's delay is the smallest of (when it holds more than `FILTER`).
const FILTER_SPAN: Duration = Duration::from_millis(150);

/// A receiver not heard from for this long no longer counts.
const FORGET: Duration = Duration::from_secs(1);

/// Time over which a decrease drains the queue above the target.
const DRAIN: Duration = Duration::from_millis(100);

/// The share of the queue at the last decrease that the queue must have
/// fallen under, a filter span later, to count as draining (and be spared
/// another cut). A stall's spike is gone by then; a standing queue is not.
const DRAINING: f64 = 0.5;

/// The largest first decrease: this host's scheduling stalls (up to ~150 ms
/// on a loaded machine) look like a queue, and a deep cut for each costs
/// more than the stall.
const MAX_CUT: f64 = 0.1;

/// The largest decrease of a queue that outlasted the ones before.
const MAX_CUTS: f64 = 0.5;

/// What the rate grows by per second at an empty queue, bytes per second
/// (10 Mbit/s; a sixteenth of the ceiling if that is less): the same for
/// every sender whatever its ceiling, so senders sharing a cell converge.
const INCREASE_PER_S: f64 = 1_250_000.0;

/// Where slow start begins, bytes per second (12 Mbit/s, or a sixteenth of
/// the ceiling if less): about an 802.11b/g radio's rate, so a sender on one
/// does not flood it for the first round trip, and a LAN is reached in
/// about `SLOW_START_EFOLD` × ln(ceiling / START) (0.22 s for 1 Gbit/s).
pub const START: f64 = 1_500_000.0;

/// The least rate an adaptive sender keeps, bytes per second (0.5 Mbit/s):
/// a queue slows a transfer, it never stops it.
pub const FLOOR: u64 = 62_500;

/// At the start the rate grows by e for each `SLOW_START_RTTS` base round
/// trips at an empty queue (within these bounds), until the first time the
/// queue passes the target (slow start): a LAN is reached in a quarter of a
/// second. Not faster: a bottleneck's queue can hide from the probes for up
/// to ~120 ms (measured behind an 11 Mbit/s token bucket), and with e every
/// 20 ms the rate grew eightyfold in that time; at 50 ms the overshoot stays
/// what the delivered rate and the cuts recover from. (Ending slow start on
/// a delivered rate that stopped growing was tried: reports from the first
/// windows lag the sender's own start-up, and it ended at 16 Mbit/s on a LAN.)
const SLOW_START_EFOLD: (Duration, Duration) = (Duration::from_millis(50), Duration::from_millis(100));
const SLOW_START_RTTS: u32 = 8;

/// What leaving slow start cuts the rate to: it overshoots by the time the queue shows.
const SLOW_START_EXIT: f64 = 0.75;

/// How fast the rate returns to where it was before a decrease once the queue has drained.
const RECOVER: Duration = Duration::from_millis(200);

/// The longest gap between samples the increase is credited for.
const MAX_STEP: Duration = Duration::from_millis(100);

/// A delay-based rate controller.
#[derive(Clone, Debug)]
pub struct RateControl {
    recent: HashMap<u32, VecDeque<(Time, Duration)>>,
    /// Each receiver's last delivered rate (scaled for its loss) and when it came.
    delivered: HashMap<u32, (Time, f64)>,
    last_heard: HashMap<u32, Time>,
    ceiling: f64,
    floor: f64,
    rate: f64,
    target: Duration,
    /// (start of bucket, smallest round trip in it), oldest first.
    base: VecDeque<(Time, Duration)>,
    last_update: Option<Time>,
    next_decrease: Time,
    /// The queue at the last decrease, seconds (0 once it fell under the target).
    cut_at_queue: f64,
    /// Decreases since the queue was last under the target.
    cuts_in_row: u32,
    /// The rate before the last decrease: the increase returns to it quickly.
    before_cut: f64,
    slow_start: bool,
}

impl RateControl {
    /// A controller between `floor` and `ceiling` bytes per second, keeping
    /// queueing delay near `target`. It starts at a sixteenth of the ceiling
    /// (at least the floor) and slow-starts from there: a start at the
    /// ceiling fills the queues for a whole round trip before the first echo
    /// can tell, and a ceiling is often far above the link.
    pub fn new(ceiling: u64, floor: u64, target: Duration) -> RateControl {
        let ceiling = ceiling.max(1) as f64;
        RateControl {
            recent: HashMap::new(),
            delivered: HashMap::new(),
            last_heard: HashMap::new(),
            ceiling,
            floor: (floor as f64).min(ceiling),
            rate: (ceiling / 16.0).min(START).max(floor as f64).min(ceiling),
            target,
            base: VecDeque::new(),
            last_update: None,
            next_decrease: Time::ZERO,
            cut_at_queue: 0.0,
            cuts_in_row: 0,
            before_cut: 0.0,
            slow_start: true,
        }
    }

    /// The rate now, bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate as u64
    }

    /// The smallest round trip of the base history.
    fn base(&self) -> Option<Duration> {
        self.base.iter().map(|&(_, d)| d).min()
    }

    /// The queueing delay `rtt` shows over the smallest round trip seen.
    pub fn queueing(&self, rtt: Duration) -> Duration {
        self.base().map_or(Duration::ZERO, |b| rtt.saturating_sub(b))
    }

    fn note_base(&mut self, now: Time, rtt: Duration) {
        match self.base.back_mut() {
            Some((start, min)) if now.saturating_since(*start) < BASE_BUCKET => *min = (*min).min(rtt),
            _ => {
                self.base.push_back((now, rtt));
                if self.base.len() > BASE_BUCKETS {
                    self.base.pop_front();
                }
            }
        }
    }

    /// Records `rtt` from receiver `from`, keeps its filter's span, and forgets receivers gone quiet.
    fn note_sample(&mut self, now: Time, from: u32, rtt: Duration) {
        let samples = self.recent.entry(from).or_default();
        samples.push_back((now, rtt));
        while samples.len() > FILTER && samples.front().is_some_and(|&(t, _)| now.saturating_since(t) > FILTER_SPAN) {
            samples.pop_front();
        }
        self.last_heard.insert(from, now);
        let gone: Vec<u32> =
            self.last_heard.iter().filter(|&(_, &t)| now.saturating_since(t) >= FORGET).map(|(&r, _)| r).collect();
        for r in gone {
            self.last_heard.remove(&r);
            self.recent.remove(&r);
        }
    }

    /// The slowest receiver's filtered round trip.
    fn current(&self) -> Option<Duration> {
        self.recent.values().filter_map(|s| s.iter().map(|&(_, d)| d).min()).max()
    }

    /// The slowest receiver's round trip over only its last `FILTER` samples.
    fn latest(&self) -> Option<Duration> {
        self.recent.values().filter_map(|s| s.iter().rev().take(FILTER).map(|&(_, d)| d).min()).max()
    }

    /// Receiver `from` got `received` bytes per second from this sender
    /// lately, losing `loss` (0 to 1) of what was sent.
    pub fn on_delivery(&mut self, now: Time, from: u32, received: u32, loss: f64) {
        if self.delivered.len() >= 4096 && !self.delivered.contains_key(&from) {
            self.delivered.retain(|_, (t, _)| now.saturating_since(*t) < FORGET);
        }
        if self.delivered.len() < 4096 || self.delivered.contains_key(&from) {
            let scaled = f64::from(received) / (1.0 - loss.clamp(0.0, RADIO_LOSS));
            self.delivered.insert(from, (now, scaled));
        }
    }

    /// The least rate a receiver heard from within `FORGET` reports it gets (scaled).
    fn slowest_delivery(&self, now: Time) -> Option<f64> {
        self.delivered.values().filter(|(t, _)| now.saturating_since(*t) < FORGET).map(|&(_, r)| r).reduce(f64::min)
    }

    /// `rate`, or the slowest delivery if that is less (not under `DELIVERY_CUT` of the rate now).
    fn within_delivery(&self, now: Time, rate: f64) -> f64 {
        match self.slowest_delivery(now) {
            Some(d) if d < rate => d.max(self.rate * DELIVERY_CUT),
            _ => rate,
        }
    }

    /// One round-trip sample from receiver `from` at `now`; returns the new rate if it changed.
    pub fn on_rtt(&mut self, now: Time, from: u32, rtt: Duration) -> Option<u64> {
        self.note_base(now, rtt);
        self.note_sample(now, from, rtt);
        let current = self.current().unwrap_or(rtt);
        // The queue that lasted the filter's span decides a decrease; the
        // latest samples stop an increase at once, stall or queue.
        let queue = self.queueing(current).as_secs_f64();
        let fresh = self.queueing(self.latest().unwrap_or(rtt)).as_secs_f64();
        let target = self.target.as_secs_f64().max(1e-6);
        let step = self.last_update.map_or(Duration::ZERO, |t| now.saturating_since(t).min(MAX_STEP));
        self.last_update = Some(now);
        let before = self.rate;
        if self.slow_start && (queue > target || fresh > 2.0 * target) {
            self.slow_start = false;
            self.rate = self.within_delivery(now, self.rate * SLOW_START_EXIT);
            self.next_decrease = now + current + FILTER_SPAN;
        } else if queue > target {
            // A queue already draining needs no further cut: only one that holds does.
            if now >= self.next_decrease && queue > self.cut_at_queue * DRAINING {
                // A stall of the host passes after one small cut; a queue that outlasts cuts doubles them.
                let most = (MAX_CUT * f64::from(1u32 << self.cuts_in_row.min(8))).min(MAX_CUTS);
                let cut = ((queue - target) / DRAIN.as_secs_f64()).min(most);
                if self.cut_at_queue == 0.0 {
                    self.before_cut = self.rate;
                }
                self.cuts_in_row += 1;
                self.rate = self.within_delivery(now, self.rate * (1.0 - cut));
                self.cut_at_queue = queue;
                // The queue needs a round trip to show the change, the filter its span to see it.
                self.next_decrease = now + current + FILTER_SPAN;
            }
        } else {
            self.cut_at_queue = 0.0;
            self.cuts_in_row = 0;
            // +1 with an empty queue, 0 at the target.
            let room = ((target - fresh) / target).max(0.0);
            if self.slow_start {
                let (least, most) = SLOW_START_EFOLD;
                let efold = self.base().map_or(most, |b| (b * SLOW_START_RTTS).clamp(least, most));
                self.rate *= 1.0 + room * step.as_secs_f64() / efold.as_secs_f64();
            } else {
                // Back to the rate before the last decrease within about `RECOVER`, then additively on.
                let back = (self.before_cut - self.rate).max(0.0) / RECOVER.as_secs_f64();
                let increase = INCREASE_PER_S.min(self.ceiling / 16.0);
                self.rate += increase.max(back) * room * step.as_secs_f64();
            }
        }
        self.rate = self.rate.clamp(self.floor, self.ceiling);
        (self.rate != before).then_some(self.rate as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(m: u64) -> Duration {
        Duration::from_millis(m)
    }

    fn at(us: u64) -> Time {
        Time::ZERO + Duration::from_micros(us)
    }

    /// Milliseconds of empty-queue echoes, one per `every` ms at round trip
    /// `rtt` µs, until the rate reaches `ceiling`.
    fn slow_start_ms(ceiling: u64, rtt: u64, every: u64) -> u64 {
        let mut c = RateControl::new(ceiling, FLOOR, QUEUE_TARGET);
        let rtt = Duration::from_micros(rtt);
        (1..).map(|i| i * every).find(|&m| c.on_rtt(at(m * 1000), 1, rtt) == Some(ceiling)).unwrap_or(0)
    }

    #[test]
    fn slow_start_takes_round_trips_within_bounds() {
        // A LAN (round trip 0.3 ms, echoes every 5 ms): 12 Mbit/s to 1 Gbit/s in about 0.22 s.
        let lan = slow_start_ms(125_000_000, 300, 5);
        assert!((170..=280).contains(&lan), "LAN: {lan} ms");
        // A radio cell (20 ms round trips): e every 100 ms, about 0.45 s.
        let radio = slow_start_ms(125_000_000, 20_000, 20);
        assert!((380..=560).contains(&radio), "radio: {radio} ms");
    }

    #[test]
    fn falls_when_a_queue_builds_and_recovers_when_it_drains() {
        let mut c = RateControl::new(100_000_000, 1_000_000, ms(2));
        let t = |m: u64| Time::ZERO + ms(m);
        assert_eq!(c.rate(), START as u64, "starts at about a radio's rate");
        for i in 0..2000 {
            c.on_rtt(t(10 * i), 1, ms(1));
        }
        assert_eq!(c.rate(), 100_000_000, "grows to the ceiling while no queue builds");
        // A late echo or two is not a queue.
        assert_eq!(c.on_rtt(t(20_001), 1, ms(30)), None);
        assert_eq!(c.on_rtt(t(20_002), 1, ms(30)), None);
        // A queue that lasts is: the first sign of it ends slow start.
        let mut rates = Vec::new();
        for i in 0..100 {
            rates.extend(c.on_rtt(t(20_010 + 10 * i), 1, ms(13)));
        }
        assert_eq!(rates[0], 75_000_000, "leaving slow start: {rates:?}");
        // Then, a round trip and a filter span apart while the queue stays, cuts
        // that drain its excess within `DRAIN`: 10 ms over the target, 10 %.
        assert_eq!(rates[1], 67_500_000);
        assert_eq!(rates[2], 60_750_000);
        assert!(rates.windows(2).all(|w| w[1] < w[0]), "only cuts while the queue stays: {rates:?}");
        let low = c.rate();
        // Drained: back to the rate before the cuts within a few hundred milliseconds.
        for i in 0..60 {
            c.on_rtt(t(21_010 + 10 * i), 1, ms(1));
        }
        assert!(c.rate() > 70_000_000 && c.rate() > low, "recovered only to {}", c.rate());
        assert!(c.rate() <= 100_000_000);
    }

    #[test]
    fn a_stall_costs_one_small_cut() {
        let mut c = RateControl::new(100_000_000, 1_000_000, ms(5));
        let t = |m: u64| Time::ZERO + ms(m);
        // Leave slow start with a short queue, then settle with none.
        c.on_rtt(t(0), 1, ms(1));
        c.on_rtt(t(5), 1, ms(20));
        c.on_rtt(t(10), 1, ms(20));
        c.on_rtt(t(15), 1, ms(20));
        for i in 0..400 {
            c.on_rtt(t(200 + 5 * i), 1, ms(1));
        }
        let before = c.rate();
        // The host stalls 120 ms: no echoes, then a burst of late ones processed at once, then normal again.
        let mut low = before;
        for k in 0..24 {
            c.on_rtt(t(2320), 1, ms(120 - 5 * k));
            low = low.min(c.rate());
        }
        for i in 0..200 {
            c.on_rtt(t(2325 + 5 * i), 1, ms(1));
            low = low.min(c.rate());
        }
        assert!(low as f64 >= 0.9 * before as f64 - 1.0, "fell from {before} to {low}");
        assert!(c.rate() >= before, "back to {before} a second later: {}", c.rate());
    }

    #[test]
    fn the_slowest_receiver_governs() {
        let mut c = RateControl::new(100_000_000, 1_000_000, ms(2));
        let t = |m: u64| Time::ZERO + ms(m);
        let mut cut = false;
        for i in 0..10 {
            c.on_rtt(t(2 * i), 1, ms(1));
            cut |= c.on_rtt(t(2 * i + 1), 2, ms(20)).is_some_and(|r| r < 25_000_000);
        }
        assert!(cut && c.rate() < 25_000_000);
    }

    #[test]
    fn never_below_the_floor() {
        let mut c = RateControl::new(10_000_000, 2_000_000, ms(2));
        for i in 0..100 {
            c.on_rtt(Time::ZERO + ms(10 * i), 1, if i == 0 { ms(1) } else { ms(50) });
        }
        assert_eq!(c.rate(), 2_000_000);
    }

    /// A bottleneck of `capacity` bytes/s with a FIFO queue the senders share
    /// (drop-tail at 100 ms, like the testbed's token bucket); each probes
    /// every 5 ms and sees the queue its probe waited behind.
    /// `lose(i)` drops sender i's i-th echo. Returns the rates every 10 ms.
    fn run_shared(
        senders: &mut [RateControl],
        capacity: f64,
        base: Duration,
        until: Duration,
        lose: &mut dyn FnMut(u64) -> bool,
    ) -> Vec<Vec<f64>> {
        let step_us = 1000;
        let mut backlog = 0.0f64; // bytes
        let mut trace = Vec::new();
        let mut n = 0u64;
        for k in 0..until.as_micros() as u64 / step_us {
            let now = at(k * step_us);
            let offered: f64 = senders.iter().map(|s| s.rate() as f64).sum::<f64>() * step_us as f64 / 1e6;
            backlog = (backlog + offered - capacity * step_us as f64 / 1e6).clamp(0.0, capacity * 0.1);
            if k % 5 == 0 {
                let rtt = base + Duration::from_secs_f64(backlog / capacity);
                for (i, s) in senders.iter_mut().enumerate() {
                    n += 1;
                    if !lose(n) {
                        s.on_rtt(now + rtt, i as u32, rtt);
                    }
                }
            }
            if k % 10 == 0 {
                trace.push(senders.iter().map(|s| s.rate() as f64).collect());
            }
        }
        trace
    }

    #[test]
    fn holds_the_link_rate_with_a_steady_queue() {
        let capacity = 11e6 / 8.0;
        let mut s = [RateControl::new(100_000_000 / 8, 100_000_000 / 8 / 32, ms(5))];
        let trace = run_shared(&mut s, capacity, ms(2), Duration::from_secs(10), &mut |_| false);
        // The last 5 s: the rate stays near the link's, neither collapsing nor running away.
        let tail: Vec<f64> = trace[500..].iter().map(|r| r[0]).collect();
        let mean = tail.iter().sum::<f64>() / tail.len() as f64;
        let (lo, hi) = tail.iter().fold((f64::MAX, 0.0f64), |(l, h), &r| (l.min(r), h.max(r)));
        assert!((0.97..=1.03).contains(&(mean / capacity)), "mean {mean} of {capacity}");
        assert!(lo > 0.85 * capacity && hi < 1.15 * capacity, "swings {lo}..{hi} around {capacity}");
    }

    #[test]
    fn random_loss_without_delay_does_not_cut_the_rate() {
        let mut a = RateControl::new(100_000_000, 1_000_000, ms(5));
        let mut b = a.clone();
        let mut rng = crate::rng::Rng::new(7);
        let mut prev = b.rate();
        for i in 0..4000 {
            let now = Time::ZERO + ms(5 * i);
            let rtt = ms(3) + Duration::from_micros(i % 7 * 100);
            a.on_rtt(now, 1, rtt);
            // b loses a fifth of its echoes (and the data they followed): nothing else changes.
            if !rng.chance(0.2) {
                b.on_rtt(now, 1, rtt);
            }
            assert!(b.rate() >= prev, "fell from {prev} to {} at sample {i}", b.rate());
            prev = b.rate();
        }
        assert_eq!(a.rate(), 100_000_000);
        assert_eq!(b.rate(), 100_000_000, "loss alone never cut the rate");
    }

    #[test]
    fn two_senders_on_a_shared_queue_converge() {
        let capacity = 11e6 / 8.0;
        let ceiling = 100_000_000 / 8;
        let mut s = [RateControl::new(ceiling, ceiling / 32, ms(5)), RateControl::new(ceiling, ceiling / 32, ms(5))];
        // Start far apart: one at its floor, one at the ceiling.
        s[0].rate = s[0].floor;
        s[1].rate = s[1].ceiling;
        let mut rng = crate::rng::Rng::new(3);
        let trace = run_shared(&mut s, capacity, ms(2), Duration::from_secs(20), &mut |_| rng.chance(0.05));
        let tail = &trace[1000..];
        let mean = |i: usize| tail.iter().map(|r| r[i]).sum::<f64>() / tail.len() as f64;
        let (a, b) = (mean(0), mean(1));
        assert!(a.max(b) / a.min(b) < 1.2, "shares {a} and {b}");
        assert!((a + b) / capacity > 0.95, "together {} of {capacity}", a + b);
    }
}
