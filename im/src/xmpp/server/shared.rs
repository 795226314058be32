//! The state every connection task of the server shares: the
//! configuration, the user store, the login guard, the TLS acceptor, the
//! shutdown signal and, under one lock, the core: the [`Hub`] and each
//! bound session's [`Outbox`].
//!
//! Owns carrying out what the hub answers (queueing stanzas, closing
//! sessions whose queue is full) and a session's end (detached for
//! resumption, or gone from the hub). It must not await, read or write a
//! socket while the lock is held (it only queues), nor make routing
//! decisions (the hub does).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use lsim_keymgmt::guard::LoginGuard;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::ServerConfig;
use super::outbox::Outbox;
use crate::xmpp::hub::{Hub, Output, SessionId};
use crate::xmpp::users::UserStore;

pub(super) struct Shared {
    pub(super) config: ServerConfig,
    /// `config.domain`, lowercased.
    pub(super) domain: String,
    pub(super) users: Arc<UserStore>,
    pub(super) guard: Arc<LoginGuard>,
    pub(super) tls: Option<TlsAcceptor>,
    pub(super) core: Mutex<Switchboard>,
    pub(super) shutdown: watch::Receiver<bool>,
    pub(super) next_id: AtomicU64,
}

impl Shared {
    pub(super) fn core(&self) -> MutexGuard<'_, Switchboard> {
        // The hub is only changed through whole `Hub` calls; a panic in
        // one leaves the previous state, which is still consistent.
        self.core.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How a bound session's stream ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// Send this stream error, then close.
    Error(&'static str),
    /// Close without a word (the transport is gone).
    Quiet,
}

/// The hub and every session's outbox: where the hub's output is delivered.
pub(super) struct Switchboard {
    pub(super) hub: Hub,
    pub(super) outboxes: HashMap<SessionId, Outbox>,
}

impl Switchboard {
    /// Carries out what the hub asked for. A session whose queue is full
    /// is closed (and leaves its rooms, which may produce more output).
    pub(super) fn dispatch(&mut self, outputs: Vec<Output>) {
        let mut work: VecDeque<Output> = outputs.into();
        while let Some(output) = work.pop_front() {
            match output {
                Output::Send(id, e) => {
                    let refused = self.outboxes.get_mut(&id).is_some_and(|o| !o.push(&e));
                    if refused {
                        self.end(id, Ending::Error("policy-violation"));
                        work.extend(self.hub.close(id));
                    }
                }
                Output::Close(id, condition) => self.end(id, Ending::Error(condition)),
            }
        }
    }

    pub(super) fn end(&mut self, id: SessionId, ending: Ending) {
        if let Some(outbox) = self.outboxes.remove(&id) {
            let _ = outbox.kill.send(Some(ending));
        }
    }

    /// Connection `generation` of session `id` ended. A managed session
    /// whose transport died waits to be resumed (true: start its expiry);
    /// one a newer connection took over is left alone; any other is over.
    pub(super) fn connection_ended(&mut self, id: SessionId, generation: u64, ending: Option<Ending>) -> bool {
        match self.outboxes.get_mut(&id) {
            Some(o) if o.generation != generation => false,
            Some(o) if o.sm.is_some() && ending == Some(Ending::Quiet) => {
                o.tx = None;
                o.queued.store(0, Ordering::Release);
                true
            }
            _ => {
                self.close(id, ending);
                false
            }
        }
    }

    /// A detached session's time to be resumed is up (unless it was).
    pub(super) fn expire(&mut self, id: SessionId, generation: u64) {
        if self.outboxes.get(&id).is_some_and(|o| o.generation == generation && o.tx.is_none()) {
            self.close(id, None);
        }
    }

    /// Session `id` is over: it leaves the hub and its queue closes.
    pub(super) fn close(&mut self, id: SessionId, ending: Option<Ending>) {
        match ending {
            Some(ending) => self.end(id, ending),
            None => {
                self.outboxes.remove(&id);
            }
        }
        let outputs = self.hub.close(id);
        self.dispatch(outputs);
    }
}
