//! The embedded server's routing core, sans-IO: bound sessions, one-to-one
//! routing, the server's own IQ answers and MUC (XEP-0045) rooms on
//! `conference.<domain>`.
//!
//! Owns who is online (session id → full JID), the rooms and their
//! occupants, and every stanza the server itself produces (errors, disco,
//! room presence). It must not touch sockets, tasks, clocks, TLS or SASL:
//! the driver (`xmpp::server`) authenticates and binds, feeds what a
//! session sends in, and writes out what comes back as [`Output`]s.
//!
//! Rooms are open, unmoderated and non-anonymous; a new room is created on
//! its first join without locking (like Prosody with
//! `muc_room_locking = false`) and destroyed when its last occupant
//! leaves, except the default room `lsim@conference.<domain>`.
//!
//! # Files
//!
//! This file holds the sessions and routing (messages, presence and IQs to
//! whoever they are for, and stanza errors back); `iq` the answers the
//! server gives itself (disco, ping, roster, vCard); `muc` the rooms.

mod iq;
mod muc;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use super::element::Element;
use super::jid::Jid;
use super::stream::NS_CLIENT;
use muc::Room;

/// Identifies one client connection for as long as it is open.
pub type SessionId = u64;

pub use super::ns::{NS_DISCO_INFO, NS_PING, NS_SESSION, NS_STANZAS};
/// XEP-0030 disco#items.
pub const NS_DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
/// RFC 6121 roster.
pub const NS_ROSTER: &str = "jabber:iq:roster";
/// XEP-0054 vCard.
pub const NS_VCARD: &str = "vcard-temp";
/// The room that exists from the start.
pub const DEFAULT_ROOM: &str = "lsim";
/// At most this many rooms exist at once; more joins get
/// `resource-constraint`.
pub const MAX_ROOMS: usize = 10_000;

/// What the driver must do after feeding the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Write this stanza to this session.
    Send(SessionId, Element),
    /// Close this session's stream with this RFC 6120 stream error
    /// condition; the hub has already forgotten the session.
    Close(SessionId, &'static str),
}

/// A stanza error type (RFC 6120 §8.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorType {
    Cancel,
    Modify,
    Wait,
}

impl ErrorType {
    fn as_str(self) -> &'static str {
        match self {
            ErrorType::Cancel => "cancel",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }
}

struct Session {
    jid: Jid,
}

/// The server's routing state.
pub struct Hub {
    domain: String,
    muc_domain: String,
    sessions: BTreeMap<SessionId, Session>,
    /// Bare JID (as text) → its sessions.
    by_bare: BTreeMap<String, BTreeSet<SessionId>>,
    /// Room local part → room.
    rooms: BTreeMap<String, Room>,
    /// The time (Unix ms) the driver last gave: when room history is stamped.
    now_ms: u64,
}

impl Hub {
    /// A hub for `domain`, with the default room on `conference.<domain>`.
    pub fn new(domain: &str) -> Hub {
        let domain = domain.to_ascii_lowercase();
        let mut rooms = BTreeMap::new();
        rooms.insert(DEFAULT_ROOM.to_string(), Room::new(true));
        Hub {
            muc_domain: format!("conference.{domain}"),
            domain,
            sessions: BTreeMap::new(),
            by_bare: BTreeMap::new(),
            rooms,
            now_ms: 0,
        }
    }

    /// The server's domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The MUC service's domain, `conference.<domain>`.
    pub fn muc_domain(&self) -> &str {
        &self.muc_domain
    }

    /// The full JID session `id` is bound to, if any.
    pub fn jid_of(&self, id: SessionId) -> Option<&Jid> {
        self.sessions.get(&id).map(|s| &s.jid)
    }

    /// Whether `full` is bound by some session.
    pub fn is_bound(&self, full: &Jid) -> bool {
        self.session_of(full).is_some()
    }

