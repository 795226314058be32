//! The sender's protocol state machine.
//!
//! Owns everything one node does as the source of objects: cutting objects
//! into blocks, sending source symbols in order under a pacer, proactive and
//! on-demand repair with fresh RaptorQ symbols sized to the largest NACK
//! (answered at once and topped up when a larger count arrives, rather than
//! after NORM's aggregation window: the first repair symbols are themselves
//! what suppresses the other receivers' NACKs),
//! flushes, heartbeats and GRTT probes. It reads object bytes through
//! `ObjectSource` a block at a time. No clock, no socket: time and datagrams
//! are arguments, packets are pulled with `poll_transmit`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

mod config;
mod event;

pub use config::{ConfigError, DEFAULT_CEILING, DEFAULT_SYMBOL_SIZE, SenderConfig};
pub use event::{ReadError, SendError, SenderEvent};

use super::block_cache::BlockCache;
use super::framer::Framer;
use super::repair::{Ask, Planned, RepairPlan};
use super::{Scope, Transmit};
use crate::budget::{self, RepairBudget};
use crate::geometry::Geometry;
use crate::grtt::Grtt;
use crate::linger::Linger;
use crate::overrun::OverrunGuard;
use crate::pacing::Pacer;
use crate::rate::RateControl;
use crate::seal::Seal;
use crate::source::ObjectSource;
use crate::stats::{DropReason, Stats};
use crate::time::Time;
use crate::wire::{self, Body, Command, DataHeader, Feedback, Frontier, NackEntry, ObjectKind, Probe};

/// Repair packets in a row while source is waiting: past this, one source
/// packet goes out (the source keeps at least 1/(1 + this) of the rate).
const MAX_REPAIR_RUN: u32 = 8;

/// Shortest interval between probes while the adaptive rate is sending.
const RATE_PROBE_MIN: Duration = Duration::from_millis(5);

/// Longest interval between probes while the adaptive rate is sending. Not
/// 2·GRTT unbounded: a queue that inflates the GRTT would slow the very
/// probes that show it (on an 11 Mbit/s token bucket, a 120 ms queue meant a
/// probe every 240 ms, overshoot, and cuts of a fifth).
const RATE_PROBE_MAX: Duration = Duration::from_millis(20);

/// The window over which a sender measures what it actually sends (`overrun.rs`).
const SENDING_WINDOW: Duration = Duration::from_millis(5);

struct OutObject {
    id: u32,
    kind: ObjectKind,
    geometry: Geometry,
    source: Box<dyn ObjectSource + Send>,
    /// Blocks that were NACKed at least once.
    nacked: HashSet<u32>,
    failed: bool,
    /// The epoch its first symbol went under: its repair goes under it too
    /// (a member that joined since cannot read it).
    epoch: Option<u32>,
    /// Source symbols sent, and the last twentieth reported.
    sent: u64,
    reported: u64,
}

/// Where the source stream stands: the next source symbol to send.
#[derive(Clone, Copy, Debug)]
struct Cursor {
    object: u32,
    block: u32,
    esi: u32,
}

#[derive(Clone, Copy)]
enum Next {
    Command { flush: bool },
    Repair,
    Source,
}

/// The sender core (see the module doc).
pub struct Sender<S> {
    cfg: SenderConfig,
    framer: Framer<S>,
    stats: Stats,
    grtt: Grtt,
    /// The GRTT the last command told the receivers.
    advertised_grtt: Duration,
    pacer: Pacer,
    rate_control: Option<RateControl>,
    /// The cap on the rate the receivers' hosts keep up with.
    overrun: OverrunGuard,
    /// The rate before that cap: the fixed rate, or the adaptive one.
    base_rate: u64,
    /// What is actually being sent, bytes per second, and where its last
    /// measurement started (time, bytes out).
    sending: f64,
    sending_mark: (Time, u64),
    now: Time,
    objects: VecDeque<OutObject>,
    next_id: u32,
    cursor: Option<Cursor>,
    /// Blocks read from the objects, by (object, block).
    cache: BlockCache<(u32, u32)>,
    /// Repair rounds and the symbols queued, by (object, block).
    plan: RepairPlan<(u32, u32)>,
    /// Receivers heard from: when, and the loss they report.
    receivers: HashMap<u32, (Time, u16)>,
    flushes_sent: u32,
    last_command: Time,
    next_probe: Time,
    idle_reported: bool,
    /// When the sender may stop.
    linger: Linger,
    /// Repair packets sent since the last source packet.
    repair_run: u32,
    events: VecDeque<SenderEvent>,
    scratch: Vec<u8>,
}

