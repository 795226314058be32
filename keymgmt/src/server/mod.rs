//! The key server: groups, their key trees, and the registrar that serves them.
//!
//! Owns the server's state and its rules: who may log in (password check,
//! rate-limited), who may join which group, the batching of join and leave
//! requests into one rekey per window, persisting every committed batch
//! with its epoch's group key before anyone hears of it (so a restart never
//! loses a member, reuses an epoch or forgets an epoch's key), handing a
//! member that resyncs the group keys of the past epochs of its membership
//! (never one from before it joined), signing each rekey and multicasting
//! it to the group on the transport (sealed under the epoch the members
//! still hold, with proactive FEC). It also wraps file keys for members named by another member of the
//! same group (`filekey`), keeping none of them. The channel
//! (`registrar::quic`) and the tree (`tree`) do the rest.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;

use crate::cert::MemberCert;
use crate::guard::Refusal;
use lsim_transport::net::{Driver, DriverConfig, Handle, MulticastConfig, MulticastSocket};
use lsim_transport::seal::Seal;
use lsim_transport::wire::ObjectKind;
use lsim_transport::{Sender, SenderConfig};
use thiserror::Error;
use tokio::sync::{Mutex, oneshot};
use zeroize::Zeroizing;

use crate::filekey::{self, FileKey};
use crate::key::SecretKey;
use crate::registrar::msg::{ErrorCode, Request, Response};
use crate::registrar::quic::{self, ChannelError, Identity};
use crate::rekey::SignedRekey;
use crate::store::{Run, Store, StoreError};
use crate::suite::{GroupSeal, SuiteId};
use crate::tree::{DEFAULT_DEGREE, KeyTree, MemberId};
use crate::users::{Cost, PasswordVerifier, UserError, check_name};
pub use runs::ABSENCE_KEEPS_RUN;
use runs::{joiner_since, run_since, unix_now};

/// The transport node id the key server sends rekeys from at its first
/// start; later starts use the others of [`KEY_SERVER_NODES`] in turn (see
/// [`key_server_node`]).
pub const KEY_SERVER_NODE: u32 = 0xffff_fff0;
/// The node ids reserved for the key server's rekeys.
pub const KEY_SERVER_NODES: std::ops::RangeInclusive<u32> = 0xffff_f000..=0xffff_ffff;

/// The node id the key server sends rekeys from at its `start`-th start
/// (counted from 0 in its store): a different one at every start, cycling
/// through [`KEY_SERVER_NODES`]. A restarted sender numbers its objects from
/// 0 again; a member still following the previous run would take them for
/// repeats of objects it already has and drop every rekey until the numbers
/// passed the old run's. Under a new node id it is a new sender (a member
/// that kept following through 4096 restarts would meet its first run's id
/// again, and resync at the gap the next rekey shows).
pub fn key_server_node(start: u64) -> u32 {
    let span = u64::from(KEY_SERVER_NODES.end() - KEY_SERVER_NODES.start()) + 1;
    let first = u64::from(KEY_SERVER_NODE - KEY_SERVER_NODES.start());
    KEY_SERVER_NODES.start() + ((first + start) % span) as u32
}

/// Whether `node` is one the key server sends rekeys from.
pub fn is_key_server_node(node: u32) -> bool {
    KEY_SERVER_NODES.contains(&node)
}

pub use crate::guard::{LOGIN_WINDOW, LoginGuard, MAX_FAILED_LOGINS};

mod config;
mod runs;
pub use config::{GroupConfig, PasswordCheck, ServerConfig};

/// Why the server could not start or act.
#[derive(Debug, Error)]
pub enum ServerError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The registrar channel failed.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// A stored group could not be read.
    #[error("group {group}: {why}")]
    Group {
        /// The group.
        group: String,
        /// What is wrong.
        why: String,
    },
    /// A user could not be added.
    #[error(transparent)]
    User(#[from] UserError),
    /// Socket set-up failed.
    #[error("multicast for group {group}: {why}")]
    Multicast {
        /// The group.
        group: String,
        /// Why.
        why: String,
    },
}

