//! The XMPP client: one connection set up end to end ([`connect`]: TCP,
//! STARTTLS, SASL, resource bind) and a long-lived [`Client`] task that
//! keeps it alive (XEP-0199 pings), reconnects with backoff and re-joins
//! its rooms.
//!
//! Owns the connection sequence and the reconnect policy. Stanza meaning
//! lives elsewhere: SASL in [`super::sasl`], room state in
//! [`super::room`], payloads in [`super::payload`]. It must not touch the
//! multicast transport or keys.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use tokio_rustls::TlsConnector;
use zeroize::Zeroizing;

use super::element::Element;
use super::jid::Jid;
use super::room::{Room, RoomEvent, is_delayed};
use super::sasl::{self, ClientSasl, Mechanism};
use super::sm::{self, Unacked};
use super::stanza::{Iq, IqType, Message, Presence};
use super::stream::{
    Handback, Limits, NS_CLIENT, NS_SASL, NS_STREAMS, NS_TLS, StreamError, StreamEvent, StreamEvents, is_restart_point,
    spawn_reader, spawn_reader_until,
};
use super::tls::{Trust, client_config};

/// Resource binding (RFC 6120 §7).
pub const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
/// Legacy session establishment (RFC 3921), still asked for by some servers.
pub const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
/// XEP-0199 ping.
pub const NS_PING: &str = "urn:xmpp:ping";
/// XEP-0030 service discovery (info).
pub const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";

/// Whether to use STARTTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Never (test set-ups and trusted loopback only).
    Disabled,
    /// Use it when the server offers it, go on in the clear otherwise.
    IfOffered,
    /// Refuse a server that does not offer it.
    Required,
}

/// How to reach and log into a server.
#[derive(Clone)]
pub struct ClientConfig {
    /// Our bare JID (`user@domain`).
    pub jid: Jid,
    /// The password.
    pub password: Zeroizing<String>,
    /// Resource to ask for; the server picks one if `None`.
    pub resource: Option<String>,
    /// `host:port` to connect to; `domain:5222` if `None`.
    pub server: Option<String>,
    /// STARTTLS policy.
    pub tls: TlsMode,
    /// How to trust the server's certificate.
    pub trust: Trust,
    /// Mechanisms we accept, in preference order.
    pub mechanisms: Vec<Mechanism>,
    /// Allow PLAIN without TLS (test set-ups only).
    pub allow_plain_unencrypted: bool,
    /// Limit for the whole connection sequence.
    pub connect_timeout: Duration,
    /// Ping the server this often when connected.
    pub keepalive: Duration,
    /// A ping unanswered this long means the connection is dead.
    pub keepalive_timeout: Duration,
    /// Reconnect after a lost connection.
    pub reconnect: bool,
    /// First reconnect delay; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Limits on what the server may send.
    pub limits: Limits,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("jid", &self.jid.to_string())
            .field("server", &self.server)
            .field("tls", &self.tls)
            .field("mechanisms", &self.mechanisms)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// Defaults: STARTTLS required and checked against the system roots,
    /// SCRAM-SHA-256 then SCRAM-SHA-1 then PLAIN (PLAIN over TLS only),
    /// a ping after 10 s of silence answered within 10 s, reconnect from
    /// 0.5 s up to 5 s.
    ///
    /// Tuned for radio links that drop for seconds to minutes: a cut is
    /// noticed within 20 s and a link that comes back is tried within 5 s,
    /// so the session resumes (XEP-0198) instead of waiting on TCP's own
    /// retransmission backoff (measured: ≈ 1 s against 6.5–10 s after a
    /// 20 s cut, BENCHMARKS.md). A ping is one small stanza per 10 s.
    pub fn new(jid: Jid, password: &str) -> ClientConfig {
        ClientConfig {
            jid: jid.bare(),
            password: Zeroizing::new(password.to_string()),
            resource: None,
            server: None,
            tls: TlsMode::Required,
            trust: Trust::SystemRoots,
            mechanisms: Mechanism::ALL.to_vec(),
            allow_plain_unencrypted: false,
            connect_timeout: Duration::from_secs(20),
            keepalive: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(10),
            reconnect: true,
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(5),
            limits: Limits::default(),
        }
    }

    fn server_addr(&self) -> String {
        self.server.clone().unwrap_or_else(|| format!("{}:5222", self.jid.domain))
    }

    fn user(&self) -> &str {
        self.jid.local.as_deref().unwrap_or_default()
    }
}

