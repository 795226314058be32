//! The group client end to end: an XMPP server, the key server (announcing
//! the group's parameters in the room), and three members on loopback
//! multicast. Chat goes both ways (multicast and sealed through the room)
//! and arrives once at everyone; a member leaves and the rest move to a new
//! epoch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod group_support;
mod scenario;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use group_support::{CHEAP, all_in_one, group_addr, is_chat, key_server, next, scratch, two_quiet_members};
use lsim_im::group::audit::{Capture, read_with};
use lsim_im::group::chat::ChatMessage;
use lsim_im::group::member::{CHAT_AAD, Member, MemberConfig, MemberEvent, Via, Viewer};
use lsim_im::group::presence::PresenceEvent;
use lsim_im::group::server::{KeyService, KeyServiceConfig, XmppLogin};
use lsim_im::xmpp::client::{Client, ClientError, ClientEvent};
use lsim_im::xmpp::payload::{Payload, SealedChat};
use lsim_im::xmpp::room::RoomEvent;
use lsim_keymgmt::client::{Registration, follow_rekeys};
use lsim_keymgmt::server::MAX_FAILED_LOGINS;
use lsim_keymgmt::suite::GroupSeal;
use lsim_keymgmt::suite::SuiteId;
use lsim_transport::net::MulticastConfig;
use lsim_transport::wire::{PacketType, peek_header};
use scenario::{Target, USERS};