impl<S: Seal> Sender<S> {
    /// A sender with `cfg`, sealing with `seal`; refuses a symbol size whose
    /// packets would not fit `max_datagram`.
    pub fn new(cfg: SenderConfig, seal: S) -> Result<Sender<S>, ConfigError> {
        // Every packet of a symbol must fit, a repairer's relayed one too.
        let packet = wire::symbol_packet_len(cfg.symbol_size, seal.tag_len());
        if cfg.symbol_size == 0 || packet > cfg.max_datagram.min(wire::MAX_DATAGRAM) {
            return Err(ConfigError::SymbolSize { symbol_size: cfg.symbol_size, packet, max: cfg.max_datagram });
        }
        if cfg.block_symbols == 0 || cfg.block_symbols > crate::geometry::MAX_BLOCK_SYMBOLS {
            return Err(ConfigError::BlockSymbols(cfg.block_symbols));
        }
        let framer = Framer::new(seal, cfg.session, cfg.node, false, cfg.first_seq);
        let rate_control =
            cfg.queue_target.filter(|_| cfg.rate > 0).map(|t| RateControl::new(cfg.rate, crate::rate::FLOOR, t));
        let budget = RepairBudget::new(cfg.repair_share, 4 * u32::from(cfg.block_symbols));
        let (cache, plan) = (BlockCache::new(cfg.cache_bytes), RepairPlan::new(budget, cfg.loss_margin));
        Ok(Sender {
            linger: Linger::new(cfg.linger),
            grtt: Grtt::new(cfg.initial_grtt),
            advertised_grtt: cfg.initial_grtt,
            pacer: Pacer::new(rate_control.as_ref().map_or(cfg.rate, RateControl::rate), cfg.burst),
            base_rate: rate_control.as_ref().map_or(cfg.rate, RateControl::rate),
            overrun: OverrunGuard::default(),
            sending: 0.0,
            sending_mark: (Time::ZERO, 0),
            rate_control,
            framer,
            cfg,
            stats: Stats::default(),
            now: Time::ZERO,
            objects: VecDeque::new(),
            next_id: 0,
            cursor: None,
            cache,
            plan,
            receivers: HashMap::new(),
            flushes_sent: 0,
            last_command: Time::ZERO,
            next_probe: Time::ZERO,
            idle_reported: true,
            repair_run: 0,
            events: VecDeque::new(),
            scratch: Vec::new(),
        })
    }

    /// Queues an object; returns its id. Its bytes are read as they are sent.
    pub fn send(&mut self, kind: ObjectKind, source: Box<dyn ObjectSource + Send>) -> Result<u32, SendError> {
        let geometry = Geometry::for_object(source.len(), self.cfg.symbol_size, self.cfg.block_symbols)?;
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.objects.push_back(OutObject {
            id,
            kind,
            geometry,
            source,
            nacked: HashSet::new(),
            failed: false,
            epoch: None,
            sent: 0,
            reported: 0,
        });
        if self.cursor.is_none() {
            self.cursor = Some(Cursor { object: id, block: 0, esi: 0 });
        }
        self.idle_reported = false;
        self.linger.on_queued();
        self.release_old();
        Ok(id)
    }

