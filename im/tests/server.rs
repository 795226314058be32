//! The embedded server end to end over TCP, driven by a minimal raw client
//! written here (XML strings out, `spawn_reader` in): every SASL
//! mechanism, STARTTLS, bind, the default room, presence and groupchat
//! relay; then hostile input, each attack getting its own stream error or
//! SASL failure while an already joined session keeps receiving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod scenario;

use std::net::SocketAddr;
use std::time::Duration;

use lsim_im::xmpp::sasl::{self, ClientSasl, Mechanism};
use lsim_im::xmpp::server::{Server, ServerConfig, ServerHandle};
use lsim_im::xmpp::stanza::{NS_LSIM, NS_MUC_USER};
use lsim_im::xmpp::stream::{NS_CLIENT, NS_SASL, NS_STREAMS, NS_TLS};
use lsim_im::xmpp::tls::{Trust, client_config};
use lsim_im::xmpp::{Element, Handback, Limits, StreamEvent, StreamEvents, is_restart_point, spawn_reader_until};
use lsim_keymgmt::guard::MAX_FAILED_LOGINS;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Upper bound on any wait, so a broken server fails the test instead of
/// hanging it; never an assertion about speed.
const WAIT: Duration = Duration::from_secs(20);
const ROOM: &str = "lsim@conference.localhost";

trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}
type Io = Box<dyn Transport>;

/// A server config on a loopback port, and its data directory: removed
/// when the test drops the guard, passing or not.
fn config(tag: &str) -> (ServerConfig, tempfile::TempDir) {
    let dir = tempfile::Builder::new().prefix(&format!("lsim-server-test-{tag}-")).tempdir().unwrap();
    let mut config = ServerConfig::new(dir.path().to_path_buf());
    config.listen = "127.0.0.1:0".parse().unwrap();
    (config, dir)
}

async fn start(config: ServerConfig, users: &[&str]) -> ServerHandle {
    let handle = Server::start(config).await.unwrap();
    for user in users {
        handle.users().add(user, &format!("{user} password"), false).unwrap();
    }
    handle
}

fn header() -> String {
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
     to='localhost' version='1.0'>"
        .to_string()
}

