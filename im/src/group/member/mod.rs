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
//! This file owns the public face: the configuration, the events, and
//! [`Member`], whose methods start the member and pass commands to its
//! task. It must not touch the running member's state: that is the task's,
//! split by noun:
//!
//! - `login`: XMPP online, the group's parameters from the room, what a
//!   failed key server login means;
//! - `transport`: the two transport drivers, the keys they share and the
//!   receiver task's glue;
//! - `running`: the member task's loop and its state;
//! - `messages`: our chat out (through the room, on multicast, private)
//!   and others' chat objects in;
//! - `room`: the room's view of the group and our region's repairer;
//! - `files`: our files out, received files reported and opened;
//! - `receipts`: our files for some members, until their recipients confirm;
//! - `error`: why a member could not start, why something of ours was not sent.
//!
//! Node ids: the sender uses the member's node id, the receiver the same
//! id with the top bit set, so the two never seal two packets under the
//! same nonce.

mod error;
mod files;
mod login;
mod messages;
mod progress;
mod receipts;
mod room;
mod running;
mod transport;
pub use transport::EPOCH_GRACE;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lsim_keymgmt::client::Registration;
use lsim_keymgmt::key::SecretKey;
use lsim_keymgmt::suite::GroupSeal;
use lsim_transport::linger::LingerConfig;
use lsim_transport::net::Handle;
use lsim_transport::{Sender, SenderConfig};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use self::error::MemberError;
use self::login::{params_from_room, unreachable_or, wait_online};
use self::transport::{Lull, Transport};
pub use super::order::Placement;
use crate::xmpp::client::{Client, ClientConfig};
use crate::xmpp::jid::Jid;
use crate::xmpp::payload::{FileOffer, GroupParams, MemberStatus, Payload};
use crate::xmpp::room::Occupant;

/// The top bit of a receiver's node id (see the module doc).
pub const RECEIVER_NODE_BIT: u32 = 0x8000_0000;
/// Associated data of chat sealed for the room.
pub const CHAT_AAD: &[u8] = b"lsim chat v1";

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
    pub chat_via: Via,
    /// Where received files land.
    pub download_dir: PathBuf,
    /// While XMPP is down, say "here" on multicast this often (and count
    /// as present those heard within three intervals).
    pub beacon_interval: Duration,
    /// What shows a received file on arrival.
    pub viewer: Viewer,
    /// How long a chat message waits for an earlier one of its sender
    /// that is still being repaired before it is shown without it.
    pub chat_order_wait: Duration,
    /// Room messages asked for on joining (XEP-0045 history): chat sent
    /// through the room while we were away, shown marked as history.
    pub room_history: u32,
    /// How long our sender waits, once all is sent, for late repair
    /// requests before it says it may stop ([`Member::until_quiet`]).
    pub linger: LingerConfig,
    /// The key server certificate's SHA-256 this member was told out of
    /// band (an invitation carries it): the room's announcement must name
    /// the same, or the member refuses to log in there.
    pub keyserver_pin: Option<[u8; 32]>,
    /// This device's signing key file, kept across runs (made on first
    /// use); `None`: a fresh key each run (others see it change).
    pub identity: Option<PathBuf>,
    /// Where the keys other users signed with are remembered (to flag a
    /// changed one across runs); `None`: for this run only.
    pub known_keys: Option<PathBuf>,
    /// Where what this device received of each sender is kept across runs,
    /// so that after a crash or a reboot it fetches what it missed
    /// meanwhile and nothing it had; `None`: nothing kept (a restarted
    /// member fetches only what is sent from then on).
    pub progress: Option<PathBuf>,
}

/// What shows a received file on arrival (the original's "remote display").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    /// Nothing: files are only saved.
    Never,
    /// The system's viewer (`xdg-open`), if installed.
    System,
    /// This command, with the file's path as its last argument.
    Command(Vec<String>),
}

impl Viewer {
    fn command(&self) -> Option<Vec<String>> {
        match self {
            Viewer::Never => None,
            Viewer::System => Some(vec!["xdg-open".to_string()]),
            Viewer::Command(c) if !c.is_empty() => Some(c.clone()),
            Viewer::Command(_) => None,
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
            chat_via: Via::Multicast,
            download_dir: PathBuf::from("."),
            beacon_interval: Duration::from_secs(5),
            viewer: Viewer::System,
            chat_order_wait: super::order::DEFAULT_WAIT,
            keyserver_pin: None,
            identity: None,
            known_keys: None,
            progress: None,
            room_history: 20,
            linger: LingerConfig::default(),
        }
    }
}

