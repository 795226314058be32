//! One logged-in, bound XMPP connection ([`Session`]: send, receive,
//! close politely), what resuming it after a dropped connection takes
//! ([`Resumption`], XEP-0198), and writing to the stream.
//!
//! Owns the connection's two halves once the sequence is done. It must
//! not set the connection up (`connect` does) or decide what to send: the
//! client task or the caller does.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

use super::ClientError;
use crate::xmpp::element::Element;
use crate::xmpp::jid::Jid;
use crate::xmpp::sasl::Mechanism;
use crate::xmpp::stream::{NS_CLIENT, NS_STREAMS, StreamEvent, StreamEvents};

type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

pub(super) async fn write_raw<W: AsyncWrite + Unpin + ?Sized>(w: &mut W, text: &str) -> io::Result<()> {
    w.write_all(text.as_bytes()).await?;
    w.flush().await
}

pub(super) async fn write_element<W: AsyncWrite + Unpin + ?Sized>(w: &mut W, e: &Element) -> io::Result<()> {
    write_raw(w, &e.to_xml_in(NS_CLIENT)).await
}
/// One logged-in, bound XMPP connection.
pub struct Session {
    /// Our full JID as bound.
    pub jid: Jid,
    /// Whether the stream runs over TLS.
    pub encrypted: bool,
    /// The SASL mechanism used.
    pub mechanism: Mechanism,
    pub(super) writer: BoxWrite,
    pub(super) events: StreamEvents,
    /// Whether the server offers stream management (XEP-0198).
    pub sm_offered: bool,
    /// When this connection resumed an earlier session: how many of our
    /// stanzas the server had handled.
    pub resumed: Option<u32>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("jid", &self.jid.to_string()).field("encrypted", &self.encrypted).finish()
    }
}

impl Session {
    /// Sends one top-level element.
    pub async fn send(&mut self, e: &Element) -> io::Result<()> {
        write_element(&mut self.writer, e).await
    }

    /// The next element from the server; `None` when the stream ended
    /// cleanly, an error when it failed or the server sent a stream error.
    pub async fn recv(&mut self) -> Option<Result<Element, ClientError>> {
        match self.events.recv().await? {
            Ok(StreamEvent::Stanza(e)) if e.is("error", NS_STREAMS) => Some(Err(ClientError::StreamErrorReceived(
                e.elements().next().map(|c| c.name.clone()).unwrap_or_default(),
            ))),
            Ok(StreamEvent::Stanza(e)) => Some(Ok(e)),
            Ok(StreamEvent::End) => None,
            Ok(StreamEvent::Header(_)) => Some(Err(ClientError::Protocol("unexpected stream header".into()))),
            Err(e) => Some(Err(ClientError::Stream(e))),
        }
    }

    /// Closes the stream politely: our closing tag, then (at most a second)
    /// the server's, before the connection goes (RFC 6120 §4.4). A server
    /// with stream management takes a connection dropped before that for a
    /// lost link and keeps the session waiting for a resumption.
    pub async fn close(mut self) {
        let _ = write_raw(&mut self.writer, "</stream:stream>").await;
        let _ = timeout(Duration::from_secs(1), async {
            while let Some(Ok(StreamEvent::Header(_) | StreamEvent::Stanza(_))) = self.events.recv().await {}
        })
        .await;
        let _ = self.writer.shutdown().await;
    }
}

/// What a client needs to resume its session after a dropped connection
/// (XEP-0198).
#[derive(Debug, Clone)]
pub struct Resumption {
    /// The id the server gave when stream management was enabled.
    pub id: String,
    /// Stanzas we handled from the server.
    pub handled: u32,
    /// Our full JID in that session.
    pub jid: Jid,
}
