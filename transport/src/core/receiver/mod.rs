//! The receiver's protocol state machine.
//!
//! Owns everything one node does as a receiver of other nodes' objects:
//! collecting symbols per block, decoding with RaptorQ once enough arrived,
//! handing out decoded blocks in order, noticing what is missing (blocks
//! behind the sender's frontier, whole objects skipped), and NACKing it after
//! a randomized backoff unless another receiver already asked for as much.
//! No clock, no socket: time and datagrams are arguments, feedback packets
//! are pulled with `poll_transmit`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

mod block;
mod config;
mod epochs;
mod event;
mod holdings;
mod nack;
mod remote;
mod resume;

pub use config::ReceiverConfig;
pub use event::ReceiverEvent;
pub use resume::SenderProgress;

pub(in crate::core) use block::Held;

use block::{InBlock, InObject, add_symbol};
use nack::{Nack, RepairerWatch, TimerKey, Timers};
use remote::{Delivery, LossMeter, Remote};

use super::framer::Framer;
use super::{Scope, Transmit};
use crate::geometry::Geometry;
use crate::rng::Rng;
use crate::seal::Seal;
use crate::stats::{DropReason, Stats};
use crate::time::Time;
use crate::wire::{
    self, Body, Command, DataFrame, DataHeader, Feedback, Frontier, Holding, Holdings, NackEntry, ObjectInfo,
    ObjectKind,
};

/// What a receiver tells the `Repairer` that runs it, besides its events.
pub(in crate::core) enum Internal {
    /// Feedback addressed to this node as a repairer: not a peer's NACK to
    /// the sender, so it suppresses nothing of ours.
    Request { from: u32, feedback: Feedback },
    /// An object of `sender` started, with its geometry and the epoch of
    /// the packet that started it here.
    Started { sender: u32, object: u32, kind: ObjectKind, geometry: Geometry, epoch: u32 },
    /// `sender` restarted: what was kept of its last run must go.
    Restarted { sender: u32 },
    /// A holder's summary: the running holder need not repeat it.
    Holdings { holdings: Holdings },
}

/// Requests a repairer may have waiting; past this they are dropped
/// (`DropReason::Overload`). Started and restarted notes come a few per datagram
/// and are taken after each.
const MAX_INTERNAL: usize = 4096;

/// The receiver core (see the module doc).
pub struct Receiver<S> {
    cfg: ReceiverConfig,
    pub(super) framer: Framer<S>,
    pub(super) stats: Stats,
    watch: RepairerWatch,
    /// What a `Repairer` running this receiver must hear (only collected
    /// then: `serve_repairer`).
    internal: Option<VecDeque<Internal>>,
    rng: Rng,
    now: Time,
    remotes: HashMap<u32, Remote>,
    /// The newest unknown epoch already reported (`EpochAhead`).
    epoch_ahead: u32,
    /// Bytes held in blocks (see `ReceiverConfig::max_buffered`).
    buffered: usize,
    timers: Timers,
    outbox: VecDeque<Feedback>,
    events: VecDeque<ReceiverEvent>,
    scratch: Vec<u8>,
    /// Datagrams our socket dropped so far (modulo 2^32), once the driver
    /// counts them: every feedback carries it (`overrun.rs`).
    overflow: Option<u32>,
    /// Authentic data and command packets taken from senders.
    sender_packets: u64,
}

