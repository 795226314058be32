//! The group client end to end: an XMPP server, the key server (announcing
//! the group's parameters in the room), and three members on loopback
//! multicast. Chat goes both ways (multicast and sealed through the room)
//! and arrives once at everyone; a member leaves and the rest move to a new
//! epoch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod scenario;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use lsim_im::group::member::{ChatVia, Member, MemberConfig, MemberEvent, Opener, Via};
use lsim_im::xmpp::client::{Client, ClientEvent};
use lsim_im::xmpp::payload::{GroupParams, Payload};
use lsim_im::xmpp::room::RoomEvent;
use lsim_keymgmt::server::{GroupConfig, KeyServer, ServerConfig};
use lsim_keymgmt::suite::SuiteId;
use lsim_keymgmt::users::Cost;
use scenario::{Target, USERS, wait_for};

const CHEAP: Cost = Cost { memory_kib: 256, passes: 1, lanes: 1 };

fn group_addr(test: u8) -> SocketAddrV4 {
    let pid = std::process::id();
    SocketAddrV4::new(Ipv4Addr::new(239, 79, (pid % 250) as u8, test), 31_000 + (pid % 20_000) as u16 + u16::from(test))
}

async fn next(member: &mut Member, what: &str, pred: impl Fn(&MemberEvent) -> bool) -> MemberEvent {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ev = tokio::time::timeout_at(deadline, member.next_event())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .unwrap_or_else(|| panic!("member ended while waiting for {what}"));
        if std::env::var("LSIM_DEBUG").is_ok() {
            eprintln!("{what}: {ev:?}");
        }
        if pred(&ev) {
            return ev;
        }
    }
}

fn is_chat(text: &'static str) -> impl Fn(&MemberEvent) -> bool {
    move |e| matches!(e, MemberEvent::Chat { text: t, .. } if t == text)
}

