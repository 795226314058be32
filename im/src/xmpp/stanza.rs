//! Typed views of the stanzas lsim uses: `Message` (with our control
//! payload in `urn:lsim:0`), `Presence` (with MUC occupant data) and `Iq`.
//!
//! Owns the conversions between these views and [`Element`]. It must not
//! touch I/O, stream state or the meaning of payloads (the group logic
//! interprets `urn:lsim:0` elements). Unknown child elements are ignored
//! when reading a view, never an error: servers add caps, delay,
//! occupant-id and more.

use super::element::Element;
use super::stream::NS_CLIENT;

/// lsim's own namespace for control payloads.
pub const NS_LSIM: &str = "urn:lsim:0";
/// XEP-0045 occupant data in room presence.
pub const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";
/// XEP-0045 join request.
pub const NS_MUC: &str = "http://jabber.org/protocol/muc";

/// Why an element is not the stanza asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StanzaError {
    /// The element is something else.
    #[error("expected <{expected} xmlns='{NS_CLIENT}'>, got <{name} xmlns='{ns}'>")]
    WrongElement {
        /// What was expected.
        expected: &'static str,
        /// Its local name.
        name: String,
        /// Its namespace.
        ns: String,
    },
    /// A required attribute is absent.
    #[error("<{stanza}> has no '{attr}' attribute")]
    MissingAttribute {
        /// The stanza kind.
        stanza: &'static str,
        /// The attribute.
        attr: &'static str,
    },
    /// An attribute has a value the protocol does not define.
    #[error("<{stanza}> has {attr}='{value}', which is not a valid value")]
    InvalidAttribute {
        /// The stanza kind.
        stanza: &'static str,
        /// The attribute.
        attr: &'static str,
        /// The value found.
        value: String,
    },
}

fn expect(e: &Element, name: &'static str) -> Result<(), StanzaError> {
    if e.is(name, NS_CLIENT) {
        Ok(())
    } else {
        Err(StanzaError::WrongElement { expected: name, name: e.name.clone(), ns: e.ns.clone() })
    }
}

fn attr(e: &Element, name: &str) -> Option<String> {
    e.get_attr(name).map(str::to_owned)
}

/// Defines a `type` attribute enum with its wire names.
macro_rules! stanza_type {
    ($(#[$doc:meta])* $ty:ident, $stanza:literal, { $($(#[$vdoc:meta])* $variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $ty {
            $($(#[$vdoc])* $variant),+
        }

        impl $ty {
            /// The value of the `type` attribute.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $wire),+
                }
            }

            /// Parses the value of the `type` attribute.
            pub fn parse(value: &str) -> Result<Self, StanzaError> {
                match value {
                    $($wire => Ok($ty::$variant),)+
                    other => Err(StanzaError::InvalidAttribute { stanza: $stanza, attr: "type", value: other.to_owned() }),
                }
            }
        }
    };
}

stanza_type!(
    /// `<message type=…>`; absent means `normal`.
    MessageType, "message", {
        /// `normal`
        Normal = "normal",
        /// `chat`
        Chat = "chat",
        /// `groupchat` (room messages)
        Groupchat = "groupchat",
        /// `headline`
        Headline = "headline",
        /// `error`
        Error = "error",
    }
);

stanza_type!(
    /// `<presence type=…>`; absent means available.
    PresenceType, "presence", {
        /// no `type` attribute
        Available = "available",
        /// `unavailable` (left the room)
        Unavailable = "unavailable",
        /// `subscribe`
        Subscribe = "subscribe",
        /// `subscribed`
        Subscribed = "subscribed",
        /// `unsubscribe`
        Unsubscribe = "unsubscribe",
        /// `unsubscribed`
        Unsubscribed = "unsubscribed",
        /// `probe`
        Probe = "probe",
        /// `error` (from a room: the join failed)
        Error = "error",
    }
);

