//! The stream parser under fuzzing: a realistic server stream, a soup of
//! XML fragments, a transport that hands bytes out in any chunking, and
//! the checks on what `StreamReader` makes of them (limits kept, trees no
//! bigger than their input, every stanza parsing to itself once written
//! out, the stanza views and a room fed with it).
//!
//! Owns those inputs and checks. It must not hold properties (`fuzz.rs`
//! does).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use lsim_im::xmpp::jid::Jid;
use lsim_im::xmpp::room::Room;
use lsim_im::xmpp::stream::NS_CLIENT;
use lsim_im::xmpp::{Element, Iq, Limits, Message, Node, Presence, StreamEvent, StreamReader};
use proptest::prelude::*;
use tokio::io::{AsyncRead, ReadBuf};

use super::decoders::{check_jid, check_payload_element};

pub const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' id='4a5f' from='example.com' to='alice@example.com' \
    version='1.0' xml:lang='en'>";

/// A realistic server stream: features, a bind result, MUC presence with
/// an lsim status, an lsim group payload, sealed chat, entities, CDATA.
pub fn valid_stream() -> String {
    let mut s = String::from(HEADER);
    s.push_str(
        "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><required/></bind>\
         <mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-256</mechanism></mechanisms>\
         </stream:features>\n\
         <iq type='result' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
         <jid>alice@example.com/lsim</jid></bind></iq> \
         <presence from='g@conference.example.com/bob' to='alice@example.com/lsim'>\
         <x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='owner' role='moderator' \
         jid='bob@example.com/lsim'/><status code='110'/></x>\
         <status xmlns='urn:lsim:0' node='7' epoch='3' loss='12' repairs='crew-a'/></presence>\
         <message type='groupchat' from='g@conference.example.com/bob' id='m1'>\
         <group xmlns='urn:lsim:0' addr='239.1.2.3:5000' keyserver='10.0.0.1:4433' \
         fingerprint='00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff' suite='aes-256-gcm' epoch='7'/>\
         </message>\
         <message type='groupchat' from='g@conference.example.com/carol' id='m2'>\
         <chat xmlns='urn:lsim:0' id='c1' epoch='7'>AAAAB3Nl\nYWxlZA==</chat></message>\
         <message type='groupchat' from='g@conference.example.com/bob' id='m3'>\
         <file xmlns='urn:lsim:0' id='f1' name='map.png' size='12345' node='7' object='2'/></message>\
         <message type='groupchat' from='g@conference.example.com/bob' id='m4'><body>h\u{e9}llo &lt;world&gt; &#x1F600;</body>\
         <![CDATA[ <raw> ]]></message>\n</stream:stream>",
    );
    s
}

/// Bits of XML a token soup is made of.
pub const FRAGMENTS: &[&str] = &[
    "<a>",
    "</a>",
    "<b x='1'>",
    "</b>",
    "<c/>",
    "<message>",
    "</message>",
    "<presence type='unavailable'/>",
    "<x xmlns='urn:lsim:0'>",
    "</x>",
    "<p:y xmlns:p='urn:p'>",
    "</p:y>",
    "<q:z>",
    " a='b'",
    " xmlns=''",
    " xml:lang='en'",
    " p:attr='v'",
    "&amp;",
    "&lt;",
    "&#x41;",
    "&#0;",
    "&#x110000;",
    "&bogus;",
    "&",
    "<![CDATA[x]]>",
    "<![CDATA[",
    "]]>",
    "<!-- c -->",
    "<?pi x?>",
    "<?xml version='1.0'?>",
    "<!DOCTYPE d [<!ENTITY e 'x'>]>",
    "text",
    " ",
    "\r\n",
    "\u{1}",
    "\u{fffe}",
    "é",
    "</stream:stream>",
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
    "<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
    "<",
    ">",
    "/>",
    "'",
    "\"",
    "=",
];

pub fn soup() -> impl Strategy<Value = Vec<u8>> {
    (any::<bool>(), prop::collection::vec(prop::sample::select(FRAGMENTS.to_vec()), 0..60)).prop_map(
        |(header, parts)| {
            let mut s = if header { HEADER.to_string() } else { String::new() };
            for p in parts {
                s.push_str(p);
            }
            s.into_bytes()
        },
    )
}

/// Hands out `data` in chunks of the given sizes (cycling).
struct Chunked {
    data: Vec<u8>,
    pos: usize,
    chunks: Vec<usize>,
    next: usize,
}

