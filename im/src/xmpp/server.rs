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
//! stanzas into the hub), a parser task per stream ([`spawn_reader_until`]
//! stops at every SASL or STARTTLS element so that the transport can be
//! taken back for TLS or for the restarted stream) and, once bound, a
//! writer task fed by a bounded queue.
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

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use lsim_keymgmt::guard::LoginGuard;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::element::Element;
use super::hub::{Hub, NS_SESSION, NS_STANZAS, Output, SessionId, stanza_kind_error};
use super::jid::Jid;
use super::sasl::{self, Failure, Mechanism, ServerSasl, ServerStep};
use super::sm::{self, Unacked};
use super::stream::{
    Limits, NS_CLIENT, NS_SASL, NS_STREAMS, NS_TLS, StreamEvent, StreamEvents, StreamHeader, spawn_reader,
    spawn_reader_until, stream_error_xml,
};
use super::tls::{ServerIdentity, TlsError};
use super::users::{UserError, UserStore, validate_name};

/// Resource binding (RFC 6120 §7).
pub const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";

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
    stop_tx: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
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
            core: Mutex::new(Core { hub: Hub::new(&domain), outboxes: HashMap::new() }),
            domain,
            config,
            users: users.clone(),
            guard,
            tls,
            shutdown: stop_rx.clone(),
            next_id: AtomicU64::new(1),
        });
        let task = tokio::spawn(accept_loop(listener, shared, stop_rx));
        Ok(ServerHandle { local_addr, fingerprint, users, stop_tx, task: Some(task) })
    }
}

// ------------------------------------------------------------ shared state

struct Shared {
    config: ServerConfig,
    /// `config.domain`, lowercased.
    domain: String,
    users: Arc<UserStore>,
    guard: Arc<LoginGuard>,
    tls: Option<TlsAcceptor>,
    core: Mutex<Core>,
    shutdown: watch::Receiver<bool>,
    next_id: AtomicU64,
}

