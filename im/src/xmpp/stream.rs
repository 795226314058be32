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

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::{NsReader, XmlVersion};
use tokio::io::{AsyncBufRead, AsyncRead, BufReader, ReadBuf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::element::{Element, Node, is_xml_char};

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

/// Whether `e` ends the current stream and starts a new one: STARTTLS
/// `<proceed/>` or SASL `<success/>`.
pub fn is_restart_point(e: &Element) -> bool {
    e.is("proceed", NS_TLS) || e.is("success", NS_SASL)
}

/// Marker carried in the `io::Error` when a byte budget is spent.
#[derive(Debug)]
struct BudgetSpent;

impl std::fmt::Display for BudgetSpent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("byte budget spent")
    }
}

impl std::error::Error for BudgetSpent {}

/// A buffered reader that hands out at most `remaining` more bytes, then
/// fails with [`BudgetSpent`]. quick-xml can therefore never buffer more
/// than the budget.
struct Budgeted<R> {
    inner: BufReader<R>,
    remaining: usize,
}

impl<R: AsyncRead + Unpin> AsyncRead for Budgeted<R> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let n = {
            let data = ready!(Pin::new(&mut *this).poll_fill_buf(cx))?;
            let n = data.len().min(buf.remaining());
            buf.put_slice(&data[..n]);
            n
        };
        Pin::new(this).consume(n);
        Poll::Ready(Ok(()))
    }
}

impl<R: AsyncRead + Unpin> AsyncBufRead for Budgeted<R> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        let remaining = this.remaining;
        let data = ready!(Pin::new(&mut this.inner).poll_fill_buf(cx))?;
        if data.is_empty() {
            return Poll::Ready(Ok(data));
        }
        if remaining == 0 {
            return Poll::Ready(Err(io::Error::other(BudgetSpent)));
        }
        let n = data.len().min(remaining);
        Poll::Ready(Ok(&data[..n]))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        this.remaining = this.remaining.saturating_sub(amt);
        Pin::new(&mut this.inner).consume(amt);
    }
}

/// One parser event, owned, with limits and RFC 6120 restrictions applied.
enum Token {
    Start(Element, Option<String>),
    Empty(Element),
    End,
    Text(String),
    Decl,
    Eof,
}

/// Parses one XMPP stream. Not cancel-safe: drive it from one task (see
/// [`spawn_reader`]), never from inside `select!` or `timeout`.
pub struct StreamReader<R> {
    reader: NsReader<Budgeted<R>>,
    limits: Limits,
    buf: Vec<u8>,
    /// Open elements of the stanza being read; empty at stream level.
    open: Vec<Element>,
    /// Elements started in the current stanza.
    elements: usize,
    /// Bytes of names and namespaces held by the current stanza's elements:
    /// each element keeps its own copy of its namespace, so a small stanza
    /// of many elements under one long namespace must not cost more memory
    /// than a stanza may take bytes.
    held: usize,
    header_seen: bool,
    ended: bool,
    failed: Option<StreamError>,
}

impl<R: AsyncRead + Unpin> StreamReader<R> {
    /// A parser reading `read` with `limits`.
    pub fn new(read: R, limits: Limits) -> Self {
        let budgeted = Budgeted { inner: BufReader::with_capacity(8 * 1024, read), remaining: limits.max_header_bytes };
        let mut reader = NsReader::from_reader(budgeted);
        let config = reader.config_mut();
        config.check_end_names = true;
        config.expand_empty_elements = false;
        config.trim_text(false);
        StreamReader {
            reader,
            limits,
            buf: Vec::new(),
            open: Vec::new(),
            elements: 0,
            held: 0,
            header_seen: false,
            ended: false,
            failed: None,
        }
    }

    /// Gives back the transport and the bytes read from it but not parsed.
    /// Meant for a restart point, when the parser is between stanzas.
    pub fn into_handback(self) -> Handback<R> {
        let budgeted = self.reader.into_inner();
        let buffered = budgeted.inner.buffer().to_vec();
        Handback { transport: budgeted.inner.into_inner(), buffered }
    }

