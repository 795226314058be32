//! A running group member: the original system's login flow (log into
//! XMPP, register with the key server, join the group and get its keys),
//! then chat on the multicast transport (or sealed through the room), with
//! rekeys followed as they arrive.
//!
//! Owns the composition: one XMPP [`Client`], one key server
//! [`Registration`], one transport receiver (everything on the group:
//! rekeys, everyone's chat) and one transport sender (our chat). It must
//! not hold protocol logic of its own beyond that glue: the transport,
//! keys and XMPP modules decide.
//!
//! Node ids: the sender uses the member's node id, the receiver the same
//! id with the top bit set, so the two never seal two packets under the
//! same nonce.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lsim_keymgmt::cert::Signer;
use lsim_keymgmt::client::{GroupKeys, MAX_REKEY, Registration};
use lsim_keymgmt::key::SecretKey;
use lsim_keymgmt::rekey::RekeyError;
use lsim_keymgmt::server::is_key_server_node;
use lsim_keymgmt::suite::GroupSeal;
use lsim_transport::net::driver::wall_clock_seq;
use lsim_transport::net::{Driver, DriverConfig, Handle, Loopback, MulticastConfig, MulticastSocket};
use lsim_transport::source::FileSource;
use lsim_transport::wire::ObjectKind;
use lsim_transport::{ReceiverConfig, ReceiverEvent, Repairer, RepairerConfig, Sender, SenderConfig, SenderEvent};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::chat::{ChatMessage, Dedup};
use super::envelope::Outgoing;
use super::inbox::{Inbox, InboxEvent};
use super::order::ChatOrder;
pub use super::order::Placement;
use super::signed;
use super::{private, receipt};
use crate::xmpp::client::{Client, ClientConfig, ClientEvent};
use crate::xmpp::element::Element;
use crate::xmpp::jid::Jid;
use crate::xmpp::payload::{FileOffer, GroupParams, MemberStatus, Payload, SealedChat};
use crate::xmpp::room::{Occupant, RoomEvent};
use lsim_keymgmt::client::FileKeyOpener;
use lsim_keymgmt::filekey::{FileKey, Wrap};

/// The top bit of a receiver's node id (see the module doc).
pub const RECEIVER_NODE_BIT: u32 = 0x8000_0000;
/// Associated data of chat sealed for the room.
pub const CHAT_AAD: &[u8] = b"lsim chat v1";

/// Which way our chat goes out (every member accepts both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatVia {
    /// As a transport object on the multicast group (the default).
    Multicast,
    /// Sealed under the group key, as a room message (the original way).
    Xmpp,
}

/// How a member runs.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    /// XMPP login (the key server login uses the same user and password).
    pub xmpp: ClientConfig,
    /// The room that is the group.
    pub room: Jid,
    /// Our nick in the room (and the name on our chat).
    pub nick: String,
    /// The key group's name at the key server.
    pub group: String,
    /// The group's parameters; `None`: learn them from the room (an
    /// occupant's `<group/>` presence payload, normally the key server's).
    pub params: Option<GroupParams>,
    /// How long to wait for the parameters in the room.
    pub params_timeout: Duration,
    /// Multicast interface address (unspecified: the kernel's choice).
    pub interface: Ipv4Addr,
    /// Multicast TTL.
    pub ttl: u32,
    /// Let our multicast reach other members on this host (it then loops
    /// back only while one of them has joined the group).
    pub loopback: bool,
    /// Simulated receive loss (tests and the demo only).
    pub simulated_loss: f64,
    /// Our sending rate, bytes per second (with `adaptive_rate`, the ceiling).
    pub rate: u64,
    /// Find the rate the path carries from probe round trips' queueing
    /// delay and the receivers' delivered rate (the default, up to 1 Gbit/s).
    pub adaptive_rate: bool,
    /// Our region (radio cell): NACKs go to the repairer that announces
    /// itself in the room for this region, while it answers.
    pub region: Option<String>,
    /// Repair for this region (keep what arrives, answer its members'
    /// NACKs locally); announced in our room presence.
    pub repairer: Option<String>,
    /// Which repairer ESI range to use (0-7; repairers of overlapping regions must differ).
    pub repairer_index: u32,
    /// Which way our chat goes (through the room only while it is
    /// reachable: during an XMPP outage chat goes on multicast).
    pub chat_via: ChatVia,
    /// Where received files land.
    pub download_dir: PathBuf,
    /// While XMPP is down, say "here" on multicast this often (and count
    /// as present those heard within three intervals).
    pub beacon_interval: Duration,
    /// What opens a received file ("remote display").
    pub opener: Opener,
    /// How long a chat message waits for an earlier one of its sender
    /// that is still being repaired before it is shown without it.
    pub chat_order_wait: Duration,
    /// Room messages asked for on joining (XEP-0045 history): chat sent
    /// through the room while we were away, shown marked as history.
    pub room_history: u32,
}

/// What opens a received file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opener {
    /// Nothing: files are only saved.
    Never,
    /// The system's opener (`xdg-open`), if installed.
    System,
    /// This command, with the file's path as its last argument.
    Command(Vec<String>),
}

impl Opener {
    fn command(&self) -> Option<Vec<String>> {
        match self {
            Opener::Never => None,
            Opener::System => Some(vec!["xdg-open".to_string()]),
            Opener::Command(c) if !c.is_empty() => Some(c.clone()),
            Opener::Command(_) => None,
        }
    }
}

impl MemberConfig {
    /// Defaults for `xmpp` joining `room` as `nick`: group `lsim`,
    /// parameters from the room, multicast chat at 1 MB/s.
    pub fn new(xmpp: ClientConfig, room: Jid, nick: &str) -> MemberConfig {
        MemberConfig {
            xmpp,
            room,
            nick: nick.to_string(),
            group: "lsim".into(),
            params: None,
            params_timeout: Duration::from_secs(20),
            interface: Ipv4Addr::UNSPECIFIED,
            ttl: 1,
            loopback: true,
            simulated_loss: 0.0,
            rate: SenderConfig::default().rate,
            adaptive_rate: true,
            region: None,
            repairer: None,
            repairer_index: 0,
            chat_via: ChatVia::Multicast,
            download_dir: PathBuf::from("."),
            beacon_interval: Duration::from_secs(5),
            opener: Opener::System,
            chat_order_wait: super::order::DEFAULT_WAIT,
            room_history: 20,
        }
    }
}

