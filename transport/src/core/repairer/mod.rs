//! The repairer's protocol state machine: RMTP's designated receiver, with
//! fresh RaptorQ symbols instead of retransmissions.
//!
//! Owns what one node does as its region's repairer. It runs an ordinary
//! `Receiver` (collecting, decoding and delivering, and NACKing the sender
//! upstream for itself), keeps the blocks it decoded (bounded by bytes), and
//! answers the NACKs its region's members address to it with repair symbols
//! from its own ESI range, scoped to the region so they never cross the link
//! to other regions. A NACK for a block it is still collecting waits for that
//! block; one for a block it no longer holds is passed upstream as one NACK
//! per block carrying the largest count its region asked for. It sends no
//! source data and no commands of its own. No clock, no socket.
//!
//! It is also a holder: a sender silent for `silent_after` (gone, or out of
//! range) cannot repair what it sent, so a repairer that holds blocks of it
//! says so every `summary_interval` in a `Holdings` packet (unless another
//! holder just said as much). A receiver that missed those objects learns
//! from it that they exist and asks this holder, which answers from its
//! cache as for its region: the group heals without its sender (RMTP's
//! designated receivers, generalised to any member that holds the data).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use super::block_cache::BlockCache;
use super::receiver::{Held, Internal};
use super::repair::{Ask, RepairPlan};
use super::{Receiver, ReceiverConfig, ReceiverEvent, Scope, Transmit};
use crate::budget::RepairBudget;
use crate::geometry::Geometry;
use crate::pacing::Pacer;
use crate::seal::Seal;
use crate::stats::{DropReason, Stats};
use crate::time::Time;
use crate::wire::{self, Body, DataHeader, Feedback, Holding, Holdings, MAX_HOLDINGS, NackEntry, ObjectKind};
use history::Readers;

/// How a repairer behaves.
#[derive(Clone, Debug)]
pub struct RepairerConfig {
    /// Its receiver (node id, session, timers). A repairer may itself have an
    /// upstream repairer (`receiver.repairer`): hierarchies nest.
    pub receiver: ReceiverConfig,
    /// First repair index of this repairer's range. Repair symbol *j* of a
    /// block has ESI K_b + *j*; the sender uses *j* from 0, so ranges of
    /// repairers that can reach the same receivers must not overlap. The
    /// default leaves the sender the first 2^19.
    pub first_repair: u32,
    /// Repair symbols per block in the range.
    pub range: u32,
    /// Bytes of decoded blocks (and their encoders) kept to answer from.
    /// 0: not serving a region (an ordinary receiver that may be switched
    /// to repairing by nothing but a new core).
    pub cache_bytes: usize,
    /// Answer `needed / (1 - p)` symbols, `p` the loss the asking member
    /// reports (capped, see `budget`), so it likely completes in one round
    /// despite losing repair too.
    pub loss_margin: bool,
    /// The largest share of `rate` (or of 1 Gbit/s when unpaced) one member's
    /// NACKs may take (`budget::RepairBudget`).
    pub repair_share: f64,
    /// Pace local repair at the rate the repaired sender's data arrives
    /// here (never under `rate::FLOOR`): the region carries at least what
    /// reaches it. Off by default: on `regions-4x25` it finished 22.2 s
    /// against 18.5 s unpaced, since the region's cell is faster than the
    /// link feeding it; off, `rate` paces and the budget bounds each member.
    pub follow: bool,
    /// Fixed pacing rate of local repair in bytes per second, without
    /// `follow` (0: as fast as polled).
    pub rate: u64,
    /// Pacer burst in bytes.
    pub burst: u64,
    /// Keep receiving objects the application declined (a region's
    /// repairer: its region may want them); off, a member that holds only
    /// what it reads.
    pub keep_declined: bool,
    /// Say what it holds of silent senders (`Holdings`) this often (zero: never).
    pub summary_interval: Duration,
    /// Stop saying so once a sender has been silent this long.
    pub hold_for: Duration,
    /// Pace repair at this share of the fastest rate any sender's data
    /// arrived here at (never under `rate::FLOOR`), instead of `rate`: a
    /// member repairing for a sender gone silent, behind live traffic.
    pub hold_pace: Option<f64>,
}