struct Waiter {
    member: MemberId,
    join: bool,
    reply: oneshot::Sender<Response>,
}

struct Group {
    suite: SuiteId,
    tree: KeyTree,
    allowed: Option<Vec<String>>,
    waiting: Vec<Waiter>,
    batch_due: bool,
    rekeys: Option<Handle<Sender<GroupSeal>>>,
    /// The current epoch and group key, for a holder on this host (the archive).
    epochs: tokio::sync::watch::Sender<(u32, SecretKey)>,
}

const GROUP_FORMAT: u8 = 1;

impl Group {
    fn record(&self) -> Zeroizing<Vec<u8>> {
        let mut v = Zeroizing::new(vec![GROUP_FORMAT, self.suite.to_u8()]);
        v.extend_from_slice(&self.tree.to_bytes());
        v
    }
}

struct Inner {
    store: Store,
    signing: SigningKey,
    groups: Mutex<HashMap<String, Group>>,
    guard: Arc<LoginGuard>,
    window: Duration,
    passwords: Option<Arc<dyn PasswordCheck>>,
    /// Users revoked by the administrator: every rekey carries their names.
    revoked: std::sync::Mutex<Vec<String>>,
}

/// A running key server.
pub struct KeyServer {
    inner: Arc<Inner>,
    endpoint: quinn::Endpoint,
    fingerprint: [u8; 32],
}

/// Per-connection state: who logged in.
#[derive(Default)]
pub struct Session {
    user: Option<(String, MemberId, SecretKey)>,
}

