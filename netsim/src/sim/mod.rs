//! One run of a scenario: the world of nodes, the media, the links and virtual time.
//!
//! Owns `Sim`: it builds the nodes from a scenario (senders, receivers and
//! repairers in the senders' cell and in regions), moves every datagram
//! through its cell's medium to every other node there (each with its own
//! loss, delay, jitter, reordering and duplication), carries group-scoped
//! frames over the region links through the router (region-scoped ones stay
//! in their cell), fires the cores' timers and the scenario's membership
//! events, samples the run for plots, hashes the trace, and stops when every
//! present receiver has verified every object or the time limit is reached.
//! All randomness comes from the scenario's seed.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use lsim_transport::geometry::Geometry;
use lsim_transport::rng::Rng;
use lsim_transport::seal::Seal;
use lsim_transport::stats::DropReason;
use lsim_transport::wire::{self, Body, DataHeader, Header, ObjectKind, PacketType};
use lsim_transport::{ConfigError, Receiver, Repairer, RepairerConfig, Scope, Sender, Time};
use sha2::{Digest, Sha256};

use crate::clock::Agenda;
use crate::loss::Loss;
use crate::medium::{Frame, Medium};
use crate::node::{Node, Role, Verifier};
use crate::report::{ReceiverReport, RegionReport, RegionSample, Report, Sample};
use crate::scenario::{Action, Scenario};
use crate::seal::TestSeal;
use crate::workload::{self, PatternSource};

mod attack;
mod tally;

const GROUP_KEY: &str = "netsim group key";
/// Node ids: senders 1.., receivers 100.. (at most 10000), repairers from here.
pub const REPAIRER_IDS: u32 = 60_000;

enum Event {
    Wake(usize),
    Deliver(usize, Rc<[u8]>),
    AirDone(usize),
    /// A frame leaves a link: (region, upward).
    LinkOut(usize, bool, Frame),
    Chat(u32),
    Rekey(u32),
    Forge,
    Replay,
    NackFlood,
    Sample,
    Membership(usize),
}

/// One direction of a region's link: a drop-tail FIFO serialised at its rate.
struct Pipe {
    bps: u64,
    delay: Duration,
    loss: f64,
    queue_limit: u64,
    busy_until: Time,
    /// Bytes the link carried (lost ones too).
    bytes: u64,
    drops: u64,
    rng: Rng,
}

impl Pipe {
    /// Takes a frame at `now`; returns when it leaves the far end, or `None` if dropped or lost.
    fn push(&mut self, now: Time, len: usize) -> Option<Time> {
        let start = self.busy_until.max(now);
        let backlog = start.saturating_since(now).as_secs_f64() * self.bps as f64 / 8.0;
        if backlog as u64 + len as u64 > self.queue_limit {
            self.drops += 1;
            return None;
        }
        let done = start + Duration::from_nanos(len as u64 * 8 * 1_000_000_000 / self.bps.max(1));
        self.busy_until = done;
        if self.loss > 0.0 && self.rng.chance(self.loss) {
            // It used the link all the same.
            self.bytes += len as u64;
            return None;
        }
        Some(done + self.delay)
    }
}

struct Cell {
    medium: Medium,
    /// Nodes on it, and their slots (the gateway's slot is `nodes.len()`).
    nodes: Vec<usize>,
    /// For a region: its link (down, up).
    link: Option<(Pipe, Pipe)>,
}

/// A simulation in progress.
pub struct Sim {
    scenario: Scenario,
    nodes: Vec<Node>,
    /// Slot of each node on its cell's medium.
    slots: Vec<usize>,
    senders: Vec<usize>,
    cells: Vec<Cell>,
    agenda: Agenda<Event>,
    trace: Sha256,
    now: Time,
    /// Receivers finished, and receivers that will not be waited for (gone before finishing).
    done: u32,
    excused: u32,
    expected_members: u32,
    events: u64,
    deliveries: u64,
    forged: u64,
    replayed: u64,
    flood_nacks: u64,
    forger: Option<usize>,
    samples: Vec<Sample>,
    buf: Vec<u8>,
}

