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

use std::collections::{BTreeMap, BTreeSet};

use super::element::Element;
use super::history::{self, History};
use super::jid::Jid;
use super::stanza::{NS_MUC, NS_MUC_USER};
use super::stream::NS_CLIENT;

/// Identifies one client connection for as long as it is open.
pub type SessionId = u64;

/// XEP-0030 disco#info.
pub const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
/// XEP-0030 disco#items.
pub const NS_DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
/// XEP-0199 ping.
pub const NS_PING: &str = "urn:xmpp:ping";
/// RFC 6121 roster.
pub const NS_ROSTER: &str = "jabber:iq:roster";
/// RFC 3921 session establishment (a no-op today).
pub const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
/// XEP-0054 vCard.
pub const NS_VCARD: &str = "vcard-temp";
/// Stanza error conditions (RFC 6120 §8.3).
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
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

struct Occupant {
    nick: String,
    session: SessionId,
    real: Jid,
    affiliation: &'static str,
    role: &'static str,
    /// The children of the occupant's last presence, without MUC elements.
    presence: Vec<Element>,
}

struct Room {
    persistent: bool,
    subject: String,
    /// In join order.
    occupants: Vec<Occupant>,
    /// The last groupchat messages, replayed to joiners.
    history: History,
}

impl Room {
    fn new(persistent: bool) -> Room {
        Room { persistent, subject: String::new(), occupants: Vec::new(), history: History::default() }
    }

    fn by_session(&self, id: SessionId) -> Option<&Occupant> {
        self.occupants.iter().find(|o| o.session == id)
    }

    fn by_nick(&self, nick: &str) -> Option<&Occupant> {
        self.occupants.iter().find(|o| o.nick == nick)
    }
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

    // ---------------------------------------------------------------- IQs

    fn server_iq(&mut self, id: SessionId, e: &Element, out: &mut Vec<Output>) {
        let Some(q) = e.elements().next() else { return };
        let get = e.get_attr("type") == Some("get");
        let reply = match (get, q.name.as_str(), q.ns.as_str()) {
            (true, "ping", NS_PING) | (false, "session", NS_SESSION) => Some(None),
            (true, "query", NS_ROSTER) => Some(Some(Element::new("query", NS_ROSTER))),
            // Exactly what is implemented. Rosters and vCards are answered
            // (empty, read-only) so that clients asking do not fail, but not
            // advertised: they cannot be changed here.
            (true, "query", NS_DISCO_INFO) => Some(Some(
                disco_info(q, "server", "im", Some("lsim"))
                    .child(feature(NS_DISCO_INFO))
                    .child(feature(NS_DISCO_ITEMS))
                    .child(feature(NS_PING)),
            )),
            (true, "query", NS_DISCO_ITEMS) => Some(Some(disco_items(q).child(
                Element::new("item", NS_DISCO_ITEMS).attr("jid", self.muc_domain.as_str()).attr("name", "Rooms"),
            ))),
            (true, "vCard", NS_VCARD) => Some(Some(Element::new("vCard", NS_VCARD))),
            _ => None,
        };
        self.answer(id, e, &self.domain.clone(), reply, out);
    }

    fn account_iq(&mut self, id: SessionId, from: &Jid, to: &Jid, e: &Element, out: &mut Vec<Output>) {
        let Some(q) = e.elements().next() else { return };
        let get = e.get_attr("type") == Some("get");
        let own = from.bare() == to.bare();
        let reply = match (get, q.name.as_str(), q.ns.as_str()) {
            (true, "ping", NS_PING) => Some(None),
            (true, "vCard", NS_VCARD) => Some(Some(Element::new("vCard", NS_VCARD))),
            (true, "query", NS_ROSTER) if own => Some(Some(Element::new("query", NS_ROSTER))),
            (true, "query", NS_DISCO_INFO) => Some(Some(disco_info(q, "account", "registered", None))),
            (true, "query", NS_DISCO_ITEMS) => Some(Some(disco_items(q))),
            _ => None,
        };
        self.answer(id, e, &to.to_string(), reply, out);
    }

    fn conference_iq(&mut self, id: SessionId, e: &Element, out: &mut Vec<Output>) {
        let Some(q) = e.elements().next() else { return };
        let get = e.get_attr("type") == Some("get");
        let reply = match (get, q.name.as_str(), q.ns.as_str()) {
            (true, "query", NS_DISCO_INFO) => Some(Some(
                disco_info(q, "conference", "text", Some("Rooms"))
                    .child(feature(NS_DISCO_INFO))
                    .child(feature(NS_DISCO_ITEMS))
                    .child(feature(NS_MUC)),
            )),
            (true, "query", NS_DISCO_ITEMS) => {
                let mut items = disco_items(q);
                for name in self.rooms.keys() {
                    items = items.child(
                        Element::new("item", NS_DISCO_ITEMS)
                            .attr("jid", format!("{name}@{}", self.muc_domain))
                            .attr("name", name.as_str()),
                    );
                }
                Some(Some(items))
            }
            (true, "ping", NS_PING) => Some(None),
            _ => None,
        };
        self.answer(id, e, &self.muc_domain.clone(), reply, out);
    }