impl KeyServer {
    /// Opens the store in `cfg.data_dir`, loads or creates the signing key,
    /// the TLS identity and every group, and serves the registrar. Must run
    /// inside a tokio runtime.
    pub async fn start(cfg: ServerConfig) -> Result<KeyServer, ServerError> {
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| StoreError::Corrupt { what: "data dir", key: e.to_string() })?;
        let store = Store::open(&cfg.data_dir.join("keys.redb"))?;
        let seed = store.secret("signing-key", || {
            let k = SecretKey::random().map_err(|e| StoreError::Corrupt { what: "random", key: e.0 })?;
            Ok(Zeroizing::new(k.as_bytes().to_vec()))
        })?;
        let mut seed_bytes = [0u8; 32];
        if seed.len() != 32 {
            return Err(StoreError::Corrupt { what: "secret", key: "signing-key".into() }.into());
        }
        seed_bytes.copy_from_slice(&seed);
        let signing = SigningKey::from_bytes(&seed_bytes);
        zeroize::Zeroize::zeroize(&mut seed_bytes);
        let identity = load_identity(&store)?;
        let mut groups = HashMap::new();
        for (i, g) in cfg.groups.iter().enumerate() {
            let group = load_group(&store, g, i as u32 + 1)?;
            groups.insert(g.name.clone(), group);
        }
        let endpoint = quic::server_endpoint(cfg.listen, &identity)?;
        let inner = Arc::new(Inner {
            store,
            signing,
            groups: Mutex::new(groups),
            guard: cfg.guard.clone().unwrap_or_else(|| Arc::new(LoginGuard::new(&cfg.data_dir))),
            window: cfg.batch_window,
            passwords: cfg.passwords.clone(),
            revoked: std::sync::Mutex::new(Vec::new()),
        });
        let node = key_server_node(inner.store.next_start()?);
        for g in &cfg.groups {
            if let Some(mc) = &g.multicast {
                start_rekey_sender(&inner, &g.name, mc, node).await?;
            }
        }
        tokio::spawn(quic::serve(endpoint.clone(), inner.clone()));
        Ok(KeyServer { inner, endpoint, fingerprint: identity.fingerprint() })
    }

    /// Where the registrar listens.
    pub fn addr(&self) -> Result<SocketAddr, ServerError> {
        self.endpoint.local_addr().map_err(|e| ServerError::Channel(ChannelError::Io(e)))
    }

    /// The certificate fingerprint clients pin.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// The key that signs rekeys.
    pub fn verifying_key(&self) -> [u8; 32] {
        self.inner.signing.verifying_key().to_bytes()
    }

    /// Adds (or changes the password of) a user.
    pub fn add_user(&self, name: &str, password: &str, cost: Cost) -> Result<(), ServerError> {
        check_name(name)?;
        self.inner.store.put_user(name, &PasswordVerifier::new(password, cost)?)?;
        Ok(())
    }

    /// A group's current epoch and member count.
    pub async fn group_state(&self, name: &str) -> Option<(u32, usize)> {
        self.inner.groups.lock().await.get(name).map(|g| (g.tree.epoch(), g.tree.len()))
    }

    /// A group's current group key (for tests that check what members hold).
    pub async fn group_key(&self, name: &str) -> Option<SecretKey> {
        self.inner.groups.lock().await.get(name).map(|g| g.tree.group_key().clone())
    }

    /// A group's suite, transport session, and its epochs as they change
    /// (current epoch and group key): what a holder on this host (the
    /// archive) needs to open and seal the group's packets.
    pub async fn follow(&self, name: &str) -> Option<(SuiteId, u32, tokio::sync::watch::Receiver<(u32, SecretKey)>)> {
        self.inner.groups.lock().await.get(name).map(|g| (g.suite, g.tree.group(), g.epochs.subscribe()))
    }

    /// A group's members, each by its transport node id (`member_node`)
    /// with the epoch its run of membership began at (see `keys`): what a
    /// holder on this host (the archive) needs to refuse a member what was
    /// sent before it joined.
    pub async fn joined_epochs(&self, name: &str) -> Vec<(u32, u32)> {
        let groups = self.inner.groups.lock().await;
        let Some(g) = groups.get(name) else { return Vec::new() };
        g.tree
            .members()
            .filter_map(|m| {
                let p = g.tree.path_keys(m).ok()?;
                Some((member_node(m), run_since(&self.inner.store, name, m, p.leaf_version)))
            })
            .collect()
    }

    /// The group keys this server keeps of a group's past epochs, oldest
    /// first: a holder on this host started again (the archive) seals
    /// repair of what it stored under the epoch it was sent in.
    pub async fn past_epochs(&self, name: &str) -> Result<Vec<(u32, SecretKey)>, ServerError> {
        let Some(epoch) = self.group_state(name).await.map(|(epoch, _)| epoch) else { return Ok(Vec::new()) };
        Ok(self.inner.store.epoch_keys(name, 0..epoch)?)
    }

    /// A named 32-byte secret of this server, made at random on first use
    /// and kept in its store (e.g. the archive's key at rest).
    pub fn secret(&self, name: &str) -> Result<Zeroizing<Vec<u8>>, ServerError> {
        let v = self.inner.store.secret(name, || {
            let k = SecretKey::random().map_err(|e| StoreError::Corrupt { what: "random", key: e.0 })?;
            Ok(Zeroizing::new(k.as_bytes().to_vec()))
        })?;
        Ok(v)
    }

    /// Removes `user` from `group` as if it had left, so the rest are
    /// rekeyed: an administrator's eviction, which ends its run of
    /// membership (back, it is a member only from then on). `Ok(None)` if
    /// the user is not in the group.
    pub async fn evict(&self, group: &str, user: &str) -> Result<Option<u32>, ServerError> {
        self.remove(group, user, false).await
    }

    /// `evict` for a member that vanished without leaving (its room
    /// presence gone past the grace period): its run of membership is kept,
    /// so that back within `ABSENCE_KEEPS_RUN` it is a member since it
    /// first joined, and gets what was sent while it was away.
    pub async fn evict_absent(&self, group: &str, user: &str) -> Result<Option<u32>, ServerError> {
        self.remove(group, user, true).await
    }

    async fn remove(&self, group: &str, user: &str, absent: bool) -> Result<Option<u32>, ServerError> {
        let rec = self.inner.store.member(user)?;
        let member = MemberId(rec.id);
        let since = {
            let groups = self.inner.groups.lock().await;
            let Some(g) = groups.get(group) else {
                return Err(ServerError::Group { group: group.into(), why: "no such group".into() });
            };
            if !g.tree.contains(member) {
                return Ok(None);
            }
            let leaf_version = g.tree.path_keys(member).map(|p| p.leaf_version).unwrap_or(g.tree.epoch());
            run_since(&self.inner.store, group, member, leaf_version)
        };
        match self.inner.request(group.to_string(), user, member, &rec.key, false).await {
            Response::Left { epoch } => {
                let run = absent.then_some(Run { since, absent_since: Some(unix_now()) });
                self.inner.store.put_run(group, member.0, run)?;
                Ok(Some(epoch))
            }
            Response::Error { message, .. } => Err(ServerError::Group { group: group.into(), why: message }),
            _ => Err(ServerError::Group { group: group.into(), why: "unexpected answer to a leave".into() }),
        }
    }

    /// The users revoked so far (the administrator's persisted list, given
    /// at start): every rekey from now on carries them.
    pub fn set_revoked(&self, names: impl IntoIterator<Item = String>) {
        if let Ok(mut r) = self.inner.revoked.lock() {
            *r = names.into_iter().collect();
        }
    }

    /// Revokes `user`: its name goes on the list every rekey carries (so
    /// members refuse what it signed, from the rekey on), and it is evicted
    /// from `group`, whose rekey is the first to carry it. `Ok(None)` if it
    /// was not in the group (the list still has it).
    pub async fn revoke(&self, group: &str, user: &str) -> Result<Option<u32>, ServerError> {
        if let Ok(mut r) = self.inner.revoked.lock()
            && !r.iter().any(|n| n == user)
        {
            r.push(user.to_string());
        }
        self.evict(group, user).await
    }

    /// Stops serving.
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"shutdown");
    }
}