/// Starts the key server and puts its announcer in the room.
async fn key_server(target: &Target, test: u8) -> (KeyServer, Client) {
    let dir = std::env::temp_dir().join(format!("lsim-group-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = ServerConfig::new(dir, vec![GroupConfig::loopback("lsim", SuiteId::Aes256Gcm, group_addr(test))]);
    let ks = KeyServer::start(cfg).await.unwrap();
    for (user, pw) in USERS {
        ks.add_user(user, pw, CHEAP).unwrap();
    }
    let params = GroupParams {
        group: SocketAddr::V4(group_addr(test)),
        keyserver: ks.addr().unwrap(),
        fingerprint: ks.fingerprint(),
        suite: SuiteId::Aes256Gcm.name().into(),
        epoch: 0,
    };
    // The key server's XMPP presence carries the parameters (it logs in as
    // a user of its own; dave's account serves here).
    let mut announcer = Client::spawn(target.config("dave", "dave-pw"));
    announcer.join(target.room(), "keyserver", 0).await;
    wait_for(&mut announcer, "announcer joined", |e| {
        matches!(e, ClientEvent::Room { event: RoomEvent::Joined { .. }, .. })
    })
    .await;
    announcer.set_room_payload(target.room(), Some(Payload::Group(params).to_element())).await;
    (ks, announcer)
}

async fn three_members(target: &Target) {
    let (ks, _announcer) = key_server(target, 1).await;
    let mut members = Vec::new();
    let base = std::env::temp_dir().join(format!("lsim-group-files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    for (i, (user, pw)) in USERS.iter().take(3).enumerate() {
        let mut cfg = MemberConfig::new(target.config(user, pw), target.room(), user);
        cfg.chat_via = if i == 1 { ChatVia::Xmpp } else { ChatVia::Multicast };
        cfg.download_dir = base.join(user);
        std::fs::create_dir_all(&cfg.download_dir).unwrap();
        // The viewer hook: appends the opened path to a log per member.
        let log = base.join(format!("{user}.opened"));
        cfg.opener = Opener::Command(vec!["sh".into(), "-c".into(), format!("echo \"$0\" >> {}", log.display())]);
        cfg.simulated_loss = 0.10;
        cfg.rate = 40_000_000;
        let mut m = Member::start(cfg).await.unwrap();
        next(&mut m, "joined", |e| matches!(e, MemberEvent::Joined { .. })).await;
        members.push(m);
    }
    let (epoch, _) = ks.group_state("lsim").await.unwrap();
    assert!(epoch >= 3, "each join moved the epoch: {epoch}");
    // Everyone at the last join's epoch before talking: a message sealed
    // under an older epoch is (rightly) unreadable for the newest member.
    for m in members.iter_mut().take(2) {
        next(m, "latest epoch", |e| matches!(e, MemberEvent::Epoch(n) if *n == epoch)).await;
    }

    // alice chats on multicast, bob through the room: both arrive at both,
    // once each.
    members[0].chat("from alice on multicast").await;
    members[1].chat("from bob through the room").await;
    for m in members.iter_mut() {
        let mut seen = std::collections::BTreeMap::new();
        while seen.len() < 2 {
            if let MemberEvent::Chat { text, via, .. } =
                next(m, "both chats", |e| matches!(e, MemberEvent::Chat { .. })).await
            {
                assert!(seen.insert(text.clone(), via).is_none(), "{text} shown twice");
            }
        }
        assert!(seen.contains_key("from alice on multicast") && seen.contains_key("from bob through the room"));
    }
    let ev = next(&mut members[1], "dup check", |_| true);
    // Nothing else but maybe epochs/presence: no second copy of a chat.
    if let Ok(ev) = tokio::time::timeout(Duration::from_millis(500), ev).await {
        assert!(!matches!(ev, MemberEvent::Chat { .. }), "duplicate chat: {ev:?}");
    }

    // A 20 MiB file from alice, at 10 % loss at every receiver: bit-exact
    // at bob and carol, opened once each.
    let content: Vec<u8> = (0..20u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let file = base.join("survey.bin");
    std::fs::write(&file, &content).unwrap();
    members[0].send_file(&file).await;
    next(&mut members[0], "file sent", |e| matches!(e, MemberEvent::FileSent { .. })).await;
    for (m, user) in members.iter_mut().zip(["alice", "bob", "carol"]).skip(1) {
        let ev = next(m, "file received", |e| {
            matches!(e, MemberEvent::FileReceived { .. } | MemberEvent::FileFailed { .. })
        })
        .await;
        let MemberEvent::FileReceived { path, size, name, .. } = ev else { panic!("{user}: {ev:?}") };
        assert_eq!((name.as_str(), size), ("survey.bin", content.len() as u64));
        assert_eq!(path, base.join(user).join("survey.bin"));
        assert!(std::fs::read(&path).unwrap() == content, "{user}: bytes differ");
        next(m, "opened", |e| matches!(e, MemberEvent::FileOpened { .. })).await;
    }
    // The hook is a separate process: give it a moment to write.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for user in ["bob", "carol"] {
        let log = std::fs::read_to_string(base.join(format!("{user}.opened"))).unwrap();
        assert_eq!(log.lines().collect::<Vec<_>>(), [base.join(user).join("survey.bin").display().to_string()]);
    }
    assert!(!base.join("alice.opened").exists(), "the sender does not open its own file");

    // bob leaves: alice moves to a newer epoch, and chat still flows.
    let carol = members.pop().unwrap();
    let bob = members.pop().unwrap();
    let rest = bob.leave().await;
    let left = rest.iter().find_map(|e| match e {
        MemberEvent::Left { epoch } => Some(*epoch),
        _ => None,
    });
    let left = left.unwrap_or_else(|| panic!("no Left event: {rest:?}"));
    let alice = &mut members[0];
    next(alice, "rekey after bob left", |e| matches!(e, MemberEvent::Epoch(n) if *n >= left)).await;
    alice.chat("after bob left").await;
    let ev = next(alice, "own chat", is_chat("after bob left")).await;
    assert!(matches!(ev, MemberEvent::Chat { via: Via::Multicast, .. }));
    let mut carol = carol;
    next(&mut carol, "chat after bob left", is_chat("after bob left")).await;
    ks.close();
    let _ = std::fs::remove_dir_all(&base);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_with_prosody() {
    let Some(p) = common::Prosody::start("group", false, &USERS) else { return };
    let t = Target { addr: p.addr(), domain: "localhost".into(), trust: None, muc: "conference.localhost".into() };
    three_members(&t).await;
}
