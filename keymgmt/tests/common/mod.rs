//! What the key server tests share: a cheap password cost, fresh data
//! directories, per-test multicast groups, and the key server as a separate
//! process that a test can kill -9 (and that is killed and reaped when the
//! test ends, passing or not).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test harness; each test file uses part of it

use std::io::BufRead;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;

use lsim_keymgmt::server::{GroupConfig, KeyServer, ServerConfig};
use lsim_keymgmt::suite::SuiteId;
use lsim_keymgmt::users::Cost;

/// Argon2 at its cheapest: logins in tests take microseconds.
pub const CHEAP: Cost = Cost { memory_kib: 256, passes: 1, lanes: 1 };

/// A new empty directory for test `name` of file `file`, removed with
/// everything in it when the test drops it, passing or not.
pub fn data_dir(file: &str, name: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("lsim-{file}-{name}-")).tempdir().unwrap()
}

/// A multicast group of its own for test number `test` of a test file whose
/// groups start with `239.<prefix>` (distinct per file, so that test
/// binaries running at once do not hear each other).
pub fn group(prefix: u8, test: u8) -> SocketAddrV4 {
    let pid = std::process::id();
    SocketAddrV4::new(
        Ipv4Addr::new(239, prefix, (pid % 250) as u8, test),
        30_000 + (pid % 20_000) as u16 + u16::from(prefix) * 16 + u16::from(test),
    )
}

/// The body of the key server child process: started by
/// [`KeyServerProcess::start`] as `<this test binary> --ignored --exact
/// keyserver_process`. Serves group "lsim" (Blowfish suite) on the multicast
/// group in `LSIM_KEYSERVER_GROUP`, adds the users in `LSIM_USERS` (password
/// "pw"), prints `READY <addr> <fingerprint>` and runs until killed.
pub fn keyserver_process() {
    let Ok(dir) = std::env::var("LSIM_KEYSERVER_DIR") else { return };
    let mc: SocketAddrV4 = std::env::var("LSIM_KEYSERVER_GROUP").unwrap().parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let groups = vec![GroupConfig::loopback("lsim", SuiteId::BlowfishCbcHmacSha256, mc)];
        let server = KeyServer::start(ServerConfig::new(dir.into(), groups)).await.unwrap();
        for user in std::env::var("LSIM_USERS").unwrap_or_default().split(',').filter(|u| !u.is_empty()) {
            server.add_user(user, "pw", CHEAP).unwrap();
        }
        let fp: String = server.fingerprint().iter().map(|b| format!("{b:02x}")).collect();
        println!("READY {} {fp}", server.addr().unwrap());
        std::future::pending::<()>().await;
    });
}

/// The key server running as a child process; killed (SIGKILL) and reaped
/// when dropped.
pub struct KeyServerProcess {
    child: std::process::Child,
    /// The registrar's address.
    pub addr: SocketAddr,
    /// Its certificate's fingerprint.
    pub pin: [u8; 32],
}

impl KeyServerProcess {
    /// Starts this test binary's `keyserver_process` on `dir`, serving
    /// multicast group `mc`, adding `users` (comma-separated); returns once
    /// it serves.
    pub fn start(dir: &Path, mc: SocketAddrV4, users: &str) -> KeyServerProcess {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "keyserver_process", "--nocapture"])
            .env("LSIM_KEYSERVER_DIR", dir)
            .env("LSIM_KEYSERVER_GROUP", mc.to_string())
            .env("LSIM_USERS", users)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        for line in out.lines() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("READY ") {
                let (addr, fp) = rest.split_once(' ').unwrap();
                let pin = lsim_keymgmt::registrar::quic::parse_fingerprint(fp).unwrap();
                return KeyServerProcess { child, addr: addr.parse().unwrap(), pin };
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("key server process ended before it was ready");
    }

    /// kill -9: no chance to flush or clean up.
    pub fn kill(self) {
        drop(self);
    }
}

impl Drop for KeyServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
