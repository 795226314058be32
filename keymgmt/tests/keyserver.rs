//! A real key server on loopback: members register over QUIC, join and
//! leave, and follow rekeys that arrive over real multicast.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test harness

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{CHEAP, KeyServerProcess};
use lsim_keymgmt::client::{ClientError, Followed, Follower, GroupKeys, Registration, follow_rekeys};
use lsim_keymgmt::filekey::{FileKey, FileKeyError, MAX_RECIPIENTS, Wrap};
use lsim_keymgmt::key::SecretKey;
use lsim_keymgmt::registrar::msg::{ErrorCode, Request, Response};
use lsim_keymgmt::server::{GroupConfig, KeyServer, ServerConfig};
use lsim_keymgmt::suite::{GroupSeal, MAX_HISTORY_EPOCHS, SuiteId};
use lsim_transport::net::MulticastConfig;
use lsim_transport::seal::{Nonce, Seal};
use tokio::sync::watch;

fn data_dir(name: &str) -> tempfile::TempDir {
    common::data_dir("keyserver", name)
}

fn group(test: u8) -> std::net::SocketAddrV4 {
    common::group(78, test)
}

/// `names` logged in (password "pw"), in order.
async fn logins<const N: usize>(addr: SocketAddr, pin: [u8; 32], names: [&str; N]) -> [Registration; N] {
    let mut out = Vec::with_capacity(N);
    for n in names {
        out.push(Registration::login(addr, pin, n, "pw").await.unwrap());
    }
    out.try_into().unwrap_or_else(|_| unreachable!())
}

/// A key server with the group "lsim" (AES-256-GCM) on `group(test)` in a
/// fresh directory (`name`), and `users` (password "pw"); its address and
/// certificate pin.
async fn with_users(name: &str, test: u8, users: &[&str]) -> (KeyServer, SocketAddr, [u8; 32], tempfile::TempDir) {
    let dir = data_dir(name);
    let cfg =
        ServerConfig::new(dir.path().into(), vec![GroupConfig::loopback("lsim", SuiteId::Aes256Gcm, group(test))]);
    let server = KeyServer::start(cfg).await.unwrap();
    let (addr, pin) = (server.addr().unwrap(), server.fingerprint());
    for u in users {
        server.add_user(u, "pw", CHEAP).unwrap();
    }
    (server, addr, pin, dir)
}

async fn wait_epoch(w: &mut watch::Receiver<Followed>, epoch: u32) -> Followed {
    let reached = |f: &Followed| *f == Followed::Epoch(epoch) || matches!(f, Followed::NeedsResync { .. });
    let got = match tokio::time::timeout(Duration::from_secs(10), w.wait_for(reached)).await {
        Ok(Ok(f)) => Some(f.clone()),
        _ => None,
    };
    got.unwrap_or_else(|| panic!("member never reached epoch {epoch}: at {:?}", *w.borrow()))
}

