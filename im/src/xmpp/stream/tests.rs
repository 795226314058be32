//! The stream parser's unit tests: a whole stream, the stream error's
//! rendering, and the depth, attribute and element limits.
//!
//! Owns only tests; it must not touch anything outside them.

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
    let features = Element::new("features", NS_STREAMS).child(Element::new("bind", "urn:ietf:params:xml:ns:xmpp-bind"));
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