fn load_identity(store: &Store) -> Result<Identity, ServerError> {
    let mut made = None;
    let bytes = store.secret("tls-identity", || {
        let id = Identity::generate().map_err(|e| StoreError::Corrupt { what: "identity", key: e.to_string() })?;
        let mut v = Zeroizing::new((id.cert.len() as u32).to_be_bytes().to_vec());
        v.extend_from_slice(&id.cert);
        v.extend_from_slice(&id.key);
        made = Some(id);
        Ok(v)
    })?;
    if let Some(id) = made {
        return Ok(id);
    }
    let corrupt = || StoreError::Corrupt { what: "secret", key: "tls-identity".into() };
    let len = u32::from_be_bytes(bytes.get(..4).and_then(|b| b.try_into().ok()).ok_or_else(corrupt)?) as usize;
    let cert = bytes.get(4..4 + len).ok_or_else(corrupt)?.to_vec();
    let key = Zeroizing::new(bytes.get(4 + len..).ok_or_else(corrupt)?.to_vec());
    Ok(Identity { cert, key })
}

fn load_group(store: &Store, cfg: &GroupConfig, id: u32) -> Result<Group, ServerError> {
    let bad = |why: String| ServerError::Group { group: cfg.name.clone(), why };
    let (suite, tree) = match store.group(&cfg.name)? {
        Some(rec) => {
            let rec = Zeroizing::new(rec);
            if rec.len() < 2 || rec[0] != GROUP_FORMAT {
                return Err(bad("unknown record format".into()));
            }
            let suite = SuiteId::from_u8(rec[1]).map_err(|e| bad(e.to_string()))?;
            (suite, KeyTree::from_bytes(&rec[2..]).map_err(|e| bad(e.to_string()))?)
        }
        None => (cfg.suite, KeyTree::new(id, DEFAULT_DEGREE).map_err(|e| bad(e.to_string()))?),
    };
    if suite != cfg.suite {
        return Err(bad(format!("stored with suite {suite}, configured {}", cfg.suite)));
    }
    let epochs = tokio::sync::watch::Sender::new((tree.epoch(), tree.group_key().clone()));
    let group = Group {
        suite,
        tree,
        allowed: cfg.allowed.clone(),
        waiting: Vec::new(),
        batch_due: false,
        rekeys: None,
        epochs,
    };
    store.put_group(&cfg.name, &group.record(), group.tree.epoch(), group.tree.group_key())?;
    Ok(group)
}

