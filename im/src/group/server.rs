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

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lsim_keymgmt::server::{GroupConfig, KeyServer, LoginGuard, PasswordCheck, ServerConfig as KeyConfig};
use lsim_keymgmt::suite::SuiteId;
use lsim_transport::net::{Loopback, MulticastConfig};
use tokio::task::JoinHandle;

use super::admin::enroll::{Contact, Enrollment};
use super::admin::{self, Admin};
use super::archive::{Archive, ArchiveConfig, ArchiveEvent, Limits};
use super::presence::{KeyServerPresence, PresenceConfig, PresenceEvent};
use crate::xmpp::client::{ClientConfig, TlsMode};
use crate::xmpp::jid::Jid;
use crate::xmpp::payload::{GroupParams, History};
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
    /// see [`announced`]).
    pub keyserver_advertise: Option<SocketAddr>,
    /// This host's address on the members' network, announced for
    /// services listening on an unspecified address (default: `interface`).
    pub advertise: Option<IpAddr>,
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
    /// The group's archive on this host and its bounds (`None`: no archive).
    pub archive: Option<Limits>,
    /// The history policy, announced in the room and kept by the archive.
    pub history: History,
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
            advertise: None,
            group: SocketAddrV4::new(Ipv4Addr::new(239, 192, 76, 1), 5000),
            interface: Ipv4Addr::LOCALHOST,
            ttl: 1,
            suite: SuiteId::Aes256Gcm,
            room: "lsim".into(),
            grace: Duration::from_secs(30),
            archive: Some(Limits::default()),
            history: History::Joined,
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
    /// The admin socket could not be opened.
    #[error("admin socket: {0}")]
    Admin(#[from] admin::AdminError),
    /// Members would be told an address they cannot reach.
    #[error(transparent)]
    Unreachable(#[from] Unreachable),
    /// The archive could not start.
    #[error("archive: {0}")]
    Archive(String),
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

/// A line of the group server's log.
#[derive(Debug)]
pub enum ServerEvent {
    /// The key server's room presence.
    Presence(PresenceEvent),
    /// User administration: who, what, which user, how it ended.
    Admin(String),
    /// The archive: what it holds, what its bounds dropped.
    Archive(ArchiveEvent),
}

impl std::fmt::Display for ServerEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerEvent::Presence(p) => p.fmt(f),
            ServerEvent::Admin(a) => f.write_str(a),
            ServerEvent::Archive(a) => a.fmt(f),
        }
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
    /// The group's archive, if it keeps one.
    pub archive: Option<Archive>,
    presence: KeyServerPresence,
    /// The admin socket's task (`admin`), and its path.
    admin: (JoinHandle<()>, PathBuf),
    /// What the admin socket did, a sentence each.
    admin_events: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl GroupServer {
    /// Starts the XMPP server, the key server and its room presence.
    pub async fn start(cfg: GroupServerConfig) -> Result<GroupServer, GroupServerError> {
        // One user list, so one count of failed logins: guesses at the XMPP
        // server and at the registrar are limited together.
        let guard = Arc::new(LoginGuard::new(&cfg.data_dir));
        let (notify, admin_events) = tokio::sync::mpsc::unbounded_channel();
        let enrollment = Enrollment::new(cfg.data_dir.clone(), notify.clone());
        let mut xcfg = XmppConfig::new(&cfg.data_dir);
        xcfg.guard = Some(guard.clone());
        xcfg.enroll = Some(enrollment.clone());
        xcfg.domain = cfg.domain.clone();
        xcfg.listen = cfg.xmpp_listen;
        xcfg.tls = cfg.tls;
        xcfg.allow_plain_unencrypted = cfg.allow_plain_unencrypted;
        let mut raw = [0u8; 24];
        getrandom::fill(&mut raw).map_err(|_| GroupServerError::Random)?;
        let ks_password: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        UserStore::open(&cfg.data_dir)?.add(KEYSERVER_USER, &ks_password, true)?;
        let xmpp = Server::start(xcfg).await?;

        let room = Jid::parse(&format!("{}@conference.{}", cfg.room, cfg.domain))
            .map_err(|e| GroupServerError::Presence(e.to_string()))?;
        let mut client = ClientConfig::new(Jid::bare_of(KEYSERVER_USER, &cfg.domain), &ks_password);
        // Dial the address the server really listens on (loopback reaches a wildcard listener).
        let local = xmpp.local_addr();
        let dial =
            if local.ip().is_unspecified() { SocketAddr::new(Ipv4Addr::LOCALHOST.into(), local.port()) } else { local };
        client.server = Some(dial.to_string());
        match xmpp.fingerprint() {
            Some(fp) => {
                client.tls = TlsMode::Required;
                client.trust = Trust::Pinned(fp);
            }
            None => client.tls = TlsMode::Disabled,
        }
        let service = KeyServiceConfig {
            data_dir: cfg.data_dir.clone(),
            listen: cfg.keyserver_listen,
            advertise: cfg.keyserver_advertise,
            host: cfg.advertise,
            group: cfg.group,
            interface: cfg.interface,
            ttl: cfg.ttl,
            suite: cfg.suite,
            xmpp: client,
            room: room.clone(),
            grace: cfg.grace,
            guard: Some(guard),
            archive: cfg.archive,
            history: cfg.history,
        };
        let passwords = Arc::new(XmppPasswords(UserStore::open(&cfg.data_dir)?));
        let KeyService { keys, params, presence, archive } = KeyService::start(service, passwords).await?;
        // Every rekey carries the revoked names (members refuse what they signed).
        keys.set_revoked(admin::revoked::Revoked::new(&cfg.data_dir).names().unwrap_or_default());
        let group = room.local.clone().unwrap_or_default();
        if let Some(xmpp_pin) = xmpp.fingerprint() {
            // Members reach the XMPP server where they reach the key server,
            // unless it listens on one address of its own.
            let host = if local.ip().is_unspecified() { params.keyserver.ip() } else { local.ip() };
            enrollment.set_contact(Contact {
                domain: cfg.domain.clone(),
                server: SocketAddr::new(host, local.port()).to_string(),
                room: room.to_string(),
                xmpp_pin,
                keyserver_pin: params.fingerprint,
            });
        }
        let admin = Admin::new(&cfg.data_dir, xmpp.sessions(), keys.clone(), &group, notify, enrollment);
        let admin = match admin.serve().await {
            Ok(task) => (task, cfg.data_dir.join(admin::SOCKET_FILE)),
            Err(e) => {
                presence.stop();
                keys.close();
                xmpp.stop().await;
                return Err(GroupServerError::Admin(e));
            }
        };
        Ok(GroupServer { xmpp, keys, params, room, archive, presence, admin, admin_events })
    }

    /// What the key server's room presence reports (evictions, outages).
    pub async fn next_presence_event(&mut self) -> Option<PresenceEvent> {
        self.presence.events.recv().await
    }

    /// What the server's log shows next: the key server's room presence
    /// (evictions, outages) or what user administration did (`lsim user`).
    pub async fn next_event(&mut self) -> Option<ServerEvent> {
        tokio::select! {
            Some(did) = self.admin_events.recv() => Some(ServerEvent::Admin(did)),
            Some(a) = super::archive::next_event(&mut self.archive) => Some(ServerEvent::Archive(a)),
            ev = self.presence.events.recv() => ev.map(ServerEvent::Presence),
        }
    }

    /// Stops all three.
    pub async fn stop(self) {
        self.admin.0.abort();
        let _ = std::fs::remove_file(&self.admin.1);
        self.presence.stop();
        if let Some(a) = &self.archive {
            a.stop();
        }
        self.keys.close();
        self.xmpp.stop().await;
    }
}

/// The key server for a group whose XMPP server runs elsewhere (Prosody,
/// ejabberd): its registrar, its rekeys on the group, and its presence in
/// the room.
#[derive(Debug, Clone)]
pub struct KeyServiceConfig {
    /// Where its store lives.
    pub data_dir: PathBuf,
    /// Registrar (QUIC) address.
    pub listen: SocketAddr,
    /// Address members are told (default: see [`announced`]).
    pub advertise: Option<SocketAddr>,
    /// This host's address on the members' network, for a registrar
    /// listening on an unspecified address (default: `interface`).
    pub host: Option<IpAddr>,
    /// The group's multicast address and port.
    pub group: SocketAddrV4,
    /// Multicast interface.
    pub interface: Ipv4Addr,
    /// Multicast TTL.
    pub ttl: u32,
    /// The group's cipher suite.
    pub suite: SuiteId,
    /// Its own XMPP login.
    pub xmpp: ClientConfig,
    /// The room that is the group (its local part names the key group).
    pub room: Jid,
    /// How long a member may be out of the room before it is removed.
    pub grace: Duration,
    /// The failed-login accounting, when shared with another service that
    /// checks the same passwords; `None`: the key server's own.
    pub guard: Option<Arc<LoginGuard>>,
    /// The group's archive (in `data_dir`) and its bounds; `None`: none.
    pub archive: Option<Limits>,
    /// The history policy: announced in the room, kept by the archive.
    pub history: History,
}

/// A running key service.
pub struct KeyService {
    /// The key server.
    pub keys: Arc<KeyServer>,
    /// What it publishes in the room.
    pub params: GroupParams,
    /// Its room presence.
    pub presence: KeyServerPresence,
    /// The group's archive, if it keeps one.
    pub archive: Option<Archive>,
}

impl KeyService {
    /// Starts the key server (checking member passwords with `passwords`)
    /// and puts it in the room.
    pub async fn start(
        cfg: KeyServiceConfig,
        passwords: Arc<dyn PasswordCheck>,
    ) -> Result<KeyService, GroupServerError> {
        let name =
            cfg.room.local.clone().ok_or_else(|| GroupServerError::Presence("the room JID needs a name".into()))?;
        let archive_mc = mc_of(&cfg);
        let mut mc = mc_of(&cfg);
        // The archive on this host hears our rekeys; members here too.
        mc.loopback = Loopback::WhenShared { own: 1 };
        let group = GroupConfig { name: name.clone(), suite: cfg.suite, multicast: Some(mc), allowed: None };
        let mut kcfg = KeyConfig::new(cfg.data_dir.clone(), vec![group]);
        kcfg.listen = cfg.listen;
        kcfg.passwords = Some(passwords);
        kcfg.guard = cfg.guard;
        let keys = Arc::new(KeyServer::start(kcfg).await?);
        let archive = match cfg.archive {
            Some(limits) => match start_archive(&keys, &name, &cfg.data_dir, archive_mc, limits, cfg.history).await {
                Ok(a) => Some(a),
                Err(e) => {
                    keys.close();
                    return Err(e);
                }
            },
            None => None,
        };
        let listen = keys.addr()?;
        let advertise = match announced(listen, cfg.advertise, cfg.host, cfg.interface) {
            Ok(a) => a,
            Err(why) => {
                keys.close();
                return Err(GroupServerError::Unreachable(why));
            }
        };
        let params = GroupParams {
            group: SocketAddr::V4(cfg.group),
            keyserver: advertise,
            fingerprint: keys.fingerprint(),
            suite: cfg.suite.name().into(),
            epoch: 0,
            history: cfg.history,
        };
        let nick = cfg.xmpp.jid.local.clone().unwrap_or_else(|| KEYSERVER_USER.into());
        let pcfg = PresenceConfig {
            xmpp: cfg.xmpp,
            room: cfg.room,
            nick,
            group: name,
            params: params.clone(),
            grace: cfg.grace,
        };
        let mut presence = KeyServerPresence::start(pcfg, keys.clone());
        match tokio::time::timeout(Duration::from_secs(20), presence.events.recv()).await {
            Ok(Some(PresenceEvent::Published)) => {}
            Ok(Some(other)) => return Err(GroupServerError::Presence(other.to_string())),
            Ok(None) => return Err(GroupServerError::Presence("its XMPP client stopped".into())),
            Err(_) => return Err(GroupServerError::Presence("no answer from the room within 20 s".into())),
        }
        Ok(KeyService { keys, params, presence, archive })
    }
}

/// The group's multicast as the key service's host joins it. The archive's
/// socket and the rekeys' are two of this process's own: its repair loops
/// back only for members on this host.
fn mc_of(cfg: &KeyServiceConfig) -> MulticastConfig {
    MulticastConfig {
        group: cfg.group,
        interface: cfg.interface,
        ttl: cfg.ttl,
        loopback: Loopback::WhenShared { own: 2 },
        recv_buffer: 4 << 20,
        send_buffer: 4 << 20,
    }
}

/// Starts the group's archive at `data_dir/archive.redb`, following the
/// key server's epochs (with the past ones it keeps: repair of what the
/// archive stored goes under the epoch it was sent in) and its members
/// (whom the archive serves what, under the history policy `joined`).
async fn start_archive(
    keys: &Arc<KeyServer>,
    group: &str,
    data_dir: &Path,
    multicast: MulticastConfig,
    limits: Limits,
    history: History,
) -> Result<Archive, GroupServerError> {
    let no_group = || GroupServerError::Archive(format!("no key group {group}"));
    let (suite, session, epochs) = keys.follow(group).await.ok_or_else(no_group)?;
    let (_, _, mut changes) = keys.follow(group).await.ok_or_else(no_group)?;
    let past = keys.past_epochs(group).await?;
    let at_rest = keys.secret("archive-key")?;
    let shared = match history {
        History::Joined => None,
        History::Shared(n) => Some(n),
    };
    let cfg = ArchiveConfig { path: data_dir.join(ARCHIVE_FILE), limits, multicast, session, suite, shared };
    let mut archive =
        Archive::start(cfg, &at_rest, epochs, &past).map_err(|e| GroupServerError::Archive(e.to_string()))?;
    // Every epoch is a join or a leave: the table follows.
    archive.set_members(keys.joined_epochs(group).await);
    let (keys, group, members) = (keys.clone(), group.to_string(), archive.members());
    archive.follow(tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            members(keys.joined_epochs(&group).await);
        }
    }));
    Ok(archive)
}