    /// The next event. After [`StreamEvent::End`] it keeps returning `End`;
    /// after an error it keeps returning that error.
    pub async fn next_event(&mut self) -> Result<StreamEvent, StreamError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.ended {
            return Ok(StreamEvent::End);
        }
        let result = self.advance().await;
        match &result {
            Err(e) => self.failed = Some(e.clone()),
            Ok(StreamEvent::End) => self.ended = true,
            Ok(_) => {}
        }
        result
    }

    async fn advance(&mut self) -> Result<StreamEvent, StreamError> {
        loop {
            let token = self.next_token().await?;
            if !self.header_seen {
                if let Some(header) = self.before_header(token)? {
                    self.header_seen = true;
                    self.reader.get_mut().remaining = self.limits.max_stanza_bytes;
                    return Ok(StreamEvent::Header(header));
                }
                continue;
            }
            if let Some(event) = self.in_stream(token)? {
                self.reader.get_mut().remaining = self.limits.max_stanza_bytes;
                self.elements = 0;
                self.held = 0;
                return Ok(event);
            }
        }
    }

    fn before_header(&mut self, token: Token) -> Result<Option<StreamHeader>, StreamError> {
        match token {
            Token::Decl => Ok(None),
            Token::Text(t) if is_xml_whitespace(&t) => Ok(None),
            Token::Text(_) => Err(StreamError::BadFormat("text before the stream header".into())),
            Token::Start(e, default_ns) => {
                if e.ns != NS_STREAMS {
                    return Err(StreamError::InvalidNamespace(e.ns));
                }
                if e.name != "stream" {
                    return Err(StreamError::BadFormat(format!("root element <{}>, expected <stream>", e.name)));
                }
                let get = |n: &str| e.get_attr(n).map(str::to_owned);
                Ok(Some(StreamHeader {
                    to: get("to"),
                    from: get("from"),
                    id: get("id"),
                    version: get("version"),
                    lang: get("xml:lang"),
                    default_ns,
                }))
            }
            Token::Empty(e) if e.ns != NS_STREAMS => Err(StreamError::InvalidNamespace(e.ns)),
            Token::Empty(e) => Err(StreamError::BadFormat(format!("empty <{}/> as stream header", e.name))),
            Token::End => Err(StreamError::NotWellFormed("end tag before the stream header".into())),
            Token::Eof => Err(StreamError::UnexpectedEof("the stream header")),
        }
    }

    fn in_stream(&mut self, token: Token) -> Result<Option<StreamEvent>, StreamError> {
        if let Token::Start(e, _) | Token::Empty(e) = &token {
            self.elements += 1;
            if self.elements > self.limits.max_elements {
                return Err(StreamError::TooManyElements { limit: self.limits.max_elements });
            }
            self.held = self.held.saturating_add(e.ns.len() + e.name.len());
            if self.held > self.limits.max_stanza_bytes {
                return Err(StreamError::StanzaTooLarge { limit: self.limits.max_stanza_bytes });
            }
        }
        match token {
            Token::Start(e, _) => {
                if self.open.len() >= self.limits.max_depth {
                    return Err(StreamError::TooDeep { name: e.name, limit: self.limits.max_depth });
                }
                self.open.push(e);
                Ok(None)
            }
            Token::Empty(e) => Ok(self.close(e)),
            Token::End => match self.open.pop() {
                Some(e) => Ok(self.close(e)),
                None => Ok(Some(StreamEvent::End)),
            },
            Token::Text(t) => match self.open.last_mut() {
                Some(parent) => {
                    match parent.children.last_mut() {
                        Some(Node::Text(prev)) => prev.push_str(&t),
                        _ => parent.children.push(Node::Text(t)),
                    }
                    Ok(None)
                }
                None if is_xml_whitespace(&t) => Ok(None),
                None => Err(StreamError::BadFormat("text at stream level".into())),
            },
            Token::Decl => Err(StreamError::RestrictedXml("XML declaration inside the stream".into())),
            Token::Eof if self.open.is_empty() => Err(StreamError::UnexpectedEof("the stream (no </stream:stream>)")),
            Token::Eof => Err(StreamError::UnexpectedEof("a stanza")),
        }
    }

    /// Attaches a finished element to its parent, or returns it as a stanza.
    fn close(&mut self, e: Element) -> Option<StreamEvent> {
        match self.open.last_mut() {
            Some(parent) => {
                parent.children.push(Node::Element(e));
                None
            }
            None => Some(StreamEvent::Stanza(e)),
        }
    }

    async fn next_token(&mut self) -> Result<Token, StreamError> {
        self.buf.clear();
        let limit_error = if self.header_seen {
            StreamError::StanzaTooLarge { limit: self.limits.max_stanza_bytes }
        } else {
            StreamError::HeaderTooLarge { limit: self.limits.max_header_bytes }
        };
        let max_attrs = self.limits.max_attrs;
        let (resolved, event) = match self.reader.read_resolved_event_into_async(&mut self.buf).await {
            Ok(x) => x,
            Err(e) => return Err(map_xml_error(e, limit_error)),
        };
        let start = |e: &quick_xml::events::BytesStart<'_>| {
            let ns = match &resolved {
                // Namespace names are attribute values: unescaped and checked like any other.
                ResolveResult::Bound(ns) => {
                    let raw: &str = ns.into_inner();
                    let value = quick_xml::escape::unescape(raw)
                        .map_err(|err| StreamError::NotWellFormed(format!("namespace {raw:?}: {err}")))?;
                    if value.contains(['<', '>']) {
                        return Err(StreamError::NotWellFormed(format!("namespace {raw:?} holds markup")));
                    }
                    checked_chars(value.into_owned())?
                }
                ResolveResult::Unbound => String::new(),
                ResolveResult::Unknown(prefix) => {
                    return Err(StreamError::NotWellFormed(format!("undeclared namespace prefix '{prefix}'")));
                }
            };
            if e.local_name().into_inner().is_empty() {
                return Err(StreamError::NotWellFormed("an element without a name".into()));
            }
            let mut element = Element::new(e.local_name().into_inner(), ns);
            let mut default_ns = None;
            for (count, attr) in e.attributes().enumerate() {
                if count >= max_attrs {
                    return Err(StreamError::TooManyAttributes { name: element.name, limit: max_attrs });
                }
                let attr = attr.map_err(|err| StreamError::NotWellFormed(err.to_string()))?;
                let key = attr.key.into_inner();
                let value = attr
                    .normalized_value(XmlVersion::Implicit1_0)
                    .map_err(|err| map_xml_error(err, limit_error.clone()))?;
                if key == "xmlns" {
                    default_ns = Some(value.into_owned());
                } else if key.starts_with("xmlns:") {
                    // A prefix declaration; the resolver has already used it.
                } else if key.contains(':') && !key.starts_with("xml:") {
                    // Prefixed attributes in other namespaces are dropped:
                    // the tree keeps no prefixes, and XMPP core does not use them.
                } else {
                    element.attrs.push((key.to_owned(), checked_chars(value.into_owned())?));
                }
            }
            Ok((element, default_ns))
        };
        match &event {
            Event::Start(e) => start(e).map(|(el, ns)| Token::Start(el, ns)),
            Event::Empty(e) => start(e).map(|(el, _)| Token::Empty(el)),
            Event::End(_) => Ok(Token::End),
            Event::Text(t) => checked_chars(t.xml10_content().into_owned()).map(Token::Text),
            Event::CData(c) => checked_chars(c.xml10_content().into_owned()).map(Token::Text),
            Event::GeneralRef(r) => {
                if r.is_char_ref() {
                    return match r.resolve_char_ref() {
                        Ok(Some(c)) => checked_chars(c.to_string()).map(Token::Text),
                        Ok(None) => Err(StreamError::NotWellFormed("empty character reference".into())),
                        Err(err) => Err(StreamError::NotWellFormed(err.to_string())),
                    };
                }
                let name = r.clone().into_inner();
                match predefined_entity(&name) {
                    Some(c) => Ok(Token::Text(c.to_string())),
                    None => Err(StreamError::RestrictedXml(format!("entity reference &{name};"))),
                }
            }
            Event::Comment(_) => Err(StreamError::RestrictedXml("comment".into())),
            Event::PI(_) => Err(StreamError::RestrictedXml("processing instruction".into())),
            Event::DocType(_) => Err(StreamError::RestrictedXml("document type declaration (DTD)".into())),
            Event::Decl(_) => Ok(Token::Decl),
            Event::Eof => Ok(Token::Eof),
        }
    }
}