/// Thirty members join one after another and every earlier one follows
/// each rekey to the new epoch, never to a false "needs resync": a packet
/// under the new epoch handled in the same batch as the rekey that brings it
/// used to report the epoch as ahead after the rekey had installed it (from
/// about 18 followers on this machine, every time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_members_follow_every_join_without_a_false_resync() {
    let mc = MulticastConfig::loopback(group(6));
    let dir = data_dir("thirty");
    let cfg = ServerConfig::new(dir.path().into(), vec![GroupConfig::loopback("lsim", SuiteId::Aes256Gcm, group(6))]);
    let server = KeyServer::start(cfg).await.unwrap();
    let (addr, pin) = (server.addr().unwrap(), server.fingerprint());
    let mut follows: Vec<Follower> = Vec::new();
    let mut regs = Vec::new();
    for i in 0..30 {
        let name = format!("crew{i}");
        server.add_user(&name, "pw", CHEAP).unwrap();
        let reg = Registration::login(addr, pin, &name, "pw").await.unwrap();
        let keys = reg.join("lsim").await.unwrap();
        let epoch = keys.keys.epoch().unwrap();
        for (j, f) in follows.iter_mut().enumerate() {
            assert_eq!(wait_epoch(&mut f.epochs, epoch).await, Followed::Epoch(epoch), "member {j} at join {i}");
        }
        follows.push(follow_rekeys(&mc, 400 + i, keys, *reg.server_key()).unwrap());
        regs.push(reg);
    }
    for f in follows {
        f.handle.stop();
    }
    server.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_members_join_leave_and_follow_rekeys_over_multicast() {
    let mc = MulticastConfig::loopback(group(1));
    let dir = data_dir("eight");
    let cfg = ServerConfig::new(dir.path().into(), vec![GroupConfig::loopback("lsim", SuiteId::Aes256Gcm, group(1))]);
    let server = KeyServer::start(cfg).await.unwrap();
    let (addr, pin) = (server.addr().unwrap(), server.fingerprint());
    let names: Vec<String> = (0..8).map(|i| format!("crew{i}")).collect();
    for n in &names {
        server.add_user(n, &format!("pw-{n}"), CHEAP).unwrap();
    }

    // Everyone registers and joins, one after another; earlier members follow each join's rekey.
    let mut regs = Vec::new();
    let mut follows: Vec<Follower> = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let reg = Registration::login(addr, pin, n, &format!("pw-{n}")).await.unwrap();
        let keys = reg.join("lsim").await.unwrap();
        let epoch = keys.keys.epoch().unwrap();
        assert_eq!(server.group_state("lsim").await, Some((epoch, i + 1)));
        for f in &mut follows {
            assert_eq!(wait_epoch(&mut f.epochs, epoch).await, Followed::Epoch(epoch));
        }
        follows.push(follow_rekeys(&mc, 100 + i as u32, keys, *reg.server_key()).unwrap());
        regs.push(reg);
    }

    // Two leave; the other six follow; the leavers' last keys are not the new group key.
    let before = server.group_key("lsim").await.unwrap();
    regs[6].leave("lsim").await.unwrap();
    let epoch = regs[7].leave("lsim").await.unwrap();
    assert_eq!(server.group_state("lsim").await, Some((epoch, 6)));
    let after = server.group_key("lsim").await.unwrap();
    assert_ne!(before, after);
    for f in follows.iter_mut().take(6) {
        assert_eq!(wait_epoch(&mut f.epochs, epoch).await, Followed::Epoch(epoch));
    }
    // Every remaining member holds exactly the server's group key.
    let mut held: Vec<GroupKeys> = Vec::new();
    for f in follows.drain(..6) {
        f.handle.stop();
        held.push(f.task.await.unwrap());
    }
    for k in &held {
        assert_eq!(k.keys.epoch(), Some(epoch));
        assert_eq!(k.keys.group_key(), Some(&after));
    }

    // Member 0 goes offline for three rekeys (a join and two leaves), then comes back.
    let offline = held.remove(0);
    let mut online: Vec<_> = held
        .into_iter()
        .enumerate()
        .map(|(i, k)| follow_rekeys(&mc, 200 + i as u32, k, *regs[0].server_key()).unwrap())
        .collect();
    let e1 = regs[6].join("lsim").await.unwrap().keys.epoch().unwrap();
    let e2 = regs[6].leave("lsim").await.unwrap();
    let e3 = regs[5].leave("lsim").await.unwrap();
    assert_eq!((e2, e3), (e1 + 1, e1 + 2));
    for f in online.iter_mut().take(4) {
        assert_eq!(wait_epoch(&mut f.epochs, e3).await, Followed::Epoch(e3));
    }
    // Back online: the next rekey shows the gap; resync over QUIC catches up.
    let mut f0 = follow_rekeys(&mc, 300, offline, *regs[0].server_key()).unwrap();
    let e4 = regs[7].join("lsim").await.unwrap().keys.epoch().unwrap();
    assert_eq!(wait_epoch(&mut f0.epochs, e4).await, Followed::NeedsResync { current: epoch });
    f0.handle.stop();
    let resynced = regs[0].resync("lsim").await.unwrap();
    assert_eq!(resynced.keys.epoch(), Some(e4));
    assert_eq!(resynced.keys.group_key(), server.group_key("lsim").await.as_ref());
    for f in online.iter_mut().take(4) {
        assert_eq!(wait_epoch(&mut f.epochs, e4).await, Followed::Epoch(e4));
    }
    server.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_unknown_groups_and_garbage_get_clear_errors() {
    let dir = data_dir("errors");
    let cfg =
        ServerConfig::new(dir.path().into(), vec![GroupConfig::loopback("lsim", SuiteId::ChaCha20Poly1305, group(2))]);
    let server = KeyServer::start(cfg).await.unwrap();
    let (addr, pin) = (server.addr().unwrap(), server.fingerprint());
    server.add_user("ayen", "right", CHEAP).unwrap();

    let e = Registration::login(addr, pin, "ayen", "wrong").await.err().unwrap();
    assert!(e.to_string().contains("BadCredentials"), "{e}");
    let e = Registration::login(addr, pin, "nobody", "x").await.err().unwrap();
    assert!(e.to_string().contains("BadCredentials"), "{e}");

    let reg = Registration::login(addr, pin, "ayen", "right").await.unwrap();
    let e = reg.join("no-such-room").await.err().unwrap();
    assert!(e.to_string().contains("UnknownGroup"), "{e}");
    let e = reg.leave("lsim").await.err().unwrap();
    assert!(e.to_string().contains("State"), "{e}");
    let r = reg.channel().call_raw(b"\x01\x02\xff\xff").await.unwrap();
    assert!(matches!(r, Response::Error { code: ErrorCode::Malformed, .. }), "{r:?}");
    // Requests before logging in are refused on a fresh connection.
    let anon = lsim_keymgmt::registrar::quic::Client::connect(addr, pin).await.unwrap();
    let r = anon.call(&Request::Join { group: "lsim".into() }).await.unwrap();
    assert!(matches!(r, Response::Error { code: ErrorCode::NotLoggedIn, .. }), "{r:?}");
    // The server is still up and serving.
    let k = reg.join("lsim").await.unwrap();
    assert_eq!(k.suite, SuiteId::ChaCha20Poly1305);
    assert_eq!(server.group_state("lsim").await.map(|s| s.1), Some(1));

    // Password guessing is rate limited, and logged. (The right password
    // above cleared ayen's failure here.)
    for _ in 0..5 {
        let _ = Registration::login(addr, pin, "ayen", "guess").await;
    }
    let e = Registration::login(addr, pin, "ayen", "right").await.err().unwrap();
    assert!(e.to_string().contains("RateLimited"), "{e}");
    // Guessing across names from one address is locked too (the failures
    // above count as well: "ayen" 1 + 5, "nobody" 1).
    for i in 0..13 {
        let e = Registration::login(addr, pin, &format!("crew{i}"), "guess").await.err().unwrap();
        assert!(e.to_string().contains("BadCredentials"), "{e}");
    }
    let e = Registration::login(addr, pin, "crew99", "guess").await.err().unwrap();
    assert!(e.to_string().contains("RateLimited") && e.to_string().contains("address"), "{e}");
    let log = std::fs::read_to_string(dir.path().join("security.log")).unwrap();
    let failed = log.lines().filter(|l| l.contains("login-failed") && l.contains("from=127.0.0.1:")).count();
    let refused = log.lines().filter(|l| l.contains("login-refused")).count();
    assert_eq!((failed, refused), (20, 2), "every failed and refused login is logged:\n{log}");
    server.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_server_certifies_a_members_signing_key() {
    let dir = data_dir("certify");
    let cfg = ServerConfig::new(dir.path().into(), vec![GroupConfig::loopback("lsim", SuiteId::Aes256Gcm, group(4))]);
    let server = KeyServer::start(cfg).await.unwrap();
    let (addr, pin) = (server.addr().unwrap(), server.fingerprint());
    server.add_user("ayen", "right", CHEAP).unwrap();
    let reg = Registration::login(addr, pin, "ayen", "right").await.unwrap();
    let key = lsim_keymgmt::cert::new_signing_key().unwrap();
    let public = key.verifying_key().to_bytes();
    let signer = reg.certify(key).await.unwrap();
    let cert = signer.cert();
    assert_eq!((cert.user.as_str(), cert.member, cert.key), ("ayen", reg.member().0, public));
    assert_eq!(cert.node, lsim_keymgmt::server::member_node(reg.member()));
    // Anyone holding the server's key can check it, and what the member signs.
    assert_eq!(cert.verify(reg.server_key(), 0), Ok(()));
    let sig = signer.sign(b"test", b"hello");
    assert_eq!(cert.verify_signed(b"test", b"hello", &sig), Ok(()));
    // Not before logging in, and not a key that is not a curve point.
    let anon = lsim_keymgmt::registrar::quic::Client::connect(addr, pin).await.unwrap();
    let r = anon.call(&Request::Certify { key: public }).await.unwrap();
    assert!(matches!(r, Response::Error { code: ErrorCode::NotLoggedIn, .. }), "{r:?}");
    let bad = (0u8..=255).map(|b| [b; 32]).find(|k| ed25519_dalek::VerifyingKey::from_bytes(k).is_err()).unwrap();
    let r = reg.channel().call(&Request::Certify { key: bad }).await.unwrap();
    assert!(matches!(r, Response::Error { code: ErrorCode::Malformed, .. }), "{r:?}");
    server.close();
}

/// Keys handed over by the registrar (a resync after a missed rekey, a
/// join after a revocation) know who is revoked as well as a rekey does:
/// otherwise a member that resynced at the moment of a revocation (a packet
/// under the new epoch came before the rekey) refused nothing of the
/// revoked member's within the old epoch's grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_from_the_registrar_carry_the_revoked_names() {
    let (server, addr, pin, _dir) = with_users("revoked", 7, &["alice", "carol", "dave"]).await;
    let alice = Registration::login(addr, pin, "alice", "pw").await.unwrap();
    let carol = Registration::login(addr, pin, "carol", "pw").await.unwrap();
    let joined = alice.join("lsim").await.unwrap();
    assert!(!joined.keys.is_revoked("carol"));
    carol.join("lsim").await.unwrap();
    let epoch = server.revoke("lsim", "carol").await.unwrap().expect("carol was in the group");
    let fresh = alice.resync("lsim").await.unwrap();
    assert_eq!(fresh.keys.epoch(), Some(epoch));
    assert!(fresh.keys.is_revoked("carol"), "a resync forgot the revocation");
    assert!(!fresh.keys.is_revoked("alice"));
    let dave = Registration::login(addr, pin, "dave", "pw").await.unwrap();
    let late = dave.join("lsim").await.unwrap();
    assert!(late.keys.is_revoked("carol"), "a member joining after the revocation does not know it");
    server.close();
}

