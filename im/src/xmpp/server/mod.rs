//! The embedded XMPP server's tokio driver: accepts client connections,
//! runs each stream through its header checks, STARTTLS, SASL and
//! resource binding, then feeds stanzas to the [`Hub`] and writes out what
//! it answers.
//!
//! Owns sockets, tasks, timers and per-connection limits (connection
//! count, authentication deadline, SASL failures, stanza rate, outgoing
//! queue), and asks the login guard (`lsim_keymgmt::guard`) about every
//! user name a SASL exchange names, so that password guessing over many
//! connections is limited as at the key server. It must not make routing or MUC decisions (the hub does) nor
//! parse XML itself (`xmpp::stream` does, in its own task per stream).
//!
//! Bad input ends only the offending stream, with the RFC 6120 stream
//! error its failure maps to; a client too slow to read its stanzas is
//! closed rather than allowed to hold up anyone else.
//!
//! # Tasks
//!
//! Per connection: the connection task (negotiation, then reading
//! stanzas into the hub), a parser task per stream
//! ([`spawn_reader_until`](super::stream::spawn_reader_until) stops at
//! every SASL or STARTTLS element so that the transport can be taken back
//! for TLS or for the restarted stream) and, once bound, a writer task fed
//! by a bounded queue.
//!
//! # Memory
//!
//! A session's queue holds stanzas already serialized (one allocation each,
//! a few times smaller than the element tree) and is bounded both in
//! stanzas (`send_queue`) and in bytes (`send_queue_bytes`), so what the
//! server holds for its clients is at most `max_connections ×
//! send_queue_bytes` whatever they send: a room broadcast is copied once per
//! occupant, and without the byte bound a few large groupchat messages to a
//! room of slow readers would hold `send_queue × max_stanza_bytes` per
//! occupant. The writer sends what is queued in batches (one write of up to
//! [`WRITE_BATCH`] bytes rather than one per stanza).
//!
//! # Files
//!
//! This file holds the public API (configuration, errors, the handle) and
//! the accept loop; `shared` the state every connection task shares (the
//! hub and each session's outbox under one lock); `outbox` a bound
//! session's queue and its writer task; `transport` the byte streams a
//! stream runs on; `negotiation` a connection up to its bound resource;
//! `auth` its SASL steps under the login guard; `register` enrollment by
//! invitation before SASL; `session` a bound (or resumed) session;
//! `bucket` the stanza rate limit.

mod auth;
mod bucket;
mod negotiation;
mod outbox;
pub mod register;
mod session;
mod shared;
mod transport;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lsim_keymgmt::guard::LoginGuard;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::hub::{Hub, SessionId};
use super::stream::{Limits, NS_CLIENT, stream_error_xml};
use super::tls::{ServerIdentity, TlsError};
use super::users::{UserError, UserStore};
use negotiation::serve;
pub use outbox::WRITE_BATCH;
use shared::{Ending, Shared, Switchboard};

pub use super::ns::NS_BIND;

