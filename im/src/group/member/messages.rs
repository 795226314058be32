//! Chat: ours sent (sealed through the room, on multicast, or private for
//! some members), and chat objects from multicast read once their turn
//! comes (beacons, receipts, private messages, signed chat).
//!
//! Owns how a chat message becomes a member event and which way ours goes
//! out. It must not sign, seal or order anything itself: `group::signed`,
//! `group::private` and `group::order` do; nor hold any state between
//! messages (the running member holds it).

use std::collections::HashMap;

use lsim_keymgmt::client::{FileKeyOpener, Registration};
use lsim_keymgmt::suite::GroupSeal;
use lsim_transport::Sender;
use lsim_transport::net::Handle;

use super::error::NotSent;
use super::files::restrict;
use super::receipts::{Awaiting, on_receipt};
use super::transport::{Transport, queue_chat};
use super::{CHAT_AAD, MemberEvent, Placement, Via};
use crate::group::chat::{ChatMessage, Dedup};
use crate::group::order::Released;
use crate::group::trust::{KnownKeys, Seen, short_fingerprint};
use crate::group::{private, receipt, signed};
use crate::xmpp::element::Element;
use crate::xmpp::payload::{Payload, SealedChat};

/// What reading a chat object needs of the member.
pub(super) struct Reading<'a> {
    node: u32,
    server: &'a ed25519_dalek::VerifyingKey,
    file_keys: &'a FileKeyOpener,
    /// Our keys: which users the key server revoked.
    keys: &'a std::sync::Mutex<lsim_keymgmt::client::GroupKeys>,
}

impl<'a> Reading<'a> {
    /// What `transport` holds for reading chat: our node, the key server's
    /// key, the opener of private messages.
    pub(super) fn of(transport: &'a Transport) -> Reading<'a> {
        Reading {
            node: transport.node,
            server: &transport.server,
            file_keys: &transport.file_keys,
            keys: &transport.keys,
        }
    }

    /// A chat object whose turn has come: a beacon (who is heard on
    /// multicast), a receipt for one of our files, a private message, or
    /// signed chat; shown once.
    pub(super) fn chat_object(
        &self,
        r: Released,
        awaiting: &mut HashMap<u32, Awaiting>,
        dedup: &mut Dedup,
        heard: &mut HashMap<String, tokio::time::Instant>,
        trust: &mut KnownKeys,
        notes: &mut Vec<MemberEvent>,
    ) -> Option<MemberEvent> {
        let (bytes, sender) = (r.bytes, r.sender);
        let unreadable =
            |why: String| MemberEvent::Unreadable { from: format!("node {sender}"), via: Via::Multicast, why };
        if let Some(nick) = crate::group::chat::decode_beacon(&bytes) {
            heard.insert(nick, tokio::time::Instant::now());
            return None;
        }
        // Receipts for other senders' files are none of our business.
        if receipt::is_receipt(&bytes) {
            let revoked = |user: &str| super::transport::revoked(self.keys, user);
            return on_receipt(&bytes, self.node, self.server, awaiting, sender, &revoked);
        }
        let (inner, private) = if private::is_private(&bytes) {
            // A private message: ours to read, or for others (dropped unread).
            match private::open(&bytes, |w| (self.file_keys)(w)) {
                Ok(inner) => (inner, true),
                Err(private::PrivateError::NotForUs) => return None,
                Err(e) => return Some(unreadable(e.to_string())),
            }
        } else {
            (bytes, false)
        };
        // A revoked signer is refused, replays of what it signed before too.
        let revoked = |user: &str| super::transport::revoked(self.keys, user);
        match signed::open_unrevoked(&inner, self.server, signed::now_ms(), &revoked) {
            Ok((m, cert)) if dedup.first_time(m.id) => {
                notes.extend(key_seen(trust, &cert));
                Some(chat_event(&m, Via::Multicast, private, r.placement))
            }
            Ok(_) => None,
            Err(e) => Some(unreadable(e.to_string())),
        }
    }
}

/// `cert`'s key as `trust` takes it: an event if it changed for its user.
pub(super) fn key_seen(trust: &mut KnownKeys, cert: &lsim_keymgmt::cert::MemberCert) -> Option<MemberEvent> {
    let (seen, failed) = trust.observe(&cert.user, cert.key);
    if let Some(e) = failed {
        eprintln!("known keys: {e}");
    }
    match seen {
        Seen::Changed { was } => Some(MemberEvent::KeyChanged {
            user: cert.user.clone(),
            was: short_fingerprint(&was),
            now: short_fingerprint(&cert.key),
        }),
        Seen::First | Seen::Same => None,
    }
}

pub(super) fn chat_event(m: &ChatMessage, via: Via, private: bool, placement: Placement) -> MemberEvent {
    match crate::group::position::Position::decode(&m.text) {
        Some(Ok(position)) => return MemberEvent::Position { from: m.from.clone(), position, sent_ms: m.sent_ms, via },
        Some(Err(e)) => return MemberEvent::Unreadable { from: m.from.clone(), via, why: e.to_string() },
        None => {}
    }
    let (id, from, text) = (m.id_hex(), m.from.clone(), m.text.clone());
    MemberEvent::Chat { id, from, sent_ms: m.sent_ms, text, via, private, placement, history: false }
}

/// Queues `msg` on the multicast sender, or returns the room payload to
/// send for chat through XMPP.
pub(super) fn send_chat(via_room: bool, transport: &Transport, msg: &ChatMessage) -> Option<Element> {
    let bytes = signed::sign(msg, &transport.signer);
    if via_room {
        let sealed = transport.seal.encrypt_message(CHAT_AAD, &bytes).ok()?;
        let epoch = transport.seal.epochs().last().unwrap_or(0);
        return Some(Payload::Chat(SealedChat { id: msg.id_hex(), epoch: u64::from(epoch), sealed }).to_element());
    }
    transport.queue_chat(bytes);
    None
}

/// Seals `signed` (a signed chat message) for the members `to` (the key
/// server wraps its key for each) and queues it on multicast.
pub(super) async fn private_chat(
    registration: &Registration,
    group: &str,
    to: &[String],
    sender: &Handle<Sender<GroupSeal>>,
    signed: Vec<u8>,
) -> Result<(), NotSent> {
    if to.len() > private::MAX_PRIVATE_RECIPIENTS {
        return Err(NotSent::TooManyRecipients);
    }
    let Some((wraps, key)) = restrict(registration, group, to).await? else { return Err(NotSent::NoRecipients) };
    let sealed = private::seal(&signed, &wraps, &key).map_err(NotSent::Private)?;
    queue_chat(sender, sealed);
    Ok(())
}
