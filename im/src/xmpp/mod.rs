//! The XMPP stream layer: an owned element tree, the incremental stream
//! parser with its limits and stream errors, and typed stanza views.
//!
//! Owns everything between bytes and stanzas. It must not touch sockets,
//! TLS, SASL or group logic: callers hand it a read half and get
//! [`stream::StreamEvent`]s back, and serialize [`element::Element`]s
//! themselves.

pub mod element;
pub mod jid;
pub mod sasl;
pub mod stanza;
pub mod stream;
pub mod tls;

pub use element::{Element, Node};
pub use stanza::{Iq, IqType, Message, MessageType, MucItem, MucUser, Presence, PresenceType, StanzaError};
pub use stream::{
    Handback, Limits, StreamError, StreamEvent, StreamEvents, StreamHeader, StreamReader, is_restart_point,
    spawn_reader, spawn_reader_until, stream_error_xml,
};
