//! The member task: one loop that waits on our commands, the chat order's
//! next deadline, the beacon (while XMPP is down), the transport and XMPP,
//! and hands what comes to a method of [`Running`], which holds the loop's
//! state between turns.
//!
//! Owns that state (what was shown, who is in the room and heard on
//! multicast, the keys held, our region's repairer, our files in flight)
//! and the leave. It must not decode, seal, verify or order anything
//! itself: `messages`, `room`, `files`, `receipts` and the group modules
//! do, and the transport drivers run on their own tasks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Duration;

use lsim_keymgmt::client::Registration;
use lsim_keymgmt::key::SecretKey;
use lsim_keymgmt::resync::ResyncGate;
use lsim_transport::wire::ObjectKind;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::files::{on_file_event, restrict, send_file};
use super::messages::{Reading, chat_event, private_chat, send_chat};
use super::receipts::{self, Awaiting};
use super::room::{RoomKeys, on_room_event, repairer_change, use_repairer};
use super::transport::{FromTransport, Transport, flush};
use super::{Command, MemberConfig, MemberEvent, Placement, Via};
use crate::group::chat::{ChatMessage, Dedup, decode_beacon, encode_beacon};
use crate::group::inbox::InboxEvent;
use crate::group::order::{ChatOrder, Released};
use crate::group::trust::KnownKeys;
use crate::group::{receipt, signed};
use crate::xmpp::client::{Client, ClientEvent};
use crate::xmpp::payload::Payload;
use crate::xmpp::room::{Occupant, RoomEvent};

/// The member task's state between two turns of its loop.
pub(super) struct Running {
    /// Our last shared position (its text), shared again at each rekey: a
    /// member that just joined cannot read what was sent before.
    own_position: Option<String>,
    /// When our last positions went (at most `POSITIONS_PER_SECOND` a second).
    positions_sent: std::collections::VecDeque<std::time::Instant>,
    cfg: MemberConfig,
    /// Our XMPP connection: the room, and chat through it.
    xmpp: Client,
    /// Our login at the key server: resyncs, file key wraps, the leave.
    registration: Registration,
    transport: Transport,
    /// From [`super::Member`].
    commands: mpsc::Receiver<Command>,
    /// To [`super::Member`].
    events: mpsc::Sender<MemberEvent>,
    /// Every (epoch, group key) held while in the group.
    held: Vec<(u32, SecretKey)>,
    /// Chat shown already, however it came.
    dedup: Dedup,
    /// Multicast chat in each sender's order.
    order: ChatOrder,
    /// The keys users signed with before (a changed one is flagged).
    trust: KnownKeys,
    /// Who is in the room, by nick (not us).
    roster: BTreeMap<String, Occupant>,
    /// Our files still sending their source symbols.
    sent_files: HashSet<u32>,
    /// Our files for some members only: who has not confirmed yet.
    awaiting: HashMap<u32, Awaiting>,
    /// Files arriving: the last 5 % step reported.
    progress: HashMap<(u32, u32), u64>,
    xmpp_online: bool,
    /// The XMPP client task ended for good: its events are no longer awaited.
    xmpp_ended: bool,
    /// While XMPP is down: who was heard on multicast, and when.
    heard: HashMap<String, Instant>,
    /// The multicast presence last reported.
    shown: Vec<String>,
    beacon: tokio::time::Interval,
    /// At most one resync with the key server every few seconds.
    resync: ResyncGate,
    /// Our region's repairer, as the room shows it: (nick, node).
    repairer: Option<(String, u32)>,
}

/// Starts the member task, which serves first the room events seen while
/// starting (`early`), then its loop, until the member leaves. Returns
/// where its commands go, and the task, which ends with every (epoch,
/// group key) the member held.
pub(super) fn spawn(
    cfg: MemberConfig,
    xmpp: Client,
    registration: Registration,
    transport: Transport,
    events: mpsc::Sender<MemberEvent>,
    early: Vec<RoomEvent>,
) -> (mpsc::Sender<Command>, JoinHandle<Vec<(u32, SecretKey)>>) {
    let (to_task, commands) = mpsc::channel(64);
    let task = tokio::spawn(async move {
        let mut running = Running {
            held: transport.initial.clone().into_iter().collect(),
            dedup: Dedup::new(4096),
            trust: cfg.known_keys.as_deref().map(KnownKeys::load).unwrap_or_default(),
            order: ChatOrder::new(cfg.chat_order_wait),
            roster: BTreeMap::new(),
            sent_files: HashSet::new(),
            awaiting: HashMap::new(),
            progress: HashMap::new(),
            xmpp_online: true,
            xmpp_ended: false,
            heard: HashMap::new(),
            shown: Vec::new(),
            beacon: tokio::time::interval(cfg.beacon_interval.max(Duration::from_millis(50))),
            resync: ResyncGate::default(),
            positions_sent: std::collections::VecDeque::new(),
            own_position: None,
            repairer: None,
            cfg,
            xmpp,
            registration,
            transport,
            commands,
            events,
        };
        // The room as it was when we came in: who is here already.
        for event in early {
            running.on_room(event).await;
        }
        running.run().await
    });
    (to_task, task)
}