async fn start_rekey_sender(
    inner: &Arc<Inner>,
    name: &str,
    mc: &MulticastConfig,
    node: u32,
) -> Result<(), ServerError> {
    let mut groups = inner.groups.lock().await;
    let Some(g) = groups.get_mut(name) else { return Ok(()) };
    let bad = |why: String| ServerError::Multicast { group: name.into(), why };
    let socket = MulticastSocket::open(mc).map_err(|e| bad(e.to_string()))?;
    let seal = GroupSeal::new(g.suite, g.tree.epoch(), g.tree.group_key());
    let cfg = SenderConfig {
        session: g.tree.group(),
        node,
        proactive: 1.0,
        // The default adaptive rate: a burst of rekeys for a large group
        // must not flood an 11 Mbit/s radio (unpaced, it did).
        symbol_size: 1200,
        first_seq: lsim_transport::net::driver::wall_clock_seq(),
        ..SenderConfig::default()
    };
    let sender = Sender::new(cfg, seal).map_err(|e| bad(e.to_string()))?;
    let mut driver = Driver::new(sender, socket, DriverConfig::default());
    g.rekeys = Some(driver.handle());
    tokio::spawn(async move {
        let _ = driver.run(|_, _| std::ops::ControlFlow::<()>::Continue(())).await;
    });
    Ok(())
}

impl Inner {
    async fn hello(&self, session: &mut Session, from: SocketAddr, user: String, password: String) -> Response {
        match self.guard.check(&user, from) {
            Some(Refusal::User) => {
                return error(ErrorCode::RateLimited, format!("too many failed logins for {user}; wait a minute"));
            }
            Some(Refusal::Address) => {
                return error(ErrorCode::RateLimited, "too many failed logins from this address; wait a minute".into());
            }
            None => {}
        }
        let ok = if let Some(check) = self.passwords.clone() {
            let name = user.clone();
            tokio::task::spawn_blocking(move || check.verify(&name, &password)).await.unwrap_or(false)
        } else {
            let verifier = match self.store.user(&user) {
                Ok(v) => v,
                Err(e) => return error(ErrorCode::Internal, e.to_string()),
            };
            match verifier {
                // Argon2 takes tens of milliseconds: keep it off the runtime's threads.
                Some(v) => tokio::task::spawn_blocking(move || v.verify(&password)).await.unwrap_or(false),
                None => false,
            }
        };
        if !ok {
            self.guard.failed(&user, from);
            return error(ErrorCode::BadCredentials, "unknown user or wrong password".into());
        }
        self.guard.succeeded(&user, from);
        match self.store.member(&user) {
            Ok(rec) => {
                let resp = Response::Welcome {
                    member: rec.id,
                    individual_key: rec.key.clone(),
                    server_key: self.signing.verifying_key().to_bytes(),
                };
                session.user = Some((user, MemberId(rec.id), rec.key));
                resp
            }
            Err(e) => error(ErrorCode::Internal, e.to_string()),
        }
    }