impl Sim {
    /// Builds the world of `scenario` (its seed decides everything); fails if
    /// the transport refuses the scenario's sender settings.
    pub fn new(scenario: Scenario) -> Result<Sim, ConfigError> {
        let mut master = Rng::new(scenario.seed);
        let mut nodes: Vec<Node> = Vec::new();
        let mut senders = Vec::new();
        let mut cells: Vec<Cell> = Vec::new();
        let l = &scenario.link;
        let n_regions = scenario.regions.len();
        // Senders first (node ids 1..), so every member knows their workloads.
        let mut sender_cells = vec![0usize; scenario.senders as usize];
        for (r, spec) in scenario.regions.iter().enumerate() {
            sender_cells.extend(std::iter::repeat_n(r + 1, spec.senders as usize));
        }
        let mut expected = HashMap::new();
        for (i, &cell) in sender_cells.iter().enumerate() {
            let id = 1 + i as u32;
            expected.insert(id, workload::expected(&scenario.workload, sender_seed(scenario.seed, i)));
            let sender = Sender::new(scenario.sender_config(id), TestSeal::new(GROUP_KEY))?;
            senders.push(nodes.len());
            nodes.push(node(id, Role::Sender(Box::new(sender)), Loss::None, master.fork(), cell));
        }
        let mut next_id = 100;
        let mut member = |nodes: &mut Vec<Node>, master: &mut Rng, cell: usize, loss: Loss, repairer: Option<u32>| {
            let id = next_id;
            next_id += 1;
            let mut cfg = scenario.receiver_config(id, master.next_u64());
            cfg.repairer = repairer;
            let core = match scenario.receiver.hold_mib.filter(|&m| m > 0) {
                // A member holding what it received, as `lsim chat` members do.
                Some(mib) => {
                    let cfg = RepairerConfig {
                        first_repair: (1 << 19) + (id % 64) * (1 << 13),
                        range: 1 << 13,
                        receiver: cfg,
                        cache_bytes: mib << 20,
                        keep_declined: false,
                        hold_pace: Some(0.5),
                        ..RepairerConfig::default()
                    };
                    Role::Repairer(
                        Box::new(Repairer::new(cfg, TestSeal::new(GROUP_KEY))),
                        Verifier::new(expected.clone()),
                    )
                }
                None => Role::Receiver(
                    Box::new(Receiver::new(cfg, TestSeal::new(GROUP_KEY))),
                    Verifier::new(expected.clone()),
                ),
            };
            nodes.push(node(id, core, loss, master.fork(), cell));
        };
        for _ in 0..scenario.receivers {
            member(&mut nodes, &mut master, 0, scenario.loss_process(), None);
        }
        for (r, spec) in scenario.regions.iter().enumerate() {
            let cell = r + 1;
            let repairer = spec.repairer.then(|| {
                let id = REPAIRER_IDS + r as u32;
                let cfg = RepairerConfig {
                    receiver: scenario.receiver_config(id, master.next_u64()),
                    first_repair: (1 << 19) + (r as u32 % 8) * (1 << 16),
                    rate: spec.cell_bps.unwrap_or(l.bandwidth_bps) / 8 * 9 / 10,
                    ..RepairerConfig::default()
                };
                let core = Role::Repairer(
                    Box::new(Repairer::new(cfg, TestSeal::new(GROUP_KEY))),
                    Verifier::new(expected.clone()),
                );
                nodes.push(node(id, core, spec.repairer_loss.process(), master.fork(), cell));
                id
            });
            let loss = spec.loss.as_ref().unwrap_or(&scenario.loss);
            for _ in 0..spec.receivers {
                member(&mut nodes, &mut master, cell, loss.process(), repairer);
            }
        }
        let a = &scenario.attack;
        let attacked = a.forged_per_second > 0.0 || a.replayed_per_second > 0.0 || a.nack_flood_per_second > 0.0;
        let forger = attacked.then(|| {
            nodes.push(node(0xdead, Role::Outsider(None, None), Loss::None, master.fork(), 0));
            nodes.len() - 1
        });
        for cell in 0..=n_regions {
            let members: Vec<usize> = (0..nodes.len()).filter(|&i| nodes[i].cell == cell).collect();
            let (bps, link) = match cell.checked_sub(1).map(|r| &scenario.regions[r]) {
                None => (l.bandwidth_bps, None),
                Some(spec) => {
                    let k = &spec.link;
                    let pipe = |rng: Rng| Pipe {
                        bps: k.bandwidth_bps,
                        delay: Duration::from_secs_f64(k.delay_ms / 1e3),
                        loss: k.loss,
                        queue_limit: k.queue_bytes,
                        busy_until: Time::ZERO,
                        bytes: 0,
                        drops: 0,
                        rng,
                    };
                    (spec.cell_bps.unwrap_or(l.bandwidth_bps), Some((pipe(master.fork()), pipe(master.fork()))))
                }
            };
            let medium = Medium::new(members.len() + 1, bps, u64::from(l.overhead_bytes), l.queue_bytes);
            cells.push(Cell { medium, nodes: members, link });
        }
        let mut slots = vec![0; nodes.len()];
        for c in &cells {
            for (slot, &i) in c.nodes.iter().enumerate() {
                slots[i] = slot;
            }
        }
        let expected_members =
            scenario.total_receivers() + scenario.regions.iter().filter(|r| r.repairer).count() as u32;
        Ok(Sim {
            scenario,
            nodes,
            slots,
            senders,
            cells,
            agenda: Agenda::default(),
            trace: Sha256::new(),
            now: Time::ZERO,
            done: 0,
            excused: 0,
            expected_members,
            events: 0,
            deliveries: 0,
            forged: 0,
            replayed: 0,
            flood_nacks: 0,
            forger,
            samples: Vec::new(),
            buf: Vec::with_capacity(wire::MAX_DATAGRAM),
        })
    }

