//! Password guessing against the registrar: counted, refused, and logged.
//!
//! Owns the failed-login accounting: per user name (a guesser aiming at one
//! account) and per source address (one guessing across many names), each
//! refused for the rest of a window once over its limit, with both tables
//! bounded however many names and addresses are tried. It also owns the
//! security log, `security.log` in the key server's data directory: one line
//! per failed or refused login, rotated at [`LOG_MAX_BYTES`] so a guesser
//! cannot fill the disk. It checks no passwords itself.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::hash::Hash;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed logins per user name within [`LOGIN_WINDOW`] before further tries are refused.
pub const MAX_FAILED_LOGINS: u32 = 5;
/// Failed logins from one address, over all names, within [`LOGIN_WINDOW`]
/// before further tries from it are refused.
pub const MAX_FAILED_PER_ADDRESS: u32 = 20;
/// The window of the login rate limits.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(60);
/// Names and addresses tracked at once; past this the oldest are forgotten.
pub const MAX_TRACKED: usize = 16_384;
/// The security log is rotated (to `security.log.1`) past this size.
pub const LOG_MAX_BYTES: u64 = 1 << 20;

/// Why a login is refused before its password is even checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Too many failures for this user name.
    User,
    /// Too many failures from this address.
    Address,
}

/// Failures within the current window, and when it began.
struct Count {
    failures: u32,
    since: Instant,
}

/// Counts per key, bounded.
struct Counts<K> {
    map: HashMap<K, Count>,
}

impl<K: Eq + Hash + Clone> Counts<K> {
    fn over(&self, key: &K, limit: u32, now: Instant) -> bool {
        self.map.get(key).is_some_and(|c| c.failures >= limit && now.duration_since(c.since) < LOGIN_WINDOW)
    }

    fn fail(&mut self, key: &K, now: Instant) {
        if !self.map.contains_key(key) && self.map.len() >= MAX_TRACKED {
            self.map.retain(|_, c| now.duration_since(c.since) < LOGIN_WINDOW);
            if self.map.len() >= MAX_TRACKED {
                // Still full of live windows: forget the oldest.
                let oldest = self.map.iter().min_by_key(|(_, c)| c.since).map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    self.map.remove(&k);
                }
            }
        }
        let c = self.map.entry(key.clone()).or_insert(Count { failures: 0, since: now });
        if now.duration_since(c.since) >= LOGIN_WINDOW {
            *c = Count { failures: 0, since: now };
        }
        c.failures += 1;
    }
}

/// The registrar's login guard (see the module doc).
pub struct LoginGuard {
    users: Mutex<Counts<String>>,
    addresses: Mutex<Counts<IpAddr>>,
    log: Mutex<PathBuf>,
}

impl LoginGuard {
    /// A guard logging to `security.log` in `dir`.
    pub fn new(dir: &Path) -> LoginGuard {
        LoginGuard {
            users: Mutex::new(Counts { map: HashMap::new() }),
            addresses: Mutex::new(Counts { map: HashMap::new() }),
            log: Mutex::new(dir.join("security.log")),
        }
    }

    /// Whether a login as `user` from `from` is refused unchecked; a refusal is logged.
    pub fn check(&self, user: &str, from: SocketAddr) -> Option<Refusal> {
        let now = Instant::now();
        let refusal = if self.users.lock().is_ok_and(|u| u.over(&user.to_string(), MAX_FAILED_LOGINS, now)) {
            Some(Refusal::User)
        } else if self.addresses.lock().is_ok_and(|a| a.over(&from.ip(), MAX_FAILED_PER_ADDRESS, now)) {
            Some(Refusal::Address)
        } else {
            None
        };
        if let Some(r) = refusal {
            let why = match r {
                Refusal::User => "too many failures for this user",
                Refusal::Address => "too many failures from this address",
            };
            self.log(&format!("login-refused user={user:?} from={from} ({why})"));
        }
        refusal
    }

    /// Counts and logs a wrong password (or unknown user).
    pub fn failed(&self, user: &str, from: SocketAddr) {
        let now = Instant::now();
        if let Ok(mut u) = self.users.lock() {
            u.fail(&user.to_string(), now);
        }
        if let Ok(mut a) = self.addresses.lock() {
            a.fail(&from.ip(), now);
        }
        self.log(&format!("login-failed user={user:?} from={from}"));
    }

    /// Appends one line (with the Unix time) to the log, rotating it when
    /// full. A log that cannot be written loses the line, never the login.
    fn log(&self, line: &str) {
        let Ok(path) = self.log.lock() else { return };
        if std::fs::metadata(&*path).is_ok_and(|m| m.len() >= LOG_MAX_BYTES) {
            let _ = std::fs::rename(&*path, path.with_extension("log.1"));
        }
        let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(&*path) {
            let _ = writeln!(f, "unix={unix} {line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lsim-guard-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], 4433))
    }

    #[test]
    fn a_user_is_locked_after_five_failures_and_every_try_is_logged() {
        let d = dir("user");
        let g = LoginGuard::new(&d);
        for i in 0..MAX_FAILED_LOGINS {
            assert_eq!(g.check("ayen", addr(i as u8)), None);
            g.failed("ayen", addr(i as u8));
        }
        assert_eq!(g.check("ayen", addr(99)), Some(Refusal::User), "from anywhere");
        assert_eq!(g.check("ganesh", addr(1)), None, "other users are not locked");
        let log = std::fs::read_to_string(d.join("security.log")).unwrap();
        assert_eq!(log.lines().filter(|l| l.contains("login-failed user=\"ayen\"")).count(), 5);
        assert_eq!(log.lines().filter(|l| l.contains("login-refused user=\"ayen\" from=10.0.0.99:4433")).count(), 1);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn one_address_guessing_many_names_is_locked() {
        let d = dir("address");
        let g = LoginGuard::new(&d);
        for i in 0..MAX_FAILED_PER_ADDRESS {
            assert_eq!(g.check(&format!("crew{i}"), addr(7)), None);
            g.failed(&format!("crew{i}"), addr(7));
        }
        assert_eq!(g.check("crew-new", addr(7)), Some(Refusal::Address));
        assert_eq!(g.check("crew-new", addr(8)), None, "other addresses are not locked");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn names_from_the_network_cannot_forge_log_lines() {
        let d = dir("escape");
        let g = LoginGuard::new(&d);
        g.failed("x\nunix=0 login-ok user=\"root\"", addr(1));
        let log = std::fs::read_to_string(d.join("security.log")).unwrap();
        assert_eq!(log.lines().count(), 1, "{log}");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn the_tables_and_the_log_stay_bounded() {
        let d = dir("bounded");
        let g = LoginGuard::new(&d);
        // Each line is about 60 bytes: 40,000 of them pass the rotation size.
        for i in 0..40_000u32 {
            g.failed(&format!("name{i}"), SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 1)));
        }
        assert!(g.users.lock().unwrap().map.len() <= MAX_TRACKED);
        assert!(g.addresses.lock().unwrap().map.len() <= MAX_TRACKED);
        let size = |n: &str| std::fs::metadata(d.join(n)).map_or(0, |m| m.len());
        assert!(size("security.log.1") > 0, "rotated");
        assert!(size("security.log") < LOG_MAX_BYTES + 200 && size("security.log.1") < LOG_MAX_BYTES + 200);
        std::fs::remove_dir_all(d).unwrap();
    }
}