/// The scenario; `outage(true)` stops the XMPP server, `outage(false)`
/// starts it again.
async fn three_members(target: &Target, test: u8, outage: &mut dyn FnMut(bool)) {
    let (ks, mut presence, _ks_dir) = key_server(target, test).await;
    let capture = Capture::loopback(group_addr(test)).unwrap();
    let mut session = 0;
    let mut members = Vec::new();
    let files = scratch(&format!("group-files-{test}"));
    let base = files.path();
    for (i, (user, pw)) in USERS.iter().take(3).enumerate() {
        let mut cfg = MemberConfig::new(target.config(user, pw), target.room(), user);
        cfg.chat_via = if i == 1 { Via::Xmpp } else { Via::Multicast };
        cfg.download_dir = base.join(user);
        std::fs::create_dir_all(&cfg.download_dir).unwrap();
        // The viewer hook: appends the opened path to a log per member.
        let log = base.join(format!("{user}.opened"));
        cfg.viewer = Viewer::Command(vec!["sh".into(), "-c".into(), format!("echo \"$0\" >> {}", log.display())]);
        cfg.simulated_loss = 0.10;
        cfg.rate = 40_000_000;
        cfg.beacon_interval = Duration::from_millis(200);
        let mut m = Member::start(cfg).await.unwrap();
        if let MemberEvent::Joined { session: s, .. } =
            next(&mut m, "joined", |e| matches!(e, MemberEvent::Joined { .. })).await
        {
            session = s;
        }
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
    let mut alice_chat = ([0u8; 16], 0u64);
    for m in members.iter_mut() {
        let mut seen = std::collections::BTreeMap::new();
        while seen.len() < 2 {
            if let MemberEvent::Chat { text, via, id, sent_ms, .. } =
                next(m, "both chats", |e| matches!(e, MemberEvent::Chat { .. })).await
            {
                if text == "from alice on multicast" {
                    for (i, b) in alice_chat.0.iter_mut().enumerate() {
                        *b = u8::from_str_radix(&id[2 * i..2 * i + 2], 16).unwrap();
                    }
                    alice_chat.1 = sent_ms;
                }
                assert!(seen.insert(text.clone(), via).is_none(), "{text} shown twice");
            }
        }
        assert!(seen.contains_key("from alice on multicast") && seen.contains_key("from bob through the room"));
    }
    // The same message arriving the other way (alice's multicast chat,
    // sealed again and relayed through the room) is not shown twice, while a
    // new message the same way is.
    let (epoch, _) = ks.group_state("lsim").await.unwrap();
    let seal = GroupSeal::new(SuiteId::Aes256Gcm, epoch, &ks.group_key("lsim").await.unwrap());
    let mut relay = Client::spawn(target.config("dave", "dave-pw"));
    relay.join(target.room(), "relay", 0).await;
    scenario::wait_for(&mut relay, "relay joined", |e| {
        matches!(e, ClientEvent::Room { event: RoomEvent::Joined { .. }, .. })
    })
    .await;
    let again = ChatMessage {
        id: alice_chat.0,
        sent_ms: alice_chat.1,
        from: "alice".into(),
        text: "from alice on multicast".into(),
    };
    let fresh = ChatMessage::new("dave", "a new one through the room");
    // Chat is signed: the relay forwards alice's message as alice signed it
    // (here: signed again under a certificate alice's login gets), and its own as dave.
    let certified = |user: &'static str, pw: &'static str| {
        let ks = ks.clone();
        async move {
            let reg = Registration::login(ks.addr().unwrap(), ks.fingerprint(), user, pw).await.unwrap();
            reg.certify(lsim_keymgmt::cert::new_signing_key().unwrap()).await.unwrap()
        }
    };
    let (as_alice, as_dave) = (certified("alice", "alice-pw").await, certified("dave", "dave-pw").await);
    for (m, signer) in [(&again, &as_alice), (&fresh, &as_dave)] {
        let sealed = seal.encrypt_message(CHAT_AAD, &lsim_im::group::signed::sign(m, signer)).unwrap();
        let payload = Payload::Chat(SealedChat { id: m.id_hex(), epoch: u64::from(epoch), sealed });
        relay.send_group(&target.room(), None, Some(payload.to_element())).await;
    }
    let ev = next(&mut members[2], "relayed chat", |e| matches!(e, MemberEvent::Chat { .. })).await;
    assert!(
        matches!(&ev, MemberEvent::Chat { text, .. } if text == "a new one through the room"),
        "shown twice: {ev:?}"
    );
    // An insider (dave holds the group key and a certificate of his own)
    // speaking as alice is refused, and says who really signed.
    let forged = ChatMessage::new("alice", "evacuate to the north road now");
    let sealed = seal.encrypt_message(CHAT_AAD, &lsim_im::group::signed::sign(&forged, &as_dave)).unwrap();
    let payload = Payload::Chat(SealedChat { id: forged.id_hex(), epoch: u64::from(epoch), sealed });
    relay.send_group(&target.room(), None, Some(payload.to_element())).await;
    let ev = next(&mut members[2], "the forgery", |e| {
        matches!(e, MemberEvent::Unreadable { .. })
            || matches!(e, MemberEvent::Chat { text, .. } if text.contains("evacuate"))
    })
    .await;
    assert!(
        matches!(&ev, MemberEvent::Unreadable { why, .. } if why.contains("signed by \"dave\"")),
        "a forgery was not refused: {ev:?}"
    );
    relay.stop().await;

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
        next(m, "opened", |e| matches!(e, MemberEvent::FileShown { .. })).await;
    }
    // The hook is a separate process: give it a moment to write.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for user in ["bob", "carol"] {
        let log = std::fs::read_to_string(base.join(format!("{user}.opened"))).unwrap();
        assert_eq!(log.lines().collect::<Vec<_>>(), [base.join(user).join("survey.bin").display().to_string()]);
    }
    assert!(!base.join("alice.opened").exists(), "the sender does not open its own file");

    // A file for alice only, from carol: alice opens it, bob cannot.
    let orders = base.join("orders.txt");
    std::fs::write(&orders, "crew 3 to the north gate at 14:00").unwrap();
    members[2].send_file_to(&orders, &["alice".into()]).await;
    let arrived = |e: &MemberEvent| {
        matches!(
            e,
            MemberEvent::FileReceived { .. } | MemberEvent::FileFailed { .. } | MemberEvent::FileNotForUs { .. }
        )
    };
    let ev = next(&mut members[0], "alice's file", arrived).await;
    let MemberEvent::FileReceived { from, path, .. } = ev else { panic!("alice: {ev:?}") };
    assert_eq!(from, "carol");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "crew 3 to the north gate at 14:00");
    let ev = next(&mut members[1], "bob's notice", arrived).await;
    assert!(matches!(ev, MemberEvent::FileNotForUs { .. }), "bob: {ev:?}");
    assert!(!base.join("bob").join("orders.txt").exists());

    // The XMPP server goes away: chat and a file still get through on
    // multicast; when it is back, members are back in the room.
    outage(true);
    for m in members.iter_mut() {
        next(m, "xmpp offline", |e| matches!(e, MemberEvent::XmppOffline(_))).await;
    }
    // Presence falls back to what multicast carries: each hears the others' beacons.
    for (i, m) in members.iter_mut().enumerate() {
        let others: Vec<String> =
            ["alice", "bob", "carol"].iter().enumerate().filter(|(j, _)| *j != i).map(|(_, n)| n.to_string()).collect();
        next(m, "multicast presence", |e| matches!(e, MemberEvent::MulticastPresence(n) if *n == others)).await;
    }
    // bob chats through the room normally: during the outage his chat falls back to multicast.
    members[1].chat("while the server is down").await;
    let small = base.join("note.txt");
    std::fs::write(&small, "grid 4417, two casualties").unwrap();
    members[2].send_file(&small).await;
    for (i, m) in members.iter_mut().enumerate() {
        let (mut chat, mut file) = (i == 1, i == 2);
        while !(chat && file) {
            let both = |e: &MemberEvent| matches!(e, MemberEvent::Chat { .. } | MemberEvent::FileReceived { .. });
            match next(m, "chat and file during outage", both).await {
                MemberEvent::Chat { text, .. } => chat |= text == "while the server is down",
                MemberEvent::FileReceived { path, .. } => {
                    assert_eq!(std::fs::read_to_string(path).unwrap(), "grid 4417, two casualties");
                    file = true;
                }
                _ => unreachable!(),
            }
        }
    }
    outage(false);
    for m in members.iter_mut() {
        next(m, "xmpp back", |e| matches!(e, MemberEvent::XmppOnline)).await;
        next(m, "back in the room", |e| matches!(e, MemberEvent::RoomJoined(_))).await;
    }

    // The key server's presence is back in the room too (it may rejoin
    // after the members) and sees all three: only then can it see carol go.
    let everyone = |p: &[(String, String)]| {
        let mut users: Vec<&str> = p.iter().map(|(_, u)| u.as_str()).collect();
        users.sort_unstable();
        users == ["alice", "bob", "carol"]
    };
    let mut back = false;
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(30), presence.events.recv()).await.unwrap();
        eprintln!("presence after the outage: {ev:?}");
        match ev {
            Some(PresenceEvent::Published) => back = true,
            Some(PresenceEvent::Present(p)) if back && everyone(&p) => break,
            Some(PresenceEvent::Error(e)) => panic!("{e}"),
            Some(_) => {}
            None => panic!("presence task ended"),
        }
    }

    // carol vanishes without leaving: after the grace period the key
    // server removes her, and the others move on.
    let (before, _) = ks.group_state("lsim").await.unwrap();
    members.pop().unwrap().vanish();
    let (user, epoch) = loop {
        let ev = tokio::time::timeout(Duration::from_secs(30), presence.events.recv()).await.unwrap();
        eprintln!("presence after carol vanished: {ev:?}");
        match ev {
            Some(PresenceEvent::Evicted { user, epoch }) => break (user, epoch),
            Some(PresenceEvent::Error(e)) => panic!("{e}"),
            Some(_) => {}
            None => panic!("presence task ended"),
        }
    };
    assert_eq!(user, "carol");
    assert!(epoch > before);
    for m in members.iter_mut() {
        next(m, "rekey after carol vanished", |e| matches!(e, MemberEvent::Epoch(n) if *n == epoch)).await;
    }
    // bob leaves: alice moves to a newer epoch, and chat still flows.
    let bob = members.pop().unwrap();
    let departure = bob.leave().await;
    let rest = departure.events;
    let bob_keys = departure.keys_held;
    let after_bob = capture.mark();
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
    // bob's client kept every key it ever had: none opens what came after.
    assert!(bob_keys.len() >= 3, "bob held the epochs of every join and leave he saw");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reads = read_with(session, SuiteId::Aes256Gcm, &bob_keys, &capture.since(after_bob));
    assert!(!reads.contains(b"after bob left"), "the leaver read chat sent after it left");
    assert!(reads.unopenable > 0);
    ks.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_with_the_embedded_server() {
    let mut e = common::Embedded::start("group", false, &USERS).await;
    let t = Target { addr: e.addr(), domain: "localhost".into(), trust: None, muc: "conference.localhost".into() };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<bool>();
    // The outage switch runs the async stop/start beside the scenario.
    let switch = tokio::spawn(async move {
        while let Some(down) = rx.recv().await {
            if down { e.stop().await } else { e.resume().await }
        }
        e.stop().await;
    });
    three_members(&t, 3, &mut |down| tx.send(down).unwrap()).await;
    drop(tx);
    switch.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_with_ejabberd() {
    let Some(mut e) = common::Ejabberd::start("group", false, &USERS) else { return };
    let t = Target { addr: e.addr(), domain: "localhost".into(), trust: None, muc: "conference.localhost".into() };
    three_members(&t, 6, &mut |down| if down { e.stop() } else { e.resume() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_with_prosody() {
    let Some(mut p) = common::Prosody::start("group", false, &USERS) else { return };
    let t = Target { addr: p.addr(), domain: "localhost".into(), trust: None, muc: "conference.localhost".into() };
    three_members(&t, 1, &mut |down| if down { p.stop() } else { p.resume() }).await;
}

/// A member that leaves keeps every key it ever had: it still cannot read
/// chat or files sent afterwards. A member that joins cannot read what was
/// sent before. Checked on the datagrams themselves, captured off the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaver_and_joiner_cannot_read_captured_packets() {
    let Some(p) = common::Prosody::start("secrecy", false, &USERS) else { return };
    let t = Target { addr: p.addr(), domain: "localhost".into(), trust: None, muc: "conference.localhost".into() };
    let (ks, _presence, _ks_dir) = key_server(&t, 2).await;
    for spy in ["eve", "frank"] {
        ks.add_user(spy, "spy-pw", CHEAP).unwrap();
    }
    let captured = Capture::loopback(group_addr(2)).unwrap();
    let files = scratch("secrecy");
    let base = files.path();
    let mut cfg = MemberConfig::new(t.config("alice", "alice-pw"), t.room(), "alice");
    cfg.download_dir = base.into();
    cfg.viewer = Viewer::Never;
    let mut alice = Member::start(cfg).await.unwrap();
    next(&mut alice, "joined", |e| matches!(e, MemberEvent::Joined { .. })).await;

    // eve joins with the key server directly and keeps every key she gets.
    let (addr, fp) = (ks.addr().unwrap(), ks.fingerprint());
    let eve = Registration::login(addr, fp, "eve", "spy-pw").await.unwrap();
    let eve_keys = eve.join("lsim").await.unwrap();
    let session = eve_keys.keys.group();
    let mut ever = vec![(eve_keys.keys.epoch().unwrap(), eve_keys.keys.group_key().unwrap().clone())];
    let mc = MulticastConfig::loopback(group_addr(2));
    let mut follower = follow_rekeys(&mc, 0x6000, eve_keys, *eve.server_key()).unwrap();
    let joined_epoch = ever[0].0;
    next(&mut alice, "eve's join", |e| matches!(e, MemberEvent::Epoch(n) if *n == joined_epoch)).await;
    alice.chat("eve may read this").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    follower.handle.stop();
    let _ = follower.epochs.changed().await;
    let kept = follower.task.await.unwrap();
    for epoch in kept.keys.epoch().into_iter() {
        if epoch > joined_epoch {
            ever.push((epoch, kept.keys.group_key_for(epoch).unwrap().clone()));
        }
    }
    let left = eve.leave("lsim").await.unwrap();
    next(&mut alice, "rekey after eve left", |e| matches!(e, MemberEvent::Epoch(n) if *n >= left)).await;
    let mark = captured.mark();
    alice.chat("SECRET-CHAT after eve left").await;
    let file = base.join("after.txt");
    std::fs::write(&file, "SECRET-FILE after eve left").unwrap();
    alice.send_file(&file).await;
    next(&mut alice, "file sent", |e| matches!(e, MemberEvent::FileSent { .. })).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = captured.since(mark);

    // Control: the group's current key opens them.
    let current = ks.group_key("lsim").await.unwrap();
    let control = read_with(session, SuiteId::Aes256Gcm, &[(left, current.clone())], &after);
    assert!(control.contains(b"SECRET-CHAT") && control.contains(b"SECRET-FILE"), "control replay must read them");
    // eve, with everything she ever held, cannot.
    let eve_reads = read_with(session, SuiteId::Aes256Gcm, &ever, &after);
    assert!(!eve_reads.contains(b"SECRET"), "the leaver read a secret");
    assert!(eve_reads.unopenable > 0, "the leaver saw the packets and could not open them");

    // frank joins now: nothing sent before opens with his keys.
    let before = captured.before(captured.mark());
    let frank = Registration::login(addr, fp, "frank", "spy-pw").await.unwrap();
    let frank_keys = frank.join("lsim").await.unwrap();
    let frank_epoch = frank_keys.keys.epoch().unwrap();
    assert!(frank_epoch > left);
    let frank_key = [(frank_epoch, frank_keys.keys.group_key().unwrap().clone())];
    let frank_reads = read_with(session, SuiteId::Aes256Gcm, &frank_key, &before);
    assert!(!frank_reads.contains(b"SECRET") && !frank_reads.contains(b"eve may read"), "the joiner read the past");
    assert!(frank_reads.unopenable > 0);
    ks.close();
}

/// The all-in-one server: one user list for both logins; members find the
/// key server through the room and chat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_in_one_group_server() {
    let (server, t, _dir) = all_in_one("allinone", 4).await;
    let mut members = two_quiet_members(&t).await;
    let (epoch, n) = server.keys.group_state("lsim").await.unwrap();
    assert_eq!(n, 2);
    next(&mut members[0], "latest epoch", |e| matches!(e, MemberEvent::Epoch(x) if *x == epoch)).await;
    members[1].chat("all in one").await;
    next(&mut members[0], "chat", is_chat("all in one")).await;
    // A member's key-server login uses its XMPP password; a wrong one fails.
    let (ks, fp) = (server.params.keyserver, server.params.fingerprint);
    assert!(Registration::login(ks, fp, "alice", "alice-pw").await.is_ok());
    assert!(Registration::login(ks, fp, "alice", "bob-pw").await.is_err());
    // One count of failed logins for both services: wrong passwords for
    // carol at the registrar lock her XMPP login from this address too,
    // for a while (the client may retry later; it does not give up).
    for _ in 0..MAX_FAILED_LOGINS {
        assert!(Registration::login(ks, fp, "carol", "guess").await.is_err());
    }
    let e = lsim_im::xmpp::client::connect(&t.config("carol", "carol-pw")).await.err().unwrap();
    assert!(matches!(&e, ClientError::AuthRejected(c) if c == "temporary-auth-failure"), "{e}");
    assert!(!e.is_fatal());
    for m in members {
        m.leave().await;
    }
    server.stop().await;
}

/// A file for some members only (the original system's future work: file
/// access control): bob, named, gets it bit-exact and signed by alice;
/// carol, in the group but not named, gets only a notice and nothing lands
/// in her directory; naming a user who is not in the group is refused by
/// the key server before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_for_some_members_opens_only_for_them() {
    let (server, t, scratch) = all_in_one("private", 7).await;
    let dir = scratch.path();
    let mut members = Vec::new();
    for (user, pw) in USERS.iter().take(3) {
        let mut cfg = MemberConfig::new(t.config(user, pw), t.room(), user);
        cfg.viewer = Viewer::Never;
        cfg.download_dir = dir.join(format!("files-{user}"));
        std::fs::create_dir_all(&cfg.download_dir).unwrap();
        let mut m = Member::start(cfg).await.unwrap();
        next(&mut m, "joined", |e| matches!(e, MemberEvent::Joined { .. })).await;
        members.push(m);
    }
    let (epoch, n) = server.keys.group_state("lsim").await.unwrap();
    assert_eq!(n, 3);
    for m in members.iter_mut().take(2) {
        next(m, "latest epoch", |e| matches!(e, MemberEvent::Epoch(x) if *x == epoch)).await;
    }
    let data: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let file = dir.join("casualty list.txt");
    std::fs::write(&file, &data).unwrap();
    let sent = |e: &MemberEvent| matches!(e, MemberEvent::FileNotSent { .. } | MemberEvent::FileSending { .. });
    let arrived = |e: &MemberEvent| {
        matches!(
            e,
            MemberEvent::FileReceived { .. } | MemberEvent::FileFailed { .. } | MemberEvent::FileNotForUs { .. }
        )
    };

    // dave has an account but is not in the group: refused, nothing sent.
    members[0].send_file_to(&file, &["bob".into(), "dave".into()]).await;
    match next(&mut members[0], "refusal", sent).await {
        MemberEvent::FileNotSent { why, .. } => assert!(why.contains("dave") && !why.contains("bob"), "{why}"),
        other => panic!("sent to a non-member: {other:?}"),
    }

    members[0].send_file_to(&file, &["bob".into()]).await;
    assert!(matches!(next(&mut members[0], "sending", sent).await, MemberEvent::FileSending { .. }));
    let got = next(&mut members[1], "bob's file", arrived).await;
    let MemberEvent::FileReceived { from, name, path, .. } = got else { panic!("bob: {got:?}") };
    assert_eq!((from.as_str(), name.as_str()), ("alice", "casualty list.txt"));
    assert!(std::fs::read(&path).unwrap() == data, "bob's copy is bit-exact");
    // alice learns it from bob's signed receipt, on multicast.
    let ev = next(&mut members[0], "bob's receipt", |e| matches!(e, MemberEvent::FileDelivered { .. })).await;
    assert!(matches!(&ev, MemberEvent::FileDelivered { path, to, .. } if *path == file && to == "bob"), "{ev:?}");
    // carol hears of it twice, in either order: the offer in the room (which
    // does not name the file) and the file itself, which she cannot open.
    let (mut offered, mut notice) = (None, None);
    while offered.is_none() || notice.is_none() {
        match next(&mut members[2], "carol's events", |e| arrived(e) || matches!(e, MemberEvent::FileOffered { .. }))
            .await
        {
            MemberEvent::FileOffered { offer, .. } => offered = Some(offer),
            other => notice = Some(other),
        }
    }
    assert!(matches!(notice, Some(MemberEvent::FileNotForUs { .. })), "carol: {notice:?}");
    let offer = offered.unwrap();
    assert!(!offer.name.contains("casualty") && offer.size == data.len() as u64, "{offer:?}");
    let left: Vec<_> = std::fs::read_dir(dir.join("files-carol")).unwrap().collect();
    assert!(left.is_empty(), "nothing of it in carol's directory: {left:?}");

    // A private message to bob, then one to everyone: bob reads both, the
    // first marked private; carol's next message is the public one.
    members[0].chat_to("meet me at the north gate", &["bob".into()]).await;
    members[0].chat("all crews regroup at the river").await;
    let private = |e: &MemberEvent| matches!(e, MemberEvent::Chat { private: true, .. });
    let public = |e: &MemberEvent| matches!(e, MemberEvent::Chat { private: false, .. });
    let ev = next(&mut members[1], "bob's private message", private).await;
    assert!(
        matches!(&ev, MemberEvent::Chat { from, text, .. } if from == "alice" && text == "meet me at the north gate")
    );
    next(&mut members[1], "bob's public message", public).await;
    let ev = next(&mut members[2], "carol's next message", |e| matches!(e, MemberEvent::Chat { .. })).await;
    assert!(
        matches!(&ev, MemberEvent::Chat { text, private: false, .. } if text == "all crews regroup at the river"),
        "{ev:?}"
    );
    for m in members {
        m.leave().await;
    }
    server.stop().await;
}

/// With an external XMPP server (Prosody), the key service checks member
/// passwords by logging into it: one user list, no passwords at the key
/// server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_service_with_prosody_accounts() {
    let Some(p) = common::Prosody::start("keyservice", false, &USERS) else { return };
    let t = Target { addr: p.addr(), domain: "localhost".into(), trust: None, muc: "conference.localhost".into() };
    let dir = scratch("keyservice");
    let cfg = KeyServiceConfig {
        data_dir: dir.path().into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        advertise: None,
        host: None,
        group: group_addr(5),
        interface: Ipv4Addr::LOCALHOST,
        ttl: 0,
        suite: SuiteId::ChaCha20Poly1305,
        xmpp: t.config("dave", "dave-pw"),
        room: t.room(),
        grace: Duration::from_secs(30),
        guard: None,
        archive: None,
        history: Default::default(),
    };
    let service = KeyService::start(cfg, Arc::new(XmppLogin::new(t.config("template", "unused")))).await.unwrap();
    let mut members = two_quiet_members(&t).await;
    let (epoch, n) = service.keys.group_state("lsim").await.unwrap();
    assert_eq!(n, 2);
    next(&mut members[0], "latest epoch", |e| matches!(e, MemberEvent::Epoch(x) if *x == epoch)).await;
    members[1].chat("through prosody's accounts").await;
    next(&mut members[0], "chat", is_chat("through prosody's accounts")).await;
    let (ks, fp) = (service.params.keyserver, service.params.fingerprint);
    assert!(Registration::login(ks, fp, "alice", "wrong").await.is_err());
    assert!(Registration::login(ks, fp, "mallory", "x").await.is_err());
    for m in members {
        m.leave().await;
    }
    service.keys.close();
}