/// Why a connection could not be set up or went down.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TCP connect or a read/write failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A step took too long.
    #[error("timed out during {0}")]
    Timeout(&'static str),
    /// The server's stream could not be parsed.
    #[error("server stream: {0}")]
    Stream(#[from] StreamError),
    /// The server sent `<stream:error/>`.
    #[error("server closed the stream with <{0}/>")]
    StreamErrorReceived(String),
    /// The server closed the stream.
    #[error("server closed the stream")]
    Closed,
    /// TLS failed (handshake, certificate check).
    #[error("TLS: {0}")]
    Tls(String),
    /// TLS is required and the server does not offer it.
    #[error("the server does not offer STARTTLS and TLS is required")]
    TlsRequired,
    /// No mechanism we accept is offered (PLAIN without TLS counts as
    /// not acceptable).
    #[error("no acceptable SASL mechanism (server offers {0:?})")]
    NoMechanism(Vec<String>),
    /// Our side of SASL refused the exchange.
    #[error("SASL: {0}")]
    Sasl(#[from] sasl::Failure),
    /// The server refused the login.
    #[error("{}", refusal(.0))]
    AuthRejected(String),
    /// Resource binding failed.
    #[error("resource bind failed: {0}")]
    Bind(String),
    /// The server did something the protocol does not allow.
    #[error("protocol: {0}")]
    Protocol(String),
}

/// What a SASL failure condition means for the person who typed the password.
fn refusal(condition: &str) -> String {
    match condition {
        "not-authorized" => "the server refused the login: wrong user name or password (<not-authorized/>)".into(),
        "temporary-auth-failure" => {
            "the server refuses logins from here for now after too many failures: wait a minute (<temporary-auth-failure/>)"
                .into()
        }
        "account-disabled" => "the server has disabled this account (<account-disabled/>)".into(),
        other => format!("the server refused the login (<{other}/>)"),
    }
}

impl ClientError {
    /// Whether retrying cannot help (wrong password, certificate mismatch,
    /// no common mechanism): the client stops instead of reconnecting.
    pub fn is_fatal(&self) -> bool {
        // temporary-auth-failure: too many failed logins, refused for a
        // while (the server's login guard); retrying later can help.
        matches!(self, ClientError::AuthRejected(c) if c != "temporary-auth-failure")
            || matches!(
                self,
                ClientError::Tls(_)
                    | ClientError::TlsRequired
                    | ClientError::NoMechanism(_)
                    | ClientError::Sasl(sasl::Failure::ServerNotAuthenticated(_))
            )
    }
}

type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

async fn write_raw<W: AsyncWrite + Unpin + ?Sized>(w: &mut W, text: &str) -> io::Result<()> {
    w.write_all(text.as_bytes()).await?;
    w.flush().await
}

async fn write_element<W: AsyncWrite + Unpin + ?Sized>(w: &mut W, e: &Element) -> io::Result<()> {
    write_raw(w, &e.to_xml_in(NS_CLIENT)).await
}

fn header(domain: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAMS}' \
         to='{domain}' version='1.0' xml:lang='en'>"
    )
}

async fn next_event(events: &mut StreamEvents, step: &'static str) -> Result<StreamEvent, ClientError> {
    match events.recv().await {
        Some(Ok(ev)) => Ok(ev),
        Some(Err(e)) => Err(ClientError::Stream(e)),
        None => Err(ClientError::Protocol(format!("stream ended during {step}"))),
    }
}

/// The next top-level element; a `<stream:error/>` or the end of the
/// stream is an error.
async fn next_stanza(events: &mut StreamEvents, step: &'static str) -> Result<Element, ClientError> {
    match next_event(events, step).await? {
        StreamEvent::Stanza(e) if e.is("error", NS_STREAMS) => Err(ClientError::StreamErrorReceived(
            e.elements().next().map(|c| c.name.clone()).unwrap_or_else(|| "undefined-condition".into()),
        )),
        StreamEvent::Stanza(e) => Ok(e),
        StreamEvent::End => Err(ClientError::Closed),
        StreamEvent::Header(_) => Err(ClientError::Protocol(format!("second stream header during {step}"))),
    }
}

/// Reads the header, then the features.
async fn header_and_features(events: &mut StreamEvents) -> Result<Element, ClientError> {
    match next_event(events, "stream header").await? {
        StreamEvent::Header(h) if h.version.as_deref() == Some("1.0") => {}
        StreamEvent::Header(h) => {
            return Err(ClientError::Protocol(format!("stream version {:?}, need 1.0", h.version)));
        }
        StreamEvent::Stanza(e) if e.is("error", NS_STREAMS) => {
            return Err(ClientError::StreamErrorReceived(
                e.elements().next().map(|c| c.name.clone()).unwrap_or_default(),
            ));
        }
        _ => return Err(ClientError::Protocol("no stream header".into())),
    }
    let features = next_stanza(events, "stream features").await?;
    if !features.is("features", NS_STREAMS) {
        return Err(ClientError::Protocol(format!("expected <stream:features/>, got <{}/>", features.name)));
    }
    Ok(features)
}

