//! One MUC room (XEP-0045) as a client sees it, sans-IO: the join with
//! nick-conflict retries and locked-room handling, and the occupant list
//! kept current from presence.
//!
//! Owns the join state and occupants. Takes stanzas that came from the
//! room and returns [`RoomEvent`]s and stanzas to send; it must not touch
//! the connection, reconnect policy or what payloads mean.

use std::collections::BTreeMap;

use super::element::Element;
use super::jid::Jid;
use super::stanza::{Iq, IqType, Message, MessageType, NS_MUC, Presence, PresenceType};
use super::stream::NS_CLIENT;

/// XEP-0045 owner namespace (instant-room configuration).
pub const NS_MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
pub use super::ns::NS_STANZAS;
/// XEP-0203 delayed delivery (room history).
pub const NS_DELAY: &str = "urn:xmpp:delay";

/// How many alternative nicks a join tries after a conflict.
pub const MAX_NICK_RETRIES: u32 = 8;

/// Someone in the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occupant {
    /// Nick in the room.
    pub nick: String,
    /// Real JID, when the room shows it.
    pub jid: Option<String>,
    /// Role (`moderator`, `participant`, `visitor`).
    pub role: Option<String>,
    /// The occupant's `urn:lsim:0` element in its presence, if any.
    pub payload: Option<Element>,
}

impl Occupant {
    /// The user an occupant stands for: its real JID's local part when the
    /// room shows it, its nick otherwise.
    pub fn user(&self) -> String {
        self.jid.as_deref().and_then(|j| Jid::parse(j).ok()).and_then(|j| j.local).unwrap_or_else(|| self.nick.clone())
    }
}

/// Where the join stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinState {
    /// Join presence sent, waiting for our own presence back.
    Joining,
    /// In the room.
    Joined,
    /// Not in the room (left, failed, or the connection dropped).
    Out,
}

/// What happened in the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomEvent {
    /// We are in; these are everyone present (us included).
    Joined {
        /// Our nick (may differ from the wanted one after a conflict).
        nick: String,
        /// Occupants, us included.
        occupants: Vec<Occupant>,
    },
    /// The join failed for good.
    JoinFailed {
        /// The error condition (`conflict`, `not-authorized`, …).
        condition: String,
    },
    /// Someone arrived.
    OccupantJoined(Occupant),
    /// Someone changed presence (payload, role).
    OccupantChanged(Occupant),
    /// Someone left.
    OccupantLeft {
        /// Their nick.
        nick: String,
    },
    /// We are out of the room (kicked, room destroyed, or our leave).
    Left,
    /// A groupchat message.
    Message {
        /// Sender's nick; `None` for the room itself.
        nick: Option<String>,
        /// Whether it is replayed history (XEP-0203 delay).
        delayed: bool,
        /// The message.
        message: Message,
    },
}

/// The client side of one room.
#[derive(Debug, Clone)]
pub struct Room {
    jid: Jid,
    wanted_nick: String,
    nick: String,
    attempt: u32,
    state: JoinState,
    occupants: BTreeMap<String, Occupant>,
    /// Our own presence payload (sent with joins and updates).
    payload: Option<Element>,
    /// The payload changed while joining: send it once in.
    payload_pending: bool,
}

fn error_condition(extra: &[Element]) -> String {
    extra
        .iter()
        .find(|e| e.is("error", NS_CLIENT))
        .and_then(|err| err.elements().find(|c| c.ns == NS_STANZAS && c.name != "text"))
        .map(|c| c.name.clone())
        .unwrap_or_else(|| "undefined-condition".to_string())
}

impl Room {
    /// A room `jid` (bare) to join as `nick`.
    pub fn new(jid: Jid, nick: &str) -> Room {
        Room {
            jid: jid.bare(),
            wanted_nick: nick.to_string(),
            nick: nick.to_string(),
            attempt: 0,
            state: JoinState::Out,
            occupants: BTreeMap::new(),
            payload: None,
            payload_pending: false,
        }
    }

    /// The room's bare JID.
    pub fn jid(&self) -> &Jid {
        &self.jid
    }

    /// Our current nick.
    pub fn nick(&self) -> &str {
        &self.nick
    }

