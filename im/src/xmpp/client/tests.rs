//! The client's unit tests: the choice of SASL mechanism and our answers
//! to iq requests.
//!
//! Owns only tests; it must not touch anything outside them.

#![allow(clippy::unwrap_used)]

use super::connect::{choose_mechanism, stanza_error_condition};
use super::incoming::answer_iq;
use super::*;
use crate::xmpp::element::Element;
use crate::xmpp::jid::Jid;
use crate::xmpp::sasl::Mechanism;
use crate::xmpp::stanza::{Iq, IqType};
use crate::xmpp::stream::{NS_SASL, NS_STREAMS};

#[test]
fn mechanism_choice_respects_preference_and_plain_rule() {
    let mut cfg = ClientConfig::new(Jid::parse("a@x").unwrap(), "pw");
    let features = |mechs: &[&str]| {
        let mut m = Element::new("mechanisms", NS_SASL);
        for name in mechs {
            m = m.child(Element::new("mechanism", NS_SASL).text(*name));
        }
        Element::new("features", NS_STREAMS).child(m)
    };
    let all = features(&["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"]);
    assert_eq!(choose_mechanism(&cfg, &all, false).unwrap(), Mechanism::ScramSha256);
    let plain = features(&["PLAIN"]);
    assert!(matches!(choose_mechanism(&cfg, &plain, false), Err(ClientError::NoMechanism(_))));
    assert_eq!(choose_mechanism(&cfg, &plain, true).unwrap(), Mechanism::Plain);
    cfg.allow_plain_unencrypted = true;
    assert_eq!(choose_mechanism(&cfg, &plain, false).unwrap(), Mechanism::Plain);
    cfg.mechanisms = vec![Mechanism::ScramSha1];
    assert_eq!(choose_mechanism(&cfg, &all, false).unwrap(), Mechanism::ScramSha1);
}

#[test]
fn iq_answers() {
    let ping = Iq {
        kind: IqType::Get,
        id: "p".into(),
        to: None,
        from: Some("x".into()),
        child: Some(Element::new("ping", NS_PING)),
    };
    let r = Iq::try_from(&answer_iq(&ping)).unwrap();
    assert_eq!((r.kind, r.id.as_str(), r.to.as_deref()), (IqType::Result, "p", Some("x")));
    let other = Iq {
        kind: IqType::Set,
        id: "q".into(),
        to: None,
        from: None,
        child: Some(Element::new("query", "jabber:iq:version")),
    };
    let r = answer_iq(&other);
    assert_eq!(r.get_attr("type"), Some("error"));
    assert_eq!(stanza_error_condition(&r), "service-unavailable");
}