/// The archive's file in the data directory.
pub const ARCHIVE_FILE: &str = "archive.redb";

/// The address members would be told, which they cannot reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the key server would be announced to members as {0}, which members on other hosts cannot reach: \
     give --iface this host's address on the members' network, or --advertise ADDR \
     (--keyserver-advertise ADDR:PORT for the key server alone)"
)]
pub struct Unreachable(pub SocketAddr);

/// The registrar address members are told: `explicit` if given; else the
/// listen address, with `host` (or else the multicast `interface`) in place
/// of an unspecified IP. Refused, with the flag to change, when members on
/// other hosts could not reach it: a loopback or unspecified address while
/// the group's interface is a real network's.
pub fn announced(
    listen: SocketAddr,
    explicit: Option<SocketAddr>,
    host: Option<IpAddr>,
    interface: Ipv4Addr,
) -> Result<SocketAddr, Unreachable> {
    let addr = explicit.unwrap_or_else(|| {
        let ip = match (listen.ip().is_unspecified(), host) {
            (false, _) => listen.ip(),
            (true, Some(h)) => h,
            (true, None) if interface.is_unspecified() => listen.ip(),
            (true, None) => interface.into(),
        };
        SocketAddr::new(ip, listen.port())
    });
    let local_only = addr.ip().is_loopback() && interface.is_loopback();
    if addr.ip().is_unspecified() || (addr.ip().is_loopback() && !local_only) {
        return Err(Unreachable(addr));
    }
    Ok(addr)
}

