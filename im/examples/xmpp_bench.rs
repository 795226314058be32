//! XMPP benchmark, same machine and same run for every server: login time
//! (TCP connect to bound resource, SCRAM-SHA-256), MUC join time (join
//! presence to our own presence back), and room fan-out with N occupants
//! (one sender; median and p99 delivery latency, deliveries per second).
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

use lsim_im::xmpp::client::{ClientConfig, Session, TlsMode, connect};
use lsim_im::xmpp::jid::Jid;
use lsim_im::xmpp::room::{Room, RoomEvent};
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

/// Joins the room on `session` and waits for our own presence back.
async fn join(session: &mut Session, room_jid: &Jid, nick: &str) -> Room {
    let mut room = Room::new(room_jid.clone(), nick);
    session.send(&room.join(0)).await.unwrap();
    loop {
        let e = session.recv().await.expect("stream ended during join").expect("stream error during join");
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

async fn logins(t: &Target, n: usize) -> (Vec<Duration>, Vec<Duration>) {
    let mut login = Vec::new();
    let mut joins = Vec::new();
    for i in 0..n {
        let t0 = Instant::now();
        let mut s = connect(&t.config(i)).await.unwrap();
        login.push(t0.elapsed());
        let t1 = Instant::now();
        join(&mut s, &t.room, &format!("login{i}")).await;
        joins.push(t1.elapsed());
        s.close().await;
    }
    login.sort();
    joins.sort();
    (login, joins)
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
    let (ready_tx, mut ready_rx) = mpsc::channel::<Session>(occupants);
    let mut connecting = tokio::task::JoinSet::new();
    for i in 1..occupants {
        let t = t.clone();
        let tx = ready_tx.clone();
        connecting.spawn(async move {
            let mut s = connect(&t.config(i)).await.unwrap();
            join(&mut s, &t.room, &format!("u{i}")).await;
            tx.send(s).await.unwrap();
        });
        while connecting.len() >= 16 {
            connecting.join_next().await.unwrap().unwrap();
        }
    }
    while connecting.join_next().await.is_some() {}
    drop(ready_tx);
    let mut sender = connect(&t.config(0)).await.unwrap();
    join(&mut sender, &t.room, "u0").await;
    let join_all = started.elapsed();

    // Phase 1 (seq < messages): paced at `rate`, for latency. Phase 2:
    // as many again as fast as the sender can write, for throughput.
    let total = 2 * messages;
    let sent: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; total]));
    let mut readers = tokio::task::JoinSet::new();
    while let Some(mut s) = ready_rx.recv().await {
        readers.spawn(async move {
            let mut got: Vec<(usize, Instant)> = Vec::with_capacity(total);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            while got.len() < total {
                let Ok(Some(Ok(e))) = tokio::time::timeout_at(deadline, s.recv()).await else { break };
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
        while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(5), sender.recv()).await {}
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
    let (login, joins) = logins(t, a.logins).await;
    println!(
        "{name:9} login  median {:6.2} ms  p99 {:6.2} ms   join median {:6.2} ms  p99 {:6.2} ms   ({} each)",
        ms(percentile(&login, 0.5)),
        ms(percentile(&login, 0.99)),
        ms(percentile(&joins, 0.5)),
        ms(percentile(&joins, 0.99)),
        a.logins
    );
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