    /// Where the join stands.
    pub fn state(&self) -> JoinState {
        self.state
    }

    /// Everyone present, by nick.
    pub fn occupants(&self) -> impl Iterator<Item = &Occupant> {
        self.occupants.values()
    }

    /// The join presence to send (again after a reconnect). `history`
    /// asks the room for that many past messages (0: none).
    pub fn join(&mut self, history: u32) -> Element {
        self.state = JoinState::Joining;
        self.payload_pending = false;
        self.occupants.clear();
        let x =
            Element::new("x", NS_MUC).child(Element::new("history", NS_MUC).attr("maxstanzas", history.to_string()));
        let mut p: Element =
            (&Presence { to: Some(self.occupant_jid()), ..Presence::new(PresenceType::Available) }).into();
        p = p.child(x);
        if let Some(payload) = &self.payload {
            p = p.child(payload.clone());
        }
        p
    }

    /// The presence that leaves the room.
    pub fn leave(&mut self) -> Element {
        self.state = JoinState::Out;
        (&Presence { to: Some(self.occupant_jid()), ..Presence::new(PresenceType::Unavailable) }).into()
    }

    /// Sets our presence payload; returns the presence to send if we are
    /// in the room.
    pub fn set_payload(&mut self, payload: Option<Element>) -> Option<Element> {
        self.payload = payload;
        self.payload_pending = self.state == JoinState::Joining;
        (self.state == JoinState::Joined).then(|| self.presence_update())
    }

    fn presence_update(&self) -> Element {
        let mut p: Element =
            (&Presence { to: Some(self.occupant_jid()), ..Presence::new(PresenceType::Available) }).into();
        if let Some(payload) = &self.payload {
            p = p.child(payload.clone());
        }
        p
    }

    /// The connection dropped: we are out until we join again.
    pub fn disconnected(&mut self) {
        self.state = JoinState::Out;
        self.occupants.clear();
    }

    /// A groupchat message to the room.
    pub fn message(&self, id: &str, body: Option<&str>, payload: Option<Element>) -> Element {
        let m = Message {
            id: Some(id.to_string()),
            body: body.map(str::to_string),
            payload,
            ..Message::new(MessageType::Groupchat, self.jid.to_string())
        };
        (&m).into()
    }

    fn occupant_jid(&self) -> String {
        self.jid.with_resource(&self.nick).to_string()
    }

    /// Handles a presence from this room. Returns events and stanzas to
    /// send (a new join after a nick conflict, the instant-room form for
    /// a locked room).
    pub fn handle_presence(&mut self, p: &Presence) -> (Vec<RoomEvent>, Vec<Element>) {
        let mut events = Vec::new();
        let mut send = Vec::new();
        let from_nick = p.from.as_deref().and_then(|f| Jid::parse(f).ok()).and_then(|j| j.resource);
        match p.kind {
            PresenceType::Error => {
                if self.state != JoinState::Joining {
                    return (events, send);
                }
                let condition = error_condition(&p.extra);
                if condition == "conflict" && self.attempt < MAX_NICK_RETRIES {
                    self.attempt += 1;
                    self.nick = format!("{}~{}", self.wanted_nick, self.attempt + 1);
                    send.push(self.join(0));
                } else {
                    self.state = JoinState::Out;
                    events.push(RoomEvent::JoinFailed { condition });
                }
            }
            PresenceType::Unavailable => {
                let is_self = p.muc_user.as_ref().is_some_and(|m| m.is_self())
                    || (from_nick.as_deref() == Some(self.nick.as_str()) && self.state == JoinState::Joined);
                if is_self {
                    // While joining, our own unavailable presence is the
                    // echo of an earlier leave, not about this join.
                    if self.state == JoinState::Joined {
                        self.state = JoinState::Out;
                        self.occupants.clear();
                        events.push(RoomEvent::Left);
                    }
                } else if let Some(nick) = from_nick
                    && self.occupants.remove(&nick).is_some()
                {
                    events.push(RoomEvent::OccupantLeft { nick });
                }
            }
            PresenceType::Available => {
                let Some(nick) = from_nick else { return (events, send) };
                let muc = p.muc_user.clone().unwrap_or_default();
                let item = muc.items.first();
                let occupant = Occupant {
                    nick: nick.clone(),
                    jid: item.and_then(|i| i.jid.clone()),
                    role: item.and_then(|i| i.role.clone()),
                    payload: p.extra.iter().find(|e| e.ns == super::stanza::NS_LSIM).cloned(),
                };
                let existed = self.occupants.insert(nick.clone(), occupant.clone()).is_some();
                if muc.is_self() {
                    // The room may have changed our nick (status 210).
                    self.nick = nick;
                    if muc.status_codes.contains(&201) {
                        send.push(self.instant_room());
                    }
                    if self.state == JoinState::Joining {
                        self.state = JoinState::Joined;
                        if std::mem::take(&mut self.payload_pending) {
                            send.push(self.presence_update());
                        }
                        events.push(RoomEvent::Joined {
                            nick: self.nick.clone(),
                            occupants: self.occupants.values().cloned().collect(),
                        });
                    } else {
                        events.push(RoomEvent::OccupantChanged(occupant));
                    }
                } else if self.state == JoinState::Joined {
                    events.push(if existed {
                        RoomEvent::OccupantChanged(occupant)
                    } else {
                        RoomEvent::OccupantJoined(occupant)
                    });
                }
            }
            _ => {}
        }
        (events, send)
    }