impl AsyncRead for Chunked {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let size = this.chunks.get(this.next % this.chunks.len().max(1)).copied().unwrap_or(4096).max(1);
        this.next += 1;
        let n = size.min(this.data.len() - this.pos).min(buf.remaining());
        buf.put_slice(&this.data[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().expect("runtime"))
}

const SMALL: Limits =
    Limits { max_stanza_bytes: 2048, max_depth: 6, max_attrs: 6, max_elements: 48, max_header_bytes: 512 };

/// What an element tree costs beyond its structure: names, attributes and
/// text (namespaces are counted apart, see `a_stanza_cannot_multiply_its_namespace_in_memory`).
pub fn weigh(
    e: &Element,
    depth: usize,
    limits: &Limits,
    elements: &mut usize,
    bytes: &mut usize,
    ns_bytes: &mut usize,
) {
    *elements += 1;
    assert!(depth <= limits.max_depth, "<{}> at depth {depth}", e.name);
    assert!(e.attrs.len() <= limits.max_attrs, "<{}> with {} attributes", e.name, e.attrs.len());
    *bytes += e.name.len() + e.attrs.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    *ns_bytes += e.ns.len();
    for c in &e.children {
        match c {
            Node::Element(c) => weigh(c, depth + 1, limits, elements, bytes, ns_bytes),
            Node::Text(t) => *bytes += t.len(),
        }
    }
}

/// Everything built on a parsed stanza: the stanza views, payloads, a room.
fn use_stanza(e: &Element, room: &mut Room) {
    if let Ok(m) = Message::try_from(e) {
        let _ = room.handle_message(&m);
        if let Some(p) = &m.payload {
            check_payload_element(p);
        }
        let back = Element::from(&m);
        let _ = back.to_xml();
    }
    if let Ok(p) = Presence::try_from(e) {
        let _ = room.handle_presence(&p);
    }
    if let Ok(iq) = Iq::try_from(e) {
        let _ = format!("{iq:?}");
    }
    for c in e.elements() {
        check_payload_element(c);
    }
    for (_, v) in &e.attrs {
        check_jid(v);
    }
}

/// Parses `data` fed in `chunks` with `limits`; checks every stanza, and
/// that each one written back out parses to itself.
pub fn parse_stream(data: &[u8], chunks: &[usize], limits: Limits) -> Vec<Element> {
    let mut stanzas = Vec::new();
    runtime().block_on(async {
        let read = Chunked { data: data.to_vec(), pos: 0, chunks: chunks.to_vec(), next: 0 };
        let mut reader = StreamReader::new(read, limits);
        let mut room = Room::new(Jid::parse("g@conference.example.com").unwrap(), "alice");
        for _ in 0..10_000 {
            match reader.next_event().await {
                Ok(StreamEvent::Header(h)) => {
                    assert!(stanzas.is_empty());
                    let len = [&h.to, &h.from, &h.id, &h.version, &h.lang, &h.default_ns]
                        .iter()
                        .map(|s| s.as_ref().map_or(0, String::len))
                        .sum::<usize>();
                    assert!(len <= limits.max_header_bytes);
                }
                Ok(StreamEvent::Stanza(e)) => {
                    let (mut elements, mut bytes, mut ns) = (0, 0, 0);
                    weigh(&e, 1, &limits, &mut elements, &mut bytes, &mut ns);
                    assert!(elements <= limits.max_elements, "{elements} elements");
                    assert!(bytes <= limits.max_stanza_bytes, "{bytes} bytes of names, attributes and text");
                    use_stanza(&e, &mut room);
                    stanzas.push(e);
                }
                Ok(StreamEvent::End) => {
                    // After the end, the reader keeps saying so.
                    assert!(matches!(reader.next_event().await, Ok(StreamEvent::End)));
                    break;
                }
                Err(err) => {
                    let _ = (err.condition(), err.is_transport(), err.to_string());
                    // After an error, the reader keeps returning it.
                    assert!(reader.next_event().await.is_err());
                    break;
                }
            }
        }
    });
    stanzas
}

/// Whether no namespace in the tree has a character XML cannot carry or one
/// that `Element::write_to` escapes: the parser keeps namespaces raw, so
/// those do not survive a round trip.
fn namespaces_are_xml(e: &Element) -> bool {
    // Names quick-xml lets through that `write_to` would not reproduce.
    let name_ok = !e.name.is_empty() && !e.name.chars().any(|c| !is_xml_char(c) || "<>&/='\"!? \t\n\r".contains(c));
    name_ok
        && e.ns.chars().all(|c| is_xml_char(c) && !"&<>'\"\t\n\r".contains(c))
        && e.elements().all(namespaces_are_xml)
}

fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// A stanza the parser produced, written out and parsed again, is the same.
pub fn check_reparse(stanzas: &[Element]) {
    for e in stanzas {
        // Whitespace and quotes in a namespace are normalised or escaped on the
        // way out: such trees are not compared.
        if !namespaces_are_xml(e) {
            continue;
        }
        let mut s = String::from(HEADER);
        e.write_to(&mut s, NS_CLIENT);
        s.push_str("</stream:stream>");
        let again = parse_stream(s.as_bytes(), &[4096], Limits::default());
        assert_eq!(again.as_slice(), std::slice::from_ref(e), "written as {s}");
    }
}

pub fn chunking() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        Just(vec![4096usize]),
        Just(vec![1usize]),
        prop::collection::vec(1usize..64, 1..8),
        prop::collection::vec(1usize..2000, 1..4),
    ]
}

pub fn limits() -> impl Strategy<Value = Limits> {
    prop_oneof![Just(Limits::default()), Just(SMALL)]
}
