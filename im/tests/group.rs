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

use lsim_im::group::member::{ChatVia, Member, MemberConfig, MemberEvent, Via};
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
    // a user of its own; carol's account serves here).
    let mut announcer = Client::spawn(target.config("carol", "carol-pw"));
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
    for (i, (user, pw)) in USERS.iter().take(2).enumerate() {
        let mut cfg = MemberConfig::new(target.config(user, pw), target.room(), user);
        cfg.chat_via = if i == 0 { ChatVia::Multicast } else { ChatVia::Xmpp };
        let mut m = Member::start(cfg).await.unwrap();
        next(&mut m, "joined", |e| matches!(e, MemberEvent::Joined { .. })).await;
        members.push(m);
    }
    let (epoch, _) = ks.group_state("lsim").await.unwrap();
    assert!(epoch >= 2, "each join moved the epoch: {epoch}");

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

    // bob leaves: alice moves to a newer epoch, and chat still flows.
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
    ks.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_with_prosody() {
    let Some(p) = common::Prosody::start("group", false, &USERS) else { return };
    let t = Target { addr: p.addr(), domain: "localhost".into(), trust: None, muc: "conference.localhost".into() };
    three_members(&t).await;
}