    /// Names of the rooms that exist now.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.rooms.keys().map(String::as_str)
    }

    /// The time now, Unix milliseconds (the driver's clock: the hub has none).
    pub fn set_time(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
    }

    /// Messages in `room`'s history.
    pub fn history_len(&self, room: &str) -> usize {
        self.rooms.get(room).map_or(0, |r| r.history.len())
    }

    /// Nicks in `room`, in join order.
    pub fn occupants(&self, room: &str) -> Vec<String> {
        self.rooms.get(room).map(|r| r.occupants.iter().map(|o| o.nick.clone()).collect()).unwrap_or_default()
    }

    fn session_of(&self, full: &Jid) -> Option<SessionId> {
        let ids = self.by_bare.get(&full.bare().to_string())?;
        ids.iter().copied().find(|id| self.sessions.get(id).is_some_and(|s| s.jid == *full))
    }

    /// Session `id` has bound `full` (RFC 6120 §7). A session already
    /// bound to the same full JID is replaced and closed with `conflict`:
    /// the new one is the same client back (a radio link dropped its TCP
    /// connection), so it takes over the old one's room occupancies and the
    /// rooms see no one leave.
    pub fn bind(&mut self, id: SessionId, full: Jid) -> Vec<Output> {
        let mut out = Vec::new();
        if self.sessions.contains_key(&id) {
            self.forget(id, &mut out);
        }
        if let Some(old) = self.session_of(&full).filter(|old| *old != id) {
            for room in self.rooms.values_mut() {
                for o in room.occupants.iter_mut().filter(|o| o.session == old) {
                    o.session = id;
                }
            }
            self.forget(old, &mut out);
            // The replaced session hears nothing more: it is being closed.
            out.retain(|o| !matches!(o, Output::Send(to, _) if *to == old));
            out.push(Output::Close(old, "conflict"));
        }
        self.by_bare.entry(full.bare().to_string()).or_default().insert(id);
        self.sessions.insert(id, Session { jid: full });
        out
    }

    /// Session `id` is gone: it leaves its rooms.
    pub fn close(&mut self, id: SessionId) -> Vec<Output> {
        let mut out = Vec::new();
        self.forget(id, &mut out);
        out
    }

    fn forget(&mut self, id: SessionId, out: &mut Vec<Output>) {
        let Some(session) = self.sessions.remove(&id) else { return };
        let bare = session.jid.bare().to_string();
        if let Some(set) = self.by_bare.get_mut(&bare) {
            set.remove(&id);
            if set.is_empty() {
                self.by_bare.remove(&bare);
            }
        }
        let rooms: Vec<String> =
            self.rooms.iter().filter(|(_, r)| r.by_session(id).is_some()).map(|(n, _)| n.clone()).collect();
        // The session is gone: the others hear of it, it hears nothing.
        let mut leaving = Vec::new();
        for room in rooms {
            self.leave(&room, id, Vec::new(), &mut leaving);
        }
        out.extend(leaving.into_iter().filter(|o| !matches!(o, Output::Send(to, _) if *to == id)));
    }

    /// A stanza session `id` sent. Its `from` is replaced by the session's
    /// full JID. Anything that is not a stanza closes the session.
    pub fn stanza(&mut self, id: SessionId, mut e: Element) -> Vec<Output> {
        let mut out = Vec::new();
        let Some(from) = self.jid_of(id).cloned() else {
            out.push(Output::Close(id, "not-authorized"));
            return out;
        };
        if let Some(condition) = stanza_kind_error(&e) {
            self.forget(id, &mut out);
            out.push(Output::Close(id, condition));
            return out;
        }
        e.set_attr("from", from.to_string());
        let to = match e.get_attr("to").map(Jid::parse) {
            None => None,
            Some(Ok(to)) => Some(to),
            Some(Err(_)) => {
                self.bounce(id, &e, ErrorType::Modify, "jid-malformed", &mut out);
                return out;
            }
        };
        match e.name.as_str() {
            "message" => self.message(id, &from, to, e, &mut out),
            "presence" => self.presence(id, &from, to, e, &mut out),
            _ => self.iq(id, &from, to, e, &mut out),
        }
        out
    }

    // ------------------------------------------------------------ routing

    fn message(&mut self, id: SessionId, from: &Jid, to: Option<Jid>, e: Element, out: &mut Vec<Output>) {
        let Some(to) = to else {
            // To our own account: deliver to our other resources.
            let bare = from.bare();
            self.deliver_to_user(id, &bare, e, out);
            return;
        };
        if to.domain == self.muc_domain {
            if let Some(room) = to.local.clone() {
                self.room_message(id, &room, to.resource.as_deref(), e, out);
            } else {
                self.bounce(id, &e, ErrorType::Cancel, "service-unavailable", out);
            }
            return;
        }
        if to.domain != self.domain {
            self.bounce(id, &e, ErrorType::Cancel, "remote-server-not-found", out);
            return;
        }
        if to.local.is_none() {
            // Messages to the server itself are not for anyone.
            return;
        }
        self.deliver_to_user(id, &to, e, out);
    }

    /// Delivers a message or IQ response to `to` on our domain: a full JID
    /// to that session (a message falls back to all the user's sessions),
    /// a bare JID to all of them.
    fn deliver_to_user(&mut self, id: SessionId, to: &Jid, e: Element, out: &mut Vec<Output>) {
        if to.is_full() {
            if let Some(target) = self.session_of(to) {
                out.push(Output::Send(target, e));
                return;
            }
            if e.name != "message" {
                if is_request(&e) {
                    self.bounce(id, &e, ErrorType::Cancel, "service-unavailable", out);
                }
                return;
            }
        }
        let targets: Vec<SessionId> =
            self.by_bare.get(&to.bare().to_string()).map(|s| s.iter().copied().collect()).unwrap_or_default();
        if targets.is_empty() {
            if is_request(&e) {
                self.bounce(id, &e, ErrorType::Cancel, "service-unavailable", out);
            }
            return;
        }
        for target in targets {
            out.push(Output::Send(target, e.clone()));
        }
    }

    fn presence(&mut self, id: SessionId, from: &Jid, to: Option<Jid>, e: Element, out: &mut Vec<Output>) {
        let Some(to) = to else {
            // Broadcast presence: with no roster there is nobody to tell.
            return;
        };
        if to.domain == self.muc_domain {
            if let Some(room) = to.local.clone() {
                self.room_presence(id, from, &room, to.resource.as_deref(), e, out);
            }
            return;
        }
        // Directed presence to an online full JID is passed on;
        // subscriptions and probes have no roster to act on.
        if to.domain == self.domain
            && to.is_full()
            && let Some(target) = self.session_of(&to)
        {
            out.push(Output::Send(target, e));
        }
    }

    fn iq(&mut self, id: SessionId, from: &Jid, to: Option<Jid>, e: Element, out: &mut Vec<Output>) {
        let kind = e.get_attr("type").unwrap_or_default().to_string();
        if !matches!(kind.as_str(), "get" | "set" | "result" | "error") || e.get_attr("id").is_none() {
            self.bounce(id, &e, ErrorType::Modify, "bad-request", out);
            return;
        }
        let request = matches!(kind.as_str(), "get" | "set");
        if request && e.elements().count() != 1 {
            self.bounce(id, &e, ErrorType::Modify, "bad-request", out);
            return;
        }
        let to = match to {
            None => Jid { local: None, domain: self.domain.clone(), resource: None },
            Some(to) => to,
        };
        if to.domain == self.muc_domain {
            if !request {
                return;
            }
            match to.local.clone() {
                None => self.conference_iq(id, &e, out),
                Some(room) if to.resource.is_none() => self.room_iq(id, &room, &e, out),
                Some(_) => self.bounce(id, &e, ErrorType::Cancel, "service-unavailable", out),
            }
            return;
        }
        if to.domain != self.domain {
            if request {
                self.bounce(id, &e, ErrorType::Cancel, "remote-server-not-found", out);
            }
            return;
        }
        if to.local.is_none() {
            if request {
                self.server_iq(id, &e, out);
            }
            return;
        }
        if to.is_full() {
            self.deliver_to_user(id, &to, e, out);
            return;
        }
        // A bare JID: the server answers on the account's behalf.
        if request {
            self.account_iq(id, from, &to, &e, out);
        }
    }

    /// Returns `e` to its sender as a stanza error (never for errors or
    /// IQ results, RFC 6120 §8.3.1).
    fn bounce(&self, id: SessionId, e: &Element, kind: ErrorType, condition: &str, out: &mut Vec<Output>) {
        if !is_request(e) {
            return;
        }
        let mut reply = Element::new(e.name.clone(), NS_CLIENT).attr("type", "error");
        if let Some(v) = e.get_attr("id") {
            reply.set_attr("id", v);
        }
        let from = e.get_attr("to").map(str::to_owned).unwrap_or_else(|| self.domain.clone());
        reply.set_attr("from", from);
        if let Some(to) = self.jid_of(id) {
            reply.set_attr("to", to.to_string());
        }
        // Keep the original payload of a message or IQ so the sender can
        // tell which one failed; presence keeps its MUC join element.
        for child in e.elements().filter(|c| !c.is("error", NS_CLIENT)) {
            reply = reply.child(child.clone());
        }
        out.push(Output::Send(id, reply.child(error_element(kind, condition))));
    }
}

/// The stream error condition for a top-level element that is not a
/// client stanza (RFC 6120 §4.9.3.10, §4.9.3.25), or `None` for
/// `message`, `presence` and `iq` in `jabber:client`.
pub fn stanza_kind_error(e: &Element) -> Option<&'static str> {
    let known = matches!(e.name.as_str(), "message" | "presence" | "iq");
    match (known, e.ns == NS_CLIENT) {
        (true, true) => None,
        (true, false) => Some("invalid-namespace"),
        (false, _) => Some("unsupported-stanza-type"),
    }
}

/// Whether an error may be sent back for `e` (it is not itself an error
/// or an IQ response).
fn is_request(e: &Element) -> bool {
    match e.get_attr("type") {
        Some("error") => false,
        Some("result") => e.name != "iq",
        _ => true,
    }
}

fn error_element(kind: ErrorType, condition: &str) -> Element {
    Element::new("error", NS_CLIENT).attr("type", kind.as_str()).child(Element::new(condition, NS_STANZAS))
}