    fn room_iq(&mut self, id: SessionId, room_name: &str, e: &Element, out: &mut Vec<Output>) {
        let Some(q) = e.elements().next() else { return };
        let get = e.get_attr("type") == Some("get");
        let room_jid = format!("{room_name}@{}", self.muc_domain);
        let Some(room) = self.rooms.get(room_name) else {
            self.bounce(id, e, ErrorType::Cancel, "item-not-found", out);
            return;
        };
        let reply = match (get, q.name.as_str(), q.ns.as_str()) {
            (true, "query", NS_DISCO_INFO) => Some(Some(
                disco_info(q, "conference", "text", Some(room_name))
                    .child(feature(NS_DISCO_INFO))
                    .child(feature(NS_MUC))
                    .child(feature("muc_open"))
                    .child(feature("muc_public"))
                    .child(feature("muc_unmoderated"))
                    .child(feature("muc_nonanonymous"))
                    .child(feature("muc_unsecured"))
                    .child(feature(if room.persistent { "muc_persistent" } else { "muc_temporary" })),
            )),
            (true, "query", NS_DISCO_ITEMS) => Some(Some(disco_items(q))),
            (true, "ping", NS_PING) if room.by_session(id).is_some() => Some(None),
            _ => None,
        };
        self.answer(id, e, &room_jid, reply, out);
    }