/// A region's repairer announces itself in the room; the region's members
/// find it there, send it their NACKs, and it repairs them with
/// region-scoped repair packets while the sender (outside the region) hears
/// no NACK from them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repairer_found_through_the_room_repairs_its_region() {
    let (server, t, scratch) = all_in_one("region", 5).await;
    let dir = scratch.path();
    let capture = Capture::loopback(group_addr(5)).unwrap();
    // alice repairs for "crew-a"; bob and carol are crew-a members on a lossy
    // radio; dave sends from elsewhere.
    let mut members = Vec::new();
    for (i, (user, pw)) in USERS.iter().enumerate() {
        let mut cfg = MemberConfig::new(t.config(user, pw), t.room(), user);
        cfg.viewer = Viewer::Never;
        cfg.download_dir = dir.join(format!("files-{user}"));
        std::fs::create_dir_all(&cfg.download_dir).unwrap();
        cfg.rate = 20_000_000;
        match i {
            0 => cfg.repairer = Some("crew-a".into()),
            1 | 2 => {
                cfg.region = Some("crew-a".into());
                cfg.simulated_loss = 0.15;
            }
            _ => {}
        }
        cfg.region = cfg.region.or(cfg.repairer.clone());
        let mut m = Member::start(cfg).await.unwrap();
        next(&mut m, "joined", |e| matches!(e, MemberEvent::Joined { .. })).await;
        members.push(m);
    }
    for m in &mut members[1..3] {
        next(m, "our repairer", |e| matches!(e, MemberEvent::Repairer(Some(n)) if n == "alice")).await;
    }
    let (epoch, _) = server.keys.group_state("lsim").await.unwrap();
    for m in &mut members[..3] {
        next(m, "latest epoch", |e| matches!(e, MemberEvent::Epoch(x) if *x == epoch)).await;
    }
    let file = dir.join("sector map.bin");
    let content: Vec<u8> = (0..2_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&file, &content).unwrap();
    let mark = capture.mark();
    members[3].send_file(&file).await;
    for (i, m) in members[..3].iter_mut().enumerate() {
        let ev =
            next(m, "the file", |e| matches!(e, MemberEvent::FileReceived { .. } | MemberEvent::FileFailed { .. }))
                .await;
        let MemberEvent::FileReceived { path, .. } = ev else { panic!("member {i}: {ev:?}") };
        assert!(std::fs::read(&path).unwrap() == content, "member {i}: bytes differ");
    }
    let packets = capture.since(mark);
    let relayed = packets.iter().filter(|p| peek_header(p).is_ok_and(|h| h.packet_type == PacketType::Repair)).count();
    assert!(relayed > 0, "the repairer sent region-scoped repair ({} packets captured)", packets.len());
    for m in members {
        m.leave().await;
    }
    server.stop().await;
}

