//! A member's side of the key server: log in, join, leave, resync, and
//! follow the group's rekeys as they arrive on the multicast transport.
//!
//! Owns the client half of the registrar protocol and the glue between a
//! member's key store (`member::MemberKeys`) and its transport seal: each
//! verified rekey installs the new epoch in the seal of the receiver that
//! carried it. It also asks for file keys to be wrapped for some members and
//! unwraps those sealed for this one. It makes no key decision of its own.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use lsim_transport::net::{Driver, DriverConfig, Handle, MulticastConfig, MulticastSocket};
use lsim_transport::wire::ObjectKind;
use lsim_transport::{Receiver, ReceiverConfig, ReceiverEvent};
use thiserror::Error;
use tokio::sync::watch;

use crate::cert::{MemberCert, Signer};
use crate::filekey::{self, FileKey, FileKeyError, MAX_RECIPIENTS, Wrap};
use crate::key::SecretKey;
use crate::member::MemberKeys;
use crate::registrar::msg::{ErrorCode, Request, Response};
use crate::registrar::quic::{ChannelError, Client};
use crate::rekey::RekeyError;
use crate::server::is_key_server_node;
use crate::suite::{GroupSeal, SuiteId};
use crate::tree::MemberId;

/// Largest rekey object a member assembles (a leave at 2^20 members is ~1.3 MB).
pub const MAX_REKEY: u64 = 4 << 20;

