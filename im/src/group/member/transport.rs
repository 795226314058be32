//! The member's two transport drivers: one sender (our chat, files and
//! receipts) and one receiver (everything on the group), which repairs for
//! our region when asked to, each on its own task; the group keys they
//! share; and the receiver task's glue, which keeps chat and rekey objects,
//! applies rekeys, hands file events to the inbox and tells the member task
//! what happened ([`FromTransport`]).
//!
//! Owns the drivers' set-up, where keys are installed into their seals, and
//! their stop (on drop). It must not decide what chat, files or the room
//! mean to the member: the running member does, from what comes out here.

use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lsim_keymgmt::cert::Signer;
use lsim_keymgmt::client::{FileKeyOpener, GroupKeys, MAX_REKEY, Registration};
use lsim_keymgmt::key::SecretKey;
use lsim_keymgmt::rekey::RekeyError;
use lsim_keymgmt::server::is_key_server_node;
use lsim_keymgmt::suite::GroupSeal;
use lsim_transport::net::driver::wall_clock_seq;
use lsim_transport::net::{Driver, DriverConfig, Handle, Loopback, MulticastConfig, MulticastSocket};
use lsim_transport::wire::ObjectKind;
use lsim_transport::{ReceiverConfig, ReceiverEvent, Repairer, RepairerConfig, Sender, SenderConfig, SenderEvent};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::progress::{self, Membership};
use super::{MemberConfig, MemberError, MemberEvent, RECEIVER_NODE_BIT};
use crate::group::archive::ARCHIVE_NODE;
use crate::group::inbox::{Inbox, InboxEvent};
use crate::group::private;
use crate::xmpp::payload::{GroupParams, History};

/// What the transport tasks (our receiver's and our sender's) tell the member task.
pub(super) enum FromTransport {
    /// A chat object complete: bytes, sender, object, and whether the
    /// sender's objects come from holders now (catch-up).
    Chat(Vec<u8>, u32, u32, bool),
    /// A sender's object was heard of: sender, object, whether it is chat
    /// we read, and the sender's first object the transport delivers.
    Started(u32, u32, bool, u32),
    /// A sender's object will not complete.
    Lost(u32, u32),
    /// A sender restarted: its objects are numbered anew.
    Restarted(u32),
    Epoch(u32, SecretKey),
    /// A rekey showed we missed earlier ones: ask the key server now.
    NeedsResync,
    /// A packet claimed this later epoch (its rekey may be on its way).
    EpochAhead(u32),
    File(InboxEvent),
    /// Our sender sent every source symbol of this object.
    Sent(u32),
    /// Our sender sent this much of this object (bytes, of a length).
    Progress(u32, u64, u64),
}

/// Our sender's lulls, as its driver task saw them: how many times it went
/// idle, and the last object it had sent when it last said it may stop.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Lull {
    pub(super) idle: u64,
    pub(super) quiet_after: Option<u32>,
}

/// The member's two transport drivers and the keys they share.
pub(super) struct Transport {
    pub(super) sender: Handle<Sender<GroupSeal>>,
    pub(super) receiver: Handle<Repairer<GroupSeal>>,
    pub(super) keys: Arc<Mutex<GroupKeys>>,
    /// Our copy of the epochs, for chat sealed through the room.
    pub(super) seal: GroupSeal,
    pub(super) from_transport: mpsc::UnboundedReceiver<FromTransport>,
    /// Our sender's lulls (idle, may stop), updated by its driver task.
    pub(super) lull: watch::Receiver<Lull>,
    tasks: Vec<JoinHandle<()>>,
    pub(super) node: u32,
    /// The epoch and group key we joined with.
    pub(super) initial: Option<(u32, SecretKey)>,
    /// Our certified signing key.
    pub(super) signer: Arc<Signer>,
    /// The key server's key: it certifies every member's signing key.
    pub(super) server: ed25519_dalek::VerifyingKey,
    /// Opens files and private messages for some members, us among them.
    pub(super) file_keys: FileKeyOpener,
}

