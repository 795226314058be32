//! XMPP, lsim's control plane: the stream layer (element tree, bounded
//! incremental parser, stanza views), SASL, TLS, JIDs, our `urn:lsim:0`
//! payloads, the client (connection, rooms, reconnect) and the embedded
//! server.
//!
//! Each module owns one layer; the sans-IO ones (`sasl`, `room`,
//! `payload`, `stanza`) never touch sockets, and nothing here touches the
//! multicast transport or group keys.

pub mod client;
pub mod element;
pub mod history;
pub mod hub;
pub mod jid;
pub mod ns;
pub mod payload;
pub mod room;
pub mod sasl;
pub mod server;
pub mod sm;
pub mod stanza;
pub mod stream;
pub mod tls;
pub mod users;

pub use element::{Element, Node};
pub use stanza::{Iq, IqType, Message, MessageType, MucItem, MucUser, Presence, PresenceType, StanzaError};
pub use stream::{
    Handback, Limits, StreamError, StreamEvent, StreamEvents, StreamHeader, StreamReader, is_restart_point,
    spawn_reader, spawn_reader_until, stream_error_xml,
};