impl Running {
    /// The loop: one source served a turn, until we leave.
    async fn run(mut self) -> Vec<(u32, SecretKey)> {
        loop {
            tokio::select! {
                cmd = self.commands.recv() => {
                    if self.on_command(cmd).await.is_break() {
                        return self.leave().await;
                    }
                }
                () = order_due(order_deadline(&self.order)) => self.on_order_due().await,
                () = order_due(self.resync.ahead_due_at()) => self.on_epoch_claim_due().await,
                _ = self.beacon.tick(), if !self.xmpp_online => self.on_beacon().await,
                Some(msg) = self.transport.from_transport.recv() => self.on_transport(msg).await,
                ev = self.xmpp.next_event(), if !self.xmpp_ended => self.on_xmpp(ev).await,
            }
        }
    }

    /// Reports `ev` (`&mut`: the state is not `Sync`, and the task's
    /// future must be `Send`).
    async fn emit(&mut self, ev: MemberEvent) {
        let _ = self.events.send(ev).await;
    }

    /// A command from [`super::Member`]; `Break`: leave (asked for, or the
    /// member's handle is gone).
    async fn on_command(&mut self, cmd: Option<Command>) -> ControlFlow<()> {
        match cmd {
            Some(Command::Chat(text, to)) if !to.is_empty() => self.chat_private(&text, &to).await,
            Some(Command::Chat(text, _)) => self.chat(&text).await,
            Some(Command::File(path, to)) => self.file(path, &to).await,
            None | Some(Command::Leave) => return ControlFlow::Break(()),
        }
        ControlFlow::Continue(())
    }

    /// Our chat for the members `to` only, on multicast.
    async fn chat_private(&mut self, text: &str, to: &[String]) {
        let msg = ChatMessage::new(&self.transport.signer.cert().user, text);
        self.dedup.first_time(msg.id);
        let signed = signed::sign(&msg, &self.transport.signer);
        match private_chat(&self.registration, &self.cfg.group, to, &self.transport.sender, signed).await {
            Ok(()) => self.emit(chat_event(&msg, Via::Multicast, true, Placement::InOrder)).await,
            Err(why) => {
                self.emit(MemberEvent::Error(format!("private message to {} not sent: {why}", to.join(", ")))).await
            }
        }
    }

