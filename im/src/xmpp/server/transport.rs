//! The byte streams an XMPP stream runs on: TCP or TLS over TCP, boxed as
//! one type, and the read half with bytes replayed before it that lets a
//! fresh parser take over where the last one stopped.
//!
//! Owns no protocol state: it must not parse XML nor decide anything about
//! the stream (the negotiation does).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf};

/// Any transport a stream runs on: TCP, or TLS over TCP.
pub(super) trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}
pub(super) type Io = Box<dyn Transport>;

/// The read half with bytes to hand out before it: what an earlier
/// parser had buffered, and, when a stream goes on after a SASL step, a
/// synthetic header so that the fresh parser starts inside the stream.
pub(super) struct Replay {
    prefix: Vec<u8>,
    pos: usize,
    inner: ReadHalf<Io>,
}

impl Replay {
    pub(super) fn new(inner: ReadHalf<Io>, prefix: Vec<u8>) -> Replay {
        Replay { prefix, pos: 0, inner }
    }

    /// Takes the transport back after a parser stopped; `buffered` is what
    /// the parser had read past its last element.
    pub(super) fn take(self, mut buffered: Vec<u8>) -> (ReadHalf<Io>, Vec<u8>) {
        buffered.extend_from_slice(&self.prefix[self.pos..]);
        (self.inner, buffered)
    }
}

impl AsyncRead for Replay {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.prefix.len() {
            let n = (this.prefix.len() - this.pos).min(buf.remaining());
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}
