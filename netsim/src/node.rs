//! A simulated host: one transport core, its radio's loss process, and (for
//! receivers) the check of everything it delivers.
//!
//! Owns `Node` and `Verifier`. It feeds the core the datagrams and timeouts
//! the sim hands it and checks every delivered byte against the workload's
//! SHA-256; it does not decide when anything happens.

use std::collections::HashMap;

use lsim_transport::rng::Rng;
use lsim_transport::stats::Stats;
use lsim_transport::{Receiver, ReceiverEvent, Repairer, Sender, Time, Transmit};
use sha2::{Digest, Sha256};

use crate::loss::Loss;
use crate::seal::TestSeal;
use crate::workload::Expected;

/// The part a node plays, with the transport core it runs.
pub enum Role {
    /// The source of the workload.
    Sender(Box<Sender<TestSeal>>),
    /// A group member receiving it.
    Receiver(Box<Receiver<TestSeal>>, Verifier),
    /// A region's repairer: a member that also answers its region's NACKs.
    Repairer(Box<Repairer<TestSeal>>, Verifier),
    /// An outsider without the key: it keeps the last packet it overheard
    /// (to forge from and to replay) and the first (to replay long after),
    /// and sends forgeries and replays.
    Outsider(Option<Vec<u8>>, Option<Vec<u8>>),
}

/// A host on the simulated medium.
pub struct Node {
    /// Node id on the wire.
    pub id: u32,
    /// What it runs.
    pub core: Role,
    /// Its radio's loss process.
    pub loss: Loss,
    /// Its own random stream (loss, jitter).
    pub rng: Rng,
    /// The wake-up time currently scheduled for it.
    pub wake: Option<Time>,
    /// Counted as finished (a receiver that verified everything).
    pub finished: bool,
    /// The cell it sits in (0: the senders' cell, r + 1: region r).
    pub cell: usize,
    /// Switched on (it hears, sends and has timers); off before a join.
    pub on: bool,
    /// Gone for good (left or crashed).
    pub gone: bool,
    /// Out of range for now: hears and sends nothing, its timers run.
    pub away: bool,
    /// A group member (a receiver, or a member holding what it received),
    /// not a sender, a region's repairer or an outsider.
    pub member: bool,
    /// Senders' packets that reached its radio, and those its loss process took.
    pub heard: u64,
    /// (see `heard`)
    pub lost_on_air: u64,
}

impl Node {
    /// Hands the core a datagram.
    pub fn datagram(&mut self, now: Time, bytes: &[u8]) {
        match &mut self.core {
            Role::Sender(s) => s.handle_datagram(now, bytes),
            Role::Receiver(r, _) => r.handle_datagram(now, bytes),
            Role::Repairer(r, _) => r.handle_datagram(now, bytes),
            Role::Outsider(last, first) => {
                *last = Some(bytes.to_vec());
                if first.is_none() {
                    *first = Some(bytes.to_vec());
                }
            }
        }
    }

    /// Tells the core its timer fired.
    pub fn timeout(&mut self, now: Time) {
        match &mut self.core {
            Role::Sender(s) => s.handle_timeout(now),
            Role::Receiver(r, _) => r.handle_timeout(now),
            Role::Repairer(r, _) => r.handle_timeout(now),
            Role::Outsider(..) => {}
        }
    }

    /// The core's next packet.
    pub fn transmit(&mut self, now: Time, buf: &mut Vec<u8>) -> Option<Transmit> {
        match &mut self.core {
            Role::Sender(s) => s.poll_transmit(now, buf),
            Role::Receiver(r, _) => r.poll_transmit(now, buf),
            Role::Repairer(r, _) => r.poll_transmit(now, buf),
            Role::Outsider(..) => None,
        }
    }

    /// The core's next deadline.
    pub fn next_timeout(&self) -> Option<Time> {
        match &self.core {
            Role::Sender(s) => s.poll_timeout(),
            Role::Receiver(r, _) => r.poll_timeout(),
            Role::Repairer(r, _) => r.poll_timeout(),
            Role::Outsider(..) => None,
        }
    }

    /// Drains the core's events (receivers verify what they deliver); returns
    /// how many events there were, for the trace.
    pub fn drain_events(&mut self, now: Time) -> u64 {
        let mut n = 0;
        match &mut self.core {
            Role::Sender(s) => {
                while s.poll_event().is_some() {
                    n += 1;
                }
            }
            Role::Receiver(r, v) => {
                while let Some(e) = r.poll_event() {
                    n += 1;
                    v.on_event(now, e);
                }
            }
            Role::Repairer(r, v) => {
                while let Some(e) = r.poll_event() {
                    n += 1;
                    v.on_event(now, e);
                }
            }
            Role::Outsider(..) => {}
        }
        n
    }