/// Why a member could not start.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    /// XMPP login failed for good.
    #[error("XMPP: {0}")]
    Xmpp(String),
    /// Nobody in the room published the group's parameters in time.
    #[error(
        "nobody in {0} announced the group's parameters within the wait: check --room (the server prints its room) \
         and that the key server is in it"
    )]
    NoParams(String),
    /// The key server refused or failed.
    #[error("key server: {0}")]
    Keys(lsim_keymgmt::client::ClientError),
    /// The key server did not answer.
    #[error(
        "the key server at {addr} did not answer ({why}): is it running and reachable from this host? \
         (its address comes from the room's announcement, or --keyserver)"
    )]
    KeyServerUnreachable {
        /// Where we tried.
        addr: SocketAddr,
        /// What the connection said.
        why: String,
    },
    /// The parameters cannot be used.
    #[error("group parameters: {0}")]
    Params(String),
    /// The multicast socket or transport could not be set up.
    #[error("multicast: {0}")]
    Multicast(String),
}

impl From<lsim_keymgmt::client::ClientError> for MemberError {
    // Not a `#[from]` source: the message already holds the cause, and a
    // chain printed with `{:#}` would say it twice.
    fn from(e: lsim_keymgmt::client::ClientError) -> MemberError {
        MemberError::Keys(e)
    }
}

/// Which way a message came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// On the multicast transport.
    Multicast,
    /// Through the XMPP room.
    Xmpp,
}

/// What a member reports.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberEvent {
    /// Logged in, registered and joined: the keys are at `epoch`.
    Joined {
        /// The transport session (the key group's id).
        session: u32,
        /// Our transport node id.
        node: u32,
        /// The group key epoch.
        epoch: u32,
        /// The parameters in use.
        params: GroupParams,
    },
    /// A rekey moved the group to this epoch.
    Epoch(u32),
    /// A chat message, shown once however many ways it came.
    Chat {
        /// Message id (hex).
        id: String,
        /// Sender as it names itself.
        from: String,
        /// Sender's clock, ms since the Unix epoch.
        sent_ms: u64,
        /// The text.
        text: String,
        /// How it came first.
        via: Via,
        /// For some members only (us among them), unreadable to the rest.
        private: bool,
        /// Where it stands in its sender's order (multicast chat; chat
        /// through the room comes in the room's order).
        placement: Placement,
        /// Replayed room history (XEP-0203), not new.
        history: bool,
    },
    /// A message that could not be decrypted or read: shown, not dropped.
    Unreadable {
        /// Who sent it, as far as known.
        from: String,
        /// How it came.
        via: Via,
        /// Why.
        why: String,
    },
    /// A member announced a file in the room (never for replayed history).
    FileOffered {
        /// Who (nick).
        from: String,
        /// The offer.
        offer: FileOffer,
    },
    /// We started streaming a file: transport object `object`.
    FileSending {
        /// The file.
        path: PathBuf,
        /// Transport object id.
        object: u32,
    },
    /// Every source symbol of our file went out (repairs may follow).
    FileSent {
        /// Transport object id.
        object: u32,
    },
    /// We could not send a file.
    FileNotSent {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// A file is arriving; reported at most every 5 %.
    FileProgress {
        /// Sending node.
        sender: u32,
        /// Transport object id.
        object: u32,
        /// Bytes so far.
        got: u64,
        /// Of this many.
        len: u64,
    },
    /// A file arrived, verified, under its final name.
    FileReceived {
        /// Sending node.
        sender: u32,
        /// The member who signed it (verified against the key server's certificate).
        from: String,
        /// The name the sender gave.
        name: String,
        /// Size in bytes.
        size: u64,
        /// Where it is.
        path: PathBuf,
    },
    /// A recipient of our file for some members confirmed, with a receipt
    /// signed under its certified key, that it holds the file.
    FileDelivered {
        /// Our file.
        path: PathBuf,
        /// Its transport object id.
        object: u32,
        /// The recipient (user name, as certified).
        to: String,
    },
    /// A file for other members only went by (its key was not wrapped for
    /// us): nothing was written.
    FileNotForUs {
        /// Sending node.
        sender: u32,
    },
    /// A file will not arrive; nothing was left under a final name.
    FileFailed {
        /// Sending node.
        sender: u32,
        /// Why.
        why: String,
    },
    /// The opener was started on a received file.
    FileOpened {
        /// The file.
        path: PathBuf,
    },
    /// Someone came into the room.
    PresenceIn(Occupant),
    /// Someone left the room.
    PresenceOut(Occupant),
    /// The XMPP connection dropped; multicast goes on. Reported once per
    /// outage, however many reconnect attempts fail.
    XmppOffline(String),
    /// XMPP is back.
    XmppOnline,
    /// While XMPP is down: who was heard on multicast lately (by nick).
    MulticastPresence(Vec<String>),
    /// We are (again) in the room; these are everyone else present.
    RoomJoined(Vec<Occupant>),
    /// Our region's repairer, by nick (`None`: NACKs go to the senders).
    Repairer(Option<String>),
    /// Something failed (the member goes on where it can).
    Error(String),
    /// We left the group.
    Left {
        /// The epoch the rest of the group moved to.
        epoch: u32,
    },
}

enum Command {
    /// A chat message, and the members it is for (empty: the whole group).
    Chat(String, Vec<String>),
    /// A file, and the members it is for (empty: the whole group).
    File(PathBuf, Vec<String>),
    Leave,
}

/// A running member.
pub struct Member {
    commands: mpsc::Sender<Command>,
    events: mpsc::Receiver<MemberEvent>,
    task: JoinHandle<Vec<(u32, SecretKey)>>,
}

/// What is left after [`Member::leave`].
pub struct Departure {
    /// The events up to and including [`MemberEvent::Left`].
    pub events: Vec<MemberEvent>,
    /// Every (epoch, group key) the member held while in the group, kept
    /// so audits and the demo can show that they open nothing sent after
    /// the leave. Zeroized on drop.
    pub keys_held: Vec<(u32, SecretKey)>,
}

