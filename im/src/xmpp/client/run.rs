//! The client task: connects (resuming the earlier session when it can),
//! runs the session until it ends, waits a jittered backoff while offline
//! and connects again, re-joining its rooms.
//!
//! Owns the task's state (rooms, the offline queue, our side of stream
//! management) and the reconnect policy. It must not parse or answer what
//! the server sends (`incoming` does) nor hold room logic
//! ([`crate::xmpp::room`] does).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::handle::Command;
use super::incoming::{handle_incoming, managed};
use super::{ClientConfig, ClientError, ClientEvent, NS_PING, Resumption, Session, connect_resuming};
use crate::xmpp::element::Element;
use crate::xmpp::jid::Jid;
use crate::xmpp::room::{Room, RoomEvent};
use crate::xmpp::sm::{self, Unacked};
use crate::xmpp::stanza::{Iq, IqType, Presence};

/// Messages held while offline and sent after reconnecting.
const MAX_QUEUED: usize = 256;

pub(super) struct State {
    pub(super) cfg: ClientConfig,
    pub(super) rooms: BTreeMap<Jid, (Room, u32)>,
    pub(super) queue: VecDeque<Element>,
    pub(super) events: mpsc::Sender<ClientEvent>,
    /// Stream management (XEP-0198) of the current session, once asked for.
    pub(super) sm: Option<Managed>,
}

/// Our side of stream management: what we handled, what the server has
/// not acknowledged, and the id to resume with.
pub(super) struct Managed {
    /// Set once the server enabled resumption.
    pub(super) id: Option<String>,
    pub(super) handled: u32,
    pub(super) unacked: Unacked<Element>,
    pub(super) jid: Jid,
}

/// Most bytes of unacknowledged stanzas kept for resending.
const MAX_UNACKED_BYTES: usize = 1 << 20;
/// Ask the server to acknowledge after this many stanzas.
const ACK_EVERY: usize = 8;

impl State {
    /// How to resume, when the session can be.
    fn resumption(&self) -> Option<Resumption> {
        let m = self.sm.as_ref()?;
        Some(Resumption { id: m.id.clone()?, handled: m.handled, jid: m.jid.clone() })
    }
}

/// Sends a stanza, keeping it for resending until the server acknowledges it.
async fn send_counted(st: &mut State, session: &mut Session, e: &Element) -> Result<(), ClientError> {
    session.send(e).await?;
    if let Some(m) = st.sm.as_mut()
        && sm::is_stanza(e)
    {
        if !m.unacked.push(e.clone(), e.to_xml().len()) {
            // Too much unacknowledged: resumption can no longer lose nothing.
            st.sm = None;
            return Ok(());
        }
        if m.unacked.len() % ACK_EVERY == 0 {
            session.send(&sm::request()).await?;
        }
    }
    Ok(())
}

impl State {
    async fn emit(&self, ev: ClientEvent) {
        let _ = self.events.send(ev).await;
    }

    fn queue(&mut self, e: Element) {
        if self.queue.len() == MAX_QUEUED {
            self.queue.pop_front();
        }
        self.queue.push_back(e);
    }
}

