//! Third-party XMPP servers the client scenarios run against: Prosody and
//! ejabberd from Debian's packages, each a child process with its own
//! configuration and data in a private directory, on a loopback port,
//! plaintext or with STARTTLS required.
//!
//! Owns one harness for both ([`External`]: start, stop, restart on the same
//! port with the same data, removal on drop); what differs, the
//! configuration and the command line, is a [`Daemon`]. Must not touch a
//! server it did not start: a Prosody or ejabberd already running on the
//! machine is left alone.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lsim_im::xmpp::tls::ServerIdentity;

use super::{free_port, have, required};

/// Prosody on a loopback port.
pub type Prosody = External<ProsodyDaemon>;

/// ejabberd on a loopback port, started directly with `erl` and its own
/// config, Mnesia directory and no epmd.
pub type Ejabberd = External<EjabberdDaemon>;

/// What one kind of server needs to be set up and run.
pub trait Daemon: Sized {
    /// Its name in messages and in its directory's name.
    const NAME: &'static str;
    /// How long it gets to exit after SIGTERM before SIGKILL.
    const GRACE: Duration;
    /// Whether it is installed.
    fn installed() -> bool;
    /// Writes its configuration (and a certificate when `tls`, whose
    /// fingerprint is returned) into the empty `dir`, for `users`.
    fn configure(dir: &Path, port: u16, tls: bool, users: &[(&str, &str)]) -> (Self, Option<[u8; 32]>);
    /// Runs it; returns once it serves on `port`.
    fn launch(&self, dir: &Path, port: u16) -> Child;
}

/// A server of kind `D` in its own directory on a loopback port.
pub struct External<D: Daemon> {
    pub dir: PathBuf,
    pub port: u16,
    pub tls: bool,
    pub fingerprint: Option<[u8; 32]>,
    daemon: D,
    child: Option<Child>,
}

impl<D: Daemon> External<D> {
    /// Starts it (STARTTLS required when `tls`) with `users`, or `None` when
    /// it is not installed and not required.
    pub fn start(name: &str, tls: bool, users: &[(&str, &str)]) -> Option<External<D>> {
        if !D::installed() {
            assert!(!required(), "{} is required (LSIM_REQUIRE_SERVERS=1) but not installed", D::NAME);
            eprintln!("{} not installed: skipping", D::NAME);
            return None;
        }
        let dir = std::env::temp_dir().join(format!("lsim-{}-{name}-{}", D::NAME, std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let (daemon, fingerprint) = D::configure(&dir, port, tls, users);
        let mut server = External { dir, port, tls, fingerprint, daemon, child: None };
        server.run();
        Some(server)
    }

    fn run(&mut self) {
        self.child = Some(self.daemon.launch(&self.dir, self.port));
    }

    /// Stops it (SIGTERM, then SIGKILL).
    pub fn stop(&mut self) {
        terminate(self.child.take(), D::GRACE);
    }

    /// Stops and starts again on the same port with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// Starts it again after [`External::stop`].
    pub fn resume(&mut self) {
        if self.child.is_none() {
            self.run();
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl<D: Daemon> Drop for External<D> {
    fn drop(&mut self) {
        self.stop();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Waits for `child` to accept connections on `addr`; panics with `log` if
/// it exits or does not within 20 s.
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

/// Prosody: its configuration file, with its users registered once.
pub struct ProsodyDaemon {
    config: PathBuf,
}

impl Daemon for ProsodyDaemon {
    const NAME: &'static str = "prosody";
    const GRACE: Duration = Duration::from_secs(5);

    fn installed() -> bool {
        have("prosody")
    }

    fn configure(dir: &Path, port: u16, tls: bool, users: &[(&str, &str)]) -> (ProsodyDaemon, Option<[u8; 32]>) {
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let mut fingerprint = None;
        let tls_lines = if tls {
            // A certificate generated now, with the host and the MUC host.
            let id = ServerIdentity::load_or_create(dir, &["localhost".into(), "conference.localhost".into()]).unwrap();
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
        (ProsodyDaemon { config: config_path }, fingerprint)
    }

    fn launch(&self, dir: &Path, port: u16) -> Child {
        let log = dir.join("stdout.log");
        let mut child = Command::new("prosody")
            .arg("--config")
            .arg(&self.config)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        wait_port(SocketAddr::from(([127, 0, 0, 1], port)), &mut child, &dir.join("prosody.log"));
        child
    }
}

/// ejabberd: its users, registered again at every start (by `-eval`).
pub struct EjabberdDaemon {
    users: Vec<(String, String)>,
}

const EJABBERD_LIBS: &str = "/usr/lib/x86_64-linux-gnu";

impl Daemon for EjabberdDaemon {
    const NAME: &'static str = "ejabberd";
    const GRACE: Duration = Duration::from_secs(10);

    fn installed() -> bool {
        Path::new("/usr/sbin/ejabberdctl").exists() && have("erl")
    }

    fn configure(dir: &Path, port: u16, tls: bool, users: &[(&str, &str)]) -> (EjabberdDaemon, Option<[u8; 32]>) {
        let mut fingerprint = None;
        let (certfiles, tls_opts) = if tls {
            // ejabberd 23.01's pkix sets an Erlang timer until expiry, which
            // must fit in 2^32 ms (49 days): a short-lived certificate.
            let names = ["localhost".into(), "conference.localhost".into()];
            let id = ServerIdentity::create(dir, &names, Duration::from_secs(30 * 86_400)).unwrap();
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
        (EjabberdDaemon { users }, fingerprint)
    }

    fn launch(&self, dir: &Path, port: u16) -> Child {
        let register: Vec<String> = self
            .users
            .iter()
            .map(|(u, p)| format!("ejabberd_auth:try_register(<<\"{u}\">>, <<\"localhost\">>, <<\"{p}\">>)"))
            .collect();
        let eval = format!("_ = [{}], io:format(\"lsim-users-ready~n\").", register.join(", "));
        let log = dir.join("stdout.log");
        let mut child = Command::new("erl")
            .args(["-noinput", "-start_epmd", "false", "-mnesia", "dir"])
            .arg(format!("\"{}/db\"", dir.display()))
            .args(["-ejabberd", "log_path"])
            .arg(format!("\"{}/ejabberd.log\"", dir.display()))
            .args(["-s", "ejabberd", "-eval", &eval])
            .env("ERL_LIBS", EJABBERD_LIBS)
            .env("EJABBERD_CONFIG_PATH", dir.join("ejabberd.yml"))
            .env("HOME", dir)
            .current_dir(dir)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_port(SocketAddr::from(([127, 0, 0, 1], port)), &mut child, &log);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(&log).unwrap_or_default().contains("lsim-users-ready") {
            assert!(Instant::now() < deadline, "ejabberd did not register the users");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }
}