    /// Sends an IQ result (with `payload`, if any) from `from`, or
    /// service-unavailable when `reply` is `None`.
    fn answer(&self, id: SessionId, e: &Element, from: &str, reply: Option<Option<Element>>, out: &mut Vec<Output>) {
        let Some(payload) = reply else {
            self.bounce(id, e, ErrorType::Cancel, "service-unavailable", out);
            return;
        };
        let mut result = Element::new("iq", NS_CLIENT)
            .attr("type", "result")
            .attr("id", e.get_attr("id").unwrap_or_default())
            .attr("from", from);
        if let Some(to) = self.jid_of(id) {
            result.set_attr("to", to.to_string());
        }
        if let Some(p) = payload {
            result = result.child(p);
        }
        out.push(Output::Send(id, result));
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

    // -------------------------------------------------------------- rooms

    fn room_jid(&self, room: &str, nick: Option<&str>) -> String {
        match nick {
            Some(n) => format!("{room}@{}/{n}", self.muc_domain),
            None => format!("{room}@{}", self.muc_domain),
        }
    }

    fn room_presence(
        &mut self,
        id: SessionId,
        from: &Jid,
        room_name: &str,
        nick: Option<&str>,
        e: Element,
        out: &mut Vec<Output>,
    ) {
        let kind = e.get_attr("type").map(str::to_owned);
        let children: Vec<Element> = e.elements().filter(|c| c.ns != NS_MUC && c.ns != NS_MUC_USER).cloned().collect();
        let occupant_nick = self.rooms.get(room_name).and_then(|r| r.by_session(id)).map(|o| o.nick.clone());
        match kind.as_deref() {
            Some("unavailable") => {
                if occupant_nick.is_some() {
                    self.leave(room_name, id, children, out);
                }
            }
            None => {
                let Some(nick) = nick else {
                    self.bounce(id, &e, ErrorType::Modify, "jid-malformed", out);
                    return;
                };
                let rejoin = e.get_child("x", NS_MUC).is_some();
                match occupant_nick {
                    // A join presence from an occupant: a client that took
                    // over its old session wants the room's state again.
                    Some(current) if current == nick && rejoin => {
                        let history = e.get_child("x", NS_MUC).and_then(|x| x.get_child("history", NS_MUC));
                        let Ok(wanted) = history::Request::parse(history) else {
                            self.bounce(id, &e, ErrorType::Modify, "bad-request", out);
                            return;
                        };
                        self.update(room_name, id, children, out);
                        self.send_state(room_name, id, from, &wanted, out);
                    }
                    Some(current) if current == nick => self.update(room_name, id, children, out),
                    // Nick changes (XEP-0045 §7.6) are not supported.
                    Some(_) => self.bounce(id, &e, ErrorType::Cancel, "not-acceptable", out),
                    None => self.join(id, from, room_name, nick, children, &e, out),
                }
            }
            // Errors, subscriptions, probes: nothing for a room to do.
            Some(_) => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn join(
        &mut self,
        id: SessionId,
        from: &Jid,
        room_name: &str,
        nick: &str,
        presence: Vec<Element>,
        request: &Element,
        out: &mut Vec<Output>,
    ) {
        let history = request.get_child("x", NS_MUC).and_then(|x| x.get_child("history", NS_MUC));
        let Ok(wanted) = history::Request::parse(history) else {
            self.bounce(id, request, ErrorType::Modify, "bad-request", out);
            return;
        };
        let created = !self.rooms.contains_key(room_name);
        if created && self.rooms.len() >= MAX_ROOMS {
            self.bounce(id, request, ErrorType::Wait, "resource-constraint", out);
            return;
        }
        if let Some(holder) = self.rooms.get(room_name).and_then(|r| r.by_nick(nick))
            && holder.real != *from
        {
            if holder.real.bare() == from.bare() {
                self.take_over(room_name, nick, id, from, presence, &wanted, out);
            } else {
                self.bounce(id, request, ErrorType::Cancel, "conflict", out);
            }
            return;
        }
        let (affiliation, role) = if created { ("owner", "moderator") } else { ("none", "participant") };
        let occupant =
            Occupant { nick: nick.to_string(), session: id, real: from.clone(), affiliation, role, presence };
        let room = self.rooms.entry(room_name.to_string()).or_insert_with(|| Room::new(false));
        // Existing occupants to the newcomer, then the newcomer to them.
        for o in &room.occupants {
            let p = occupant_presence(&self.muc_domain, room_name, o, None, &from.to_string(), &[]);
            out.push(Output::Send(id, p));
        }
        for o in &room.occupants {
            let p = occupant_presence(&self.muc_domain, room_name, &occupant, None, &o.real.to_string(), &[]);
            out.push(Output::Send(o.session, p));
        }
        let mut codes = vec![100, 110];
        if created {
            codes.push(201);
        }
        let own = occupant_presence(&self.muc_domain, room_name, &occupant, None, &from.to_string(), &codes);
        out.push(Output::Send(id, own));
        room.occupants.push(occupant);
        let room = &self.rooms[room_name];
        let room_jid = self.room_jid(room_name, None);
        for m in room.history.replay(&wanted, self.now_ms, &room_jid, &from.to_string()) {
            out.push(Output::Send(id, m));
        }
        out.push(Output::Send(id, self.subject(room_name, room, from)));
    }

    /// A new session of the occupant's own bare JID joins under its nick:
    /// the same user back (restarted, or reconnected before its old
    /// connection timed out). It becomes that occupant, so the room sees a
    /// presence change instead of a stranger's nick; the old session is
    /// told it is out.
    #[allow(clippy::too_many_arguments)]
    fn take_over(
        &mut self,
        room_name: &str,
        nick: &str,
        id: SessionId,
        from: &Jid,
        presence: Vec<Element>,
        wanted: &history::Request,
        out: &mut Vec<Output>,
    ) {
        let Some(room) = self.rooms.get_mut(room_name) else { return };
        let Some(o) = room.occupants.iter_mut().find(|o| o.nick == nick) else { return };
        let (old_session, old_real) = (o.session, o.real.clone());
        o.session = id;
        o.real = from.clone();
        let gone = Occupant {
            nick: nick.to_string(),
            session: old_session,
            real: old_real.clone(),
            affiliation: o.affiliation,
            role: "none",
            presence: Vec::new(),
        };
        let p =
            occupant_presence(&self.muc_domain, room_name, &gone, Some("unavailable"), &old_real.to_string(), &[110]);
        out.push(Output::Send(old_session, p));
        self.update(room_name, id, presence, out);
        self.send_state(room_name, id, from, wanted, out);
    }

    /// The room's state as a joiner gets it: every other occupant's
    /// presence, its own (status 110), the history it asked for and the subject.
    fn send_state(&self, room_name: &str, id: SessionId, to: &Jid, wanted: &history::Request, out: &mut Vec<Output>) {
        let Some(room) = self.rooms.get(room_name) else { return };
        let Some(me) = room.by_session(id) else { return };
        for o in room.occupants.iter().filter(|o| o.session != id) {
            out.push(Output::Send(id, occupant_presence(&self.muc_domain, room_name, o, None, &to.to_string(), &[])));
        }
        out.push(Output::Send(id, occupant_presence(&self.muc_domain, room_name, me, None, &to.to_string(), &[110])));
        for m in room.history.replay(wanted, self.now_ms, &self.room_jid(room_name, None), &to.to_string()) {
            out.push(Output::Send(id, m));
        }
        out.push(Output::Send(id, self.subject(room_name, room, to)));
    }

    fn subject(&self, room_name: &str, room: &Room, to: &Jid) -> Element {
        Element::new("message", NS_CLIENT)
            .attr("type", "groupchat")
            .attr("from", self.room_jid(room_name, None))
            .attr("to", to.to_string())
            .child(Element::new("subject", NS_CLIENT).text(room.subject.as_str()))
    }

    fn update(&mut self, room_name: &str, id: SessionId, presence: Vec<Element>, out: &mut Vec<Output>) {
        let Some(room) = self.rooms.get_mut(room_name) else { return };
        let Some(me) = room.occupants.iter_mut().find(|o| o.session == id) else { return };
        me.presence = presence;
        let room = &self.rooms[room_name];
        let Some(me) = room.by_session(id) else { return };
        for o in &room.occupants {
            let codes: &[u16] = if o.session == id { &[110] } else { &[] };
            let p = occupant_presence(&self.muc_domain, room_name, me, None, &o.real.to_string(), codes);
            out.push(Output::Send(o.session, p));
        }
    }

    fn leave(&mut self, room_name: &str, id: SessionId, presence: Vec<Element>, out: &mut Vec<Output>) {
        let Some(room) = self.rooms.get_mut(room_name) else { return };
        let Some(at) = room.occupants.iter().position(|o| o.session == id) else { return };
        let mut gone = room.occupants.remove(at);
        gone.presence = presence;
        gone.role = "none";
        for o in &room.occupants {
            let p =
                occupant_presence(&self.muc_domain, room_name, &gone, Some("unavailable"), &o.real.to_string(), &[]);
            out.push(Output::Send(o.session, p));
        }
        let own =
            occupant_presence(&self.muc_domain, room_name, &gone, Some("unavailable"), &gone.real.to_string(), &[110]);
        out.push(Output::Send(id, own));
        if room.occupants.is_empty() && !room.persistent {
            self.rooms.remove(room_name);
        }
    }

    fn room_message(
        &mut self,
        id: SessionId,
        room_name: &str,
        nick: Option<&str>,
        mut e: Element,
        out: &mut Vec<Output>,
    ) {
        let kind = e.get_attr("type").unwrap_or("normal").to_string();
        if kind == "error" {
            return;
        }
        let sender = self.rooms.get(room_name).and_then(|r| r.by_session(id)).map(|o| o.nick.clone());
        let Some(sender) = sender else {
            let condition = if self.rooms.contains_key(room_name) { "not-acceptable" } else { "item-not-found" };
            self.bounce(id, &e, ErrorType::Cancel, condition, out);
            return;
        };
        let from_occupant = self.room_jid(room_name, Some(&sender));
        match nick {
            None if kind == "groupchat" => {
                if let Some(subject) = e.get_child("subject", NS_CLIENT).map(Element::text_content)
                    && let Some(room) = self.rooms.get_mut(room_name)
                {
                    room.subject = subject;
                }
                e.set_attr("from", from_occupant);
                let now_ms = self.now_ms;
                let Some(room) = self.rooms.get_mut(room_name) else { return };
                // A subject change is the subject, not history (XEP-0045 §7.2.15).
                if e.get_child("subject", NS_CLIENT).is_none() {
                    let mut kept = e.clone();
                    kept.remove_attr("to");
                    room.history.push(&kept, now_ms);
                }
                for o in &room.occupants {
                    let mut copy = e.clone();
                    copy.set_attr("to", o.real.to_string());
                    out.push(Output::Send(o.session, copy));
                }
            }
            // Invitations and other non-groupchat messages to the room.
            None => self.bounce(id, &e, ErrorType::Cancel, "feature-not-implemented", out),
            Some(_) if kind == "groupchat" => self.bounce(id, &e, ErrorType::Modify, "bad-request", out),
            Some(target_nick) => {
                let target = self.rooms.get(room_name).and_then(|r| r.by_nick(target_nick));
                match target {
                    Some(t) => {
                        let (session, real) = (t.session, t.real.to_string());
                        e.set_attr("from", from_occupant);
                        e.set_attr("to", real);
                        out.push(Output::Send(session, e));
                    }
                    None => self.bounce(id, &e, ErrorType::Cancel, "item-not-found", out),
                }
            }
        }
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

fn feature(var: &str) -> Element {
    Element::new("feature", NS_DISCO_INFO).attr("var", var)
}

fn disco_info(q: &Element, category: &str, kind: &str, name: Option<&str>) -> Element {
    Element::new("query", NS_DISCO_INFO).attr_opt("node", q.get_attr("node")).child(
        Element::new("identity", NS_DISCO_INFO).attr("category", category).attr("type", kind).attr_opt("name", name),
    )
}

fn disco_items(q: &Element) -> Element {
    Element::new("query", NS_DISCO_ITEMS).attr_opt("node", q.get_attr("node"))
}

/// The presence of occupant `o` as `to` sees it: the occupant's own
/// presence children plus its MUC item (real JID shown: the room is
/// non-anonymous) and `codes`.
fn occupant_presence(
    muc_domain: &str,
    room: &str,
    o: &Occupant,
    kind: Option<&str>,
    to: &str,
    codes: &[u16],
) -> Element {
    let mut p = Element::new("presence", NS_CLIENT)
        .attr("from", format!("{room}@{muc_domain}/{}", o.nick))
        .attr("to", to)
        .attr_opt("type", kind);
    for c in &o.presence {
        p = p.child(c.clone());
    }
    let mut x = Element::new("x", NS_MUC_USER).child(
        Element::new("item", NS_MUC_USER)
            .attr("affiliation", o.affiliation)
            .attr("role", o.role)
            .attr("jid", o.real.to_string()),
    );
    for code in codes {
        x = x.child(Element::new("status", NS_MUC_USER).attr("code", code.to_string()));
    }
    p.child(x)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::xmpp::stanza::{MucUser, NS_LSIM, Presence, PresenceType};

    const ROOM: &str = "lsim@conference.example.org";

    fn hub_with(users: &[(SessionId, &str)]) -> Hub {
        let mut hub = Hub::new("example.org");
        for (id, jid) in users {
            assert!(hub.bind(*id, Jid::parse(jid).unwrap()).is_empty());
        }
        hub
    }

    fn join(room_nick: &str) -> Element {
        Element::new("presence", NS_CLIENT).attr("to", room_nick).child(Element::new("x", NS_MUC))
    }

    fn groupchat(id: &str) -> Element {
        Element::new("message", NS_CLIENT)
            .attr("to", ROOM)
            .attr("type", "groupchat")
            .attr("id", id)
            .child(Element::new("x", NS_LSIM).attr("epoch", "4"))
    }

    fn sends(out: &[Output]) -> Vec<(SessionId, &Element)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send(id, e) => Some((*id, e)),
                Output::Close(..) => None,
            })
            .collect()
    }

    fn muc(e: &Element) -> MucUser {
        Presence::try_from(e).unwrap().muc_user.unwrap()
    }

    fn stanza_error(e: &Element) -> Option<&str> {
        assert_eq!(e.get_attr("type"), Some("error"));
        e.get_child("error", NS_CLIENT)?.elements().next().map(|c| c.name.as_str())
    }

    #[test]
    fn join_order_and_presence_broadcast() {
        let mut hub = hub_with(&[(1, "alice@example.org/a"), (2, "bob@example.org/b")]);
        let out = hub.stanza(1, join(&format!("{ROOM}/alice")));
        let s = sends(&out);
        // Self-presence (100, 110; not 201: the default room exists) then subject.
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].1.get_attr("from"), Some(&*format!("{ROOM}/alice")));
        assert_eq!(muc(s[0].1).status_codes, vec![100, 110]);
        assert_eq!(s[1].1.get_attr("type"), Some("groupchat"));
        assert!(s[1].1.get_child("subject", NS_CLIENT).is_some());

        let out = hub.stanza(2, join(&format!("{ROOM}/bob")));
        let s = sends(&out);
        // alice to bob, bob to alice, bob's self-presence, subject.
        assert_eq!(s.len(), 4);
        assert_eq!((s[0].0, s[0].1.get_attr("from")), (2, Some(&*format!("{ROOM}/alice"))));
        assert_eq!(muc(s[0].1).items[0].jid.as_deref(), Some("alice@example.org/a"));
        assert!(!muc(s[0].1).is_self());
        assert_eq!((s[1].0, s[1].1.get_attr("from")), (1, Some(&*format!("{ROOM}/bob"))));
        assert_eq!(s[1].1.get_attr("to"), Some("alice@example.org/a"));
        assert_eq!(s[2].0, 2);
        assert!(muc(s[2].1).is_self());
        assert!(s[3].1.get_child("subject", NS_CLIENT).is_some());
        assert_eq!(hub.occupants("lsim"), vec!["alice", "bob"]);

        // A presence update is rebroadcast, with 110 to its sender only.
        let update = Element::new("presence", NS_CLIENT)
            .attr("to", format!("{ROOM}/bob"))
            .child(Element::new("show", NS_CLIENT).text("away"));
        let out = hub.stanza(2, update);
        let s = sends(&out);
        assert_eq!(s.len(), 2);
        for (id, p) in s {
            assert!(p.get_child("show", NS_CLIENT).is_some());
            assert_eq!(muc(p).is_self(), id == 2);
        }
    }