/// The five entities XML predefines (the only ones RFC 6120 allows).
fn predefined_entity(name: &str) -> Option<char> {
    match name {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "apos" => Some('\''),
        "quot" => Some('"'),
        _ => None,
    }
}

/// Refuses characters XML 1.0 cannot carry (quick-xml lets them through).
fn checked_chars(s: String) -> Result<String, StreamError> {
    match s.chars().find(|&c| !is_xml_char(c)) {
        Some(c) => Err(StreamError::NotWellFormed(format!("character U+{:04X} is not allowed in XML", u32::from(c)))),
        None => Ok(s),
    }
}

fn is_xml_whitespace(s: &str) -> bool {
    s.chars().all(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
}

fn map_xml_error(e: quick_xml::Error, limit_error: StreamError) -> StreamError {
    use quick_xml::errors::SyntaxError;
    use quick_xml::escape::EscapeError;
    match e {
        quick_xml::Error::Io(io) => {
            if io.get_ref().is_some_and(|inner| inner.is::<BudgetSpent>()) {
                limit_error
            } else {
                StreamError::Io(io)
            }
        }
        // quick-xml reports a transport closed mid-markup as "unclosed …".
        quick_xml::Error::Syntax(
            SyntaxError::UnclosedTag
            | SyntaxError::UnclosedCData
            | SyntaxError::UnclosedXmlDecl
            | SyntaxError::UnclosedSingleQuotedAttributeValue
            | SyntaxError::UnclosedDoubleQuotedAttributeValue,
        ) => StreamError::UnexpectedEof("a tag"),
        quick_xml::Error::Syntax(
            what @ (SyntaxError::UnclosedComment | SyntaxError::UnclosedPI | SyntaxError::UnclosedDoctype),
        ) => StreamError::RestrictedXml(what.to_string()),
        quick_xml::Error::Escape(EscapeError::UnrecognizedEntity(_, name)) => {
            StreamError::RestrictedXml(format!("entity reference &{name};"))
        }
        other => StreamError::NotWellFormed(other.to_string()),
    }
}

/// The channel a reader task feeds: events in order, ending after
/// [`StreamEvent::End`] or the first error.
pub type StreamEvents = mpsc::Receiver<Result<StreamEvent, StreamError>>;

/// What a reader task gives back when it stops at a restart point.
#[derive(Debug)]
pub struct Handback<R> {
    /// The read half, positioned after the restart element.
    pub transport: R,
    /// Bytes already read from the transport past the restart element
    /// (normally empty: the peer waits for our new header or TLS
    /// handshake); they belong to the next stream.
    pub buffered: Vec<u8>,
}

/// Runs a [`StreamReader`] on `read_half` in its own task and returns the
/// channel it feeds. The channel ends after [`StreamEvent::End`] or the
/// first error; dropping the receiver stops the task.
pub fn spawn_reader<R>(read_half: R, limits: Limits) -> StreamEvents
where
    R: AsyncRead + Unpin + Send + 'static,
{
    spawn_reader_until(read_half, limits, |_| false).0
}

/// Like [`spawn_reader`], but the task also stops right after delivering a
/// top-level element for which `stop_after` is true (use
/// [`is_restart_point`]); the join handle then yields the transport for
/// the next stream. It yields `None` if the stream ended otherwise.
pub fn spawn_reader_until<R>(
    read_half: R,
    limits: Limits,
    stop_after: fn(&Element) -> bool,
) -> (StreamEvents, JoinHandle<Option<Handback<R>>>)
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel(16);
    let task = tokio::spawn(async move {
        let mut reader = StreamReader::new(read_half, limits);
        loop {
            // Cancelling `next_event` here is fine: the reader is dropped
            // with it, nobody reads this stream again.
            let event = tokio::select! {
                _ = tx.closed() => return None,
                event = reader.next_event() => event,
            };
            let stop = match &event {
                Ok(StreamEvent::Stanza(e)) if stop_after(e) => Some(true),
                Ok(StreamEvent::Header(_) | StreamEvent::Stanza(_)) => None,
                Ok(StreamEvent::End) | Err(_) => Some(false),
            };
            if tx.send(event).await.is_err() {
                return None;
            }
            match stop {
                Some(true) => return Some(reader.into_handback()),
                Some(false) => return None,
                None => {}
            }
        }
    });
    (rx, task)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    async fn parse_all(input: &[u8]) -> Vec<Result<StreamEvent, StreamError>> {
        let mut reader = StreamReader::new(input, Limits::default());
        let mut out = Vec::new();
        loop {
            let ev = reader.next_event().await;
            let last = !matches!(ev, Ok(StreamEvent::Header(_) | StreamEvent::Stanza(_)));
            out.push(ev);
            if last {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn header_then_stanzas_then_end() {
        let input = b"<?xml version='1.0'?>\n<stream:stream xmlns='jabber:client' \
            xmlns:stream='http://etherx.jabber.org/streams' to='example.com' from='a@example.com' \
            id='s1' version='1.0' xml:lang='en'> <message to='b' type='chat'><body>a &amp; b &#x263A; &lt;</body></message>\n\
            <stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features></stream:stream>";
        let events = parse_all(input).await;
        let header = StreamHeader {
            to: Some("example.com".into()),
            from: Some("a@example.com".into()),
            id: Some("s1".into()),
            version: Some("1.0".into()),
            lang: Some("en".into()),
            default_ns: Some("jabber:client".into()),
        };
        assert_eq!(events[0].as_ref().unwrap(), &StreamEvent::Header(header));
        let msg = Element::new("message", NS_CLIENT)
            .attr("to", "b")
            .attr("type", "chat")
            .child(Element::new("body", NS_CLIENT).text("a & b \u{263A} <"));
        assert_eq!(events[1].as_ref().unwrap(), &StreamEvent::Stanza(msg));
        let features =
            Element::new("features", NS_STREAMS).child(Element::new("bind", "urn:ietf:params:xml:ns:xmpp-bind"));
        assert_eq!(events[2].as_ref().unwrap(), &StreamEvent::Stanza(features));
        assert_eq!(events[3].as_ref().unwrap(), &StreamEvent::End);
        assert_eq!(events.len(), 4);
    }

    #[test]
    fn stream_error_rendering() {
        assert_eq!(
            stream_error_xml("policy-violation"),
            "<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>"
        );
    }

    #[tokio::test]
    async fn depth_and_attribute_limits() {
        let head = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
        let deep = format!("{head}{}", "<a>".repeat(40));
        let events = parse_all(deep.as_bytes()).await;
        assert_eq!(events.last().unwrap().as_ref().unwrap_err().condition(), "policy-violation");
        let attrs: String = (0..100).map(|i| format!(" a{i}='x'")).collect();
        let wide = format!("{head}<a{attrs}/>");
        let events = parse_all(wide.as_bytes()).await;
        assert!(matches!(events.last().unwrap(), Err(StreamError::TooManyAttributes { .. })));
        let many = format!("{head}<a>{}</a>", "<b/>".repeat(5000));
        let events = parse_all(many.as_bytes()).await;
        assert!(matches!(events.last().unwrap(), Err(StreamError::TooManyElements { limit: 4096 })));
        let fine = format!("{head}<a>{}</a><a>{}</a>", "<b/>".repeat(4095), "<b/>".repeat(4095));
        let events = parse_all(fine.as_bytes()).await;
        // Header, two stanzas, then the input ends without </stream:stream>.
        assert!(matches!(&events[..], [Ok(_), Ok(StreamEvent::Stanza(_)), Ok(StreamEvent::Stanza(_)), Err(_)]));
    }
}