impl Member {
    /// Logs in, registers, joins, and starts the member's tasks. Returns
    /// when the member holds the group's keys.
    pub async fn start(cfg: MemberConfig) -> Result<Member, MemberError> {
        let mut xmpp = Client::spawn(cfg.xmpp.clone());
        wait_online(&mut xmpp).await?;
        xmpp.join(cfg.room.clone(), &cfg.nick, cfg.room_history).await;
        // Room events seen while looking for the parameters (the room's
        // occupants, some of them repairers) are replayed to the member.
        let mut early = Vec::new();
        let params = match cfg.params.clone() {
            Some(p) => p,
            None => params_from_room(&mut xmpp, &cfg, &mut early).await?,
        };
        let user = cfg.xmpp.jid.local.clone().unwrap_or_default();
        let registration = Registration::login(params.keyserver, params.fingerprint, &user, &cfg.xmpp.password)
            .await
            .map_err(|e| unreachable_or(e, params.keyserver))?;
        let keys = registration.join(&cfg.group).await?;
        // Our signing key, certified by the key server: others see who sent what.
        let key = lsim_keymgmt::cert::new_signing_key().map_err(|e| MemberError::Params(e.to_string()))?;
        let signer = Arc::new(registration.certify(key).await?);
        let node = (registration.member().0 as u32) & !RECEIVER_NODE_BIT;
        let epoch = keys.keys.epoch().unwrap_or(0);
        let session = keys.keys.group();
        let (ev_tx, ev_rx) = mpsc::channel(1024);
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let transport = Transport::start(&cfg, &params, node, keys, &registration, signer, ev_tx.clone())?;
        let _ = ev_tx.send(MemberEvent::Joined { session, node, epoch, params: params.clone() }).await;
        let status = Payload::Status(MemberStatus {
            node,
            epoch: u64::from(epoch),
            loss_permille: 0,
            repairs: cfg.repairer.clone(),
        });
        xmpp.set_room_payload(cfg.room.clone(), Some(status.to_element())).await;
        let task = tokio::spawn(run(cfg, xmpp, registration, transport, cmd_rx, ev_tx, early));
        Ok(Member { commands: cmd_tx, events: ev_rx, task })
    }

    /// The next event; `None` once the member stopped.
    pub async fn next_event(&mut self) -> Option<MemberEvent> {
        self.events.recv().await
    }

    /// Streams a file to the group (announced in the room first).
    pub async fn send_file(&self, path: &Path) {
        let _ = self.commands.send(Command::File(path.to_path_buf(), Vec::new())).await;
    }

    /// Streams a file that only the members `to` (user names, in the group
    /// now) can open: the key server wraps its key for each of them, and
    /// the rest of the group sees who sent it, its size and whom it is for,
    /// never its name or contents. The room hears that a file went to them,
    /// not its name. Empty `to`: the whole group, as [`Member::send_file`].
    pub async fn send_file_to(&self, path: &Path, to: &[String]) {
        let _ = self.commands.send(Command::File(path.to_path_buf(), to.to_vec())).await;
    }

    /// Sends a chat message to the group.
    pub async fn chat(&self, text: &str) {
        let _ = self.commands.send(Command::Chat(text.to_string(), Vec::new())).await;
    }

    /// Sends a chat message that only the members `to` (user names, in the
    /// group now) can read, on multicast: its key is wrapped for each of
    /// them by the key server, as for a file for some members. Empty `to`:
    /// the whole group, as [`Member::chat`].
    pub async fn chat_to(&self, text: &str, to: &[String]) {
        let _ = self.commands.send(Command::Chat(text.to_string(), to.to_vec())).await;
    }

    /// Stops without leaving the key group, as a crashed or unplugged
    /// member would: its room presence ends with its connection, and the
    /// key server removes it after the grace period.
    pub fn vanish(self) {
        self.task.abort();
    }

    /// Leaves the group (the key server rekeys the rest), leaves the room
    /// and stops; [`MemberEvent::Left`] is the last event.
    pub async fn leave(self) -> Departure {
        let mut rest = Vec::new();
        let _ = self.commands.send(Command::Leave).await;
        let mut events = self.events;
        while let Some(ev) = events.recv().await {
            rest.push(ev);
        }
        let keys_held = self.task.await.unwrap_or_default();
        Departure { events: rest, keys_held }
    }
}

async fn wait_online(xmpp: &mut Client) -> Result<(), MemberError> {
    loop {
        match xmpp.next_event().await {
            Some(ClientEvent::Online { .. }) => return Ok(()),
            Some(ClientEvent::Stopped { error }) => {
                return Err(MemberError::Xmpp(error.unwrap_or_else(|| "stopped".into())));
            }
            Some(_) => {}
            None => return Err(MemberError::Xmpp("client ended".into())),
        }
    }
}

/// A connection that never came up is an unreachable key server; any other
/// failure is the key server's answer.
fn unreachable_or(e: lsim_keymgmt::client::ClientError, addr: SocketAddr) -> MemberError {
    use lsim_keymgmt::registrar::quic::ChannelError;
    match e {
        lsim_keymgmt::client::ClientError::Channel(ChannelError::Connect { why, .. })
            if why.contains("timed out") || why.contains("refused") || why.contains("unreachable") =>
        {
            MemberError::KeyServerUnreachable { addr, why }
        }
        other => MemberError::Keys(other),
    }
}

/// Waits for an occupant whose presence carries the group's parameters.
async fn params_from_room(
    xmpp: &mut Client,
    cfg: &MemberConfig,
    seen: &mut Vec<RoomEvent>,
) -> Result<GroupParams, MemberError> {
    let found = |payload: &Option<crate::xmpp::element::Element>| match payload.as_ref().map(Payload::parse) {
        Some(Ok(Payload::Group(p))) => Some(p),
        _ => None,
    };
    let deadline = tokio::time::Instant::now() + cfg.params_timeout;
    loop {
        let ev = tokio::time::timeout_at(deadline, xmpp.next_event())
            .await
            .map_err(|_| MemberError::NoParams(cfg.room.to_string()))?;
        if let Some(ClientEvent::Room { event, .. }) = &ev {
            seen.push(event.clone());
        }
        match ev {
            Some(ClientEvent::Room { event: RoomEvent::Joined { occupants, .. }, .. }) => {
                if let Some(p) = occupants.iter().find_map(|o| found(&o.payload)) {
                    return Ok(p);
                }
            }
            Some(ClientEvent::Room { event: RoomEvent::OccupantJoined(o) | RoomEvent::OccupantChanged(o), .. }) => {
                if let Some(p) = found(&o.payload) {
                    return Ok(p);
                }
            }
            Some(ClientEvent::Stopped { error }) => {
                return Err(MemberError::Xmpp(error.unwrap_or_else(|| "stopped".into())));
            }
            Some(_) => {}
            None => return Err(MemberError::Xmpp("client ended".into())),
        }
    }
}