    /// Certifies a logged-in member's signing key for `CERT_LIFETIME`.
    fn certify(&self, session: &Session, key: [u8; 32]) -> Response {
        let Some((user, member, _)) = &session.user else {
            return error(ErrorCode::NotLoggedIn, "log in first (Hello)".into());
        };
        if ed25519_dalek::VerifyingKey::from_bytes(&key).is_err() {
            return error(ErrorCode::Malformed, "not an Ed25519 public key".into());
        }
        let expires =
            crate::cert::now_ms().saturating_add(u64::try_from(CERT_LIFETIME.as_millis()).unwrap_or(u64::MAX));
        let cert = MemberCert::issue(&self.signing, user, member.0, member_node(*member), key, expires);
        Response::Certified { cert: cert.encode() }
    }

    async fn membership(self: &Arc<Self>, session: &Session, group: String, join: bool) -> Response {
        let Some((user, member, key)) = &session.user else {
            return error(ErrorCode::NotLoggedIn, "log in first (Hello)".into());
        };
        let resp = self.request(group.clone(), user, *member, key, join).await;
        if let Response::Left { .. } = resp {
            // A leave ends its run of membership.
            if let Err(e) = self.store.put_run(&group, member.0, None) {
                return error(ErrorCode::Internal, e.to_string());
            }
        }
        resp
    }