/// The history (epochs and group keys) a member's resync brings, as the
/// key server sent it.
async fn history(reg: &Registration) -> Vec<(u32, SecretKey)> {
    match reg.channel().call(&Request::Resync { group: "lsim".into() }).await.unwrap() {
        Response::Keys { history, .. } => history,
        other => panic!("expected keys, got {other:?}"),
    }
}

fn epochs(history: &[(u32, SecretKey)]) -> Vec<u32> {
    history.iter().map(|h| h.0).collect()
}

/// The group key of `epoch` as the server's tree had it (recorded after
/// each rekey).
fn recorded(keys: &[(u32, SecretKey)], epoch: u32) -> &SecretKey {
    &keys.iter().find(|k| k.0 == epoch).unwrap_or_else(|| panic!("no key recorded for epoch {epoch}")).1
}

/// A member out of range during four rekeys resyncs and gets the group
/// keys of every epoch from its join to before now: the same bytes the
/// other members derived from the rekeys, or were given at their join.
/// With them its seal opens repair sent under an epoch it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_back_from_away_gets_the_keys_of_the_epochs_it_missed() {
    let mc = MulticastConfig::loopback(group(8));
    let (server, addr, pin, _dir) = with_users("history", 8, &["alice", "bob", "carol", "dave"]).await;
    let [alice, bob, carol, dave] = logins(addr, pin, ["alice", "bob", "carol", "dave"]).await;
    let mut at_server = Vec::new();
    let mut record = async |epoch: u32| at_server.push((epoch, server.group_key("lsim").await.unwrap()));

    let alice_keys = alice.join("lsim").await.unwrap();
    let joined = alice_keys.keys.epoch().unwrap();
    assert_eq!(alice_keys.keys.joined_epoch(), Some(joined));
    assert!(alice_keys.keys.history().next().is_none(), "a joiner's membership has no past yet");
    record(joined).await;
    let bob_keys = bob.join("lsim").await.unwrap();
    let bob_joined = bob_keys.keys.epoch().unwrap();
    let bob_join_key = bob_keys.keys.group_key().unwrap().clone();
    record(bob_joined).await;

    // Alice goes out of range; bob follows four rekeys over multicast.
    let mut follower = follow_rekeys(&mc, 500, bob_keys, *bob.server_key()).unwrap();
    let mut missed = Vec::new();
    for step in 0..4 {
        let epoch = match step {
            0 => carol.join("lsim").await.unwrap().keys.epoch().unwrap(),
            1 => carol.leave("lsim").await.unwrap(),
            2 => dave.join("lsim").await.unwrap().keys.epoch().unwrap(),
            _ => dave.leave("lsim").await.unwrap(),
        };
        record(epoch).await;
        assert_eq!(wait_epoch(&mut follower.epochs, epoch).await, Followed::Epoch(epoch));
        missed.push(epoch);
    }
    follower.handle.stop();
    let bob_held = follower.task.await.unwrap();
    let now = *missed.last().unwrap();

    let fresh = alice.resync("lsim").await.unwrap();
    assert_eq!((fresh.keys.epoch(), fresh.keys.joined_epoch()), (Some(now), Some(joined)));
    let got: Vec<(u32, SecretKey)> = fresh.keys.history().map(|(e, k)| (e, k.clone())).collect();
    assert_eq!(epochs(&got), (joined..now).collect::<Vec<_>>(), "every epoch from the join to before now");
    assert_eq!(got, history(&alice).await, "the client keeps what the server sent");
    for (epoch, key) in &got {
        assert_eq!(key, recorded(&at_server, *epoch), "epoch {epoch}: the server's tree had another key");
    }
    // The same bytes the other members hold: alice's own join, bob's join,
    // and the epochs bob derived from the rekeys (his window keeps the last three).
    assert_eq!(recorded(&got, joined), alice_keys.keys.group_key().unwrap());
    assert_eq!(recorded(&got, bob_joined), &bob_join_key);
    for &epoch in &missed[..3] {
        assert_eq!(Some(recorded(&got, epoch)), bob_held.keys.group_key_for(epoch), "epoch {epoch}");
    }
    assert_eq!(bob_held.keys.group_key(), fresh.keys.group_key());

    // Her seal remembers them (for repair only: they are not live) and
    // opens what bob sealed under an epoch she missed.
    let mut seal = fresh.seal().unwrap();
    assert_eq!(seal.history().collect::<Vec<_>>(), (joined..now).collect::<Vec<_>>());
    let epoch = missed[1];
    assert!(!seal.is_live(epoch));
    let mut bobs = GroupSeal::new(SuiteId::Aes256Gcm, epoch, bob_held.keys.group_key_for(epoch).unwrap());
    let nonce = Nonce { node: 9, seq: 1 };
    let (mut body, mut tag) = (b"repair of an old object".to_vec(), vec![0u8; bobs.tag_len()]);
    bobs.seal(epoch, nonce, b"header", &mut body, &mut tag).unwrap();
    seal.open(epoch, nonce, b"header", &mut body, &tag).unwrap();
    assert_eq!(body, b"repair of an old object");
    server.close();
}

