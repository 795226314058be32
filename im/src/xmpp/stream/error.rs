//! Why a stream cannot go on ([`StreamError`]), the RFC 6120 §4.9.3
//! condition each failure maps to, and the `<stream:error/>` to send.
//!
//! Owns the error type, its conditions and their rendering. It must not
//! read or write the connection: the parser reports, the caller sends.

use std::io;
use std::sync::Arc;

#[cfg(doc)]
use super::Limits;
use super::{NS_STREAM_ERRORS, NS_STREAMS};
use crate::xmpp::element::Element;

/// Why the stream cannot go on. [`StreamError::condition`] names the RFC
/// 6120 §4.9.3 condition to send before closing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StreamError {
    /// The transport failed; nothing can be sent.
    #[error("transport read failed: {0}")]
    Io(Arc<io::Error>),
    /// The peer closed the transport without `</stream:stream>`.
    #[error("transport closed in the middle of {0}")]
    UnexpectedEof(&'static str),
    /// The header exceeded [`Limits::max_header_bytes`].
    #[error("stream header longer than {limit} bytes")]
    HeaderTooLarge {
        /// The limit.
        limit: usize,
    },
    /// A stanza exceeded [`Limits::max_stanza_bytes`].
    #[error("stanza longer than {limit} bytes")]
    StanzaTooLarge {
        /// The limit.
        limit: usize,
    },
    /// A stanza nested deeper than [`Limits::max_depth`].
    #[error("<{name}> nests deeper than {limit} levels")]
    TooDeep {
        /// The element that went too deep.
        name: String,
        /// The limit.
        limit: usize,
    },
    /// An element had more than [`Limits::max_attrs`] attributes.
    #[error("<{name}> has more than {limit} attributes")]
    TooManyAttributes {
        /// The element.
        name: String,
        /// The limit.
        limit: usize,
    },
    /// A stanza had more than [`Limits::max_elements`] elements.
    #[error("stanza has more than {limit} elements")]
    TooManyElements {
        /// The limit.
        limit: usize,
    },
    /// The bytes are not well-formed XML (or not UTF-8).
    #[error("not well-formed XML: {0}")]
    NotWellFormed(String),
    /// XML that RFC 6120 §11.1 forbids: DTD, comment, processing
    /// instruction, entity reference other than the five predefined ones.
    #[error("restricted XML: {0}")]
    RestrictedXml(String),
    /// The root element is not in the stream namespace.
    #[error("stream root element in namespace '{0}', expected '{NS_STREAMS}'")]
    InvalidNamespace(String),
    /// Something other than a stream where a stream was expected (text
    /// before the header, a root element that is not `stream`, text at
    /// stream level).
    #[error("bad format: {0}")]
    BadFormat(String),
}

impl StreamError {
    /// The RFC 6120 stream error condition for this failure. Transport
    /// failures ([`StreamError::Io`], [`StreamError::UnexpectedEof`]) give
    /// `undefined-condition`, though usually nothing can be sent then.
    pub fn condition(&self) -> &'static str {
        match self {
            StreamError::Io(_) | StreamError::UnexpectedEof(_) => "undefined-condition",
            StreamError::HeaderTooLarge { .. }
            | StreamError::StanzaTooLarge { .. }
            | StreamError::TooDeep { .. }
            | StreamError::TooManyAttributes { .. }
            | StreamError::TooManyElements { .. } => "policy-violation",
            StreamError::NotWellFormed(_) => "not-well-formed",
            StreamError::RestrictedXml(_) => "restricted-xml",
            StreamError::InvalidNamespace(_) => "invalid-namespace",
            StreamError::BadFormat(_) => "bad-format",
        }
    }

    /// Whether the transport itself is gone (no stream error can be sent).
    pub fn is_transport(&self) -> bool {
        matches!(self, StreamError::Io(_) | StreamError::UnexpectedEof(_))
    }
}

/// Renders the stream error for `condition` followed by the closing tag:
/// `<stream:error><CONDITION xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>`.
/// Assumes the stream header bound the `stream:` prefix (ours always does).
pub fn stream_error_xml(condition: &str) -> String {
    let mut cond = String::new();
    Element::new(condition, NS_STREAM_ERRORS).write_to(&mut cond, "");
    format!("<stream:error>{cond}</stream:error></stream:stream>")
}
