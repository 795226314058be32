//! One run of a scenario: the world of nodes, the medium and virtual time.
//!
//! Owns `Sim`: it builds the nodes from a scenario, moves every datagram
//! through the medium to every other node (each with its own loss, delay,
//! jitter, reordering and duplication), fires the cores' timers, hashes the
//! trace, and stops when every receiver has verified every object or the time
//! limit is reached. All randomness comes from the scenario's seed.

use std::rc::Rc;
use std::time::{Duration, Instant};

use lsim_transport::geometry::Geometry;
use lsim_transport::rng::Rng;
use lsim_transport::seal::Seal;
use lsim_transport::stats::Drop;
use lsim_transport::wire::{self, Body, DataHeader, Header, ObjectKind, PacketType};
use lsim_transport::{ConfigError, Receiver, Sender, Time};
use sha2::{Digest, Sha256};

use crate::clock::Agenda;
use crate::loss::Loss;
use crate::medium::{Frame, Medium};
use crate::node::{Core, Node, Verifier};
use crate::report::{ReceiverReport, Report};
use crate::scenario::Scenario;
use crate::seal::TestSeal;
use crate::workload::{self, PatternSource};

const GROUP_KEY: &str = "netsim group key";
const SENDER: usize = 0;

enum Event {
    Wake(usize),
    Deliver(usize, Rc<[u8]>),
    AirDone,
    Chat(u32),
    Forge,
}

/// A simulation in progress.
pub struct Sim {
    scenario: Scenario,
    nodes: Vec<Node>,
    agenda: Agenda<Event>,
    medium: Medium,
    trace: Sha256,
    now: Time,
    done: u32,
    events: u64,
    deliveries: u64,
    forged: u64,
    forger: Option<usize>,
    buf: Vec<u8>,
}

impl Sim {
    /// Builds the world of `scenario` (its seed decides everything); fails if
    /// the transport refuses the scenario's sender settings.
    pub fn new(scenario: Scenario) -> Result<Sim, ConfigError> {
        let mut master = Rng::new(scenario.seed);
        let expected = workload::expected(&scenario.workload, scenario.seed);
        let mut nodes = Vec::new();
        let sender = Sender::new(scenario.sender_config(1), TestSeal::new(GROUP_KEY))?;
        nodes.push(Node {
            id: 1,
            core: Core::Sender(Box::new(sender)),
            loss: scenario.loss_process(),
            rng: master.fork(),
            wake: None,
            finished: false,
        });
        for i in 0..scenario.receivers {
            let id = 2 + i;
            let cfg = scenario.receiver_config(id, master.next_u64());
            let core =
                Core::Receiver(Box::new(Receiver::new(cfg, TestSeal::new(GROUP_KEY))), Verifier::new(expected.clone()));
            nodes.push(Node {
                id,
                core,
                loss: scenario.loss_process(),
                rng: master.fork(),
                wake: None,
                finished: false,
            });
        }
        let forger = (scenario.attack.forged_per_second > 0.0).then(|| {
            nodes.push(Node {
                id: 0xdead,
                core: Core::Outsider(None),
                loss: Loss::None,
                rng: master.fork(),
                wake: None,
                finished: false,
            });
            nodes.len() - 1
        });
        let l = &scenario.link;
        let medium = Medium::new(nodes.len(), l.bandwidth_bps, u64::from(l.overhead_bytes), l.queue_bytes);
        Ok(Sim {
            scenario,
            nodes,
            agenda: Agenda::default(),
            medium,
            trace: Sha256::new(),
            now: Time::ZERO,
            done: 0,
            events: 0,
            deliveries: 0,
            forged: 0,
            forger,
            buf: Vec::with_capacity(wire::MAX_DATAGRAM),
        })
    }

    /// Runs to completion or the time limit and reports.
    pub fn run(mut self) -> Report {
        let wall = Instant::now();
        self.start();
        let limit = Time::ZERO + Duration::from_secs_f64(self.scenario.time_limit_s);
        while self.done < self.scenario.receivers {
            let Some((t, ev)) = self.agenda.pop() else { break };
            if t > limit {
                break;
            }
            self.now = t;
            self.events += 1;
            self.handle(ev);
        }
        self.report(wall.elapsed())
    }

