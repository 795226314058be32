//! The connection sequence ([`connect`]): TCP, STARTTLS, SASL, then
//! resource binding or the resumption of an earlier session, up to a ready
//! [`Session`].
//!
//! Owns the order of the steps, the stream restarts between them and the
//! choice of SASL mechanism. It must not keep a connection alive or
//! reconnect (the client task does) nor hold SASL's state machines
//! ([`crate::xmpp::sasl`] does).

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use super::session::{write_element, write_raw};
use super::{ClientConfig, ClientError, NS_BIND, NS_SESSION, Resumption, Session, TlsMode};
use crate::xmpp::element::Element;
use crate::xmpp::jid::Jid;
use crate::xmpp::sasl::{self, ClientSasl, Mechanism};
use crate::xmpp::sm;
use crate::xmpp::stanza::{Iq, IqType};
use crate::xmpp::stream::{
    Handback, NS_CLIENT, NS_SASL, NS_STREAMS, NS_TLS, StreamEvent, StreamEvents, is_restart_point, spawn_reader,
    spawn_reader_until,
};
use crate::xmpp::tls::client_config;

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
pub(super) async fn next_stanza(events: &mut StreamEvents, step: &'static str) -> Result<Element, ClientError> {
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

/// Connects, secures, authenticates and binds: a ready [`Session`].
pub async fn connect(cfg: &ClientConfig) -> Result<Session, ClientError> {
    connect_resuming(cfg, None).await
}

/// [`connect`], resuming the session `resume` names when the server still
/// holds it ([`Session::resumed`]); binding anew otherwise.
pub async fn connect_resuming(cfg: &ClientConfig, resume: Option<&Resumption>) -> Result<Session, ClientError> {
    timeout(cfg.connect_timeout, connect_inner(cfg, resume, None)).await.map_err(|_| ClientError::Timeout("connect"))?
}

/// [`connect`] for the first time with an invitation: its `token` is
/// presented and `cfg`'s user registered with `cfg`'s password before
/// logging in (XEP-0401 and XEP-0077).
pub async fn enroll(cfg: &ClientConfig, token: &str) -> Result<Session, ClientError> {
    timeout(cfg.connect_timeout, connect_inner(cfg, None, Some(token)))
        .await
        .map_err(|_| ClientError::Timeout("enrollment"))?
}

async fn connect_inner(
    cfg: &ClientConfig,
    resume: Option<&Resumption>,
    preauth: Option<&str>,
) -> Result<Session, ClientError> {
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
        return authenticate_and_bind(cfg, events, handle, w, features, false, resume, preauth).await;
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
    authenticate_and_bind(cfg, events, handle, w, features, true, resume, preauth).await
}

pub(super) fn choose_mechanism(
    cfg: &ClientConfig,
    features: &Element,
    encrypted: bool,
) -> Result<Mechanism, ClientError> {
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

#[allow(clippy::too_many_arguments)]
async fn authenticate_and_bind<R, W>(
    cfg: &ClientConfig,
    mut events: StreamEvents,
    handle: JoinHandle<Option<Handback<R>>>,
    mut w: W,
    features: Element,
    encrypted: bool,
    resume: Option<&Resumption>,
    preauth: Option<&str>,
) -> Result<Session, ClientError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    if let Some(token) = preauth {
        super::enroll::register(cfg, &mut events, &mut w, &features, encrypted, token).await?;
    }
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

pub(super) fn stanza_error_condition(e: &Element) -> String {
    e.get_child("error", NS_CLIENT)
        .and_then(|err| err.elements().find(|c| c.name != "text"))
        .map(|c| c.name.clone())
        .unwrap_or_else(|| "undefined-condition".into())
}