pub(super) async fn run(cfg: ClientConfig, mut commands: mpsc::Receiver<Command>, events: mpsc::Sender<ClientEvent>) {
    let mut st = State { cfg, rooms: BTreeMap::new(), queue: VecDeque::new(), events, sm: None };
    let mut backoff = st.cfg.backoff_min;
    loop {
        let resumption = st.resumption();
        let session = match connect_resuming(&st.cfg, resumption.as_ref()).await {
            Ok(s) => s,
            Err(e) => {
                if e.is_fatal() || !st.cfg.reconnect {
                    st.emit(ClientEvent::Offline { error: e.to_string(), retry_in: None }).await;
                    st.emit(ClientEvent::Stopped { error: Some(e.to_string()) }).await;
                    return;
                }
                let wait = jitter(backoff);
                st.emit(ClientEvent::Offline { error: e.to_string(), retry_in: Some(wait) }).await;
                backoff = (backoff * 2).min(st.cfg.backoff_max);
                if !wait_offline(&mut st, &mut commands, wait).await {
                    st.emit(ClientEvent::Stopped { error: None }).await;
                    return;
                }
                continue;
            }
        };
        backoff = st.cfg.backoff_min;
        // Come back as the same resource: the server then replaces a session
        // of ours it still holds (RFC 6120 §7.7.2.2) instead of keeping a
        // ghost of it in our rooms until it times out.
        if st.cfg.resource.is_none() {
            st.cfg.resource = session.jid.resource.clone();
        }
        if resumption.is_some() && session.resumed.is_none() {
            // The server no longer held our session: we were out of our rooms after all.
            st.sm = None;
            left_rooms(&mut st).await;
        }
        let ev = ClientEvent::Online {
            jid: session.jid.clone(),
            encrypted: session.encrypted,
            mechanism: session.mechanism,
            resumed: session.resumed.is_some(),
        };
        st.emit(ev).await;
        match online(&mut st, &mut commands, session).await {
            Ok(()) => {
                st.emit(ClientEvent::Stopped { error: None }).await;
                return;
            }
            Err(e) => {
                // A stream error ends the session for good (the server is
                // going down, or replaced us); a dropped link does not.
                if matches!(e, ClientError::StreamErrorReceived(_)) {
                    st.sm = None;
                }
                // A session the server keeps for us stays in its rooms.
                if st.resumption().is_none() {
                    st.sm = None;
                    left_rooms(&mut st).await;
                }
                if !st.cfg.reconnect {
                    st.emit(ClientEvent::Offline { error: e.to_string(), retry_in: None }).await;
                    st.emit(ClientEvent::Stopped { error: Some(e.to_string()) }).await;
                    return;
                }
                let wait = jitter(st.cfg.backoff_min);
                st.emit(ClientEvent::Offline { error: e.to_string(), retry_in: Some(wait) }).await;
                if !wait_offline(&mut st, &mut commands, wait).await {
                    st.emit(ClientEvent::Stopped { error: None }).await;
                    return;
                }
            }
        }
    }
}

/// Our rooms are gone with the session: each is out until joined again.
async fn left_rooms(st: &mut State) {
    for (room, _) in st.rooms.values_mut() {
        if room.state() != crate::xmpp::room::JoinState::Out {
            room.disconnected();
            let _ = st.events.send(ClientEvent::Room { room: room.jid().clone(), event: RoomEvent::Left }).await;
        }
    }
}

/// 75–125 % of `d`, so a room full of clients does not reconnect in step.
fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    let r = u16::from_le_bytes(b) as f64 / u16::MAX as f64;
    d.mul_f64(0.75 + 0.5 * r)
}

/// Waits `wait` while offline, taking commands. False if asked to stop.
async fn wait_offline(st: &mut State, commands: &mut mpsc::Receiver<Command>, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return true,
            cmd = commands.recv() => match cmd {
                None | Some(Command::Stop) => return false,
                Some(Command::Join { room, nick, history }) => {
                    st.rooms.insert(room.bare(), (Room::new(room, &nick), history));
                }
                Some(Command::Leave { room }) => {
                    st.rooms.remove(&room.bare());
                }
                Some(Command::Send(e)) => st.queue(e),
                Some(Command::RoomPayload { room, payload }) => {
                    if let Some((r, _)) = st.rooms.get_mut(&room.bare()) {
                        r.set_payload(payload);
                    }
                }
            }
        }
    }
}