    /// True (and counted) if one more position may go now: a bridge
    /// relaying many TAK units, or a client gone wrong, cannot flood the group.
    fn position_allowed(&mut self) -> bool {
        let now = std::time::Instant::now();
        while self.positions_sent.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1)) {
            self.positions_sent.pop_front();
        }
        if self.positions_sent.len() >= POSITIONS_PER_SECOND {
            return false;
        }
        self.positions_sent.push_back(now);
        true
    }

    /// Our chat for the whole group.
    async fn chat(&mut self, text: &str) {
        if crate::group::position::Position::decode(text).is_some() {
            if !self.position_allowed() {
                self.emit(MemberEvent::Error("position not shared: more than 5 a second".into())).await;
                return;
            }
            self.own_position = Some(text.to_string());
        }
        // Signed as our user: that is the name others verify and show.
        let msg = ChatMessage::new(&self.transport.signer.cert().user, text);
        self.dedup.first_time(msg.id);
        // Through the room only while the room is reachable; otherwise multicast.
        let via_room = self.cfg.chat_via == Via::Xmpp && self.xmpp_online;
        let via = if via_room { Via::Xmpp } else { Via::Multicast };
        self.emit(chat_event(&msg, via, false, Placement::InOrder)).await;
        if let Some(payload) = send_chat(via_room, &self.transport, &msg) {
            self.xmpp.send_group(&self.cfg.room, None, Some(payload)).await;
        }
    }

    /// Our file for the members `to` (empty: the whole group), announced in the room.
    async fn file(&mut self, path: PathBuf, to: &[String]) {
        let sent = match restrict(&self.registration, &self.cfg.group, to).await {
            Ok(restricted) => {
                let t = &self.transport;
                send_file(&t.sender, &path, t.node, t.signer.clone(), restricted).await
            }
            Err(why) => Err(why),
        };
        match sent {
            Ok((object, offer)) => {
                self.sent_files.insert(object);
                if !to.is_empty() {
                    receipts::expect(&mut self.awaiting, object, &path, offer.size, to);
                }
                let text = if to.is_empty() {
                    format!("sending file {}", offer.name)
                } else {
                    format!("sending a file to {}", to.join(", "))
                };
                self.xmpp.send_group(&self.cfg.room, Some(&text), Some(Payload::File(offer).to_element())).await;
                self.emit(MemberEvent::FileSending { path, object }).await;
            }
            Err(why) => self.emit(MemberEvent::FileNotSent { path, why: why.to_string() }).await,
        }
    }

    /// Leaves the key group and the room, stops, and hands back the keys held.
    async fn leave(self) -> Vec<(u32, SecretKey)> {
        let Running { cfg, xmpp, registration, transport, events, held, .. } = self;
        // What we queued (chat, receipts) goes out first, for a while at most.
        flush(&transport.sender, &transport.lull, Duration::from_secs(2)).await;
        let epoch = registration.leave(&cfg.group).await;
        xmpp.leave(cfg.room.clone()).await;
        xmpp.stop().await;
        drop(transport);
        let ev = match epoch {
            Ok(epoch) => MemberEvent::Left { epoch },
            Err(e) => MemberEvent::Error(format!("leave: {e}")),
        };
        let _ = events.send(ev).await;
        held
    }

    /// The chat order's deadline passed: what waited is shown.
    async fn on_order_due(&mut self) {
        self.order.handle_timeout(Instant::now().into_std());
        self.release_chat().await;
    }

    /// Shows the chat objects whose turn has come.
    async fn release_chat(&mut self) {
        while let Some(r) = self.order.poll() {
            self.read_object(r).await;
        }
    }

    /// Reads one chat object and says what it holds.
    async fn read_object(&mut self, r: Released) {
        let reading = Reading::of(&self.transport);
        let mut notes = Vec::new();
        let ev =
            reading.chat_object(r, &mut self.awaiting, &mut self.dedup, &mut self.heard, &mut self.trust, &mut notes);
        for ev in notes.into_iter().chain(ev) {
            self.emit(ev).await;
        }
    }

    /// While XMPP is down: says "here" on multicast, and reports who else
    /// was heard lately when that changed.
    async fn on_beacon(&mut self) {
        self.transport.queue_chat(encode_beacon(&self.cfg.nick));
        let fresh = self.cfg.beacon_interval * 3;
        let mut now_here: Vec<String> =
            self.heard.iter().filter(|(_, t)| t.elapsed() <= fresh).map(|(n, _)| n.clone()).collect();
        now_here.sort();
        if now_here != self.shown {
            self.shown = now_here.clone();
            self.emit(MemberEvent::MulticastPresence(now_here)).await;
        }
    }

    /// What the transport's receiver task reports.
    async fn on_transport(&mut self, msg: FromTransport) {
        match msg {
            FromTransport::Chat(bytes, sender, object, from_holders) => {
                let now = Instant::now().into_std();
                self.order.catching_up(sender, from_holders);
                if decode_beacon(&bytes).is_some() || receipt::is_receipt(&bytes) {
                    // Never shown: read at once, and out of the order's way.
                    self.order.not_shown(sender, object, now);
                    self.read_object(Released { sender, object, bytes, placement: Placement::InOrder }).await;
                } else {
                    self.order.complete(sender, object, bytes, now);
                }
                self.release_chat().await;
            }
            FromTransport::Started(sender, object, chat, first) => {
                let kind = if chat { ObjectKind::Chat } else { ObjectKind::File };
                let now = Instant::now().into_std();
                self.order.heard_from(sender, first, now);
                self.order.started(sender, object, kind, now);
            }
            FromTransport::Lost(sender, object) => self.order.lost(sender, object, Instant::now().into_std()),
            FromTransport::Restarted(sender) => self.order.restarted(sender, Instant::now().into_std()),
            FromTransport::Progress(object, sent, len) => {
                if self.sent_files.contains(&object) {
                    self.emit(MemberEvent::FileSendProgress { object, sent, len }).await;
                }
            }
            FromTransport::Sent(object) => {
                if self.sent_files.remove(&object) {
                    self.emit(MemberEvent::FileSent { object }).await;
                }
            }
            FromTransport::File(ev) => {
                // A file for some members only: tell its sender we hold it.
                if let InboxEvent::Received { sender, object, size, restricted: true, .. } = ev {
                    self.transport.queue_chat(receipt::sign(sender, object, size, &self.transport.signer));
                }
                for out in on_file_event(ev, &self.cfg.viewer, &mut self.progress) {
                    self.emit(out).await;
                }
            }
            FromTransport::Epoch(epoch, key) => {
                self.transport.install(epoch, &key);
                self.transport.retire_later(epoch);
                self.held.push((epoch, key));
                self.emit(MemberEvent::Epoch(epoch)).await;
                // Someone may have joined: our position again, under the new key.
                if let Some(text) = self.own_position.clone() {
                    self.chat(&text).await;
                }
            }
            FromTransport::NeedsResync => {
                // Epoch claims are not authenticated: the gate lets few through.
                if self.resync.may_ask(std::time::Instant::now()) {
                    self.resync().await;
                }
            }
            FromTransport::EpochAhead(epoch) => self.resync.ahead(epoch, std::time::Instant::now()),
        }
    }

    /// A packet's later epoch waited for its rekey: ask the key server if
    /// the rekey did not come.
    async fn on_epoch_claim_due(&mut self) {
        let current = self.transport.keys.lock().ok().and_then(|k| k.keys.epoch());
        if self.resync.ahead_due(std::time::Instant::now(), current) {
            self.resync().await;
        }
    }

    /// Asks the key server for the group's keys again.
    async fn resync(&mut self) {
        match self.registration.resync(&self.cfg.group).await {
            Ok(fresh) => {
                if let Some((epoch, key)) = self.transport.resynced(fresh) {
                    self.transport.retire_later(epoch);
                    self.held.push((epoch, key));
                    self.emit(MemberEvent::Epoch(epoch)).await;
                }
            }
            Err(e) => self.emit(MemberEvent::Error(format!("resync: {e}"))).await,
        }
    }

    /// What the XMPP client reports.
    async fn on_xmpp(&mut self, ev: Option<ClientEvent>) {
        match ev {
            Some(ClientEvent::Room { event, .. }) => self.on_room(event).await,
            // One line per outage, however many reconnect attempts fail.
            Some(ClientEvent::Offline { error, .. }) => {
                if self.xmpp_online {
                    self.xmpp_online = false;
                    self.heard.clear();
                    self.shown.clear();
                    self.emit(MemberEvent::XmppOffline(error)).await;
                }
            }
            Some(ClientEvent::Online { .. }) => {
                if !self.xmpp_online {
                    self.xmpp_online = true;
                    self.emit(MemberEvent::XmppOnline).await;
                }
            }
            Some(_) => {}
            // The XMPP task ended (fatal error): multicast goes on, and so
            // do commands (waiting here forever once lost every Leave).
            None => {
                self.xmpp_ended = true;
                if self.xmpp_online {
                    self.xmpp_online = false;
                    self.heard.clear();
                    self.shown.clear();
                    self.emit(MemberEvent::XmppOffline("the XMPP client stopped".into())).await;
                }
            }
        }
    }

    /// A room event: our region's repairer may change, and the room's view
    /// of the group is reported.
    async fn on_room(&mut self, event: RoomEvent) {
        if let Some(region) = self.cfg.region.as_deref()
            && let Some(change) = repairer_change(&event, region, &self.cfg.nick, self.repairer.as_ref())
        {
            self.repairer = use_repairer(change, &self.transport.receiver, &self.events).await;
        }
        let mut notes = Vec::new();
        let ev = {
            let t = &self.transport;
            let revoked = |user: &str| super::transport::revoked(&t.keys, user);
            let trust = &mut self.trust;
            let keys = RoomKeys { seal: &t.seal, server: &t.server, revoked: &revoked };
            on_room_event(event, &mut self.roster, &mut self.dedup, keys, trust, &mut notes)
        };
        for ev in notes.into_iter().chain(ev) {
            self.emit(ev).await;
        }
    }
}

/// The chat order's next deadline: now while it holds chat released to be shown.
fn order_deadline(order: &ChatOrder) -> Option<std::time::Instant> {
    if order.has_released() { Some(std::time::Instant::now()) } else { order.poll_timeout() }
}

/// Sleeps until the chat order's next deadline (forever without one).
async fn order_due(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Positions a member shares in a second at most.
const POSITIONS_PER_SECOND: usize = 5;