async fn handback<R>(handle: JoinHandle<Option<Handback<R>>>) -> Result<R, ClientError> {
    let hb = handle.await.map_err(|e| ClientError::Protocol(format!("reader task: {e}")))?;
    let hb = hb.ok_or_else(|| ClientError::Protocol("stream ended at a restart point".into()))?;
    if !hb.buffered.is_empty() {
        // The server must wait for our new header (or TLS handshake);
        // bytes sent before that could be injected plaintext.
        return Err(ClientError::Protocol("server sent data before the stream restart".into()));
    }
    Ok(hb.transport)
}

/// One logged-in, bound XMPP connection.
pub struct Session {
    /// Our full JID as bound.
    pub jid: Jid,
    /// Whether the stream runs over TLS.
    pub encrypted: bool,
    /// The SASL mechanism used.
    pub mechanism: Mechanism,
    writer: BoxWrite,
    events: StreamEvents,
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

/// Connects, secures, authenticates and binds: a ready [`Session`].
pub async fn connect(cfg: &ClientConfig) -> Result<Session, ClientError> {
    connect_resuming(cfg, None).await
}

/// [`connect`], resuming the session `resume` names when the server still
/// holds it ([`Session::resumed`]); binding anew otherwise.
pub async fn connect_resuming(cfg: &ClientConfig, resume: Option<&Resumption>) -> Result<Session, ClientError> {
    timeout(cfg.connect_timeout, connect_inner(cfg, resume)).await.map_err(|_| ClientError::Timeout("connect"))?
}

async fn connect_inner(cfg: &ClientConfig, resume: Option<&Resumption>) -> Result<Session, ClientError> {
    let tcp = TcpStream::connect(cfg.server_addr()).await?;
    tcp.set_nodelay(true)?;
    let (r, mut w) = tcp.into_split();
    write_raw(&mut w, &header(&cfg.jid.domain)).await?;
    let (mut events, handle) = spawn_reader_until(r, cfg.limits, is_restart_point);
    let features = header_and_features(&mut events).await?;
    let offered = features.get_child("starttls", NS_TLS).is_some();
    if !offered || cfg.tls == TlsMode::Disabled {
        if cfg.tls == TlsMode::Required {
            return Err(ClientError::TlsRequired);
        }
        return authenticate_and_bind(cfg, events, handle, w, features, false, resume).await;
    }
    write_element(&mut w, &Element::new("starttls", NS_TLS)).await?;
    let answer = next_stanza(&mut events, "STARTTLS").await?;
    if !answer.is("proceed", NS_TLS) {
        return Err(ClientError::Tls(format!("server answered STARTTLS with <{}/>", answer.name)));
    }
    drop(events);
    let r = handback(handle).await?;
    let tcp = r.reunite(w).map_err(|e| ClientError::Protocol(e.to_string()))?;
    let tls_config = client_config(&cfg.trust).map_err(|e| ClientError::Tls(e.to_string()))?;
    let name = rustls::pki_types::ServerName::try_from(cfg.jid.domain.clone())
        .map_err(|e| ClientError::Tls(format!("server name {}: {e}", cfg.jid.domain)))?;
    let tls = TlsConnector::from(tls_config)
        .connect(name, tcp)
        .await
        .map_err(|e| ClientError::Tls(e.to_string().trim_start_matches("unexpected error: ").to_string()))?;
    let (r, mut w) = tokio::io::split(tls);
    write_raw(&mut w, &header(&cfg.jid.domain)).await?;
    let (mut events, handle) = spawn_reader_until(r, cfg.limits, is_restart_point);
    let features = header_and_features(&mut events).await?;
    authenticate_and_bind(cfg, events, handle, w, features, true, resume).await
}

fn choose_mechanism(cfg: &ClientConfig, features: &Element, encrypted: bool) -> Result<Mechanism, ClientError> {
    let offered: Vec<String> = features
        .get_child("mechanisms", NS_SASL)
        .map(|m| m.children_named("mechanism", NS_SASL).map(Element::text_content).collect())
        .unwrap_or_default();
    cfg.mechanisms
        .iter()
        .copied()
        .filter(|m| *m != Mechanism::Plain || encrypted || cfg.allow_plain_unencrypted)
        .find(|m| offered.iter().any(|o| o.trim() == m.name()))
        .ok_or(ClientError::NoMechanism(offered))
}

async fn authenticate_and_bind<R, W>(
    cfg: &ClientConfig,
    mut events: StreamEvents,
    handle: JoinHandle<Option<Handback<R>>>,
    mut w: W,
    features: Element,
    encrypted: bool,
    resume: Option<&Resumption>,
) -> Result<Session, ClientError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let mechanism = choose_mechanism(cfg, &features, encrypted)?;
    let mut exchange = ClientSasl::new(mechanism, cfg.user(), &cfg.password);
    let initial = exchange.initial()?;
    let auth = Element::new("auth", NS_SASL).attr("mechanism", mechanism.name()).text(sasl::encode(&initial));
    write_element(&mut w, &auth).await?;
    loop {
        let e = next_stanza(&mut events, "SASL").await?;
        if e.is("challenge", NS_SASL) {
            let data = sasl::decode(&e.text_content())?;
            let response = match exchange.challenge(&data) {
                Ok(r) => r,
                Err(f) => {
                    let _ = write_element(&mut w, &Element::new("abort", NS_SASL)).await;
                    return Err(f.into());
                }
            };
            write_element(&mut w, &Element::new("response", NS_SASL).text(sasl::encode(&response))).await?;
        } else if e.is("success", NS_SASL) {
            exchange.success(&sasl::decode(&e.text_content())?)?;
            break;
        } else if e.is("failure", NS_SASL) {
            let condition =
                e.elements().find(|c| c.name != "text").map(|c| c.name.clone()).unwrap_or_else(|| "failure".into());
            return Err(ClientError::AuthRejected(condition));
        } else {
            return Err(ClientError::Protocol(format!("unexpected <{}/> during SASL", e.name)));
        }
    }
    drop(events);
    let r = handback(handle).await?;
    write_raw(&mut w, &header(&cfg.jid.domain)).await?;
    let mut events = spawn_reader(r, cfg.limits);
    let features = header_and_features(&mut events).await?;
    let sm_offered = features.get_child("sm", sm::NS_SM).is_some();
    if let (Some(r), true) = (resume, sm_offered) {
        write_element(&mut w, &sm::resume(&r.id, r.handled)).await?;
        let e = next_stanza(&mut events, "stream resumption").await?;
        if e.is("resumed", sm::NS_SM) {
            let h = sm::h_of(&e).ok_or_else(|| ClientError::Protocol("<resumed/> without h".into()))?;
            let writer = Box::new(w);
            return Ok(Session {
                jid: r.jid.clone(),
                encrypted,
                mechanism,
                writer,
                events,
                sm_offered,
                resumed: Some(h),
            });
        }
        // <failed/>: the server no longer holds it; bind anew on this stream.
    }
    if features.get_child("bind", NS_BIND).is_none() {
        return Err(ClientError::Bind("server offers no resource binding".into()));
    }
    let mut bind = Element::new("bind", NS_BIND);
    if let Some(res) = &cfg.resource {
        bind = bind.child(Element::new("resource", NS_BIND).text(res.as_str()));
    }
    let iq = Iq { kind: IqType::Set, id: "bind-1".into(), to: None, from: None, child: Some(bind) };
    write_element(&mut w, &(&iq).into()).await?;
    let jid = loop {
        let e = next_stanza(&mut events, "resource bind").await?;
        let Ok(iq) = Iq::try_from(&e) else { continue };
        if iq.id != "bind-1" {
            continue;
        }
        if iq.kind != IqType::Result {
            return Err(ClientError::Bind(stanza_error_condition(&e)));
        }
        let text = iq.child.as_ref().and_then(|b| b.get_child("jid", NS_BIND)).map(Element::text_content);
        let jid = text.as_deref().and_then(|t| Jid::parse(t).ok()).filter(Jid::is_full);
        break jid.ok_or_else(|| ClientError::Bind("no full JID in the bind result".into()))?;
    };
    // RFC 3921 sessions: only when the server says it is not optional.
    if let Some(session) = features.get_child("session", NS_SESSION)
        && session.get_child("optional", NS_SESSION).is_none()
    {
        let iq = Iq {
            kind: IqType::Set,
            id: "session-1".into(),
            to: None,
            from: None,
            child: Some(Element::new("session", NS_SESSION)),
        };
        write_element(&mut w, &(&iq).into()).await?;
        loop {
            let e = next_stanza(&mut events, "session").await?;
            if e.get_attr("id") == Some("session-1") {
                break;
            }
        }
    }
    Ok(Session { jid, encrypted, mechanism, writer: Box::new(w), events, sm_offered, resumed: None })
}

