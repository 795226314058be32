//! Password guessing against the registrar: counted, refused, and logged.
//!
//! Owns the failed-login accounting, each count refused for the rest of a
//! window once over its limit, every table bounded however many names and
//! addresses are tried:
//! - per user name and source address: a guesser aiming at one account from
//!   one place. It locks that user out of that address only, so a guesser
//!   cannot lock a member out of the key server from elsewhere;
//! - per user name over all addresses, with a higher limit: guessing spread
//!   over many addresses. Addresses the user logged in from before (within
//!   [`KNOWN_FOR`]) are exempt, so even that guesser does not lock a member
//!   out of the device they use;
//! - per source address: one guessing across many names.
//!
//! It also owns the
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

/// Failed logins for one user name from one address within [`LOGIN_WINDOW`]
/// before further tries for that name from there are refused.
pub const MAX_FAILED_LOGINS: u32 = 5;
/// Failed logins for one user name from all addresses within
/// [`LOGIN_WINDOW`] before tries from addresses the user never logged in
/// from are refused (NIST SP 800-63B's ceiling on failed attempts).
pub const MAX_FAILED_PER_USER: u32 = 100;
/// How long an address the user logged in from stays exempt from
/// [`MAX_FAILED_PER_USER`].
pub const KNOWN_FOR: Duration = Duration::from_secs(30 * 24 * 3600);
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
    /// Too many failures for this user name (from this address, or from
    /// everywhere and this address is not one the user logged in from).
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
        if !self.map.contains_key(key) {
            make_room(&mut self.map, |c| c.since, LOGIN_WINDOW, now);
        }
        let c = self.map.entry(key.clone()).or_insert(Count { failures: 0, since: now });
        if now.duration_since(c.since) >= LOGIN_WINDOW {
            *c = Count { failures: 0, since: now };
        }
        c.failures += 1;
    }
}

/// Where each user last logged in from, and when; bounded like [`Counts`].
struct Known {
    map: HashMap<(String, IpAddr), Instant>,
}

impl Known {
    fn contains(&self, key: &(String, IpAddr), now: Instant) -> bool {
        self.map.get(key).is_some_and(|at| now.duration_since(*at) < KNOWN_FOR)
    }

    fn insert(&mut self, key: (String, IpAddr), now: Instant) {
        if !self.map.contains_key(&key) {
            make_room(&mut self.map, |at| *at, KNOWN_FOR, now);
        }
        self.map.insert(key, now);
    }
}

/// Keeps `map` under [`MAX_TRACKED`] entries before one more is added:
/// forgets entries older than `live_for`, and if it is still full, the
/// oldest eighth (so a full table costs one pass per many insertions, not
/// one per insertion).
fn make_room<K: Eq + Hash, V>(
    map: &mut HashMap<K, V>,
    since: impl Fn(&V) -> Instant,
    live_for: Duration,
    now: Instant,
) {
    if map.len() < MAX_TRACKED {
        return;
    }
    map.retain(|_, v| now.duration_since(since(v)) < live_for);
    if map.len() < MAX_TRACKED {
        return;
    }
    let mut ages: Vec<Instant> = map.values().map(&since).collect();
    let cut = ages.len() / 8;
    let (_, &mut newest_dropped, _) = ages.select_nth_unstable(cut);
    map.retain(|_, v| since(v) > newest_dropped);
}

/// The login guard (see the module doc). One guard may serve several
/// services that check the same passwords (the key server's registrar and
/// the embedded XMPP server), so that guesses at either count together.
pub struct LoginGuard {
    /// Per user name and address.
    pairs: Mutex<Counts<(String, IpAddr)>>,
    /// Per user name, over all addresses.
    users: Mutex<Counts<String>>,
    addresses: Mutex<Counts<IpAddr>>,
    known: Mutex<Known>,
    log: Mutex<PathBuf>,
}

impl std::fmt::Debug for LoginGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let log = self.log.lock().map(|p| p.clone()).unwrap_or_default();
        f.debug_struct("LoginGuard").field("log", &log).finish_non_exhaustive()
    }
}

impl LoginGuard {
    /// A guard logging to `security.log` in `dir`.
    pub fn new(dir: &Path) -> LoginGuard {
        LoginGuard {
            pairs: Mutex::new(Counts { map: HashMap::new() }),
            users: Mutex::new(Counts { map: HashMap::new() }),
            addresses: Mutex::new(Counts { map: HashMap::new() }),
            known: Mutex::new(Known { map: HashMap::new() }),
            log: Mutex::new(dir.join("security.log")),
        }
    }