/// A member that joins late gets no epoch from before its join, and one
/// that left and came back nothing from its earlier membership nor from
/// while it was out: its current membership began at the rejoin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_member_gets_the_key_of_an_epoch_before_its_join() {
    let (server, addr, pin, _dir) = with_users("no-history", 9, &["alice", "bob", "carol", "dave"]).await;
    let [alice, bob, carol, dave] = logins(addr, pin, ["alice", "bob", "carol", "dave"]).await;
    let first = alice.join("lsim").await.unwrap().keys.epoch().unwrap();
    let carol_first = carol.join("lsim").await.unwrap().keys.epoch().unwrap();
    bob.join("lsim").await.unwrap();
    carol.leave("lsim").await.unwrap();
    let late = dave.join("lsim").await.unwrap();
    let dave_joined = late.keys.epoch().unwrap();
    assert!(late.keys.history().next().is_none(), "nothing from before the join");
    bob.leave("lsim").await.unwrap();
    let carol_again = carol.join("lsim").await.unwrap();
    let rejoined = carol_again.keys.epoch().unwrap();
    assert_eq!(carol_again.keys.joined_epoch(), Some(rejoined), "a rejoin is a new leaf, a new membership");
    assert!(carol_again.keys.history().next().is_none());
    let now = bob.join("lsim").await.unwrap().keys.epoch().unwrap();
    assert!(first < carol_first && carol_first < dave_joined && dave_joined < rejoined && rejoined < now);

    assert_eq!(epochs(&history(&dave).await), (dave_joined..now).collect::<Vec<_>>());
    assert_eq!(epochs(&history(&carol).await), (rejoined..now).collect::<Vec<_>>(), "nothing of carol's first stay");
    assert_eq!(epochs(&history(&alice).await), (first..now).collect::<Vec<_>>());
    assert!(history(&bob).await.is_empty(), "bob's join is now: his membership has no past");
    // One who left gets no keys at all.
    dave.leave("lsim").await.unwrap();
    let gone = dave.channel().call(&Request::Resync { group: "lsim".into() }).await.unwrap();
    assert!(matches!(gone, Response::Error { code: ErrorCode::State, .. }), "{gone:?}");
    server.close();
}

