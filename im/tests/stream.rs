//! The XMPP stream parser against realistic and hostile input: chunking
//! must not change what is parsed, and every hostile input must end the
//! stream with the right RFC 6120 condition, bounded in memory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use lsim_im::xmpp::stanza::{NS_LSIM, NS_MUC_USER};
use lsim_im::xmpp::stream::NS_CLIENT;
use lsim_im::xmpp::{
    Element, Limits, Message, MessageType, Presence, StreamError, StreamEvent, StreamReader, is_restart_point,
    spawn_reader, spawn_reader_until,
};
use proptest::prelude::*;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' id='4a5f' from='example.com' to='alice@example.com' \
    version='1.0' xml:lang='en'>";

/// What Prosody sends a client after SASL success, through a MUC join and a
/// few room messages (abridged, with its caps and occupant-id noise).
fn server_stream() -> String {
    let mut s = String::from(HEADER);
    s.push_str(
        "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><required/></bind>\
         <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='http://prosody.im' ver='abc='/></stream:features>\n\
         <iq type='result' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
         <jid>alice@example.com/lsim</jid></bind></iq> \
         <presence from='g@conference.example.com/bob' to='alice@example.com/lsim'>\
         <occupant-id xmlns='urn:xmpp:occupant-id:0' id='Zm9v'/>\
         <x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' role='participant'/></x></presence>\
         <presence from='g@conference.example.com/alice' to='alice@example.com/lsim'>\
         <x xmlns='http://jabber.org/protocol/muc#user'><status code='100'/>\
         <item affiliation='owner' role='moderator' jid='alice@example.com/lsim'/><status code='110'/></x></presence>\
         <message type='groupchat' from='g@conference.example.com' id='s0'><subject>lsim &amp; co</subject></message>\r\n \
         <message type='groupchat' from='g@conference.example.com/bob' id='m1'>\
         <x xmlns='urn:lsim:0' kind='params' epoch='7' group='239.1.2.3:5000'/></message>\
         <message type='groupchat' from='g@conference.example.com/bob' id='m2'><body>h\u{e9}llo &lt;world&gt; &#x1F600;</body>\
         <![CDATA[ <raw> ]]></message>\n</stream:stream>",
    );
    s
}

/// Hands out its bytes in chunks of the given sizes (cycling), and says
/// "not yet" before every other chunk, like a slow socket.
struct Chunked {
    data: Vec<u8>,
    pos: usize,
    chunks: Vec<usize>,
    next: usize,
    stall: bool,
}

