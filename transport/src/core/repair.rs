//! Planning repair: how many fresh symbols a NACK gets, and in what order they go.
//!
//! Owns `RepairPlan`, the one planner the sender and every repairer use. A
//! NACK for a block opens a *round* of `needed` symbols (scaled for the
//! requester's own loss, `budget::with_margin`, and granted by its budget);
//! NACKs that arrive while the round's symbols go out, or within a GRTT
//! after (they were in flight), top it up to the largest count asked, never
//! add to it: every count is relative to what the receiver held before the
//! round reached it. Then the round closes and the next NACK opens a new
//! one. Each block's repair indices are handed out once, so every answer is
//! fresh symbols. It knows nothing of blocks' bytes (`block_cache`), framing
//! or the clock: time is an argument.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use crate::budget::{self, RepairBudget};
use crate::time::Time;
use crate::wire;

/// A NACK's count that no receiver can mean: nothing, or more than the
/// block's K plus a few for failed decodes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a NACK asks {needed} repair symbols of block {block}, which has K = {k}")]
pub struct BadCount {
    /// The block asked for.
    pub block: u32,
    /// The count asked.
    pub needed: u32,
    /// The block's source symbols.
    pub k: u32,
}

/// One NACK of one block.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ask {
    /// The requester, charged to its budget; `None`: charged to no one (a
    /// repairer answering several members that waited for the block).
    pub from: Option<u32>,
    /// The loss the requester reports, in 1/65535ths.
    pub loss: u16,
    /// The block's number in its object.
    pub block: u32,
    /// Symbols it still needs to decode.
    pub needed: u32,
}

/// What a NACK led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Planned {
    /// Nothing more: the round under way covers it, or the budget is spent.
    Nothing,
    /// A new round of this many symbols.
    Round(u32),
    /// This many more symbols for the round under way.
    TopUp(u32),
}

struct Round {
    planned: u32,
    /// `None` while its symbols are still being sent.
    closes: Option<Time>,
}

/// Rounds, the queue of symbols to send, and each block's next repair index
/// (see the module doc). `K` names a block: (object, block) at a sender,
/// (origin, object, block) at a repairer.
pub(super) struct RepairPlan<K> {
    rounds: HashMap<K, Round>,
    jobs: VecDeque<(K, u32)>,
    next_index: HashMap<K, u32>,
    budget: RepairBudget,
    loss_margin: bool,
}

impl<K: Copy + Eq + Hash> RepairPlan<K> {
    /// A planner granting from `budget`; with `loss_margin`, answers are
    /// scaled for the requester's loss.
    pub(super) fn new(budget: RepairBudget, loss_margin: bool) -> RepairPlan<K> {
        RepairPlan { rounds: HashMap::new(), jobs: VecDeque::new(), next_index: HashMap::new(), budget, loss_margin }
    }

    /// Plans the answer to `ask` for block `key` of `k` source symbols, at a
    /// sending rate of `rate` bytes per second (0: unpaced) of
    /// `symbol`-byte symbols (what the budget fills at).
    pub(super) fn request(
        &mut self,
        now: Time,
        key: K,
        ask: Ask,
        k: u32,
        rate: u64,
        symbol: u16,
    ) -> Result<Planned, BadCount> {
        if ask.needed == 0 || ask.needed > k + 8 {
            return Err(BadCount { block: ask.block, needed: ask.needed, k });
        }
        let want = if self.loss_margin { budget::with_margin(ask.needed, ask.loss) } else { ask.needed };
        let budget = &mut self.budget;
        let mut grant = |n: u32| ask.from.map_or(n, |f| budget.grant(now, f, n, rate, symbol));
        match self.rounds.get_mut(&key) {
            Some(round) if round.closes.is_none_or(|t| now < t) => {
                let extra = if want > round.planned { grant(want - round.planned) } else { 0 };
                if extra == 0 {
                    return Ok(Planned::Nothing);
                }
                round.planned += extra;
                round.closes = None;
                self.add(key, extra);
                Ok(Planned::TopUp(extra))
            }
            _ => {
                let granted = grant(want);
                if granted == 0 {
                    return Ok(Planned::Nothing);
                }
                self.rounds.insert(key, Round { planned: granted, closes: None });
                self.add(key, granted);
                Ok(Planned::Round(granted))
            }
        }
    }