/// What went wrong for the member.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The channel failed.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The server refused.
    #[error("refused ({code:?}): {message}")]
    Refused {
        /// Why.
        code: ErrorCode,
        /// The server's words.
        message: String,
    },
    /// The server answered something else than the request calls for.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
    /// The server's keys could not be installed.
    #[error(transparent)]
    Rekey(#[from] RekeyError),
    /// The group uses a suite this build does not know.
    #[error("unknown suite code {0}")]
    Suite(u8),
    /// Multicast set-up failed.
    #[error("multicast: {0}")]
    Multicast(String),
    /// A file key request could not be made.
    #[error(transparent)]
    FileKey(#[from] FileKeyError),
}

/// A member's keys for one group.
pub struct GroupKeys {
    /// The group's suite.
    pub suite: SuiteId,
    /// The keys.
    pub keys: MemberKeys,
}

impl GroupKeys {
    /// A transport seal at the member's current epoch, remembering the
    /// history the registrar gave (past epochs of this membership, for
    /// repair of what was sent in them).
    pub fn seal(&self) -> Option<GroupSeal> {
        let epoch = self.keys.epoch()?;
        let mut seal = GroupSeal::new(self.suite, epoch, self.keys.group_key()?);
        for (epoch, key) in self.keys.history() {
            seal.remember(epoch, key);
        }
        Some(seal)
    }
}

/// Opens `wrap` as member `member` holding `individual`: a wrap for
/// another member is refused before any decryption.
fn unwrap_for(member: u64, individual: &SecretKey, group: &str, wrap: &Wrap) -> Result<FileKey, FileKeyError> {
    if wrap.member != member {
        return Err(FileKeyError::OtherMember { wrap: wrap.member, mine: member });
    }
    filekey::unwrap(individual, group, wrap)
}

/// Opens the file keys wrapped for one member (see
/// [`Registration::file_key_opener`]).
pub type FileKeyOpener = Arc<dyn Fn(&[Wrap]) -> Option<FileKey> + Send + Sync>;

/// A logged-in member.
pub struct Registration {
    /// The channel in use (replaced when it fails and a new login works).
    client: std::sync::Mutex<Arc<Client>>,
    member: MemberId,
    individual: SecretKey,
    server: VerifyingKey,
    /// How to log in again after the channel failed (the key server
    /// restarted, or the member was out of range past its idle timeout).
    again: Relogin,
}

/// What a new login needs; the password is wiped on drop.
struct Relogin {
    addr: SocketAddr,
    pin: [u8; 32],
    user: String,
    password: zeroize::Zeroizing<String>,
}

fn refused(resp: Response) -> ClientError {
    match resp {
        Response::Error { code, message } => ClientError::Refused { code, message },
        other => ClientError::Unexpected(format!("{other:?}").chars().take(200).collect()),
    }
}

impl Registration {
    /// Connects to the registrar (trusting only the pinned certificate) and logs in.
    pub async fn login(
        addr: SocketAddr,
        pin: [u8; 32],
        user: &str,
        password: &str,
    ) -> Result<Registration, ClientError> {
        let again = Relogin { addr, pin, user: user.into(), password: zeroize::Zeroizing::new(password.into()) };
        let (client, member, individual, server) = again.hello().await?;
        Ok(Registration { client: std::sync::Mutex::new(Arc::new(client)), member, individual, server, again })
    }

    /// Sends `req`; if the channel has failed, logs in again on a new one
    /// (as the same member, to the same server key) and sends it once more.
    async fn call(&self, req: &Request) -> Result<Response, ClientError> {
        let client = self.channel();
        match client.call(req).await {
            Ok(r) => Ok(r),
            Err(ChannelError::Stream(_) | ChannelError::Connect { .. }) => {
                let (fresh, member, _, server) = self.again.hello().await?;
                if member != self.member || server != self.server {
                    return Err(ClientError::Unexpected("a new login answered as another member or server".into()));
                }
                let fresh = Arc::new(fresh);
                if let Ok(mut c) = self.client.lock() {
                    *c = fresh.clone();
                }
                Ok(fresh.call(req).await?)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// This member's id.
    pub fn member(&self) -> MemberId {
        self.member
    }

    /// The key that signs the group's rekeys.
    pub fn server_key(&self) -> &VerifyingKey {
        &self.server
    }

    /// The channel in use (for tests of the server's error handling).
    pub fn channel(&self) -> Arc<Client> {
        match self.client.lock() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    async fn keys(&self, req: Request) -> Result<GroupKeys, ClientError> {
        match self.call(&req).await? {
            Response::Keys { suite, path, revoked, history } => {
                let suite = SuiteId::from_u8(suite).map_err(|_| ClientError::Suite(suite))?;
                let mut keys = MemberKeys::new(path.group, self.member, self.individual.clone());
                keys.install_path(&path)?;
                keys.set_history(history)?;
                // Keys that did not come from a rekey refuse the revoked too.
                keys.set_revoked(revoked);
                Ok(GroupKeys { suite, keys })
            }
            other => Err(refused(other)),
        }
    }

    /// Joins `group`; returns the member's keys at the join's epoch.
    pub async fn join(&self, group: &str) -> Result<GroupKeys, ClientError> {
        self.keys(Request::Join { group: group.into() }).await
    }

    /// Fetches the member's current path again (after missed rekeys).
    pub async fn resync(&self, group: &str) -> Result<GroupKeys, ClientError> {
        self.keys(Request::Resync { group: group.into() }).await
    }

    /// Has the key server certify `key` as this member's signing key; the
    /// certificate is checked against the server's key before it is returned.
    pub async fn certify(&self, key: ed25519_dalek::SigningKey) -> Result<Signer, ClientError> {
        let public = key.verifying_key().to_bytes();
        match self.call(&Request::Certify { key: public }).await? {
            Response::Certified { cert } => {
                let (cert, _) = MemberCert::decode(&cert).map_err(|e| ClientError::Unexpected(e.to_string()))?;
                cert.verify(&self.server, crate::cert::now_ms()).map_err(|e| ClientError::Unexpected(e.to_string()))?;
                if cert.key != public || cert.member != self.member.0 {
                    return Err(ClientError::Unexpected("the certificate names another key or member".into()));
                }
                Ok(Signer::new(key, cert))
            }
            other => Err(refused(other)),
        }
    }

    /// Has the key server wrap `key` for each of `to` (user names, all
    /// current members of `group`, as is this member); returns one wrap per
    /// name, in the order given, to send along with the file.
    pub async fn wrap_file_key(&self, group: &str, to: &[String], key: &FileKey) -> Result<Vec<Wrap>, ClientError> {
        if to.len() > MAX_RECIPIENTS {
            return Err(FileKeyError::TooManyRecipients { count: to.len(), max: MAX_RECIPIENTS }.into());
        }
        let req = Request::WrapFileKey { group: group.into(), to: to.to_vec(), key: key.clone() };
        match self.call(&req).await? {
            Response::FileKeyWraps { wraps } if wraps.len() == to.len() => Ok(wraps),
            Response::FileKeyWraps { wraps } => {
                Err(ClientError::Unexpected(format!("{} file key wraps for {} recipients", wraps.len(), to.len())))
            }
            other => Err(refused(other)),
        }
    }

    /// Opens a file key wrapped for this member in `group`.
    pub fn unwrap_file_key(&self, group: &str, wrap: &Wrap) -> Result<FileKey, FileKeyError> {
        unwrap_for(self.member.0, &self.individual, group, wrap)
    }

    /// What a receiver keeps to open files for this member in `group`
    /// without the registration: finds this member's wrap among a file's
    /// and unwraps it (`None`: the file is not for us). It holds a copy of
    /// the individual key, zeroized when the last clone is dropped.
    pub fn file_key_opener(&self, group: &str) -> FileKeyOpener {
        let (member, individual, group) = (self.member.0, self.individual.clone(), group.to_string());
        Arc::new(move |wraps: &[Wrap]| wraps.iter().find_map(|w| unwrap_for(member, &individual, &group, w).ok()))
    }

    /// Leaves `group`; returns the epoch the rest of the group moved to.
    pub async fn leave(&self, group: &str) -> Result<u32, ClientError> {
        match self.call(&Request::Leave { group: group.into() }).await? {
            Response::Left { epoch } => Ok(epoch),
            other => Err(refused(other)),
        }
    }
}

impl Relogin {
    /// Connects (trusting only the pinned certificate) and logs in.
    async fn hello(&self) -> Result<(Client, MemberId, SecretKey, VerifyingKey), ClientError> {
        let client = Client::connect(self.addr, self.pin).await?;
        let hello = Request::Hello { user: self.user.clone(), password: self.password.to_string() };
        match client.call(&hello).await? {
            Response::Welcome { member, individual_key, server_key } => {
                let server = VerifyingKey::from_bytes(&server_key)
                    .map_err(|_| ClientError::Unexpected("invalid server key".into()))?;
                Ok((client, MemberId(member), individual_key, server))
            }
            other => Err(refused(other)),
        }
    }
}

/// What the rekey follower reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Followed {
    /// The member is at this epoch.
    Epoch(u32),
    /// A rekey showed a gap: the member must resync.
    NeedsResync {
        /// The member's epoch.
        current: u32,
    },
}

/// A running rekey follower.
pub struct Follower {
    /// Acts on the follower's transport receiver (`stop` ends it).
    pub handle: Handle<Receiver<GroupSeal>>,
    /// The member's epoch as rekeys arrive.
    pub epochs: watch::Receiver<Followed>,
    /// Ends with the member's keys when the follower stops.
    pub task: tokio::task::JoinHandle<GroupKeys>,
}

/// Follows a group's rekeys on its multicast address: assembles `Rekey`
/// objects from the key server, applies them to `keys`, and installs each new
/// epoch in the receiver's seal. After a `NeedsResync`, stop it, resync over
/// the registrar and follow again with the new keys.
pub fn follow_rekeys(
    mc: &MulticastConfig,
    node: u32,
    mut keys: GroupKeys,
    server: VerifyingKey,
) -> Result<Follower, ClientError> {
    let seal = keys.seal().ok_or_else(|| ClientError::Unexpected("no keys to follow with".into()))?;
    let socket = MulticastSocket::open(mc).map_err(|e| ClientError::Multicast(e.to_string()))?;
    let cfg = ReceiverConfig {
        session: keys.keys.group(),
        node,
        seed: u64::from(node),
        // Rekeys from before this member joined are of no use to it.
        accept_backlog: false,
        first_seq: lsim_transport::net::driver::wall_clock_seq(),
        ..ReceiverConfig::default()
    };
    let epoch = keys.keys.epoch().unwrap_or(0);
    let (tx, rx) = watch::channel(Followed::Epoch(epoch));
    let mut driver = Driver::new(Receiver::new(cfg, seal), socket, DriverConfig::default());
    let handle = driver.handle();
    let task = tokio::spawn(async move {
        let mut partial: HashMap<(u32, u32), Vec<u8>> = HashMap::new();
        let _ = driver
            .run(|rx_core: &mut Receiver<GroupSeal>, e| {
                match e {
                    ReceiverEvent::ObjectStarted { sender, object, kind, len } => {
                        if is_key_server_node(sender) && kind == ObjectKind::Rekey && len <= MAX_REKEY {
                            partial.insert((sender, object), Vec::new());
                        }
                    }
                    ReceiverEvent::ObjectData { sender, object, data, .. } => {
                        if let Some(b) = partial.get_mut(&(sender, object)) {
                            b.extend_from_slice(&data);
                        }
                    }
                    ReceiverEvent::ObjectComplete { sender, object } => {
                        if let Some(bytes) = partial.remove(&(sender, object)) {
                            match keys.keys.apply(&bytes, &server) {
                                Ok(applied) => {
                                    if let Some(k) = keys.keys.group_key() {
                                        let _ = rx_core.seal_mut().install(applied.epoch, k);
                                    }
                                    let _ = tx.send(Followed::Epoch(applied.epoch));
                                }
                                Err(RekeyError::Gap { current, .. }) => {
                                    let _ = tx.send(Followed::NeedsResync { current });
                                }
                                Err(_) => {}
                            }
                        }
                    }
                    ReceiverEvent::ObjectLost { sender, object } => {
                        partial.remove(&(sender, object));
                    }
                    ReceiverEvent::EpochAhead { .. } => {
                        let current = keys.keys.epoch().unwrap_or(0);
                        let _ = tx.send(Followed::NeedsResync { current });
                    }
                    ReceiverEvent::ObjectProgress { .. } | ReceiverEvent::SenderRestarted { .. } => {}
                }
                if tx.is_closed() { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
            })
            .await;
        keys
    });
    Ok(Follower { handle, epochs: rx, task })
}