    /// The core's counters.
    pub fn stats(&self) -> Option<&Stats> {
        match &self.core {
            Role::Sender(s) => Some(s.stats()),
            Role::Receiver(r, _) => Some(r.stats()),
            Role::Repairer(r, _) => Some(r.stats()),
            Role::Outsider(..) => None,
        }
    }

    /// What it verified, if it is a member.
    pub fn verifier(&self) -> Option<&Verifier> {
        match &self.core {
            Role::Receiver(_, v) | Role::Repairer(_, v) => Some(v),
            _ => None,
        }
    }
}

struct Partial {
    kind: lsim_transport::wire::ObjectKind,
    len: u64,
    hasher: Sha256,
    next_offset: u64,
}

/// Checks a member's deliveries against every sender's expected objects,
/// by content: an object counts once it arrived whole and its SHA-256 is
/// one of its sender's objects not yet verified.
pub struct Verifier {
    expected: HashMap<u32, Vec<(Expected, bool)>>,
    total: u32,
    partial: HashMap<(u32, u32), Partial>,
    /// Objects delivered whole with the right SHA-256.
    pub verified: u32,
    /// Object bytes verified.
    pub verified_bytes: u64,
    /// Objects delivered with wrong bytes, out of order, or unknown.
    pub corrupt: u32,
    /// Objects reported lost by the core.
    pub lost: u32,
    /// Time the last expected object was verified.
    pub completed_at: Option<Time>,
    /// When each expected object was verified: (sender node, index in its workload, time).
    pub verified_at: Vec<(u32, usize, Time)>,
}

impl Verifier {
    /// A verifier expecting, from each sender node, its objects.
    pub fn new(expected: HashMap<u32, Vec<Expected>>) -> Verifier {
        let total = expected.values().map(|v| v.len() as u32).sum();
        let expected = expected.into_iter().map(|(k, v)| (k, v.into_iter().map(|e| (e, false)).collect())).collect();
        Verifier {
            expected,
            total,
            partial: HashMap::new(),
            verified: 0,
            verified_bytes: 0,
            corrupt: 0,
            lost: 0,
            completed_at: None,
            verified_at: Vec::new(),
        }
    }

    /// True once every expected object was verified.
    pub fn done(&self) -> bool {
        self.verified == self.total
    }

    fn on_event(&mut self, now: Time, e: ReceiverEvent) {
        match e {
            ReceiverEvent::ObjectStarted { sender, object, kind, len } => {
                let known =
                    self.expected.get(&sender).is_some_and(|v| v.iter().any(|(x, _)| x.kind == kind && x.len == len));
                if known {
                    self.partial.insert((sender, object), Partial { kind, len, hasher: Sha256::new(), next_offset: 0 });
                } else {
                    self.corrupt += 1;
                }
            }
            ReceiverEvent::ObjectData { sender, object, offset, data } => match self.partial.get_mut(&(sender, object))
            {
                Some(p) if p.next_offset == offset => {
                    p.hasher.update(&data);
                    p.next_offset += data.len() as u64;
                }
                _ => {
                    self.partial.remove(&(sender, object));
                    self.corrupt += 1;
                }
            },
            ReceiverEvent::ObjectComplete { sender, object } => {
                let Some(p) = self.partial.remove(&(sender, object)) else { return };
                let digest: [u8; 32] = p.hasher.finalize().into();
                let slot = self.expected.get_mut(&sender).and_then(|v| {
                    v.iter_mut().enumerate().find(|(_, (x, done))| {
                        !*done && x.kind == p.kind && x.len == p.len && x.len == p.next_offset && x.digest == digest
                    })
                });
                match slot {
                    Some((i, (x, done))) => {
                        *done = true;
                        self.verified += 1;
                        self.verified_bytes += x.len;
                        self.verified_at.push((sender, i, now));
                        if self.done() {
                            self.completed_at = Some(now);
                        }
                    }
                    None => self.corrupt += 1,
                }
            }
            ReceiverEvent::EpochAhead { .. }
            | ReceiverEvent::ObjectProgress { .. }
            | ReceiverEvent::SenderRestarted { .. } => {}
            ReceiverEvent::ObjectLost { sender, object } => {
                self.partial.remove(&(sender, object));
                self.lost += 1;
            }
        }
    }
}
