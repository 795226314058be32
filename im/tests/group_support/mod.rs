//! The fixtures of `group.rs`: a multicast group address per test, waits
//! on a member's events, scratch directories, and the servers a group test
//! starts (the key server with its room presence, the all-in-one server)
//! with members that open nothing.
//!
//! Owns those fixtures. It must not hold a scenario or a test: those stay
//! in `group.rs`, whose tests the README names. Not a test target of its
//! own: a directory module, like `common/`.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use lsim_im::group::member::{Member, MemberConfig, MemberEvent, Viewer};
use lsim_im::group::presence::{KeyServerPresence, PresenceConfig, PresenceEvent};
use lsim_im::group::server::{GroupServer, GroupServerConfig};
use lsim_im::xmpp::payload::GroupParams;
use lsim_keymgmt::server::{GroupConfig, KeyServer, ServerConfig};
use lsim_keymgmt::suite::SuiteId;
use lsim_keymgmt::users::Cost;

use crate::scenario::{Target, USERS};

pub const CHEAP: Cost = Cost { memory_kib: 256, passes: 1, lanes: 1 };

pub fn group_addr(test: u8) -> SocketAddrV4 {
    let pid = std::process::id();
    SocketAddrV4::new(Ipv4Addr::new(239, 79, (pid % 250) as u8, test), 31_000 + (pid % 20_000) as u16 + u16::from(test))
}

pub async fn next(member: &mut Member, what: &str, pred: impl Fn(&MemberEvent) -> bool) -> MemberEvent {
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

pub fn is_chat(text: &'static str) -> impl Fn(&MemberEvent) -> bool {
    move |e| matches!(e, MemberEvent::Chat { text: t, .. } if t == text)
}

/// A new empty directory, removed with everything in it when the test
/// drops it, passing or not.
pub fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("lsim-{name}-")).tempdir().unwrap()
}

/// Starts the key server and its presence in the room, with its data
/// directory.
pub async fn key_server(target: &Target, test: u8) -> (Arc<KeyServer>, KeyServerPresence, tempfile::TempDir) {
    let dir = scratch(&format!("group-{test}"));
    let cfg =
        ServerConfig::new(dir.path().into(), vec![GroupConfig::loopback("lsim", SuiteId::Aes256Gcm, group_addr(test))]);
    let ks = Arc::new(KeyServer::start(cfg).await.unwrap());
    for (user, pw) in USERS {
        ks.add_user(user, pw, CHEAP).unwrap();
    }
    let params = GroupParams {
        group: SocketAddr::V4(group_addr(test)),
        keyserver: ks.addr().unwrap(),
        fingerprint: ks.fingerprint(),
        suite: SuiteId::Aes256Gcm.name().into(),
        epoch: 0,
        history: lsim_im::xmpp::payload::History::Joined,
    };
    // The key server logs into XMPP as a user of its own (dave here).
    let cfg = PresenceConfig {
        xmpp: target.config("dave", "dave-pw"),
        room: target.room(),
        nick: "keyserver".into(),
        group: "lsim".into(),
        params,
        grace: Duration::from_secs(3),
    };
    let mut presence = KeyServerPresence::start(cfg, ks.clone());
    let ev = tokio::time::timeout(Duration::from_secs(20), presence.events.recv()).await.unwrap();
    assert_eq!(ev, Some(PresenceEvent::Published));
    (ks, presence, dir)
}

/// alice and bob as members that open nothing.
pub async fn two_quiet_members(t: &Target) -> Vec<Member> {
    let mut members = Vec::new();
    for (user, pw) in USERS.iter().take(2) {
        let mut cfg = MemberConfig::new(t.config(user, pw), t.room(), user);
        cfg.viewer = Viewer::Never;
        let mut m = Member::start(cfg).await.unwrap();
        next(&mut m, "joined", |e| matches!(e, MemberEvent::Joined { .. })).await;
        members.push(m);
    }
    members
}

/// Starts the all-in-one server (embedded XMPP with the users, key server,
/// its room presence) on loopback in a fresh directory.
pub async fn all_in_one(name: &str, test: u8) -> (GroupServer, Target, tempfile::TempDir) {
    all_in_one_with(name, test, lsim_im::xmpp::payload::History::Joined).await
}

/// `all_in_one` under the history policy `history`.
pub async fn all_in_one_with(
    name: &str,
    test: u8,
    history: lsim_im::xmpp::payload::History,
) -> (GroupServer, Target, tempfile::TempDir) {
    let scratch = scratch(name);
    let dir = scratch.path();
    let users = lsim_im::xmpp::users::UserStore::open(dir).unwrap();
    for (user, pw) in USERS {
        users.add(user, pw, true).unwrap();
    }
    let mut cfg = GroupServerConfig::new(dir);
    cfg.xmpp_listen = "127.0.0.1:0".parse().unwrap();
    cfg.keyserver_listen = "127.0.0.1:0".parse().unwrap();
    cfg.allow_plain_unencrypted = true;
    cfg.group = group_addr(test);
    cfg.history = history;
    let server = GroupServer::start(cfg).await.unwrap();
    let t = Target {
        addr: server.xmpp.local_addr().to_string(),
        domain: "localhost".into(),
        trust: None,
        muc: "conference.localhost".into(),
    };
    (server, t, scratch)
}
