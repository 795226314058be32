//! The shared radio channel.
//!
//! Owns `Medium`: one transmission at a time (an 802.11-like shared medium),
//! each node's own queue of packets waiting for air time (byte-limited,
//! drop-tail), round-robin access between the nodes that have something to
//! send (DCF gives each station a fair turn: a receiver's NACK does not wait
//! behind the sender's whole queue), and the airtime of each packet at the
//! configured bandwidth. It decides *when* a packet is on the air; who hears
//! it is decided per receiver by the sim.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use lsim_transport::{Scope, Time};

/// A packet on (or waiting for) the medium.
#[derive(Clone, Debug)]
pub struct Frame {
    /// The sender's slot on this medium (its queue).
    pub from: usize,
    /// Datagram bytes.
    pub bytes: Rc<[u8]>,
    /// The node that sent it (`None`: the router's gateway, relaying a frame from a link).
    pub node: Option<usize>,
    /// How far it travels.
    pub scope: Scope,
    /// The region whose link it came in by, if it came over one.
    pub came_from: Option<usize>,
}

/// The channel's state and counters.
pub struct Medium {
    bandwidth_bps: u64,
    overhead: u64,
    queue_limit: u64,
    queues: Vec<(VecDeque<Frame>, u64)>,
    turn: usize,
    on_air: Option<Frame>,
    /// Datagram bytes that went on the air.
    pub bytes: u64,
    /// Packets that went on the air.
    pub packets: u64,
    /// Packets dropped because the queue was full.
    pub queue_drops: u64,
}

impl Medium {
    /// A medium shared by `nodes` nodes, of `bandwidth_bps` (0: unlimited),
    /// `overhead` bytes per packet besides the datagram, and a queue of
    /// `queue_limit` bytes per node.
    pub fn new(nodes: usize, bandwidth_bps: u64, overhead: u64, queue_limit: u64) -> Medium {
        Medium {
            bandwidth_bps,
            overhead,
            queue_limit,
            queues: vec![(VecDeque::new(), 0); nodes],
            turn: 0,
            on_air: None,
            bytes: 0,
            packets: 0,
            queue_drops: 0,
        }
    }

    fn airtime(&self, len: usize) -> Duration {
        if self.bandwidth_bps == 0 {
            return Duration::ZERO;
        }
        let bits = (len as u64 + self.overhead) * 8;
        Duration::from_nanos(bits * 1_000_000_000 / self.bandwidth_bps)
    }

    /// Offers a frame. If the channel was idle it goes on the air at once and
    /// the time it leaves the air is returned; the caller must then call
    /// `finish` at that time.
    pub fn offer(&mut self, now: Time, frame: Frame) -> Option<Time> {
        if self.on_air.is_none() {
            return Some(self.start(now, frame));
        }
        let len = frame.bytes.len() as u64;
        let Some((queue, bytes)) = self.queues.get_mut(frame.from) else {
            self.queue_drops += 1;
            return None;
        };
        if *bytes + len > self.queue_limit {
            self.queue_drops += 1;
            return None;
        }
        *bytes += len;
        queue.push_back(frame);
        None
    }

    fn start(&mut self, now: Time, frame: Frame) -> Time {
        let end = now + self.airtime(frame.bytes.len());
        self.bytes += frame.bytes.len() as u64;
        self.packets += 1;
        self.on_air = Some(frame);
        end
    }

    /// The frame on the air has left it; returns it, and when the next
    /// frame (the next node in turn that has one, now on the air) will leave.
    pub fn finish(&mut self, now: Time) -> (Option<Frame>, Option<Time>) {
        let done = self.on_air.take();
        let n = self.queues.len();
        let next = (1..=n).map(|i| (self.turn + i) % n).find(|&i| !self.queues[i].0.is_empty());
        let next = next.and_then(|i| {
            self.turn = i;
            let (queue, bytes) = &mut self.queues[i];
            let f = queue.pop_front()?;
            *bytes -= f.bytes.len() as u64;
            Some(self.start(now, f))
        });
        (done, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize) -> Frame {
        Frame { from: 0, bytes: vec![0u8; n].into(), node: Some(0), scope: Scope::Group, came_from: None }
    }

    #[test]
    fn nodes_take_turns() {
        let mut m = Medium::new(3, 8_000_000, 0, 100_000);
        m.offer(Time::ZERO, frame(1000));
        for _ in 0..3 {
            m.offer(Time::ZERO, frame(1000));
        }
        m.offer(Time::ZERO, Frame { from: 2, bytes: vec![1u8; 10].into(), ..frame(0) });
        let (_, t) = m.finish(Time::from_micros(1000));
        let (first, _) = m.finish(t.unwrap());
        assert_eq!(first.unwrap().from, 2, "the other node goes before the sender's backlog");
    }

    #[test]
    fn serialises_at_the_bandwidth() {
        let mut m = Medium::new(1, 8_000_000, 0, 10_000);
        let t0 = Time::ZERO;
        let end = m.offer(t0, frame(1000)).unwrap();
        assert_eq!(end, Time::from_micros(1000));
        assert!(m.offer(t0, frame(1000)).is_none());
        let (done, next) = m.finish(end);
        assert!(done.is_some());
        assert_eq!(next, Some(Time::from_micros(2000)));
    }

    #[test]
    fn full_queue_drops_tail() {
        let mut m = Medium::new(1, 1_000, 0, 2500);
        m.offer(Time::ZERO, frame(1000));
        m.offer(Time::ZERO, frame(1000));
        m.offer(Time::ZERO, frame(1000));
        assert!(m.offer(Time::ZERO, frame(1000)).is_none());
        assert_eq!(m.queue_drops, 1);
    }
}