/// The raw test client.
struct Client {
    w: WriteHalf<Io>,
    events: StreamEvents,
    task: JoinHandle<Option<Handback<ReadHalf<Io>>>>,
    jid: String,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        Client::over(Box::new(tcp))
    }

    fn over(io: Io) -> Client {
        let (r, w) = tokio::io::split(io);
        let (events, task) = spawn_reader_until(r, Limits::default(), is_restart_point);
        Client { w, events, task, jid: String::new() }
    }

    async fn send(&mut self, xml: &str) {
        self.w.write_all(xml.as_bytes()).await.unwrap();
    }

    async fn next(&mut self) -> StreamEvent {
        let event = tokio::time::timeout(WAIT, self.events.recv()).await.expect("nothing from the server");
        event.expect("stream ended").expect("stream error")
    }

    async fn stanza(&mut self) -> Element {
        match self.next().await {
            StreamEvent::Stanza(e) => e,
            other => panic!("expected a stanza, got {other:?}"),
        }
    }

    /// Sends our header; returns the server's features.
    async fn open(&mut self) -> Element {
        self.send(&header()).await;
        assert!(matches!(self.next().await, StreamEvent::Header(_)));
        let features = self.stanza().await;
        assert!(features.is("features", NS_STREAMS), "{}", features.to_xml());
        features
    }

    /// The reader stopped at `<proceed/>` or `<success/>`: take the transport back.
    async fn take_back(self) -> Io {
        let Client { w, events, task, .. } = self;
        drop(events);
        let handback = tokio::time::timeout(WAIT, task).await.unwrap().unwrap().expect("reader did not stop");
        assert!(handback.buffered.is_empty());
        handback.transport.unsplit(w)
    }

    async fn starttls(mut self, pin: [u8; 32]) -> Client {
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await;
        assert!(self.stanza().await.is("proceed", NS_TLS));
        let io = self.take_back().await;
        let connector = tokio_rustls::TlsConnector::from(client_config(&Trust::Pinned(pin)).unwrap());
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = connector.connect(name, io).await.unwrap();
        Client::over(Box::new(tls))
    }

    /// Runs one SASL exchange: `Ok` on success, else the failure condition.
    async fn auth(&mut self, mechanism: Mechanism, user: &str, password: &str) -> Result<(), String> {
        let mut sasl = ClientSasl::new(mechanism, user, password);
        let initial = sasl.initial().unwrap();
        self.send(&format!(
            "<auth xmlns='{NS_SASL}' mechanism='{}'>{}</auth>",
            mechanism.name(),
            sasl::encode(&initial)
        ))
        .await;
        loop {
            let e = self.stanza().await;
            match e.name.as_str() {
                "challenge" => {
                    let reply = sasl.challenge(&sasl::decode(&e.text_content()).unwrap()).unwrap();
                    self.send(&format!("<response xmlns='{NS_SASL}'>{}</response>", sasl::encode(&reply))).await;
                }
                "success" => {
                    sasl.success(&sasl::decode(&e.text_content()).unwrap()).unwrap();
                    return Ok(());
                }
                "failure" => return Err(e.elements().next().map(|c| c.name.clone()).unwrap_or_default()),
                _ => panic!("unexpected {}", e.to_xml()),
            }
        }
    }

    async fn login_on(mut self, mechanism: Mechanism, user: &str) -> Client {
        let features = self.open().await;
        let offered: Vec<String> = features
            .get_child("mechanisms", NS_SASL)
            .map(|m| m.elements().map(Element::text_content).collect())
            .unwrap_or_default();
        assert!(offered.iter().any(|m| m == mechanism.name()), "{offered:?}");
        self.auth(mechanism, user, &format!("{user} password")).await.unwrap();
        let io = self.take_back().await;
        let mut client = Client::over(io);
        let features = client.open().await;
        assert!(features.get_child("bind", "urn:ietf:params:xml:ns:xmpp-bind").is_some());
        client.bind(user).await;
        client
    }

    async fn login(addr: SocketAddr, mechanism: Mechanism, user: &str) -> Client {
        Client::connect(addr).await.login_on(mechanism, user).await
    }

    async fn bind(&mut self, resource: &str) {
        self.send(&format!(
            "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>"
        ))
        .await;
        let result = self.stanza().await;
        assert_eq!(result.get_attr("type"), Some("result"), "{}", result.to_xml());
        let jid = result.get_child("bind", "urn:ietf:params:xml:ns:xmpp-bind").unwrap().elements().next().unwrap();
        self.jid = jid.text_content();
    }

    /// Joins the default room as `nick`; returns what came before the
    /// subject (occupants' presence, then our own).
    async fn join(&mut self, nick: &str) -> Vec<Element> {
        self.send(&format!("<presence to='{ROOM}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"))
            .await;
        let mut seen = Vec::new();
        loop {
            let e = self.stanza().await;
            if e.is("message", NS_CLIENT) && e.get_child("subject", NS_CLIENT).is_some() {
                return seen;
            }
            assert_ne!(e.get_attr("type"), Some("error"), "{}", e.to_xml());
            seen.push(e);
        }
    }

    /// Reads until a stanza satisfying `pred`, skipping others.
    async fn until(&mut self, pred: impl Fn(&Element) -> bool) -> Element {
        loop {
            let e = self.stanza().await;
            if pred(&e) {
                return e;
            }
        }
    }

    /// Reads until the stream error; returns its condition.
    async fn stream_error(&mut self) -> String {
        stream_error_from(&mut self.events).await
    }
}

async fn stream_error_from(events: &mut StreamEvents) -> String {
    loop {
        let event = tokio::time::timeout(WAIT, events.recv()).await.expect("no stream error in time");
        match event {
            Some(Ok(StreamEvent::Stanza(e))) if e.is("error", NS_STREAMS) => {
                return e.elements().next().map(|c| c.name.clone()).unwrap_or_default();
            }
            Some(Ok(_)) => {}
            other => panic!("stream ended without a stream error: {other:?}"),
        }
    }
}