    /// Queues a join or leave of `member` (user `user`) in the group's next
    /// batch and waits for the batch's answer.
    async fn request(
        self: &Arc<Self>,
        group: String,
        user: &str,
        member: MemberId,
        key: &SecretKey,
        join: bool,
    ) -> Response {
        let (user, member) = (&user.to_string(), &member);
        let rx = {
            let mut groups = self.groups.lock().await;
            let Some(g) = groups.get_mut(&group) else {
                return error(ErrorCode::UnknownGroup, format!("no group {group:?}"));
            };
            if join && g.allowed.as_ref().is_some_and(|a| !a.contains(user)) {
                return error(ErrorCode::NotAllowed, format!("{user} may not join {group}"));
            }
            if join && g.tree.contains(*member) && !g.waiting.iter().any(|w| w.member == *member) {
                // Already in (e.g. logged in again after a restart): hand over the current path.
                return keys(&self.store, &group, g, *member, self.revoked_names());
            }
            let queued = if join { g.tree.request_join(*member, key.clone()) } else { g.tree.request_leave(*member) };
            if let Err(e) = queued {
                return error(ErrorCode::State, e.to_string());
            }
            let (tx, rx) = oneshot::channel();
            g.waiting.push(Waiter { member: *member, join, reply: tx });
            if !g.batch_due {
                g.batch_due = true;
                let inner = self.clone();
                let name = group.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(inner.window).await;
                    inner.commit(&name).await;
                });
            }
            rx
        };
        rx.await.unwrap_or_else(|_| error(ErrorCode::Internal, "the batch was dropped".into()))
    }

    /// Commits a group's queued requests: new keys, persisted, signed, multicast, answered.
    async fn commit(&self, name: &str) {
        let mut groups = self.groups.lock().await;
        let Some(g) = groups.get_mut(name) else { return };
        g.batch_due = false;
        let waiting = std::mem::take(&mut g.waiting);
        let before = g.tree.clone();
        let (old_epoch, old_key) = (g.tree.epoch(), g.tree.group_key().clone());
        let batch = match g.tree.commit() {
            Ok(b) => b,
            Err(e) => return fail(waiting, &e),
        };
        // Persist before anyone hears of the new epoch: a crash after this point
        // replays nothing and reuses no epoch; a crash before it loses only
        // requests nobody was answered for.
        if let Err(e) = self.store.put_group(name, &g.record(), g.tree.epoch(), g.tree.group_key()) {
            g.tree = before;
            return fail(waiting, &e);
        }
        g.epochs.send_replace((g.tree.epoch(), g.tree.group_key().clone()));
        let mut rekey = batch.rekey.clone();
        rekey.revoked = self.revoked.lock().map(|r| r.clone()).unwrap_or_default();
        let signed = SignedRekey::sign(&rekey, &self.signing).encode();
        if let Some(h) = &g.rekeys {
            h.with(move |s: &mut Sender<GroupSeal>| {
                // Sealed under the epoch the members still hold.
                if s.seal_mut().current_epoch() != old_epoch {
                    let _ = s.seal_mut().install(old_epoch, &old_key);
                }
                let _ = s.send_bytes(ObjectKind::Rekey, signed);
            });
        }
        for w in waiting {
            let resp = if w.join {
                match batch.joiner_paths.iter().find(|p| p.member == w.member) {
                    // Its run of membership begins at this epoch, or goes on
                    // from before an eviction for absence: the history of it.
                    Some(p) => {
                        let since = joiner_since(&self.store, name, w.member, batch.epoch);
                        let _ = self.store.put_run(name, w.member.0, Some(Run { since, absent_since: None }));
                        match self.store.epoch_keys(name, since..batch.epoch) {
                            Ok(history) => Response::Keys {
                                suite: g.suite.to_u8(),
                                path: p.clone(),
                                revoked: self.revoked_names(),
                                history,
                            },
                            Err(e) => error(ErrorCode::Internal, e.to_string()),
                        }
                    }
                    None => error(ErrorCode::Internal, "joiner missing from batch".into()),
                }
            } else {
                Response::Left { epoch: batch.epoch }
            };
            let _ = w.reply.send(resp);
        }
    }

    /// Wraps `key` for each of `to`, all current members of `group`, at
    /// the request of another current member. Refusals: `NotAllowed` if the
    /// requester is not a member, `Malformed` for an empty list or a name
    /// given twice, `NotMember` naming every listed user who is not a member.
    /// The key is neither logged nor kept: it drops (zeroized) with the request.
    async fn wrap_file_key(&self, session: &Session, group: &str, to: &[String], key: &FileKey) -> Response {
        let Some((user, member, _)) = &session.user else {
            return error(ErrorCode::NotLoggedIn, "log in first (Hello)".into());
        };
        if to.is_empty() {
            return error(ErrorCode::Malformed, "a file key for nobody".into());
        }
        let mut seen = HashSet::new();
        if let Some(twice) = to.iter().find(|n| !seen.insert(n.as_str())) {
            return error(ErrorCode::Malformed, format!("{twice:?} is named twice"));
        }
        // Store reads before taking the groups' lock; membership is checked under it.
        let mut records = Vec::with_capacity(to.len());
        for name in to {
            match self.store.find_member(name) {
                Ok(rec) => records.push(rec),
                Err(e) => return error(ErrorCode::Internal, e.to_string()),
            }
        }
        {
            let groups = self.groups.lock().await;
            let Some(g) = groups.get(group) else {
                return error(ErrorCode::UnknownGroup, format!("no group {group:?}"));
            };
            if !g.tree.contains(*member) {
                return error(ErrorCode::NotAllowed, format!("{user} is not a member of {group}"));
            }
            let outsiders: Vec<&String> = to
                .iter()
                .zip(&records)
                .filter(|(_, rec)| !rec.as_ref().is_some_and(|r| g.tree.contains(MemberId(r.id))))
                .map(|(name, _)| name)
                .collect();
            if !outsiders.is_empty() {
                return error(ErrorCode::NotMember, not_members(group, &outsiders));
            }
        }
        let mut wraps = Vec::with_capacity(records.len());
        // Every record is there: a name without one was refused above.
        for rec in records.iter().flatten() {
            match filekey::wrap(&rec.key, group, rec.id, key) {
                Ok(w) => wraps.push(w),
                Err(e) => return error(ErrorCode::Internal, format!("wrapping a file key: {e}")),
            }
        }
        Response::FileKeyWraps { wraps }
    }

    fn resync(&self, session: &Session, groups: &HashMap<String, Group>, group: &str) -> Response {
        let Some((_, member, _)) = &session.user else {
            return error(ErrorCode::NotLoggedIn, "log in first (Hello)".into());
        };
        match groups.get(group) {
            None => error(ErrorCode::UnknownGroup, format!("no group {group:?}")),
            Some(g) => keys(&self.store, group, g, *member, self.revoked_names()),
        }
    }

    /// The revoked users a `Keys` answer carries: the newest, as many as fit.
    fn revoked_names(&self) -> Vec<String> {
        let all = self.revoked.lock().map(|r| r.clone()).unwrap_or_default();
        let skip = all.len().saturating_sub(crate::registrar::msg::MAX_KEYS_REVOKED);
        all.into_iter().skip(skip).collect()
    }
}