/// The history policy `joined`, against a member that asks on purpose:
/// bob joins (with the key server directly) after alice sent a map, and
/// listens with a receiver that takes every sender's backlog and asks for
/// it: of alice while she is there, of the archive once she has left. The
/// archive refuses him; what repair of the map alice sent for him is
/// sealed under the map's epoch, which he never held: he hears it and
/// cannot open it, and a replay of the same packets with the map's epoch
/// reads the map.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_added_after_a_file_cannot_get_it() {
    use lsim_keymgmt::server::member_node;
    use lsim_transport::net::driver::wall_clock_seq;
    use lsim_transport::net::{Driver, DriverConfig, MulticastSocket};
    use lsim_transport::stats::DropReason;
    use lsim_transport::{Receiver, ReceiverConfig, ReceiverEvent};

    let (server, t, scratch) = all_in_one("policy", 8).await;
    let captured = Capture::loopback(group_addr(8)).unwrap();
    let mut cfg = MemberConfig::new(t.config("alice", "alice-pw"), t.room(), "alice");
    cfg.viewer = Viewer::Never;
    cfg.download_dir = scratch.path().into();
    let mut alice = Member::start(cfg).await.unwrap();
    let MemberEvent::Joined { session, node: alice_node, .. } =
        next(&mut alice, "joined", |e| matches!(e, MemberEvent::Joined { .. })).await
    else {
        unreachable!()
    };
    let map = scratch.path().join("map.txt");
    std::fs::write(&map, "SECRET-MAP of the ridge. ".repeat(8_000)).unwrap();
    alice.send_file(&map).await;
    next(&mut alice, "map sent", |e| matches!(e, MemberEvent::FileSent { .. })).await;
    let (map_epoch, _) = server.keys.group_state("lsim").await.unwrap();
    let map_key = server.keys.group_key("lsim").await.unwrap();
    let archive = server.archive.as_ref().unwrap();
    for _ in 0..50 {
        if archive.objects().await.unwrap_or(0) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // bob joins after the map: his keys hold nothing of its epoch.
    let (addr, fp) = (server.params.keyserver, server.params.fingerprint);
    let bob = Registration::login(addr, fp, "bob", "bob-pw").await.unwrap();
    let keys = bob.join("lsim").await.unwrap();
    let bob_epoch = keys.keys.epoch().unwrap();
    assert!(bob_epoch > map_epoch && keys.keys.history().next().is_none());
    next(&mut alice, "bob's epoch", |e| matches!(e, MemberEvent::Epoch(n) if *n >= bob_epoch)).await;
    let mark = captured.mark();
    let rcfg = ReceiverConfig {
        session,
        node: member_node(bob.member()) | lsim_im::group::member::RECEIVER_NODE_BIT,
        seed: 8,
        accept_backlog: true,
        first_seq: wall_clock_seq(),
        ..ReceiverConfig::default()
    };
    let socket = MulticastSocket::open(&MulticastConfig::loopback(group_addr(8))).unwrap();
    let mut driver = Driver::new(Receiver::new(rcfg, keys.seal().unwrap()), socket, DriverConfig::default());
    let handle = driver.handle();
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let into = got.clone();
    let task = tokio::spawn(async move {
        let _ = driver
            .run(move |_: &mut Receiver<GroupSeal>, e| {
                if let ReceiverEvent::ObjectData { sender, data, .. } = e
                    && sender == alice_node
                {
                    into.lock().unwrap().extend(data);
                }
                std::ops::ControlFlow::<()>::Continue(())
            })
            .await;
    });
    // alice's heartbeats tell him what she holds; then she goes.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let left = alice.leave().await;
    let left = left.events.iter().find_map(|e| if let MemberEvent::Left { epoch } = e { Some(*epoch) } else { None });
    // Her leave rekeyed the group: bob resyncs, as a member would.
    let left = left.unwrap();
    let fresh = bob.resync("lsim").await.unwrap();
    assert_eq!(fresh.keys.epoch(), Some(left));
    assert!(fresh.keys.history().all(|(e, _)| e >= bob_epoch), "his history begins at his join");
    let key = fresh.keys.group_key().unwrap().clone();
    handle.with(move |r: &mut Receiver<GroupSeal>| {
        let _ = r.seal_mut().install(left, &key);
    });
    // The archive says what it holds of alice once she is silent; bob asks it.
    for _ in 0..40 {
        if archive.stats().await.is_some_and(|s| s.repair_refused_policy > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (tx, rx) = tokio::sync::oneshot::channel();
    handle.with(move |r: &mut Receiver<GroupSeal>| {
        let _ = tx.send(r.stats().clone());
    });
    let bob_stats = rx.await.unwrap();
    handle.stop();
    task.abort();

    let archive_stats = archive.stats().await.unwrap();
    let refused = archive_stats.repair_refused_policy;
    assert!(refused > 0, "the archive refused nothing: bob {bob_stats:?}, archive {archive_stats:?}");
    let got = got.lock().unwrap();
    assert!(!got.windows(10).any(|w| w == b"SECRET-MAP"), "bob read the map");
    let unopened = bob_stats.dropped(DropReason::UnknownEpoch);
    assert!(unopened > 0, "bob heard nothing he could not open: {bob_stats:?}");
    let after = captured.since(mark);
    let control = read_with(session, SuiteId::Aes256Gcm, &[(map_epoch, map_key)], &after);
    assert!(control.contains(b"SECRET-MAP"), "the map's repair went by after bob joined, under the map's epoch");
    eprintln!("policy: archive refused {refused} requests; bob could not open {unopened} packets");
    server.keys.close();
}

/// The history policy `shared:2`: alice says two things and sends a map;
/// carol, who joins after all three, gets the last two from the archive
/// (re-sealed for the group of now) while alice is still there, and not
/// the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_shared_a_new_member_gets_the_last_n_objects() {
    let (server, t, scratch) =
        group_support::all_in_one_with("shared", 9, lsim_im::xmpp::payload::History::Shared(2)).await;
    assert_eq!(server.params.history, lsim_im::xmpp::payload::History::Shared(2));
    let member = |user: &str, pw: &str| {
        let mut cfg = MemberConfig::new(t.config(user, pw), t.room(), user);
        cfg.viewer = Viewer::Never;
        cfg.download_dir = scratch.path().join(user);
        std::fs::create_dir_all(&cfg.download_dir).unwrap();
        cfg
    };
    let mut alice = Member::start(member("alice", "alice-pw")).await.unwrap();
    next(&mut alice, "joined", |e| matches!(e, MemberEvent::Joined { .. })).await;
    alice.chat("first, from before the shared history").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    alice.chat("second, in the shared history").await;
    let map = scratch.path().join("shared-map.txt");
    std::fs::write(&map, "MAP of the river landing. ".repeat(4_000)).unwrap();
    alice.send_file(&map).await;
    next(&mut alice, "map sent", |e| matches!(e, MemberEvent::FileSent { .. })).await;
    let archive = server.archive.as_ref().unwrap();
    for _ in 0..50 {
        if archive.objects().await.unwrap_or(0) >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut carol = Member::start(member("carol", "carol-pw")).await.unwrap();
    next(&mut carol, "joined", |e| matches!(e, MemberEvent::Joined { .. })).await;
    let mut seen = Vec::new();
    let got = loop {
        let Ok(ev) = tokio::time::timeout(Duration::from_secs(40), carol.next_event()).await else {
            panic!("carol got no shared history in 40 s: {seen:?}; the archive: {:?}", archive.stats().await);
        };
        let ev = ev.expect("carol ended");
        if let MemberEvent::FileReceived { path, .. } = &ev {
            break std::fs::read(path).unwrap();
        }
        seen.push(ev);
    };
    assert_eq!(got, std::fs::read(&map).unwrap(), "the map, byte for byte");
    // Whatever else comes within a few seconds.
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(3), carol.next_event()).await {
        seen.push(ev);
    }
    let chats: Vec<&str> = seen
        .iter()
        .filter_map(|e| if let MemberEvent::Chat { text, .. } = e { Some(text.as_str()) } else { None })
        .collect();
    assert_eq!(chats, ["second, in the shared history"], "carol got exactly the last two objects: {seen:?}");
    let served = archive.stats().await.unwrap();
    assert!(served.local_repairs > 0 && served.repair_refused_policy == 0, "{served:?}");
    server.keys.close();
}
