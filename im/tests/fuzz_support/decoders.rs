//! JIDs and `urn:lsim:0` payloads under fuzzing: the round-trip checks,
//! payload elements with hostile attribute values, and valid payloads of
//! every kind.
//!
//! Owns those inputs and checks. It must not hold properties (`fuzz.rs`
//! does).

use lsim_im::xmpp::Element;
use lsim_im::xmpp::jid::Jid;
use lsim_im::xmpp::payload::{FileOffer, GroupParams, MemberStatus, Payload, SealedChat};
use lsim_im::xmpp::stanza::NS_LSIM;
use proptest::prelude::*;

pub fn check_jid(s: &str) {
    if let Ok(j) = Jid::parse(s) {
        assert!(j.to_string().len() <= s.len());
        assert!(!j.domain.is_empty(), "{s:?} parsed to an empty domain");
        assert_eq!(Jid::parse(&j.to_string()), Ok(j.clone()), "{s:?} does not round-trip");
        let _ = (j.bare(), j.is_full(), j.with_resource("r"));
    }
}

pub fn check_payload_element(e: &Element) {
    if let Ok(p) = Payload::parse(e) {
        let again = p.to_element();
        assert_eq!(Payload::parse(&again), Ok(p), "payload does not round-trip through {}", again.to_xml());
    }
}

pub fn payload_element() -> impl Strategy<Value = Element> {
    let value = prop_oneof![
        Just("239.1.2.3:5000".to_string()),
        Just("[::1]:1".to_string()),
        Just("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff".to_string()),
        Just("+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0".to_string()),
        Just("18446744073709551615".to_string()),
        Just("18446744073709551616".to_string()),
        Just("-1".to_string()),
        Just("65535".to_string()),
        Just("x".repeat(1025)),
        "[0-9]{0,6}",
        any::<String>(),
    ];
    let names = prop::sample::select(vec![
        "addr",
        "keyserver",
        "fingerprint",
        "suite",
        "epoch",
        "id",
        "name",
        "size",
        "sha256",
        "node",
        "object",
        "loss",
        "repairs",
    ]);
    (
        prop::sample::select(vec!["group", "file", "status", "chat", "other"]),
        prop::collection::vec((names, value), 0..14),
        prop::option::of(prop_oneof!["[A-Za-z0-9+/= \n]{0,80}", any::<String>()]),
    )
        .prop_map(|(name, attrs, text)| {
            let mut e = Element::new(name, NS_LSIM);
            for (k, v) in attrs {
                e.set_attr(k, v);
            }
            if let Some(t) = text {
                e = e.text(t);
            }
            e
        })
}

pub fn valid_payload() -> impl Strategy<Value = Payload> {
    let addr = (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| std::net::SocketAddr::from((ip, port)));
    prop_oneof![
        (addr.clone(), addr, any::<[u8; 32]>(), "[a-z0-9-]{0,20}", any::<u64>()).prop_map(
            |(group, keyserver, fingerprint, suite, epoch)| Payload::Group(GroupParams {
                group,
                keyserver,
                fingerprint,
                suite,
                epoch,
                history: lsim_im::xmpp::payload::History::Joined,
            })
        ),
        (any::<String>(), any::<String>(), any::<u64>(), any::<Option<[u8; 32]>>(), any::<u32>(), any::<u64>())
            .prop_map(|(id, name, size, sha256, node, object)| Payload::File(FileOffer {
                id,
                name,
                size,
                sha256,
                node,
                object
            })),
        (any::<u32>(), any::<u64>(), 0u16..=1000, any::<Option<String>>()).prop_map(
            |(node, epoch, loss_permille, repairs)| Payload::Status(MemberStatus {
                node,
                epoch,
                loss_permille,
                repairs
            })
        ),
        ("[a-z0-9]{0,20}", any::<u64>(), prop::collection::vec(any::<u8>(), 0..200))
            .prop_map(|(id, epoch, sealed)| Payload::Chat(SealedChat { id, epoch, sealed })),
    ]
}
