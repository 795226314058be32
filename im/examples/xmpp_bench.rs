//! XMPP benchmark, same machine and same run for every server: login time
//! (TCP connect to bound resource, SCRAM-SHA-256, then stream management
//! enabled), MUC join time (join presence to our own presence back, with
//! no history and with 20 messages of it), room fan-out with N occupants
//! (one sender; median and p99 delivery latency, deliveries per second),
//! every session with XEP-0198 stream management on (acks answered), and
//! the time a client whose TCP path was cut for 20 s (nftables, as root)
//! takes from the link coming back to the first stanza delivered.
//!
//! ```text
//! cargo run --release -p lsim-im --example xmpp_bench -- [--occupants 500] [--messages 100] [--rate 20] [--logins 50] [--servers embedded,prosody]
//! ```
//!
//! Each server is started here on a loopback port (Prosody from Debian's
//! package with Nagle off, as REFERENCE.md advises) and stopped after.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lsim_im::xmpp::client::{Client, ClientConfig, ClientEvent, Session, TlsMode, connect};
use lsim_im::xmpp::element::Element;
use lsim_im::xmpp::jid::Jid;
use lsim_im::xmpp::room::{Room, RoomEvent};
use lsim_im::xmpp::sm;
use lsim_im::xmpp::stanza::{Message, MessageType, Presence};
use lsim_im::xmpp::stream::NS_CLIENT;
use tokio::sync::mpsc;

struct Args {
    occupants: usize,
    messages: usize,
    rate: f64,
    logins: usize,
    servers: Vec<String>,
}