/// What the receiver task tells the member task.
enum FromReceiver {
    /// A chat object complete: bytes, sender, object.
    Chat(Vec<u8>, u32, u32),
    /// A sender's object was heard of: sender, object, whether it is chat
    /// we read, and the sender's first object the transport delivers.
    Started(u32, u32, bool, u32),
    /// A sender's object will not complete.
    Lost(u32, u32),
    Epoch(u32, SecretKey),
    NeedsResync,
    File(InboxEvent),
    Sent(u32),
}

/// The member's two transport drivers and the keys they share.
struct Transport {
    sender: Handle<Sender<GroupSeal>>,
    receiver: Handle<Repairer<GroupSeal>>,
    keys: Arc<Mutex<GroupKeys>>,
    /// Our copy of the epochs, for chat sealed through the room.
    seal: GroupSeal,
    from_receiver: mpsc::UnboundedReceiver<FromReceiver>,
    tasks: Vec<JoinHandle<()>>,
    node: u32,
    /// The epoch and group key we joined with.
    initial: Option<(u32, SecretKey)>,
    /// Our certified signing key.
    signer: Arc<Signer>,
    /// The key server's key: it certifies every member's signing key.
    server: ed25519_dalek::VerifyingKey,
    /// Opens files and private messages for some members, us among them.
    file_keys: FileKeyOpener,
}

impl Transport {
    fn start(
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
            ..ReceiverConfig::default()
        };
        let dcfg = DriverConfig {
            simulated_loss: cfg.simulated_loss,
            seed: u64::from(node) ^ 0x5eed,
            ..DriverConfig::default()
        };
        let rcfg = RepairerConfig {
            receiver: rcfg,
            first_repair: (1 << 19) + cfg.repairer_index.min(7) * (1 << 16),
            // Not a repairer: nothing kept, nothing answered.
            cache_bytes: if cfg.repairer.is_some() { 64 << 20 } else { 0 },
            ..RepairerConfig::default()
        };
        let mut rdriver = Driver::new(Repairer::new(rcfg, seal()?), open(&mc)?, dcfg);
        let receiver = rdriver.handle();
        let keys = Arc::new(Mutex::new(keys));
        let (tx, from_receiver) = mpsc::unbounded_channel();
        let rkeys = keys.clone();
        let download_dir = cfg.download_dir.clone();
        let stx = tx.clone();
        let server = *server;
        let rtask = tokio::spawn(async move {
            let mut partial: HashMap<(u32, u32), (ObjectKind, Vec<u8>)> = HashMap::new();
            // Files must be signed by a member our key server certified.
            let mut inbox = Inbox::new(&download_dir, false).signed_by(server).with_file_keys(inbox_keys);
            let result = rdriver
                .run(|core: &mut Repairer<GroupSeal>, e| {
                    // Our own objects come back on loopback: already shown.
                    if event_sender(&e) == node {
                        return ControlFlow::Continue(());
                    }
                    if let Some(ev) = inbox.handle(&e) {
                        // A file for other members: stop receiving it (a
                        // region's repairer keeps it for its members).
                        if let InboxEvent::NotForUs { sender, object } = ev {
                            core.decline(sender, object);
                        }
                        let _ = tx.send(FromReceiver::File(ev));
                    }
                    on_receiver_event(core, e, &mut partial, &rkeys, &server, node, &tx);
                    if tx.is_closed() { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
                })
                .await;
            if let Err(e) = result {
                let _ = events.send(MemberEvent::Error(format!("receiver stopped: {e}"))).await;
            }
        });
        let stask = tokio::spawn(async move {
            let _ = sdriver
                .run(|_, e| {
                    if let SenderEvent::ObjectSent(object) = e {
                        let _ = stx.send(FromReceiver::Sent(object));
                    }
                    ControlFlow::<()>::Continue(())
                })
                .await;
        });
        Ok(Transport {
            sender,
            receiver,
            keys,
            seal: own_seal,
            from_receiver,
            tasks: vec![rtask, stask],
            node,
            initial,
            signer,
            server,
            file_keys,
        })
    }

    /// Installs a new epoch everywhere but the receiver (which did it).
    fn install(&mut self, epoch: u32, key: &SecretKey) {
        let _ = self.seal.install(epoch, key);
        let key = key.clone();
        self.sender.with(move |s| {
            let _ = s.seal_mut().install(epoch, &key);
        });
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

fn event_sender(e: &ReceiverEvent) -> u32 {
    match *e {
        ReceiverEvent::ObjectStarted { sender, .. }
        | ReceiverEvent::ObjectData { sender, .. }
        | ReceiverEvent::ObjectComplete { sender, .. }
        | ReceiverEvent::ObjectLost { sender, .. }
        | ReceiverEvent::ObjectProgress { sender, .. }
        | ReceiverEvent::EpochAhead { sender, .. } => sender,
    }
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
    tx: &mpsc::UnboundedSender<FromReceiver>,
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
            let _ = tx.send(FromReceiver::Started(sender, object, wanted && kind == ObjectKind::Chat, first));
        }
        ReceiverEvent::ObjectData { sender, object, data, .. } => {
            if let Some((_, b)) = partial.get_mut(&(sender, object)) {
                b.extend_from_slice(&data);
            }
        }
        ReceiverEvent::ObjectComplete { sender, object } => {
            let Some((kind, bytes)) = partial.remove(&(sender, object)) else { return };
            if kind == ObjectKind::Chat {
                let _ = tx.send(FromReceiver::Chat(bytes, sender, object));
                return;
            }
            let Ok(mut keys) = keys.lock() else { return };
            match keys.keys.apply(&bytes, server) {
                Ok(applied) => {
                    if let Some(k) = keys.keys.group_key().cloned() {
                        let _ = core.seal_mut().install(applied.epoch, &k);
                        let _ = tx.send(FromReceiver::Epoch(applied.epoch, k));
                    }
                }
                Err(RekeyError::Gap { .. }) => {
                    let _ = tx.send(FromReceiver::NeedsResync);
                }
                // Rekeys from before our join, replays: nothing to do.
                Err(_) => {}
            }
        }
        ReceiverEvent::ObjectLost { sender, object } => {
            partial.remove(&(sender, object));
            let _ = tx.send(FromReceiver::Lost(sender, object));
        }
        ReceiverEvent::EpochAhead { sender, .. } => {
            if sender != own_node {
                let _ = tx.send(FromReceiver::NeedsResync);
            }
        }
        // Files' progress is the inbox's.
        ReceiverEvent::ObjectProgress { .. } => {}
    }
}