    /// Runs to completion or the time limit and reports.
    pub fn run(mut self) -> Report {
        let wall = Instant::now();
        self.start();
        let limit = Time::ZERO + Duration::from_secs_f64(self.scenario.time_limit_s);
        while self.done + self.excused < self.expected_members {
            let Some((t, ev)) = self.agenda.pop() else { break };
            if t > limit {
                // Stopped by the limit: that is how long the run lasted.
                self.now = limit;
                break;
            }
            self.now = t;
            self.events += 1;
            self.handle(ev);
        }
        self.sample();
        self.report(wall.elapsed())
    }

    fn start(&mut self) {
        let w = self.scenario.workload.clone();
        let seed = self.scenario.seed;
        for (k, &si) in self.senders.iter().enumerate() {
            let sseed = sender_seed(seed, k);
            if let Role::Sender(s) = &mut self.nodes[si].core {
                for (i, len) in workload::files(&w).into_iter().enumerate() {
                    // Sizes were validated; a refusal here would be a transport bug and shows as undelivered.
                    let _ = s.send(ObjectKind::File, Box::new(PatternSource::new(sseed.wrapping_add(i as u64), len)));
                }
                if w.chat_interval_ms <= 0.0 {
                    for i in 0..w.chats {
                        let _ = s.send_bytes(ObjectKind::Chat, workload::chat(sseed, i, w.chat_bytes));
                    }
                }
                if w.rekey_interval_ms <= 0.0 {
                    for i in 0..w.rekeys {
                        let _ = s.send_bytes(ObjectKind::Rekey, workload::rekey(sseed, i, w.rekey_bytes));
                    }
                }
            }
        }
        if w.chat_interval_ms > 0.0 {
            for i in 0..w.chats {
                let at = Time::ZERO + Duration::from_secs_f64(w.chat_interval_ms * f64::from(i) / 1e3);
                self.agenda.at(at, Event::Chat(i));
            }
        }
        if w.rekey_interval_ms > 0.0 {
            for i in 0..w.rekeys {
                let at = Time::ZERO + Duration::from_secs_f64(w.rekey_interval_ms * f64::from(i) / 1e3);
                self.agenda.at(at, Event::Rekey(i));
            }
        }
        if self.forger.is_some() && self.scenario.attack.forged_per_second > 0.0 {
            self.agenda.at(Time::ZERO, Event::Forge);
        }
        if self.forger.is_some() && self.scenario.attack.replayed_per_second > 0.0 {
            self.agenda.at(Time::ZERO, Event::Replay);
        }
        if self.forger.is_some() && self.scenario.attack.nack_flood_per_second > 0.0 {
            self.agenda.at(Time::ZERO, Event::NackFlood);
        }
        // Joiners are off until their time.
        for (e, spec) in self.scenario.events.clone().iter().enumerate() {
            let at = Time::ZERO + Duration::from_secs_f64(spec.at_s);
            if spec.action == Action::Join {
                for i in self.pick(e, false) {
                    self.nodes[i].on = false;
                }
            }
            self.agenda.at(at, Event::Membership(e));
        }
        self.agenda.at(Time::ZERO, Event::Sample);
        for i in 0..self.nodes.len() {
            if self.nodes[i].on {
                self.pump(i);
            }
        }
    }