impl Default for RepairerConfig {
    fn default() -> RepairerConfig {
        RepairerConfig {
            receiver: ReceiverConfig::default(),
            first_repair: 1 << 19,
            range: 1 << 16,
            cache_bytes: 32 << 20,
            loss_margin: true,
            repair_share: 0.5,
            follow: false,
            rate: 0,
            burst: 8 * 1500,
            keep_declined: true,
            summary_interval: Duration::from_secs(3),
            hold_for: Duration::from_secs(30 * 60),
            hold_pace: None,
        }
    }
}

/// The least repair a member's budget holds: two blocks of the default largest.
const BUDGET_FLOOR: u32 = 2 * crate::geometry::DEFAULT_MAX_BLOCK as u32;

/// (origin sender, object, block).
type Key = (u32, u32, u32);

/// What a holder knows of an object it may repair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldObject {
    /// Chat, file, rekey.
    pub kind: ObjectKind,
    /// Its size and blocks.
    pub geometry: Geometry,
    /// The epoch it was sent in (the first packet of it heard here): its
    /// repair is sealed under that epoch and no other, so a member that
    /// joined since cannot read it.
    pub epoch: u32,
}

/// The repairer core (see the module doc). Its events are its receiver's.
pub struct Repairer<S> {
    cfg: RepairerConfig,
    inner: Receiver<S>,
    now: Time,
    pacer: Pacer,
    /// Objects heard of: their kind, geometry and epoch (bounded).
    objects: HashMap<(u32, u32), HeldObject>,
    object_order: VecDeque<(u32, u32)>,
    /// Decoded blocks kept to answer from.
    cache: BlockCache<Key>,
    /// Repair rounds and the symbols queued.
    plan: RepairPlan<Key>,
    /// Requests for blocks still being collected: the largest count asked,
    /// and the largest loss reported by those asking.
    pending: HashMap<Key, (u32, u16)>,
    /// Who may be repaired what (`history.rs`).
    readers: Readers,
    /// When each block was last passed upstream.
    forwarded: HashMap<Key, Time>,
    /// Acknowledgements owed to members whose NACKs wait (one per sender).
    acks: VecDeque<u32>,
    last_ack: Option<Time>,
    events: VecDeque<ReceiverEvent>,
    /// When our next summary of silent senders is due, and whether it is.
    summary_at: Option<Time>,
    summary_ready: bool,
    /// When silence was last looked for (it is, every `summary_interval`,
    /// while anything is cached).
    last_check: Time,
    /// The fastest any sender's data arrived here, bytes per second.
    peak_arrival: f64,
    /// What other holders said lately, per silent sender: how far, and when.
    peer_summaries: HashMap<u32, (wire::Frontier, Time)>,
    /// What the layer above's store holds (an archive; empty otherwise).
    archive: archive::Index,
}

impl<S: Seal> Repairer<S> {
    /// The socket overflowed: its receiver tells the senders (`Receiver::handle_overflow`).
    pub fn handle_overflow(&mut self, now: Time, total: u64) {
        self.inner.handle_overflow(now, total);
    }

    /// A repairer with `cfg`, opening and sealing packets with `seal`.
    pub fn new(cfg: RepairerConfig, seal: S) -> Repairer<S> {
        let mut inner = Receiver::new(cfg.receiver.clone(), seal);
        inner.serve_repairer();
        let cache = BlockCache::new(cfg.cache_bytes);
        let plan = RepairPlan::new(RepairBudget::new(cfg.repair_share, BUDGET_FLOOR), cfg.loss_margin);
        Repairer {
            pacer: Pacer::new(if cfg.follow { crate::rate::FLOOR } else { cfg.rate }, cfg.burst),
            cfg,
            inner,
            now: Time::ZERO,
            objects: HashMap::new(),
            object_order: VecDeque::new(),
            cache,
            plan,
            pending: HashMap::new(),
            readers: Readers::default(),
            forwarded: HashMap::new(),
            acks: VecDeque::new(),
            last_ack: None,
            events: VecDeque::new(),
            summary_at: None,
            summary_ready: false,
            last_check: Time::ZERO,
            peak_arrival: 0.0,
            peer_summaries: HashMap::new(),
            archive: archive::Index::default(),
        }
    }