async fn run(
    cfg: MemberConfig,
    mut xmpp: Client,
    registration: Registration,
    mut transport: Transport,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<MemberEvent>,
    early: Vec<RoomEvent>,
) -> Vec<(u32, SecretKey)> {
    let mut held = transport.initial.clone().into_iter().collect::<Vec<_>>();
    let mut dedup = Dedup::new(4096);
    let mut order = ChatOrder::new(cfg.chat_order_wait);
    // Who is in the room, by nick (not us).
    let mut roster: std::collections::BTreeMap<String, Occupant> = std::collections::BTreeMap::new();
    let mut sent_files = std::collections::HashSet::new();
    // Our files for some members only: who has not confirmed yet.
    let mut awaiting: HashMap<u32, Awaiting> = HashMap::new();
    let mut progress: HashMap<(u32, u32), u64> = HashMap::new();
    let node = transport.node;
    let mut xmpp_online = true;
    let mut heard: HashMap<String, tokio::time::Instant> = HashMap::new();
    let mut shown: Vec<String> = Vec::new();
    let mut beacon = tokio::time::interval(cfg.beacon_interval.max(Duration::from_millis(50)));
    let mut last_resync = tokio::time::Instant::now() - Duration::from_secs(60);
    // Our region's repairer, as the room shows it: (nick, node).
    let mut repairer: Option<(String, u32)> = None;
    for event in early {
        if let Some(region) = cfg.region.as_deref()
            && let Some(change) = repairer_change(&event, region, &cfg.nick, repairer.as_ref())
        {
            repairer = use_repairer(change, &transport.receiver, &events).await;
        }
        // The room as it was when we came in: who is here already.
        if let Some(ev) = on_room_event(event, &mut roster, &mut dedup, &transport.seal, &transport.server) {
            let _ = events.send(ev).await;
        }
    }
    loop {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(Command::Chat(text, to)) if !to.is_empty() => {
                    let msg = ChatMessage::new(&transport.signer.cert().user, &text);
                    dedup.first_time(msg.id);
                    let signed = signed::sign(&msg, &transport.signer);
                    match private_chat(&registration, &cfg.group, &to, &transport.sender, signed).await {
                        Ok(()) => {
                            let _ = events.send(chat_event(&msg, Via::Multicast, true, Placement::InOrder)).await;
                        }
                        Err(why) => { let _ = events.send(MemberEvent::Error(format!("private message to {} not sent: {why}", to.join(", ")))).await; }
                    }
                }
                Some(Command::Chat(text, _)) => {
                    // Signed as our user: that is the name others verify and show.
                    let msg = ChatMessage::new(&transport.signer.cert().user, &text);
                    dedup.first_time(msg.id);
                    let via = if cfg.chat_via == ChatVia::Xmpp && xmpp_online { Via::Xmpp } else { Via::Multicast };
                    let _ = events.send(chat_event(&msg, via, false, Placement::InOrder)).await;
                    // Through the room only while the room is reachable; otherwise multicast.
                    let via_room = cfg.chat_via == ChatVia::Xmpp && xmpp_online;
                    if let Some(payload) = send_chat(via_room, &transport, &msg) {
                        xmpp.send_group(&cfg.room, None, Some(payload)).await;
                    }
                }
                Some(Command::File(path, to)) => {
                    let sent = match restrict(&registration, &cfg.group, &to).await {
                        Ok(restricted) => send_file(&transport.sender, &path, node, transport.signer.clone(), restricted).await,
                        Err(why) => Err(why),
                    };
                    match sent {
                        Ok((object, offer)) => {
                            sent_files.insert(object);
                            if !to.is_empty() {
                                // Bounded: the oldest file still unconfirmed is forgotten first.
                                if awaiting.len() >= MAX_AWAITING && let Some(&oldest) = awaiting.keys().min() {
                                    awaiting.remove(&oldest);
                                }
                                let waiting = to.iter().cloned().collect();
                                awaiting.insert(object, Awaiting { path: path.clone(), size: offer.size, waiting });
                            }
                            let text = if to.is_empty() { format!("sending file {}", offer.name) } else { format!("sending a file to {}", to.join(", ")) };
                            xmpp.send_group(&cfg.room, Some(&text), Some(Payload::File(offer).to_element())).await;
                            let _ = events.send(MemberEvent::FileSending { path, object }).await;
                        }
                        Err(why) => { let _ = events.send(MemberEvent::FileNotSent { path, why }).await; }
                    }
                }
                None | Some(Command::Leave) => {
                    // What we queued (chat, receipts) goes out first, for a while at most.
                    flush(&transport.sender, Duration::from_secs(2)).await;
                    let epoch = registration.leave(&cfg.group).await;
                    xmpp.leave(cfg.room.clone()).await;
                    xmpp.stop().await;
                    drop(transport);
                    match epoch {
                        Ok(epoch) => { let _ = events.send(MemberEvent::Left { epoch }).await; }
                        Err(e) => { let _ = events.send(MemberEvent::Error(format!("leave: {e}"))).await; }
                    }
                    return held;
                }
            },
            () = order_due(if order.has_released() { Some(std::time::Instant::now()) } else { order.poll_timeout() }) => {
                order.handle_timeout(tokio::time::Instant::now().into_std());
                while let Some(r) = order.poll() {
                    let reading = Reading { node, server: &transport.server, file_keys: &transport.file_keys };
                    if let Some(ev) = reading.chat_object(r, &mut awaiting, &mut dedup, &mut heard) {
                        let _ = events.send(ev).await;
                    }
                }
            }
            _ = beacon.tick(), if !xmpp_online => {
                let bytes = super::chat::encode_beacon(&cfg.nick);
                transport.sender.with(move |s| {
                    let _ = s.send_bytes(ObjectKind::Chat, bytes);
                });
                let fresh = cfg.beacon_interval * 3;
                let mut now_here: Vec<String> =
                    heard.iter().filter(|(_, t)| t.elapsed() <= fresh).map(|(n, _)| n.clone()).collect();
                now_here.sort();
                if now_here != shown {
                    shown = now_here.clone();
                    let _ = events.send(MemberEvent::MulticastPresence(now_here)).await;
                }
            }
            Some(msg) = transport.from_receiver.recv() => match msg {
                FromReceiver::Chat(bytes, sender, object) => {
                    order.complete(sender, object, bytes, tokio::time::Instant::now().into_std());
                    while let Some(r) = order.poll() {
                        let reading = Reading { node, server: &transport.server, file_keys: &transport.file_keys };
                        if let Some(ev) = reading.chat_object(r, &mut awaiting, &mut dedup, &mut heard) {
                            let _ = events.send(ev).await;
                        }
                    }
                }
                FromReceiver::Started(sender, object, chat, first) => {
                    let kind = if chat { ObjectKind::Chat } else { ObjectKind::File };
                    let now = tokio::time::Instant::now().into_std();
                    order.heard_from(sender, first, now);
                    order.started(sender, object, kind, now);
                }
                FromReceiver::Lost(sender, object) => order.lost(sender, object, tokio::time::Instant::now().into_std()),
                FromReceiver::Sent(object) => {
                    if sent_files.remove(&object) {
                        let _ = events.send(MemberEvent::FileSent { object }).await;
                    }
                }
                FromReceiver::File(ev) => {
                    // A file for some members only: tell its sender we hold it.
                    if let InboxEvent::Received { sender, object, size, restricted: true, .. } = ev {
                        let bytes = receipt::sign(sender, object, size, &transport.signer);
                        transport.sender.with(move |s| {
                            let _ = s.send_bytes(ObjectKind::Chat, bytes);
                        });
                    }
                    for out in on_file_event(ev, &cfg.opener, &mut progress) {
                        let _ = events.send(out).await;
                    }
                }
                FromReceiver::Epoch(epoch, key) => {
                    transport.install(epoch, &key);
                    held.push((epoch, key));
                    let _ = events.send(MemberEvent::Epoch(epoch)).await;
                }
                FromReceiver::NeedsResync => {
                    // Epoch claims are not authenticated: at most one
                    // resync every few seconds.
                    if last_resync.elapsed() < Duration::from_secs(3) {
                        continue;
                    }
                    last_resync = tokio::time::Instant::now();
                    match registration.resync(&cfg.group).await {
                        Ok(fresh) => {
                            let (epoch, key) = (fresh.keys.epoch(), fresh.keys.group_key().cloned());
                            if let (Some(epoch), Some(key)) = (epoch, key) {
                                transport.install(epoch, &key);
                                held.push((epoch, key.clone()));
                                transport.receiver.with({
                                    let key = key.clone();
                                    move |r| { let _ = r.seal_mut().install(epoch, &key); }
                                });
                                if let Ok(mut k) = transport.keys.lock() {
                                    *k = fresh;
                                }
                                let _ = events.send(MemberEvent::Epoch(epoch)).await;
                            }
                        }
                        Err(e) => { let _ = events.send(MemberEvent::Error(format!("resync: {e}"))).await; }
                    }
                }
            },
            ev = xmpp.next_event() => match ev {
                Some(ClientEvent::Room { event, .. }) => {
                    if let Some(region) = cfg.region.as_deref()
                        && let Some(change) = repairer_change(&event, region, &cfg.nick, repairer.as_ref())
                    {
                        repairer = use_repairer(change, &transport.receiver, &events).await;
                    }
                    if let Some(ev) = on_room_event(event, &mut roster, &mut dedup, &transport.seal, &transport.server) {
                        let _ = events.send(ev).await;
                    }
                }
                // One line per outage, however many reconnect attempts fail.
                Some(ClientEvent::Offline { error, .. }) => {
                    if xmpp_online {
                        xmpp_online = false;
                        heard.clear();
                        shown.clear();
                        let _ = events.send(MemberEvent::XmppOffline(error)).await;
                    }
                }
                Some(ClientEvent::Online { .. }) => {
                    if !xmpp_online {
                        xmpp_online = true;
                        let _ = events.send(MemberEvent::XmppOnline).await;
                    }
                }
                Some(_) => {}
                // The XMPP task ended (fatal error): multicast goes on.
                None => std::future::pending::<()>().await,
            },
        }
    }
}

