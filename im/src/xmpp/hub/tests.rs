//! The hub's unit tests: rooms, routing, server IQs, and a property test
//! that room state stays consistent whatever sessions do.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::xmpp::stanza::{MucUser, NS_LSIM, NS_MUC, Presence, PresenceType};

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
    let out = hub
        .stanza(2, Element::new("presence", NS_CLIENT).attr("to", format!("{ROOM}/bob")).attr("type", "unavailable"));
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
    let result = Element::new("iq", NS_CLIENT).attr("type", "result").attr("id", "p").attr("to", "bob@example.org/b1");
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
    assert_eq!(hub.stanza(1, Element::new("foo", "urn:example")), vec![Output::Close(1, "unsupported-stanza-type")]);
    let mut hub = hub_with(&[(1, "alice@example.org/a")]);
    assert_eq!(hub.stanza(1, Element::new("message", "jabber:server")), vec![Output::Close(1, "invalid-namespace")]);
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