/// Runs one session. `Ok` when asked to stop; the error that ended it
/// otherwise.
async fn online(
    st: &mut State,
    commands: &mut mpsc::Receiver<Command>,
    mut session: Session,
) -> Result<(), ClientError> {
    match session.resumed {
        Some(h) => {
            // Resumed: everything the server had not handled goes again;
            // presence and rooms are as they were.
            let pending: Vec<Element> = match st.sm.as_mut() {
                Some(m) => match m.unacked.ack(h) {
                    Ok(()) => m.unacked.pending().cloned().collect(),
                    Err(_) => Vec::new(),
                },
                None => Vec::new(),
            };
            for e in &pending {
                session.send(e).await?;
            }
        }
        None => {
            if session.sm_offered {
                session.send(&sm::enable()).await?;
                st.sm = Some(Managed {
                    id: None,
                    handled: 0,
                    unacked: Unacked::new(MAX_UNACKED_BYTES),
                    jid: session.jid.clone(),
                });
            }
            let available: Element = (&Presence::new(crate::xmpp::stanza::PresenceType::Available)).into();
            send_counted(st, &mut session, &available).await?;
            let joins: Vec<Element> = st.rooms.values_mut().map(|(room, history)| room.join(*history)).collect();
            for join in &joins {
                send_counted(st, &mut session, join).await?;
            }
        }
    }
    while let Some(e) = st.queue.pop_front() {
        send_counted(st, &mut session, &e).await?;
    }
    let mut ping_due = Instant::now() + st.cfg.keepalive;
    let mut ping_sent: Option<(String, Instant)> = None;
    let mut ping_seq = 0u64;
    loop {
        let deadline = ping_sent.as_ref().map_or(ping_due, |(_, at)| *at + st.cfg.keepalive_timeout);
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                if ping_sent.is_some() {
                    return Err(ClientError::Timeout("keepalive ping"));
                }
                ping_seq += 1;
                let id = format!("ping-{ping_seq}");
                let iq = Iq {
                    kind: IqType::Get,
                    id: id.clone(),
                    to: Some(st.cfg.jid.domain.clone()),
                    from: None,
                    child: Some(Element::new("ping", NS_PING)),
                };
                send_counted(st, &mut session, &(&iq).into()).await?;
                ping_sent = Some((id, Instant::now()));
            }
            cmd = commands.recv() => match cmd {
                None | Some(Command::Stop) => {
                    for (room, _) in st.rooms.values_mut() {
                        if room.state() != crate::xmpp::room::JoinState::Out {
                            let _ = session.send(&room.leave()).await;
                        }
                    }
                    session.close().await;
                    return Ok(());
                }
                Some(Command::Join { room, nick, history }) => {
                    let mut r = Room::new(room.clone(), &nick);
                    send_counted(st, &mut session, &r.join(history)).await?;
                    st.rooms.insert(room.bare(), (r, history));
                }
                Some(Command::Leave { room }) => {
                    if let Some((mut r, _)) = st.rooms.remove(&room.bare()) {
                        send_counted(st, &mut session, &r.leave()).await?;
                    }
                }
                Some(Command::Send(e)) => send_counted(st, &mut session, &e).await?,
                Some(Command::RoomPayload { room, payload }) => {
                    if let Some((r, _)) = st.rooms.get_mut(&room.bare())
                        && let Some(p) = r.set_payload(payload)
                    {
                        send_counted(st, &mut session, &p).await?;
                    }
                }
            },
            incoming = session.recv() => {
                let e = match incoming {
                    None => return Err(ClientError::Closed),
                    Some(Err(e)) => return Err(e),
                    Some(Ok(e)) => e,
                };
                // Anything from the server shows the connection is alive.
                ping_due = Instant::now() + st.cfg.keepalive;
                if e.ns == sm::NS_SM {
                    if let Some(answer) = managed(st, &e) {
                        session.send(&answer).await?;
                    }
                    continue;
                }
                if let Some(m) = st.sm.as_mut()
                    && sm::is_stanza(&e)
                {
                    m.handled = m.handled.wrapping_add(1);
                }
                for reply in handle_incoming(st, &e, &mut ping_sent).await {
                    send_counted(st, &mut session, &reply).await?;
                }
            }
        }
    }
}