impl Shared {
    fn core(&self) -> MutexGuard<'_, Core> {
        // The hub is only changed through whole `Hub` calls; a panic in
        // one leaves the previous state, which is still consistent.
        self.core.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How a bound session's stream ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Send this stream error, then close.
    Error(&'static str),
    /// Close without a word (the transport is gone).
    Quiet,
}

/// Most bytes the writer sends in one write (what is queued, joined).
pub const WRITE_BATCH: usize = 16 * 1024;

/// A bound session's way out: its queue (serialized stanzas, and their
/// bytes, which the writer gives back once written) and its kill switch.
struct Outbox {
    /// The writer's queue; `None` while a managed session waits to be resumed.
    tx: Option<mpsc::Sender<Box<str>>>,
    queued: Arc<AtomicUsize>,
    max_bytes: usize,
    kill: watch::Sender<Option<Ending>>,
    /// Which connection of the session this is (a resumption makes a new one).
    generation: u64,
    /// Stream management, once the client enabled it.
    sm: Option<Managed>,
}

/// A session's XEP-0198 state, kept across its connections.
struct Managed {
    /// The resumption id.
    id: String,
    /// The bare JID that may resume it.
    owner: String,
    /// Stanzas sent to the client and not yet acknowledged.
    unacked: Unacked<Box<str>>,
    /// Stanzas handled from the client.
    handled: u32,
}

/// Ask for an acknowledgement after this many unacknowledged stanzas.
const ACK_EVERY: usize = 16;

impl Outbox {
    /// Queues `e`; false if the queue is full, in stanzas or in bytes.
    /// While detached, a managed session only keeps it for resending.
    fn push(&mut self, e: &Element) -> bool {
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
    fn send_raw(&self, text: Box<str>) -> bool {
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

struct Core {
    hub: Hub,
    outboxes: HashMap<SessionId, Outbox>,
}

impl Core {
    /// Carries out what the hub asked for. A session whose queue is full
    /// is closed (and leaves its rooms, which may produce more output).
    fn dispatch(&mut self, outputs: Vec<Output>) {
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

    fn end(&mut self, id: SessionId, ending: Ending) {
        if let Some(outbox) = self.outboxes.remove(&id) {
            let _ = outbox.kill.send(Some(ending));
        }
    }

    /// Connection `generation` of session `id` ended. A managed session
    /// whose transport died waits to be resumed (true: start its expiry);
    /// one a newer connection took over is left alone; any other is over.
    fn connection_ended(&mut self, id: SessionId, generation: u64, ending: Option<Ending>) -> bool {
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
    fn expire(&mut self, id: SessionId, generation: u64) {
        if self.outboxes.get(&id).is_some_and(|o| o.generation == generation && o.tx.is_none()) {
            self.close(id, None);
        }
    }

    /// Session `id` is over: it leaves the hub and its queue closes.
    fn close(&mut self, id: SessionId, ending: Option<Ending>) {
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

// ----------------------------------------------------------------- accept

/// One step of a SASL exchange under the login guard: the user name the
/// client names is noted in `named`, and a name the guard refuses from
/// `peer` gets `temporary-auth-failure` without its password being checked.
fn guarded_step(
    shared: &Shared,
    peer: SocketAddr,
    named: &mut Option<String>,
    exchange: &mut ServerSasl,
    data: &[u8],
) -> Result<ServerStep, Failure> {
    let asked = std::cell::RefCell::new(None);
    let refused = std::cell::Cell::new(false);
    let step = exchange.step(data, &|user: &str| {
        *asked.borrow_mut() = Some(user.to_string());
        if shared.guard.check(user, peer).is_some() {
            refused.set(true);
            return None;
        }
        shared.users.lookup(user)
    });
    if let Some(user) = asked.into_inner() {
        *named = Some(user);
    }
    if refused.get() {
        return Err(Failure::TemporaryAuthFailure);
    }
    step
}

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

/// `<stream:features>` with the `stream` prefix the header declares: RFC
/// 6120 §4.8.5 says to generate only that prefix for the stream namespace,
/// and some clients (Net::XMPP's sendxmpp) accept nothing else.
fn features_xml(features: &Element) -> String {
    let mut out = String::from("<stream:features>");
    for child in features.elements() {
        child.write_to(&mut out, NS_STREAMS);
    }
    out.push_str("</stream:features>");
    out
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

// ------------------------------------------------------------- transports

/// Any transport a stream runs on: TCP, or TLS over TCP.
trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}
type Io = Box<dyn Transport>;

/// The read half with bytes to hand out before it: what an earlier
/// parser had buffered, and, when a stream goes on after a SASL step, a
/// synthetic header so that the fresh parser starts inside the stream.
struct Replay {
    prefix: Vec<u8>,
    pos: usize,
    inner: ReadHalf<Io>,
}

impl Replay {
    fn new(inner: ReadHalf<Io>, prefix: Vec<u8>) -> Replay {
        Replay { prefix, pos: 0, inner }
    }

    /// Takes the transport back after a parser stopped; `buffered` is what
    /// the parser had read past its last element.
    fn take(self, mut buffered: Vec<u8>) -> (ReadHalf<Io>, Vec<u8>) {
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

/// Where a negotiation parser stops so that its transport can be taken
/// back: STARTTLS, and every SASL step (the server only knows after
/// checking it whether the stream restarts).
fn negotiation_stop(e: &Element) -> bool {
    e.is("starttls", NS_TLS) || (e.ns == NS_SASL && matches!(e.name.as_str(), "auth" | "response" | "abort"))
}

/// The header a continuing negotiation parser starts with.
const CONTINUATION_HEADER: &str =
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";

// -------------------------------------------------------------- a stream

/// Why a connection ends before it is bound.
#[derive(Debug)]
enum Fail {
    /// Send this stream error.
    Stream(&'static str),
    /// The peer closed its stream; close ours.
    Closed,
    /// Nothing can or need be sent.
    Quiet,
}

/// How a negotiation parser's run ended.
enum Segment {
    StartTls,
    /// A SASL step was answered; the same stream goes on.
    Continue,
    /// SASL succeeded for this user (lowercase); the stream restarts.
    Authenticated(String),
}

struct Conn {
    shared: Arc<Shared>,
    w: Option<WriteHalf<Io>>,
    deadline: Instant,
    encrypted: bool,
    /// Whether our header for the current stream has gone out.
    header_sent: bool,
    sasl: Option<ServerSasl>,
    sasl_attempted: bool,
    failures: u32,
    /// The client's address, for the login guard.
    peer: SocketAddr,
    /// The user name the current SASL exchange is about, once named.
    sasl_user: Option<String>,
}

/// A session that has bound its resource.
struct Bound {
    events: StreamEvents,
    jid: Jid,
    bind_id: String,
}

/// How a negotiation ended well: a new session, or an old one resumed.
enum Negotiated {
    Bound(Bound),
    /// XEP-0198 resumption of session `previd` by `user`, which handled `h` of its stanzas.
    Resume {
        events: StreamEvents,
        user: String,
        previd: String,
        h: u32,
    },
}

async fn serve(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr, _permit: OwnedSemaphorePermit) {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let io: Io = Box::new(tcp);
    let (r, w) = tokio::io::split(io);
    let deadline = Instant::now() + shared.config.auth_timeout;
    let mut conn = Conn {
        shared,
        w: Some(w),
        deadline,
        encrypted: false,
        header_sent: false,
        sasl: None,
        sasl_attempted: false,
        failures: 0,
        peer,
        sasl_user: None,
    };
    match conn.negotiate(r).await {
        Ok(Negotiated::Bound(bound)) => conn.run(id, bound).await,
        Ok(Negotiated::Resume { events, user, previd, h }) => conn.resume(events, &user, &previd, h).await,
        Err(fail) => conn.finish(fail).await,
    }
}

impl Conn {
    async fn write(&mut self, text: &str) -> Result<(), Fail> {
        let Some(w) = self.w.as_mut() else { return Err(Fail::Quiet) };
        match tokio::time::timeout_at(self.deadline, w.write_all(text.as_bytes())).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(Fail::Quiet),
        }
    }

    async fn send(&mut self, e: &Element) -> Result<(), Fail> {
        self.write(&e.to_xml_in(NS_CLIENT)).await
    }

    /// Ends the stream as `fail` says and closes the connection.
    async fn finish(mut self, fail: Fail) {
        let mut text = String::new();
        if !matches!(fail, Fail::Quiet) && !self.header_sent {
            text.push_str(&header_xml(&self.shared.domain));
        }
        match fail {
            Fail::Stream(condition) => text.push_str(&stream_error_xml(condition)),
            Fail::Closed => text.push_str("</stream:stream>"),
            Fail::Quiet => {}
        }
        let Some(mut w) = self.w.take() else { return };
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            w.write_all(text.as_bytes()).await?;
            w.shutdown().await
        })
        .await;
    }

    async fn recv(&mut self, events: &mut StreamEvents) -> Result<StreamEvent, Fail> {
        let mut shutdown = self.shared.shutdown.clone();
        tokio::select! {
            event = events.recv() => match event {
                Some(Ok(event)) => Ok(event),
                Some(Err(e)) if e.is_transport() => Err(Fail::Quiet),
                Some(Err(e)) => Err(Fail::Stream(e.condition())),
                None => Err(Fail::Quiet),
            },
            _ = tokio::time::sleep_until(self.deadline) => Err(Fail::Stream("connection-timeout")),
            _ = shutdown.wait_for(|s| *s) => Err(Fail::Stream("system-shutdown")),
        }
    }

    /// Checks a client's stream header (RFC 6120 §4.7) and answers it with
    /// ours and `features`.
    async fn open_stream(&mut self, header: &StreamHeader, features: Element) -> Result<(), Fail> {
        if header.default_ns.as_deref() != Some(NS_CLIENT) {
            return Err(Fail::Stream("invalid-namespace"));
        }
        if !header.to.as_deref().is_some_and(|to| to.eq_ignore_ascii_case(&self.shared.domain)) {
            return Err(Fail::Stream("host-unknown"));
        }
        let major = header.version.as_deref().and_then(|v| v.split('.').next()).and_then(|m| m.parse::<u32>().ok());
        if major != Some(1) {
            return Err(Fail::Stream("unsupported-version"));
        }
        let text = format!("{}{}", header_xml(&self.shared.domain), features_xml(&features));
        self.write(&text).await?;
        self.header_sent = true;
        Ok(())
    }

    fn mechanisms(&self) -> Vec<Mechanism> {
        let config = &self.shared.config;
        Mechanism::ALL
            .into_iter()
            .filter(|m| *m != Mechanism::Plain || self.encrypted || config.allow_plain_unencrypted)
            .collect()
    }

    fn pre_auth_features(&self) -> Element {
        let config = &self.shared.config;
        let mut features = Element::new("features", NS_STREAMS);
        if self.shared.tls.is_some() && !self.encrypted {
            let mut starttls = Element::new("starttls", NS_TLS);
            if config.require_tls {
                starttls = starttls.child(Element::new("required", NS_TLS));
            }
            features = features.child(starttls);
        }
        if self.encrypted || !config.require_tls {
            let mut mechs = Element::new("mechanisms", NS_SASL);
            for m in self.mechanisms() {
                mechs = mechs.child(Element::new("mechanism", NS_SASL).text(m.name()));
            }
            features = features.child(mechs);
        }
        features
    }

    /// Header, STARTTLS and SASL, then [`Conn::bind`].
    async fn negotiate(&mut self, read: ReadHalf<Io>) -> Result<Negotiated, Fail> {
        let limits = self.shared.config.limits;
        let mut read = Replay::new(read, Vec::new());
        let mut continuation = false;
        loop {
            let (mut events, task) = spawn_reader_until(read, limits, negotiation_stop);
            let segment = self.pre_auth(&mut events, continuation).await?;
            drop(events);
            let Ok(Some(handback)) = task.await else { return Err(Fail::Quiet) };
            let (half, rest) = handback.transport.take(handback.buffered);
            match segment {
                Segment::StartTls => {
                    // Whitespace after <starttls/> is allowed between elements
                    // (go-sendxmpp ends the element with a newline); anything
                    // else arrived before our <proceed/> went out.
                    if !rest.iter().all(u8::is_ascii_whitespace) {
                        // Bytes sent before our <proceed/> would be read as
                        // if they had come over TLS (STARTTLS injection).
                        return Err(Fail::Stream("policy-violation"));
                    }
                    self.send(&Element::new("proceed", NS_TLS)).await?;
                    read = Replay::new(self.start_tls(half).await?, Vec::new());
                    continuation = false;
                }
                Segment::Continue => {
                    let mut prefix = CONTINUATION_HEADER.as_bytes().to_vec();
                    prefix.extend_from_slice(&rest);
                    read = Replay::new(half, prefix);
                    continuation = true;
                }
                Segment::Authenticated(user) => break self.bind(Replay::new(half, rest), user).await,
            }
        }
    }

    /// The restarted stream after SASL success, up to a bound resource
    /// (or a resumed session).
    async fn bind(&mut self, read: Replay, user: String) -> Result<Negotiated, Fail> {
        self.header_sent = false;
        let mut events = spawn_reader(read, self.shared.config.limits);
        let features = Element::new("features", NS_STREAMS)
            .child(Element::new("bind", NS_BIND))
            .child(Element::new("session", NS_SESSION).child(Element::new("optional", NS_SESSION)))
            .child(Element::new("sm", sm::NS_SM));
        match self.recv(&mut events).await? {
            StreamEvent::Header(h) => self.open_stream(&h, features).await?,
            StreamEvent::End => return Err(Fail::Closed),
            StreamEvent::Stanza(_) => return Err(Fail::Stream("bad-format")),
        }
        loop {
            let e = match self.recv(&mut events).await? {
                StreamEvent::Stanza(e) => e,
                StreamEvent::End => return Err(Fail::Closed),
                StreamEvent::Header(_) => return Err(Fail::Stream("bad-format")),
            };
            if e.is("resume", sm::NS_SM) {
                let (Some(previd), Some(h)) = (e.get_attr("previd"), sm::h_of(&e)) else {
                    self.send(&sm::failed("bad-request", None)).await?;
                    continue;
                };
                let owner = format!("{user}@{}", self.shared.domain);
                if !self.shared.core().resumable(previd, &owner) {
                    // Unknown, expired or another user's: the client may bind
                    // on this stream instead (XEP-0198 §5).
                    self.send(&sm::failed("item-not-found", None)).await?;
                    continue;
                }
                return Ok(Negotiated::Resume { events, user, previd: previd.to_string(), h });
            }
            if e.ns == sm::NS_SM {
                // <enable/> before binding (XEP-0198 §3: after it only).
                self.send(&sm::failed("unexpected-request", None)).await?;
                continue;
            }
            if let Some(condition) = stanza_kind_error(&e) {
                return Err(Fail::Stream(condition));
            }
            let bind = e.get_child("bind", NS_BIND);
            let (true, Some(bind), Some(iq_id)) =
                (e.is("iq", NS_CLIENT) && e.get_attr("type") == Some("set"), bind, e.get_attr("id"))
            else {
                // RFC 6120 §7.1: nothing but binding before a resource is bound.
                return Err(Fail::Stream("not-authorized"));
            };
            let asked = bind.get_child("resource", NS_BIND).map(|r| r.text_content().trim().to_string());
            let resource = match asked.filter(|r| !r.is_empty()) {
                Some(r) => r,
                None => format!("lsim-{}", random_hex(6)),
            };
            match Jid::parse(&format!("{user}@{}/{resource}", self.shared.domain)) {
                Ok(jid) => return Ok(Negotiated::Bound(Bound { events, jid, bind_id: iq_id.to_string() })),
                Err(_) => {
                    let error = Element::new("iq", NS_CLIENT).attr("type", "error").attr("id", iq_id).child(
                        Element::new("error", NS_CLIENT)
                            .attr("type", "modify")
                            .child(Element::new("bad-request", NS_STANZAS)),
                    );
                    self.send(&error).await?;
                }
            }
        }
    }

    async fn start_tls(&mut self, read: ReadHalf<Io>) -> Result<ReadHalf<Io>, Fail> {
        let (Some(acceptor), Some(w)) = (self.shared.tls.clone(), self.w.take()) else { return Err(Fail::Quiet) };
        let tcp = read.unsplit(w);
        let tls = match tokio::time::timeout_at(self.deadline, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => tls,
            _ => return Err(Fail::Quiet),
        };
        let io: Io = Box::new(tls);
        let (r, w) = tokio::io::split(io);
        self.w = Some(w);
        self.encrypted = true;
        self.header_sent = false;
        Ok(r)
    }

    /// Runs one negotiation parser until it stops at a STARTTLS or SASL
    /// element, which is answered.
    async fn pre_auth(&mut self, events: &mut StreamEvents, continuation: bool) -> Result<Segment, Fail> {
        loop {
            let e = match self.recv(events).await? {
                StreamEvent::Header(h) => {
                    if !continuation {
                        self.sasl = None;
                        let features = self.pre_auth_features();
                        self.open_stream(&h, features).await?;
                    }
                    continue;
                }
                StreamEvent::End => return Err(Fail::Closed),
                StreamEvent::Stanza(e) => e,
            };
            if e.is("starttls", NS_TLS) {
                if self.shared.tls.is_none() || self.encrypted || self.sasl_attempted {
                    self.send(&Element::new("failure", NS_TLS)).await?;
                    return Err(Fail::Closed);
                }
                // <proceed/> waits until the reader has stopped at the end of
                // <starttls/> (`negotiate`): a prompt ClientHello must never be
                // read as XML.
                return Ok(Segment::StartTls);
            }
            if e.ns == NS_SASL {
                return self.sasl_step(&e).await;
            }
            // A stanza before authentication is not-authorized (RFC 6120 §6.4.1).
            return Err(Fail::Stream(stanza_kind_error(&e).unwrap_or("not-authorized")));
        }
    }

    async fn sasl_step(&mut self, e: &Element) -> Result<Segment, Fail> {
        self.sasl_attempted = true;
        let result = match e.name.as_str() {
            "auth" => self.sasl_auth(e),
            "response" => match self.sasl.as_mut() {
                Some(sasl) => sasl::decode(&e.text_content())
                    .and_then(|data| guarded_step(&self.shared, self.peer, &mut self.sasl_user, sasl, &data)),
                None => Err(Failure::MalformedRequest("response without an exchange")),
            },
            "abort" => Err(Failure::Aborted),
            _ => Err(Failure::MalformedRequest("unknown SASL element")),
        };
        match result {
            Ok(ServerStep::Challenge(data)) => {
                let mut challenge = Element::new("challenge", NS_SASL);
                if !data.is_empty() {
                    challenge = challenge.text(sasl::encode(&data));
                }
                self.send(&challenge).await?;
                Ok(Segment::Continue)
            }
            Ok(ServerStep::Success { user, data }) => {
                self.sasl = None;
                let Ok(user) = validate_name(&user) else {
                    return self.sasl_failure(&Failure::NotAuthorized).await;
                };
                self.shared.guard.succeeded(&user, self.peer);
                let mut success = Element::new("success", NS_SASL);
                if !data.is_empty() {
                    success = success.text(sasl::encode(&data));
                }
                self.send(&success).await?;
                Ok(Segment::Authenticated(user))
            }
            Err(failure) => {
                if let (Failure::NotAuthorized, Some(user)) = (&failure, self.sasl_user.take()) {
                    self.shared.guard.failed(&user, self.peer);
                }
                self.sasl_failure(&failure).await
            }
        }
    }

    /// `<auth/>`: a new exchange. An empty initial response gets an empty
    /// challenge (RFC 6120 §6.4.2), answered by the real first message.
    fn sasl_auth(&mut self, e: &Element) -> Result<ServerStep, Failure> {
        self.sasl = None;
        self.sasl_user = None;
        let config = &self.shared.config;
        if config.require_tls && !self.encrypted {
            return Err(Failure::EncryptionRequired);
        }
        // PLAIN where it is not offered fails in `ServerSasl::new` with
        // encryption-required, which says more than invalid-mechanism.
        let mechanism = e.get_attr("mechanism").and_then(Mechanism::parse).ok_or(Failure::InvalidMechanism)?;
        let mut exchange = ServerSasl::new(mechanism, self.encrypted, config.allow_plain_unencrypted)?;
        let text = e.text_content();
        if text.trim().is_empty() {
            self.sasl = Some(exchange);
            return Ok(ServerStep::Challenge(Vec::new()));
        }
        let data = sasl::decode(&text)?;
        let step = guarded_step(&self.shared, self.peer, &mut self.sasl_user, &mut exchange, &data)?;
        self.sasl = Some(exchange);
        Ok(step)
    }

    async fn sasl_failure(&mut self, failure: &Failure) -> Result<Segment, Fail> {
        self.sasl = None;
        self.failures += 1;
        let element = Element::new("failure", NS_SASL).child(Element::new(failure.condition(), NS_SASL));
        self.send(&element).await?;
        if self.failures >= self.shared.config.max_auth_failures {
            return Err(Fail::Stream("policy-violation"));
        }
        Ok(Segment::Continue)
    }

    /// The bound session: the hub gets its stanzas, a writer task sends it
    /// what the hub routes to it.
    async fn run(mut self, id: SessionId, bound: Bound) {
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
    async fn resume(mut self, events: StreamEvents, user: &str, previd: &str, h: u32) {
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
fn o_generation(core: &Core, id: SessionId) -> u64 {
    core.outboxes.get(&id).map_or(0, |o| o.generation)
}

impl Core {
    /// Whether session `previd` of `owner` can be resumed.
    fn resumable(&self, previd: &str, owner: &str) -> bool {
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

/// Writes a bound session's queue until it closes (then `</stream:stream>`)
/// or the session is ended (then its stream error, if any): what is queued
/// goes out in one write of up to [`WRITE_BATCH`] bytes, and its bytes
/// leave `queued` once written.
async fn write_session(
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

/// The wall clock in Unix milliseconds (room history's stamps).
fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn random_hex(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    if getrandom::fill(&mut raw).is_err() {
        static FALLBACK: AtomicU64 = AtomicU64::new(0);
        return format!("{:x}", FALLBACK.fetch_add(1, Ordering::Relaxed));
    }
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// A token bucket: `rate` stanzas a second on average, `burst` at once.
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32, burst: u32) -> Bucket {
        let burst = f64::from(burst.max(1));
        Bucket { rate: f64::from(rate), burst, tokens: burst, last: Instant::now() }
    }

    fn take(&mut self, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::xmpp::stanza::NS_MUC;

    fn outbox(capacity: usize) -> (Outbox, mpsc::Receiver<Box<str>>, watch::Receiver<Option<Ending>>) {
        outbox_bytes(capacity, 1 << 20)
    }

    fn outbox_bytes(
        capacity: usize,
        max_bytes: usize,
    ) -> (Outbox, mpsc::Receiver<Box<str>>, watch::Receiver<Option<Ending>>) {
        let (tx, rx) = mpsc::channel(capacity);
        let (kill, kill_rx) = watch::channel(None);
        (
            Outbox { tx: Some(tx), queued: Arc::new(AtomicUsize::new(0)), max_bytes, kill, generation: 0, sm: None },
            rx,
            kill_rx,
        )
    }

    /// Binds `id` as `nick@localhost/r` and joins it to the room `lsim`.
    fn bind_and_join(core: &mut Core, id: SessionId, nick: &str) {
        let jid = Jid::parse(&format!("{nick}@localhost/r")).unwrap();
        let outputs = core.hub.bind(id, jid);
        core.dispatch(outputs);
        let join = Element::new("presence", NS_CLIENT)
            .attr("to", format!("lsim@conference.localhost/{nick}"))
            .child(Element::new("x", NS_MUC));
        let outputs = core.hub.stanza(id, join);
        core.dispatch(outputs);
    }

    /// A session whose queue is full is closed with policy-violation and
    /// leaves the room; the others get their stanzas and see it leave.
    #[test]
    fn a_full_queue_closes_only_that_session() {
        let mut core = Core { hub: Hub::new("localhost"), outboxes: HashMap::new() };
        let (fast, mut fast_rx, fast_kill) = outbox(64);
        let (slow, mut slow_rx, slow_kill) = outbox(3);
        core.outboxes.insert(1, fast);
        core.outboxes.insert(2, slow);
        for (id, nick) in [(1, "fast"), (2, "slow")] {
            bind_and_join(&mut core, id, nick);
        }
        // slow's queue holds fast's presence, its own and the subject: full.
        while fast_rx.try_recv().is_ok() {}
        let message =
            Element::new("message", NS_CLIENT).attr("to", "lsim@conference.localhost").attr("type", "groupchat");
        let outputs = core.hub.stanza(1, message);
        core.dispatch(outputs);
        assert_eq!(*slow_kill.borrow(), Some(Ending::Error("policy-violation")));
        assert_eq!(*fast_kill.borrow(), None);
        assert!(!core.outboxes.contains_key(&2));
        assert_eq!(core.hub.occupants("lsim"), vec!["fast"]);
        let got: Vec<Box<str>> = std::iter::from_fn(|| fast_rx.try_recv().ok()).collect();
        assert!(got.iter().any(|t| t.starts_with("<message")));
        assert!(got.iter().any(|t| t.starts_with("<presence") && t.contains("type='unavailable'")));
        assert_eq!(std::iter::from_fn(|| slow_rx.try_recv().ok()).count(), 3);
    }

    /// The queue is bounded in bytes too: large messages to a room of slow
    /// readers cannot pile up `send_queue × max_stanza_bytes` per occupant.
    #[test]
    fn a_queue_over_its_byte_budget_closes_only_that_session() {
        let mut core = Core { hub: Hub::new("localhost"), outboxes: HashMap::new() };
        let (fast, mut fast_rx, fast_kill) = outbox_bytes(1024, 64 * 1024);
        let (slow, _slow_rx, slow_kill) = outbox_bytes(1024, 64 * 1024);
        let slow_queued = slow.queued.clone();
        core.outboxes.insert(1, fast);
        core.outboxes.insert(2, slow);
        for (id, nick) in [(1, "fast"), (2, "slow")] {
            bind_and_join(&mut core, id, nick);
        }
        let big = "x".repeat(10_000);
        let mut sent = 0;
        while core.outboxes.contains_key(&2) {
            // fast reads (and its writer gives the bytes back); slow does not.
            while fast_rx.try_recv().is_ok() {}
            core.outboxes[&1].queued.store(0, Ordering::Release);
            let message = Element::new("message", NS_CLIENT)
                .attr("to", "lsim@conference.localhost")
                .attr("type", "groupchat")
                .child(Element::new("body", NS_CLIENT).text(big.as_str()));
            let outputs = core.hub.stanza(1, message);
            core.dispatch(outputs);
            sent += 1;
            assert!(sent < 20, "slow was never closed");
        }
        // Far below the 1,024 stanzas of the count bound.
        assert!(sent <= 7, "{sent}");
        assert!(slow_queued.load(Ordering::Acquire) <= 64 * 1024);
        assert_eq!(*slow_kill.borrow(), Some(Ending::Error("policy-violation")));
        assert_eq!(*fast_kill.borrow(), None);
        assert_eq!(core.hub.occupants("lsim"), vec!["fast"]);
        // A stanza larger than the whole budget still goes into an empty queue.
        let (mut lone, mut lone_rx, _k) = outbox_bytes(4, 100);
        assert!(
            lone.push(&Element::new("message", NS_CLIENT).child(Element::new("body", NS_CLIENT).text(big.as_str())))
        );
        assert!(!lone.push(&Element::new("message", NS_CLIENT)));
        assert!(lone_rx.try_recv().unwrap().contains(big.as_str()));
    }

    /// The writer joins what is queued into few writes, sends it all, and
    /// gives the bytes back to the budget.
    #[tokio::test]
    async fn the_writer_batches_the_queue_and_releases_its_bytes() {
        let (ours, mut theirs) = tokio::io::duplex(1 << 20);
        let (_r, w) = tokio::io::split(Box::new(ours) as Io);
        let (mut o, rx, kill_rx) = outbox_bytes(4096, 1 << 20);
        for i in 0..1000 {
            assert!(o.push(&Element::new("presence", NS_CLIENT).attr("id", i.to_string())));
        }
        let queued = o.queued.clone();
        let total = queued.load(Ordering::Acquire);
        let Outbox { tx, kill: _keep, .. } = o;
        drop(tx);
        write_session(w, rx, queued.clone(), kill_rx, Duration::from_secs(5)).await;
        let mut got = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut theirs, &mut got).await.unwrap();
        assert_eq!(got.matches("<presence").count(), 1000);
        assert_eq!(got.len(), total + "</stream:stream>".len());
        assert!(got.ends_with("</stream:stream>"));
        assert_eq!(queued.load(Ordering::Acquire), 0);
    }

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut b = Bucket::new(10, 5);
        b.last = start;
        assert_eq!((0..10).filter(|_| b.take(start)).count(), 5);
        assert!(b.take(start + Duration::from_millis(100)));
        assert!(!b.take(start + Duration::from_millis(100)));
        let mut unlimited = Bucket::new(0, 0);
        assert!((0..10_000).all(|_| unlimited.take(start)));
    }

    #[test]
    fn negotiation_stops_at_every_sasl_step_and_starttls() {
        assert!(negotiation_stop(&Element::new("starttls", NS_TLS)));
        assert!(negotiation_stop(&Element::new("auth", NS_SASL)));
        assert!(negotiation_stop(&Element::new("response", NS_SASL)));
        assert!(!negotiation_stop(&Element::new("message", NS_CLIENT)));
    }
}