fn stanza_error_condition(e: &Element) -> String {
    e.get_child("error", NS_CLIENT)
        .and_then(|err| err.elements().find(|c| c.name != "text"))
        .map(|c| c.name.clone())
        .unwrap_or_else(|| "undefined-condition".into())
}

// ---------------------------------------------------------------- Client

/// What the client reports.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// Connected and bound (again, after a reconnect).
    Online {
        /// Our full JID.
        jid: Jid,
        /// Whether the stream is encrypted.
        encrypted: bool,
        /// The SASL mechanism used.
        mechanism: Mechanism,
        /// The earlier session was resumed (XEP-0198): rooms and presence
        /// are as they were, and nothing was lost either way.
        resumed: bool,
    },
    /// The connection failed or dropped.
    Offline {
        /// Why.
        error: String,
        /// When the next attempt comes, if any.
        retry_in: Option<Duration>,
    },
    /// Something happened in a room.
    Room {
        /// The room's bare JID.
        room: Jid,
        /// What.
        event: RoomEvent,
    },
    /// A message not from a room we are in.
    Message(Message),
    /// The client stopped (asked to, or after a fatal error).
    Stopped {
        /// The fatal error, if that was the cause.
        error: Option<String>,
    },
}

enum Command {
    Join { room: Jid, nick: String, history: u32 },
    Leave { room: Jid },
    Send(Element),
    RoomPayload { room: Jid, payload: Option<Element> },
    Stop,
}