    /// Whether a login as `user` from `from` is refused unchecked; a refusal is logged.
    pub fn check(&self, user: &str, from: SocketAddr) -> Option<Refusal> {
        let now = Instant::now();
        let pair = (user.to_string(), from.ip());
        let over_pair = self.pairs.lock().is_ok_and(|p| p.over(&pair, MAX_FAILED_LOGINS, now));
        let over_user = || {
            self.users.lock().is_ok_and(|u| u.over(&pair.0, MAX_FAILED_PER_USER, now))
                && !self.known.lock().is_ok_and(|k| k.contains(&pair, now))
        };
        let refusal = if over_pair || over_user() {
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
        if let Ok(mut p) = self.pairs.lock() {
            p.fail(&(user.to_string(), from.ip()), now);
        }
        if let Ok(mut u) = self.users.lock() {
            u.fail(&user.to_string(), now);
        }
        if let Ok(mut a) = self.addresses.lock() {
            a.fail(&from.ip(), now);
        }
        self.log(&format!("login-failed user={user:?} from={from}"));
    }

    /// Records a login with the right password: `from` becomes an address
    /// the user is known at, and the user's failures from there are cleared.
    pub fn succeeded(&self, user: &str, from: SocketAddr) {
        let pair = (user.to_string(), from.ip());
        if let Ok(mut p) = self.pairs.lock() {
            p.map.remove(&pair);
        }
        if let Ok(mut k) = self.known.lock() {
            k.insert(pair, Instant::now());
        }
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
    fn a_user_is_locked_at_an_address_after_five_failures_there_and_every_try_is_logged() {
        let d = dir("user");
        let g = LoginGuard::new(&d);
        for _ in 0..MAX_FAILED_LOGINS {
            assert_eq!(g.check("ayen", addr(66)), None);
            g.failed("ayen", addr(66));
        }
        assert_eq!(g.check("ayen", addr(66)), Some(Refusal::User));
        assert_eq!(g.check("ayen", addr(2)), None, "the guesser does not lock ayen out of her own device");
        assert_eq!(g.check("ganesh", addr(66)), None, "other users are not locked");
        let log = std::fs::read_to_string(d.join("security.log")).unwrap();
        assert_eq!(log.lines().filter(|l| l.contains("login-failed user=\"ayen\"")).count(), 5);
        assert_eq!(log.lines().filter(|l| l.contains("login-refused user=\"ayen\" from=10.0.0.66:4433")).count(), 1);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn guessing_one_name_from_many_addresses_spares_the_addresses_the_user_logs_in_from() {
        let d = dir("spread");
        let g = LoginGuard::new(&d);
        g.succeeded("ayen", addr(1));
        // A guesser with many addresses, each staying under its own limits.
        let mut tried = 0;
        'guess: for a in 100..=255u8 {
            for _ in 0..MAX_FAILED_LOGINS {
                if tried == MAX_FAILED_PER_USER {
                    break 'guess;
                }
                assert_eq!(g.check("ayen", addr(a)), None, "attempt {tried}");
                g.failed("ayen", addr(a));
                tried += 1;
            }
        }
        assert_eq!(g.check("ayen", addr(50)), Some(Refusal::User), "a new address is refused");
        assert_eq!(g.check("ayen", addr(1)), None, "the address ayen logs in from is not");
        // A right password clears the failures at that address only.
        for _ in 0..MAX_FAILED_LOGINS {
            g.failed("ganesh", addr(9));
        }
        assert_eq!(g.check("ganesh", addr(9)), Some(Refusal::User));
        g.succeeded("ganesh", addr(9));
        assert_eq!(g.check("ganesh", addr(9)), None);
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
        for i in 0..40_000u32 {
            g.succeeded(&format!("name{i}"), addr(1));
        }
        assert!(g.pairs.lock().unwrap().map.len() <= MAX_TRACKED);
        assert!(g.known.lock().unwrap().map.len() <= MAX_TRACKED);
        assert!(g.users.lock().unwrap().map.len() <= MAX_TRACKED);
        assert!(g.addresses.lock().unwrap().map.len() <= MAX_TRACKED);
        let size = |n: &str| std::fs::metadata(d.join(n)).map_or(0, |m| m.len());
        assert!(size("security.log.1") > 0, "rotated");
        assert!(size("security.log") < LOG_MAX_BYTES + 200 && size("security.log.1") < LOG_MAX_BYTES + 200);
        std::fs::remove_dir_all(d).unwrap();
    }
}
