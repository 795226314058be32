//! How a key server is set up: the groups it keys and where it listens,
//! keeps its state and checks passwords.
//!
//! Owns `GroupConfig` and `ServerConfig` with their defaults, and
//! `PasswordCheck` (how a server that stores no passwords checks them). It
//! holds no state and must not act: `KeyServer::start` reads it.

use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lsim_transport::net::MulticastConfig;

use super::LoginGuard;
use crate::suite::SuiteId;
use crate::users::Cost;

/// One group the server keys.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// Name (the XMPP room's).
    pub name: String,
    /// Cipher suite of the group's traffic.
    pub suite: SuiteId,
    /// Where rekeys are multicast (`None`: members learn epochs by resync only).
    pub multicast: Option<MulticastConfig>,
    /// Users allowed to join (`None`: every registered user).
    pub allowed: Option<Vec<String>>,
}

impl GroupConfig {
    /// A group on loopback multicast, open to every user (tests, the demo).
    pub fn loopback(name: &str, suite: SuiteId, group: SocketAddrV4) -> GroupConfig {
        GroupConfig { name: name.into(), suite, multicast: Some(MulticastConfig::loopback(group)), allowed: None }
    }
}

/// Checks passwords somewhere other than the key server's own store (the
/// all-in-one server checks them against its XMPP users, so one user list
/// serves both logins of the login flow).
pub trait PasswordCheck: Send + Sync + 'static {
    /// Whether `password` is `user`'s. May be slow (key derivation): it
    /// runs off the async threads.
    fn verify(&self, user: &str, password: &str) -> bool;
}

/// How the server runs.
#[derive(Clone)]
pub struct ServerConfig {
    /// Where the store (`keys.redb`) lives.
    pub data_dir: PathBuf,
    /// The registrar's UDP address (QUIC).
    pub listen: SocketAddr,
    /// The groups.
    pub groups: Vec<GroupConfig>,
    /// Requests arriving within this window after the first are committed together.
    pub batch_window: Duration,
    /// Password hashing cost for new users.
    pub cost: Cost,
    /// Where passwords are checked; `None`: the server's own users
    /// (added with [`KeyServer::add_user`]).
    pub passwords: Option<Arc<dyn PasswordCheck>>,
    /// The failed-login accounting, when shared with another service that
    /// checks the same passwords; `None`: a guard of its own logging to
    /// `security.log` in `data_dir`.
    pub guard: Option<Arc<LoginGuard>>,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("groups", &self.groups)
            .field("batch_window", &self.batch_window)
            .field("external_passwords", &self.passwords.is_some())
            .field("shared_guard", &self.guard.is_some())
            .finish()
    }
}

impl ServerConfig {
    /// Defaults around a data directory: registrar on 127.0.0.1:0 (any port), 2 ms batches.
    pub fn new(data_dir: PathBuf, groups: Vec<GroupConfig>) -> ServerConfig {
        ServerConfig {
            data_dir,
            listen: ([127, 0, 0, 1], 0).into(),
            groups,
            batch_window: Duration::from_millis(2),
            cost: Cost::RECOMMENDED,
            passwords: None,
            guard: None,
        }
    }
}