/// A connection that stays up: the task reconnects and re-joins rooms.
pub struct Client {
    commands: mpsc::Sender<Command>,
    events: mpsc::Receiver<ClientEvent>,
    task: JoinHandle<()>,
    next_id: u64,
    prefix: String,
}

/// Messages held while offline and sent after reconnecting.
const MAX_QUEUED: usize = 256;

impl Client {
    /// Starts the client task. Events arrive on [`Client::next_event`].
    pub fn spawn(cfg: ClientConfig) -> Client {
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (ev_tx, ev_rx) = mpsc::channel(1024);
        let mut raw = [0u8; 6];
        let _ = getrandom::fill(&mut raw);
        let prefix = raw.iter().map(|b| format!("{b:02x}")).collect();
        let task = tokio::spawn(run(cfg, cmd_rx, ev_tx));
        Client { commands: cmd_tx, events: ev_rx, task, next_id: 0, prefix }
    }

    /// The next event; `None` after the task ended.
    pub async fn next_event(&mut self) -> Option<ClientEvent> {
        self.events.recv().await
    }

    /// A fresh stanza id.
    pub fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("{}-{}", self.prefix, self.next_id)
    }

    /// Joins `room` as `nick` (kept across reconnects); asks for `history`
    /// past messages.
    pub async fn join(&self, room: Jid, nick: &str, history: u32) {
        let _ = self.commands.send(Command::Join { room, nick: nick.to_string(), history }).await;
    }

    /// Leaves `room`.
    pub async fn leave(&self, room: Jid) {
        let _ = self.commands.send(Command::Leave { room }).await;
    }

    /// Sends a groupchat message to `room`; returns its id.
    pub async fn send_group(&mut self, room: &Jid, body: Option<&str>, payload: Option<Element>) -> String {
        let id = self.new_id();
        let msg = Message {
            id: Some(id.clone()),
            body: body.map(str::to_string),
            payload,
            ..Message::new(super::stanza::MessageType::Groupchat, room.bare().to_string())
        };
        let _ = self.commands.send(Command::Send((&msg).into())).await;
        id
    }

    /// Sends any stanza (queued while offline).
    pub async fn send(&self, e: Element) {
        let _ = self.commands.send(Command::Send(e)).await;
    }

    /// Sets the `urn:lsim:0` payload of our presence in `room`.
    pub async fn set_room_payload(&self, room: Jid, payload: Option<Element>) {
        let _ = self.commands.send(Command::RoomPayload { room, payload }).await;
    }

    /// Leaves rooms, closes the stream and waits for the task.
    pub async fn stop(self) {
        let _ = self.commands.send(Command::Stop).await;
        let _ = self.task.await;
    }
}

struct State {
    cfg: ClientConfig,
    rooms: BTreeMap<Jid, (Room, u32)>,
    queue: VecDeque<Element>,
    events: mpsc::Sender<ClientEvent>,
    /// Stream management (XEP-0198) of the current session, once asked for.
    sm: Option<Managed>,
}

/// Our side of stream management: what we handled, what the server has
/// not acknowledged, and the id to resume with.
struct Managed {
    /// Set once the server enabled resumption.
    id: Option<String>,
    handled: u32,
    unacked: Unacked<Element>,
    jid: Jid,
}

/// Most bytes of unacknowledged stanzas kept for resending.
const MAX_UNACKED_BYTES: usize = 1 << 20;
/// Ask the server to acknowledge after this many stanzas.
const ACK_EVERY: usize = 8;

impl State {
    /// How to resume, when the session can be.
    fn resumption(&self) -> Option<Resumption> {
        let m = self.sm.as_ref()?;
        Some(Resumption { id: m.id.clone()?, handled: m.handled, jid: m.jid.clone() })
    }
}

/// Sends a stanza, keeping it for resending until the server acknowledges it.
async fn send_counted(st: &mut State, session: &mut Session, e: &Element) -> Result<(), ClientError> {
    session.send(e).await?;
    if let Some(m) = st.sm.as_mut()
        && sm::is_stanza(e)
    {
        if !m.unacked.push(e.clone(), e.to_xml().len()) {
            // Too much unacknowledged: resumption can no longer lose nothing.
            st.sm = None;
            return Ok(());
        }
        if m.unacked.len() % ACK_EVERY == 0 {
            session.send(&sm::request()).await?;
        }
    }
    Ok(())
}

impl State {
    async fn emit(&self, ev: ClientEvent) {
        let _ = self.events.send(ev).await;
    }

    fn queue(&mut self, e: Element) {
        if self.queue.len() == MAX_QUEUED {
            self.queue.pop_front();
        }
        self.queue.push_back(e);
    }
}

