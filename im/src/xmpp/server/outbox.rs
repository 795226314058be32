//! A bound session's way out: its queue of serialized stanzas (bounded
//! in stanzas and in bytes), its XEP-0198 state kept across connections,
//! and the writer task that drains the queue to the client.
//!
//! Owns what is queued for one client and how it is written. It must not
//! route (the hub decides who gets what) nor read from the client.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncWriteExt, WriteHalf};
use tokio::sync::{mpsc, watch};

use super::shared::Ending;
use super::transport::Io;
use crate::xmpp::element::Element;
use crate::xmpp::sm::{self, Unacked};
use crate::xmpp::stream::{NS_CLIENT, stream_error_xml};

/// Most bytes the writer sends in one write (what is queued, joined).
pub const WRITE_BATCH: usize = 16 * 1024;

/// A bound session's way out: its queue (serialized stanzas, and their
/// bytes, which the writer gives back once written) and its kill switch.
pub(super) struct Outbox {
    /// The writer's queue; `None` while a managed session waits to be resumed.
    pub(super) tx: Option<mpsc::Sender<Box<str>>>,
    pub(super) queued: Arc<AtomicUsize>,
    pub(super) max_bytes: usize,
    pub(super) kill: watch::Sender<Option<Ending>>,
    /// Which connection of the session this is (a resumption makes a new one).
    pub(super) generation: u64,
    /// Stream management, once the client enabled it.
    pub(super) sm: Option<Managed>,
}

/// A session's XEP-0198 state, kept across its connections.
pub(super) struct Managed {
    /// The resumption id.
    pub(super) id: String,
    /// The bare JID that may resume it.
    pub(super) owner: String,
    /// Stanzas sent to the client and not yet acknowledged.
    pub(super) unacked: Unacked<Box<str>>,
    /// Stanzas handled from the client.
    pub(super) handled: u32,
}

/// Ask for an acknowledgement after this many unacknowledged stanzas.
const ACK_EVERY: usize = 16;

impl Outbox {
    /// Queues `e`; false if the queue is full, in stanzas or in bytes.
    /// While detached, a managed session only keeps it for resending.
    pub(super) fn push(&mut self, e: &Element) -> bool {
        let text = e.to_xml_in(NS_CLIENT).into_boxed_str();
        if let Some(sm) = self.sm.as_mut().filter(|_| sm::is_stanza(e)) {
            if !sm.unacked.push(text.clone(), text.len()) {
                return false;
            }
            if sm.unacked.len() % ACK_EVERY == 0 && !self.send_raw(sm::request().to_xml_in(NS_CLIENT).into()) {
                return false;
            }
        }
        if self.tx.is_none() {
            return self.sm.is_some();
        }
        self.send_raw(text)
    }

    /// Queues serialized text for the writer, uncounted.
    pub(super) fn send_raw(&self, text: Box<str>) -> bool {
        let Some(tx) = self.tx.as_ref() else { return self.sm.is_some() };
        let len = text.len();
        let before = self.queued.fetch_add(len, Ordering::AcqRel);
        if (before > 0 && before + len > self.max_bytes) || tx.try_send(text).is_err() {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        true
    }
}

/// Writes a bound session's queue until it closes (then `</stream:stream>`)
/// or the session is ended (then its stream error, if any): what is queued
/// goes out in one write of up to [`WRITE_BATCH`] bytes, and its bytes
/// leave `queued` once written.
pub(super) async fn write_session(
    mut w: WriteHalf<Io>,
    mut queue: mpsc::Receiver<Box<str>>,
    queued: Arc<AtomicUsize>,
    mut kill: watch::Receiver<Option<Ending>>,
    write_timeout: Duration,
) {
    let mut kill_open = true;
    let ending = loop {
        tokio::select! {
            biased;
            changed = kill.changed(), if kill_open => {
                match changed {
                    Ok(()) => break *kill.borrow_and_update(),
                    // Closed without an ending: drain the queue.
                    Err(_) => kill_open = false,
                }
            }
            next = queue.recv() => {
                let Some(first) = next else { break None };
                let mut text = String::from(first);
                while text.len() < WRITE_BATCH {
                    match queue.try_recv() {
                        Ok(more) => text.push_str(&more),
                        Err(_) => break,
                    }
                }
                let written = tokio::select! {
                    r = tokio::time::timeout(write_timeout, w.write_all(text.as_bytes())) => matches!(r, Ok(Ok(()))),
                    _ = kill.changed(), if kill_open => false,
                };
                queued.fetch_sub(text.len(), Ordering::AcqRel);
                if !written {
                    break Some(Ending::Quiet);
                }
            }
        }
    };
    let tail = match ending {
        None => "</stream:stream>".to_string(),
        Some(Ending::Error(condition)) => stream_error_xml(condition),
        Some(Ending::Quiet) => String::new(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        w.write_all(tail.as_bytes()).await?;
        w.shutdown().await
    })
    .await;
}