impl<S: Seal> Receiver<S> {
    /// A receiver with `cfg`, opening packets with `seal`.
    pub fn new(cfg: ReceiverConfig, seal: S) -> Receiver<S> {
        Receiver {
            framer: Framer::new(seal, cfg.session, cfg.node, true, cfg.first_seq),
            watch: RepairerWatch::default(),
            internal: None,
            rng: Rng::new(cfg.seed),
            cfg,
            stats: Stats::default(),
            now: Time::ZERO,
            remotes: HashMap::new(),
            epoch_ahead: 0,
            buffered: 0,
            timers: Timers::default(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            scratch: Vec::new(),
            overflow: None,
            sender_packets: 0,
        }
    }

    /// Collects what a `Repairer` running this receiver must hear (`poll_internal`).
    pub(in crate::core) fn serve_repairer(&mut self) {
        self.internal.get_or_insert_with(VecDeque::new);
    }

    /// The next note for the `Repairer` running this receiver.
    pub(in crate::core) fn poll_internal(&mut self) -> Option<Internal> {
        self.internal.as_mut()?.pop_front()
    }

    /// Whether `sender`'s missing objects are asked of a holder (it went
    /// silent, and a holder said what it holds of it): what comes of it now
    /// is catch-up, not live traffic.
    pub fn from_holders(&self, sender: u32) -> bool {
        self.remotes.get(&sender).is_some_and(|r| r.proxy.is_some())
    }

    /// Authentic data and command packets taken from senders so far. Unlike
    /// `stats().packets_in` it does not count other receivers' feedback, so
    /// it stops growing when every sender is gone (receivers still missing
    /// data keep NACKing each other).
    pub fn sender_packets(&self) -> u64 {
        self.sender_packets
    }

    /// The lowest object of `sender` this receiver delivers: the ones below
    /// were sent before it first heard the sender (and, without
    /// `accept_backlog`, are never taken). `None` before it heard of it.
    pub fn first_object(&self, sender: u32) -> Option<u32> {
        self.remotes.get(&sender).map(|r| r.base)
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Bytes of symbols and blocks held now (bounded by `max_buffered`).
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Objects in progress from all senders.
    pub fn objects_in_progress(&self) -> usize {
        self.remotes.values().map(|r| r.objects.len()).sum()
    }

    /// The seal, for the layer above to install new epochs.
    pub fn seal_mut(&mut self) -> &mut S {
        &mut self.framer.seal
    }

    /// This receiver's loss estimate for packets from `sender` (0..1).
    pub fn loss_from(&self, sender: u32) -> Option<f64> {
        self.remotes.get(&sender).map(|r| r.loss.estimate)
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ReceiverEvent> {
        let e = self.events.pop_front();
        match e {
            Some(ref e) if self.outdated(e) => self.poll_event(),
            _ => e,
        }
    }

    /// Whether `e` no longer holds: an epoch reported ahead that the seal
    /// knows by the time the event is read. A driver hands over a batch's
    /// events after handling all its datagrams, so a packet under the epoch
    /// that a rekey earlier in the batch brings is reported ahead, and the
    /// application installs that epoch while reading the rekey's events.
    pub(crate) fn outdated(&self, e: &ReceiverEvent) -> bool {
        matches!(*e, ReceiverEvent::EpochAhead { epoch, .. } if epoch <= self.framer.seal.current_epoch())
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.timers.next()
    }

    /// The next feedback packet, written into `buf`.
    pub fn poll_transmit(&mut self, now: Time, buf: &mut Vec<u8>) -> Option<Transmit> {
        self.now = self.now.max(now);
        let fb = self.outbox.pop_front()?;
        let scope = if fb.relay.is_some() { Scope::Region } else { Scope::Group };
        let len = self.framer.write(&Body::Feedback(fb), buf, &mut self.stats).ok()?;
        self.stats.feedback_sent += 1;
        Some(Transmit { len, packet_type: wire::PacketType::Feedback, scope })
    }

    /// A datagram from the network. The authenticated node id in its header,
    /// not the source address, names the peer.
    pub fn handle_datagram(&mut self, now: Time, datagram: &[u8]) {
        self.now = self.now.max(now);
        let mut scratch = std::mem::take(&mut self.scratch);
        let unknown_before = self.stats.dropped(DropReason::UnknownEpoch);
        let opened = self.framer.open(datagram, &mut scratch, &mut self.stats);
        for node in std::mem::take(&mut self.framer.restarted) {
            self.forget_sender(node);
        }
        if opened.is_none() && self.stats.dropped(DropReason::UnknownEpoch) > unknown_before {
            self.note_unknown_epoch(datagram);
        }
        if let Some((header, body)) = opened {
            if !self.framer.seal.is_live(header.epoch) && !self.old_repair(header.node, &body) {
                self.stats.drop(DropReason::PastEpoch);
                self.scratch = scratch;
                return;
            }
            if Some(header.node) == self.cfg.repairer {
                self.watch.heard = true;
                self.watch.unanswered = 0;
                self.watch.fallen_back = false;
            }
            match body {
                Body::Data(f, symbol) => {
                    self.sender_packets += 1;
                    if let Some(r) = self.remote(header.node) {
                        r.heard_from_itself(now);
                        r.loss.on_seq(header.seq);
                        r.delivery.on_datagram(now, datagram.len());
                        if let Some(h) = self.complete(header.node, &f, symbol.len()) {
                            self.on_data(now, header.node, header.epoch, h, symbol);
                        }
                    }
                }
                Body::Command(c) => {
                    self.sender_packets += 1;
                    if let Some(r) = self.remote(header.node) {
                        r.heard_from_itself(now);
                        r.loss.on_seq(header.seq);
                        self.on_command(now, header.node, c);
                    }
                }
                Body::Feedback(fb) => {
                    if fb.relay.is_some() && fb.relay == Some(self.cfg.node) {
                        // Addressed to us as a repairer: not a peer's NACK to
                        // the sender, so it suppresses nothing of ours.
                        if let Some(queue) = self.internal.as_mut() {
                            if queue.len() < MAX_INTERNAL {
                                queue.push_back(Internal::Request { from: header.node, feedback: fb });
                            } else {
                                self.stats.drop(DropReason::Overload);
                            }
                        }
                    } else {
                        self.on_peer_feedback(now, &fb);
                    }
                }
                Body::Repair(origin, f, symbol) => {
                    if let Some(r) = self.remotes.get_mut(&origin)
                        && let Some((proxy, asked)) = r.proxy.as_mut()
                        && *proxy == header.node
                    {
                        // The holder works through what we asked (paced,
                        // behind live traffic): asking again meanwhile
                        // would only repeat it.
                        *asked = 0;
                        r.quiet_until = now + (r.grtt * 4).max(Duration::from_millis(50));
                    }
                    if origin != self.cfg.node && self.remotes.contains_key(&origin) {
                        if let Some(h) = self.complete(origin, &f, symbol.len()) {
                            self.on_data(now, origin, header.epoch, h, symbol);
                        }
                    } else {
                        self.stats.drop(DropReason::Stale);
                    }
                }
                Body::Holdings(h) => {
                    self.on_holdings(now, header.node, &h);
                    if let Some(queue) = self.internal.as_mut()
                        && queue.len() < MAX_INTERNAL
                    {
                        queue.push_back(Internal::Holdings { holdings: h });
                    }
                }
            }
        }
        self.scratch = scratch;
    }

    /// Timers that fell due: NACKs go out, holdoffs end, probe replies are sent.
    pub fn handle_timeout(&mut self, now: Time) {
        self.now = self.now.max(now);
        let mut due: BTreeMap<u32, Vec<NackEntry>> = BTreeMap::new();
        let mut replies = BTreeSet::new();
        while let Some(key) = self.timers.pop_due(now) {
            match key {
                TimerKey::Block { sender, object, block } => {
                    if let Some(e) = self.block_timer(now, sender, object, block) {
                        due.entry(sender).or_default().push(e);
                    }
                }
                TimerKey::Missing { sender } => due.entry(sender).or_default().extend(self.missing_timer(now, sender)),
                TimerKey::Reply { sender } => {
                    if self.remotes.get(&sender).and_then(|r| r.reply_due).is_some_and(|t| t <= now) {
                        replies.insert(sender);
                    }
                }
            }
        }
        for (&sender, _) in due.iter().filter(|(_, e)| !e.is_empty()) {
            replies.insert(sender);
        }
        for sender in replies {
            let entries = due.remove(&sender).unwrap_or_default();
            self.queue_feedback(now, sender, entries);
        }
    }

    /// The driver's socket dropped `total` datagrams so far (see
    /// `Core::handle_overflow`). The first count is a baseline; when it grows,
    /// every sender with an object in progress hears it at once, in an empty
    /// feedback, and slows down (`overrun.rs`).
    pub fn handle_overflow(&mut self, now: Time, total: u64) {
        let total = total as u32;
        let before = self.overflow.replace(total);
        if before.is_none_or(|b| b == total) {
            return;
        }
        let busy: Vec<u32> = self.remotes.iter().filter(|(_, r)| !r.objects.is_empty()).map(|(&n, _)| n).collect();
        for sender in busy {
            self.queue_feedback(now, sender, Vec::new());
        }
    }

    /// The application does not want `object` of `sender` (a file for
    /// other members): what is buffered of it is dropped, it is not NACKed
    /// again, and its later packets are dropped as those of a finished
    /// object. No further event about it is queued (events queued before
    /// stay). Unknown senders and finished objects are left alone.
    pub fn decline(&mut self, sender: u32, object: u32) {
        let Some(r) = self.remotes.get_mut(&sender) else { return };
        if r.is_done(object) {
            return;
        }
        if let Some(o) = r.objects.remove(&object) {
            self.buffered -= o.blocks.values().map(InBlock::bytes).sum::<usize>();
        }
        r.mark_done(object);
    }

    /// A sender restarted (`Framer::restarted`): its object numbers start
    /// again, so what this receiver knew of its last run must not catch the
    /// new one. Objects of the last run still incomplete are lost.
    /// (A sender only recalled, `Framer::recall`, has nothing here but is
    /// reported all the same: a holder's store keeps its last run.)
    fn forget_sender(&mut self, node: u32) {
        if let Some(r) = self.remotes.remove(&node) {
            for (object, o) in r.objects {
                self.buffered -= o.blocks.values().map(InBlock::bytes).sum::<usize>();
                self.events.push_back(ReceiverEvent::ObjectLost { sender: node, object });
            }
        }
        self.events.push_back(ReceiverEvent::SenderRestarted { sender: node });
        if let Some(queue) = self.internal.as_mut() {
            queue.push_back(Internal::Restarted { sender: node });
        }
    }

    fn remote(&mut self, node: u32) -> Option<&mut Remote> {
        if !self.remotes.contains_key(&node) && self.remotes.len() >= self.cfg.max_senders {
            self.stats.drop(DropReason::Overload);
            return None;
        }
        let grtt = self.cfg.initial_grtt;
        Some(self.remotes.entry(node).or_insert_with(|| Remote {
            base: 0,
            got_command: false,
            done_below: 0,
            done: BTreeSet::new(),
            objects: BTreeMap::new(),
            frontier: None,
            grtt,
            group_loss: 0.0,
            probe: None,
            reply_due: None,
            missing: Nack::Idle,
            loss: LossMeter::default(),
            delivery: Delivery::default(),
            heard: self.now,
            proxy: None,
            quiet_until: Time::ZERO,
            proxy_nacked: Time::ZERO,
            history: None,
        }))
    }

    /// The full header of a symbol of `sender`'s: with the object info the
    /// frame carries, or else what this receiver learned of the object
    /// before. Without either, the symbol is dropped (`NoInfo`) and repaired
    /// like a lost one.
    fn complete(&mut self, sender: u32, f: &DataFrame, symbol_len: usize) -> Option<DataHeader> {
        let r = self.remotes.get(&sender)?;
        let info = match (f.info, r.objects.get(&f.object)) {
            (Some(info), _) => info,
            (None, Some(o)) => ObjectInfo { kind: o.kind, geometry: o.geometry },
            (None, None) => {
                let stale = r.is_done(f.object) || f.object < r.base;
                self.stats.drop(if stale { DropReason::Stale } else { DropReason::NoInfo });
                return None;
            }
        };
        match f.complete(info).and_then(|h| h.check_symbol(symbol_len).map(|()| h)) {
            Ok(h) => Some(h),
            Err(e) => {
                self.stats.drop(DropReason::of(&e));
                None
            }
        }
    }

    fn on_data(&mut self, now: Time, sender: u32, epoch: u32, h: DataHeader, symbol: &[u8]) {
        let cfg_max_objects = self.cfg.max_objects;
        let max_blocks = self.cfg.max_blocks as u32;
        let Some(r) = self.remotes.get_mut(&sender) else { return };
        if r.frontier.is_none() && r.objects.is_empty() && r.done.is_empty() && !r.got_command {
            r.base = h.object;
            r.done_below = h.object;
        }
        // Something new may be missing only when the frontier moves, an object
        // appears or delivery moves a block window: only then is a sweep needed
        // (this is the per-packet path).
        let mut moved = false;
        if !h.is_repair() {
            // Blocks go out in interleaved groups: a block's source is all
            // sent only once its group's last symbol is.
            let f = Frontier { object: h.object, blocks_sent: h.geometry.sent_through(h.block, h.esi) };
            moved = advance(&mut r.frontier, f);
        }
        if r.is_done(h.object) || h.object < r.base {
            self.stats.drop(DropReason::Stale);
            if moved {
                self.sweep(now, sender);
            }
            return;
        }
        if !r.objects.contains_key(&h.object) {
            if r.objects.len() >= cfg_max_objects {
                self.stats.drop(DropReason::Overload);
                return;
            }
            r.objects.insert(
                h.object,
                InObject {
                    kind: h.kind,
                    geometry: h.geometry,
                    next_deliver: 0,
                    swept: 0,
                    blocks: BTreeMap::new(),
                    held: 0,
                    reported: 0,
                },
            );
            if let Some(queue) = self.internal.as_mut() {
                queue.push_back(Internal::Started {
                    sender,
                    object: h.object,
                    kind: h.kind,
                    geometry: h.geometry,
                    epoch,
                });
            }
            self.events.push_back(ReceiverEvent::ObjectStarted {
                sender,
                object: h.object,
                kind: h.kind,
                len: h.geometry.len(),
            });
            moved = true;
        }
        let Some(obj) = r.objects.get_mut(&h.object) else { return };
        if obj.geometry != h.geometry || obj.kind != h.kind {
            // Authentic but contradicting what this sender said before.
            self.stats.drop(DropReason::Invalid);
            return;
        }
        if h.block < obj.next_deliver {
            self.stats.drop(DropReason::Stale);
            if moved {
                self.sweep(now, sender);
            }
            return;
        }
        if h.block >= obj.next_deliver.saturating_add(max_blocks) {
            self.stats.drop(DropReason::Overload);
            return;
        }
        let grtt = r.grtt;
        let block = obj.blocks.entry(h.block).or_insert_with(|| InBlock::new(&h.geometry, h.block));
        if block.decoded.is_some() {
            self.stats.drop(DropReason::Stale);
        } else {
            let before = block.bytes();
            if self.buffered + block.growth(!h.is_repair(), symbol.len()) > self.cfg.max_buffered {
                self.stats.drop(DropReason::Overload);
                return;
            }
            let useful = |b: &InBlock| if b.decoded.is_some() { b.k() } else { b.held().min(b.k()) };
            let held_before = useful(block);
            add_symbol(block, &h, symbol, &mut self.stats);
            self.buffered = self.buffered + block.bytes() - before;
            let gained = u64::from(useful(block).saturating_sub(held_before));
            if block.decoded.is_none() && h.is_repair() {
                // Repair is flowing: wait for the rest of it before asking (again).
                match block.nack {
                    Nack::Holdoff(t) => block.nack = Nack::Holdoff(t.max(now + grtt * 2)),
                    Nack::Waiting(_) => {
                        block.nack = Nack::Holdoff(now + grtt * 2);
                        self.stats.nacks_suppressed += 1;
                    }
                    Nack::Idle => {}
                }
            }
            let decoded = block.decoded.is_some();
            obj.held += gained;
            let g = obj.geometry;
            let step = obj.held * 20 / g.total_symbols();
            if g.blocks() > 1 && step > obj.reported {
                obj.reported = step;
                let got = (obj.held * u64::from(g.symbol_size())).min(g.len());
                self.events.push_back(ReceiverEvent::ObjectProgress { sender, object: h.object, got });
            }
            if decoded {
                self.deliver(sender, h.object);
                moved = true;
            }
        }
        if moved {
            self.sweep(now, sender);
        }
    }

    /// Hands out decoded blocks of `object` in order; completes it when all are out.
    fn deliver(&mut self, sender: u32, object: u32) {
        let Some(r) = self.remotes.get_mut(&sender) else { return };
        let Some(obj) = r.objects.get_mut(&object) else { return };
        while obj.blocks.get(&obj.next_deliver).is_some_and(|b| b.decoded.is_some()) {
            let b = obj.next_deliver;
            let Some(block) = obj.blocks.remove(&b) else { break };
            self.buffered -= block.bytes();
            let Some(mut data) = block.decoded else { break };
            data.truncate(obj.geometry.block_len(b));
            self.events.push_back(ReceiverEvent::ObjectData {
                sender,
                object,
                offset: obj.geometry.block_offset(b),
                data,
            });
            obj.next_deliver += 1;
            obj.swept = obj.swept.max(obj.next_deliver);
        }
        if obj.next_deliver >= obj.geometry.blocks() {
            r.objects.remove(&object);
            r.mark_done(object);
            self.events.push_back(ReceiverEvent::ObjectComplete { sender, object });
        }
    }

    fn on_command(&mut self, now: Time, sender: u32, c: Command) {
        let accept_backlog = self.cfg.accept_backlog;
        let my_node = self.cfg.node;
        let Some(r) = self.remotes.get_mut(&sender) else { return };
        let grtt = Duration::from_micros(u64::from(c.grtt_us)).max(Duration::from_millis(1));
        if grtt < r.grtt.mul_f64(0.75) {
            // Timers armed under the old GRTT (a queue that has since drained, a
            // stall) would keep a NACK waiting for many of the new round trips:
            // shrink what is left of them in the same proportion.
            let scale = grtt.as_secs_f64() / r.grtt.as_secs_f64();
            let sooner = |t: &mut Time| {
                if *t > now {
                    *t = now + (*t - now).mul_f64(scale);
                }
                *t
            };
            for (&object, o) in r.objects.iter_mut() {
                for (&block, b) in o.blocks.iter_mut() {
                    if let Nack::Waiting(t) | Nack::Holdoff(t) = &mut b.nack {
                        self.timers.set(TimerKey::Block { sender, object, block }, sooner(t));
                    }
                }
            }
            if let Nack::Waiting(t) | Nack::Holdoff(t) = &mut r.missing {
                self.timers.set(TimerKey::Missing { sender }, sooner(t));
            }
        }
        r.grtt = grtt;
        r.group_loss = f64::from(c.group_loss) / 65_535.0;
        if !r.got_command {
            r.got_command = true;
            let fresh = r.objects.is_empty() && r.done.is_empty() && r.frontier.is_none();
            if fresh {
                r.base = c.frontier.map_or(c.oldest, |f| f.object);
                r.done_below = r.base;
            }
            if accept_backlog && c.oldest < r.base {
                // Take the sender's backlog too. Objects completed since the first
                // packet stay done: list them before the watermark moves down.
                let completed = r.base..r.done_below;
                if completed.len() <= 1 << 16 {
                    r.done.extend(completed);
                    r.base = c.oldest;
                    r.done_below = c.oldest;
                }
            }
        }
        // Objects the sender no longer holds will not complete.
        if c.oldest > r.done_below {
            let lost: Vec<u32> = (r.done_below..c.oldest).filter(|o| !r.done.contains(o)).take(1 << 16).collect();
            for object in lost {
                if let Some(o) = r.objects.remove(&object) {
                    self.buffered -= o.blocks.values().map(InBlock::bytes).sum::<usize>();
                }
                self.events.push_back(ReceiverEvent::ObjectLost { sender, object });
            }
            r.done_below = c.oldest;
            let below = c.oldest;
            r.done.retain(|&o| o >= below);
        }
        if let Some(f) = c.frontier {
            let _ = advance(&mut r.frontier, f);
        }
        if let Some(p) = c.probe {
            r.probe = Some((p.time, now));
            let asked = p.reply_fraction == u16::MAX || reply_hash(my_node, p.time) < u32::from(p.reply_fraction);
            if asked && r.reply_due.is_none() {
                let at = now + r.grtt.mul_f64(self.rng.next_f64());
                r.reply_due = Some(at);
                self.timers.set(TimerKey::Reply { sender }, at);
            }
        }
        self.sweep(now, sender);
    }

    /// Where a block of `sender`'s object stands here.
    pub(super) fn block_state(&self, sender: u32, object: u32, block: u32) -> Held {
        let Some(r) = self.remotes.get(&sender) else { return Held::Unknown };
        if r.is_done(object) {
            return Held::Delivered;
        }
        match r.objects.get(&object) {
            Some(o) if block < o.next_deliver => Held::Delivered,
            Some(_) => Held::Coming,
            None if object >= r.done_below && r.frontier.is_some_and(|f| object <= f.object) => Held::Coming,
            None => Held::Unknown,
        }
    }

    /// Bytes per second of `sender`'s data arriving here lately, once measured.
    pub(super) fn arrival_rate(&self, sender: u32, now: Time) -> Option<f64> {
        self.remotes.get(&sender)?.delivery.current(now)
    }

    /// The GRTT `sender` advertises (the configured guess before it did).
    pub(super) fn grtt_of(&self, sender: u32) -> Duration {
        self.remotes.get(&sender).map_or(self.cfg.initial_grtt, |r| r.grtt)
    }

    /// NACK backoff factor.
    pub(super) fn backoff_k(&self) -> f64 {
        self.cfg.backoff_k
    }
}

/// Moves a frontier forward (never back); true if it moved.
fn advance(frontier: &mut Option<Frontier>, f: Frontier) -> bool {
    let newer = match *frontier {
        None => true,
        Some(old) => (f.object, f.blocks_sent) > (old.object, old.blocks_sent),
    };
    if newer {
        *frontier = Some(f);
    }
    newer
}

/// Spreads receivers over [0, 2^16) per probe, so a probe's reply fraction picks a few of them.
fn reply_hash(node: u32, probe_time: u64) -> u32 {
    let mut x = (u64::from(node) << 32) ^ probe_time;
    x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    x = (x ^ (x >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    ((x ^ (x >> 33)) & 0xffff) as u32
}
