//! A bound session: its writer started, its stanzas read into the hub
//! under the rate limit, its XEP-0198 requests (enable, acks, resumption by
//! a later connection) and its end (detached for resumption, or closed).
//!
//! Owns a session's life after binding. It must not route (the hub does),
//! write to the client except through its outbox, nor negotiate (that is
//! over before it starts).

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::NS_BIND;
use super::bucket::Bucket;
use super::negotiation::{Bound, Conn};
use super::outbox::{Managed, Outbox, write_session};
use super::shared::{Ending, Switchboard};
use crate::xmpp::element::Element;
use crate::xmpp::hub::SessionId;
use crate::xmpp::sm::{self, Unacked};
use crate::xmpp::stream::{NS_CLIENT, StreamEvent, StreamEvents};

impl Conn {
    /// The bound session: the hub gets its stanzas, a writer task sends it
    /// what the hub routes to it.
    pub(super) async fn run(mut self, id: SessionId, bound: Bound) {
        let Bound { events, jid, bind_id } = bound;
        let Some(w) = self.w.take() else { return };
        let config = &self.shared.config;
        let (tx, queue) = mpsc::channel(config.send_queue.max(2));
        let queued = Arc::new(AtomicUsize::new(0));
        let (kill_tx, kill) = watch::channel(None);
        let result = Element::new("iq", NS_CLIENT)
            .attr("type", "result")
            .attr("id", bind_id)
            .attr("to", jid.to_string())
            .child(Element::new("bind", NS_BIND).child(Element::new("jid", NS_BIND).text(jid.to_string())));
        {
            let mut core = self.shared.core();
            let mut outbox = Outbox {
                tx: Some(tx),
                queued: queued.clone(),
                max_bytes: config.send_queue_bytes,
                kill: kill_tx,
                generation: 0,
                sm: None,
            };
            outbox.push(&result);
            core.outboxes.insert(id, outbox);
            let outputs = core.hub.bind(id, jid.clone());
            core.dispatch(outputs);
        }
        let writer = tokio::spawn(write_session(w, queue, queued, kill.clone(), config.write_timeout));
        self.serve(id, 0, &jid.bare().to_string(), events, kill, writer).await;
    }

    /// XEP-0198 resumption: a new connection takes over the session
    /// `previd` of `user` (still in its rooms), gets `<resumed/>` and every
    /// stanza it had not acknowledged, and goes on where the old one stopped.
    pub(super) async fn resume(mut self, events: StreamEvents, user: &str, previd: &str, h: u32) {
        let owner = format!("{user}@{}", self.shared.domain);
        let Some(w) = self.w.take() else { return };
        let config = &self.shared.config;
        let (tx, queue) = mpsc::channel(config.send_queue.max(2));
        let queued = Arc::new(AtomicUsize::new(0));
        let (kill_tx, kill) = watch::channel(None);
        let attached = {
            let mut core = self.shared.core();
            let found = core
                .outboxes
                .iter_mut()
                .find(|(_, o)| o.sm.as_ref().is_some_and(|m| m.id == previd && m.owner == owner));
            match found {
                None => Err(sm::failed("item-not-found", None)),
                Some((&id, o)) => {
                    let Some(m) = o.sm.as_mut() else { return };
                    match m.unacked.ack(h) {
                        Err(_) => Err(sm::failed("undefined-condition", Some(m.handled))),
                        Ok(()) => {
                            // The old connection, if its end was not noticed yet, stops quietly.
                            let old = std::mem::replace(&mut o.kill, kill_tx);
                            let _ = old.send(Some(Ending::Quiet));
                            o.generation += 1;
                            o.tx = Some(tx);
                            o.queued = queued.clone();
                            let handled = m.handled;
                            let resend: Vec<Box<str>> = m.unacked.pending().cloned().collect();
                            let mut ok = o.send_raw(sm::resumed(previd, handled).to_xml_in(NS_CLIENT).into());
                            for text in resend {
                                ok &= o.send_raw(text);
                            }
                            if !ok {
                                core.close(id, Some(Ending::Error("policy-violation")));
                            }
                            Ok((id, o_generation(&core, id)))
                        }
                    }
                }
            }
        };
        match attached {
            Err(failed) => {
                // Unknown or expired: the client binds anew on this stream.
                let mut w = w;
                let _ = tokio::time::timeout(config.write_timeout, w.write_all(failed.to_xml_in(NS_CLIENT).as_bytes()))
                    .await;
                drop(w);
                drop(events);
            }
            Ok((id, generation)) => {
                let writer = tokio::spawn(write_session(w, queue, queued, kill.clone(), config.write_timeout));
                self.serve(id, generation, &owner, events, kill, writer).await;
            }
        }
    }

