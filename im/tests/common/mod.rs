//! Test servers the client scenarios run against: Prosody started from
//! Debian's package in a private directory (plaintext or STARTTLS), and
//! (in other test files) the embedded server. Each starts what it needs
//! and stops it on drop.
//!
//! Third-party programs the tests drive live in `process` (any program,
//! bounded, its output read) and `tmux` (a terminal client under a private
//! tmux server).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod process;
pub mod tmux;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lsim_im::xmpp::tls::ServerIdentity;

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

fn wait_port(addr: SocketAddr, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(addr).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("server exited with {status}: {}", std::fs::read_to_string(log).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("server did not open {addr}: {}", std::fs::read_to_string(log).unwrap_or_default());
}

/// SIGTERM, up to `grace` to exit, then SIGKILL.
fn terminate(child: Option<Child>, grace: Duration) {
    let Some(mut child) = child else { return };
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A Prosody instance in its own directory on a loopback port.
pub struct Prosody {
    pub dir: PathBuf,
    pub port: u16,
    pub tls: bool,
    pub fingerprint: Option<[u8; 32]>,
    config: PathBuf,
    child: Option<Child>,
}

impl Prosody {
    /// Starts Prosody (STARTTLS required when `tls`), or `None` when it is
    /// not installed and not required.
    pub fn start(name: &str, tls: bool, users: &[(&str, &str)]) -> Option<Prosody> {
        if !have("prosody") {
            assert!(!required(), "prosody is required (LSIM_REQUIRE_SERVERS=1) but not installed");
            eprintln!("prosody not installed: skipping");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("lsim-prosody-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let port = free_port();
        let mut fingerprint = None;
        let tls_lines = if tls {
            // A certificate generated now, with the host and the MUC host.
            let id =
                ServerIdentity::load_or_create(&dir, &["localhost".into(), "conference.localhost".into()]).unwrap();
            fingerprint = Some(id.fingerprint());
            format!(
                "c2s_require_encryption = true\nssl = {{ certificate = \"{0}/xmpp-cert.pem\"; key = \"{0}/xmpp-key.pem\"; }}\n",
                dir.display()
            )
        } else {
            "c2s_require_encryption = false\nallow_unencrypted_plain_auth = true\n".to_string()
        };
        let tls_module = if tls { "\"tls\";" } else { "" };
        let config = format!(
            r#"run_as_root = true
daemonize = false
pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
certificates = "{d}"
log = {{ {{ levels = {{ min = "info" }}, to = "file", filename = "{d}/prosody.log" }} }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
s2s_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
component_ports = {{ }}
network_settings = {{ nagle = false }}
modules_enabled = {{ "roster"; "saslauth"; "disco"; "ping"; "posix"; "smacks"; {tls_module} }}
modules_disabled = {{ "s2s"; "offline" }}
authentication = "internal_plain"
{tls_lines}
VirtualHost "localhost"
Component "conference.localhost" "muc"
    muc_room_locking = false
"#,
            d = dir.display()
        );
        let config_path = dir.join("prosody.cfg.lua");
        std::fs::write(&config_path, config).unwrap();
        if users.len() > 10 {
            // Benchmarks with hundreds of users write Prosody's
            // internal_plain account files directly (what prosodyctl
            // register writes, 40 ms a user saved).
            let accounts = dir.join("data/localhost/accounts");
            std::fs::create_dir_all(&accounts).unwrap();
            for (user, password) in users {
                let text = format!("return {{\n\t[\"password\"] = \"{password}\";\n}};\n");
                std::fs::write(accounts.join(format!("{user}.dat")), text).unwrap();
            }
        }
        for (user, password) in users.iter().filter(|_| users.len() <= 10) {
            let status = Command::new("prosodyctl")
                .arg("--config")
                .arg(&config_path)
                .args(["register", user, "localhost", password])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "prosodyctl register {user}");
        }
        let mut p = Prosody { dir, port, tls, fingerprint, config: config_path, child: None };
        p.run();
        Some(p)
    }

    fn run(&mut self) {
        let log = self.dir.join("stdout.log");
        let mut child = Command::new("prosody")
            .arg("--config")
            .arg(&self.config)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        wait_port(SocketAddr::from(([127, 0, 0, 1], self.port)), &mut child, &self.dir.join("prosody.log"));
        self.child = Some(child);
    }

    /// Stops it (SIGTERM, then SIGKILL).
    pub fn stop(&mut self) {
        terminate(self.child.take(), Duration::from_secs(5));
    }

    /// Stops and starts again on the same port with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// Starts it again after [`Prosody::stop`].
    pub fn resume(&mut self) {
        if self.child.is_none() {
            self.run();
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        self.stop();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// An ejabberd instance (Debian's package) started directly with `erl`
/// and its own config, Mnesia directory and no epmd.
pub struct Ejabberd {
    pub dir: PathBuf,
    pub port: u16,
    pub fingerprint: Option<[u8; 32]>,
    users: Vec<(String, String)>,
    child: Option<Child>,
}

const EJABBERD_LIBS: &str = "/usr/lib/x86_64-linux-gnu";

impl Ejabberd {
    /// Starts ejabberd (STARTTLS required when `tls`), or `None` when it
    /// is not installed and not required.
    pub fn start(name: &str, tls: bool, users: &[(&str, &str)]) -> Option<Ejabberd> {
        if !Path::new("/usr/sbin/ejabberdctl").exists() || !have("erl") {
            assert!(!required(), "ejabberd is required (LSIM_REQUIRE_SERVERS=1) but not installed");
            eprintln!("ejabberd not installed: skipping");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("lsim-ejabberd-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let mut fingerprint = None;
        let (certfiles, tls_opts) = if tls {
            // ejabberd 23.01's pkix sets an Erlang timer until expiry, which
            // must fit in 2^32 ms (49 days): a short-lived certificate.
            let names = ["localhost".into(), "conference.localhost".into()];
            let id = ServerIdentity::create(&dir, &names, Duration::from_secs(30 * 86_400)).unwrap();
            fingerprint = Some(id.fingerprint());
            (
                format!("certfiles:\n  - \"{0}/xmpp-cert.pem\"\n  - \"{0}/xmpp-key.pem\"\n", dir.display()),
                "    starttls_required: true\n",
            )
        } else {
            ("certfiles: []\n".to_string(), "")
        };
        let config = format!(
            r#"hosts: ["localhost"]
loglevel: info
log_rotate_count: 0
{certfiles}listen:
  -
    port: {port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
{tls_opts}auth_method: internal
auth_password_format: plain
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
modules:
  mod_disco: {{}}
  mod_ping: {{}}
  mod_roster: {{}}
  mod_stream_mgmt: {{}}
  mod_muc:
    host: "conference.localhost"
    access_create: all
"#
        );
        std::fs::write(dir.join("ejabberd.yml"), config).unwrap();
        let users = users.iter().map(|(u, p)| (u.to_string(), p.to_string())).collect();
        let mut e = Ejabberd { dir, port, fingerprint, users, child: None };
        e.run();
        Some(e)
    }

    fn run(&mut self) {
        let register: Vec<String> = self
            .users
            .iter()
            .map(|(u, p)| format!("ejabberd_auth:try_register(<<\"{u}\">>, <<\"localhost\">>, <<\"{p}\">>)"))
            .collect();
        let eval = format!("_ = [{}], io:format(\"lsim-users-ready~n\").", register.join(", "));
        let log = self.dir.join("stdout.log");
        let mut child = Command::new("erl")
            .args(["-noinput", "-start_epmd", "false", "-mnesia", "dir"])
            .arg(format!("\"{}/db\"", self.dir.display()))
            .args(["-ejabberd", "log_path"])
            .arg(format!("\"{}/ejabberd.log\"", self.dir.display()))
            .args(["-s", "ejabberd", "-eval", &eval])
            .env("ERL_LIBS", EJABBERD_LIBS)
            .env("EJABBERD_CONFIG_PATH", self.dir.join("ejabberd.yml"))
            .env("HOME", &self.dir)
            .current_dir(&self.dir)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_port(SocketAddr::from(([127, 0, 0, 1], self.port)), &mut child, &log);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(&log).unwrap_or_default().contains("lsim-users-ready") {
            assert!(Instant::now() < deadline, "ejabberd did not register the users");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// Stops it (SIGTERM, then SIGKILL).
    pub fn stop(&mut self) {
        terminate(self.child.take(), Duration::from_secs(10));
    }

    /// Stops and starts again on the same port with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// Starts it again after [`Ejabberd::stop`].
    pub fn resume(&mut self) {
        if self.child.is_none() {
            self.run();
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Ejabberd {
    fn drop(&mut self) {
        self.stop();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
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
