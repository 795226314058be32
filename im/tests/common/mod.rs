//! Test servers the client scenarios run against: Prosody and ejabberd
//! (Debian's packages, one harness in `external`: private directory,
//! loopback port, plaintext or STARTTLS) and our embedded server. Each
//! starts what it needs and stops it on drop.
//!
//! Third-party programs the tests drive live in `process` (any program,
//! bounded, its output read) and `tmux` (a terminal client under a private
//! tmux server).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod external;
pub mod process;
pub mod tmux;

#[allow(unused_imports)] // not every test binary runs both
pub use external::{Ejabberd, Prosody};

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Whether an external server is required (CI sets `LSIM_REQUIRE_SERVERS=1`
/// after installing them); otherwise a missing one skips the test.
pub fn required() -> bool {
    std::env::var("LSIM_REQUIRE_SERVERS").is_ok_and(|v| v == "1")
}

pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether python3 can import `module` (slixmpp, from PyPI).
pub fn have_python_module(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Our embedded server on a fixed loopback port (so a restart keeps it),
/// with its data in a private directory.
pub struct Embedded {
    pub dir: PathBuf,
    pub port: u16,
    pub fingerprint: Option<[u8; 32]>,
    config: lsim_im::xmpp::server::ServerConfig,
    handle: Option<lsim_im::xmpp::server::ServerHandle>,
}

impl Embedded {
    /// Starts it (offering STARTTLS when `tls`) with `users`.
    pub async fn start(name: &str, tls: bool, users: &[(&str, &str)]) -> Embedded {
        let dir = std::env::temp_dir().join(format!("lsim-embedded-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let port = free_port();
        let mut config = lsim_im::xmpp::server::ServerConfig::new(&dir);
        config.listen = SocketAddr::from(([127, 0, 0, 1], port));
        config.tls = tls;
        config.allow_plain_unencrypted = !tls;
        config.stanza_rate = 100_000;
        config.stanza_burst = 100_000;
        config.max_connections = 4096;
        let store = lsim_im::xmpp::users::UserStore::open(&dir).unwrap();
        for (user, password) in users {
            store.add(user, password, true).unwrap();
        }
        let mut e = Embedded { dir, port, fingerprint: None, config, handle: None };
        e.resume().await;
        e
    }

    /// Starts it again after [`Embedded::stop`].
    pub async fn resume(&mut self) {
        if self.handle.is_none() {
            let h = lsim_im::xmpp::server::Server::start(self.config.clone()).await.unwrap();
            self.fingerprint = h.fingerprint();
            self.handle = Some(h);
        }
    }

    /// Stops it (sessions get `system-shutdown`).
    pub async fn stop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.stop().await;
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Embedded {
    /// Stops it, changes its configuration, and starts it again on the
    /// same port with the same data (e.g. `require_tls`).
    pub async fn reconfigure(&mut self, change: impl FnOnce(&mut lsim_im::xmpp::server::ServerConfig)) {
        self.stop().await;
        change(&mut self.config);
        self.resume().await;
    }
}

/// A plain TCP forwarder from a loopback port of its own to `to`; returns
/// its port. A client sent through it can be cut off alone ([`Cut`]).
pub async fn forwarder(to: String) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let to = to.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&to).await {
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    port
}

/// Every packet to or from loopback port `port` dropped by nftables while
/// it lives (as root), as a radio out of range would: TCP sees silence,
/// not a reset.
pub struct Cut {
    table: String,
}

impl Cut {
    /// `None` if nftables refused (not root, no nft).
    pub fn start(port: u16) -> Option<Cut> {
        use std::io::Write;
        let table = format!("lsim_cut_{port}");
        let rules = format!(
            "table ip {table} {{\n\
             chain in {{ type filter hook input priority -400; policy accept; tcp dport {port} drop; tcp sport {port} drop; }}\n\
             chain out {{ type filter hook output priority -400; policy accept; tcp dport {port} drop; tcp sport {port} drop; }}\n}}\n"
        );
        let mut nft =
            std::process::Command::new("nft").args(["-f", "-"]).stdin(std::process::Stdio::piped()).spawn().ok()?;
        nft.stdin.take()?.write_all(rules.as_bytes()).ok()?;
        nft.wait().ok()?.success().then_some(Cut { table })
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        let _ = std::process::Command::new("nft").args(["delete", "table", "ip", &self.table]).status();
    }
}