/// A member evicted for absence (its room presence gone past the grace)
/// and back goes on with the same run of membership: it gets the keys of
/// the epochs since it first joined, those while it was out too, and the
/// archive's table lists it since then. An administrator's eviction ends
/// the run like a leave: back, it is a member only from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_evicted_for_absence_and_back_keeps_its_run_of_membership() {
    let (server, addr, pin, _dir) = with_users("absence-run", 11, &["alice", "bob", "carol"]).await;
    let [alice, bob, carol] = logins(addr, pin, ["alice", "bob", "carol"]).await;
    alice.join("lsim").await.unwrap();
    let carol_first = carol.join("lsim").await.unwrap().keys.epoch().unwrap();
    let node_of = |r: &Registration| lsim_keymgmt::server::member_node(r.member());
    let carol_node = node_of(&carol);

    // Away: evicted; bob joins meanwhile; carol back.
    let out = server.evict_absent("lsim", "carol").await.unwrap().unwrap();
    bob.join("lsim").await.unwrap();
    let back = carol.join("lsim").await.unwrap();
    let back_at = back.keys.epoch().unwrap();
    assert!(carol_first < out && out < back_at);
    assert_eq!(
        epochs(&back.keys.history().map(|(e, k)| (e, k.clone())).collect::<Vec<_>>()),
        (carol_first..back_at).collect::<Vec<_>>(),
        "every epoch since she first joined, those while out too"
    );
    let table = server.joined_epochs("lsim").await;
    assert!(table.contains(&(carol_node, carol_first)), "{table:?}");
    assert_eq!(epochs(&history(&carol).await), (carol_first..back_at).collect::<Vec<_>>(), "a resync says the same");

    // An administrator's eviction ends the run.
    server.evict("lsim", "carol").await.unwrap().unwrap();
    let again = carol.join("lsim").await.unwrap();
    let again_at = again.keys.epoch().unwrap();
    assert!(again.keys.history().next().is_none(), "nothing from before the administrator's eviction");
    assert!(server.joined_epochs("lsim").await.contains(&(carol_node, again_at)));
    server.close();
}

