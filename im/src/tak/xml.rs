//! Reading one Cursor-on-Target XML document from a datagram, as a bounded
//! element tree.
//!
//! Owns turning untrusted bytes into an [`Element`]: one root element, no
//! DTD (so no entity expansion), no processing instructions, only the five
//! predefined entities and character references, every count bounded
//! (bytes, depth, elements, attributes, text). It must not interpret CoT
//! (`cot` does) nor touch sockets.

use quick_xml::events::Event;
use quick_xml::{Reader, XmlVersion};

use crate::xmpp::element::{Element, Node, is_xml_char};
use crate::xmpp::stream::predefined_entity;

/// The largest document read: ATAK's events are a few KiB.
pub const MAX_DOCUMENT: usize = 64 * 1024;
/// How deep elements may nest.
pub const MAX_DEPTH: usize = 16;
/// Elements in one document at most.
pub const MAX_ELEMENTS: usize = 256;
/// Attributes of one element at most.
pub const MAX_ATTRS: usize = 32;

/// Why bytes are not a CoT document we read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// Over one of the bounds above.
    #[error("CoT document over its bound: {0}")]
    TooLarge(&'static str),
    /// A construct CoT has no use for and an attacker does (DTDs, entities, PIs).
    #[error("CoT document uses {0}, which is refused")]
    Refused(&'static str),
    /// Not well-formed XML, or not UTF-8.
    #[error("CoT document is not well-formed: {0}")]
    Malformed(String),
}

fn checked(s: String) -> Result<String, XmlError> {
    if s.chars().all(is_xml_char) { Ok(s) } else { Err(XmlError::Malformed("a character XML cannot carry".into())) }
}

fn bad<E: std::fmt::Display>(e: E) -> XmlError {
    XmlError::Malformed(e.to_string())
}

/// Parses `bytes` as one XML document with one root element.
pub fn parse(bytes: &[u8]) -> Result<Element, XmlError> {
    if bytes.len() > MAX_DOCUMENT {
        return Err(XmlError::TooLarge("bytes"));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| XmlError::Malformed("not UTF-8".into()))?;
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut elements = 0usize;
    let open = |e: &quick_xml::events::BytesStart<'_>, elements: &mut usize| -> Result<Element, XmlError> {
        *elements += 1;
        if *elements > MAX_ELEMENTS {
            return Err(XmlError::TooLarge("elements"));
        }
        let name = e.name().into_inner().to_string();
        let mut el = Element::new(name, "");
        for (i, attr) in e.attributes().enumerate() {
            if i >= MAX_ATTRS {
                return Err(XmlError::TooLarge("attributes"));
            }
            let attr = attr.map_err(bad)?;
            let key = attr.key.into_inner().to_string();
            let value = attr.normalized_value(XmlVersion::Implicit1_0).map_err(bad)?;
            el.attrs.push((key, checked(value.into_owned())?));
        }
        Ok(el)
    };
    loop {
        let event = reader.read_event().map_err(bad)?;
        let done = |el: Element, stack: &mut Vec<Element>, root: &mut Option<Element>| match stack.last_mut() {
            Some(parent) => parent.children.push(Node::Element(el)),
            None => *root = Some(el),
        };
        match event {
            Event::Start(e) => {
                if root.is_some() {
                    return Err(XmlError::Malformed("content after the root element".into()));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooLarge("depth"));
                }
                let el = open(&e, &mut elements)?;
                stack.push(el);
            }
            Event::Empty(e) => {
                if root.is_some() {
                    return Err(XmlError::Malformed("content after the root element".into()));
                }
                let el = open(&e, &mut elements)?;
                done(el, &mut stack, &mut root);
            }
            Event::End(_) => {
                let el = stack.pop().ok_or_else(|| XmlError::Malformed("an end tag without a start".into()))?;
                done(el, &mut stack, &mut root);
            }
            Event::Text(t) => {
                let s = checked(t.xml10_content().into_owned())?;
                push_text(&mut stack, s)?;
            }
            Event::CData(c) => {
                let s = checked(c.xml10_content().into_owned())?;
                push_text(&mut stack, s)?;
            }
            Event::GeneralRef(r) => {
                let s = if r.is_char_ref() {
                    match r.resolve_char_ref().map_err(bad)? {
                        Some(c) => c.to_string(),
                        None => return Err(XmlError::Malformed("an empty character reference".into())),
                    }
                } else {
                    match predefined_entity(&r.into_inner()) {
                        Some(c) => c.to_string(),
                        None => return Err(XmlError::Refused("an entity reference")),
                    }
                };
                push_text(&mut stack, checked(s)?)?;
            }
            Event::DocType(_) => return Err(XmlError::Refused("a document type declaration (DTD)")),
            Event::PI(_) => return Err(XmlError::Refused("a processing instruction")),
            Event::Comment(_) | Event::Decl(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Malformed("the document ends inside an element".into()));
    }
    root.ok_or_else(|| XmlError::Malformed("no root element".into()))
}

/// Text goes to the open element (whitespace outside the root is ignored).
fn push_text(stack: &mut [Element], s: String) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(el) => {
            el.children.push(Node::Text(s));
            Ok(())
        }
        None if s.chars().all(|c| matches!(c, ' ' | '\t' | '\n' | '\r')) => Ok(()),
        None => Err(XmlError::Malformed("text outside the root element".into())),
    }
}
