//! The all-in-one group server for one-command use: the embedded XMPP
//! server with the group's room, the key server, and the key server's
//! presence in the room (which publishes the group's parameters and
//! removes members whose presence is gone). One user list serves both
//! logins of the login flow: the key server checks passwords against the
//! XMPP server's SCRAM credentials.
//!
//! Owns starting and stopping the three together and the key server's own
//! XMPP account (a fresh random password each start). It must not hold
//! protocol logic: each part is its own module.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lsim_keymgmt::server::{GroupConfig, KeyServer, PasswordCheck, ServerConfig as KeyConfig};
use lsim_keymgmt::suite::SuiteId;
use lsim_transport::net::MulticastConfig;

use super::presence::{KeyServerPresence, PresenceConfig, PresenceEvent};
use crate::xmpp::client::{ClientConfig, TlsMode};
use crate::xmpp::jid::Jid;
use crate::xmpp::payload::GroupParams;
use crate::xmpp::server::{Server, ServerConfig as XmppConfig, ServerHandle};
use crate::xmpp::tls::Trust;
use crate::xmpp::users::UserStore;

/// The key server's own XMPP user (not a member).
pub const KEYSERVER_USER: &str = "keyserver";

/// How the group server runs.
#[derive(Debug, Clone)]
pub struct GroupServerConfig {
    /// Where everything persistent lives (users, keys, certificates).
    pub data_dir: PathBuf,
    /// The XMPP domain.
    pub domain: String,
    /// XMPP client port.
    pub xmpp_listen: SocketAddr,
    /// Offer STARTTLS (certificate generated on first start).
    pub tls: bool,
    /// Allow PLAIN without TLS (loopback demos only).
    pub allow_plain_unencrypted: bool,
    /// The key server's registrar (QUIC) address.
    pub keyserver_listen: SocketAddr,
    /// The address members are told to reach the registrar at (default:
    /// the listen address, with 127.0.0.1 for an unspecified IP).
    pub keyserver_advertise: Option<SocketAddr>,
    /// The group's multicast address and port.
    pub group: SocketAddrV4,
    /// Multicast interface (unspecified: the kernel's choice).
    pub interface: Ipv4Addr,
    /// Multicast TTL.
    pub ttl: u32,
    /// The group's cipher suite.
    pub suite: SuiteId,
    /// The room (and key group) name.
    pub room: String,
    /// How long a member may be out of the room before it is removed.
    pub grace: Duration,
}

impl GroupServerConfig {
    /// Defaults: domain `localhost`, XMPP on 127.0.0.1:5222, registrar on
    /// 127.0.0.1:4433, group 239.192.76.1:5000 on loopback, AES-256-GCM,
    /// room `lsim`, 30 s grace.
    pub fn new(data_dir: &Path) -> GroupServerConfig {
        GroupServerConfig {
            data_dir: data_dir.to_path_buf(),
            domain: "localhost".into(),
            xmpp_listen: SocketAddr::from(([127, 0, 0, 1], 5222)),
            tls: false,
            allow_plain_unencrypted: false,
            keyserver_listen: SocketAddr::from(([127, 0, 0, 1], 4433)),
            keyserver_advertise: None,
            group: SocketAddrV4::new(Ipv4Addr::new(239, 192, 76, 1), 5000),
            interface: Ipv4Addr::LOCALHOST,
            ttl: 1,
            suite: SuiteId::Aes256Gcm,
            room: "lsim".into(),
            grace: Duration::from_secs(30),
        }
    }
}