/// A current member's keys: its path, and the group keys of the past
/// epochs of its run of membership still held (`run_since`): no epoch
/// before it joined, or before it came back after a leave, an
/// administrator's eviction or a long absence, is handed over.
fn keys(store: &Store, name: &str, g: &Group, member: MemberId, revoked: Vec<String>) -> Response {
    let path = match g.tree.path_keys(member) {
        Ok(path) => path,
        Err(e) => return error(ErrorCode::State, e.to_string()),
    };
    let since = run_since(store, name, member, path.leaf_version);
    match store.epoch_keys(name, since..path.epoch) {
        Ok(history) => Response::Keys { suite: g.suite.to_u8(), path, revoked, history },
        Err(e) => error(ErrorCode::Internal, e.to_string()),
    }
}

/// "not members of lsim: "a", "b" and 3 more", short enough for an error message.
fn not_members(group: &str, names: &[&String]) -> String {
    const SHOWN: usize = 8;
    let listed: Vec<String> =
        names.iter().take(SHOWN).map(|n| format!("{:?}", n.chars().take(64).collect::<String>())).collect();
    let more = names.len().saturating_sub(SHOWN);
    let tail = if more > 0 { format!(" and {more} more") } else { String::new() };
    format!("not members of {group}: {}{tail}", listed.join(", "))
}

fn fail(waiting: Vec<Waiter>, e: &dyn std::fmt::Display) {
    for w in waiting {
        let _ = w.reply.send(error(ErrorCode::Internal, format!("commit failed: {e}")));
    }
}

/// How long a member certificate is valid: a member re-certifies at every login.
pub const CERT_LIFETIME: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// The transport node id a member sends from: its member id's low 31 bits
/// (the top bit marks its receiver).
pub fn member_node(member: MemberId) -> u32 {
    (member.0 as u32) & 0x7fff_ffff
}

fn error(code: ErrorCode, message: String) -> Response {
    Response::Error { code, message }
}

impl quic::Handler for Inner {
    type Session = Session;

    async fn handle(self: &Arc<Self>, session: &mut Session, from: SocketAddr, req: Request) -> Response {
        match req {
            Request::Hello { user, password } => self.hello(session, from, user, password).await,
            Request::Join { group } => self.membership(session, group, true).await,
            Request::Leave { group } => self.membership(session, group, false).await,
            Request::Resync { group } => {
                let groups = self.groups.lock().await;
                self.resync(session, &groups, &group)
            }
            Request::Certify { key } => self.certify(session, key),
            Request::WrapFileKey { group, to, key } => self.wrap_file_key(session, &group, &to, &key).await,
        }
    }

    async fn closed(&self, _session: Session) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_start_sends_rekeys_from_a_node_of_its_own() {
        assert_eq!(key_server_node(0), KEY_SERVER_NODE);
        let nodes: std::collections::HashSet<u32> = (0..4096).map(key_server_node).collect();
        assert_eq!(nodes.len(), 4096, "4096 starts in a row, 4096 nodes");
        assert!(nodes.iter().all(|&n| is_key_server_node(n)));
        assert!(!is_key_server_node(0xfff0_0000), "lsim recv's highest node id is not the key server's");
    }
}