/// How the embedded server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The XMPP domain (`localhost` by default); rooms live on
    /// `conference.<domain>`.
    pub domain: String,
    /// Where to accept client connections.
    pub listen: SocketAddr,
    /// Where the user store and the TLS certificate live.
    pub data_dir: PathBuf,
    /// Offer STARTTLS (the certificate is generated on first start).
    pub tls: bool,
    /// Refuse SASL until the stream is encrypted (needs `tls`).
    pub require_tls: bool,
    /// Offer PLAIN on unencrypted streams too.
    pub allow_plain_unencrypted: bool,
    /// Size and shape limits on what a client may send.
    pub limits: Limits,
    /// Connections open at once; more are refused with
    /// `resource-constraint`.
    pub max_connections: usize,
    /// Time from accepting a connection to its resource being bound; a
    /// slower one is closed with `connection-timeout`.
    pub auth_timeout: Duration,
    /// Stanzas per second a bound session may send on average (0: no
    /// limit); faster is closed with `policy-violation`.
    pub stanza_rate: u32,
    /// Stanzas a session may send in a burst above the rate.
    pub stanza_burst: u32,
    /// Failed SASL attempts per connection before it is closed with
    /// `policy-violation`.
    pub max_auth_failures: u32,
    /// Stanzas queued for one session; a client that lets its queue fill
    /// is closed with `policy-violation`.
    pub send_queue: usize,
    /// Bytes (serialized) queued for one session; past this too, the
    /// client is closed with `policy-violation`. It must hold what a joiner
    /// of the fullest room gets at once: one presence (≈ 250–400 bytes)
    /// per occupant. A stanza larger than the bound still goes into an
    /// empty queue.
    pub send_queue_bytes: usize,
    /// Longest time one write to a client may take.
    pub write_timeout: Duration,
    /// How long a session with stream management (XEP-0198) whose
    /// connection dropped is kept, in its rooms, for the client to resume.
    pub resume_timeout: Duration,
    /// The failed-login accounting, when shared with another service that
    /// checks the same passwords (the all-in-one server's key server);
    /// `None`: a guard of its own logging to `security.log` in `data_dir`.
    pub guard: Option<Arc<LoginGuard>>,
    /// In-band registration by invitation token (XEP-0077 with XEP-0401's
    /// preauth) on encrypted streams; `None`: no registration.
    pub enroll: Option<Arc<dyn register::Enroll>>,
}

impl ServerConfig {
    /// Defaults for `data_dir`: domain `localhost` on 127.0.0.1:5222,
    /// no TLS, PLAIN only when encrypted.
    pub fn new(data_dir: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            domain: "localhost".to_string(),
            listen: SocketAddr::from(([127, 0, 0, 1], 5222)),
            data_dir: data_dir.into(),
            tls: false,
            require_tls: false,
            allow_plain_unencrypted: false,
            limits: Limits::default(),
            max_connections: 1024,
            auth_timeout: Duration::from_secs(30),
            stanza_rate: 200,
            stanza_burst: 1000,
            max_auth_failures: 3,
            send_queue: 1024,
            send_queue_bytes: 1 << 20,
            write_timeout: Duration::from_secs(30),
            resume_timeout: Duration::from_secs(300),
            guard: None,
            enroll: None,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The domain is not a host name.
    #[error("'{0}' is not a usable XMPP domain (letters, digits, '-' and '.' only)")]
    Domain(String),
    /// The options contradict each other.
    #[error("invalid server configuration: {0}")]
    Config(&'static str),
    /// The certificate could not be loaded or created.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The user store could not be read.
    #[error(transparent)]
    Users(#[from] UserError),
}

/// The embedded server. Start it with [`Server::start`].
pub struct Server;

/// A running server; dropping it stops accepting connections (use
/// [`ServerHandle::stop`] to also wait for every session to close).
pub struct ServerHandle {
    local_addr: SocketAddr,
    fingerprint: Option<[u8; 32]>,
    users: Arc<UserStore>,
    shared: Arc<Shared>,
    stop_tx: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

/// Ends users' sessions on a running server (see [`ServerHandle::sessions`]).
#[derive(Clone)]
pub struct Sessions(Arc<Shared>);

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sessions")
    }
}

impl Sessions {
    /// Ends every session of the user `local` (a removed or revoked user,
    /// or one whose password changed) with the stream error `condition`;
    /// each leaves its rooms as if it had gone. A detached session (stream
    /// management) ends too: it cannot be resumed. Returns how many ended.
    pub fn end(&self, local: &str, condition: &'static str) -> usize {
        let mut core = self.0.core();
        let ids: Vec<SessionId> = core
            .outboxes
            .keys()
            .copied()
            .filter(|id| {
                core.hub.jid_of(*id).is_some_and(|j| j.local.as_deref().is_some_and(|l| l.eq_ignore_ascii_case(local)))
            })
            .collect();
        for id in &ids {
            core.close(*id, Some(Ending::Error(condition)));
        }
        ids.len()
    }
}

impl ServerHandle {
    /// The address the server listens on (the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// SHA-256 of the TLS certificate, when STARTTLS is offered.
    pub fn fingerprint(&self) -> Option<[u8; 32]> {
        self.fingerprint
    }

    /// The user store (add users while the server runs).
    pub fn users(&self) -> &UserStore {
        &self.users
    }

    /// A handle to end users' sessions from another task.
    pub fn sessions(&self) -> Sessions {
        Sessions(self.shared.clone())
    }

    /// Stops accepting, closes every session with `system-shutdown` and
    /// waits (a few seconds at most) for them to end.
    pub async fn stop(mut self) {
        let _ = self.stop_tx.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.stop_tx.send(true);
    }
}

impl Server {
    /// Opens the user store and (with `tls`) the certificate in
    /// `config.data_dir`, binds `config.listen` and starts accepting.
    pub async fn start(config: ServerConfig) -> Result<ServerHandle, ServerError> {
        let domain = config.domain.to_ascii_lowercase();
        let valid = !domain.is_empty()
            && domain.len() <= 253
            && domain.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        if !valid {
            return Err(ServerError::Domain(config.domain));
        }
        if config.require_tls && !config.tls {
            return Err(ServerError::Config("require_tls needs tls"));
        }
        let users = Arc::new(UserStore::open(&config.data_dir)?);
        let guard = config.guard.clone().unwrap_or_else(|| Arc::new(LoginGuard::new(&config.data_dir)));
        let (tls, fingerprint) = if config.tls {
            let names = [domain.clone(), format!("conference.{domain}")];
            let identity = ServerIdentity::load_or_create(&config.data_dir, &names)?;
            (Some(TlsAcceptor::from(identity.server_config()?)), Some(identity.fingerprint()))
        } else {
            (None, None)
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServerError::Listen { addr: config.listen, source })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Listen { addr: config.listen, source })?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            core: Mutex::new(Switchboard { hub: Hub::new(&domain), outboxes: HashMap::new() }),
            domain,
            config,
            users: users.clone(),
            guard,
            tls,
            shutdown: stop_rx.clone(),
            next_id: AtomicU64::new(1),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone(), stop_rx));
        Ok(ServerHandle { local_addr, fingerprint, users, shared, stop_tx, task: Some(task) })
    }
}

