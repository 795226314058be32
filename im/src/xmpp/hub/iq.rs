//! The IQs the server answers itself: for its domain (disco, ping,
//! roster, session, vCard), on an account's behalf (a bare JID), for the
//! MUC service and for a room.
//!
//! Owns what is advertised and answered, and only that. It must not route
//! (`hub` passes IQs here and delivers the rest) nor change rooms or
//! sessions; like the whole hub it touches no sockets or clocks.

use super::{
    ErrorType, Hub, NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING, NS_ROSTER, NS_SESSION, NS_VCARD, Output, SessionId,
};
use crate::xmpp::element::Element;
use crate::xmpp::jid::Jid;
use crate::xmpp::stanza::NS_MUC;
use crate::xmpp::stream::NS_CLIENT;

impl Hub {
    pub(super) fn server_iq(&mut self, id: SessionId, e: &Element, out: &mut Vec<Output>) {
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

    pub(super) fn account_iq(&mut self, id: SessionId, from: &Jid, to: &Jid, e: &Element, out: &mut Vec<Output>) {
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

    pub(super) fn conference_iq(&mut self, id: SessionId, e: &Element, out: &mut Vec<Output>) {
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

    pub(super) fn room_iq(&mut self, id: SessionId, room_name: &str, e: &Element, out: &mut Vec<Output>) {
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
