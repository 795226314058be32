//! Incremental parsing of one XMPP stream (RFC 6120 §4) from an
//! `AsyncRead`: the `<stream:stream>` header, then top-level stanzas one at
//! a time as [`Element`]s, then the closing tag.
//!
//! Owns the parser state, the size/depth limits and the mapping of every
//! failure to the RFC 6120 stream error condition to send. It must not
//! touch the write side of the connection, TLS or SASL: the caller sends
//! whatever [`stream_error_xml`] renders and closes.
//!
//! quick-xml's async read is not cancel-safe (a read dropped mid-tag loses
//! bytes), so the parser runs in its own task ([`spawn_reader`]) and the
//! consumer only ever waits on a channel, which is safe in `select!`.
//!
//! # Limits
//!
//! quick-xml has no size limit, so every byte reaches it through a budget:
//! the header gets [`Limits::max_header_bytes`], each stanza (with the
//! whitespace before it) [`Limits::max_stanza_bytes`]. When the budget is
//! spent the underlying read fails, so a 10 MiB stanza is refused after at
//! most the limit plus one read buffer, never after buffering it whole.
//!
//! # Stream restarts
//!
//! After STARTTLS `<proceed/>` and after SASL `<success/>` both sides start
//! a new stream (RFC 6120 §5.4.3.3, §6.4.6): the old parser must not see
//! the new header. Use [`spawn_reader_until`] with [`is_restart_point`]: the
//! task stops right after delivering that element and its join handle
//! yields a [`Handback`] with the transport (and any bytes already read past
//! the element). The caller then wraps the transport in TLS if needed,
//! sends its new header, and calls `spawn_reader` / `spawn_reader_until`
//! again on the (new) read half: one reader per stream.
//!
//! This file owns the stream's vocabulary: the namespaces, the limits, the
//! header and the events, and which elements are restart points. It must
//! not parse; that is split by noun:
//!
//! - `reader`: the parser itself ([`StreamReader`]) and the mapping of
//!   quick-xml's errors;
//! - `budget`: the byte budget every byte reaches quick-xml through;
//! - `error`: [`StreamError`], its RFC 6120 conditions and their rendering;
//! - `task`: the reader task ([`spawn_reader`], [`spawn_reader_until`]) and
//!   what it hands back at a restart point.

mod budget;
mod error;
mod reader;
mod task;
#[cfg(test)]
mod tests;

pub use self::error::{StreamError, stream_error_xml};
pub use self::reader::StreamReader;
pub(crate) use self::reader::predefined_entity;
pub use self::task::{Handback, StreamEvents, spawn_reader, spawn_reader_until};
use super::element::Element;

/// The stream namespace (`stream:` prefix).
pub const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
/// The default namespace of client-to-server streams.
pub const NS_CLIENT: &str = "jabber:client";
/// The namespace of stream error conditions.
pub const NS_STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// STARTTLS namespace (`<proceed/>` is a restart point).
pub const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
/// SASL namespace (`<success/>` is a restart point).
pub const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

/// Size and shape limits on what a peer may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes per stanza, including whitespace before it (so whitespace
    /// keepalives between two stanzas count towards the second one).
    pub max_stanza_bytes: usize,
    /// Element nesting inside a stanza (the stanza itself is depth 1).
    pub max_depth: usize,
    /// Attributes (namespace declarations included) on one element.
    pub max_attrs: usize,
    /// Elements in one stanza (the stanza included). An element costs far
    /// more memory than its bytes on the wire (`<a/>` is 4 bytes), so
    /// this bounds the tree, not only the input.
    pub max_elements: usize,
    /// Bytes up to and including the `<stream:stream …>` start tag.
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stanza_bytes: 256 * 1024,
            max_depth: 32,
            max_attrs: 64,
            max_elements: 4096,
            max_header_bytes: 8 * 1024,
        }
    }
}

/// The attributes of a `<stream:stream>` header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamHeader {
    /// `to`
    pub to: Option<String>,
    /// `from`
    pub from: Option<String>,
    /// `id`
    pub id: Option<String>,
    /// `version` (`1.0` for RFC 6120 streams)
    pub version: Option<String>,
    /// `xml:lang`
    pub lang: Option<String>,
    /// The default namespace declared on the header (`jabber:client`, …).
    pub default_ns: Option<String>,
}

/// One thing read from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// The stream header; always the first event.
    Header(StreamHeader),
    /// A complete top-level element (stanza, features, SASL, …).
    Stanza(Element),
    /// The peer closed the stream with `</stream:stream>`; nothing follows.
    End,
}

/// Whether `e` ends the current stream and starts a new one: STARTTLS
/// `<proceed/>` or SASL `<success/>`.
pub fn is_restart_point(e: &Element) -> bool {
    e.is("proceed", NS_TLS) || e.is("success", NS_SASL)
}