    /// Counters (its receiver's, with the repairer's own).
    pub fn stats(&self) -> &Stats {
        self.inner.stats()
    }

    /// The receiver it runs.
    pub fn receiver(&self) -> &Receiver<S> {
        &self.inner
    }

    /// The seal, for the layer above to install new epochs.
    pub fn seal_mut(&mut self) -> &mut S {
        self.inner.seal_mut()
    }

    /// Bytes of decoded blocks held for repair (bounded by `cache_bytes`).
    pub fn cached_bytes(&self) -> usize {
        self.cache.bytes()
    }

    /// True if it answers its region (it keeps blocks to answer from).
    pub fn serving(&self) -> bool {
        self.cfg.cache_bytes > 0
    }

    /// Authentic packets taken from senders (see `Receiver::sender_packets`).
    pub fn sender_packets(&self) -> u64 {
        self.inner.sender_packets()
    }

    /// Names the repairer upstream of this one (see `Receiver::set_repairer`).
    pub fn set_repairer(&mut self, repairer: Option<u32>) {
        self.inner.set_repairer(repairer);
    }

    /// The application does not want `object` of `sender` (see
    /// `Receiver::decline`). A region's repairer (`keep_declined`) keeps
    /// receiving it, since its region may need its repairs; anyone else
    /// declines it.
    pub fn decline(&mut self, sender: u32, object: u32) {
        if !self.serving() || !self.cfg.keep_declined {
            self.inner.decline(sender, object);
        }
    }

    /// What its receiver has of each sender (see `Receiver::progress`).
    pub fn progress(&self) -> Vec<crate::core::SenderProgress> {
        self.inner.progress()
    }

    /// Takes back an earlier run's progress (see `Receiver::resume_sender`).
    pub fn resume_sender(&mut self, now: Time, p: &crate::core::SenderProgress) {
        self.inner.resume_sender(now, p);
    }

    /// The next event of its receiver (see `Receiver::poll_event`).
    pub fn poll_event(&mut self) -> Option<ReceiverEvent> {
        let e = self.events.pop_front();
        match e {
            Some(ref e) if self.inner.outdated(e) => self.poll_event(),
            _ => e,
        }
    }

    /// A datagram from the network.
    pub fn handle_datagram(&mut self, now: Time, datagram: &[u8]) {
        self.now = self.now.max(now);
        self.inner.handle_datagram(now, datagram);
        self.absorb(now);
    }