impl AsyncRead for Chunked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.stall = !this.stall;
        if this.stall {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let size = this.chunks[this.next % this.chunks.len()].max(1);
        this.next += 1;
        let n = size.min(this.data.len() - this.pos).min(buf.remaining());
        buf.put_slice(&this.data[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// An endless-looking stanza generated on the fly: the header, then
/// `<message><body>` and `total` bytes of `a`. Counts what was handed out.
struct Huge {
    prefix: Vec<u8>,
    total: usize,
    served: Arc<AtomicUsize>,
}

impl AsyncRead for Huge {
    fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let served = self.served.load(Ordering::Relaxed);
        let mut n = 0;
        while buf.remaining() > 0 && served + n < self.prefix.len() + self.total {
            let i = served + n;
            buf.put_slice(&[if i < self.prefix.len() { self.prefix[i] } else { b'a' }]);
            n += 1;
        }
        self.served.fetch_add(n, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

async fn collect<R: AsyncRead + Unpin>(read: R) -> Vec<Result<StreamEvent, StreamError>> {
    let mut reader = StreamReader::new(read, Limits::default());
    let mut out = Vec::new();
    loop {
        let event = reader.next_event().await;
        let last = !matches!(event, Ok(StreamEvent::Header(_) | StreamEvent::Stanza(_)));
        out.push(event);
        if last {
            return out;
        }
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// The condition the stream ended with; panics if it ended cleanly.
async fn condition_for(input: &[u8]) -> &'static str {
    match collect(input).await.pop().unwrap() {
        Err(e) => e.condition(),
        Ok(ev) => panic!("stream ended with {ev:?}, expected an error"),
    }
}

fn stanzas(events: &[Result<StreamEvent, StreamError>]) -> Vec<Element> {
    events
        .iter()
        .filter_map(|e| match e {
            Ok(StreamEvent::Stanza(s)) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn realistic_server_stream() {
    let events = collect(server_stream().as_bytes()).await;
    assert!(
        matches!(&events[0], Ok(StreamEvent::Header(h)) if h.id.as_deref() == Some("4a5f") && h.lang.as_deref() == Some("en"))
    );
    assert!(matches!(events.last(), Some(Ok(StreamEvent::End))));
    let st = stanzas(&events);
    assert_eq!(st.len(), 7);
    assert_eq!(st[0].name, "features");
    assert_eq!(
        st[1]
            .get_child("bind", "urn:ietf:params:xml:ns:xmpp-bind")
            .unwrap()
            .get_child("jid", "urn:ietf:params:xml:ns:xmpp-bind")
            .unwrap()
            .text_content(),
        "alice@example.com/lsim"
    );
    let bob = Presence::try_from(&st[2]).unwrap();
    assert!(!bob.muc_user.unwrap().is_self());
    let me = Presence::try_from(&st[3]).unwrap();
    assert!(me.muc_user.as_ref().unwrap().is_self());
    assert_eq!(me.muc_user.unwrap().status_codes, vec![100, 110]);
    assert_eq!(Message::try_from(&st[4]).unwrap().subject.as_deref(), Some("lsim & co"));
    let m2 = Message::try_from(&st[6]).unwrap();
    assert_eq!(m2.body.as_deref(), Some("h\u{e9}llo <world> \u{1F600}"));
    assert_eq!(st[6].text_content(), " <raw> ");
}

#[tokio::test]
async fn payload_only_groupchat_message_from_the_wire() {
    let events = collect(server_stream().as_bytes()).await;
    let m = Message::try_from(&stanzas(&events)[5]).unwrap();
    assert_eq!(m.kind, MessageType::Groupchat);
    assert_eq!(m.body, None);
    let payload = m.payload.unwrap();
    assert!(payload.is("x", NS_LSIM));
    assert_eq!(payload.get_attr("epoch"), Some("7"));
    assert_eq!(payload.get_attr("group"), Some("239.1.2.3:5000"));
}

#[tokio::test]
async fn spawn_reader_feeds_the_channel() {
    let (client, mut server) = tokio::io::duplex(64);
    let mut rx = spawn_reader(client, Limits::default());
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        for chunk in server_stream().as_bytes().chunks(7) {
            server.write_all(chunk).await.unwrap();
        }
        server
    });
    let mut got = Vec::new();
    while let Some(ev) = rx.recv().await {
        got.push(ev);
    }
    drop(writer.await.unwrap());
    assert_eq!(stanzas(&got), stanzas(&collect(server_stream().as_bytes()).await));
    assert!(matches!(got.last(), Some(Ok(StreamEvent::End))));
}

#[tokio::test]
async fn restart_after_sasl_success_hands_the_transport_back() {
    let first = format!("{HEADER}<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
    let second = format!("{HEADER}<stream:features/></stream:stream>");
    let wire = format!("{first}{second}").into_bytes();
    let (mut rx, task) = spawn_reader_until(io::Cursor::new(wire), Limits::default(), is_restart_point);
    assert!(matches!(rx.recv().await, Some(Ok(StreamEvent::Header(_)))));
    assert!(matches!(rx.recv().await, Some(Ok(StreamEvent::Stanza(e))) if e.name == "success"));
    assert!(rx.recv().await.is_none());
    let back = task.await.unwrap().expect("stopped at the restart point");
    let rest = io::Cursor::new(back.buffered).chain(back.transport);
    let mut rx = spawn_reader(rest, Limits::default());
    assert!(matches!(rx.recv().await, Some(Ok(StreamEvent::Header(_)))));
    assert!(matches!(rx.recv().await, Some(Ok(StreamEvent::Stanza(e))) if e.name == "features"));
    assert!(matches!(rx.recv().await, Some(Ok(StreamEvent::End))));
}

#[tokio::test]
async fn dropping_the_receiver_stops_the_task() {
    // The peer never sends anything: the task is blocked in a read.
    let (client, _server) = tokio::io::duplex(64);
    let (rx, task) = spawn_reader_until(client, Limits::default(), is_restart_point);
    drop(rx);
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
    assert!(matches!(ended, Ok(Ok(None))));
}

#[tokio::test]
async fn element_round_trips_through_bytes() {
    let e = Element::new("message", NS_CLIENT)
        .attr("to", "g@conference.example.com")
        .attr("type", "groupchat")
        .attr("weird", "'\"<>&\t\n\r x")
        .child(Element::new("body", NS_CLIENT).text("a < b && c > d \r\n \u{1F600} ]]>"))
        .child(Element::new("x", NS_LSIM).child(Element::new("file", NS_LSIM).attr("name", "r\u{e9}sum\u{e9}.pdf")))
        .child(Element::new("bare", ""))
        .child(Element::new("x", NS_MUC_USER).attr("xml:lang", "de"));
    let wire = format!("{HEADER}{}</stream:stream>", e.to_xml_in(NS_CLIENT));
    assert_eq!(stanzas(&collect(wire.as_bytes()).await), vec![e]);
}

#[tokio::test]
async fn not_well_formed() {
    for bad in [
        "<message><body></message>",
        "<message a='1' a='2'/>",
        "<message a=1/>",
        "<a>x & y</a>",
        "<p:a/>",
        "<a>\u{1}</a>",
        "<a>&#0;</a>",
        "<a b='\u{1f}'/>",
    ] {
        let wire = format!("{HEADER}{bad}");
        assert_eq!(condition_for(wire.as_bytes()).await, "not-well-formed", "{bad}");
    }
    let mut invalid_utf8 = HEADER.as_bytes().to_vec();
    invalid_utf8.extend_from_slice(b"<message><body>\xff\xfe</body></message>");
    assert_eq!(condition_for(&invalid_utf8).await, "not-well-formed");
}

#[tokio::test]
async fn billion_laughs_is_restricted() {
    let lolz = "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol \"lol\">\
        <!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\
        <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">\
        <!ENTITY lol9 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;\">]>\
        <stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><message>&lol9;</message>";
    assert_eq!(condition_for(lolz.as_bytes()).await, "restricted-xml");
    // A DTD inside the stream is refused too.
    let inner = format!("{HEADER}<!DOCTYPE x [<!ENTITY a 'b'>]><message>&a;</message>");
    assert_eq!(condition_for(inner.as_bytes()).await, "restricted-xml");
}

#[tokio::test]
async fn restricted_xml_constructs() {
    for bad in [
        "<!-- hi -->",
        "<message><!-- hi --></message>",
        "<?php echo 1; ?>",
        "<message><?pi x?></message>",
        "<message>&lol;</message>",
        "<message to='&lol;'/>",
        "<?xml version='1.0'?>",
    ] {
        let wire = format!("{HEADER}{bad}");
        assert_eq!(condition_for(wire.as_bytes()).await, "restricted-xml", "{bad}");
    }
    assert_eq!(condition_for(format!("<!-- c -->{HEADER}").as_bytes()).await, "restricted-xml");
}

#[tokio::test]
async fn header_problems() {
    assert_eq!(condition_for(format!("HELLO{HEADER}").as_bytes()).await, "bad-format");
    assert_eq!(condition_for(b"GET / HTTP/1.1\r\n\r\n").await, "bad-format");
    let wrong_ns = "<stream:stream xmlns='jabber:client' xmlns:stream='http://wrong.example/streams'>";
    assert_eq!(condition_for(wrong_ns.as_bytes()).await, "invalid-namespace");
    assert_eq!(condition_for(b"<stream xmlns='jabber:client'>").await, "invalid-namespace");
    let wrong_root = "<stream:flow xmlns:stream='http://etherx.jabber.org/streams'>";
    assert_eq!(condition_for(wrong_root.as_bytes()).await, "bad-format");
    let long_header =
        format!("<stream:stream xmlns:stream='http://etherx.jabber.org/streams' to='{}'>", "a".repeat(20_000));
    assert_eq!(condition_for(long_header.as_bytes()).await, "policy-violation");
    assert_eq!(condition_for(format!("{HEADER}stray text").as_bytes()).await, "bad-format");
}

#[tokio::test]
async fn truncated_stream_is_a_transport_error() {
    for tail in ["", "<message><body>hi", "<message", "<message to='a", "<message><![CDATA[x"] {
        let events = collect(format!("{HEADER}{tail}").as_bytes()).await;
        let err = events.last().unwrap().as_ref().unwrap_err();
        assert!(err.is_transport(), "{tail}: {err:?}");
    }
    assert!(collect(b"".as_slice()).await[0].as_ref().unwrap_err().is_transport());
    assert_eq!(condition_for(format!("{HEADER}<!-- never closed").as_bytes()).await, "restricted-xml");
}

#[tokio::test]
async fn ten_mib_stanza_is_refused_without_buffering_it() {
    let served = Arc::new(AtomicUsize::new(0));
    let prefix = format!("{HEADER}<message><body>").into_bytes();
    let huge = Huge { prefix, total: 10 * 1024 * 1024, served: served.clone() };
    let limits = Limits::default();
    let events = collect(huge).await;
    let err = events.last().unwrap().as_ref().unwrap_err();
    assert_eq!(err.condition(), "policy-violation", "{err:?}");
    assert!(matches!(err, StreamError::StanzaTooLarge { .. }));
    let read = served.load(Ordering::Relaxed);
    assert!(read <= HEADER.len() + limits.max_stanza_bytes + 16 * 1024, "read {read} bytes");
}

#[tokio::test]
async fn stanza_just_under_the_limit_is_fine() {
    let limits = Limits { max_stanza_bytes: 1000, ..Limits::default() };
    let body = "b".repeat(1000 - "<message><body></body></message>".len());
    let ok = format!("{HEADER}<message><body>{body}</body></message><message><body>{body}</body></message>");
    let mut reader = StreamReader::new(ok.as_bytes(), limits);
    assert!(matches!(reader.next_event().await, Ok(StreamEvent::Header(_))));
    assert!(matches!(reader.next_event().await, Ok(StreamEvent::Stanza(_))));
    assert!(matches!(reader.next_event().await, Ok(StreamEvent::Stanza(_))));
    let over = format!("{HEADER}<message><body>{body}b</body></message>");
    let mut reader = StreamReader::new(over.as_bytes(), limits);
    assert!(matches!(reader.next_event().await, Ok(StreamEvent::Header(_))));
    assert!(matches!(reader.next_event().await, Err(StreamError::StanzaTooLarge { limit: 1000 })));
}

fn text_strategy() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[ -~\u{e9}\u{1F600}\t\n\r]{1,12}").unwrap()
}

fn name_strategy() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-z][a-z0-9-]{0,6}").unwrap()
}

fn ns_strategy() -> impl Strategy<Value = String> {
    prop_oneof![Just(NS_CLIENT.to_string()), Just(NS_LSIM.to_string()), Just(String::new())]
}

fn attrs_strategy() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::btree_map(proptest::string::string_regex("[a-z]{1,4}").unwrap(), text_strategy(), 0..4)
        .prop_map(|m| m.into_iter().collect())
}

fn element_strategy() -> impl Strategy<Value = Element> {
    let leaf = (name_strategy(), ns_strategy(), attrs_strategy(), proptest::option::of(text_strategy())).prop_map(
        |(n, ns, attrs, t)| {
            let mut e = Element::new(n, ns);
            e.attrs = attrs;
            if let Some(t) = t {
                e = e.text(t);
            }
            e
        },
    );
    leaf.prop_recursive(4, 24, 4, |inner| {
        (name_strategy(), ns_strategy(), attrs_strategy(), proptest::collection::vec(inner, 0..4)).prop_map(
            |(n, ns, attrs, kids)| {
                let mut e = Element::new(n, ns);
                e.attrs = attrs;
                for k in kids {
                    e = e.child(k);
                }
                e
            },
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn chunk_boundaries_do_not_matter(chunks in proptest::collection::vec(1usize..64, 1..20)) {
        let whole = block_on(collect(server_stream().as_bytes()));
        let chunked = block_on(collect(Chunked { data: server_stream().into_bytes(), pos: 0, chunks, next: 0, stall: false }));
        prop_assert_eq!(stanzas(&chunked), stanzas(&whole));
        prop_assert!(matches!(chunked.last(), Some(Ok(StreamEvent::End))));
    }

    #[test]
    fn random_elements_round_trip(e in element_strategy(), chunk in 1usize..40) {
        let wire = format!("{HEADER}{}</stream:stream>", e.to_xml_in(NS_CLIENT));
        let events = block_on(collect(Chunked { data: wire.into_bytes(), pos: 0, chunks: vec![chunk], next: 0, stall: false }));
        prop_assert_eq!(stanzas(&events), vec![e]);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), after_header in any::<bool>()) {
        let mut input = if after_header { HEADER.as_bytes().to_vec() } else { Vec::new() };
        input.extend_from_slice(&bytes);
        let events = block_on(collect(input.as_slice()));
        prop_assert!(!events.is_empty());
    }

    #[test]
    fn mutated_stream_never_panics(pos in 0usize..2000, byte in any::<u8>()) {
        let mut input = server_stream().into_bytes();
        let at = pos % input.len();
        input[at] = byte;
        let events = block_on(collect(input.as_slice()));
        prop_assert!(!events.is_empty());
    }
}