    #[test]
    fn new_rooms_are_created_unlocked_and_destroyed_when_empty() {
        let mut hub = hub_with(&[(1, "alice@example.org/a"), (2, "bob@example.org/b")]);
        let out = hub.stanza(1, join("ops@conference.example.org/alice"));
        let s = sends(&out);
        assert_eq!(muc(s[0].1).status_codes, vec![100, 110, 201]);
        assert_eq!(muc(s[0].1).items[0].affiliation.as_deref(), Some("owner"));
        // A second joiner gets in at once (no locking); a join without <x/> counts.
        let out = hub.stanza(2, Element::new("presence", NS_CLIENT).attr("to", "ops@conference.example.org/bob"));
        assert!(muc(sends(&out)[2].1).is_self());
        hub.close(1);
        hub.close(2);
        assert_eq!(hub.rooms().collect::<Vec<_>>(), vec!["lsim"]);
    }

    #[test]
    fn nick_conflict() {
        let mut hub = hub_with(&[(1, "alice@example.org/a"), (2, "bob@example.org/b")]);
        hub.stanza(1, join(&format!("{ROOM}/x")));
        let out = hub.stanza(2, join(&format!("{ROOM}/x")).attr("id", "j1"));
        let s = sends(&out);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].0, 2);
        assert_eq!(s[0].1.name, "presence");
        assert_eq!(s[0].1.get_attr("id"), Some("j1"));
        assert_eq!(stanza_error(s[0].1), Some("conflict"));
        assert_eq!(hub.occupants("lsim"), vec!["x"]);
    }

    #[test]
    fn leave_on_unavailable_and_on_close() {
        let mut hub = hub_with(&[(1, "alice@example.org/a"), (2, "bob@example.org/b"), (3, "carol@example.org/c")]);
        for (id, nick) in [(1, "alice"), (2, "bob"), (3, "carol")] {
            hub.stanza(id, join(&format!("{ROOM}/{nick}")));
        }
        let out = hub.stanza(
            2,
            Element::new("presence", NS_CLIENT).attr("to", format!("{ROOM}/bob")).attr("type", "unavailable"),
        );
        let s = sends(&out);
        assert_eq!(s.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![1, 3, 2]);
        for (id, p) in &s {
            let p = Presence::try_from(*p).unwrap();
            assert_eq!(p.kind, PresenceType::Unavailable);
            assert_eq!(p.muc_user.unwrap().is_self(), *id == 2);
        }
        let out = hub.close(3);
        let s = sends(&out);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].0, 1);
        assert_eq!(s[0].1.get_attr("from"), Some(&*format!("{ROOM}/carol")));
        assert_eq!(hub.occupants("lsim"), vec!["alice"]);
    }

    #[test]
    fn payload_only_groupchat_is_relayed_with_its_id() {
        let mut hub = hub_with(&[(1, "alice@example.org/a"), (2, "bob@example.org/b")]);
        hub.stanza(1, join(&format!("{ROOM}/alice")));
        hub.stanza(2, join(&format!("{ROOM}/bob")));
        let out = hub.stanza(1, groupchat("m1").attr("from", "forged@evil/x"));
        let s = sends(&out);
        assert_eq!(s.len(), 2);
        for (id, m) in s {
            assert_eq!(m.get_attr("id"), Some("m1"));
            assert_eq!(m.get_attr("from"), Some(&*format!("{ROOM}/alice")));
            assert_eq!(m.get_attr("to"), Some(if id == 1 { "alice@example.org/a" } else { "bob@example.org/b" }));
            assert_eq!(m.get_child("x", NS_LSIM).and_then(|x| x.get_attr("epoch")), Some("4"));
            assert!(m.get_child("body", NS_CLIENT).is_none());
        }
    }

    #[test]
    fn groupchat_from_a_non_occupant_is_refused() {
        let mut hub = hub_with(&[(1, "alice@example.org/a"), (2, "bob@example.org/b")]);
        hub.stanza(1, join(&format!("{ROOM}/alice")));
        let out = hub.stanza(2, groupchat("m1"));
        let s = sends(&out);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].0, 2);
        assert_eq!(stanza_error(s[0].1), Some("not-acceptable"));
    }

    #[test]
    fn private_message_through_the_room() {
        let mut hub = hub_with(&[(1, "alice@example.org/a"), (2, "bob@example.org/b")]);
        hub.stanza(1, join(&format!("{ROOM}/alice")));
        hub.stanza(2, join(&format!("{ROOM}/bob")));
        let pm = Element::new("message", NS_CLIENT).attr("to", format!("{ROOM}/bob")).attr("type", "chat");
        let out = hub.stanza(1, pm.clone());
        let s = sends(&out);
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].0, s[0].1.get_attr("from")), (2, Some(&*format!("{ROOM}/alice"))));
        let out = hub.stanza(1, pm.attr("to", format!("{ROOM}/nobody")));
        assert_eq!(stanza_error(sends(&out)[0].1), Some("item-not-found"));
    }

    #[test]
    fn one_to_one_routing() {
        let mut hub = hub_with(&[(1, "alice@example.org/a"), (2, "bob@example.org/b1"), (3, "bob@example.org/b2")]);
        let msg = |to: &str| Element::new("message", NS_CLIENT).attr("to", to).attr("type", "chat").attr("id", "c");
        let ids = |out: &[Output]| sends(out).iter().map(|(id, _)| *id).collect::<Vec<_>>();
        let out = hub.stanza(1, msg("bob@example.org"));
        assert_eq!(ids(&out), vec![2, 3]);
        assert_eq!(sends(&out)[0].1.get_attr("from"), Some("alice@example.org/a"));
        assert_eq!(ids(&hub.stanza(1, msg("bob@example.org/b2"))), vec![3]);
        let out = hub.stanza(1, msg("nobody@example.org"));
        assert_eq!(ids(&out), vec![1]);
        assert_eq!(stanza_error(sends(&out)[0].1), Some("service-unavailable"));
        let out = hub.stanza(1, msg("x@elsewhere.net"));
        assert_eq!(stanza_error(sends(&out)[0].1), Some("remote-server-not-found"));
        // An IQ to a full JID is passed on; its result comes back.
        let ping = Element::new("iq", NS_CLIENT)
            .attr("type", "get")
            .attr("id", "p")
            .attr("to", "alice@example.org/a")
            .child(Element::new("ping", NS_PING));
        assert_eq!(ids(&hub.stanza(2, ping)), vec![1]);
        let result =
            Element::new("iq", NS_CLIENT).attr("type", "result").attr("id", "p").attr("to", "bob@example.org/b1");
        assert_eq!(ids(&hub.stanza(1, result)), vec![2]);
        // Presence without `to` goes nowhere.
        assert!(hub.stanza(1, Element::new("presence", NS_CLIENT)).is_empty());
    }

    #[test]
    fn rebinding_a_full_jid_replaces_the_older_session() {
        let mut hub = hub_with(&[(1, "alice@example.org/a"), (2, "bob@example.org/b")]);
        hub.stanza(1, join(&format!("{ROOM}/alice")));
        hub.stanza(2, join(&format!("{ROOM}/bob")));
        let out = hub.bind(3, Jid::parse("alice@example.org/a").unwrap());
        assert!(out.contains(&Output::Close(1, "conflict")));
        // The same client back: it keeps alice's place, and bob hears no leave.
        assert!(sends(&out).is_empty(), "{out:?}");
        assert_eq!(hub.occupants("lsim"), vec!["alice", "bob"]);
        assert!(hub.jid_of(1).is_none());
        // Its join presence gets the room's state; bob sees a presence change, not a join.
        let out = hub.stanza(3, join(&format!("{ROOM}/alice")));
        let to_alice: Vec<&Element> = sends(&out).iter().filter(|(id, _)| *id == 3).map(|(_, e)| *e).collect();
        assert!(to_alice.iter().any(|p| p.get_attr("from") == Some(&format!("{ROOM}/bob")[..])));
        assert!(to_alice.iter().any(|p| muc(p).status_codes.contains(&110)));
        assert!(to_alice.iter().any(|m| m.get_child("subject", NS_CLIENT).is_some()));
        assert!(sends(&out).iter().all(|(id, p)| *id != 2 || p.get_attr("type").is_none()));
        assert_eq!(hub.occupants("lsim"), vec!["alice", "bob"]);
    }

    #[test]
    fn a_new_session_of_the_same_user_takes_over_its_nick() {
        let mut hub = hub_with(&[(1, "carol@example.org/old"), (2, "bob@example.org/b"), (3, "carol@example.org/new")]);
        hub.stanza(1, join(&format!("{ROOM}/carol")));
        hub.stanza(2, join(&format!("{ROOM}/bob")));
        let out = hub.stanza(3, join(&format!("{ROOM}/carol")));
        // The old session is told it is out; bob sees carol's presence change, never a leave.
        assert!(sends(&out).iter().any(|(id, p)| *id == 1 && p.get_attr("type") == Some("unavailable")));
        assert!(sends(&out).iter().all(|(id, p)| *id != 2 || p.get_attr("type").is_none()));
        assert!(sends(&out).iter().any(|(id, p)| *id == 3 && muc(p).status_codes.contains(&110)));
        assert_eq!(hub.occupants("lsim"), vec!["carol", "bob"]);
        // The old session closing later changes nothing.
        let out = hub.close(1);
        assert!(sends(&out).is_empty(), "{out:?}");
        assert_eq!(hub.occupants("lsim"), vec!["carol", "bob"]);
        // Another user still gets a conflict.
        let mut hub2 = hub_with(&[(1, "carol@example.org/a"), (2, "mallory@example.org/m")]);
        hub2.stanza(1, join(&format!("{ROOM}/carol")));
        let out = hub2.stanza(2, join(&format!("{ROOM}/carol")));
        assert_eq!(stanza_error(sends(&out)[0].1), Some("conflict"));
    }

    #[test]
    fn unknown_top_level_elements_close_the_session() {
        let mut hub = hub_with(&[(1, "alice@example.org/a")]);
        assert_eq!(
            hub.stanza(1, Element::new("foo", "urn:example")),
            vec![Output::Close(1, "unsupported-stanza-type")]
        );
        let mut hub = hub_with(&[(1, "alice@example.org/a")]);
        assert_eq!(
            hub.stanza(1, Element::new("message", "jabber:server")),
            vec![Output::Close(1, "invalid-namespace")]
        );
        assert!(hub.jid_of(1).is_none());
    }

    fn iq_get(to: Option<&str>, q: Element) -> Element {
        Element::new("iq", NS_CLIENT).attr("type", "get").attr("id", "q1").attr_opt("to", to).child(q)
    }

    fn result_of(out: &[Output]) -> &Element {
        let s = sends(out);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].1.get_attr("type"), Some("result"), "{}", s[0].1.to_xml());
        assert_eq!(s[0].1.get_attr("id"), Some("q1"));
        s[0].1
    }

    #[test]
    fn service_discovery_and_server_iqs() {
        let mut hub = hub_with(&[(1, "alice@example.org/a")]);
        let info = Element::new("query", NS_DISCO_INFO);
        let items = Element::new("query", NS_DISCO_ITEMS);
        let out = hub.stanza(1, iq_get(None, info.clone()));
        let q = result_of(&out).get_child("query", NS_DISCO_INFO).unwrap();
        let id = q.get_child("identity", NS_DISCO_INFO).unwrap();
        assert_eq!((id.get_attr("category"), id.get_attr("type")), (Some("server"), Some("im")));
        let vars: Vec<&str> = q.children_named("feature", NS_DISCO_INFO).filter_map(|f| f.get_attr("var")).collect();
        assert_eq!(vars, [NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING], "only what is implemented is advertised");
        let out = hub.stanza(1, iq_get(Some("example.org"), items.clone()));
        let q = result_of(&out).get_child("query", NS_DISCO_ITEMS).unwrap();
        assert_eq!(q.elements().next().unwrap().get_attr("jid"), Some("conference.example.org"));

        let out = hub.stanza(1, iq_get(Some("conference.example.org"), info.clone()));
        let q = result_of(&out).get_child("query", NS_DISCO_INFO).unwrap();
        assert!(q.children_named("feature", NS_DISCO_INFO).any(|f| f.get_attr("var") == Some(NS_MUC)));
        let out = hub.stanza(1, iq_get(Some("conference.example.org"), items));
        let q = result_of(&out).get_child("query", NS_DISCO_ITEMS).unwrap();
        assert_eq!(q.elements().next().unwrap().get_attr("jid"), Some(ROOM));

        let out = hub.stanza(1, iq_get(Some(ROOM), info.clone()));
        let q = result_of(&out).get_child("query", NS_DISCO_INFO).unwrap();
        let vars: Vec<&str> = q.children_named("feature", NS_DISCO_INFO).filter_map(|f| f.get_attr("var")).collect();
        for v in [NS_MUC, "muc_open", "muc_public", "muc_unmoderated", "muc_nonanonymous", "muc_persistent"] {
            assert!(vars.contains(&v), "{v}");
        }
        let out = hub.stanza(1, iq_get(Some("nope@conference.example.org"), info));
        assert_eq!(stanza_error(sends(&out)[0].1), Some("item-not-found"));

        result_of(&hub.stanza(1, iq_get(None, Element::new("ping", NS_PING))));
        let out = hub.stanza(1, iq_get(None, Element::new("query", NS_ROSTER)));
        assert!(result_of(&out).get_child("query", NS_ROSTER).is_some());
        let session = iq_get(None, Element::new("session", NS_SESSION)).attr("type", "set");
        result_of(&hub.stanza(1, session));
        result_of(&hub.stanza(1, iq_get(Some("alice@example.org"), Element::new("vCard", NS_VCARD))));
        let out = hub.stanza(1, iq_get(None, Element::new("query", "jabber:iq:version")));
        assert_eq!(stanza_error(sends(&out)[0].1), Some("service-unavailable"));
        // Malformed IQs get bad-request; results to the server are dropped.
        let out = hub.stanza(1, Element::new("iq", NS_CLIENT).attr("type", "get").attr("id", "e"));
        assert_eq!(stanza_error(sends(&out)[0].1), Some("bad-request"));
        assert!(hub.stanza(1, Element::new("iq", NS_CLIENT).attr("type", "result").attr("id", "r")).is_empty());
    }

    mod random {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Bind(u8, u8, u8),
            Join(u8, u8, u8),
            Leave(u8, u8),
            Say(u8, u8),
            Private(u8, u8),
            Close(u8),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                (0..6u8, 0..3u8, 0..2u8).prop_map(|(s, u, r)| Op::Bind(s, u, r)),
                (0..6u8, 0..3u8, 0..3u8).prop_map(|(s, r, n)| Op::Join(s, r, n)),
                (0..6u8, 0..3u8).prop_map(|(s, r)| Op::Leave(s, r)),
                (0..6u8, 0..3u8).prop_map(|(s, r)| Op::Say(s, r)),
                (0..6u8, 0..3u8).prop_map(|(s, u)| Op::Private(s, u)),
                (0..6u8).prop_map(Op::Close),
            ]
        }

        fn room(r: u8) -> String {
            if r == 0 { ROOM.to_string() } else { format!("r{r}@conference.example.org") }
        }

        proptest! {
            /// Whatever sessions do, occupants are bound sessions with
            /// unique nicks, only the default room stays empty, and output
            /// goes to bound sessions only.
            #[test]
            fn room_state_stays_consistent(ops in proptest::collection::vec(op(), 1..60)) {
                let mut hub = Hub::new("example.org");
                for op in ops {
                    let out = match op {
                        Op::Bind(s, u, r) => {
                            let jid = Jid::parse(&format!("u{u}@example.org/r{r}")).unwrap();
                            hub.bind(u64::from(s), jid)
                        }
                        Op::Join(s, r, n) => hub.stanza(u64::from(s), join(&format!("{}/n{n}", room(r)))),
                        Op::Leave(s, r) => {
                            let p = Element::new("presence", NS_CLIENT).attr("to", format!("{}/x", room(r))).attr("type", "unavailable");
                            hub.stanza(u64::from(s), p)
                        }
                        Op::Say(s, r) => hub.stanza(u64::from(s), groupchat("g").attr("to", room(r))),
                        Op::Private(s, u) => {
                            let m = Element::new("message", NS_CLIENT).attr("to", format!("u{u}@example.org")).attr("type", "chat");
                            hub.stanza(u64::from(s), m)
                        }
                        Op::Close(s) => hub.close(u64::from(s)),
                    };
                    for o in &out {
                        match o {
                            Output::Send(id, e) => {
                                prop_assert!(hub.jid_of(*id).is_some(), "{}", e.to_xml());
                                prop_assert!(e.get_attr("from").is_some());
                            }
                            Output::Close(id, _) => prop_assert!(hub.jid_of(*id).is_none()),
                        }
                    }
                    for (name, r) in &hub.rooms {
                        prop_assert!(name == DEFAULT_ROOM || !r.occupants.is_empty());
                        let mut nicks: Vec<&str> = r.occupants.iter().map(|o| o.nick.as_str()).collect();
                        nicks.sort_unstable();
                        nicks.dedup();
                        prop_assert_eq!(nicks.len(), r.occupants.len());
                        for o in &r.occupants {
                            prop_assert_eq!(hub.jid_of(o.session), Some(&o.real));
                        }
                    }
                }
            }
        }
    }
}