    /// Queues `count` symbols of `key` outside any round (proactive repair).
    pub(super) fn add(&mut self, key: K, count: u32) {
        if let Some(job) = self.jobs.iter_mut().find(|(k, _)| *k == key) {
            job.1 += count;
        } else {
            self.jobs.push_back((key, count));
        }
    }

    /// Moves `key`'s queued symbols ahead of every other block's (a chat
    /// message is not to wait behind a file's repair).
    pub(super) fn hurry(&mut self, key: K) {
        if let Some(i) = self.jobs.iter().position(|(k, _)| *k == key)
            && i > 0
            && let Some(job) = self.jobs.remove(i)
        {
            self.jobs.push_front(job);
        }
    }

    /// The block whose symbol goes next.
    pub(super) fn front(&self) -> Option<K> {
        self.jobs.front().map(|&(k, _)| k)
    }

    /// True while symbols wait to be sent.
    pub(super) fn has_jobs(&self) -> bool {
        !self.jobs.is_empty()
    }

    /// The next fresh repair index of `key` in the range `first..first + range`
    /// (and below the wire's limit); `None` once the range is used up.
    pub(super) fn next_index(&mut self, key: K, first: u32, range: u32) -> Option<u32> {
        let next = self.next_index.entry(key).or_insert(0);
        let index = first.checked_add(*next)?;
        if *next >= range || index >= wire::MAX_REPAIR_SYMBOLS {
            return None;
        }
        *next += 1;
        Some(index)
    }

    /// One symbol of the front block went out at `now`. When its queue is
    /// empty its round takes top-ups for `linger` more (NACKs in flight).
    pub(super) fn sent(&mut self, now: Time, linger: Duration) {
        let Some(job) = self.jobs.front_mut() else { return };
        job.1 = job.1.saturating_sub(1);
        if job.1 > 0 {
            return;
        }
        let key = job.0;
        self.jobs.pop_front();
        self.rounds.retain(|_, r| r.closes.is_none_or(|t| t > now));
        if let Some(r) = self.rounds.get_mut(&key) {
            r.closes = Some(now + linger);
        }
    }

    /// The front block cannot be served (its bytes are gone, its range used up).
    pub(super) fn skip_front(&mut self) {
        self.jobs.pop_front();
    }

    /// Forgets every block `gone` names: rounds, queued symbols and indices.
    pub(super) fn forget(&mut self, gone: impl Fn(&K) -> bool) {
        self.rounds.retain(|k, _| !gone(k));
        self.jobs.retain(|(k, _)| !gone(k));
        self.next_index.retain(|k, _| !gone(k));
    }

