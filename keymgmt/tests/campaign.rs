//! Fault campaigns against the key server (issue 8), each a seeded series of
//! rounds. CI runs a few rounds; `LSIM_CAMPAIGN_ROUNDS=N` runs N, and
//! `LSIM_CAMPAIGN_SEED=S` replays the run that printed seed S.
//!
//! - The key server, a separate process, is killed -9 at a random moment of
//!   a batch of joins and leaves, and restarted, round after round. Checked
//!   after every restart: its certificate and every member id are kept; every
//!   member whose join was answered is still a member and one whose leave was
//!   answered is not (a request nobody was answered for may have gone either
//!   way); every member resyncs to one current epoch and one group key, no
//!   older than any epoch handed out before; every epoch handed out after the
//!   restart (in answers, and in rekeys heard over multicast) exceeds every
//!   epoch handed out before it; and a member that followed rekeys over
//!   multicast before the kill follows the restarted server's rekeys too.
//! - A member cut off from the group's multicast misses the rekeys of joins
//!   and leaves. When the partition heals it notices the gap from the traffic
//!   it hears, resyncs over the registrar to the current epoch and reads new
//!   traffic; if it was removed while cut off, resync is refused, it holds no
//!   key of any epoch since, and traffic sent to the group is unreadable to it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test harness

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::ops::ControlFlow;
use std::time::Duration;

use common::{CHEAP, KeyServerProcess};
use lsim_keymgmt::client::{ClientError, Followed, Follower, GroupKeys, Registration, follow_rekeys};
use lsim_keymgmt::key::SecretKey;
use lsim_keymgmt::registrar::msg::ErrorCode;
use lsim_keymgmt::server::{GroupConfig, KeyServer, ServerConfig};
use lsim_keymgmt::suite::{GroupSeal, SuiteId};
use lsim_testsupport::campaign::{rounds, seed};
use lsim_transport::net::driver::wall_clock_seq;
use lsim_transport::net::{Driver, DriverConfig, Handle, MulticastConfig, MulticastSocket};
use lsim_transport::rng::Rng;
use lsim_transport::seal::Seal;
use lsim_transport::wire::ObjectKind;
use lsim_transport::{Receiver, ReceiverConfig, ReceiverEvent, Sender, SenderConfig};
use tokio::sync::{mpsc, watch};

fn group(test: u8) -> SocketAddrV4 {
    common::group(77, test)
}

/// What the test knows of a user's membership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Known {
    In,
    Out,
    /// Asked to join or leave, and the server died before answering.
    Unknown,
}

/// One request of a batch and what came of it.
struct Outcome {
    user: String,
    join: bool,
    /// `Some(epoch)`: answered (the join's epoch, or the epoch the rest moved to).
    answer: Option<u32>,
}

fn is_refused(e: &ClientError, code: ErrorCode) -> bool {
    matches!(e, ClientError::Refused { code: c, .. } if *c == code)
}

/// Every epoch a follower reports, in a list a test can read at any time.
fn record_epochs(mut w: watch::Receiver<Followed>) -> std::sync::Arc<std::sync::Mutex<Vec<Followed>>> {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(vec![w.borrow().clone()]));
    let out = seen.clone();
    tokio::spawn(async move {
        while w.changed().await.is_ok() {
            let f = w.borrow_and_update().clone();
            seen.lock().unwrap().push(f);
        }
    });
    out
}

fn highest_followed(seen: &[Followed]) -> u32 {
    seen.iter().filter_map(|f| if let Followed::Epoch(e) = f { Some(*e) } else { None }).max().unwrap_or(0)
}

/// Not a test: the key server process the kill campaign starts and kills.
#[test]
#[ignore = "harness: started as a child process by the kill campaign"]
fn keyserver_process() {
    common::keyserver_process();
}