    fn start(&mut self) {
        let w = self.scenario.workload.clone();
        let seed = self.scenario.seed;
        if let Core::Sender(s) = &mut self.nodes[SENDER].core {
            if w.file_bytes > 0 {
                // Sizes were validated; a refusal here would be a transport bug and shows as undelivered.
                let _ = s.send(ObjectKind::File, Box::new(PatternSource::new(seed, w.file_bytes)));
            }
            if w.chat_interval_ms <= 0.0 {
                for i in 0..w.chats {
                    let _ = s.send_bytes(ObjectKind::Chat, workload::chat(seed, i, w.chat_bytes));
                }
            }
        }
        if w.chat_interval_ms > 0.0 {
            for i in 0..w.chats {
                let at = Time::ZERO + Duration::from_secs_f64(w.chat_interval_ms * f64::from(i) / 1e3);
                self.agenda.at(at, Event::Chat(i));
            }
        }
        if self.forger.is_some() {
            self.agenda.at(Time::ZERO, Event::Forge);
        }
        for i in 0..self.nodes.len() {
            self.pump(i);
        }
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Wake(i) => {
                if self.nodes[i].wake == Some(self.now) {
                    self.nodes[i].wake = None;
                    self.nodes[i].timeout(self.now);
                    self.pump(i);
                }
            }
            Event::Deliver(i, bytes) => {
                self.deliveries += 1;
                self.record(b'r', i, bytes.len());
                self.nodes[i].datagram(self.now, &bytes);
                self.pump(i);
            }
            Event::AirDone => {
                let (frame, next) = self.medium.finish(self.now);
                if let Some(f) = frame {
                    self.fan_out(f);
                }
                if let Some(t) = next {
                    self.agenda.at(t, Event::AirDone);
                }
            }
            Event::Chat(i) => {
                let (seed, bytes) = (self.scenario.seed, self.scenario.workload.chat_bytes);
                if let Core::Sender(s) = &mut self.nodes[SENDER].core {
                    let _ = s.send_bytes(ObjectKind::Chat, workload::chat(seed, i, bytes));
                }
                self.pump(SENDER);
            }
            Event::Forge => self.forge(),
        }
    }

    /// Lets node `i` transmit what it has, drains its events, and re-arms its timer.
    fn pump(&mut self, i: usize) {
        let now = self.now;
        while let Some(t) = self.nodes[i].transmit(now, &mut self.buf) {
            let bytes: Rc<[u8]> = self.buf[..t.len].into();
            self.record(b't', i, t.len);
            self.put_on_air(i, bytes);
        }
        let n = self.nodes[i].drain_events(now);
        if n > 0 {
            self.record(b'e', i, n as usize);
            if let Core::Receiver(_, v) = &self.nodes[i].core
                && v.done()
                && !self.nodes[i].finished
            {
                self.nodes[i].finished = true;
                self.done += 1;
            }
        }
        let wake = self.nodes[i].next_timeout().map(|t| if t <= now { now + Duration::from_micros(1) } else { t });
        if wake != self.nodes[i].wake {
            self.nodes[i].wake = wake;
            if let Some(t) = wake {
                self.agenda.at(t, Event::Wake(i));
            }
        }
    }

    fn put_on_air(&mut self, from: usize, bytes: Rc<[u8]>) {
        if let Some(end) = self.medium.offer(self.now, Frame { from, bytes }) {
            self.agenda.at(end, Event::AirDone);
        }
    }

    /// Every other node hears the frame, each through its own loss and delay.
    fn fan_out(&mut self, f: Frame) {
        let l = &self.scenario.link;
        let (delay, jitter, reorder, reorder_ms, dup) = (l.delay_ms, l.jitter_ms, l.reorder, l.reorder_ms, l.duplicate);
        for i in 0..self.nodes.len() {
            if i == f.from {
                continue;
            }
            let node = &mut self.nodes[i];
            if node.loss.lose(&mut node.rng) {
                continue;
            }
            let mut ms = delay + jitter * node.rng.next_f64();
            if reorder > 0.0 && node.rng.chance(reorder) {
                ms += reorder_ms;
            }
            let at = self.now + Duration::from_secs_f64(ms / 1e3);
            self.agenda.at(at, Event::Deliver(i, f.bytes.clone()));
            if dup > 0.0 && node.rng.chance(dup) {
                let again = at + Duration::from_secs_f64(jitter * node.rng.next_f64() / 1e3);
                self.agenda.at(again, Event::Deliver(i, f.bytes.clone()));
            }
        }
    }

    /// The outsider sends one forgery and schedules the next: alternately a
    /// captured packet with one bit flipped, and a well-formed data packet
    /// claiming to be the sender but sealed under the wrong key.
    fn forge(&mut self) {
        let Some(fi) = self.forger else { return };
        let rate = self.scenario.attack.forged_per_second;
        let file_len = self.scenario.workload.file_bytes.max(1);
        let node = &mut self.nodes[fi];
        let rng = &mut node.rng;
        let bytes: Option<Vec<u8>> = match &node.core {
            Core::Outsider(Some(last)) if self.forged.is_multiple_of(2) => {
                let mut b = last.clone();
                let at = rng.below(b.len() as u64) as usize;
                b[at] ^= 1 << rng.below(8);
                Some(b)
            }
            _ => {
                let g = Geometry::for_object(file_len, 1400, 64).ok();
                g.map(|geometry| {
                    let k = u64::from(geometry.symbols_in(0));
                    let h =
                        DataHeader { object: 0, kind: ObjectKind::File, geometry, block: 0, esi: rng.below(k) as u32 };
                    let symbol: Vec<u8> = (0..geometry.symbol_size()).map(|_| rng.next_u64() as u8).collect();
                    let header = Header {
                        packet_type: PacketType::Data,
                        session: 1,
                        node: 1,
                        epoch: 0,
                        seq: rng.next_u64() >> 1,
                    };
                    let mut out = Vec::new();
                    let mut wrong = TestSeal::new("not the group key");
                    let _ = wire::seal_packet(&mut wrong, &header, &Body::Data(h, &symbol), &mut out);
                    debug_assert_eq!(wrong.tag_len(), 16);
                    out
                })
            }
        };
        if let Some(b) = bytes {
            self.forged += 1;
            self.record(b'f', fi, b.len());
            self.put_on_air(fi, b.into());
        }
        let next = self.now + Duration::from_secs_f64(1.0 / rate);
        self.agenda.at(next, Event::Forge);
    }

    fn record(&mut self, what: u8, node: usize, len: usize) {
        self.trace.update([what]);
        self.trace.update(self.now.as_micros().to_le_bytes());
        self.trace.update((node as u32).to_le_bytes());
        self.trace.update((len as u32).to_le_bytes());
    }

    fn report(self, wall: Duration) -> Report {
        let sender = match &self.nodes[SENDER].core {
            Core::Sender(s) => Some(s),
            _ => None,
        };
        let st = sender.map(|s| s.stats().clone()).unwrap_or_default();
        let grtt_ms = sender.map_or(0.0, |s| s.grtt().as_secs_f64() * 1e3);
        let mut per_receiver = Vec::new();
        let (mut nacks, mut supp, mut fb) = (0, 0, 0);
        let mut last_done = Time::ZERO;
        for n in &self.nodes {
            if let Core::Receiver(r, v) = &n.core {
                let s = r.stats();
                nacks += s.nacks_sent;
                supp += s.nacks_suppressed;
                fb += s.feedback_sent;
                if let Some(t) = v.completed_at {
                    last_done = last_done.max(t);
                }
                per_receiver.push(ReceiverReport {
                    node: n.id,
                    verified: v.verified,
                    corrupt: v.corrupt,
                    lost: v.lost,
                    completion_s: v.completed_at.map(Time::as_secs_f64),
                    nacks_sent: s.nacks_sent,
                    nacks_suppressed: s.nacks_suppressed,
                    dropped_bad_seal: s.dropped(Drop::BadSeal),
                    dropped: s.dropped_total(),
                    loss_estimate: r.loss_from(1).unwrap_or(0.0),
                    region: 0,
                });
            }
        }
        let delivered_all = per_receiver.iter().all(|r| r.completion_s.is_some() && r.corrupt == 0);
        let expected = workload::expected(&self.scenario.workload, self.scenario.seed);
        let object_bytes: u64 = expected.iter().map(|e| e.len).sum();
        let completion = if delivered_all { last_done } else { self.now };
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let mut trace = self.trace;
        trace.update(completion.as_micros().to_le_bytes());
        Report {
            scenario: self.scenario.name.clone(),
            seed: self.scenario.seed,
            delivered_all,
            receivers: self.scenario.receivers,
            objects: expected.len() as u32,
            object_bytes,
            source_packets: st.source_sent,
            repair_packets: st.repair_sent,
            repair_per_source: ratio(st.repair_sent, st.source_sent),
            command_packets: st.commands_sent,
            feedback_packets: fb,
            nacks_sent: nacks,
            nacks_suppressed: supp,
            repaired_blocks: st.repaired_blocks,
            repair_rounds: st.repair_rounds,
            nacks_per_repaired_block: ratio(nacks, st.repaired_blocks),
            medium_bytes: self.medium.bytes,
            medium_per_object_byte: ratio(self.medium.bytes, object_bytes),
            medium_packets: self.medium.packets,
            queue_drops: self.medium.queue_drops,
            forged_sent: self.forged,
            completion_s: completion.as_secs_f64(),
            goodput_mbps: if completion > Time::ZERO {
                object_bytes as f64 * 8.0 / completion.as_secs_f64() / 1e6
            } else {
                0.0
            },
            grtt_ms,
            events: self.events,
            deliveries: self.deliveries,
            deliveries_per_wall_s: self.deliveries as f64 / wall.as_secs_f64().max(1e-9),
            trace_hash: trace.finalize().iter().map(|b| format!("{b:02x}")).collect(),
            wall_s: wall.as_secs_f64(),
            per_receiver,
            regions: Vec::new(),
            samples: Vec::new(),
        }
    }
}