// ----------------------------------------------------------------- accept

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let max = shared.config.max_connections.min(Semaphore::MAX_PERMITS).min(u32::MAX as usize);
    let slots = Arc::new(Semaphore::new(max));
    // Refusals are answered politely, but only so many at once.
    let refusals = Arc::new(Semaphore::new(64));
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((tcp, peer)) = accepted else {
            // Out of file descriptors and the like: let them drain.
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(serve(shared.clone(), tcp, peer, permit));
            }
            Err(_) => {
                if let Ok(permit) = refusals.clone().try_acquire_owned() {
                    tokio::spawn(refuse(tcp, shared.domain.clone(), permit));
                }
            }
        }
    }
    drop(listener);
    {
        let mut core = shared.core();
        let ids: Vec<SessionId> = core.outboxes.keys().copied().collect();
        for id in ids {
            core.end(id, Ending::Error("system-shutdown"));
        }
    }
    // Every connection task holds a slot until it has closed its stream.
    let _ = tokio::time::timeout(Duration::from_secs(5), slots.acquire_many(max as u32)).await;
}

/// Tells a connection over the limit why it is refused.
async fn refuse(mut tcp: TcpStream, domain: String, _permit: OwnedSemaphorePermit) {
    let text = format!("{}{}", header_xml(&domain), stream_error_xml("resource-constraint"));
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        tcp.write_all(text.as_bytes()).await?;
        tcp.shutdown().await?;
        // Read what the client sends until it closes, so that closing
        // does not reset the connection before it has read our error.
        let mut sink = [0u8; 1024];
        while tokio::io::AsyncReadExt::read(&mut tcp, &mut sink).await? > 0 {}
        Ok::<_, io::Error>(())
    })
    .await;
}

fn header_xml(domain: &str) -> String {
    let mut id = [0u8; 8];
    let id = match getrandom::fill(&mut id) {
        Ok(()) => id.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        Err(_) => "0".to_string(),
    };
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='{NS_CLIENT}' xmlns:stream='http://etherx.jabber.org/streams' \
         id='{id}' from='{domain}' version='1.0' xml:lang='en'>"
    )
}
