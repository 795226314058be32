//! What the client task does with one element from the server: stream
//! management requests and acks, stanzas for our rooms (events out,
//! answers back), other messages, and iq requests (pings, disco#info,
//! service-unavailable for the rest).
//!
//! Owns those answers. It must not send anything or touch the connection:
//! it returns what to send, and the task (`run`) sends it.

use tokio::time::Instant;

use super::run::State;
use super::{ClientEvent, NS_DISCO_INFO, NS_PING};
use crate::xmpp::element::Element;
use crate::xmpp::jid::Jid;
use crate::xmpp::room::{RoomEvent, is_delayed};
use crate::xmpp::sm;
use crate::xmpp::stanza::{Iq, IqType, Message, Presence};
use crate::xmpp::stream::NS_CLIENT;

/// A stream management element from the server; returns what to answer.
pub(super) fn managed(st: &mut State, e: &Element) -> Option<Element> {
    let m = st.sm.as_mut()?;
    match e.name.as_str() {
        "enabled" => {
            let resumable = matches!(e.get_attr("resume"), Some("true" | "1"));
            m.id = e.get_attr("id").filter(|_| resumable).map(str::to_string);
            None
        }
        "r" => Some(sm::ack(m.handled)),
        "a" => {
            // An ack for more than we sent: the count is lost, resumption with it.
            if sm::h_of(e).is_none_or(|h| m.unacked.ack(h).is_err()) {
                st.sm = None;
            }
            None
        }
        "failed" => {
            st.sm = None;
            None
        }
        _ => None,
    }
}

/// Handles one stanza; returns stanzas to send back.
pub(super) async fn handle_incoming(
    st: &mut State,
    e: &Element,
    ping_sent: &mut Option<(String, Instant)>,
) -> Vec<Element> {
    let from_bare = e.get_attr("from").and_then(|f| Jid::parse(f).ok()).map(|j| j.bare());
    if e.is("iq", NS_CLIENT) {
        let Ok(iq) = Iq::try_from(e) else { return Vec::new() };
        if matches!(iq.kind, IqType::Result | IqType::Error) {
            if ping_sent.as_ref().is_some_and(|(id, _)| *id == iq.id) {
                *ping_sent = None;
            }
            return Vec::new();
        }
        return vec![answer_iq(&iq)];
    }
    if let Some(room_jid) = &from_bare
        && let Some((room, _)) = st.rooms.get_mut(room_jid)
    {
        let mut out = Vec::new();
        if e.is("presence", NS_CLIENT) {
            let Ok(p) = Presence::try_from(e) else { return Vec::new() };
            let (events, send) = room.handle_presence(&p);
            for event in events {
                let _ = st.events.send(ClientEvent::Room { room: room_jid.clone(), event }).await;
            }
            // A nick-conflict retry, the instant-room form, our payload.
            out = send;
        } else if e.is("message", NS_CLIENT) {
            let Ok(m) = Message::try_from(e) else { return Vec::new() };
            if m.kind == crate::xmpp::stanza::MessageType::Groupchat
                && let Some(RoomEvent::Message { nick, message, .. }) = room.handle_message(&m)
            {
                let event = RoomEvent::Message { nick, delayed: is_delayed(e), message };
                let _ = st.events.send(ClientEvent::Room { room: room_jid.clone(), event }).await;
                return Vec::new();
            }
            if m.kind != crate::xmpp::stanza::MessageType::Groupchat {
                let _ = st.events.send(ClientEvent::Message(m)).await;
            }
        }
        return out;
    }
    if e.is("message", NS_CLIENT)
        && let Ok(m) = Message::try_from(e)
    {
        let _ = st.events.send(ClientEvent::Message(m)).await;
    }
    Vec::new()
}

/// Our answer to an iq get/set: pings and disco#info; everything else is
/// service-unavailable (RFC 6120 §8.4).
pub(super) fn answer_iq(iq: &Iq) -> Element {
    let child = iq.child.as_ref();
    let reply = |kind, child| Iq { kind, id: iq.id.clone(), to: iq.from.clone(), from: None, child };
    if iq.kind == IqType::Get && child.is_some_and(|c| c.is("ping", NS_PING)) {
        return (&reply(IqType::Result, None)).into();
    }
    if iq.kind == IqType::Get && child.is_some_and(|c| c.is("query", NS_DISCO_INFO)) {
        let mut q = Element::new("query", NS_DISCO_INFO).child(
            Element::new("identity", NS_DISCO_INFO).attr("category", "client").attr("type", "pc").attr("name", "lsim"),
        );
        for f in [NS_DISCO_INFO, NS_PING, crate::xmpp::stanza::NS_LSIM] {
            q = q.child(Element::new("feature", NS_DISCO_INFO).attr("var", f));
        }
        return (&reply(IqType::Result, Some(q))).into();
    }
    let error = Element::new("error", NS_CLIENT)
        .attr("type", "cancel")
        .child(Element::new("service-unavailable", crate::xmpp::room::NS_STANZAS));
    let mut e: Element = (&reply(IqType::Error, iq.child.clone())).into();
    e = e.child(error);
    e
}
