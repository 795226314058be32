//! The incremental parser of one XMPP stream ([`StreamReader`]): the
//! header, then each top-level stanza as an [`Element`], then the closing
//! tag, with the limits and RFC 6120's XML restrictions applied to every
//! token, and quick-xml's errors mapped to [`StreamError`]s.
//!
//! Owns the parser state. It must not run itself (the reader task does,
//! see [`super::spawn_reader`]) nor touch the write side of the connection.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::{NsReader, XmlVersion};
use tokio::io::{AsyncRead, BufReader};

use super::budget::{BudgetSpent, Budgeted};
#[cfg(doc)]
use super::spawn_reader;
use super::{Handback, Limits, NS_STREAMS, StreamError, StreamEvent, StreamHeader};
use crate::xmpp::element::{Element, Node, is_xml_char};

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
/// The five entities XML predefines (the only ones read: no DTD is).
pub(crate) fn predefined_entity(name: &str) -> Option<char> {
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
