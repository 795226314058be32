//! The login flow's waits: for the XMPP connection, for the group's
//! parameters in the room, and what a failed key server login means.
//!
//! Owns those waits and their errors. It must not register, join or start
//! anything: [`super::Member::start`] does, in order.

use std::net::SocketAddr;

use lsim_keymgmt::client::ClientError;
use lsim_keymgmt::registrar::quic::ChannelError;

use super::{MemberConfig, MemberError};
use crate::xmpp::client::{Client, ClientEvent};
use crate::xmpp::element::Element;
use crate::xmpp::payload::{GroupParams, Payload};
use crate::xmpp::room::RoomEvent;

/// Waits until the XMPP client is online; its stopping ends the login.
pub(super) async fn wait_online(xmpp: &mut Client) -> Result<(), MemberError> {
    loop {
        match xmpp.next_event().await {
            Some(ClientEvent::Online { .. }) => return Ok(()),
            Some(ClientEvent::Stopped { error }) => {
                return Err(MemberError::Xmpp(error.unwrap_or_else(|| "stopped".into())));
            }
            Some(_) => {}
            None => return Err(MemberError::Xmpp("client ended".into())),
        }
    }
}

/// A connection that never came up is an unreachable key server; any other
/// failure is the key server's answer.
pub(super) fn unreachable_or(e: ClientError, addr: SocketAddr) -> MemberError {
    match e {
        ClientError::Channel(ChannelError::Connect { why, .. })
            if why.contains("timed out") || why.contains("refused") || why.contains("unreachable") =>
        {
            MemberError::KeyServerUnreachable { addr, why }
        }
        other => MemberError::Keys(other),
    }
}

/// Waits for an occupant whose presence carries the group's parameters.
pub(super) async fn params_from_room(
    xmpp: &mut Client,
    cfg: &MemberConfig,
    seen: &mut Vec<RoomEvent>,
) -> Result<GroupParams, MemberError> {
    let found = |payload: &Option<Element>| match payload.as_ref().map(Payload::parse) {
        Some(Ok(Payload::Group(p))) => Some(p),
        _ => None,
    };
    let deadline = tokio::time::Instant::now() + cfg.params_timeout;
    loop {
        let ev = tokio::time::timeout_at(deadline, xmpp.next_event())
            .await
            .map_err(|_| MemberError::NoParams(cfg.room.to_string()))?;
        if let Some(ClientEvent::Room { event, .. }) = &ev {
            seen.push(event.clone());
        }
        match ev {
            Some(ClientEvent::Room { event: RoomEvent::Joined { occupants, .. }, .. }) => {
                if let Some(p) = occupants.iter().find_map(|o| found(&o.payload)) {
                    return Ok(p);
                }
            }
            Some(ClientEvent::Room { event: RoomEvent::OccupantJoined(o) | RoomEvent::OccupantChanged(o), .. }) => {
                if let Some(p) = found(&o.payload) {
                    return Ok(p);
                }
            }
            Some(ClientEvent::Stopped { error }) => {
                return Err(MemberError::Xmpp(error.unwrap_or_else(|| "stopped".into())));
            }
            Some(_) => {}
            None => return Err(MemberError::Xmpp("client ended".into())),
        }
    }
}
