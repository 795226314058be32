//! A small owned XML element tree: what a stanza is once it has been parsed,
//! and what we build before sending one.
//!
//! Owns the tree type, its builder helpers, lookups and the serializer
//! (escaping and namespace declarations). It must not touch I/O or parsing:
//! `xmpp::stream` turns bytes into `Element`s, this module only turns
//! `Element`s into bytes.
//!
//! Every element carries its resolved namespace; the writer never uses
//! prefixes and declares a default namespace (`xmlns='…'`) exactly where an
//! element's namespace differs from its parent's.

use std::fmt::Write as _;

/// A node in an element's content: a child element or character data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A child element.
    Element(Element),
    /// Character data, unescaped.
    Text(String),
}

/// An owned XML element with its resolved namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Local name (no prefix), e.g. `message`.
    pub name: String,
    /// Namespace URI; empty means "no namespace".
    pub ns: String,
    /// Attributes as (qualified name, unescaped value), in document order.
    /// Namespace declarations are not attributes here; `xml:lang` keeps its
    /// `xml:` prefix.
    pub attrs: Vec<(String, String)>,
    /// Children in document order.
    pub children: Vec<Node>,
}

impl Element {
    /// A new empty element `name` in namespace `ns`.
    pub fn new(name: impl Into<String>, ns: impl Into<String>) -> Self {
        Element { name: name.into(), ns: ns.into(), attrs: Vec::new(), children: Vec::new() }
    }

    /// Builder: sets attribute `name` (replacing an earlier value).
    #[must_use]
    pub fn attr(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_attr(name, value);
        self
    }

    /// Builder: sets attribute `name` if `value` is `Some`.
    #[must_use]
    pub fn attr_opt(mut self, name: impl Into<String>, value: Option<impl Into<String>>) -> Self {
        if let Some(value) = value {
            self.set_attr(name, value);
        }
        self
    }

    /// Builder: appends a child element.
    #[must_use]
    pub fn child(mut self, child: Element) -> Self {
        self.children.push(Node::Element(child));
        self
    }

    /// Builder: appends character data.
    #[must_use]
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.children.push(Node::Text(text.into()));
        self
    }

    /// Sets attribute `name`, replacing an earlier value.
    pub fn set_attr(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.attrs.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.attrs.push((name, value)),
        }
    }

    /// Removes attribute `name`, if present.
    pub fn remove_attr(&mut self, name: &str) {
        self.attrs.retain(|(n, _)| n != name);
    }

    /// The value of attribute `name` (qualified as written, e.g. `xml:lang`).
    pub fn get_attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Whether this element is `name` in namespace `ns`.
    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && self.ns == ns
    }

    /// Child elements, in order.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The first child element `name` in namespace `ns`.
    pub fn get_child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.elements().find(|e| e.is(name, ns))
    }

    /// All child elements `name` in namespace `ns`.
    pub fn children_named<'a>(&'a self, name: &'a str, ns: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.elements().filter(move |e| e.is(name, ns))
    }

    /// The concatenated character data directly inside this element.
    pub fn text_content(&self) -> String {
        let mut out = String::new();
        for node in &self.children {
            if let Node::Text(t) = node {
                out.push_str(t);
            }
        }
        out
    }

    /// Serializes as a document root: the namespace is always declared
    /// (unless it is empty).
    pub fn to_xml(&self) -> String {
        self.to_xml_in("")
    }

    /// Serializes as a child of an element in namespace `parent_ns`: e.g. a
    /// stanza written inside a stream whose default namespace is
    /// `jabber:client` gets no `xmlns` if it is in `jabber:client` too.
    pub fn to_xml_in(&self, parent_ns: &str) -> String {
        let mut out = String::new();
        self.write_to(&mut out, parent_ns);
        out
    }

    /// Appends the serialization to `out`, as a child of an element in
    /// namespace `parent_ns`.
    pub fn write_to(&self, out: &mut String, parent_ns: &str) {
        out.push('<');
        out.push_str(&self.name);
        if self.ns != parent_ns {
            out.push_str(" xmlns='");
            escape_attr(out, &self.ns);
            out.push('\'');
        }
        for (name, value) in &self.attrs {
            let _ = write!(out, " {name}='");
            escape_attr(out, value);
            out.push('\'');
        }
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for node in &self.children {
            match node {
                Node::Element(e) => e.write_to(out, &self.ns),
                Node::Text(t) => escape_text(out, t),
            }
        }
        out.push_str("</");
        out.push_str(&self.name);
        out.push('>');
    }
}

/// Whether `c` may appear in an XML 1.0 document at all (escaped or not).
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// Escapes character data. `\r` is written as a reference because a parser
/// would otherwise normalize it away; characters XML cannot carry at all
/// become U+FFFD so the output is always well-formed.
pub fn escape_text(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#xD;"),
            c if is_xml_char(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
}

/// Escapes an attribute value for either quote style. Whitespace other than
/// space is written as references because attribute-value normalization
/// would turn it into spaces.
pub fn escape_attr(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c if is_xml_char(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_text_and_attributes() {
        let e = Element::new("body", "jabber:client").attr("a", "x'y\"<&>\n").text("1 < 2 & 3 > 0\r\u{0}");
        assert_eq!(
            e.to_xml(),
            "<body xmlns='jabber:client' a='x&apos;y&quot;&lt;&amp;&gt;&#xA;'>1 &lt; 2 &amp; 3 &gt; 0&#xD;\u{FFFD}</body>"
        );
    }

    #[test]
    fn declares_namespace_only_where_it_changes() {
        let e = Element::new("message", "jabber:client")
            .child(Element::new("body", "jabber:client").text("hi"))
            .child(Element::new("x", "urn:lsim:0").child(Element::new("y", "urn:lsim:0")))
            .child(Element::new("z", ""));
        assert_eq!(
            e.to_xml_in("jabber:client"),
            "<message><body>hi</body><x xmlns='urn:lsim:0'><y/></x><z xmlns=''/></message>"
        );
    }

    #[test]
    fn lookups() {
        let e = Element::new("presence", "jabber:client")
            .attr("to", "a@b")
            .attr("to", "c@d")
            .child(Element::new("x", "muc"))
            .child(Element::new("x", "other"))
            .text("a")
            .text("b");
        assert_eq!(e.get_attr("to"), Some("c@d"));
        assert_eq!(e.attrs.len(), 1);
        assert_eq!(e.get_child("x", "other").map(|x| x.ns.as_str()), Some("other"));
        assert!(e.get_child("y", "muc").is_none());
        assert_eq!(e.children_named("x", "muc").count(), 1);
        assert_eq!(e.text_content(), "ab");
    }
}