/// Sleeps until the chat order's next deadline (forever without one).
async fn order_due(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// What reading a chat object needs of the member.
struct Reading<'a> {
    node: u32,
    server: &'a ed25519_dalek::VerifyingKey,
    file_keys: &'a FileKeyOpener,
}

impl Reading<'_> {
    /// A chat object whose turn has come: a beacon (who is heard on
    /// multicast), a receipt for one of our files, a private message, or
    /// signed chat; shown once.
    fn chat_object(
        &self,
        r: super::order::Released,
        awaiting: &mut HashMap<u32, Awaiting>,
        dedup: &mut Dedup,
        heard: &mut HashMap<String, tokio::time::Instant>,
    ) -> Option<MemberEvent> {
        let (bytes, sender) = (r.bytes, r.sender);
        let unreadable =
            |why: String| MemberEvent::Unreadable { from: format!("node {sender}"), via: Via::Multicast, why };
        if let Some(nick) = super::chat::decode_beacon(&bytes) {
            heard.insert(nick, tokio::time::Instant::now());
            return None;
        }
        // Receipts for other senders' files are none of our business.
        if receipt::is_receipt(&bytes) {
            return on_receipt(&bytes, self.node, self.server, awaiting, sender);
        }
        let (inner, private) = if private::is_private(&bytes) {
            // A private message: ours to read, or for others (dropped unread).
            match private::open(&bytes, |w| (self.file_keys)(w)) {
                Ok(inner) => (inner, true),
                Err(private::PrivateError::NotForUs) => return None,
                Err(e) => return Some(unreadable(e.to_string())),
            }
        } else {
            (bytes, false)
        };
        match signed::open(&inner, self.server, signed::now_ms()) {
            Ok((m, _)) if dedup.first_time(m.id) => Some(chat_event(&m, Via::Multicast, private, r.placement)),
            Ok(_) => None,
            Err(e) => Some(unreadable(e.to_string())),
        }
    }
}

