//! Virtual time: the simulator's agenda of future events.
//!
//! Owns `Agenda`, a priority queue ordered by (time, insertion order), so two
//! events at the same instant always run in the order they were scheduled and
//! a seed reproduces a run exactly. It knows nothing of what events mean.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use lsim_transport::Time;

struct Entry<E> {
    at: Time,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Entry<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap, the agenda pops the earliest.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Future events in time order.
pub struct Agenda<E> {
    heap: BinaryHeap<Entry<E>>,
    seq: u64,
}

impl<E> Default for Agenda<E> {
    fn default() -> Self {
        Agenda { heap: BinaryHeap::new(), seq: 0 }
    }
}

impl<E> Agenda<E> {
    /// Schedules `event` at `at`.
    pub fn at(&mut self, at: Time, event: E) {
        self.seq += 1;
        self.heap.push(Entry { at, seq: self.seq, event });
    }
    /// The earliest event.
    pub fn pop(&mut self) -> Option<(Time, E)> {
        self.heap.pop().map(|e| (e.at, e.event))
    }
    /// Events scheduled so far.
    pub fn scheduled(&self) -> u64 {
        self.seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_then_insertion_order() {
        let mut a = Agenda::default();
        a.at(Time::from_micros(5), "late");
        a.at(Time::from_micros(1), "first");
        a.at(Time::from_micros(1), "second");
        let order: Vec<_> = std::iter::from_fn(|| a.pop().map(|(_, e)| e)).collect();
        assert_eq!(order, ["first", "second", "late"]);
    }
}