async fn run(cfg: ClientConfig, mut commands: mpsc::Receiver<Command>, events: mpsc::Sender<ClientEvent>) {
    let mut st = State { cfg, rooms: BTreeMap::new(), queue: VecDeque::new(), events, sm: None };
    let mut backoff = st.cfg.backoff_min;
    loop {
        let resumption = st.resumption();
        let session = match connect_resuming(&st.cfg, resumption.as_ref()).await {
            Ok(s) => s,
            Err(e) => {
                if e.is_fatal() || !st.cfg.reconnect {
                    st.emit(ClientEvent::Offline { error: e.to_string(), retry_in: None }).await;
                    st.emit(ClientEvent::Stopped { error: Some(e.to_string()) }).await;
                    return;
                }
                let wait = jitter(backoff);
                st.emit(ClientEvent::Offline { error: e.to_string(), retry_in: Some(wait) }).await;
                backoff = (backoff * 2).min(st.cfg.backoff_max);
                if !wait_offline(&mut st, &mut commands, wait).await {
                    st.emit(ClientEvent::Stopped { error: None }).await;
                    return;
                }
                continue;
            }
        };
        backoff = st.cfg.backoff_min;
        // Come back as the same resource: the server then replaces a session
        // of ours it still holds (RFC 6120 §7.7.2.2) instead of keeping a
        // ghost of it in our rooms until it times out.
        if st.cfg.resource.is_none() {
            st.cfg.resource = session.jid.resource.clone();
        }
        if resumption.is_some() && session.resumed.is_none() {
            // The server no longer held our session: we were out of our rooms after all.
            st.sm = None;
            left_rooms(&mut st).await;
        }
        let ev = ClientEvent::Online {
            jid: session.jid.clone(),
            encrypted: session.encrypted,
            mechanism: session.mechanism,
            resumed: session.resumed.is_some(),
        };
        st.emit(ev).await;
        match online(&mut st, &mut commands, session).await {
            Ok(()) => {
                st.emit(ClientEvent::Stopped { error: None }).await;
                return;
            }
            Err(e) => {
                // A stream error ends the session for good (the server is
                // going down, or replaced us); a dropped link does not.
                if matches!(e, ClientError::StreamErrorReceived(_)) {
                    st.sm = None;
                }
                // A session the server keeps for us stays in its rooms.
                if st.resumption().is_none() {
                    st.sm = None;
                    left_rooms(&mut st).await;
                }
                if !st.cfg.reconnect {
                    st.emit(ClientEvent::Offline { error: e.to_string(), retry_in: None }).await;
                    st.emit(ClientEvent::Stopped { error: Some(e.to_string()) }).await;
                    return;
                }
                let wait = jitter(st.cfg.backoff_min);
                st.emit(ClientEvent::Offline { error: e.to_string(), retry_in: Some(wait) }).await;
                if !wait_offline(&mut st, &mut commands, wait).await {
                    st.emit(ClientEvent::Stopped { error: None }).await;
                    return;
                }
            }
        }
    }
}

/// Our rooms are gone with the session: each is out until joined again.
async fn left_rooms(st: &mut State) {
    for (room, _) in st.rooms.values_mut() {
        if room.state() != super::room::JoinState::Out {
            room.disconnected();
            let _ = st.events.send(ClientEvent::Room { room: room.jid().clone(), event: RoomEvent::Left }).await;
        }
    }
}

/// 75–125 % of `d`, so a room full of clients does not reconnect in step.
fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    let r = u16::from_le_bytes(b) as f64 / u16::MAX as f64;
    d.mul_f64(0.75 + 0.5 * r)
}

/// Waits `wait` while offline, taking commands. False if asked to stop.
async fn wait_offline(st: &mut State, commands: &mut mpsc::Receiver<Command>, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return true,
            cmd = commands.recv() => match cmd {
                None | Some(Command::Stop) => return false,
                Some(Command::Join { room, nick, history }) => {
                    st.rooms.insert(room.bare(), (Room::new(room, &nick), history));
                }
                Some(Command::Leave { room }) => {
                    st.rooms.remove(&room.bare());
                }
                Some(Command::Send(e)) => st.queue(e),
                Some(Command::RoomPayload { room, payload }) => {
                    if let Some((r, _)) = st.rooms.get_mut(&room.bare()) {
                        r.set_payload(payload);
                    }
                }
            }
        }
    }
}