fn args() -> Args {
    let mut a = Args {
        occupants: 500,
        messages: 100,
        rate: 20.0,
        logins: 50,
        servers: vec!["embedded".into(), "prosody".into()],
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i + 1 < argv.len() {
        let v = &argv[i + 1];
        match argv[i].as_str() {
            "--occupants" => a.occupants = v.parse().expect("--occupants N"),
            "--messages" => a.messages = v.parse().expect("--messages N"),
            "--rate" => a.rate = v.parse().expect("--rate MSGS_PER_S"),
            "--logins" => a.logins = v.parse().expect("--logins N"),
            "--servers" => a.servers = v.split(',').map(str::to_string).collect(),
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

#[derive(Clone)]
struct Target {
    addr: String,
    domain: String,
    room: Jid,
}

impl Target {
    fn config(&self, i: usize) -> ClientConfig {
        let mut cfg = ClientConfig::new(Jid::bare_of(&format!("u{i}"), &self.domain), &format!("pw{i}"));
        cfg.server = Some(self.addr.clone());
        cfg.tls = TlsMode::Disabled;
        cfg.resource = Some("bench".into());
        cfg
    }
}

/// Our side of stream management on a raw session: what we handled, and
/// the answer to the server's ack requests.
#[derive(Default)]
struct Acks {
    handled: u32,
}

impl Acks {
    /// Counts `e`; returns the ack to send when it asks for one.
    fn on(&mut self, e: &Element) -> Option<Element> {
        if sm::is_stanza(e) {
            self.handled = self.handled.wrapping_add(1);
        }
        e.is("r", sm::NS_SM).then(|| sm::ack(self.handled))
    }

    /// Receives the next element, answering ack requests on the way.
    async fn recv(&mut self, s: &mut Session) -> Option<Element> {
        loop {
            let e = s.recv().await?.ok()?;
            match self.on(&e) {
                Some(a) => s.send(&a).await.ok()?,
                None if e.ns == sm::NS_SM => {}
                None => return Some(e),
            }
        }
    }
}

/// Logs in and enables stream management (when offered), as our client does.
async fn login(t: &Target, i: usize) -> (Session, Acks) {
    let mut s = connect(&t.config(i)).await.unwrap();
    if s.sm_offered {
        s.send(&sm::enable()).await.unwrap();
        loop {
            let e = s.recv().await.unwrap().unwrap();
            if e.is("enabled", sm::NS_SM) {
                break;
            }
            assert!(!e.is("failed", sm::NS_SM), "stream management refused");
        }
    }
    (s, Acks::default())
}

/// Joins the room on `session` and waits for our own presence back.
async fn join(session: &mut Session, acks: &mut Acks, room_jid: &Jid, nick: &str, history: u32) -> Room {
    let mut room = Room::new(room_jid.clone(), nick);
    session.send(&room.join(history)).await.unwrap();
    loop {
        let e = acks.recv(session).await.expect("stream ended during join");
        if !e.is("presence", NS_CLIENT) {
            continue;
        }
        let Ok(p) = Presence::try_from(&e) else { continue };
        let (events, send) = room.handle_presence(&p);
        for s in send {
            session.send(&s).await.unwrap();
        }
        if events.iter().any(|ev| matches!(ev, RoomEvent::Joined { .. })) {
            return room;
        }
        if let Some(RoomEvent::JoinFailed { condition }) = events.first() {
            panic!("join failed: {condition}");
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Login and join times; then join times again, asking for 20 messages of
/// history from a room that holds them (until the subject closes the join).
async fn logins(t: &Target, n: usize) -> (Vec<Duration>, Vec<Duration>, Vec<Duration>) {
    let mut login_times = Vec::new();
    let mut joins = Vec::new();
    for i in 0..n {
        let t0 = Instant::now();
        let (mut s, mut acks) = login(t, i).await;
        login_times.push(t0.elapsed());
        let t1 = Instant::now();
        join(&mut s, &mut acks, &t.room, &format!("login{i}"), 0).await;
        joins.push(t1.elapsed());
        s.close().await;
    }
    // A speaker fills the history room with 20 messages of 200 characters.
    let history_room = Jid::parse(&format!("history@{}", t.room.domain)).unwrap();
    let (mut speaker, mut acks) = login(t, 0).await;
    join(&mut speaker, &mut acks, &history_room, "speaker", 0).await;
    for k in 0..20 {
        let m = Message {
            id: Some(format!("h{k}")),
            body: Some(format!("{k:0200}")),
            ..Message::new(MessageType::Groupchat, history_room.to_string())
        };
        speaker.send(&(&m).into()).await.unwrap();
    }
    let mut echoes = 0;
    while echoes < 20 {
        let e = acks.recv(&mut speaker).await.unwrap();
        echoes += usize::from(e.is("message", NS_CLIENT));
    }
    let mut with_history = Vec::new();
    for i in 1..n {
        let (mut s, mut acks) = login(t, i).await;
        let t1 = Instant::now();
        join(&mut s, &mut acks, &history_room, &format!("h{i}"), 20).await;
        let mut got = 0;
        loop {
            let e = acks.recv(&mut s).await.unwrap();
            if e.get_child("subject", NS_CLIENT).is_some() {
                break;
            }
            got += usize::from(e.is("message", NS_CLIENT));
        }
        with_history.push(t1.elapsed());
        assert_eq!(got, 20, "history delivered");
        s.close().await;
    }
    speaker.close().await;
    login_times.sort();
    joins.sort();
    with_history.sort();
    (login_times, joins, with_history)
}

struct Fanout {
    latencies: Vec<Duration>,
    lost: usize,
    deliveries_per_s: f64,
    join_all: Duration,
}

async fn fanout(t: &Target, occupants: usize, messages: usize, rate: f64) -> Fanout {
    let started = Instant::now();
    // Everyone but the sender: connect and join, a few at a time.
    let (ready_tx, mut ready_rx) = mpsc::channel::<(Session, Acks)>(occupants);
    let mut connecting = tokio::task::JoinSet::new();
    for i in 1..occupants {
        let t = t.clone();
        let tx = ready_tx.clone();
        connecting.spawn(async move {
            let (mut s, mut acks) = login(&t, i).await;
            join(&mut s, &mut acks, &t.room, &format!("u{i}"), 0).await;
            tx.send((s, acks)).await.unwrap();
        });
        while connecting.len() >= 16 {
            connecting.join_next().await.unwrap().unwrap();
        }
    }
    while connecting.join_next().await.is_some() {}
    drop(ready_tx);
    let (mut sender, mut sender_acks) = login(t, 0).await;
    join(&mut sender, &mut sender_acks, &t.room, "u0", 0).await;
    let join_all = started.elapsed();

    // Phase 1 (seq < messages): paced at `rate`, for latency. Phase 2:
    // as many again as fast as the sender can write, for throughput.
    let total = 2 * messages;
    let sent: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; total]));
    let mut readers = tokio::task::JoinSet::new();
    while let Some((mut s, mut acks)) = ready_rx.recv().await {
        readers.spawn(async move {
            let mut got: Vec<(usize, Instant)> = Vec::with_capacity(total);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            while got.len() < total {
                let Ok(Some(e)) = tokio::time::timeout_at(deadline, acks.recv(&mut s)).await else { break };
                if !e.is("message", NS_CLIENT) {
                    continue;
                }
                let Ok(m) = Message::try_from(&e) else { continue };
                if m.kind != MessageType::Groupchat || !m.from.as_deref().is_some_and(|f| f.ends_with("/u0")) {
                    continue;
                }
                if let Some(seq) = m.body.as_deref().and_then(|b| b.parse::<usize>().ok()) {
                    got.push((seq, Instant::now()));
                }
            }
            s.close().await;
            got
        });
    }
    let receivers = readers.len();
    let gap = Duration::from_secs_f64(1.0 / rate);
    let first = Instant::now();
    let mut burst_start = first;
    for seq in 0..total {
        if seq < messages {
            tokio::time::sleep_until((first + gap * seq as u32).into()).await;
        } else if seq == messages {
            // Let phase 1 drain before the burst.
            tokio::time::sleep(Duration::from_secs(2)).await;
            burst_start = Instant::now();
        }
        let m = Message {
            id: Some(format!("b{seq}")),
            body: Some(seq.to_string()),
            ..Message::new(MessageType::Groupchat, t.room.to_string())
        };
        sent.lock().unwrap()[seq] = Some(Instant::now());
        sender.send(&(&m).into()).await.unwrap();
    }
    // The sender reads its own echoes so the server never blocks on it.
    let drain = tokio::spawn(async move {
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(5), sender_acks.recv(&mut sender)).await {}
    });
    let mut latencies = Vec::new();
    let mut last = burst_start;
    let mut delivered = 0usize;
    let mut burst_delivered = 0usize;
    while let Some(got) = readers.join_next().await {
        let got = got.unwrap();
        let sent = sent.lock().unwrap();
        for (seq, at) in got {
            if let Some(Some(s)) = sent.get(seq) {
                delivered += 1;
                if seq < messages {
                    latencies.push(at.saturating_duration_since(*s));
                } else {
                    last = last.max(at);
                    burst_delivered += 1;
                }
            }
        }
    }
    drain.abort();
    latencies.sort();
    Fanout {
        latencies,
        lost: receivers * total - delivered,
        deliveries_per_s: burst_delivered as f64 / (last - burst_start).as_secs_f64(),
        join_all,
    }
}

async fn run(name: &str, t: &Target, a: &Args) {
    let (login, joins, history) = logins(t, a.logins).await;
    println!(
        "{name:9} login  median {:6.2} ms  p99 {:6.2} ms   join median {:6.2} ms  p99 {:6.2} ms   ({} each)",
        ms(percentile(&login, 0.5)),
        ms(percentile(&login, 0.99)),
        ms(percentile(&joins, 0.5)),
        ms(percentile(&joins, 0.99)),
        a.logins
    );
    println!(
        "{name:9} join with 20 messages of history: median {:6.2} ms  p99 {:6.2} ms",
        ms(percentile(&history, 0.5)),
        ms(percentile(&history, 0.99)),
    );
    for (label, short) in [("client defaults", false), ("keepalive 2 s", true)] {
        match resumption(t, short).await {
            Some((took, resumed)) => println!(
                "{name:9} link back after a 20 s cut ({label}): first stanza after {:7.1} ms ({})",
                ms(took),
                if resumed { "session resumed" } else { "the old connection carried on" }
            ),
            None => println!("{name:9} resumption: skipped (needs root and nft)"),
        }
    }
    let f = fanout(t, a.occupants, a.messages, a.rate).await;
    println!(
        "{name:9} fan-out {} occupants: {} msgs at {}/s latency median {:6.2} ms  p99 {:6.2} ms; burst of {} msgs {:8.0} deliveries/s; lost {}  (all joined in {:.1} s)",
        a.occupants,
        a.messages,
        a.rate,
        ms(percentile(&f.latencies, 0.5)),
        ms(percentile(&f.latencies, 0.99)),
        a.messages,
        f.deliveries_per_s,
        f.lost,
        f.join_all.as_secs_f64()
    );
}

/// A client (ours, as members run it) whose TCP path is cut for 20 s while
/// another occupant talks: the time from the link coming back to the first
/// of those messages delivered, and whether the session was resumed.
async fn resumption(t: &Target, short_keepalive: bool) -> Option<(Duration, bool)> {
    let port = common::forwarder(t.addr.clone()).await;
    let mut cfg = t.config(1);
    cfg.resource = None;
    cfg.server = Some(format!("127.0.0.1:{port}"));
    if short_keepalive {
        cfg.keepalive = Duration::from_secs(2);
        cfg.keepalive_timeout = Duration::from_secs(3);
        cfg.connect_timeout = Duration::from_secs(4);
    }
    let room = Jid::parse(&format!("resume{port}@{}", t.room.domain)).unwrap();
    let mut cut_off = Client::spawn(cfg);
    cut_off.join(room.clone(), "away", 0).await;
    loop {
        match cut_off.next_event().await? {
            ClientEvent::Room { event: RoomEvent::Joined { .. }, .. } => break,
            ClientEvent::Stopped { .. } => return None,
            _ => {}
        }
    }
    let (mut talker, mut acks) = login(t, 2).await;
    join(&mut talker, &mut acks, &room, "talker", 0).await;
    let cut = common::Cut::start(port)?;
    for k in 0..5 {
        tokio::time::sleep(Duration::from_secs(4)).await;
        let m = Message {
            id: Some(format!("r{k}")),
            body: Some(format!("while away {k}")),
            ..Message::new(MessageType::Groupchat, room.to_string())
        };
        talker.send(&(&m).into()).await.unwrap();
    }
    drop(cut);
    let back = Instant::now();
    let mut resumed = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let took = loop {
        let ev = tokio::time::timeout_at(deadline, cut_off.next_event()).await.ok()??;
        match ev {
            ClientEvent::Online { resumed: r, .. } => resumed |= r,
            ClientEvent::Room { event: RoomEvent::Message { message, .. }, .. }
                if message.body.as_deref().is_some_and(|b| b.starts_with("while away")) =>
            {
                break back.elapsed();
            }
            _ => {}
        }
    };
    cut_off.stop().await;
    talker.close().await;
    Some((took, resumed))
}

fn main() {
    let a = args();
    let users: Vec<(String, String)> =
        (0..a.occupants.max(a.logins)).map(|i| (format!("u{i}"), format!("pw{i}"))).collect();
    let user_refs: Vec<(&str, &str)> = users.iter().map(|(u, p)| (u.as_str(), p.as_str())).collect();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!(
        "xmpp_bench: {} logins, {} occupants, {} messages at {}/s; {} cores",
        a.logins,
        a.occupants,
        a.messages,
        a.rate,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    for server in &a.servers {
        match server.as_str() {
            "prosody" => {
                let Some(p) = common::Prosody::start("bench", false, &user_refs) else { continue };
                let t = Target {
                    addr: p.addr(),
                    domain: "localhost".into(),
                    room: Jid::parse("bench@conference.localhost").unwrap(),
                };
                rt.block_on(run("prosody", &t, &a));
            }
            "embedded" => embedded(&rt, &a, &user_refs),
            other => eprintln!("unknown server {other}"),
        }
    }
}

fn embedded(rt: &tokio::runtime::Runtime, a: &Args, users: &[(&str, &str)]) {
    rt.block_on(async {
        let mut e = common::Embedded::start("bench", false, users).await;
        let t = Target {
            addr: e.addr(),
            domain: "localhost".into(),
            room: Jid::parse("bench@conference.localhost").unwrap(),
        };
        run("embedded", &t, a).await;
        e.stop().await;
    });
}