/// Points our receiver at a new repairer (or at none) and says so.
async fn use_repairer(
    change: Option<(String, u32)>,
    receiver: &Handle<Repairer<GroupSeal>>,
    events: &mpsc::Sender<MemberEvent>,
) -> Option<(String, u32)> {
    let node = change.as_ref().map(|(_, node)| *node | RECEIVER_NODE_BIT);
    receiver.with(move |r| r.set_repairer(node));
    let _ = events.send(MemberEvent::Repairer(change.as_ref().map(|(nick, _)| nick.clone()))).await;
    change
}

/// Whether a room event changes our region's repairer: `Some(new)` if so.
/// An occupant whose status says it repairs `region` becomes it (the first
/// one seen stays while it is there); its leaving clears it.
fn repairer_change(
    event: &RoomEvent,
    region: &str,
    own_nick: &str,
    current: Option<&(String, u32)>,
) -> Option<Option<(String, u32)>> {
    let offers = |o: &crate::xmpp::room::Occupant| match o.payload.as_ref().map(Payload::parse) {
        Some(Ok(Payload::Status(s))) if s.repairs.as_deref() == Some(region) && o.nick != own_nick => {
            Some((o.nick.clone(), s.node))
        }
        _ => None,
    };
    match event {
        RoomEvent::Joined { occupants, .. } if current.is_none() => occupants.iter().find_map(offers).map(Some),
        RoomEvent::OccupantJoined(o) | RoomEvent::OccupantChanged(o) => match (current, offers(o)) {
            (None, Some(new)) => Some(Some(new)),
            // Our repairer changed its status and no longer repairs here.
            (Some((nick, _)), None) if nick == &o.nick => Some(None),
            _ => None,
        },
        RoomEvent::OccupantLeft { nick } if current.is_some_and(|(n, _)| n == nick) => Some(None),
        _ => None,
    }
}

fn chat_event(m: &ChatMessage, via: Via, private: bool, placement: Placement) -> MemberEvent {
    let (id, from, text) = (m.id_hex(), m.from.clone(), m.text.clone());
    MemberEvent::Chat { id, from, sent_ms: m.sent_ms, text, via, private, placement, history: false }
}

/// Queues `msg` on the multicast sender, or returns the room payload to
/// send for chat through XMPP.
fn send_chat(via_room: bool, transport: &Transport, msg: &ChatMessage) -> Option<Element> {
    let bytes = signed::sign(msg, &transport.signer);
    if via_room {
        let sealed = transport.seal.encrypt_message(CHAT_AAD, &bytes).ok()?;
        let epoch = transport.seal.epochs().last().unwrap_or(0);
        return Some(Payload::Chat(SealedChat { id: msg.id_hex(), epoch: u64::from(epoch), sealed }).to_element());
    }
    transport.sender.with(move |s| {
        let _ = s.send_bytes(ObjectKind::Chat, bytes);
    });
    None
}

/// The room's view of the group: who is here (kept in `roster`, us not
/// included), file offers, and chat sent sealed through the room. Replayed
/// history is marked as such, and old file offers in it are not announced
/// again.
fn on_room_event(
    event: RoomEvent,
    roster: &mut std::collections::BTreeMap<String, Occupant>,
    dedup: &mut Dedup,
    seal: &GroupSeal,
    server: &ed25519_dalek::VerifyingKey,
) -> Option<MemberEvent> {
    Some(match event {
        RoomEvent::OccupantJoined(o) => {
            roster.insert(o.nick.clone(), o.clone());
            MemberEvent::PresenceIn(o)
        }
        RoomEvent::OccupantChanged(o) => {
            roster.insert(o.nick.clone(), o);
            return None;
        }
        RoomEvent::OccupantLeft { nick } => {
            let o = roster.remove(&nick).unwrap_or(Occupant { nick, jid: None, role: None, payload: None });
            MemberEvent::PresenceOut(o)
        }
        RoomEvent::Joined { nick, occupants } => {
            *roster = occupants.into_iter().filter(|o| o.nick != nick).map(|o| (o.nick.clone(), o)).collect();
            MemberEvent::RoomJoined(roster.values().cloned().collect())
        }
        RoomEvent::Left => {
            roster.clear();
            return None;
        }
        RoomEvent::Message { nick, message, delayed } => {
            let from = nick.unwrap_or_default();
            let chat = match message.payload.as_ref().map(Payload::parse) {
                Some(Ok(Payload::Chat(chat))) => chat,
                Some(Ok(Payload::File(_))) if delayed => return None,
                Some(Ok(Payload::File(offer))) => return Some(MemberEvent::FileOffered { from, offer }),
                _ => return None,
            };
            match seal.decrypt_message(CHAT_AAD, &chat.sealed).map(|b| signed::open(&b, server, signed::now_ms())) {
                Ok(Ok((m, _))) => {
                    if !dedup.first_time(m.id) {
                        return None;
                    }
                    let mut ev = chat_event(&m, Via::Xmpp, false, Placement::InOrder);
                    if let MemberEvent::Chat { history, .. } = &mut ev {
                        *history = delayed;
                    }
                    ev
                }
                // History from before we joined is under keys we never held: by design.
                Ok(Err(_)) | Err(_) if delayed => return None,
                Ok(Err(e)) => MemberEvent::Unreadable { from, via: Via::Xmpp, why: e.to_string() },
                Err(e) => MemberEvent::Unreadable { from, via: Via::Xmpp, why: format!("cannot decrypt: {e}") },
            }
        }
        RoomEvent::JoinFailed { .. } => return None,
    })
}