    /// Queues an in-memory object.
    pub fn send_bytes(&mut self, kind: ObjectKind, bytes: Vec<u8>) -> Result<u32, SendError> {
        self.send(kind, Box::new(bytes))
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The current group RTT estimate.
    pub fn grtt(&self) -> Duration {
        self.grtt.get()
    }

    /// Changes the pacing rate (bytes per second).
    pub fn set_rate(&mut self, rate: u64) {
        self.base_rate = rate;
        self.pace(self.now);
    }

    /// Sets the pacer to the base rate, under the receivers' cap if one
    /// binds (an unpaced sender stays unpaced).
    fn pace(&mut self, now: Time) {
        let rate = if self.base_rate == 0 { 0 } else { (self.overrun.rate(now, self.base_rate as f64) as u64).max(1) };
        if rate != self.pacer.rate() {
            self.pacer.set_rate(rate);
        }
    }

    /// A sender's socket overflowing means nothing to the protocol (it reads
    /// only feedback); present so every core takes the driver's report.
    pub fn handle_overflow(&mut self, _now: Time, _total: u64) {}

    /// The pacing rate now (bytes per second; 0: unlimited).
    pub fn rate(&self) -> u64 {
        self.pacer.rate()
    }

    /// The seal, for the layer above to rotate keys.
    pub fn seal_mut(&mut self) -> &mut S {
        &mut self.framer.seal
    }

    /// Objects queued or retained.
    pub fn retained(&self) -> usize {
        self.objects.len()
    }

    /// True once everything queued has been sent and flushed with no repair outstanding.
    pub fn is_idle(&self) -> bool {
        !self.has_work() && self.flushes_sent >= self.cfg.flush_count
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<SenderEvent> {
        self.events.pop_front()
    }

    /// A datagram from the network. The authenticated node id in its header,
    /// not the source address, names the peer.
    pub fn handle_datagram(&mut self, now: Time, datagram: &[u8]) {
        self.now = self.now.max(now);
        let mut scratch = std::mem::take(&mut self.scratch);
        if let Some((header, body)) = self.framer.open(datagram, &mut scratch, &mut self.stats) {
            match body {
                Body::Feedback(fb) if fb.target == self.cfg.node && fb.relay.is_none() => {
                    self.on_feedback(now, header.node, &fb)
                }
                // Feedback a repairer answers, others' feedback, others' data and commands: not the sender's business.
                _ => {}
            }
        }
        self.scratch = scratch;
    }

    /// Time passed: the pacer has credit again, a probe or flush may be due.
    /// (What is due is decided in `poll_transmit`.)
    pub fn handle_timeout(&mut self, now: Time) {
        self.now = self.now.max(now);
        if self.cursor.is_none() {
            self.linger.on_all_sent(self.now);
        }
        if self.linger.may_stop(self.now, self.is_idle()) {
            self.events.push_back(SenderEvent::MayStop);
        }
    }

    /// When `handle_timeout` (and then `poll_transmit`) should next be called.
    pub fn poll_timeout(&self) -> Option<Time> {
        // With work some packet is always due (a probe, repair or source).
        let due = if self.has_work() { self.now } else { self.next_command_time() };
        // Every packet waits for the pacer: a command that fell due while
        // it waits must not ask to be woken in the past.
        let packet = due.max(self.pacer.next_ready(self.now, self.max_packet()));
        // The linger's deadline is no packet: the pacer does not hold it.
        Some(self.linger.deadline(self.is_idle()).map_or(packet, |t| packet.min(t.max(self.now))))
    }

    /// The next packet to send at `now`, written into `buf`; `None` when
    /// nothing is due or the pacer says wait.
    pub fn poll_transmit(&mut self, now: Time, buf: &mut Vec<u8>) -> Option<Transmit> {
        self.now = self.now.max(now);
        if self.overrun.capped() {
            // The cap grows back after a cut (the call that lifts it restores the base rate).
            self.pace(now);
        }
        let next = self.next_packet(now)?;
        if !self.pacer.ready(now, self.max_packet()) {
            return None;
        }
        let sent = match next {
            Next::Command { flush } => self.write_command(now, flush, buf),
            Next::Repair => self.write_repair(buf),
            Next::Source => self.write_source(buf),
        };
        let t = sent?;
        self.pacer.spend(now, t.len);
        if self.cursor.is_none() {
            self.linger.on_all_sent(now);
        }
        // What is actually sent (a nominal rate may be far above it), over 5 ms windows.
        let (since, bytes) = self.sending_mark;
        if now.saturating_since(since) >= SENDING_WINDOW {
            let dt = now.saturating_since(since).as_secs_f64();
            self.sending = (self.stats.bytes_out - bytes) as f64 / dt;
            self.sending_mark = (now, self.stats.bytes_out);
        }
        match next {
            Next::Repair => self.repair_run = self.repair_run.saturating_add(1),
            Next::Source => self.repair_run = 0,
            Next::Command { .. } => {}
        }
        if !matches!(next, Next::Command { .. }) {
            self.flushes_sent = 0;
            self.idle_reported = false;
        }
        Some(t)
    }

    fn max_packet(&self) -> usize {
        wire::symbol_packet_len(self.cfg.symbol_size, self.framer.seal.tag_len())
    }

    fn has_work(&self) -> bool {
        self.plan.has_jobs() || self.cursor.is_some()
    }

    fn next_command_time(&self) -> Time {
        if self.flushes_sent < self.cfg.flush_count {
            if self.flushes_sent == 0 {
                self.last_command.min(self.now)
            } else {
                self.last_command + self.grtt.get() * 2
            }
        } else {
            self.last_command + self.cfg.heartbeat
        }
    }

    fn next_packet(&mut self, now: Time) -> Option<Next> {
        if self.has_work() {
            if now >= self.next_probe {
                return Some(Next::Command { flush: false });
            }
            // Repair goes first, but never starves the source: a member that
            // NACKs without end (or a region at extreme loss) slows the
            // transfer, it cannot stop it.
            let repair = self.plan.has_jobs() && (self.cursor.is_none() || self.repair_run < MAX_REPAIR_RUN);
            return Some(if repair { Next::Repair } else { Next::Source });
        }
        if now >= self.next_command_time() {
            return Some(Next::Command { flush: self.flushes_sent < self.cfg.flush_count });
        }
        None
    }

    fn frontier(&self) -> Option<Frontier> {
        match self.cursor {
            Some(c) => Some(Frontier { object: c.object, blocks_sent: self.group_start(c) }),
            None => self.objects.back().map(|o| Frontier { object: o.id, blocks_sent: o.geometry.blocks() }),
        }
    }

    fn write_command(&mut self, now: Time, flush: bool, buf: &mut Vec<u8>) -> Option<Transmit> {
        let probe = if now >= self.next_probe || flush {
            self.grtt.end_interval();
            let interval = if self.rate_control.is_some() && self.has_work() {
                // The rate follows probe round trips: probe often enough to see a queue build.
                (self.grtt.get() * 2).clamp(RATE_PROBE_MIN, self.cfg.probe_interval.min(RATE_PROBE_MAX))
            } else {
                (self.grtt.get() * 8).clamp(Duration::from_millis(100), self.cfg.probe_interval)
            };
            self.next_probe = now + interval;
            Some(Probe { time: now.as_micros(), reply_fraction: self.reply_fraction(now) })
        } else {
            None
        };
        let cmd = Command {
            flush,
            frontier: self.frontier(),
            oldest: self.objects.front().map_or(self.next_id, |o| o.id),
            grtt_us: u32::try_from(self.grtt.get().as_micros()).unwrap_or(u32::MAX),
            group_loss: self.median_loss(),
            probe,
        };
        let len = self.framer.write(&Body::Command(cmd), buf, &mut self.stats).ok()?;
        self.advertised_grtt = self.grtt.get();
        self.stats.commands_sent += 1;
        self.last_command = now;
        if !self.has_work() {
            self.flushes_sent = self.flushes_sent.saturating_add(1);
            if self.is_idle() && !self.idle_reported {
                self.idle_reported = true;
                self.events.push_back(SenderEvent::Idle);
            }
        }
        Some(Transmit { len, packet_type: wire::PacketType::Command, scope: Scope::Group })
    }

    /// Share of receivers (out of 65536) asked to answer a probe: enough for
    /// `probe_replies` answers among the receivers heard from recently.
    fn reply_fraction(&mut self, now: Time) -> u16 {
        let horizon = Duration::from_secs(30);
        self.receivers.retain(|_, (t, _)| now.saturating_since(*t) < horizon);
        let known = self.receivers.len().max(1) as u64;
        (65_536 * u64::from(self.cfg.probe_replies) / known).min(65_535) as u16
    }

    /// The median of the receivers' reported losses (1/65535ths): what an
    /// ordinary receiver of this group loses.
    fn median_loss(&self) -> u16 {
        let mut l: Vec<u16> = self.receivers.values().map(|&(_, l)| l).collect();
        l.sort_unstable();
        l.get(l.len() / 2).copied().unwrap_or(0)
    }

    fn object_index(&self, id: u32) -> Option<usize> {
        let first = self.objects.front()?.id;
        let i = id.wrapping_sub(first) as usize;
        (i < self.objects.len()).then_some(i)
    }

    /// True if every source symbol of (object, block) has gone out.
    fn was_sent(&self, object: u32, block: u32) -> bool {
        match self.cursor {
            None => true,
            Some(c) => object < c.object || (object == c.object && block < self.group_start(c)),
        }
    }

    /// The first block of the cursor's interleaving group: the blocks before
    /// it are the ones whose source is all sent.
    fn group_start(&self, c: Cursor) -> u32 {
        self.object_index(c.object).map_or(c.block, |ix| self.objects[ix].geometry.group_of(c.block).start)
    }

    fn on_feedback(&mut self, now: Time, from: u32, fb: &Feedback) {
        if self.receivers.len() >= budget::MAX_REQUESTERS && !self.receivers.contains_key(&from) {
            self.receivers.retain(|_, (t, _)| now.saturating_since(*t) < budget::FORGET_AFTER);
        }
        if self.receivers.len() < budget::MAX_REQUESTERS || self.receivers.contains_key(&from) {
            self.receivers.insert(from, (now, fb.loss));
        }
        if let (Some(rx), Some(c)) = (fb.received, self.rate_control.as_mut()) {
            c.on_delivery(now, from, rx, f64::from(fb.loss) / 65_535.0);
        }
        if let Some(echo) = fb.echo {
            let sent = Time::from_micros(echo.probe_time);
            if sent <= now {
                let rtt = (now - sent).saturating_sub(Duration::from_micros(u64::from(echo.hold_us)));
                self.grtt.sample(rtt);
                if let Some(rate) = self.rate_control.as_mut().and_then(|c| c.on_rtt(now, from, rtt)) {
                    self.base_rate = rate;
                    self.pace(now);
                }
                // Receivers time their NACKs by the GRTT we advertise: tell them soon when it moved a lot.
                let (new, old) = (self.grtt.get(), self.advertised_grtt);
                if new > old.mul_f64(1.25) || new < old.mul_f64(0.8) {
                    self.next_probe = self.next_probe.min(now);
                }
            }
        }
        // A receiver whose host falls behind: slow down until it keeps up.
        let gap = (self.grtt.get() * 2).max(Duration::from_millis(10));
        if let Some(total) = fb.overflow
            && self.overrun.on_report(now, from, total, gap, self.sending, self.base_rate as f64)
        {
            self.stats.overrun_cuts += 1;
            self.pace(now);
        }
        for entry in &fb.entries {
            self.stats.nacks_received += 1;
            self.linger.on_nack(now);
            match *entry {
                NackEntry::Block { object, block, needed } => self.on_nack(now, from, fb.loss, object, block, needed),
                NackEntry::Objects { first, bitmap } => {
                    for i in (0..32).filter(|i| bitmap & (1 << i) != 0) {
                        let object = first.wrapping_add(i);
                        let k = self.object_index(object).map(|ix| u32::from(self.objects[ix].geometry.symbols_in(0)));
                        match k {
                            Some(k) => self.on_nack(now, from, fb.loss, object, 0, k),
                            None => self.stats.drop(DropReason::Stale),
                        }
                    }
                }
            }
        }
    }

    fn on_nack(&mut self, now: Time, from: u32, loss: u16, object: u32, block: u32, needed: u32) {
        let Some(ix) = self.object_index(object) else {
            self.stats.drop(DropReason::Stale);
            return;
        };
        let o = &self.objects[ix];
        if o.failed || !self.was_sent(object, block) {
            self.stats.drop(DropReason::Stale);
            return;
        }
        if block >= o.geometry.blocks() {
            self.stats.drop(DropReason::Invalid);
            return;
        }
        let k = u32::from(o.geometry.symbols_in(block));
        let ask = Ask { from: Some(from), loss, block, needed };
        match self.plan.request(now, (object, block), ask, k, self.pacer.rate(), self.cfg.symbol_size) {
            Ok(Planned::Round(_)) => {
                self.stats.repair_rounds += 1;
                if self.objects[ix].nacked.insert(block) {
                    self.stats.repaired_blocks += 1;
                }
            }
            Ok(_) => {}
            Err(_) => self.stats.drop(DropReason::Invalid),
        }
        self.stats.repair_refused = self.plan.refused();
    }

    /// Loads (object, block) into the cache.
    fn load_block(&mut self, ix: usize, block: u32) -> Result<(), ReadError> {
        let id = self.objects[ix].id;
        if self.cache.contains(&(id, block)) {
            return Ok(());
        }
        let o = &mut self.objects[ix];
        let g = o.geometry;
        let mut data = vec![0u8; g.padded_block_len(block)];
        let len = g.block_len(block);
        o.source.read_at(g.block_offset(block), &mut data[..len]).map_err(|e| ReadError {
            object: id,
            block,
            kind: e.kind(),
            message: e.to_string(),
        })?;
        let keep = self.sending_group();
        self.cache.insert((id, block), data, g.symbol_size(), block as u8, keep);
        Ok(())
    }

    /// The blocks of the group being sent: the cache keeps them (they take
    /// turns, and each would be re-read for every symbol).
    fn sending_group(&self) -> impl Fn(&(u32, u32)) -> bool + use<S> {
        let sending = self.cursor.and_then(|c| {
            let ix = self.object_index(c.object)?;
            Some((c.object, self.objects[ix].geometry.group_of(c.block)))
        });
        move |&(object, block)| sending.as_ref().is_some_and(|(o, g)| object == *o && g.contains(&block))
    }

    fn fail_object(&mut self, ix: usize, error: ReadError) {
        let o = &mut self.objects[ix];
        o.failed = true;
        let object = o.id;
        self.events.push_back(SenderEvent::ObjectFailed { object, error });
        self.plan.forget(|&(o, _)| o == object);
        if self.cursor.is_some_and(|c| c.object == object) {
            self.advance_object(object);
        }
    }

    fn advance_object(&mut self, finished: u32) {
        let next = finished.wrapping_add(1);
        self.cursor = self.object_index(next).map(|_| Cursor { object: next, block: 0, esi: 0 });
    }

    fn write_source(&mut self, buf: &mut Vec<u8>) -> Option<Transmit> {
        let c = self.cursor?;
        let ix = self.object_index(c.object)?;
        if let Err(e) = self.load_block(ix, c.block) {
            self.fail_object(ix, e);
            return None;
        }
        let o = &self.objects[ix];
        let g = o.geometry;
        let t = usize::from(g.symbol_size());
        let start = c.esi as usize * t;
        let header = DataHeader { object: o.id, kind: o.kind, geometry: g, block: c.block, esi: c.esi };
        let symbol = &self.cache.get(&(o.id, c.block))?[start..start + t];
        // The object info goes with every symbol of chat and rekeys, and with
        // a file's first symbol of each block and its long-header packets.
        let info = o.kind != ObjectKind::File || c.esi == 0 || self.framer.next_is_long();
        let epoch = self.framer.seal.current_epoch();
        let len = self.framer.write_under(epoch, &Body::Data(header.frame(info), symbol), buf, &mut self.stats).ok()?;
        self.objects[ix].epoch.get_or_insert(epoch);
        self.stats.source_sent += 1;
        self.progress(ix);
        // Advance in the interleaved order; a group done gets its proactive share.
        let group = g.group_of(c.block);
        let next = g.next_source(c.block, c.esi);
        if next.is_none_or(|(b, _)| !group.contains(&b)) {
            for block in group {
                let proactive = (f64::from(g.symbols_in(block)) * self.cfg.proactive).ceil() as u32;
                if proactive > 0 {
                    self.plan.add((c.object, block), proactive);
                }
            }
        }
        match next {
            Some((block, esi)) => self.cursor = Some(Cursor { object: c.object, block, esi }),
            None => {
                self.events.push_back(SenderEvent::ObjectSent(c.object));
                self.advance_object(c.object);
            }
        }
        Some(Transmit { len, packet_type: wire::PacketType::Data, scope: Scope::Group })
    }

    /// Counts a source symbol of object `ix` sent; reports each twentieth of a file.
    fn progress(&mut self, ix: usize) {
        let o = &mut self.objects[ix];
        o.sent += 1;
        let (total, len) = (o.geometry.total_symbols().max(1), o.geometry.len());
        let twentieth = o.sent * 20 / total;
        if o.kind == ObjectKind::File && twentieth > o.reported && o.sent < total {
            o.reported = twentieth;
            let sent = (o.sent * u64::from(o.geometry.symbol_size())).min(len);
            self.events.push_back(SenderEvent::ObjectProgress { object: o.id, sent, len });
        }
    }

    fn write_repair(&mut self, buf: &mut Vec<u8>) -> Option<Transmit> {
        while let Some((object, block)) = self.plan.front() {
            match self.object_index(object) {
                Some(ix) if !self.objects[ix].failed => match self.repair_symbol(ix, block, buf) {
                    Ok(t) => {
                        // The round stays open one GRTT for NACKs already in flight.
                        self.plan.sent(self.now, self.grtt.get());
                        return Some(t);
                    }
                    Err(e) => {
                        self.plan.skip_front();
                        if let Some(e) = e {
                            self.fail_object(ix, e);
                        }
                    }
                },
                _ => self.plan.skip_front(),
            }
        }
        None
    }

    /// One fresh repair symbol of (object, block). `Err(None)`: the block has
    /// used up its repair symbols; `Err(Some(_))`: the object cannot be read.
    fn repair_symbol(&mut self, ix: usize, block: u32, buf: &mut Vec<u8>) -> Result<Transmit, Option<ReadError>> {
        self.load_block(ix, block).map_err(Some)?;
        let o = &self.objects[ix];
        let (id, kind, g) = (o.id, o.kind, o.geometry);
        let epoch = o.epoch.unwrap_or_else(|| self.framer.seal.current_epoch());
        let index = self.plan.next_index((id, block), 0, wire::MAX_REPAIR_SYMBOLS).ok_or(None)?;
        let keep = self.sending_group();
        let (packet, _) = self.cache.repair((id, block), index, keep).ok_or(None)?;
        let header = DataHeader { object: id, kind, geometry: g, block, esi: packet.payload_id().encoding_symbol_id() };
        // Repair always carries the object info: it is what a receiver that
        // missed every source symbol of the object (an Objects NACK) hears.
        let body = Body::Data(header.frame(true), packet.data());
        let len = match self.framer.write_under(epoch, &body, buf, &mut self.stats) {
            Ok(len) => len,
            Err(_) => {
                self.stats.repair_unsealable += 1;
                return Err(None);
            }
        };
        self.stats.repair_sent += 1;
        Ok(Transmit { len, packet_type: wire::PacketType::Data, scope: Scope::Group })
    }

    /// Drops the oldest objects past the retention limit once their source is sent.
    fn release_old(&mut self) {
        while self.objects.len() > self.cfg.retain_objects.max(1) {
            let Some(front) = self.objects.front() else { break };
            let id = front.id;
            if !self.was_sent(id, u32::MAX) {
                break;
            }
            self.objects.pop_front();
            self.cache.retain(|&(o, _)| o != id);
            self.plan.forget(|&(o, _)| o == id);
            self.events.push_back(SenderEvent::ObjectReleased(id));
        }
    }
}

#[cfg(test)]
mod tests;