stanza_type!(
    /// `<iq type=…>` (required).
    IqType, "iq", {
        /// `get`
        Get = "get",
        /// `set`
        Set = "set",
        /// `result`
        Result = "result",
        /// `error`
        Error = "error",
    }
);

/// A `<message/>` stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `to`
    pub to: Option<String>,
    /// `from`
    pub from: Option<String>,
    /// `type` (`normal` when absent)
    pub kind: MessageType,
    /// `id`
    pub id: Option<String>,
    /// `<body>` text
    pub body: Option<String>,
    /// `<subject>` text (a room sends it last when a join completes)
    pub subject: Option<String>,
    /// The first child element in [`NS_LSIM`], if any.
    pub payload: Option<Element>,
}

impl Message {
    /// A message of `kind` to `to` with nothing in it.
    pub fn new(kind: MessageType, to: impl Into<String>) -> Self {
        Message { to: Some(to.into()), from: None, kind, id: None, body: None, subject: None, payload: None }
    }
}

impl TryFrom<&Element> for Message {
    type Error = StanzaError;

    fn try_from(e: &Element) -> Result<Self, StanzaError> {
        expect(e, "message")?;
        let kind = match e.get_attr("type") {
            Some(t) => MessageType::parse(t)?,
            None => MessageType::Normal,
        };
        Ok(Message {
            to: attr(e, "to"),
            from: attr(e, "from"),
            kind,
            id: attr(e, "id"),
            body: e.get_child("body", NS_CLIENT).map(Element::text_content),
            subject: e.get_child("subject", NS_CLIENT).map(Element::text_content),
            payload: e.elements().find(|c| c.ns == NS_LSIM).cloned(),
        })
    }
}

impl From<&Message> for Element {
    fn from(m: &Message) -> Element {
        let mut e = Element::new("message", NS_CLIENT)
            .attr_opt("to", m.to.as_deref())
            .attr_opt("from", m.from.as_deref())
            .attr_opt("id", m.id.as_deref());
        if m.kind != MessageType::Normal {
            e.set_attr("type", m.kind.as_str());
        }
        if let Some(subject) = &m.subject {
            e = e.child(Element::new("subject", NS_CLIENT).text(subject.as_str()));
        }
        if let Some(body) = &m.body {
            e = e.child(Element::new("body", NS_CLIENT).text(body.as_str()));
        }
        if let Some(payload) = &m.payload {
            e = e.child(payload.clone());
        }
        e
    }
}

/// One `<item/>` of MUC occupant data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MucItem {
    /// `affiliation` (owner, admin, member, outcast, none)
    pub affiliation: Option<String>,
    /// `role` (moderator, participant, visitor, none)
    pub role: Option<String>,
    /// `jid`, the occupant's real JID when the room shows it
    pub jid: Option<String>,
    /// `nick` (in nick changes)
    pub nick: Option<String>,
}

/// `<x xmlns='http://jabber.org/protocol/muc#user'>` in room presence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MucUser {
    /// The items.
    pub items: Vec<MucItem>,
    /// `<status code=…/>` values; 110 marks our own presence.
    pub status_codes: Vec<u16>,
}

impl MucUser {
    /// Whether this is the room reflecting our own presence (status 110).
    pub fn is_self(&self) -> bool {
        self.status_codes.contains(&110)
    }

    fn from_element(x: &Element) -> Self {
        let items = x
            .children_named("item", NS_MUC_USER)
            .map(|i| MucItem {
                affiliation: attr(i, "affiliation"),
                role: attr(i, "role"),
                jid: attr(i, "jid"),
                nick: attr(i, "nick"),
            })
            .collect();
        // A status code that is not a number is a server bug, not ours to
        // reject the presence for; it is skipped.
        let status_codes = x
            .children_named("status", NS_MUC_USER)
            .filter_map(|s| s.get_attr("code").and_then(|c| c.parse().ok()))
            .collect();
        MucUser { items, status_codes }
    }

