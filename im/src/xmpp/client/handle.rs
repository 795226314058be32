//! The long-lived client ([`Client`]): a connection that stays up. Its
//! methods pass commands to the client task; what the task reports comes
//! back as [`ClientEvent`]s.
//!
//! Owns the handle, the commands and the events. It must not touch the
//! connection or the task's state: the task (`run`) does.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::ClientConfig;
use super::run::run;
use crate::xmpp::element::Element;
use crate::xmpp::jid::Jid;
use crate::xmpp::room::RoomEvent;
use crate::xmpp::sasl::Mechanism;
use crate::xmpp::stanza::Message;

/// What the client reports.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// Connected and bound (again, after a reconnect).
    Online {
        /// Our full JID.
        jid: Jid,
        /// Whether the stream is encrypted.
        encrypted: bool,
        /// The SASL mechanism used.
        mechanism: Mechanism,
        /// The earlier session was resumed (XEP-0198): rooms and presence
        /// are as they were, and nothing was lost either way.
        resumed: bool,
    },
    /// The connection failed or dropped.
    Offline {
        /// Why.
        error: String,
        /// When the next attempt comes, if any.
        retry_in: Option<Duration>,
    },
    /// Something happened in a room.
    Room {
        /// The room's bare JID.
        room: Jid,
        /// What.
        event: RoomEvent,
    },
    /// A message not from a room we are in.
    Message(Message),
    /// The client stopped (asked to, or after a fatal error).
    Stopped {
        /// The fatal error, if that was the cause.
        error: Option<String>,
    },
}

pub(super) enum Command {
    Join { room: Jid, nick: String, history: u32 },
    Leave { room: Jid },
    Send(Element),
    RoomPayload { room: Jid, payload: Option<Element> },
    Stop,
}

/// A connection that stays up: the task reconnects and re-joins rooms.
pub struct Client {
    commands: mpsc::Sender<Command>,
    events: mpsc::Receiver<ClientEvent>,
    task: JoinHandle<()>,
    next_id: u64,
    prefix: String,
}

impl Client {
    /// Starts the client task. Events arrive on [`Client::next_event`].
    pub fn spawn(cfg: ClientConfig) -> Client {
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (ev_tx, ev_rx) = mpsc::channel(1024);
        let mut raw = [0u8; 6];
        let _ = getrandom::fill(&mut raw);
        let prefix = raw.iter().map(|b| format!("{b:02x}")).collect();
        let task = tokio::spawn(run(cfg, cmd_rx, ev_tx));
        Client { commands: cmd_tx, events: ev_rx, task, next_id: 0, prefix }
    }

    /// The next event; `None` after the task ended.
    pub async fn next_event(&mut self) -> Option<ClientEvent> {
        self.events.recv().await
    }

    /// A fresh stanza id.
    pub fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("{}-{}", self.prefix, self.next_id)
    }

    /// Joins `room` as `nick` (kept across reconnects); asks for `history`
    /// past messages.
    pub async fn join(&self, room: Jid, nick: &str, history: u32) {
        let _ = self.commands.send(Command::Join { room, nick: nick.to_string(), history }).await;
    }

    /// Leaves `room`.
    pub async fn leave(&self, room: Jid) {
        let _ = self.commands.send(Command::Leave { room }).await;
    }

    /// Sends a groupchat message to `room`; returns its id.
    pub async fn send_group(&mut self, room: &Jid, body: Option<&str>, payload: Option<Element>) -> String {
        let id = self.new_id();
        let msg = Message {
            id: Some(id.clone()),
            body: body.map(str::to_string),
            payload,
            ..Message::new(crate::xmpp::stanza::MessageType::Groupchat, room.bare().to_string())
        };
        let _ = self.commands.send(Command::Send((&msg).into())).await;
        id
    }

    /// Sends any stanza (queued while offline).
    pub async fn send(&self, e: Element) {
        let _ = self.commands.send(Command::Send(e)).await;
    }

    /// Sets the `urn:lsim:0` payload of our presence in `room`.
    pub async fn set_room_payload(&self, room: Jid, payload: Option<Element>) {
        let _ = self.commands.send(Command::RoomPayload { room, payload }).await;
    }

    /// Leaves rooms, closes the stream and waits for the task.
    pub async fn stop(self) {
        let _ = self.commands.send(Command::Stop).await;
        let _ = self.task.await;
    }
}