/// Why the group server could not start.
#[derive(Debug, thiserror::Error)]
pub enum GroupServerError {
    /// The XMPP server failed.
    #[error("XMPP server: {0}")]
    Xmpp(#[from] crate::xmpp::server::ServerError),
    /// The user store failed.
    #[error("users: {0}")]
    Users(#[from] crate::xmpp::users::UserError),
    /// The key server failed.
    #[error("key server: {0}")]
    Keys(#[from] lsim_keymgmt::server::ServerError),
    /// The key server did not get into the room.
    #[error("the key server could not join the room: {0}")]
    Presence(String),
    /// No randomness for the key server's password.
    #[error("no system randomness")]
    Random,
}

/// Key-server logins checked against the XMPP users (never the key
/// server's own account).
struct XmppPasswords(UserStore);

impl PasswordCheck for XmppPasswords {
    fn verify(&self, user: &str, password: &str) -> bool {
        user != KEYSERVER_USER && self.0.lookup(user).is_some_and(|c| c.verify_password(password))
    }
}

/// The running group server.
pub struct GroupServer {
    /// The XMPP server.
    pub xmpp: ServerHandle,
    /// The key server.
    pub keys: Arc<KeyServer>,
    /// What members learn from the room.
    pub params: GroupParams,
    /// The room's JID.
    pub room: Jid,
    presence: KeyServerPresence,
}

impl GroupServer {
    /// Starts the XMPP server, the key server and its room presence.
    pub async fn start(cfg: GroupServerConfig) -> Result<GroupServer, GroupServerError> {
        let mut xcfg = XmppConfig::new(&cfg.data_dir);
        xcfg.domain = cfg.domain.clone();
        xcfg.listen = cfg.xmpp_listen;
        xcfg.tls = cfg.tls;
        xcfg.allow_plain_unencrypted = cfg.allow_plain_unencrypted;
        let mut raw = [0u8; 24];
        getrandom::fill(&mut raw).map_err(|_| GroupServerError::Random)?;
        let ks_password: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        UserStore::open(&cfg.data_dir)?.add(KEYSERVER_USER, &ks_password, true)?;
        let xmpp = Server::start(xcfg).await?;

        let mc = MulticastConfig {
            group: cfg.group,
            interface: cfg.interface,
            ttl: cfg.ttl,
            loopback: true,
            recv_buffer: 4 << 20,
            send_buffer: 4 << 20,
        };
        let group = GroupConfig { name: cfg.room.clone(), suite: cfg.suite, multicast: Some(mc), allowed: None };
        let mut kcfg = KeyConfig::new(cfg.data_dir.clone(), vec![group]);
        kcfg.listen = cfg.keyserver_listen;
        kcfg.passwords = Some(Arc::new(XmppPasswords(UserStore::open(&cfg.data_dir)?)));
        let keys = Arc::new(KeyServer::start(kcfg).await?);
        let listen = keys.addr()?;
        let advertise = cfg.keyserver_advertise.unwrap_or_else(|| {
            let ip = if listen.ip().is_unspecified() { Ipv4Addr::LOCALHOST.into() } else { listen.ip() };
            SocketAddr::new(ip, listen.port())
        });
        let params = GroupParams {
            group: SocketAddr::V4(cfg.group),
            keyserver: advertise,
            fingerprint: keys.fingerprint(),
            suite: cfg.suite.name().into(),
            epoch: 0,
        };

        let room = Jid::parse(&format!("{}@conference.{}", cfg.room, cfg.domain))
            .map_err(|e| GroupServerError::Presence(e.to_string()))?;
        let mut client = ClientConfig::new(Jid::bare_of(KEYSERVER_USER, &cfg.domain), &ks_password);
        let local = xmpp.local_addr();
        client.server = Some(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), local.port()).to_string());
        match xmpp.fingerprint() {
            Some(fp) => {
                client.tls = TlsMode::Required;
                client.trust = Trust::Pinned(fp);
            }
            None => client.tls = TlsMode::Disabled,
        }
        let pcfg = PresenceConfig {
            xmpp: client,
            room: room.clone(),
            nick: KEYSERVER_USER.into(),
            group: cfg.room.clone(),
            params: params.clone(),
            grace: cfg.grace,
        };
        let mut presence = KeyServerPresence::start(pcfg, keys.clone());
        match tokio::time::timeout(Duration::from_secs(10), presence.events.recv()).await {
            Ok(Some(PresenceEvent::Published)) => {}
            Ok(other) => return Err(GroupServerError::Presence(format!("{other:?}"))),
            Err(_) => return Err(GroupServerError::Presence("timed out".into())),
        }
        Ok(GroupServer { xmpp, keys, params, room, presence })
    }

    /// What the key server's room presence reports (evictions, outages).
    pub async fn next_presence_event(&mut self) -> Option<PresenceEvent> {
        self.presence.events.recv().await
    }

    /// Stops all three.
    pub async fn stop(self) {
        self.presence.stop();
        self.keys.close();
        self.xmpp.stop().await;
    }
}
