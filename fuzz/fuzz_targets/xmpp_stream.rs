//! The incremental XMPP stream parser, fed in chunks (the first byte picks
//! the chunk size), with small limits; then the stanza views and payloads
//! on what it parsed. Nothing may panic and every stanza keeps to the limits.
#![no_main]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use libfuzzer_sys::fuzz_target;
use lsim_im::xmpp::jid::Jid;
use lsim_im::xmpp::payload::Payload;
use lsim_im::xmpp::{Element, Iq, Limits, Message, Node, Presence, StreamEvent, StreamReader};
use tokio::io::{AsyncRead, ReadBuf};

struct Chunked {
    data: Vec<u8>,
    pos: usize,
    chunk: usize,
}

impl AsyncRead for Chunked {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let n = this.chunk.min(this.data.len() - this.pos).min(buf.remaining());
        buf.put_slice(&this.data[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

const LIMITS: Limits =
    Limits { max_stanza_bytes: 4096, max_depth: 8, max_attrs: 8, max_elements: 64, max_header_bytes: 1024 };

fn count(e: &Element, depth: usize) -> usize {
    assert!(depth <= LIMITS.max_depth);
    assert!(e.attrs.len() <= LIMITS.max_attrs);
    let _ = Payload::parse(e);
    1 + e
        .children
        .iter()
        .map(|c| match c {
            Node::Element(c) => count(c, depth + 1),
            Node::Text(_) => 0,
        })
        .sum::<usize>()
}

fuzz_target!(|data: &[u8]| {
    let Some((&c, rest)) = data.split_first() else { return };
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    rt.block_on(async {
        let read = Chunked { data: rest.to_vec(), pos: 0, chunk: usize::from(c).max(1) };
        let mut reader = StreamReader::new(read, LIMITS);
        for _ in 0..1000 {
            match reader.next_event().await {
                Ok(StreamEvent::Stanza(e)) => {
                    assert!(count(&e, 1) <= LIMITS.max_elements);
                    let _ = Message::try_from(&e);
                    let _ = Presence::try_from(&e);
                    let _ = Iq::try_from(&e);
                    for (_, v) in &e.attrs {
                        let _ = Jid::parse(v);
                    }
                    let _ = e.to_xml();
                }
                Ok(StreamEvent::Header(_)) => {}
                Ok(StreamEvent::End) | Err(_) => break,
            }
        }
    });
});