/// Which way a message goes out or came in (every member accepts both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// As a transport object on the multicast group (chat's default).
    Multicast,
    /// Sealed under the group key, as a message through the XMPP room (the original way).
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
    /// A user signed with another key than this member saw from it
    /// before: a new device, or someone else holding its password.
    KeyChanged {
        /// The user.
        user: String,
        /// The earlier key's short fingerprint.
        was: String,
        /// The new key's short fingerprint.
        now: String,
    },
    /// A position shared: a member's own (`/pos`, `--position`) or a unit
    /// a bridge relays (a TAK client's position report).
    Position {
        /// The member that signed it (for a relayed unit, the bridge).
        from: String,
        /// Where, and whose when it is not `from`'s own.
        position: crate::group::position::Position,
        /// When it was sent (sender's clock), ms since the Unix epoch.
        sent_ms: u64,
        /// How it came.
        via: Via,
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
    /// Part of our file went out once; reported every twentieth.
    FileSendProgress {
        /// Transport object id (as in `FileSending`).
        object: u32,
        /// Bytes sent so far.
        sent: u64,
        /// Of this many (the envelope: the file and its header and signature).
        len: u64,
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
        /// Transport object id (as in its `FileProgress`).
        object: u32,
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
        /// Transport object id (as in its `FileProgress`).
        object: u32,
        /// Why.
        why: String,
    },
    /// The viewer was started on a received file.
    FileShown {
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
    /// Our sender's lulls (see [`Member::until_quiet`]).
    lull: watch::Receiver<Lull>,
    /// Our sender, to ask it how fast it goes.
    sender: Handle<Sender<GroupSeal>>,
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
        if cfg.keyserver_pin.is_some_and(|pin| pin != params.fingerprint) {
            xmpp.stop().await;
            return Err(MemberError::Params(format!(
                "the room announces a key server at {} whose certificate is not the one this member was given \
                 (invitation or profile): refusing to log in there",
                params.keyserver
            )));
        }
        let user = cfg.xmpp.jid.local.clone().unwrap_or_default();
        let registration = Registration::login(params.keyserver, params.fingerprint, &user, &cfg.xmpp.password)
            .await
            .map_err(|e| unreachable_or(e, params.keyserver))?;
        let keys = registration.join(&cfg.group).await?;
        // Our signing key, certified by the key server: others see who sent what.
        let key = match &cfg.identity {
            Some(path) => super::identity::load_or_create(path).map_err(|e| MemberError::Params(e.to_string()))?,
            None => lsim_keymgmt::cert::new_signing_key().map_err(|e| MemberError::Params(e.to_string()))?,
        };
        let signer = Arc::new(registration.certify(key).await?);
        let node = (registration.member().0 as u32) & !RECEIVER_NODE_BIT;
        let epoch = keys.keys.epoch().unwrap_or(0);
        let session = keys.keys.group();
        let (ev_tx, ev_rx) = mpsc::channel(1024);
        let transport = Transport::start(&cfg, &params, node, keys, &registration, signer, ev_tx.clone())?;
        let _ = ev_tx.send(MemberEvent::Joined { session, node, epoch, params: params.clone() }).await;
        let status = Payload::Status(MemberStatus {
            node,
            epoch: u64::from(epoch),
            loss_permille: 0,
            repairs: cfg.repairer.clone(),
        });
        xmpp.set_room_payload(cfg.room.clone(), Some(status.to_element())).await;
        let (lull, sender) = (transport.lull.clone(), transport.sender.clone());
        let (commands, task) = running::spawn(cfg, xmpp, registration, transport, ev_tx, early);
        Ok(Member { commands, events: ev_rx, lull, sender, task })
    }

    /// Our sender's pacing rate now, bytes per second (the adaptive rate
    /// where it adapts); `None` once the member stopped.
    pub async fn sending_rate(&self) -> Option<u64> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if !self.sender.with(move |s| {
            let _ = tx.send(s.rate());
        }) {
            return None;
        }
        rx.await.ok()
    }

    /// Returns once our sender has sent `object` and everything queued
    /// since, and then heard no repair request for the linger's quiet time
    /// (or its longest time passed): when a member that only came to send
    /// may leave without stranding a receiver whose NACK was late. The
    /// sender decides (`SenderEvent::MayStop`); this only waits for it.
    pub async fn until_quiet(&mut self, object: u32) {
        let _ = self.lull.wait_for(|l| l.quiet_after.is_some_and(|last| last.wrapping_sub(object) < 1 << 31)).await;
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

    /// Shares a position with the group (signed, as chat is; what
    /// [`MemberEvent::Position`] reports at every member, this one too).
    pub async fn share_position(&self, position: &crate::group::position::Position) {
        let _ = self.commands.send(Command::Chat(position.encode(), Vec::new())).await;
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