/// The already joined session still gets a room message sent after an attack.
async fn still_working(alice: &mut Client, bob: &mut Client, round: &mut u32) {
    *round += 1;
    relayed(alice, bob, &format!("after-{round}"), "alice").await;
}

fn groupchat(id: &str) -> String {
    format!("<message to='{ROOM}' type='groupchat' id='{id}'><x xmlns='{NS_LSIM}' kind='status' n='{id}'/></message>")
}

/// Sends a payload-only groupchat from `from` and waits for `to` to get it.
async fn relayed(from: &mut Client, to: &mut Client, id: &str, from_nick: &str) {
    from.send(&groupchat(id)).await;
    let m = to.until(|e| e.is("message", NS_CLIENT) && e.get_attr("id") == Some(id)).await;
    assert_eq!(m.get_attr("from"), Some(&*format!("{ROOM}/{from_nick}")));
    assert_eq!(m.get_attr("type"), Some("groupchat"));
    assert_eq!(m.get_child("x", NS_LSIM).and_then(|x| x.get_attr("n")), Some(id));
    assert!(m.get_child("body", NS_CLIENT).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mechanism_starttls_bind_room_presence_and_relay() {
    let (mut cfg, _dir) = config("login");
    cfg.tls = true;
    let server = start(cfg, &["alice", "bob", "carol"]).await;
    let addr = server.local_addr();
    let pin = server.fingerprint().unwrap();

    let mut alice = Client::login(addr, Mechanism::ScramSha256, "alice").await;
    assert_eq!(alice.jid, "alice@localhost/alice");
    let seen = alice.join("alice").await;
    let own = seen.last().unwrap();
    let muc = own.get_child("x", NS_MUC_USER).unwrap();
    assert!(muc.children_named("status", NS_MUC_USER).any(|s| s.get_attr("code") == Some("110")));

    let mut bob = Client::login(addr, Mechanism::ScramSha1, "bob").await;
    let seen = bob.join("bob").await;
    assert_eq!(seen[0].get_attr("from"), Some(&*format!("{ROOM}/alice")));
    let p = alice.until(|e| e.is("presence", NS_CLIENT)).await;
    assert_eq!(p.get_attr("from"), Some(&*format!("{ROOM}/bob")));
    let item = p.get_child("x", NS_MUC_USER).unwrap().get_child("item", NS_MUC_USER).unwrap();
    assert_eq!(item.get_attr("jid"), Some("bob@localhost/bob"));

    // PLAIN is not offered in the clear; over STARTTLS it is.
    let mut plain = Client::connect(addr).await;
    let features = plain.open().await;
    assert!(features.get_child("starttls", NS_TLS).is_some());
    let mechs: Vec<String> =
        features.get_child("mechanisms", NS_SASL).unwrap().elements().map(Element::text_content).collect();
    assert!(!mechs.contains(&"PLAIN".to_string()), "{mechs:?}");
    assert_eq!(plain.auth(Mechanism::Plain, "carol", "carol password").await, Err("encryption-required".into()));
    drop(plain);
    let mut carol = Client::connect(addr).await;
    carol.open().await;
    let mut carol = carol.starttls(pin).await.login_on(Mechanism::Plain, "carol").await;
    carol.join("carol").await;
    for c in [&mut alice, &mut bob] {
        let p = c.until(|e| e.is("presence", NS_CLIENT)).await;
        assert_eq!(p.get_attr("from"), Some(&*format!("{ROOM}/carol")));
    }

    relayed(&mut alice, &mut bob, "a1", "alice").await;
    relayed(&mut bob, &mut alice, "b1", "bob").await;
    relayed(&mut carol, &mut alice, "c1", "carol").await;
    relayed(&mut alice, &mut carol, "a2", "alice").await;

    // Leaving: the others see carol go.
    carol.send(&format!("<presence to='{ROOM}/carol' type='unavailable'/>")).await;
    let gone = alice.until(|e| e.is("presence", NS_CLIENT)).await;
    assert_eq!((gone.get_attr("from"), gone.get_attr("type")), (Some(&*format!("{ROOM}/carol")), Some("unavailable")));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_closes_only_the_offending_stream() {
    let (mut cfg, _dir) = config("hostile");
    cfg.max_auth_failures = 2;
    let server = start(cfg, &["alice", "bob", "mallory"]).await;
    let addr = server.local_addr();
    let mut alice = Client::login(addr, Mechanism::ScramSha256, "alice").await;
    alice.join("alice").await;
    let mut bob = Client::login(addr, Mechanism::ScramSha256, "bob").await;
    bob.join("bob").await;
    let mut round = 0;

    // Before and after the header, raw bytes on a fresh connection.
    let billion_laughs = "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>\
        <!ENTITY lol2 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>\
        <!ENTITY lol3 '&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;'>]>\
        <stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>&lol3;";
    let cases: Vec<(String, &str)> = vec![
        (format!("{}<message><body>x</message>", header()), "not-well-formed"),
        (billion_laughs.to_string(), "restricted-xml"),
        // quick-xml reports text only when markup follows it.
        (format!("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n{}", header()), "bad-format"),
        (header().replace("jabber:client", "urn:example:unknown"), "invalid-namespace"),
        (format!("{}<foo xmlns='urn:example:unknown'/>", header()), "unsupported-stanza-type"),
        (format!("{}<message xmlns='jabber:server' to='alice@localhost'/>", header()), "invalid-namespace"),
        (format!("{}<message to='alice@localhost'><body>before auth</body></message>", header()), "not-authorized"),
        (header().replace("to='localhost'", "to='elsewhere.example'"), "host-unknown"),
        (header().replace("version='1.0'", "version='2.0'"), "unsupported-version"),
    ];
    for (input, expected) in cases {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (r, mut w) = tcp.into_split();
        let (mut events, _task) = spawn_reader_until(r, Limits::default(), |_| false);
        w.write_all(input.as_bytes()).await.unwrap();
        assert_eq!(stream_error_from(&mut events).await, expected, "for {input:?}");
        still_working(&mut alice, &mut bob, &mut round).await;
    }

    // A 10 MiB stanza from an authenticated, joined session.
    let mut mallory = Client::login(addr, Mechanism::ScramSha1, "mallory").await;
    mallory.join("mallory").await;
    let _ = alice.until(|e| e.is("presence", NS_CLIENT)).await;
    let _ = bob.until(|e| e.is("presence", NS_CLIENT)).await;
    let Client { w: mut mw, events: mut mevents, .. } = mallory;
    let writer = tokio::spawn(async move {
        let _ = mw.write_all(b"<message to='lsim@conference.localhost' type='groupchat'><body>").await;
        let chunk = vec![b'a'; 64 * 1024];
        for _ in 0..160 {
            if mw.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    assert_eq!(stream_error_from(&mut mevents).await, "policy-violation");
    writer.abort();
    // Its occupant leaves the room for the others.
    let gone = bob.until(|e| e.is("presence", NS_CLIENT)).await;
    assert_eq!(gone.get_attr("type"), Some("unavailable"));
    still_working(&mut alice, &mut bob, &mut round).await;

    // Unknown top-level element and broken XML after binding.
    for (input, expected) in [
        ("<foo xmlns='urn:example:unknown'/>", "unsupported-stanza-type"),
        ("<presence><status>x</presence>", "not-well-formed"),
        ("<message><body>&unknown;</body></message>", "restricted-xml"),
    ] {
        let mut m = Client::login(addr, Mechanism::ScramSha256, "mallory").await;
        m.send(input).await;
        assert_eq!(m.stream_error().await, expected, "for {input}");
        still_working(&mut alice, &mut bob, &mut round).await;
    }

    // Wrong SASL proofs: not-authorized, a retry may succeed; too many
    // failures close the stream.
    let mut m = Client::connect(addr).await;
    m.open().await;
    assert_eq!(m.auth(Mechanism::ScramSha256, "mallory", "wrong").await, Err("not-authorized".into()));
    m.auth(Mechanism::ScramSha1, "mallory", "mallory password").await.unwrap();
    let mut m = Client::connect(addr).await;
    m.open().await;
    assert_eq!(m.auth(Mechanism::ScramSha256, "mallory", "wrong").await, Err("not-authorized".into()));
    assert_eq!(m.auth(Mechanism::ScramSha1, "nobody", "wrong").await, Err("not-authorized".into()));
    assert_eq!(m.stream_error().await, "policy-violation");
    still_working(&mut alice, &mut bob, &mut round).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_connections_time_out() {
    let (mut cfg, _dir) = config("timeout");
    cfg.auth_timeout = Duration::from_millis(300);
    let server = start(cfg, &["alice"]).await;
    let addr = server.local_addr();
    // A slow loris: the header, then nothing; one that sends nothing at
    // all; one that authenticates but never binds.
    let mut loris = Client::connect(addr).await;
    loris.open().await;
    let mut silent = Client::connect(addr).await;
    assert_eq!(loris.stream_error().await, "connection-timeout");
    assert_eq!(silent.stream_error().await, "connection-timeout");
    let mut unbound = Client::connect(addr).await;
    unbound.open().await;
    unbound.auth(Mechanism::ScramSha256, "alice", "alice password").await.unwrap();
    let mut unbound = Client::over(unbound.take_back().await);
    unbound.open().await;
    assert_eq!(unbound.stream_error().await, "connection-timeout");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_refused() {
    let (mut cfg, _dir) = config("limit");
    cfg.max_connections = 2;
    let server = start(cfg, &["alice"]).await;
    let addr = server.local_addr();
    let mut alice = Client::login(addr, Mechanism::ScramSha256, "alice").await;
    let mut other = Client::connect(addr).await;
    other.open().await;
    let mut third = Client::connect(addr).await;
    third.send(&header()).await;
    assert_eq!(third.stream_error().await, "resource-constraint");
    // The admitted sessions are unaffected.
    alice.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>").await;
    let pong = alice.until(|e| e.get_attr("id") == Some("p1")).await;
    assert_eq!(pong.get_attr("type"), Some("result"));
    drop(other);
    server.stop().await;
}

/// A guesser reconnecting after each closed stream is limited as at the
/// key server: after five wrong passwords for alice from one address, that
/// address gets `temporary-auth-failure` even with the right one, unchecked;
/// alice at another address still logs in; every try is in `security.log`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_guessing_over_many_connections_is_limited() {
    let (cfg, dir) = config("guessing");
    let server = start(cfg, &["alice"]).await;
    let addr = server.local_addr();
    let mut guesses = 0;
    while guesses < MAX_FAILED_LOGINS {
        // Each connection is closed after three failures: two per connection.
        let mut guesser = Client::connect(addr).await;
        guesser.open().await;
        for _ in 0..2.min(MAX_FAILED_LOGINS - guesses) {
            let failed = guesser.auth(Mechanism::ScramSha256, "alice", "guess").await;
            assert_eq!(failed, Err("not-authorized".to_string()));
            guesses += 1;
        }
    }
    let mut guesser = Client::connect(addr).await;
    guesser.open().await;
    let refused = guesser.auth(Mechanism::ScramSha256, "alice", "alice password").await;
    assert_eq!(refused, Err("temporary-auth-failure".to_string()), "refused before the password is checked");

    // alice at her own device (another loopback address) is not locked out.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let mut alice = Client::over(Box::new(tcp)).login_on(Mechanism::ScramSha256, "alice").await;
    alice.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>").await;
    assert_eq!(alice.until(|e| e.get_attr("id") == Some("p1")).await.get_attr("type"), Some("result"));

    let log = std::fs::read_to_string(dir.path().join("security.log")).unwrap();
    let lines = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    assert_eq!(lines("login-failed user=\"alice\" from=127.0.0.1:"), MAX_FAILED_LOGINS as usize, "{log}");
    assert_eq!(lines("login-refused user=\"alice\" from=127.0.0.1:"), 1, "{log}");
    assert_eq!(lines("from=127.0.0.2:"), 0, "{log}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_persist_across_restarts() {
    let (cfg, _dir) = config("restart");
    let server = start(cfg.clone(), &["alice"]).await;
    let addr = server.local_addr();
    let mut alice = Client::login(addr, Mechanism::ScramSha256, "alice").await;
    alice.join("alice").await;
    server.stop().await;
    assert_eq!(alice.stream_error().await, "system-shutdown");
    let text = std::fs::read_to_string(cfg.data_dir.join("xmpp-users")).unwrap();
    assert!(!text.contains("alice password"));

    let mut cfg2 = cfg.clone();
    cfg2.listen = addr;
    let server = Server::start(cfg2).await.unwrap();
    let mut alice = Client::login(addr, Mechanism::ScramSha1, "alice").await;
    alice.join("alice").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_tls_hides_sasl_until_starttls() {
    let (mut cfg, _dir) = config("require-tls");
    cfg.tls = true;
    cfg.require_tls = true;
    let server = start(cfg, &["alice"]).await;
    let mut c = Client::connect(server.local_addr()).await;
    let features = c.open().await;
    let starttls = features.get_child("starttls", NS_TLS).unwrap();
    assert!(starttls.get_child("required", NS_TLS).is_some());
    assert!(features.get_child("mechanisms", NS_SASL).is_none());
    assert_eq!(c.auth(Mechanism::ScramSha256, "alice", "alice password").await, Err("encryption-required".into()));
    let mut c = Client::connect(server.local_addr()).await;
    c.open().await;
    let c = c.starttls(server.fingerprint().unwrap()).await.login_on(Mechanism::ScramSha256, "alice").await;
    assert_eq!(c.jid, "alice@localhost/alice");
    server.stop().await;
}

/// Our own client's scenario (the one Prosody and ejabberd pass) against
/// the embedded server, plaintext and STARTTLS, including a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_scenario_against_the_embedded_server() {
    for tls in [false, true] {
        let (mut cfg, _dir) = config(if tls { "scenario-tls" } else { "scenario-plain" });
        cfg.tls = tls;
        cfg.allow_plain_unencrypted = !tls;
        let server = Server::start(cfg.clone()).await.unwrap();
        for (user, password) in scenario::USERS {
            server.users().add(user, password, false).unwrap();
        }
        cfg.listen = server.local_addr();
        let target = scenario::Target {
            addr: server.local_addr().to_string(),
            domain: "localhost".into(),
            trust: server.fingerprint().map(Trust::Pinned),
            muc: "conference.localhost".into(),
        };
        scenario::each_mechanism(&target).await;
        let slot = std::sync::Mutex::new(Some(server));
        let mut restart = || {
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async {
                    let old = slot.lock().unwrap().take();
                    if let Some(old) = old {
                        old.stop().await;
                    }
                    let new = Server::start(cfg.clone()).await.unwrap();
                    *slot.lock().unwrap() = Some(new);
                })
            })
        };
        scenario::room_and_reconnect(&target, &mut restart).await;
        let last = slot.lock().unwrap().take();
        if let Some(server) = last {
            server.stop().await;
        }
    }
}

/// A client that stops reading is closed once its queue is full; the
/// others in the room keep receiving and see it leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_does_not_hold_up_the_room() {
    let (mut cfg, _dir) = config("slow");
    cfg.send_queue = 64;
    cfg.stanza_rate = 0;
    let server = start(cfg, &["alice", "bob", "sleepy"]).await;
    let addr = server.local_addr();
    let mut alice = Client::login(addr, Mechanism::ScramSha256, "alice").await;
    alice.join("alice").await;
    let mut bob = Client::login(addr, Mechanism::ScramSha256, "bob").await;
    bob.join("bob").await;
    // Its reader stops taking events after a few: the server's writes back up.
    let mut sleepy = Client::login(addr, Mechanism::ScramSha256, "sleepy").await;
    sleepy.join("sleepy").await;
    let _ = bob.until(|e| e.is("presence", NS_CLIENT)).await;

    // Lockstep: alice and bob read every message before the next is sent,
    // so only sleepy falls behind.
    let big = "x".repeat(200 * 1024);
    let sleepy_jid = format!("{ROOM}/sleepy");
    let mut left = None;
    for n in 0..2000 {
        let id = format!("big{n}");
        alice.send(&format!("<message to='{ROOM}' type='groupchat' id='{id}'><body>{big}</body></message>")).await;
        alice.until(|e| e.get_attr("id") == Some(&*id)).await;
        let e = bob.until(|e| e.get_attr("id") == Some(&*id) || e.get_attr("from") == Some(&*sleepy_jid)).await;
        if e.is("presence", NS_CLIENT) {
            left = Some(e);
            break;
        }
    }
    assert_eq!(left.expect("sleepy was never closed").get_attr("type"), Some("unavailable"));
    relayed(&mut alice, &mut bob, "after-slow", "alice").await;
    drop(sleepy);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_bind_replaces_the_first_and_floods_are_cut_off() {
    let (mut cfg, _dir) = config("conflict");
    cfg.stanza_rate = 1;
    cfg.stanza_burst = 5;
    let server = start(cfg, &["alice", "bob"]).await;
    let addr = server.local_addr();
    let mut first = Client::login(addr, Mechanism::ScramSha256, "alice").await;
    first.join("alice").await;
    let mut bob = Client::login(addr, Mechanism::ScramSha256, "bob").await;
    bob.join("bob").await;
    let mut second = Client::login(addr, Mechanism::ScramSha1, "alice").await;
    assert_eq!(second.jid, first.jid);
    assert_eq!(first.stream_error().await, "conflict");
    // The same full JID back is the same client: it keeps alice's place in
    // the room, and bob hears no one leave.

    // Twenty stanzas at once against a burst of five.
    let pings: String =
        (0..20).map(|i| format!("<iq type='get' id='p{i}'><ping xmlns='urn:xmpp:ping'/></iq>")).collect();
    second.send(&pings).await;
    assert_eq!(second.stream_error().await, "policy-violation");
    // Cut off, alice's session is over: now bob hears her leave, once.
    let gone = bob.until(|e| e.is("presence", NS_CLIENT)).await;
    assert_eq!(gone.get_attr("type"), Some("unavailable"));
    // bob (who spent one stanza on joining) is still served.
    bob.send("<iq type='get' id='b'><ping xmlns='urn:xmpp:ping'/></iq>").await;
    assert_eq!(bob.until(|e| e.get_attr("id") == Some("b")).await.get_attr("type"), Some("result"));
    server.stop().await;
}

/// RFC 6120 §4.8.5: stream elements carry the `stream` prefix on the wire
/// (Net::XMPP's sendxmpp accepts nothing else); STARTTLS refuses plaintext
/// sent before `<proceed/>` (an injection) but takes whitespace after
/// `<starttls/>` (go-sendxmpp sends a newline) and a prompt ClientHello.
#[tokio::test]
async fn stream_prefix_and_starttls_injection() {
    use tokio::io::AsyncReadExt;
    let (mut cfg, _dir) = config("prefix");
    cfg.tls = true;
    let server = start(cfg, &["alice"]).await;
    let addr = server.local_addr();
    let read_until = async |tcp: &mut TcpStream, marker: &str| -> String {
        let mut text = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&text).contains(marker) {
            let n = tokio::time::timeout(WAIT, tcp.read(&mut buf)).await.unwrap().unwrap();
            if n == 0 {
                break;
            }
            text.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&text).into_owned()
    };

    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(header().as_bytes()).await.unwrap();
    let text = read_until(&mut tcp, "</stream:features>").await;
    assert!(text.contains("<stream:features>") && !text.contains("<features"), "{text}");
    // Plaintext after <starttls/>, before any <proceed/>: refused, no <proceed/>.
    tcp.write_all(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><iq type='get' id='x'/>").await.unwrap();
    let text = read_until(&mut tcp, "</stream:stream>").await;
    assert!(text.contains("<stream:error>") && text.contains("policy-violation"), "{text}");
    assert!(!text.contains("proceed"), "{text}");

    // A newline after <starttls/>, then TLS at once: accepted.
    let c = Client::connect(addr).await;
    let mut c = c;
    c.open().await;
    c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\n").await;
    assert!(c.stanza().await.is("proceed", NS_TLS));
    let io = c.take_back().await;
    let connector =
        tokio_rustls::TlsConnector::from(client_config(&Trust::Pinned(server.fingerprint().unwrap())).unwrap());
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, io).await.unwrap();
    let mut c = Client::over(Box::new(tls));
    let features = c.open().await;
    assert!(features.get_child("mechanisms", NS_SASL).is_some());
    server.stop().await;
}