/// Member passwords checked by logging into the XMPP server with them:
/// the XMPP server's accounts are the group's users, and the key server
/// keeps no passwords at all.
pub struct XmppLogin {
    template: ClientConfig,
}

impl XmppLogin {
    /// Logins go where `template` says (server, TLS, trust); its JID's
    /// domain is the users' domain.
    pub fn new(template: ClientConfig) -> XmppLogin {
        XmppLogin { template }
    }
}

impl PasswordCheck for XmppLogin {
    fn verify(&self, user: &str, password: &str) -> bool {
        let mut cfg = self.template.clone();
        cfg.jid = Jid::bare_of(user, &self.template.jid.domain);
        cfg.password = zeroize::Zeroizing::new(password.to_string());
        cfg.resource = Some("lsim-keyserver-check".into());
        // Runs on a blocking thread (see PasswordCheck): block on the login.
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => rt.block_on(async {
                match crate::xmpp::client::connect(&cfg).await {
                    Ok(session) => {
                        session.close().await;
                        true
                    }
                    Err(_) => false,
                }
            }),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn members_are_told_an_address_they_can_reach() {
        let any: SocketAddr = "0.0.0.0:4433".parse().unwrap();
        let lo = Ipv4Addr::LOCALHOST;
        let radio = Ipv4Addr::new(10, 1, 0, 1);
        // The README's command: listen everywhere, --iface on the radio network.
        assert_eq!(announced(any, None, None, radio), Ok("10.1.0.1:4433".parse().unwrap()));
        // One host: loopback everywhere is fine.
        assert_eq!(announced("127.0.0.1:4433".parse().unwrap(), None, None, lo), Ok("127.0.0.1:4433".parse().unwrap()));
        assert_eq!(announced(any, None, None, lo), Ok("127.0.0.1:4433".parse().unwrap()));
        // A chosen listen address or advertised host wins.
        assert_eq!(announced("10.1.0.9:7".parse().unwrap(), None, None, radio), Ok("10.1.0.9:7".parse().unwrap()));
        assert_eq!(announced(any, None, Some([10, 9, 9, 9].into()), radio), Ok("10.9.9.9:4433".parse().unwrap()));
        assert_eq!(
            announced(any, Some("10.2.2.2:99".parse().unwrap()), None, radio),
            Ok("10.2.2.2:99".parse().unwrap())
        );
        // Loopback announced to a real network, or nothing to announce: refused, naming the flags.
        let err = announced("127.0.0.1:4433".parse().unwrap(), None, None, radio).unwrap_err().to_string();
        assert!(err.contains("127.0.0.1:4433") && err.contains("--advertise"), "{err}");
        let err = announced(any, None, None, Ipv4Addr::UNSPECIFIED).unwrap_err().to_string();
        assert!(err.contains("0.0.0.0:4433") && err.contains("--iface"), "{err}");
    }

    #[test]
    fn key_server_logins_use_the_xmpp_users_but_never_its_own_account() {
        let dir = std::env::temp_dir().join(format!("lsim-xmpp-passwords-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = UserStore::open(&dir).unwrap();
        store.add("alice", "alice-pw", false).unwrap();
        store.add(KEYSERVER_USER, "ks-pw", false).unwrap();
        let check = XmppPasswords(UserStore::open(&dir).unwrap());
        assert!(check.verify("alice", "alice-pw"));
        assert!(!check.verify("alice", "ks-pw"));
        assert!(!check.verify("mallory", "alice-pw"));
        assert!(!check.verify(KEYSERVER_USER, "ks-pw"), "the key server's own account is not a member");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