    /// Time passed: its receiver's timers fire, repair rounds close.
    pub fn handle_timeout(&mut self, now: Time) {
        self.now = self.now.max(now);
        self.inner.handle_timeout(now);
        self.absorb(now);
        if self.summary_at.is_some_and(|t| t <= now) {
            self.summary_at = None;
            self.summary_ready = true;
        }
        // Silence is looked for once per interval, not on every timeout
        // (they come thousands a second while data flows).
        if self.summary_at.is_none() && now.saturating_since(self.last_check) >= self.cfg.summary_interval {
            self.plan_summary(now);
        }
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Option<Time> {
        let mut t = self.inner.poll_timeout();
        if let Some(s) = self.summary_at {
            t = Some(t.map_or(s, |t| t.min(s)));
        }
        if self.summary_ready {
            t = Some(self.now);
        }
        let holds = self.cache.bytes() > 0 || !self.archive.is_empty();
        if self.summary_at.is_none() && !self.cfg.summary_interval.is_zero() && holds {
            let check = self.last_check + self.cfg.summary_interval;
            t = Some(t.map_or(check, |t| t.min(check)));
        }
        if self.plan.has_jobs() {
            let ready = self.pacer.next_ready(self.now, self.max_packet());
            t = Some(t.map_or(ready, |t| t.min(ready)));
        }
        t
    }

    /// The next datagram: its receiver's feedback first, then acknowledgements, then local repair.
    pub fn poll_transmit(&mut self, now: Time, buf: &mut Vec<u8>) -> Option<Transmit> {
        self.now = self.now.max(now);
        if let Some(t) = self.inner.poll_transmit(now, buf) {
            return Some(t);
        }
        if self.summary_ready {
            self.summary_ready = false;
            if let Some(h) = self.summary(now) {
                let len = self.inner.framer.write(&Body::Holdings(h), buf, &mut self.inner.stats).ok()?;
                self.inner.stats.holdings_sent += 1;
                return Some(Transmit { len, packet_type: wire::PacketType::Holdings, scope: Scope::Group });
            }
        }
        if let Some(origin) = self.acks.pop_front() {
            // "Heard you, still collecting": keeps members from giving up on us.
            let me = self.cfg.receiver.node;
            let fb = Feedback {
                target: origin,
                echo: None,
                loss: 0,
                relay: Some(me),
                overflow: None,
                received: None,
                entries: Vec::new(),
            };
            let len = self.inner.framer.write(&Body::Feedback(fb), buf, &mut self.inner.stats).ok()?;
            self.inner.stats.feedback_sent += 1;
            return Some(Transmit { len, packet_type: wire::PacketType::Feedback, scope: Scope::Region });
        }
        if self.cfg.follow
            && let Some((origin, _, _)) = self.plan.front()
        {
            let rate = self.follow_rate(now, origin);
            if rate != self.pacer.rate() {
                self.pacer.set_rate(rate);
            }
        }
        if let Some(rate) = self.hold_rate()
            && rate != self.pacer.rate()
        {
            self.pacer.set_rate(rate);
        }
        if !self.plan.has_jobs() || !self.pacer.ready(now, self.max_packet()) {
            return None;
        }
        let t = self.write_repair(now, buf)?;
        self.pacer.spend(now, t.len);
        Some(t)
    }

    /// The pacer's unit: a relayed packet of the usual symbol.
    fn max_packet(&self) -> usize {
        wire::symbol_packet_len(super::DEFAULT_SYMBOL_SIZE, self.inner.framer.seal.tag_len())
    }

    /// Takes what the receiver produced: keeps decoded blocks, answers what waited for them,
    /// then serves the requests addressed to us.
    fn absorb(&mut self, now: Time) {
        // Restarts and starts at once, requests after the blocks decoded
        // with them are kept (a request may be for one of those).
        let mut requests = Vec::new();
        while let Some(note) = self.inner.poll_internal() {
            match note {
                Internal::Restarted { sender } => self.forget_origin(sender),
                Internal::Started { sender, object, kind, geometry, epoch } => {
                    self.remember_object(sender, object, HeldObject { kind, geometry, epoch })
                }
                Internal::Request { from, feedback } => requests.push((from, feedback)),
                Internal::Holdings { holdings } => {
                    for h in holdings.entries {
                        self.peer_summaries.insert(h.origin, (h.frontier, now));
                    }
                }
            }
        }
        while let Some(e) = self.inner.poll_event() {
            if let ReceiverEvent::ObjectData { sender, object, offset, data } = &e {
                self.keep_block(now, *sender, *object, *offset, data);
            }
            self.events.push_back(e);
        }
        for (from, fb) in requests {
            self.on_request(now, from, &fb);
        }
    }

    /// Arms the next summary while some silent sender has blocks here.
    fn plan_summary(&mut self, now: Time) {
        self.last_check = now;
        if self.summary_at.is_some() || self.summary_ready || self.cfg.summary_interval.is_zero() || !self.serving() {
            return;
        }
        if self.held_silent(now).is_empty() && !self.readers.shares() {
            return;
        }
        // Holders spread over the interval by node id: the first to speak
        // usually silences the rest for the round.
        let spread = f64::from(self.cfg.receiver.node % 97) / 97.0;
        self.summary_at = Some(now + self.cfg.summary_interval.mul_f64(1.0 + spread));
    }

    /// Silent senders with blocks in our cache (not silent past `hold_for`):
    /// what we hold of each.
    fn held_silent(&self, now: Time) -> Vec<Holding> {
        let mut out = Vec::new();
        for (origin, frontier, base) in self.inner.silent_senders(now) {
            let silent_for = self.inner.heard_at(origin).map_or(Duration::ZERO, |t| now.saturating_since(t));
            if silent_for >= self.cfg.hold_for {
                continue;
            }
            let cached = self.cache.keys().filter(|k| k.0 == origin).map(|k| k.1).min();
            let oldest = match (cached, self.archive.oldest(origin)) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(o) => o,
                    None => continue,
                },
            };
            out.push(Holding { origin, frontier, oldest: oldest.max(base).min(frontier.object) });
            if out.len() == MAX_HOLDINGS {
                return out;
            }
        }
        // An archive's senders unheard since it started: silent as far as it knows.
        let room = MAX_HOLDINGS - out.len();
        out.extend(self.archived_unheard().into_iter().take(room));
        out
    }

    /// Our summary, without what another holder said as much of within the
    /// interval; and the shared history, whatever others said.
    fn summary(&mut self, now: Time) -> Option<Holdings> {
        let interval = self.cfg.summary_interval;
        self.peer_summaries.retain(|_, (_, at)| now.saturating_since(*at) < interval);
        let mut entries: Vec<Holding> = self
            .held_silent(now)
            .into_iter()
            .filter(|h| {
                self.peer_summaries
                    .get(&h.origin)
                    .is_none_or(|(f, _)| (f.object, f.blocks_sent) < (h.frontier.object, h.frontier.blocks_sent))
            })
            .collect();
        self.offer_shared(&mut entries);
        self.plan_summary(now);
        (!entries.is_empty()).then_some(Holdings { entries })
    }

    fn remember_object(&mut self, origin: u32, object: u32, held: HeldObject) {
        if !self.serving() {
            return;
        }
        if self.objects.insert((origin, object), held).is_none() {
            self.object_order.push_back((origin, object));
            while self.object_order.len() > self.cfg.receiver.max_objects.max(16) {
                if let Some(old) = self.object_order.pop_front() {
                    // Its blocks cannot be answered for without its geometry.
                    self.objects.remove(&old);
                    self.cache.retain(|&(o, obj, _)| (o, obj) != old);
                    self.plan.forget(|&(o, obj, _)| (o, obj) == old);
                }
            }
        }
    }

    fn keep_block(&mut self, now: Time, origin: u32, object: u32, offset: u64, data: &[u8]) {
        if !self.serving() {
            return;
        }
        let Some(g) = self.objects.get(&(origin, object)).map(|h| h.geometry) else { return };
        let full = u64::from(g.symbol_size()) * u64::from(g.block_symbols());
        let Ok(block) = u32::try_from(offset / full.max(1)) else { return };
        if block >= g.blocks() {
            return;
        }
        if let Some(rate) = self.inner.arrival_rate(origin, now) {
            self.peak_arrival = self.peak_arrival.max(rate);
        }
        let mut padded = data.to_vec();
        padded.resize(g.padded_block_len(block), 0);
        let key = (origin, object, block);
        let dropped = self.cache.insert(key, padded, g.symbol_size(), block as u8, |_| false);
        self.forget_blocks(&dropped);
        if let Some((needed, loss)) = self.pending.remove(&key) {
            let needed = if needed == u32::MAX { u32::from(g.symbols_in(block)) } else { needed };
            // Several members may wait on it: one round, charged to none of them.
            self.answer(now, None, loss, key, needed);
        }
    }

    /// `origin` restarted and numbers its objects from 0 again: nothing kept
    /// of its last run may answer for the new one.
    fn forget_origin(&mut self, origin: u32) {
        self.objects.retain(|&(o, _), _| o != origin);
        self.object_order.retain(|&(o, _)| o != origin);
        self.cache.retain(|k| k.0 != origin);
        self.plan.forget(|k| k.0 == origin);
        self.pending.retain(|k, _| k.0 != origin);
        self.forwarded.retain(|k, _| k.0 != origin);
        self.archive.forget_origin(origin);
    }

    /// Blocks the cache dropped: their rounds and indices go too.
    fn forget_blocks(&mut self, dropped: &[Key]) {
        if !dropped.is_empty() {
            self.plan.forget(|k| dropped.contains(k));
        }
    }

    /// A member's NACKs, addressed to us.
    fn on_request(&mut self, now: Time, from: u32, fb: &Feedback) {
        if !self.serving() {
            return;
        }
        let origin = fb.target;
        let mut upstream = Vec::new();
        let mut waiting = false;
        for e in &fb.entries {
            match *e {
                NackEntry::Block { object, .. } if !self.may_serve(from, origin, object) => {}
                NackEntry::Block { object, block, needed } => {
                    let key = (origin, object, block);
                    if self.cache.contains(&key) {
                        self.answer(now, Some(from), fb.loss, key, needed);
                    } else if self.archive.holds(origin, object) {
                        waiting |= self.want(key, needed, fb.loss);
                    } else if self.wait_or_forward(now, key, (needed, fb.loss), &mut upstream) {
                        waiting = true;
                    }
                }
                NackEntry::Objects { first, bitmap } => {
                    for i in (0..32).filter(|i| bitmap & (1 << i) != 0) {
                        let object = first.wrapping_add(i);
                        if !self.may_serve(from, origin, object) {
                            continue;
                        }
                        let key = (origin, object, 0);
                        match self.objects.get(&(origin, object)) {
                            Some(h) if self.cache.contains(&key) => {
                                let k = u32::from(h.geometry.symbols_in(0));
                                self.answer(now, Some(from), fb.loss, key, k);
                            }
                            _ if self.archive.holds(origin, object) => {
                                waiting |= self.want(key, u32::MAX, fb.loss);
                            }
                            _ => {
                                if self.inner.block_state(origin, object, 0) == Held::Coming {
                                    // Its size is not known yet: the whole first block.
                                    let p = self.pending.entry(key).or_insert((u32::MAX, 0));
                                    *p = (u32::MAX, p.1.max(fb.loss));
                                    waiting = true;
                                } else if self.may_forward(now, key) {
                                    upstream.push(NackEntry::Objects { first: object, bitmap: 1 });
                                }
                            }
                        }
                    }
                }
            }
        }
        if !upstream.is_empty() {
            self.inner.stats.forwarded_nacks += upstream.len() as u64;
            self.inner.queue_feedback(now, origin, upstream);
        } else if waiting {
            let quiet = self.inner.grtt_of(origin);
            if self.last_ack.is_none_or(|t| now.saturating_since(t) >= quiet) && !self.acks.contains(&origin) {
                self.last_ack = Some(now);
                self.acks.push_back(origin);
            }
        }
        if self.pending.len() > 65_536 {
            self.pending.clear();
            self.inner.stats.drop(DropReason::Overload);
        }
    }

    /// A block we do not hold: wait for it if our receiver is collecting it
    /// (true), or pass the request upstream (at most once per NACK holdoff).
    fn wait_or_forward(&mut self, now: Time, key: Key, ask: (u32, u16), upstream: &mut Vec<NackEntry>) -> bool {
        let (origin, object, block) = key;
        let (needed, loss) = ask;
        if self.inner.block_state(origin, object, block) == Held::Coming {
            let p = self.pending.entry(key).or_insert((0, 0));
            *p = (p.0.max(needed), p.1.max(loss));
            return true;
        }
        if self.may_forward(now, key) {
            upstream.push(NackEntry::Block { object, block, needed });
        }
        false
    }

    /// With `hold_pace`: the rate repair goes at, `hold_pace` of the fastest
    /// data ever arrived here (before any arrived, an archive just
    /// restarted: the fixed `rate`), never under `rate::FLOOR`.
    fn hold_rate(&self) -> Option<u64> {
        let share = self.cfg.hold_pace?;
        let rate = if self.peak_arrival > 0.0 { (self.peak_arrival * share) as u64 } else { self.cfg.rate };
        Some(rate.max(crate::rate::FLOOR))
    }

    /// The rate `origin`'s data arrives here, never under `rate::FLOOR`.
    fn follow_rate(&self, now: Time, origin: u32) -> u64 {
        let arriving = self.inner.arrival_rate(origin, now).map_or(0, |r| r as u64);
        arriving.max(crate::rate::FLOOR)
    }

    fn may_forward(&mut self, now: Time, key: Key) -> bool {
        let holdoff = self.inner.grtt_of(key.0).mul_f64(self.inner.backoff_k().max(1.0));
        if self.forwarded.get(&key).is_some_and(|t| now.saturating_since(*t) < holdoff) {
            return false;
        }
        if self.forwarded.len() > 65_536 {
            self.forwarded.retain(|_, t| now.saturating_since(*t) < holdoff);
        }
        self.forwarded.insert(key, now);
        true
    }

    /// Plans repair of a cached block: a new round, or a top-up of the
    /// open one. A member's request (`from`) is charged to its budget.
    fn answer(&mut self, now: Time, from: Option<u32>, loss: u16, key: Key, needed: u32) {
        let Some(&HeldObject { kind, geometry: g, .. }) = self.objects.get(&(key.0, key.1)) else { return };
        if !self.cache.contains(&key) {
            return;
        }
        // A requester's budget is sized by the rate its repair goes at
        // (a holder's: its pace, not the fixed rate it starts from).
        let rate =
            if self.cfg.follow { self.follow_rate(now, key.0) } else { self.hold_rate().unwrap_or(self.cfg.rate) };
        let ask = Ask { from, loss, block: key.2, needed };
        let k = u32::from(g.symbols_in(key.2));
        if self.plan.request(now, key, ask, k, rate, g.symbol_size()).is_err() {
            self.inner.stats.drop(DropReason::Invalid);
        }
        // Chat and rekeys are small and waited for (the member shows each
        // sender's chat in order): they go before any file's repair.
        if kind != ObjectKind::File {
            self.plan.hurry(key);
        }
        self.inner.stats.repair_refused = self.plan.refused();
    }

    fn write_repair(&mut self, now: Time, buf: &mut Vec<u8>) -> Option<Transmit> {
        while let Some(key) = self.plan.front() {
            match self.repair_symbol(key, buf) {
                Some(t) => {
                    self.plan.sent(now, self.inner.grtt_of(key.0));
                    return Some(t);
                }
                None => self.plan.skip_front(),
            }
        }
        None
    }

    /// One fresh repair symbol of a cached block from our range, sealed for the region.
    fn repair_symbol(&mut self, key: Key, buf: &mut Vec<u8>) -> Option<Transmit> {
        let &HeldObject { kind, geometry: g, epoch } = self.objects.get(&(key.0, key.1))?;
        if !self.cache.contains(&key) {
            return None;
        }
        let index = self.plan.next_index(key, self.cfg.first_repair, self.cfg.range)?;
        let (packet, dropped) = self.cache.repair(key, index, |_| false)?;
        self.forget_blocks(&dropped);
        let esi = packet.payload_id().encoding_symbol_id();
        let header = DataHeader { object: key.1, kind, geometry: g, block: key.2, esi };
        let body = Body::Repair(key.0, header.frame(true), packet.data());
        // Under the object's own epoch: a member that joined since cannot
        // read it (the history policy `joined`); without that key, nothing.
        // The shared history goes under the current one.
        let epoch = if self.is_shared(key.0, key.1) { self.inner.framer.seal.current_epoch() } else { epoch };
        let Ok(len) = self.inner.framer.write_under(epoch, &body, buf, &mut self.inner.stats) else {
            self.inner.stats.repair_unsealable += 1;
            return None;
        };
        self.inner.stats.local_repairs += 1;
        Some(Transmit { len, packet_type: wire::PacketType::Repair, scope: Scope::Region })
    }
}

mod archive;
mod history;
#[cfg(test)]
mod holders;
#[cfg(test)]
mod tests;