/// Sends a batch of requests at once, kills the server `kill_after` into it
/// (`None`: after every answer), and returns what each request came to.
async fn batch_then_kill(
    server: KeyServerProcess,
    requests: Vec<(String, bool)>,
    kill_after: Option<Duration>,
) -> Vec<Outcome> {
    let mut regs = Vec::new();
    for (user, join) in requests {
        regs.push((Registration::login(server.addr, server.pin, &user, "pw").await.unwrap(), user, join));
    }
    let mut tasks = Vec::new();
    for (reg, user, join) in regs {
        let who = user.clone();
        let task = tokio::spawn(async move {
            let answer =
                if join { reg.join("lsim").await.map(|k| k.keys.epoch().unwrap()) } else { reg.leave("lsim").await };
            match answer {
                Ok(epoch) => Some(epoch),
                // The server is up and serving: it must not refuse these.
                Err(e @ ClientError::Refused { .. }) => panic!("{who}: join {join}: {e}"),
                Err(_) => None,
            }
        });
        tasks.push((task, user, join));
    }
    match kill_after {
        Some(d) => tokio::time::sleep(d).await,
        None => {
            let until = tokio::time::Instant::now() + Duration::from_secs(10);
            while !tasks.iter().all(|(t, _, _)| t.is_finished()) && tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    server.kill();
    // An answer already on its way arrives within milliseconds; a request the
    // dead server never answered would wait for QUIC's idle timeout: abandon it.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    let mut outcomes = Vec::new();
    for (mut task, user, join) in tasks {
        let answer = match tokio::time::timeout_at(deadline, &mut task).await {
            Ok(r) => r.unwrap(),
            Err(_) => {
                task.abort();
                None
            }
        };
        outcomes.push(Outcome { user, join, answer });
    }
    outcomes
}

/// The anchor: a member throughout the kill campaign, following rekeys over
/// multicast the way a member's client does (resyncing when it sees a gap).
struct Anchor {
    follower: Follower,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Followed>>>,
    mc: MulticastConfig,
}

impl Anchor {
    fn follow(mc: &MulticastConfig, keys: GroupKeys, server_key: ed25519_dalek::VerifyingKey) -> Anchor {
        let follower = follow_rekeys(mc, 77, keys, server_key).unwrap();
        let seen = record_epochs(follower.epochs.clone());
        Anchor { follower, seen, mc: mc.clone() }
    }

    /// The newest epoch it followed to (the recorder may lag the follower).
    fn highest(&self) -> u32 {
        let now = self.follower.epochs.borrow().clone();
        highest_followed(&self.seen.lock().unwrap()).max(highest_followed(&[now]))
    }

    /// Waits until the follower is at `epoch`, resyncing (and following
    /// again with the fresh keys) if it reports a gap first.
    async fn reach(&mut self, epoch: u32, reg: &Registration) {
        let at = |f: &Followed| *f == Followed::Epoch(epoch) || matches!(f, Followed::NeedsResync { .. });
        let got = tokio::time::timeout(Duration::from_secs(10), self.follower.epochs.wait_for(at)).await;
        let got = got.map(|r| r.unwrap().clone()).unwrap_or_else(|_| {
            panic!("the member following rekeys never reached epoch {epoch} nor saw a gap: at {:?}", self.seen.lock())
        });
        if got == Followed::Epoch(epoch) {
            return;
        }
        // A rekey of a batch the server persisted but was killed before it multicast: resync.
        let keys = reg.resync("lsim").await.unwrap();
        assert_eq!(keys.keys.epoch(), Some(epoch));
        let old = std::mem::replace(self, Anchor::follow(&self.mc.clone(), keys, *reg.server_key()));
        old.follower.handle.stop();
        let _ = old.follower.task.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_server_killed_mid_batch_loses_no_answered_member_and_reuses_no_epoch() {
    let mut rng = Rng::new(seed("kill -9 of the key server"));
    let dir = common::data_dir("campaign", "kill");
    let mc = group(1);
    let users: Vec<String> = (0..8).map(|i| format!("crew{i}")).collect();
    let mut server = KeyServerProcess::start(dir.path(), mc, &format!("anchor,{}", users.join(",")));
    let pin = server.pin;
    let reg = Registration::login(server.addr, pin, "anchor", "pw").await.unwrap();
    let keys = reg.join("lsim").await.unwrap();
    // The highest epoch handed out so far, in answers, resyncs and multicast rekeys.
    let mut handed = keys.keys.epoch().unwrap();
    let mut anchor = Anchor::follow(&MulticastConfig::loopback(mc), keys, *reg.server_key());
    let mut ids = BTreeMap::from([("anchor".to_string(), reg.member())]);
    let mut known: BTreeMap<String, Known> = users.iter().map(|u| (u.clone(), Known::Out)).collect();
    // Unanswered requests the restarted server had not (0) or had (1) committed.
    let mut settled = [0; 2];

    for round in 0..rounds(20) {
        // A batch: each user asks to flip its membership with probability 1/2.
        let mut requests: Vec<(String, bool)> =
            known.iter().filter(|_| rng.below(2) == 0).map(|(u, k)| (u.clone(), *k == Known::Out)).collect();
        if requests.is_empty() {
            let u = &users[rng.below(users.len() as u64) as usize];
            requests.push((u.clone(), known[u] == Known::Out));
        }
        // Killed before the batch arrives, while it is committed, while it is
        // answered, or after every answer.
        let kill_after = if rng.below(5) == 0 { None } else { Some(Duration::from_micros(rng.below(8000))) };
        let floor = handed;
        let heard_before = anchor.highest();
        let outcomes = batch_then_kill(server, requests, kill_after).await;
        for o in &outcomes {
            let k = known.get_mut(&o.user).unwrap();
            match o.answer {
                Some(epoch) => {
                    assert!(
                        epoch > floor,
                        "round {round}: {} got epoch {epoch}, not above {floor} handed out before",
                        o.user
                    );
                    handed = handed.max(epoch);
                    *k = if o.join { Known::In } else { Known::Out };
                }
                None => *k = Known::Unknown,
            }
        }
        for f in anchor.seen.lock().unwrap().iter() {
            if let Followed::Epoch(e) = f
                && *e > heard_before
            {
                assert!(*e > floor, "round {round}: rekey to epoch {e} multicast, not above {floor} handed out before");
                handed = handed.max(*e);
            }
        }
        eprintln!(
            "round {round}: killed after {kill_after:?}; answered {:?}",
            outcomes.iter().map(|o| (&o.user, o.join, o.answer)).collect::<Vec<_>>()
        );

        // Restarted: same identity, same members, one epoch no older than any handed out.
        server = KeyServerProcess::start(dir.path(), mc, "");
        assert_eq!(server.pin, pin, "round {round}: the certificate is kept");
        let mut current: Option<(u32, SecretKey)> = None;
        let mut regs = BTreeMap::new();
        let everyone = std::iter::once(("anchor".to_string(), Known::In)).chain(known.clone());
        for (user, was) in everyone {
            let reg = Registration::login(server.addr, pin, &user, "pw").await.unwrap();
            assert_eq!(
                *ids.entry(user.clone()).or_insert(reg.member()),
                reg.member(),
                "round {round}: {user}'s member id"
            );
            let now = match (was, reg.resync("lsim").await) {
                (Known::In | Known::Unknown, Ok(k)) => {
                    let got = (k.keys.epoch().unwrap(), k.keys.group_key().unwrap().clone());
                    let agreed = current.get_or_insert_with(|| got.clone());
                    assert!(*agreed == got, "round {round}: {user} resynced to another epoch or key than the others");
                    Known::In
                }
                (Known::Out | Known::Unknown, Err(e)) if is_refused(&e, ErrorCode::State) => Known::Out,
                (was, r) => panic!(
                    "round {round}: {user} was {was:?}, resync after the restart: {:?}",
                    r.map(|k| k.keys.epoch())
                ),
            };
            if was == Known::Unknown {
                settled[usize::from(now == Known::In)] += 1;
            }
            if user != "anchor" {
                known.insert(user.clone(), now);
            }
            regs.insert(user, reg);
        }
        let (epoch, _) = current.unwrap();
        assert!(
            epoch >= handed,
            "round {round}: resynced to epoch {epoch}, older than {handed} handed out before the kill"
        );
        handed = epoch;

        // One change with the server up: its rekey reaches the member that
        // has been following over multicast since before the kill.
        let u = &users[rng.below(users.len() as u64) as usize];
        let epoch = if known[u] == Known::In {
            regs[u].leave("lsim").await.unwrap()
        } else {
            regs[u].join("lsim").await.unwrap().keys.epoch().unwrap()
        };
        assert!(epoch > handed, "round {round}: the first epoch after the restart, {epoch}, is not above {handed}");
        known.insert(u.clone(), if known[u] == Known::In { Known::Out } else { Known::In });
        anchor.reach(epoch, &regs["anchor"]).await;
        handed = epoch.max(anchor.highest());
    }
    eprintln!(
        "unanswered requests: {} lost with the server, {} committed before it died; final epoch {handed}",
        settled[0], settled[1]
    );
    server.kill();
    anchor.follower.handle.stop();
}

/// An up-to-date member's chat sender on the group's multicast address
/// (node 500); the test installs each new epoch in its seal.
fn talker(mc: &MulticastConfig, session: u32, seal: GroupSeal) -> Handle<Sender<GroupSeal>> {
    let socket = MulticastSocket::open(mc).unwrap();
    let cfg = SenderConfig { session, node: 500, first_seq: wall_clock_seq(), ..SenderConfig::default() };
    let mut driver = Driver::new(Sender::new(cfg, seal).unwrap(), socket, DriverConfig::default());
    let handle = driver.handle();
    tokio::spawn(async move {
        let _ = driver.run(|_, _| ControlFlow::<()>::Continue(())).await;
    });
    handle
}

/// Says `text` under `epoch` (installing it first if it is new).
fn say(talker: &Handle<Sender<GroupSeal>>, epoch: u32, key: &SecretKey, text: &str) {
    let (key, text) = (key.clone(), text.as_bytes().to_vec());
    assert!(talker.with(move |s| {
        if s.seal_mut().current_epoch() < epoch {
            s.seal_mut().install(epoch, &key).unwrap();
        }
        s.send_bytes(ObjectKind::Chat, text).unwrap();
    }));
}

/// A member's chat reader with `seal`: every chat it can open, in order.
fn reader(
    mc: &MulticastConfig,
    node: u32,
    session: u32,
    seal: GroupSeal,
) -> (Handle<Receiver<GroupSeal>>, mpsc::UnboundedReceiver<Vec<u8>>) {
    let socket = MulticastSocket::open(mc).unwrap();
    let cfg = ReceiverConfig {
        session,
        node,
        seed: u64::from(node),
        accept_backlog: false,
        first_seq: wall_clock_seq(),
        ..ReceiverConfig::default()
    };
    let mut driver = Driver::new(Receiver::new(cfg, seal), socket, DriverConfig::default());
    let handle = driver.handle();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut partial: BTreeMap<(u32, u32), Vec<u8>> = BTreeMap::new();
        let _ = driver
            .run(|_, e| {
                match e {
                    ReceiverEvent::ObjectStarted { sender, object, kind: ObjectKind::Chat, .. } => {
                        partial.insert((sender, object), Vec::new());
                    }
                    ReceiverEvent::ObjectData { sender, object, data, .. } => {
                        if let Some(b) = partial.get_mut(&(sender, object)) {
                            b.extend_from_slice(&data);
                        }
                    }
                    ReceiverEvent::ObjectComplete { sender, object } => {
                        if let Some(b) = partial.remove(&(sender, object)) {
                            let _ = tx.send(b);
                        }
                    }
                    _ => {}
                }
                ControlFlow::<()>::Continue(())
            })
            .await;
    });
    (handle, rx)
}

async fn wait_followed(f: &mut Follower, what: &str, pred: impl Fn(&Followed) -> bool) -> Followed {
    let got = match tokio::time::timeout(Duration::from_secs(10), f.epochs.wait_for(pred)).await {
        Ok(r) => Some(r.unwrap().clone()),
        Err(_) => None,
    };
    got.unwrap_or_else(|| panic!("{what}: not reached, at {:?}", *f.epochs.borrow()))
}

async fn stop(f: Follower) -> GroupKeys {
    f.handle.stop();
    f.task.await.unwrap()
}

/// Every group key `keys` can still produce: its path keys (the group key
/// among them) and the window of past epochs' group keys.
fn everything_held(keys: &GroupKeys) -> Vec<SecretKey> {
    let current = keys.keys.epoch().unwrap_or(0);
    let path = keys.keys.held_keys().map(|(_, k)| k.clone());
    let past = (0..=current).filter_map(|e| keys.keys.group_key_for(e).cloned());
    path.chain(past).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cut_off_resyncs_when_the_partition_heals_unless_it_was_removed() {
    let mut rng = Rng::new(seed("partition"));
    let mc = MulticastConfig::loopback(group(2));
    let dir = common::data_dir("campaign", "partition");
    let cfg = ServerConfig::new(dir.path().into(), vec![GroupConfig::loopback("lsim", SuiteId::Aes256Gcm, group(2))]);
    let server = KeyServer::start(cfg).await.unwrap();
    let (addr, pin) = (server.addr().unwrap(), server.fingerprint());
    let crew: Vec<String> = (0..5).map(|i| format!("crew{i}")).collect();
    for u in crew.iter().map(String::as_str).chain(["cut", "peer"]) {
        server.add_user(u, "pw", CHEAP).unwrap();
    }
    let cut = Registration::login(addr, pin, "cut", "pw").await.unwrap();
    let server_key = *cut.server_key();
    let keys = cut.join("lsim").await.unwrap();
    let session = keys.keys.group();
    let mut cut_f = follow_rekeys(&mc, 101, keys, server_key).unwrap();
    let peer = Registration::login(addr, pin, "peer", "pw").await.unwrap();
    let mut peer_f = follow_rekeys(&mc, 201, peer.join("lsim").await.unwrap(), server_key).unwrap();
    let mut crew_regs = Vec::new();
    for u in &crew {
        crew_regs.push((Registration::login(addr, pin, u, "pw").await.unwrap(), false));
    }
    let (epoch, _) = server.group_state("lsim").await.unwrap();
    wait_followed(&mut cut_f, "cut at the peer's join", |f| *f == Followed::Epoch(epoch)).await;
    let talk =
        talker(&mc, session, GroupSeal::new(SuiteId::Aes256Gcm, epoch, &server.group_key("lsim").await.unwrap()));
    let (mut healed, mut removed_rounds) = (0, 0);

    for round in 0..rounds(4) {
        // The partition: cut's multicast receive path is gone (its socket closed).
        let keys = stop(cut_f).await;
        let cut_epoch = keys.keys.epoch().unwrap();
        let held = everything_held(&keys);
        // Joins and leaves it does not hear, and maybe its own removal.
        let changes = 1 + rng.below(3);
        let remove_at = (rng.below(3) == 0).then(|| rng.below(changes));
        let mut since_removal: Vec<SecretKey> = Vec::new();
        let mut removed = false;
        for c in 0..changes {
            if remove_at == Some(c) {
                removed = true;
                let e = server.evict("lsim", "cut").await.unwrap().expect("cut is a member");
                wait_followed(&mut peer_f, "peer after the eviction", |f| *f == Followed::Epoch(e)).await;
                since_removal.push(server.group_key("lsim").await.unwrap());
            }
            let i = rng.below(crew.len() as u64) as usize;
            let (reg, member) = &mut crew_regs[i];
            let e = if *member {
                reg.leave("lsim").await.unwrap()
            } else {
                reg.join("lsim").await.unwrap().keys.epoch().unwrap()
            };
            *member = !*member;
            wait_followed(&mut peer_f, "peer after a change", |f| *f == Followed::Epoch(e)).await;
            if removed {
                since_removal.push(server.group_key("lsim").await.unwrap());
            }
        }
        let (epoch, _) = server.group_state("lsim").await.unwrap();
        let key = server.group_key("lsim").await.unwrap();
        assert!(epoch > cut_epoch);

        // The partition heals: cut hears the group again, with the keys it had.
        let (old_reader, mut old_read) = reader(&mc, 102, session, keys.seal().unwrap());
        cut_f = follow_rekeys(&mc, 101, keys, server_key).unwrap();
        let healed_text = format!("round {round}: after the partition healed");
        say(&talk, epoch, &key, &healed_text);
        // It notices the gap from what it hears, without waiting for another rekey.
        let f = wait_followed(&mut cut_f, "cut notices the gap", |f| matches!(f, Followed::NeedsResync { .. })).await;
        assert_eq!(f, Followed::NeedsResync { current: cut_epoch }, "round {round}");
        // With the keys it has, what the group says now is unreadable.
        let read = tokio::time::timeout(Duration::from_millis(500), old_read.recv()).await;
        assert!(
            read.is_err(),
            "round {round}: read {:?} with epoch {cut_epoch}'s keys",
            read.ok().flatten().map(String::from_utf8)
        );
        old_reader.stop();

        if remove_at.is_none() {
            // Resync: the current epoch and key, and new traffic reads.
            let fresh = cut.resync("lsim").await.unwrap();
            assert_eq!(fresh.keys.epoch(), Some(epoch), "round {round}: resynced to the current epoch");
            assert!(fresh.keys.group_key() == Some(&key), "round {round}: resynced to the current group key");
            let _ = stop(cut_f).await;
            let (new_reader, mut read) = reader(&mc, 103, session, fresh.seal().unwrap());
            cut_f = follow_rekeys(&mc, 101, fresh, server_key).unwrap();
            let text = format!("round {round}: new traffic after the resync");
            say(&talk, epoch, &key, &text);
            let got = tokio::time::timeout(Duration::from_secs(5), read.recv()).await;
            assert_eq!(got.ok().flatten().map(String::from_utf8), Some(Ok(text)), "round {round}");
            new_reader.stop();
            healed += 1;
        } else {
            // Removed while cut off: the registrar refuses it, and nothing it
            // holds is the group key of any epoch since its removal.
            let e = cut.resync("lsim").await.err().unwrap();
            assert!(is_refused(&e, ErrorCode::State), "round {round}: a removed member resynced: {e}");
            for k in &since_removal {
                assert!(
                    !held.contains(k),
                    "round {round}: the removed member holds a key of an epoch after its removal"
                );
            }
            // Back in for the next round.
            let _ = stop(cut_f).await;
            let keys = cut.join("lsim").await.unwrap();
            let e = keys.keys.epoch().unwrap();
            wait_followed(&mut peer_f, "peer after cut rejoined", |f| *f == Followed::Epoch(e)).await;
            cut_f = follow_rekeys(&mc, 101, keys, server_key).unwrap();
            removed_rounds += 1;
        }
    }
    eprintln!(
        "partition campaign: {healed} rounds healed by resync, {removed_rounds} with the member removed while cut off"
    );
    talk.stop();
    peer_f.handle.stop();
    cut_f.handle.stop();
    server.close();
}
