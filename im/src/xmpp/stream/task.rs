//! The reader task: a [`StreamReader`] run in its own task, feeding a
//! channel ([`StreamEvents`]) the consumer may wait on in `select!`, and
//! stopping at a restart point to hand the transport back ([`Handback`]).
//!
//! Owns the task and the channel. It must not parse (the reader does) nor
//! decide what a restart point is ([`super::is_restart_point`] does).

use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

#[cfg(doc)]
use super::is_restart_point;
use super::{Limits, StreamError, StreamEvent, StreamReader};
use crate::xmpp::element::Element;

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