    fn to_element(&self) -> Element {
        let mut x = Element::new("x", NS_MUC_USER);
        for item in &self.items {
            x = x.child(
                Element::new("item", NS_MUC_USER)
                    .attr_opt("affiliation", item.affiliation.as_deref())
                    .attr_opt("role", item.role.as_deref())
                    .attr_opt("jid", item.jid.as_deref())
                    .attr_opt("nick", item.nick.as_deref()),
            );
        }
        for code in &self.status_codes {
            x = x.child(Element::new("status", NS_MUC_USER).attr("code", code.to_string()));
        }
        x
    }
}

/// A `<presence/>` stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    /// `to`
    pub to: Option<String>,
    /// `from`
    pub from: Option<String>,
    /// `type` (available when absent)
    pub kind: PresenceType,
    /// `id`
    pub id: Option<String>,
    /// MUC occupant data, if this is room presence.
    pub muc_user: Option<MucUser>,
    /// Other child elements, kept as they are (e.g. the MUC join `<x/>`,
    /// `<error/>`, caps); ignored unless the caller looks.
    pub extra: Vec<Element>,
}

impl Presence {
    /// A presence of `kind` with nothing in it.
    pub fn new(kind: PresenceType) -> Self {
        Presence { to: None, from: None, kind, id: None, muc_user: None, extra: Vec::new() }
    }
}

impl TryFrom<&Element> for Presence {
    type Error = StanzaError;

    fn try_from(e: &Element) -> Result<Self, StanzaError> {
        expect(e, "presence")?;
        let kind = match e.get_attr("type") {
            // "available" is not a wire value; only absence means available.
            Some("available") => {
                return Err(StanzaError::InvalidAttribute {
                    stanza: "presence",
                    attr: "type",
                    value: "available".into(),
                });
            }
            Some(t) => PresenceType::parse(t)?,
            None => PresenceType::Available,
        };
        let muc_user = e.get_child("x", NS_MUC_USER).map(MucUser::from_element);
        let extra = e.elements().filter(|c| !c.is("x", NS_MUC_USER)).cloned().collect();
        Ok(Presence { to: attr(e, "to"), from: attr(e, "from"), kind, id: attr(e, "id"), muc_user, extra })
    }
}

impl From<&Presence> for Element {
    fn from(p: &Presence) -> Element {
        let mut e = Element::new("presence", NS_CLIENT)
            .attr_opt("to", p.to.as_deref())
            .attr_opt("from", p.from.as_deref())
            .attr_opt("id", p.id.as_deref());
        if p.kind != PresenceType::Available {
            e.set_attr("type", p.kind.as_str());
        }
        if let Some(muc) = &p.muc_user {
            e = e.child(muc.to_element());
        }
        for x in &p.extra {
            e = e.child(x.clone());
        }
        e
    }
}

/// An `<iq/>` stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iq {
    /// `type` (required)
    pub kind: IqType,
    /// `id` (required)
    pub id: String,
    /// `to`
    pub to: Option<String>,
    /// `from`
    pub from: Option<String>,
    /// The payload: the first child element (for `error`, the first child
    /// that is not `<error/>` if any, else the error).
    pub child: Option<Element>,
}

impl TryFrom<&Element> for Iq {
    type Error = StanzaError;

    fn try_from(e: &Element) -> Result<Self, StanzaError> {
        expect(e, "iq")?;
        let kind =
            IqType::parse(e.get_attr("type").ok_or(StanzaError::MissingAttribute { stanza: "iq", attr: "type" })?)?;
        let id = attr(e, "id").ok_or(StanzaError::MissingAttribute { stanza: "iq", attr: "id" })?;
        let child = e.elements().find(|c| !c.is("error", NS_CLIENT)).or_else(|| e.elements().next()).cloned();
        Ok(Iq { kind, id, to: attr(e, "to"), from: attr(e, "from"), child })
    }
}