    /// Handles a groupchat message from this room.
    pub fn handle_message(&self, m: &Message) -> Option<RoomEvent> {
        if m.kind == MessageType::Error || (m.body.is_none() && m.payload.is_none()) {
            return None;
        }
        let nick = m.from.as_deref().and_then(|f| Jid::parse(f).ok()).and_then(|j| j.resource);
        Some(RoomEvent::Message { nick, delayed: false, message: m.clone() })
    }

    /// The instant-room configuration (XEP-0045 §10.1.2): accept defaults
    /// so a room a server created locked opens for everyone.
    fn instant_room(&self) -> Element {
        let query =
            Element::new("query", NS_MUC_OWNER).child(Element::new("x", "jabber:x:data").attr("type", "submit"));
        let iq = Iq {
            kind: IqType::Set,
            id: format!("instant-{}", self.jid),
            to: Some(self.jid.to_string()),
            from: None,
            child: Some(query),
        };
        (&iq).into()
    }
}

/// Whether a message element carries XEP-0203 delay (room history).
pub fn is_delayed(e: &Element) -> bool {
    e.get_child("delay", NS_DELAY).is_some()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::xmpp::stanza::{MucItem, MucUser};

    fn presence(from: &str, kind: PresenceType, codes: &[u16], jid: Option<&str>) -> Presence {
        Presence {
            from: Some(from.to_string()),
            muc_user: Some(MucUser {
                items: vec![MucItem {
                    jid: jid.map(str::to_string),
                    role: Some("participant".into()),
                    ..Default::default()
                }],
                status_codes: codes.to_vec(),
            }),
            ..Presence::new(kind)
        }
    }

    fn room() -> Room {
        Room::new(Jid::parse("lsim@conference.x").unwrap(), "alice")
    }

    #[test]
    fn join_collects_occupants_until_self_presence() {
        let mut r = room();
        let join = r.join(0);
        assert_eq!(join.get_attr("to"), Some("lsim@conference.x/alice"));
        assert!(join.get_child("x", NS_MUC).is_some());
        let (ev, _) =
            r.handle_presence(&presence("lsim@conference.x/bob", PresenceType::Available, &[], Some("bob@x/a")));
        assert!(ev.is_empty());
        let (ev, send) = r.handle_presence(&presence("lsim@conference.x/alice", PresenceType::Available, &[110], None));
        assert!(send.is_empty());
        let [RoomEvent::Joined { nick, occupants }] = &ev[..] else { panic!("{ev:?}") };
        assert_eq!(nick, "alice");
        assert_eq!(occupants.iter().map(|o| o.nick.as_str()).collect::<Vec<_>>(), ["alice", "bob"]);
        assert_eq!(r.state(), JoinState::Joined);
        let (ev, _) = r.handle_presence(&presence("lsim@conference.x/carol", PresenceType::Available, &[], None));
        assert!(matches!(&ev[..], [RoomEvent::OccupantJoined(o)] if o.nick == "carol"));
        let (ev, _) = r.handle_presence(&presence("lsim@conference.x/bob", PresenceType::Unavailable, &[], None));
        assert_eq!(ev, [RoomEvent::OccupantLeft { nick: "bob".into() }]);
        assert_eq!(r.occupants().count(), 2);
        let (ev, _) = r.handle_presence(&presence("lsim@conference.x/alice", PresenceType::Unavailable, &[110], None));
        assert_eq!(ev, [RoomEvent::Left]);
        assert_eq!(r.occupants().count(), 0);
    }

    #[test]
    fn echo_of_an_earlier_leave_does_not_end_a_new_join() {
        let mut r = room();
        r.join(0);
        r.handle_presence(&presence("lsim@conference.x/alice", PresenceType::Available, &[110], None));
        r.leave();
        r.join(0);
        let (ev, _) = r.handle_presence(&presence("lsim@conference.x/alice", PresenceType::Unavailable, &[110], None));
        assert!(ev.is_empty());
        let (ev, _) = r.handle_presence(&presence("lsim@conference.x/alice", PresenceType::Available, &[110], None));
        assert!(matches!(&ev[..], [RoomEvent::Joined { .. }]));
    }

    fn error_presence(condition: &str) -> Presence {
        let err = Element::new("error", NS_CLIENT).attr("type", "cancel").child(Element::new(condition, NS_STANZAS));
        Presence {
            from: Some("lsim@conference.x/alice".into()),
            extra: vec![err],
            ..Presence::new(PresenceType::Error)
        }
    }

    #[test]
    fn nick_conflict_retries_with_another_nick_then_gives_up() {
        let mut r = room();
        r.join(0);
        let (ev, send) = r.handle_presence(&error_presence("conflict"));
        assert!(ev.is_empty());
        assert_eq!(send[0].get_attr("to"), Some("lsim@conference.x/alice~2"));
        for _ in 1..MAX_NICK_RETRIES {
            let (_, send) = r.handle_presence(&error_presence("conflict"));
            assert_eq!(send.len(), 1);
        }
        let (ev, send) = r.handle_presence(&error_presence("conflict"));
        assert!(send.is_empty());
        assert_eq!(ev, [RoomEvent::JoinFailed { condition: "conflict".into() }]);
        let mut r = room();
        r.join(0);
        let (ev, _) = r.handle_presence(&error_presence("registration-required"));
        assert_eq!(ev, [RoomEvent::JoinFailed { condition: "registration-required".into() }]);
    }

    #[test]
    fn payload_set_while_joining_is_sent_once_in() {
        let mut r = room();
        r.join(0);
        assert_eq!(r.set_payload(Some(Element::new("status", crate::xmpp::stanza::NS_LSIM))), None);
        let (_, send) = r.handle_presence(&presence("lsim@conference.x/alice", PresenceType::Available, &[110], None));
        assert_eq!(send.len(), 1);
        assert!(send[0].get_child("status", crate::xmpp::stanza::NS_LSIM).is_some());
    }

    #[test]
    fn locked_new_room_is_opened_with_the_instant_form() {
        let mut r = room();
        r.join(0);
        let (ev, send) =
            r.handle_presence(&presence("lsim@conference.x/alice", PresenceType::Available, &[110, 201], None));
        assert!(matches!(&ev[..], [RoomEvent::Joined { .. }]));
        let query = send[0].get_child("query", NS_MUC_OWNER).unwrap();
        assert_eq!(query.get_child("x", "jabber:x:data").unwrap().get_attr("type"), Some("submit"));
    }

    #[test]
    fn payload_only_messages_count_and_empty_ones_do_not() {
        let r = room();
        let m = Message {
            from: Some("lsim@conference.x/bob".into()),
            payload: Some(Element::new("status", crate::xmpp::stanza::NS_LSIM)),
            ..Message::new(MessageType::Groupchat, "alice@x")
        };
        assert!(matches!(r.handle_message(&m), Some(RoomEvent::Message { nick: Some(n), .. }) if n == "bob"));
        let subject = Message { subject: Some(String::new()), ..Message::new(MessageType::Groupchat, "alice@x") };
        assert_eq!(r.handle_message(&subject), None);
    }
}