/// The key server killed (-9) and restarted still serves the history: the
/// keys were written with each epoch's group state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_survives_a_restart_of_the_key_server() {
    let dir = data_dir("history-restart");
    let mc = group(10);
    let s = KeyServerProcess::start(dir.path(), mc, "alice,bob,carol");
    let pin = s.pin;
    let alice = Registration::login(s.addr, pin, "alice", "pw").await.unwrap();
    let joined = alice.join("lsim").await.unwrap().keys.epoch().unwrap();
    for u in ["bob", "carol"] {
        Registration::login(s.addr, pin, u, "pw").await.unwrap().join("lsim").await.unwrap();
    }
    let carol = Registration::login(s.addr, pin, "carol", "pw").await.unwrap();
    let now = carol.leave("lsim").await.unwrap();
    let before = history(&alice).await;
    assert_eq!(epochs(&before), (joined..now).collect::<Vec<_>>());
    let current = alice.resync("lsim").await.unwrap().keys.group_key().unwrap().clone();
    s.kill();

    let s = KeyServerProcess::start(dir.path(), mc, "");
    let alice = Registration::login(s.addr, pin, "alice", "pw").await.unwrap();
    assert_eq!(history(&alice).await, before, "the same epochs and keys after the restart");
    let bob = Registration::login(s.addr, pin, "bob", "pw").await.unwrap();
    let next = bob.leave("lsim").await.unwrap();
    let fresh = alice.resync("lsim").await.unwrap();
    assert_eq!(fresh.keys.epoch(), Some(next));
    let after: Vec<(u32, SecretKey)> = fresh.keys.history().map(|(e, k)| (e, k.clone())).collect();
    assert_eq!(epochs(&after), (joined..next).collect::<Vec<_>>());
    assert_eq!(&after[..before.len()], &before[..]);
    assert_eq!(recorded(&after, now), &current, "the epoch current at the kill is history now");
    s.kill();
}

/// The key server keeps the keys of a group's newest `MAX_HISTORY_EPOCHS`
/// epochs (the current one among them), no more: a member in the group for
/// longer gets the newest of its past epochs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_server_keeps_at_most_max_history_epochs() {
    let dir = data_dir("history-bound");
    // No multicast: a thousand rekeys nobody follows.
    let lsim = GroupConfig { name: "lsim".into(), suite: SuiteId::ChaCha20Poly1305, multicast: None, allowed: None };
    let mut cfg = ServerConfig::new(dir.path().into(), vec![lsim]);
    cfg.batch_window = Duration::ZERO;
    let server = KeyServer::start(cfg).await.unwrap();
    let (addr, pin) = (server.addr().unwrap(), server.fingerprint());
    for u in ["alice", "bob"] {
        server.add_user(u, "pw", CHEAP).unwrap();
    }
    let alice = Registration::login(addr, pin, "alice", "pw").await.unwrap();
    let bob = Registration::login(addr, pin, "bob", "pw").await.unwrap();
    let joined = alice.join("lsim").await.unwrap().keys.epoch().unwrap();
    let mut last_key = None;
    let mut now = joined;
    while now < joined + MAX_HISTORY_EPOCHS as u32 + 3 {
        let key = server.group_key("lsim").await;
        now = if now % 2 == joined % 2 {
            bob.join("lsim").await.unwrap().keys.epoch().unwrap()
        } else {
            bob.leave("lsim").await.unwrap()
        };
        last_key = key;
    }
    let got = history(&alice).await;
    assert_eq!(got.len(), MAX_HISTORY_EPOCHS - 1, "the newest MAX_HISTORY_EPOCHS epochs, the current one among them");
    assert_eq!(epochs(&got), (now + 1 - MAX_HISTORY_EPOCHS as u32..now).collect::<Vec<_>>());
    assert_eq!(Some(&got.last().unwrap().1), last_key.as_ref());
    let fresh = alice.resync("lsim").await.unwrap();
    assert_eq!(fresh.keys.history().count(), MAX_HISTORY_EPOCHS - 1);
    assert_eq!(fresh.seal().unwrap().history().count(), MAX_HISTORY_EPOCHS - 1);
    server.close();
}