/// Runs one session. `Ok` when asked to stop; the error that ended it
/// otherwise.
async fn online(
    st: &mut State,
    commands: &mut mpsc::Receiver<Command>,
    mut session: Session,
) -> Result<(), ClientError> {
    match session.resumed {
        Some(h) => {
            // Resumed: everything the server had not handled goes again;
            // presence and rooms are as they were.
            let pending: Vec<Element> = match st.sm.as_mut() {
                Some(m) => match m.unacked.ack(h) {
                    Ok(()) => m.unacked.pending().cloned().collect(),
                    Err(_) => Vec::new(),
                },
                None => Vec::new(),
            };
            for e in &pending {
                session.send(e).await?;
            }
        }
        None => {
            if session.sm_offered {
                session.send(&sm::enable()).await?;
                st.sm = Some(Managed {
                    id: None,
                    handled: 0,
                    unacked: Unacked::new(MAX_UNACKED_BYTES),
                    jid: session.jid.clone(),
                });
            }
            let available: Element = (&Presence::new(super::stanza::PresenceType::Available)).into();
            send_counted(st, &mut session, &available).await?;
            let joins: Vec<Element> = st.rooms.values_mut().map(|(room, history)| room.join(*history)).collect();
            for join in &joins {
                send_counted(st, &mut session, join).await?;
            }
        }
    }
    while let Some(e) = st.queue.pop_front() {
        send_counted(st, &mut session, &e).await?;
    }
    let mut ping_due = Instant::now() + st.cfg.keepalive;
    let mut ping_sent: Option<(String, Instant)> = None;
    let mut ping_seq = 0u64;
    loop {
        let deadline = ping_sent.as_ref().map_or(ping_due, |(_, at)| *at + st.cfg.keepalive_timeout);
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                if ping_sent.is_some() {
                    return Err(ClientError::Timeout("keepalive ping"));
                }
                ping_seq += 1;
                let id = format!("ping-{ping_seq}");
                let iq = Iq {
                    kind: IqType::Get,
                    id: id.clone(),
                    to: Some(st.cfg.jid.domain.clone()),
                    from: None,
                    child: Some(Element::new("ping", NS_PING)),
                };
                send_counted(st, &mut session, &(&iq).into()).await?;
                ping_sent = Some((id, Instant::now()));
            }
            cmd = commands.recv() => match cmd {
                None | Some(Command::Stop) => {
                    for (room, _) in st.rooms.values_mut() {
                        if room.state() != super::room::JoinState::Out {
                            let _ = session.send(&room.leave()).await;
                        }
                    }
                    session.close().await;
                    return Ok(());
                }
                Some(Command::Join { room, nick, history }) => {
                    let mut r = Room::new(room.clone(), &nick);
                    send_counted(st, &mut session, &r.join(history)).await?;
                    st.rooms.insert(room.bare(), (r, history));
                }
                Some(Command::Leave { room }) => {
                    if let Some((mut r, _)) = st.rooms.remove(&room.bare()) {
                        send_counted(st, &mut session, &r.leave()).await?;
                    }
                }
                Some(Command::Send(e)) => send_counted(st, &mut session, &e).await?,
                Some(Command::RoomPayload { room, payload }) => {
                    if let Some((r, _)) = st.rooms.get_mut(&room.bare())
                        && let Some(p) = r.set_payload(payload)
                    {
                        send_counted(st, &mut session, &p).await?;
                    }
                }
            },
            incoming = session.recv() => {
                let e = match incoming {
                    None => return Err(ClientError::Closed),
                    Some(Err(e)) => return Err(e),
                    Some(Ok(e)) => e,
                };
                // Anything from the server shows the connection is alive.
                ping_due = Instant::now() + st.cfg.keepalive;
                if e.ns == sm::NS_SM {
                    if let Some(answer) = managed(st, &e) {
                        session.send(&answer).await?;
                    }
                    continue;
                }
                if let Some(m) = st.sm.as_mut()
                    && sm::is_stanza(&e)
                {
                    m.handled = m.handled.wrapping_add(1);
                }
                for reply in handle_incoming(st, &e, &mut ping_sent).await {
                    send_counted(st, &mut session, &reply).await?;
                }
            }
        }
    }
}

/// A stream management element from the server; returns what to answer.
fn managed(st: &mut State, e: &Element) -> Option<Element> {
    let m = st.sm.as_mut()?;
    match e.name.as_str() {
        "enabled" => {
            let resumable = matches!(e.get_attr("resume"), Some("true" | "1"));
            m.id = e.get_attr("id").filter(|_| resumable).map(str::to_string);
            None
        }
        "r" => Some(sm::ack(m.handled)),
        "a" => {
            // An ack for more than we sent: the count is lost, resumption with it.
            if sm::h_of(e).is_none_or(|h| m.unacked.ack(h).is_err()) {
                st.sm = None;
            }
            None
        }
        "failed" => {
            st.sm = None;
            None
        }
        _ => None,
    }
}