    /// The receivers event `e` acts on: for a join the region's last `count`
    /// receivers (not already joining later); for a leave its first `count`
    /// present ones; for a crash its repairer.
    fn pick(&self, e: usize, present: bool) -> Vec<usize> {
        let spec = &self.scenario.events[e];
        let cell = if spec.region.is_empty() {
            0
        } else {
            self.scenario.regions.iter().position(|r| r.name == spec.region).map_or(0, |r| r + 1)
        };
        let in_cell = self.cells[cell].nodes.iter().copied();
        match spec.action {
            Action::CrashRepairer => {
                in_cell.filter(|&i| matches!(self.nodes[i].core, Role::Repairer(..)) && !self.nodes[i].member).collect()
            }
            Action::Away => in_cell
                .filter(|&i| self.nodes[i].member && self.nodes[i].on && !self.nodes[i].gone && !self.nodes[i].away)
                .take(spec.count as usize)
                .collect(),
            Action::Back => in_cell.filter(|&i| self.nodes[i].away).take(spec.count as usize).collect(),
            Action::Quit => in_cell
                .filter(|&i| matches!(self.nodes[i].core, Role::Sender(_)) && !self.nodes[i].gone)
                .take(spec.count as usize)
                .collect(),
            Action::Join => in_cell
                .filter(|&i| self.nodes[i].member && self.nodes[i].on)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .take(spec.count as usize)
                .collect(),
            Action::Leave => in_cell
                .filter(|&i| self.nodes[i].member && !self.nodes[i].gone && (self.nodes[i].on || !present))
                .take(spec.count as usize)
                .collect(),
        }
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Wake(i) => {
                if self.nodes[i].wake == Some(self.now) && self.live(i) {
                    self.nodes[i].wake = None;
                    self.nodes[i].timeout(self.now);
                    self.pump(i);
                }
            }
            Event::Deliver(i, bytes) => {
                if self.live(i) && !self.nodes[i].away {
                    self.deliveries += 1;
                    self.record(b'r', i, bytes.len());
                    self.nodes[i].datagram(self.now, &bytes);
                    self.pump(i);
                }
            }
            Event::AirDone(c) => {
                let (frame, next) = self.cells[c].medium.finish(self.now);
                if let Some(f) = frame {
                    self.fan_out(c, f);
                }
                if let Some(t) = next {
                    self.agenda.at(t, Event::AirDone(c));
                }
            }
            Event::LinkOut(r, up, mut f) => {
                // Counted as it leaves the link, so samples show the rate the link carried.
                if let Some((down, upward)) = self.cells[r + 1].link.as_mut() {
                    let pipe = if up { upward } else { down };
                    pipe.bytes += f.bytes.len() as u64;
                }
                // The router puts it on the far cell's medium, as its gateway.
                let cell = if up { 0 } else { r + 1 };
                f.from = self.cells[cell].nodes.len();
                f.node = None;
                f.came_from = Some(r);
                self.offer(cell, f);
            }
            Event::Chat(i) => {
                let (seed, bytes) = (self.scenario.seed, self.scenario.workload.chat_bytes);
                for k in 0..self.senders.len() {
                    let si = self.senders[k];
                    if self.nodes[si].gone {
                        continue;
                    }
                    if let Role::Sender(s) = &mut self.nodes[si].core {
                        let _ = s.send_bytes(ObjectKind::Chat, workload::chat(sender_seed(seed, k), i, bytes));
                    }
                    self.pump(si);
                }
            }
            Event::Rekey(i) => {
                let (seed, bytes) = (self.scenario.seed, self.scenario.workload.rekey_bytes);
                for k in 0..self.senders.len() {
                    let si = self.senders[k];
                    if self.nodes[si].gone {
                        continue;
                    }
                    if let Role::Sender(s) = &mut self.nodes[si].core {
                        let _ = s.send_bytes(ObjectKind::Rekey, workload::rekey(sender_seed(seed, k), i, bytes));
                    }
                    self.pump(si);
                }
            }
            Event::Forge => self.forge(),
            Event::Replay => self.replay(),
            Event::NackFlood => self.nack_flood(),
            Event::Sample => {
                self.sample();
                let next = self.now + Duration::from_secs_f64(self.scenario.sample_ms / 1e3);
                self.agenda.at(next, Event::Sample);
            }
            Event::Membership(e) => self.membership(e),
        }
    }

    fn live(&self, i: usize) -> bool {
        self.nodes[i].on && !self.nodes[i].gone
    }

    fn membership(&mut self, e: usize) {
        let action = self.scenario.events[e].action;
        self.record(b'm', e, 0);
        match action {
            Action::Join => {
                let count = self.scenario.events[e].count as usize;
                let cell = self.event_cell(e);
                let joining: Vec<usize> = (0..self.nodes.len())
                    .filter(|&i| !self.nodes[i].on && !self.nodes[i].gone && self.nodes[i].cell == cell)
                    .take(count)
                    .collect();
                for i in joining {
                    self.nodes[i].on = true;
                    self.pump(i);
                }
            }
            Action::Away => {
                for i in self.pick(e, true) {
                    self.nodes[i].away = true;
                }
            }
            Action::Back => {
                for i in self.pick(e, true) {
                    self.nodes[i].away = false;
                    self.pump(i);
                }
            }
            Action::Quit => {
                for i in self.pick(e, true) {
                    self.nodes[i].gone = true;
                    self.nodes[i].wake = None;
                }
            }
            Action::Leave | Action::CrashRepairer => {
                for i in self.pick(e, true) {
                    self.nodes[i].gone = true;
                    self.nodes[i].wake = None;
                    if !self.nodes[i].finished {
                        self.excused += 1;
                    }
                }
            }
        }
    }

    fn event_cell(&self, e: usize) -> usize {
        let name = &self.scenario.events[e].region;
        self.scenario.regions.iter().position(|r| &r.name == name).map_or(0, |r| r + 1)
    }

    /// Lets node `i` transmit what it has, drains its events, and re-arms its timer.
    fn pump(&mut self, i: usize) {
        let now = self.now;
        while let Some(t) = self.nodes[i].transmit(now, &mut self.buf) {
            if self.nodes[i].away {
                // Out of range: it sends into the void.
                continue;
            }
            let bytes: Rc<[u8]> = self.buf[..t.len].into();
            self.record(b't', i, t.len);
            self.send_from(i, bytes, t.scope);
        }
        let n = self.nodes[i].drain_events(now);
        if n > 0 {
            self.record(b'e', i, n as usize);
            if self.nodes[i].verifier().is_some_and(Verifier::done) && !self.nodes[i].finished {
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

    /// Node `i` puts a datagram on its cell's medium.
    fn send_from(&mut self, i: usize, bytes: Rc<[u8]>, scope: Scope) {
        let f = Frame { from: self.slots[i], bytes, node: Some(i), scope, came_from: None };
        self.offer(self.nodes[i].cell, f);
    }

    fn offer(&mut self, cell: usize, f: Frame) {
        if let Some(end) = self.cells[cell].medium.offer(self.now, f) {
            self.agenda.at(end, Event::AirDone(cell));
        }
    }

    /// Every other live node of the cell hears the frame, each through its own
    /// loss and delay; a group-scoped frame also goes over the links.
    fn fan_out(&mut self, cell: usize, f: Frame) {
        let l = &self.scenario.link;
        let (delay, jitter, reorder, reorder_ms, dup) = (l.delay_ms, l.jitter_ms, l.reorder, l.reorder_ms, l.duplicate);
        let from_sender = f.node.is_some_and(|j| matches!(self.nodes[j].core, Role::Sender(_)));
        for k in 0..self.cells[cell].nodes.len() {
            let i = self.cells[cell].nodes[k];
            if Some(i) == f.node || !self.live(i) || self.nodes[i].away {
                continue;
            }
            let node = &mut self.nodes[i];
            let lost = node.loss.lose(&mut node.rng);
            if from_sender {
                node.heard += 1;
                node.lost_on_air += u64::from(lost);
            }
            if lost {
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
        if f.scope != Scope::Group {
            return;
        }
        let now = self.now;
        if cell == 0 {
            for r in 0..self.cells.len() - 1 {
                if f.came_from == Some(r) {
                    continue;
                }
                if let Some((down, _)) = self.cells[r + 1].link.as_mut()
                    && let Some(at) = down.push(now, f.bytes.len())
                {
                    self.agenda.at(at, Event::LinkOut(r, false, f.clone()));
                }
            }
        } else if f.came_from.is_none()
            && let Some((_, up)) = self.cells[cell].link.as_mut()
            && let Some(at) = up.push(now, f.bytes.len())
        {
            self.agenda.at(at, Event::LinkOut(cell - 1, true, f));
        }
    }

    /// Records the cumulative state of the run (for plots).
    fn sample(&mut self) {
        let sender_repair: u64 =
            self.senders.iter().filter_map(|&i| self.nodes[i].stats()).map(|s| s.repair_sent).sum();
        let delivered_bytes = self.nodes.iter().filter_map(|n| n.verifier()).map(|v| v.verified_bytes).sum();
        let regions = (0..self.cells.len())
            .map(|c| {
                let (mut local, mut nacks) = (0, 0);
                for &i in &self.cells[c].nodes {
                    if let Some(s) = self.nodes[i].stats() {
                        local += s.local_repairs;
                        nacks += s.feedback_sent;
                    }
                }
                RegionSample {
                    repair_packets: sender_repair + local,
                    nack_packets: nacks,
                    link_bytes_in: self.cells[c].link.as_ref().map_or(0, |(down, _)| down.bytes),
                }
            })
            .collect();
        self.samples.push(Sample { t_s: self.now.as_secs_f64(), delivered_bytes, regions });
    }

    fn record(&mut self, what: u8, node: usize, len: usize) {
        self.trace.update([what]);
        self.trace.update(self.now.as_micros().to_le_bytes());
        self.trace.update((node as u32).to_le_bytes());
        self.trace.update((len as u32).to_le_bytes());
    }
}

/// The seed of the `k`-th sender's workload.
fn sender_seed(seed: u64, k: usize) -> u64 {
    seed.wrapping_add((k as u64) << 32)
}

fn node(id: u32, core: Role, loss: Loss, rng: Rng, cell: usize) -> Node {
    let member = matches!(core, Role::Receiver(..)) || (matches!(core, Role::Repairer(..)) && id < REPAIRER_IDS);
    Node {
        id,
        core,
        loss,
        rng,
        wake: None,
        finished: false,
        cell,
        on: true,
        gone: false,
        away: false,
        member,
        heard: 0,
        lost_on_air: 0,
    }
}
