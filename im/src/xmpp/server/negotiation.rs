//! A connection up to its bound resource: the connection task, the
//! client's stream headers, STARTTLS, the stream restarts around SASL and
//! resource binding (or a request to resume a managed session).
//!
//! Owns the connection before it is bound: its deadline, its transport
//! (taken back from the parser at every STARTTLS or SASL element) and how
//! it ends when negotiation fails. It must not check passwords (SASL under
//! the login guard is `auth`), route stanzas (the hub does) nor parse XML
//! itself (`xmpp::stream` does).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::register::{self, Registration};
use super::shared::Shared;
use super::transport::{Io, Replay};
use super::{NS_BIND, header_xml};
use crate::xmpp::element::Element;
use crate::xmpp::hub::{NS_SESSION, NS_STANZAS, stanza_kind_error};
use crate::xmpp::jid::Jid;
use crate::xmpp::sasl::{Mechanism, ServerSasl};
use crate::xmpp::sm;
use crate::xmpp::stream::{
    NS_CLIENT, NS_SASL, NS_STREAMS, NS_TLS, StreamEvent, StreamEvents, StreamHeader, spawn_reader, spawn_reader_until,
    stream_error_xml,
};

/// Where a negotiation parser stops so that its transport can be taken
/// back: STARTTLS, and every SASL step (the server only knows after
/// checking it whether the stream restarts).
pub(super) fn negotiation_stop(e: &Element) -> bool {
    e.is("starttls", NS_TLS) || (e.ns == NS_SASL && matches!(e.name.as_str(), "auth" | "response" | "abort"))
}

/// The header a continuing negotiation parser starts with.
const CONTINUATION_HEADER: &str =
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";

/// Why a connection ends before it is bound.
#[derive(Debug)]
pub(super) enum Fail {
    /// Send this stream error.
    Stream(&'static str),
    /// The peer closed its stream; close ours.
    Closed,
    /// Nothing can or need be sent.
    Quiet,
}

/// How a negotiation parser's run ended.
pub(super) enum Segment {
    StartTls,
    /// A SASL step was answered; the same stream goes on.
    Continue,
    /// SASL succeeded for this user (lowercase); the stream restarts.
    Authenticated(String),
}

pub(super) struct Conn {
    pub(super) shared: Arc<Shared>,
    pub(super) w: Option<WriteHalf<Io>>,
    deadline: Instant,
    pub(super) encrypted: bool,
    /// Whether our header for the current stream has gone out.
    header_sent: bool,
    pub(super) sasl: Option<ServerSasl>,
    pub(super) sasl_attempted: bool,
    pub(super) failures: u32,
    /// The client's address, for the login guard.
    pub(super) peer: SocketAddr,
    /// The user name the current SASL exchange is about, once named.
    pub(super) sasl_user: Option<String>,
    /// Enrollment by invitation on this connection.
    registration: Registration,
}

/// A session that has bound its resource.
pub(super) struct Bound {
    pub(super) events: StreamEvents,
    pub(super) jid: Jid,
    pub(super) bind_id: String,
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

pub(super) async fn serve(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr, _permit: OwnedSemaphorePermit) {
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
        registration: Registration::default(),
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

    pub(super) async fn send(&mut self, e: &Element) -> Result<(), Fail> {
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
        if self.registration_open() {
            features = features.child(Element::new("register", register::NS_REGISTER_FEATURE));
        }
        features
    }

    /// Whether this stream may enroll by invitation: the server takes
    /// invitations and the password would travel encrypted.
    fn registration_open(&self) -> bool {
        let config = &self.shared.config;
        config.enroll.is_some() && (self.encrypted || config.allow_plain_unencrypted)
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
            if register::is_registration(&e)
                && self.registration_open()
                && let Some(enroll) = self.shared.config.enroll.clone()
            {
                let reply = register::answer(&e, &mut self.registration, enroll.as_ref());
                self.send(&reply).await?;
                // Tokens are 128 random bits: a stream that keeps guessing is closed.
                if self.registration.refused >= self.shared.config.max_auth_failures.max(1) {
                    return Err(Fail::Stream("policy-violation"));
                }
                continue;
            }
            // A stanza before authentication is not-authorized (RFC 6120 §6.4.1).
            return Err(Fail::Stream(stanza_kind_error(&e).unwrap_or("not-authorized")));
        }
    }
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

fn random_hex(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    if getrandom::fill(&mut raw).is_err() {
        static FALLBACK: AtomicU64 = AtomicU64::new(0);
        return format!("{:x}", FALLBACK.fetch_add(1, Ordering::Relaxed));
    }
    raw.iter().map(|b| format!("{b:02x}")).collect()
}