    /// Reads the session's stanzas into the hub (and its stream management
    /// elements) until its connection ends.
    async fn serve(
        &mut self,
        id: SessionId,
        generation: u64,
        owner: &str,
        mut events: StreamEvents,
        mut kill: watch::Receiver<Option<Ending>>,
        writer: JoinHandle<()>,
    ) {
        let config = &self.shared.config;
        let mut bucket = Bucket::new(config.stanza_rate, config.stanza_burst);
        let mut shutdown = self.shared.shutdown.clone();
        let ending = loop {
            let event = tokio::select! {
                event = events.recv() => event,
                _ = kill.changed() => break None,
                _ = shutdown.wait_for(|s| *s) => break Some(Ending::Error("system-shutdown")),
            };
            match event {
                Some(Ok(StreamEvent::Stanza(e))) if e.ns == sm::NS_SM => {
                    let secs = config.resume_timeout.as_secs();
                    if let Err(condition) = self.shared.core().managed(id, owner, &e, secs) {
                        break Some(Ending::Error(condition));
                    }
                }
                Some(Ok(StreamEvent::Stanza(e))) => {
                    if !bucket.take(Instant::now()) {
                        break Some(Ending::Error("policy-violation"));
                    }
                    let mut core = self.shared.core();
                    if let Some(m) = core.outboxes.get_mut(&id).and_then(|o| o.sm.as_mut())
                        && sm::is_stanza(&e)
                    {
                        m.handled = m.handled.wrapping_add(1);
                    }
                    core.hub.set_time(unix_ms());
                    let outputs = core.hub.stanza(id, e);
                    core.dispatch(outputs);
                }
                // The client closed its stream: close ours.
                Some(Ok(StreamEvent::End)) => break None,
                Some(Ok(StreamEvent::Header(_))) => break Some(Ending::Error("bad-format")),
                Some(Err(e)) if e.is_transport() => break Some(Ending::Quiet),
                Some(Err(e)) => break Some(Ending::Error(e.condition())),
                None => break Some(Ending::Quiet),
            }
        };
        let detached = self.shared.core().connection_ended(id, generation, ending);
        if detached {
            let shared = self.shared.clone();
            let wait = config.resume_timeout;
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                shared.core().expire(id, generation);
            });
        }
        drop(events);
        let _ = writer.await;
    }
}

/// The current connection generation of session `id`.
fn o_generation(core: &Switchboard, id: SessionId) -> u64 {
    core.outboxes.get(&id).map_or(0, |o| o.generation)
}

impl Switchboard {
    /// Whether session `previd` of `owner` can be resumed.
    pub(super) fn resumable(&self, previd: &str, owner: &str) -> bool {
        self.outboxes.values().any(|o| o.sm.as_ref().is_some_and(|m| m.id == previd && m.owner == owner))
    }

    /// A stream management element from session `id` (bare JID `owner`):
    /// enabling, an ack request or an ack. `Err`: the stream error to end with.
    fn managed(&mut self, id: SessionId, owner: &str, e: &Element, resume_secs: u64) -> Result<(), &'static str> {
        let Some(o) = self.outboxes.get_mut(&id) else { return Ok(()) };
        match (e.name.as_str(), o.sm.as_mut()) {
            ("enable", None) => {
                let mut raw = [0u8; 16];
                getrandom::fill(&mut raw).map_err(|_| "internal-server-error")?;
                let sid: String = raw.iter().map(|b| format!("{b:02x}")).collect();
                let max_bytes = o.max_bytes;
                o.sm = Some(Managed {
                    id: sid.clone(),
                    owner: owner.to_string(),
                    unacked: Unacked::new(max_bytes),
                    handled: 0,
                });
                if !o.send_raw(sm::enabled(&sid, resume_secs).to_xml_in(NS_CLIENT).into()) {
                    return Err("policy-violation");
                }
            }
            ("enable", Some(_)) => {
                let _ = o.send_raw(sm::failed("unexpected-request", None).to_xml_in(NS_CLIENT).into());
            }
            ("r", Some(m)) => {
                let a = sm::ack(m.handled).to_xml_in(NS_CLIENT).into();
                if !o.send_raw(a) {
                    return Err("policy-violation");
                }
            }
            ("a", Some(m)) => {
                let h = sm::h_of(e).ok_or("bad-format")?;
                m.unacked.ack(h).map_err(|_| "undefined-condition")?;
            }
            // Acks and requests before enabling, or unknown elements: ignored.
            _ => {}
        }
        Ok(())
    }
}

/// The wall clock in Unix milliseconds (room history's stamps).
fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