/// The code and words of a refusal.
fn refusal(r: Result<Vec<Wrap>, ClientError>) -> (ErrorCode, String) {
    match r {
        Err(ClientError::Refused { code, message }) => (code, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_key_is_wrapped_for_the_named_members_only() {
    let dir = data_dir("filekey");
    let cfg =
        ServerConfig::new(dir.path().into(), vec![GroupConfig::loopback("lsim", SuiteId::ChaCha20Poly1305, group(5))]);
    let server = KeyServer::start(cfg).await.unwrap();
    let (addr, pin) = (server.addr().unwrap(), server.fingerprint());
    for n in ["ayen", "ganesh", "crew0", "crew1"] {
        server.add_user(n, "pw", CHEAP).unwrap();
    }
    let [ayen, ganesh, crew0, crew1] = logins(addr, pin, ["ayen", "ganesh", "crew0", "crew1"]).await;
    for r in [&ayen, &ganesh, &crew0] {
        r.join("lsim").await.unwrap();
    }
    assert_eq!(server.group_state("lsim").await.map(|s| s.1), Some(3));

    // ayen sends to ganesh and crew0: one wrap each, in order, each opening to the same key.
    let key = FileKey::generate().unwrap();
    let to = vec!["ganesh".to_string(), "crew0".to_string()];
    let wraps = ayen.wrap_file_key("lsim", &to, &key).await.unwrap();
    assert_eq!(wraps.iter().map(|w| w.member).collect::<Vec<_>>(), [ganesh.member().0, crew0.member().0]);
    assert_eq!(ganesh.unwrap_file_key("lsim", &wraps[0]).unwrap().as_bytes(), key.as_bytes());
    assert_eq!(crew0.unwrap_file_key("lsim", &wraps[1]).unwrap().as_bytes(), key.as_bytes());
    // Through the envelope's bytes too.
    let carried = Wrap::decode(&wraps[1].encode()).unwrap();
    assert_eq!(crew0.unwrap_file_key("lsim", &carried), Ok(key.clone()));

    // Nobody else opens them: not another member, not relabelled, not in another group.
    assert_eq!(
        ganesh.unwrap_file_key("lsim", &wraps[1]),
        Err(FileKeyError::OtherMember { wrap: crew0.member().0, mine: ganesh.member().0 })
    );
    let relabelled = Wrap { member: ganesh.member().0, ..wraps[1].clone() };
    assert!(matches!(ganesh.unwrap_file_key("lsim", &relabelled), Err(FileKeyError::Unwrap { .. })));
    let relabelled = Wrap { member: ayen.member().0, ..wraps[0].clone() };
    assert!(matches!(ayen.unwrap_file_key("lsim", &relabelled), Err(FileKeyError::Unwrap { .. })));
    assert!(matches!(ganesh.unwrap_file_key("other", &wraps[0]), Err(FileKeyError::Unwrap { .. })));
    assert!(matches!(crew1.unwrap_file_key("lsim", &wraps[0]), Err(FileKeyError::OtherMember { .. })));
    // The opener receivers use finds each member's own wrap among them all,
    // and opens nothing for anyone else or with a damaged wrap.
    assert_eq!(ganesh.file_key_opener("lsim")(&wraps), Some(key.clone()));
    assert_eq!(crew0.file_key_opener("lsim")(&wraps), Some(key.clone()));
    assert_eq!(crew1.file_key_opener("lsim")(&wraps), None);
    assert_eq!(ayen.file_key_opener("lsim")(&wraps), None);
    assert_eq!(ganesh.file_key_opener("other")(&wraps), None);
    let mut damaged = wraps.clone();
    damaged[1].sealed[20] ^= 1;
    assert_eq!(crew0.file_key_opener("lsim")(&damaged), None);

    // A registered user who did not join, and a name nobody has, cannot be named; the error names both, and only them.
    let more = vec!["ganesh".to_string(), "crew1".to_string(), "nobody".to_string()];
    let (code, message) = refusal(ayen.wrap_file_key("lsim", &more, &key).await);
    assert_eq!(code, ErrorCode::NotMember, "{message}");
    assert!(message.contains("\"crew1\"") && message.contains("\"nobody\""), "{message}");
    assert!(!message.contains("ganesh"), "{message}");
    // A user who is not a member cannot ask.
    let (code, message) = refusal(crew1.wrap_file_key("lsim", &to, &key).await);
    assert_eq!(code, ErrorCode::NotAllowed, "{message}");
    assert!(message.contains("crew1"), "{message}");
    // Nor for a group that does not exist, nor for nobody, nor for someone twice.
    assert_eq!(refusal(ayen.wrap_file_key("no-such-room", &to, &key).await).0, ErrorCode::UnknownGroup);
    assert_eq!(refusal(ayen.wrap_file_key("lsim", &[], &key).await).0, ErrorCode::Malformed);
    let twice = vec!["crew0".to_string(), "ganesh".to_string(), "crew0".to_string()];
    let (code, message) = refusal(ayen.wrap_file_key("lsim", &twice, &key).await);
    assert_eq!(code, ErrorCode::Malformed);
    assert!(message.contains("crew0"), "{message}");
    // More names than a request carries are refused before sending.
    let crowd: Vec<String> = (0..=MAX_RECIPIENTS).map(|i| format!("crew{i}")).collect();
    assert!(matches!(
        ayen.wrap_file_key("lsim", &crowd, &key).await,
        Err(ClientError::FileKey(FileKeyError::TooManyRecipients { count, .. })) if count == MAX_RECIPIENTS + 1
    ));
    // Not before logging in.
    let anon = lsim_keymgmt::registrar::quic::Client::connect(addr, pin).await.unwrap();
    let r = anon.call(&Request::WrapFileKey { group: "lsim".into(), to: to.clone(), key: key.clone() }).await.unwrap();
    assert!(matches!(r, Response::Error { code: ErrorCode::NotLoggedIn, .. }), "{r:?}");

    // A member who left can be named no more, and can ask no more.
    ganesh.leave("lsim").await.unwrap();
    let (code, message) = refusal(ayen.wrap_file_key("lsim", &to, &key).await);
    assert_eq!(code, ErrorCode::NotMember);
    assert!(message.contains("ganesh") && !message.contains("crew0"), "{message}");
    assert_eq!(refusal(ganesh.wrap_file_key("lsim", &["crew0".to_string()], &key).await).0, ErrorCode::NotAllowed);
    // The one still in gets a fresh wrap of a new key, which opens for it alone.
    let next = FileKey::generate().unwrap();
    let w = crew0.wrap_file_key("lsim", &["ayen".to_string()], &next).await.unwrap();
    assert_eq!(ayen.unwrap_file_key("lsim", &w[0]), Ok(next.clone()));
    assert_ne!(next, key);
    server.close();
}

/// The key server as a separate process, so the restart test can kill -9 it.
/// Not a test: the restart test runs this test binary again with
/// `--ignored --exact keyserver_process` and LSIM_KEYSERVER_DIR set.
#[test]
#[ignore = "harness: started as a child process by the restart test"]
fn keyserver_process() {
    common::keyserver_process();
}

fn start_child(dir: &std::path::Path, users: &str) -> KeyServerProcess {
    KeyServerProcess::start(dir, group(3), users)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_restarts_with_its_members_identity_and_epochs() {
    let dir = data_dir("restart");
    let users = "ayen,ganesh,crew0,crew1,crew2,crew3,crew4,crew5";
    // Between operations: two members in, kill -9, restart.
    let s = start_child(dir.path(), users);
    let pin = s.pin;
    let a = Registration::login(s.addr, pin, "ayen", "pw").await.unwrap();
    a.join("lsim").await.unwrap();
    let g = Registration::login(s.addr, pin, "ganesh", "pw").await.unwrap();
    let epoch = g.join("lsim").await.unwrap().keys.epoch().unwrap();
    let member = g.member();
    s.kill();

    let s = start_child(dir.path(), "");
    assert_eq!(s.pin, pin, "the certificate is kept");
    let g = Registration::login(s.addr, pin, "ganesh", "pw").await.unwrap();
    assert_eq!(g.member(), member, "member ids are kept");
    let k = g.resync("lsim").await.unwrap();
    assert_eq!(k.keys.epoch(), Some(epoch), "no member and no epoch lost");
    let mut highest = epoch;

    // During operations: six logged-in members ask to join at once and the
    // server is killed while their batch is being committed.
    let mut regs = Vec::new();
    for i in 0..6 {
        regs.push(Registration::login(s.addr, pin, &format!("crew{i}"), "pw").await.unwrap());
    }
    let mut tasks = Vec::new();
    for (i, r) in regs.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            r.join("lsim").await.ok().map(|k| (format!("crew{i}"), k.keys.epoch().unwrap_or(0)))
        }));
    }
    tokio::time::sleep(Duration::from_millis(2)).await;
    s.kill();
    let mut answered = Vec::new();
    for t in tasks {
        // A request the dead server never answered is unanswered; do not wait for QUIC's idle timeout.
        if let Ok(Ok(Some((name, e)))) = tokio::time::timeout(Duration::from_millis(300), t).await {
            highest = highest.max(e);
            answered.push(name);
        }
    }

    // Restarted: everyone who was answered is still a member; epochs go on from the highest seen.
    let s = start_child(dir.path(), "");
    for name in &answered {
        let r = Registration::login(s.addr, pin, name, "pw").await.unwrap();
        let k = r.resync("lsim").await.unwrap();
        assert!(k.keys.epoch().unwrap() >= highest, "{name} resynced to an epoch older than one already handed out");
    }
    drop(g);
    let g = Registration::login(s.addr, pin, "ganesh", "pw").await.unwrap();
    let next = g.leave("lsim").await.unwrap();
    assert!(next > highest, "epoch {next} after restart must exceed every epoch handed out ({highest})");
    eprintln!("answered before the kill: {answered:?}; epochs continued at {next}");
    s.kill();
}