/// A file for the members `to` only: a fresh file key and the key
/// server's wraps of it for each of them. `None` for the whole group.
async fn restrict(
    registration: &Registration,
    group: &str,
    to: &[String],
) -> Result<Option<(Vec<Wrap>, FileKey)>, String> {
    if to.is_empty() {
        return Ok(None);
    }
    let key = FileKey::generate().map_err(|e| e.to_string())?;
    let wraps = registration.wrap_file_key(group, to, &key).await.map_err(|e| format!("key server: {e}"))?;
    Ok(Some((wraps, key)))
}

/// Queues `path` on the sender (for the members whose wraps are in
/// `restricted`, or for everyone); returns its object id and the offer to
/// announce (a restricted file's offer names its recipients, not the file).
async fn send_file(
    sender: &Handle<Sender<GroupSeal>>,
    path: &Path,
    node: u32,
    signer: Arc<Signer>,
    restricted: Option<(Vec<Wrap>, FileKey)>,
) -> Result<(u32, FileOffer), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let source = FileSource::new(file).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "file".into());
    let size = lsim_transport::source::ObjectSource::len(&source);
    let outgoing = match &restricted {
        None => Outgoing::signed(&name, source, signer),
        Some((wraps, key)) => {
            let o = Outgoing::restricted(&name, source, signer, wraps, key).map_err(|e| e.to_string())?;
            name = match wraps.len() {
                1 => "(a file for one member)".to_string(),
                n => format!("(a file for {n} members)"),
            };
            o
        }
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    sender.with(move |s| {
        let _ = tx.send(s.send(ObjectKind::File, Box::new(outgoing)).map_err(|e| e.to_string()));
    });
    let object = rx.await.map_err(|_| "the sender stopped".to_string())??;
    let offer =
        FileOffer { id: format!("{node:08x}-{object}"), name, size, sha256: None, node, object: u64::from(object) };
    Ok((object, offer))
}

/// Seals `signed` (a signed chat message) for the members `to` (the key
/// server wraps its key for each) and queues it on multicast.
async fn private_chat(
    registration: &Registration,
    group: &str,
    to: &[String],
    sender: &Handle<Sender<GroupSeal>>,
    signed: Vec<u8>,
) -> Result<(), String> {
    if to.len() > private::MAX_PRIVATE_RECIPIENTS {
        return Err(format!("at most {} recipients", private::MAX_PRIVATE_RECIPIENTS));
    }
    let Some((wraps, key)) = restrict(registration, group, to).await? else { return Err("no recipients".into()) };
    let sealed = private::seal(&signed, &wraps, &key).map_err(|e| e.to_string())?;
    sender.with(move |s| {
        let _ = s.send_bytes(ObjectKind::Chat, sealed);
    });
    Ok(())
}

/// Files for some members whose receipts a member waits for at most.
const MAX_AWAITING: usize = 1024;

/// One of our files for some members, until its recipients confirm it.
struct Awaiting {
    path: PathBuf,
    size: u64,
    /// Recipients who have not confirmed yet.
    waiting: std::collections::HashSet<String>,
}

/// A receipt heard on multicast: for one of our files for some members, a
/// recipient confirming it holds the file (once per recipient). Receipts
/// for other senders' files are dropped unchecked; a forged one for ours is
/// shown as unreadable.
fn on_receipt(
    bytes: &[u8],
    node: u32,
    server: &ed25519_dalek::VerifyingKey,
    awaiting: &mut HashMap<u32, Awaiting>,
    from_node: u32,
) -> Option<MemberEvent> {
    let (for_node, object) = receipt::peek(bytes)?;
    if for_node != node || !awaiting.contains_key(&object) {
        return None;
    }
    let r = match receipt::open(bytes, server, signed::now_ms()) {
        Ok(r) => r,
        Err(e) => {
            return Some(MemberEvent::Unreadable {
                from: format!("node {from_node}"),
                via: Via::Multicast,
                why: e.to_string(),
            });
        }
    };
    let file = awaiting.get_mut(&object)?;
    if r.size != file.size || !file.waiting.remove(&r.user) {
        return None;
    }
    let ev = MemberEvent::FileDelivered { path: file.path.clone(), object, to: r.user };
    if file.waiting.is_empty() {
        awaiting.remove(&object);
    }
    Some(ev)
}

/// Waits until the sender has sent everything queued once, or `limit`.
async fn flush(sender: &Handle<Sender<GroupSeal>>, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        let (tx, rx) = tokio::sync::oneshot::channel();
        sender.with(move |s| {
            let _ = tx.send(s.is_idle());
        });
        if rx.await.unwrap_or(true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Turns a file event into member events, throttling progress to 5 %
/// steps and starting the opener on arrival.
fn on_file_event(ev: InboxEvent, opener: &Opener, progress: &mut HashMap<(u32, u32), u64>) -> Vec<MemberEvent> {
    match ev {
        InboxEvent::Started { sender, object, len } => {
            progress.insert((sender, object), 0);
            vec![MemberEvent::FileProgress { sender, object, got: 0, len }]
        }
        InboxEvent::Progress { sender, object, got, len } => {
            let step = (got.saturating_mul(20)) / len.max(1);
            match progress.get_mut(&(sender, object)) {
                Some(last) if step > *last => {
                    *last = step;
                    vec![MemberEvent::FileProgress { sender, object, got, len }]
                }
                _ => Vec::new(),
            }
        }
        InboxEvent::Received { sender, object, name, size, path, from, .. } => {
            progress.remove(&(sender, object));
            let from = from.unwrap_or_default();
            let mut out = vec![MemberEvent::FileReceived { sender, from, name, size, path: path.clone() }];
            if let Some(cmd) = opener.command() {
                match open(&cmd, &path) {
                    Ok(()) => out.push(MemberEvent::FileOpened { path }),
                    Err(e) => out.push(MemberEvent::Error(format!("opening {}: {e}", path.display()))),
                }
            }
            out
        }
        InboxEvent::Failed { sender, object, why } => {
            progress.remove(&(sender, object));
            vec![MemberEvent::FileFailed { sender, why }]
        }
        InboxEvent::NotForUs { sender, object } => {
            progress.remove(&(sender, object));
            vec![MemberEvent::FileNotForUs { sender }]
        }
    }
}

/// Starts `cmd path` without waiting for it (a task reaps it).
fn open(cmd: &[String], path: &Path) -> std::io::Result<()> {
    let Some((program, args)) = cmd.split_first() else { return Ok(()) };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .arg(path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    Ok(())
}