/// Handles one stanza; returns stanzas to send back.
async fn handle_incoming(st: &mut State, e: &Element, ping_sent: &mut Option<(String, Instant)>) -> Vec<Element> {
    let from_bare = e.get_attr("from").and_then(|f| Jid::parse(f).ok()).map(|j| j.bare());
    if e.is("iq", NS_CLIENT) {
        let Ok(iq) = Iq::try_from(e) else { return Vec::new() };
        if matches!(iq.kind, IqType::Result | IqType::Error) {
            if ping_sent.as_ref().is_some_and(|(id, _)| *id == iq.id) {
                *ping_sent = None;
            }
            return Vec::new();
        }
        return vec![answer_iq(&iq)];
    }
    if let Some(room_jid) = &from_bare
        && let Some((room, _)) = st.rooms.get_mut(room_jid)
    {
        let mut out = Vec::new();
        if e.is("presence", NS_CLIENT) {
            let Ok(p) = Presence::try_from(e) else { return Vec::new() };
            let (events, send) = room.handle_presence(&p);
            for event in events {
                let _ = st.events.send(ClientEvent::Room { room: room_jid.clone(), event }).await;
            }
            // A nick-conflict retry, the instant-room form, our payload.
            out = send;
        } else if e.is("message", NS_CLIENT) {
            let Ok(m) = Message::try_from(e) else { return Vec::new() };
            if m.kind == super::stanza::MessageType::Groupchat
                && let Some(RoomEvent::Message { nick, message, .. }) = room.handle_message(&m)
            {
                let event = RoomEvent::Message { nick, delayed: is_delayed(e), message };
                let _ = st.events.send(ClientEvent::Room { room: room_jid.clone(), event }).await;
                return Vec::new();
            }
            if m.kind != super::stanza::MessageType::Groupchat {
                let _ = st.events.send(ClientEvent::Message(m)).await;
            }
        }
        return out;
    }
    if e.is("message", NS_CLIENT)
        && let Ok(m) = Message::try_from(e)
    {
        let _ = st.events.send(ClientEvent::Message(m)).await;
    }
    Vec::new()
}

/// Our answer to an iq get/set: pings and disco#info; everything else is
/// service-unavailable (RFC 6120 §8.4).
fn answer_iq(iq: &Iq) -> Element {
    let child = iq.child.as_ref();
    let reply = |kind, child| Iq { kind, id: iq.id.clone(), to: iq.from.clone(), from: None, child };
    if iq.kind == IqType::Get && child.is_some_and(|c| c.is("ping", NS_PING)) {
        return (&reply(IqType::Result, None)).into();
    }
    if iq.kind == IqType::Get && child.is_some_and(|c| c.is("query", NS_DISCO_INFO)) {
        let mut q = Element::new("query", NS_DISCO_INFO).child(
            Element::new("identity", NS_DISCO_INFO).attr("category", "client").attr("type", "pc").attr("name", "lsim"),
        );
        for f in [NS_DISCO_INFO, NS_PING, super::stanza::NS_LSIM] {
            q = q.child(Element::new("feature", NS_DISCO_INFO).attr("var", f));
        }
        return (&reply(IqType::Result, Some(q))).into();
    }
    let error = Element::new("error", NS_CLIENT)
        .attr("type", "cancel")
        .child(Element::new("service-unavailable", super::room::NS_STANZAS));
    let mut e: Element = (&reply(IqType::Error, iq.child.clone())).into();
    e = e.child(error);
    e
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn mechanism_choice_respects_preference_and_plain_rule() {
        let mut cfg = ClientConfig::new(Jid::parse("a@x").unwrap(), "pw");
        let features = |mechs: &[&str]| {
            let mut m = Element::new("mechanisms", NS_SASL);
            for name in mechs {
                m = m.child(Element::new("mechanism", NS_SASL).text(*name));
            }
            Element::new("features", NS_STREAMS).child(m)
        };
        let all = features(&["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"]);
        assert_eq!(choose_mechanism(&cfg, &all, false).unwrap(), Mechanism::ScramSha256);
        let plain = features(&["PLAIN"]);
        assert!(matches!(choose_mechanism(&cfg, &plain, false), Err(ClientError::NoMechanism(_))));
        assert_eq!(choose_mechanism(&cfg, &plain, true).unwrap(), Mechanism::Plain);
        cfg.allow_plain_unencrypted = true;
        assert_eq!(choose_mechanism(&cfg, &plain, false).unwrap(), Mechanism::Plain);
        cfg.mechanisms = vec![Mechanism::ScramSha1];
        assert_eq!(choose_mechanism(&cfg, &all, false).unwrap(), Mechanism::ScramSha1);
    }

    #[test]
    fn iq_answers() {
        let ping = Iq {
            kind: IqType::Get,
            id: "p".into(),
            to: None,
            from: Some("x".into()),
            child: Some(Element::new("ping", NS_PING)),
        };
        let r = Iq::try_from(&answer_iq(&ping)).unwrap();
        assert_eq!((r.kind, r.id.as_str(), r.to.as_deref()), (IqType::Result, "p", Some("x")));
        let other = Iq {
            kind: IqType::Set,
            id: "q".into(),
            to: None,
            from: None,
            child: Some(Element::new("query", "jabber:iq:version")),
        };
        let r = answer_iq(&other);
        assert_eq!(r.get_attr("type"), Some("error"));
        assert_eq!(stanza_error_condition(&r), "service-unavailable");
    }
}