impl From<&Iq> for Element {
    fn from(iq: &Iq) -> Element {
        let mut e = Element::new("iq", NS_CLIENT)
            .attr("type", iq.kind.as_str())
            .attr("id", iq.id.as_str())
            .attr_opt("to", iq.to.as_deref())
            .attr_opt("from", iq.from.as_deref());
        if let Some(child) = &iq.child {
            e = e.child(child.clone());
        }
        e
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn payload_only_groupchat_message() {
        let e = Element::new("message", NS_CLIENT)
            .attr("type", "groupchat")
            .attr("from", "room@conference.example/alice")
            .child(Element::new("x", NS_LSIM).attr("epoch", "3"))
            .child(Element::new("occupant-id", "urn:xmpp:occupant-id:0").attr("id", "q"));
        let m = Message::try_from(&e).unwrap();
        assert_eq!(m.kind, MessageType::Groupchat);
        assert_eq!(m.body, None);
        assert_eq!(m.payload.as_ref().unwrap().get_attr("epoch"), Some("3"));
        let back = Message::try_from(&Element::from(&m)).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn message_defaults_and_bad_type() {
        let m = Message::try_from(&Element::new("message", NS_CLIENT)).unwrap();
        assert_eq!(m.kind, MessageType::Normal);
        let bad = Element::new("message", NS_CLIENT).attr("type", "shout");
        assert_eq!(
            Message::try_from(&bad),
            Err(StanzaError::InvalidAttribute { stanza: "message", attr: "type", value: "shout".into() })
        );
        assert!(matches!(Message::try_from(&Element::new("iq", NS_CLIENT)), Err(StanzaError::WrongElement { .. })));
    }

    #[test]
    fn muc_self_presence() {
        let e = Element::new("presence", NS_CLIENT)
            .attr("from", "room@conference.example/me")
            .child(Element::new("c", "http://jabber.org/protocol/caps"))
            .child(
                Element::new("x", NS_MUC_USER)
                    .child(Element::new("item", NS_MUC_USER).attr("affiliation", "owner").attr("role", "moderator"))
                    .child(Element::new("status", NS_MUC_USER).attr("code", "110"))
                    .child(Element::new("status", NS_MUC_USER).attr("code", "201")),
            );
        let p = Presence::try_from(&e).unwrap();
        assert_eq!(p.kind, PresenceType::Available);
        let muc = p.muc_user.as_ref().unwrap();
        assert!(muc.is_self());
        assert_eq!(muc.status_codes, vec![110, 201]);
        assert_eq!(muc.items[0].role.as_deref(), Some("moderator"));
        assert_eq!(p.extra.len(), 1);
        assert_eq!(Presence::try_from(&Element::from(&p)).unwrap(), p);
        let err = Presence::try_from(&Element::new("presence", NS_CLIENT).attr("type", "error")).unwrap();
        assert_eq!(err.kind, PresenceType::Error);
    }

    #[test]
    fn iq_requires_type_and_id() {
        let bind = Element::new("bind", "urn:ietf:params:xml:ns:xmpp-bind");
        let e = Element::new("iq", NS_CLIENT).attr("type", "set").attr("id", "b1").child(bind.clone());
        let iq = Iq::try_from(&e).unwrap();
        assert_eq!((iq.kind, iq.id.as_str(), iq.child.as_ref()), (IqType::Set, "b1", Some(&bind)));
        assert_eq!(Iq::try_from(&Element::from(&iq)).unwrap(), iq);
        assert_eq!(
            Iq::try_from(&Element::new("iq", NS_CLIENT).attr("type", "get")),
            Err(StanzaError::MissingAttribute { stanza: "iq", attr: "id" })
        );
        assert_eq!(
            Iq::try_from(&Element::new("iq", NS_CLIENT).attr("id", "x")),
            Err(StanzaError::MissingAttribute { stanza: "iq", attr: "type" })
        );
    }
}