impl Transport {
    pub(super) fn start(
        cfg: &MemberConfig,
        params: &GroupParams,
        node: u32,
        keys: GroupKeys,
        registration: &Registration,
        signer: Arc<Signer>,
        events: mpsc::Sender<MemberEvent>,
    ) -> Result<Transport, MemberError> {
        // The key server's key, which certifies every member's signing
        // key, and the opener of files for some members only.
        let server = registration.server_key();
        let file_keys = registration.file_key_opener(&cfg.group);
        let inbox_keys = file_keys.clone();
        let SocketAddr::V4(group) = params.group else {
            return Err(MemberError::Params(format!("{} is not an IPv4 multicast address", params.group)));
        };
        let mc = MulticastConfig {
            group: SocketAddrV4::new(*group.ip(), group.port()),
            interface: cfg.interface,
            ttl: cfg.ttl,
            // Our two sockets (sender, receiver) do not count: loop back only for others here.
            loopback: if cfg.loopback { Loopback::WhenShared { own: 2 } } else { Loopback::Off },
            recv_buffer: 4 << 20,
            send_buffer: 1 << 20,
        };
        let session = keys.keys.group();
        let initial = keys.keys.epoch().zip(keys.keys.group_key().cloned());
        // Each seal (ours, our sender's, our receiver's) remembers the history
        // the key server gave with our keys (`GroupKeys::seal`): a member
        // back in the group after a restart can open repair of what was sent
        // in the epochs of its membership it missed.
        let seal = || keys.seal().ok_or_else(|| MemberError::Params("no group key".into()));
        let own_seal = seal()?;
        let open = |mc: &MulticastConfig| MulticastSocket::open(mc).map_err(|e| MemberError::Multicast(e.to_string()));

        let scfg = SenderConfig {
            session,
            node,
            rate: cfg.rate,
            queue_target: cfg.adaptive_rate.then_some(lsim_transport::rate::QUEUE_TARGET),
            first_seq: wall_clock_seq(),
            // The largest symbols whose every packet fits a 1500-byte MTU under the group's suite.
            symbol_size: lsim_transport::wire::symbol_size_for(1472, lsim_transport::seal::Seal::tag_len(&own_seal)),
            linger: cfg.linger,
            ..SenderConfig::default()
        };
        let sender = Sender::new(scfg, seal()?).map_err(|e| MemberError::Multicast(e.to_string()))?;
        let mut sdriver = Driver::new(sender, open(&mc)?, DriverConfig::default());
        let sender = sdriver.handle();

        let rcfg = ReceiverConfig {
            session,
            node: node | RECEIVER_NODE_BIT,
            seed: u64::from(node),
            accept_backlog: false,
            first_seq: wall_clock_seq(),
            // Under `shared:N`, the archive's offer of the group's last N objects.
            history_from: matches!(params.history, History::Shared(_)).then_some(ARCHIVE_NODE),
            ..ReceiverConfig::default()
        };
        let dcfg = DriverConfig {
            simulated_loss: cfg.simulated_loss,
            seed: u64::from(node) ^ 0x5eed,
            ..DriverConfig::default()
        };
        let region = cfg.repairer.is_some();
        let rcfg = RepairerConfig {
            // A region's repairer has one of the eight ranges of 2^16 repair
            // symbols; a member holding what it received (for senders gone
            // silent) one of 63 ranges of 2^13 in the same space, by node
            // (the 64th is the command post's archive).
            first_repair: if region {
                (1 << 19) + cfg.repairer_index.min(7) * (1 << 16)
            } else {
                (1 << 19) + (rcfg.node % 63) * (1 << 13)
            },
            range: if region { 1 << 16 } else { 1 << 13 },
            receiver: rcfg,
            cache_bytes: if region { 64 << 20 } else { HOLD_BYTES },
            // Files for other members are dropped unread, unless a region relies on us.
            keep_declined: region,
            // Repair for a silent sender is background work: half the
            // fastest rate data ever came in at.
            hold_pace: (!region).then_some(0.5),
            ..RepairerConfig::default()
        };
        let mut rcore = Repairer::new(rcfg, seal()?);
        // What this device had of each sender in this membership, before a
        // crash or a reboot: fetched from where it left off.
        let server_id = server.to_bytes()[..8].iter().fold(0u64, |a, b| a << 8 | u64::from(*b));
        let membership = keys.keys.joined_epoch().map(|joined| Membership { server: server_id, session, joined });
        if let (Some(path), Some(of)) = (&cfg.progress, membership) {
            for p in progress::load(path, of).iter().filter(|p| p.origin != node) {
                rcore.resume_sender(lsim_transport::Time::ZERO, p);
            }
        }
        let mut rdriver = Driver::new(rcore, open(&mc)?, dcfg);
        let receiver = rdriver.handle();
        let keys = Arc::new(Mutex::new(keys));
        let (tx, from_transport) = mpsc::unbounded_channel();
        let rkeys = keys.clone();
        let download_dir = cfg.download_dir.clone();
        let stx = tx.clone();
        let server = *server;
        let rtask = tokio::spawn(async move {
            let mut partial: HashMap<(u32, u32), (ObjectKind, Vec<u8>)> = HashMap::new();
            // Files must be signed by a member our key server certified.
            let refused = rkeys.clone();
            let mut inbox = Inbox::new(&download_dir, false)
                .signed_by(server)
                .with_file_keys(inbox_keys)
                .refusing(Box::new(move |user: &str| revoked(&refused, user)));
            let result = rdriver
                .run(|core: &mut Repairer<GroupSeal>, e| {
                    // Our own objects come back on loopback: already shown,
                    // and not held either (our sender repairs them itself).
                    if event_sender(&e) == node {
                        if let ReceiverEvent::ObjectStarted { object, .. } = e {
                            core.decline(node, object);
                        }
                        return ControlFlow::Continue(());
                    }
                    if let Some(ev) = inbox.handle(&e) {
                        // A file for other members: stop receiving it (a
                        // region's repairer keeps it for its members).
                        if let InboxEvent::NotForUs { sender, object } = ev {
                            core.decline(sender, object);
                        }
                        let _ = tx.send(FromTransport::File(ev));
                    }
                    on_receiver_event(core, e, &mut partial, &rkeys, &server, node, &tx);
                    if tx.is_closed() { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
                })
                .await;
            if let Err(e) = result {
                let _ = events.send(MemberEvent::Error(format!("receiver stopped: {e}"))).await;
            }
        });
        let (lull_tx, lull) = watch::channel(Lull::default());
        let stask = tokio::spawn(async move {
            let mut last_sent = None;
            let _ = sdriver
                .run(|_, e| {
                    match e {
                        SenderEvent::ObjectSent(object) => {
                            last_sent = Some(object);
                            let _ = stx.send(FromTransport::Sent(object));
                        }
                        SenderEvent::ObjectProgress { object, sent, len } => {
                            let _ = stx.send(FromTransport::Progress(object, sent, len));
                        }
                        SenderEvent::Idle => lull_tx.send_modify(|l| l.idle += 1),
                        SenderEvent::MayStop => lull_tx.send_modify(|l| l.quiet_after = last_sent),
                        _ => {}
                    }
                    ControlFlow::<()>::Continue(())
                })
                .await;
        });
        let mut tasks = vec![rtask, stask];
        if let (Some(path), Some(of)) = (cfg.progress.clone(), membership) {
            tasks.push(tokio::spawn(keep_progress(receiver.clone(), path, of)));
        }
        Ok(Transport {
            sender,
            receiver,
            keys,
            seal: own_seal,
            from_transport,
            lull,
            tasks,
            node,
            initial,
            signer,
            server,
            file_keys,
        })
    }

    /// Installs a new epoch everywhere but the receiver (which did it).
    pub(super) fn install(&mut self, epoch: u32, key: &SecretKey) {
        let _ = self.seal.install(epoch, key);
        let key = key.clone();
        self.sender.with(move |s| {
            let _ = s.seal_mut().install(epoch, &key);
        });
    }

    /// After `EPOCH_GRACE`, packets under epochs before `epoch` are refused
    /// by our receiver and our sender (feedback): a member removed by the
    /// rekey to `epoch` cannot go on sending under the key it still holds.
    pub(super) fn retire_later(&self, epoch: u32) {
        let (receiver, sender) = (self.receiver.clone(), self.sender.clone());
        tokio::spawn(async move {
            tokio::time::sleep(EPOCH_GRACE).await;
            receiver.with(move |r| r.seal_mut().retire_before(epoch));
            sender.with(move |s| s.seal_mut().retire_before(epoch));
        });
    }

    /// Installs the keys a resync got everywhere, the receiver too, and
    /// remembers its history (the past epochs of our membership we missed,
    /// away: for repair of what was sent in them); the epoch and group key
    /// now in use, if they hold one.
    pub(super) fn resynced(&mut self, fresh: GroupKeys) -> Option<(u32, SecretKey)> {
        let (epoch, key) = (fresh.keys.epoch(), fresh.keys.group_key().cloned());
        let (Some(epoch), Some(key)) = (epoch, key) else { return None };
        self.install(epoch, &key);
        let history: Vec<(u32, SecretKey)> = fresh.keys.history().map(|(e, k)| (e, k.clone())).collect();
        remember(&mut self.seal, &history);
        self.sender.with({
            let history = history.clone();
            move |s| remember(s.seal_mut(), &history)
        });
        self.receiver.with({
            let key = key.clone();
            move |r| {
                let _ = r.seal_mut().install(epoch, &key);
                remember(r.seal_mut(), &history);
            }
        });
        if let Ok(mut k) = self.keys.lock() {
            *k = fresh;
        }
        Some((epoch, key))
    }

    /// Queues `bytes` as a chat object on our sender.
    pub(super) fn queue_chat(&self, bytes: Vec<u8>) {
        queue_chat(&self.sender, bytes);
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.sender.stop();
        self.receiver.stop();
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Keeps `history` (past epochs' group keys from the key server) in
/// `seal`, after the epoch that came with them is installed (an epoch it
/// jumped over is not newer than the current one then).
fn remember(seal: &mut GroupSeal, history: &[(u32, SecretKey)]) {
    for (epoch, key) in history {
        seal.remember(*epoch, key);
    }
}

/// Queues `bytes` (sealed, signed or a beacon) on `sender` as a chat object.
pub(super) fn queue_chat(sender: &Handle<Sender<GroupSeal>>, bytes: Vec<u8>) {
    sender.with(move |s| {
        let _ = s.send_bytes(ObjectKind::Chat, bytes);
    });
}

/// Waits until the sender has sent everything queued once, or `limit`:
/// woken by its next Idle, not by polling.
pub(super) async fn flush(sender: &Handle<Sender<GroupSeal>>, lull: &watch::Receiver<Lull>, limit: Duration) {
    let mut lull = lull.clone();
    // Idle counted from before the question, so an Idle between the
    // answer and the wait is not missed.
    let before = lull.borrow_and_update().idle;
    let (tx, rx) = tokio::sync::oneshot::channel();
    sender.with(move |s| {
        let _ = tx.send(s.is_idle());
    });
    if rx.await.unwrap_or(true) {
        return;
    }
    let _ = tokio::time::timeout(limit, lull.wait_for(|l| l.idle > before)).await;
}

fn event_sender(e: &ReceiverEvent) -> u32 {
    match *e {
        ReceiverEvent::ObjectStarted { sender, .. }
        | ReceiverEvent::ObjectData { sender, .. }
        | ReceiverEvent::ObjectComplete { sender, .. }
        | ReceiverEvent::ObjectLost { sender, .. }
        | ReceiverEvent::ObjectProgress { sender, .. }
        | ReceiverEvent::EpochAhead { sender, .. }
        | ReceiverEvent::SenderRestarted { sender } => sender,
    }
}

/// How often what this device received of each sender is written down.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Writes our receiver's progress to `path` every `PROGRESS_EVERY` while it
/// changes (off the runtime's threads: a write ends with an fsync).
async fn keep_progress(receiver: Handle<Repairer<GroupSeal>>, path: std::path::PathBuf, of: Membership) {
    let mut last = Vec::new();
    loop {
        tokio::time::sleep(PROGRESS_EVERY).await;
        let (tx, rx) = tokio::sync::oneshot::channel();
        if !receiver.with(move |core| {
            let _ = tx.send(core.progress());
        }) {
            return;
        }
        let Ok(now) = rx.await else { return };
        if now == last {
            continue;
        }
        let (p, keep) = (path.clone(), now.clone());
        // A member that cannot write it tries again; it loses only this.
        if let Ok(Ok(())) = tokio::task::spawn_blocking(move || progress::save(&p, of, &keep)).await {
            last = now;
        }
    }
}

/// Bytes of received blocks a member keeps to repair others from when
/// their sender has gone silent (`Holdings`, in the transport).
pub const HOLD_BYTES: usize = 32 << 20;

/// How long packets under the epoch before a rekey are still opened: data
/// in flight, and senders whose copy of the rekey is still being repaired
/// (what they send meanwhile is repaired under the new epoch).
pub const EPOCH_GRACE: Duration = Duration::from_secs(2);

/// Whether the rekeys applied to `keys` revoked `user` (a poisoned lock: refuse).
pub(super) fn revoked(keys: &Mutex<GroupKeys>, user: &str) -> bool {
    keys.lock().map_or(true, |k| k.keys.is_revoked(user))
}

/// Chat objects larger than this are not chat.
const MAX_CHAT_OBJECT: u64 = private::MAX_PRIVATE as u64;

fn on_receiver_event(
    core: &mut Repairer<GroupSeal>,
    e: ReceiverEvent,
    partial: &mut HashMap<(u32, u32), (ObjectKind, Vec<u8>)>,
    keys: &Mutex<GroupKeys>,
    server: &ed25519_dalek::VerifyingKey,
    own_node: u32,
    tx: &mpsc::UnboundedSender<FromTransport>,
) {
    match e {
        ReceiverEvent::ObjectStarted { sender, object, kind, len } => {
            let wanted = match kind {
                ObjectKind::Rekey => is_key_server_node(sender) && len <= MAX_REKEY,
                ObjectKind::Chat => len <= MAX_CHAT_OBJECT,
                _ => false,
            };
            if wanted {
                partial.insert((sender, object), (kind, Vec::with_capacity(len as usize)));
            }
            let first = core.receiver().first_object(sender).unwrap_or(object);
            let _ = tx.send(FromTransport::Started(sender, object, wanted && kind == ObjectKind::Chat, first));
        }
        ReceiverEvent::ObjectData { sender, object, data, .. } => {
            if let Some((_, b)) = partial.get_mut(&(sender, object)) {
                b.extend_from_slice(&data);
            }
        }
        ReceiverEvent::ObjectComplete { sender, object } => {
            let Some((kind, bytes)) = partial.remove(&(sender, object)) else { return };
            if kind == ObjectKind::Chat {
                let from_holders = core.receiver().from_holders(sender);
                let _ = tx.send(FromTransport::Chat(bytes, sender, object, from_holders));
                return;
            }
            let Ok(mut keys) = keys.lock() else { return };
            match keys.keys.apply(&bytes, server) {
                Ok(applied) => {
                    if let Some(k) = keys.keys.group_key().cloned() {
                        let _ = core.seal_mut().install(applied.epoch, &k);
                        let _ = tx.send(FromTransport::Epoch(applied.epoch, k));
                    }
                }
                Err(RekeyError::Gap { .. }) => {
                    let _ = tx.send(FromTransport::NeedsResync);
                }
                // Rekeys from before our join, replays: nothing to do.
                Err(_) => {}
            }
        }
        ReceiverEvent::ObjectLost { sender, object } => {
            partial.remove(&(sender, object));
            let _ = tx.send(FromTransport::Lost(sender, object));
        }
        ReceiverEvent::EpochAhead { sender, epoch } => {
            if sender != own_node {
                let _ = tx.send(FromTransport::EpochAhead(epoch));
            }
        }
        ReceiverEvent::SenderRestarted { sender } => {
            let _ = tx.send(FromTransport::Restarted(sender));
        }
        // Files' progress is the inbox's.
        ReceiverEvent::ObjectProgress { .. } => {}
    }
}
