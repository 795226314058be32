//! The room's view of the group: who is here, file offers, chat sealed
//! through the room, and which occupant repairs for our region.
//!
//! Owns what a room event means to the member. It must not send anything
//! to the room nor keep state of its own: the running member holds the
//! roster, the deduplication and the repairer in use, and passes them in.

use std::collections::BTreeMap;

use lsim_keymgmt::suite::GroupSeal;
use lsim_transport::Repairer;
use lsim_transport::net::Handle;
use tokio::sync::mpsc;

use super::messages::chat_event;
use super::{CHAT_AAD, MemberEvent, Placement, RECEIVER_NODE_BIT, Via};
use crate::group::chat::Dedup;
use crate::group::signed;
use crate::group::trust::KnownKeys;
use crate::xmpp::payload::Payload;
use crate::xmpp::room::{Occupant, RoomEvent};

/// The room's view of the group: who is here (kept in `roster`, us not
/// included), file offers, and chat sent sealed through the room. Replayed
/// history is marked as such, and old file offers in it are not announced
/// again.
/// What opening chat from the room takes: the group's seal, the key
/// server's key (certificates) and who it revoked.
pub(super) struct RoomKeys<'a> {
    pub(super) seal: &'a GroupSeal,
    pub(super) server: &'a ed25519_dalek::VerifyingKey,
    pub(super) revoked: &'a dyn Fn(&str) -> bool,
}

pub(super) fn on_room_event(
    event: RoomEvent,
    roster: &mut BTreeMap<String, Occupant>,
    dedup: &mut Dedup,
    keys: RoomKeys<'_>,
    trust: &mut KnownKeys,
    notes: &mut Vec<MemberEvent>,
) -> Option<MemberEvent> {
    Some(match event {
        RoomEvent::OccupantJoined(o) => {
            roster.insert(o.nick.clone(), o.clone());
            MemberEvent::PresenceIn(o)
        }
        RoomEvent::OccupantChanged(o) => {
            roster.insert(o.nick.clone(), o);
            return None;
        }
        RoomEvent::OccupantLeft { nick } => {
            let o = roster.remove(&nick).unwrap_or(Occupant { nick, jid: None, role: None, payload: None });
            MemberEvent::PresenceOut(o)
        }
        RoomEvent::Joined { nick, occupants } => {
            *roster = occupants.into_iter().filter(|o| o.nick != nick).map(|o| (o.nick.clone(), o)).collect();
            MemberEvent::RoomJoined(roster.values().cloned().collect())
        }
        RoomEvent::Left => {
            roster.clear();
            return None;
        }
        RoomEvent::Message { nick, message, delayed } => {
            let from = nick.unwrap_or_default();
            let chat = match message.payload.as_ref().map(Payload::parse) {
                Some(Ok(Payload::Chat(chat))) => chat,
                Some(Ok(Payload::File(_))) if delayed => return None,
                Some(Ok(Payload::File(offer))) => return Some(MemberEvent::FileOffered { from, offer }),
                _ => return None,
            };
            // A revoked signer is refused, as on multicast.
            let RoomKeys { seal, server, revoked } = keys;
            let opened = seal
                .decrypt_message(CHAT_AAD, &chat.sealed)
                .map(|b| signed::open_unrevoked(&b, server, signed::now_ms(), revoked));
            match opened {
                Ok(Ok((m, cert))) => {
                    if !dedup.first_time(m.id) {
                        return None;
                    }
                    notes.extend(super::messages::key_seen(trust, &cert));
                    let mut ev = chat_event(&m, Via::Xmpp, false, Placement::InOrder);
                    if let MemberEvent::Chat { history, .. } = &mut ev {
                        *history = delayed;
                    }
                    ev
                }
                // Refused and said so, replayed history included.
                Ok(Err(e @ signed::SignedError::Revoked(_))) => {
                    MemberEvent::Unreadable { from, via: Via::Xmpp, why: e.to_string() }
                }
                // History from before we joined is under keys we never held: by design.
                Ok(Err(_)) | Err(_) if delayed => return None,
                Ok(Err(e)) => MemberEvent::Unreadable { from, via: Via::Xmpp, why: e.to_string() },
                Err(e) => MemberEvent::Unreadable { from, via: Via::Xmpp, why: format!("cannot decrypt: {e}") },
            }
        }
        RoomEvent::JoinFailed { .. } => return None,
    })
}

/// Points our receiver at a new repairer (or at none) and says so.
pub(super) async fn use_repairer(
    change: Option<(String, u32)>,
    receiver: &Handle<Repairer<GroupSeal>>,
    events: &mpsc::Sender<MemberEvent>,
) -> Option<(String, u32)> {
    let node = change.as_ref().map(|(_, node)| *node | RECEIVER_NODE_BIT);
    receiver.with(move |r| r.set_repairer(node));
    let _ = events.send(MemberEvent::Repairer(change.as_ref().map(|(nick, _)| nick.clone()))).await;
    change
}

/// Whether a room event changes our region's repairer: `Some(new)` if so.
/// An occupant whose status says it repairs `region` becomes it (the first
/// one seen stays while it is there); its leaving clears it.
pub(super) fn repairer_change(
    event: &RoomEvent,
    region: &str,
    own_nick: &str,
    current: Option<&(String, u32)>,
) -> Option<Option<(String, u32)>> {
    let offers = |o: &Occupant| match o.payload.as_ref().map(Payload::parse) {
        Some(Ok(Payload::Status(s))) if s.repairs.as_deref() == Some(region) && o.nick != own_nick => {
            Some((o.nick.clone(), s.node))
        }
        _ => None,
    };
    match event {
        RoomEvent::Joined { occupants, .. } if current.is_none() => occupants.iter().find_map(offers).map(Some),
        RoomEvent::OccupantJoined(o) | RoomEvent::OccupantChanged(o) => match (current, offers(o)) {
            (None, Some(new)) => Some(Some(new)),
            // Our repairer changed its status and no longer repairs here.
            (Some((nick, _)), None) if nick == &o.nick => Some(None),
            _ => None,
        },
        RoomEvent::OccupantLeft { nick } if current.is_some_and(|(n, _)| n == nick) => Some(None),
        _ => None,
    }
}
