//! MUC (XEP-0045) rooms on `conference.<domain>`: occupants, joins (and
//! a returning client taking over its nick), presence updates, leaves,
//! groupchat with its history and subject, and private messages through a
//! room.
//!
//! Owns the rooms and their occupants. It must not route anything that is
//! not for a room (`hub` does) nor answer IQs (`iq` does); like the whole
//! hub it touches no sockets or clocks (the time is the driver's, given to
//! the hub).

use super::{ErrorType, Hub, MAX_ROOMS, Output, SessionId};
use crate::xmpp::element::Element;
use crate::xmpp::history::{self, History};
use crate::xmpp::jid::Jid;
use crate::xmpp::stanza::{NS_MUC, NS_MUC_USER};
use crate::xmpp::stream::NS_CLIENT;

pub(super) struct Occupant {
    pub(super) nick: String,
    pub(super) session: SessionId,
    pub(super) real: Jid,
    affiliation: &'static str,
    role: &'static str,
    /// The children of the occupant's last presence, without MUC elements.
    presence: Vec<Element>,
}

pub(super) struct Room {
    pub(super) persistent: bool,
    subject: String,
    /// In join order.
    pub(super) occupants: Vec<Occupant>,
    /// The last groupchat messages, replayed to joiners.
    pub(super) history: History,
}

impl Room {
    pub(super) fn new(persistent: bool) -> Room {
        Room { persistent, subject: String::new(), occupants: Vec::new(), history: History::default() }
    }

    pub(super) fn by_session(&self, id: SessionId) -> Option<&Occupant> {
        self.occupants.iter().find(|o| o.session == id)
    }

    fn by_nick(&self, nick: &str) -> Option<&Occupant> {
        self.occupants.iter().find(|o| o.nick == nick)
    }
}

impl Hub {
    fn room_jid(&self, room: &str, nick: Option<&str>) -> String {
        match nick {
            Some(n) => format!("{room}@{}/{n}", self.muc_domain),
            None => format!("{room}@{}", self.muc_domain),
        }
    }

    pub(super) fn room_presence(
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

    pub(super) fn leave(&mut self, room_name: &str, id: SessionId, presence: Vec<Element>, out: &mut Vec<Output>) {
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

    pub(super) fn room_message(
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