    /// Symbols asked beyond a budget, and not sent, so far.
    pub(super) fn refused(&self) -> u64 {
        self.budget.limited()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn plan() -> RepairPlan<u32> {
        RepairPlan::new(RepairBudget::new(0.5, 1_000), false)
    }

    fn ask(from: u32, needed: u32) -> Ask {
        Ask { from: Some(from), loss: 0, block: 0, needed }
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_round_is_topped_up_to_the_largest_count_never_added_to() {
        let mut p = plan();
        let t = Time::ZERO;
        assert_eq!(p.request(t, 7, ask(1, 5), 64, 0, 1000), Ok(Planned::Round(5)));
        assert_eq!(p.request(t, 7, ask(2, 3), 64, 0, 1000), Ok(Planned::Nothing), "covered");
        assert_eq!(p.request(t, 7, ask(3, 8), 64, 0, 1000), Ok(Planned::TopUp(3)), "to the largest");
        for _ in 0..8 {
            assert_eq!(p.front(), Some(7));
            p.sent(t, 10 * MS);
        }
        assert!(!p.has_jobs());
        // In flight when the round ended: still covered; after the linger, a new round.
        assert_eq!(p.request(t + 5 * MS, 7, ask(4, 8), 64, 0, 1000), Ok(Planned::Nothing));
        assert_eq!(p.request(t + 11 * MS, 7, ask(4, 2), 64, 0, 1000), Ok(Planned::Round(2)));
    }

    #[test]
    fn a_hurried_block_goes_first() {
        let mut p = plan();
        let t = Time::ZERO;
        for key in [1, 2, 3] {
            p.request(t, key, ask(key, 4), 64, 0, 1000).unwrap();
        }
        p.hurry(3);
        assert_eq!(p.front(), Some(3));
        for _ in 0..4 {
            p.sent(t, MS);
        }
        assert_eq!(p.front(), Some(1), "then the others, in their order");
        p.hurry(9);
        assert_eq!(p.front(), Some(1), "a block with nothing queued changes nothing");
    }

    #[test]
    fn impossible_counts_name_block_count_and_k() {
        let mut p = plan();
        let e =
            p.request(Time::ZERO, 1, Ask { from: Some(1), loss: 0, block: 3, needed: 73 }, 64, 0, 1000).unwrap_err();
        assert_eq!(e, BadCount { block: 3, needed: 73, k: 64 });
        assert_eq!(e.to_string(), "a NACK asks 73 repair symbols of block 3, which has K = 64");
        assert!(p.request(Time::ZERO, 1, ask(1, 0), 64, 0, 1000).is_err());
        assert!(!p.has_jobs());
    }

    #[test]
    fn each_requester_is_held_to_its_budget_and_margins_are_its_own() {
        let mut p = RepairPlan::new(RepairBudget::new(0.5, 10), true);
        // Unpaced: half of 1 Gbit/s of 1000-byte symbols fills fast; the floor is what a bucket holds at first.
        let planned = p.request(Time::ZERO, 1, Ask { from: Some(9), loss: 32_768, block: 0, needed: 8 }, 64, 0, 1000);
        assert_eq!(planned, Ok(Planned::Round(16)), "8 at 50 % loss: twice");
        let mut tight = RepairPlan::new(RepairBudget::new(0.5, 10), false);
        assert_eq!(tight.request(Time::ZERO, 1, ask(9, 40), 64, 1_000, 1000), Ok(Planned::Round(10)), "the floor");
        assert_eq!(tight.request(Time::ZERO, 2, ask(9, 40), 64, 1_000, 1000), Ok(Planned::Nothing), "spent");
        assert_eq!(tight.request(Time::ZERO, 2, ask(8, 40), 64, 1_000, 1000), Ok(Planned::Round(10)), "another's");
        assert!(tight.refused() >= 70);
        let free = Ask { from: None, ..ask(0, 40) };
        assert_eq!(tight.request(Time::ZERO, 3, free, 64, 1_000, 1000), Ok(Planned::Round(40)), "charged to none");
    }

    #[test]
    fn indices_are_fresh_and_bounded_by_the_range() {
        let mut p = plan();
        assert_eq!((0..3).map(|_| p.next_index(1, 100, 3)).collect::<Vec<_>>(), vec![Some(100), Some(101), Some(102)]);
        assert_eq!(p.next_index(1, 100, 3), None, "range used up");
        assert_eq!(p.next_index(2, 0, 10), Some(0), "per block");
        assert_eq!(p.next_index(3, wire::MAX_REPAIR_SYMBOLS, 10), None, "past the wire's limit");
        p.forget(|k| *k == 1);
        assert_eq!(p.next_index(1, 100, 3), Some(100), "forgotten blocks start again");
    }
}
