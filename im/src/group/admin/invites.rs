//! The invitations a server has handed out: each a one-time token for one
//! new user name, until it is used or expires.
//!
//! Owns the file `invites` in the data directory (one line per invitation:
//! `SHA256(token) NAME EXPIRES_S open|used`, never the token itself), its
//! crash-safe rewriting (temporary file, fsync, rename), and the rule that
//! a token is spent exactly once. It must not touch credentials, sessions
//! or the code's format (`group::invite`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use zeroize::Zeroizing;

use crate::group::invite::{TOKEN_LEN, token_hash};

/// The file name inside the data directory.
pub const INVITES_FILE: &str = "invites";

/// How long a used or expired invitation is still remembered (so that a
/// second use says "used" or "expired", not "unknown").
const REMEMBER_S: u64 = 7 * 24 * 3600;

/// Why a token is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Never handed out here (or long forgotten).
    #[error("this invitation is unknown to the server (for another server, or withdrawn)")]
    Unknown,
    /// Spent already.
    #[error("this invitation was already used: ask for a new one")]
    Used,
    /// Past its time.
    #[error("this invitation expired: ask for a new one")]
    Expired,
    /// For another name than the one asked.
    #[error("this invitation is for another user name")]
    OtherName,
    /// The file could not be read or written.
    #[error("the invitations file: {0}")]
    Io(String),
}

/// One invitation as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The user it is for.
    pub name: String,
    /// Unix seconds it is good until.
    pub expires_s: u64,
    /// Spent.
    pub used: bool,
    hash: String,
}

/// The invitations of one data directory.
pub struct Invites {
    path: PathBuf,
    /// One change at a time in this process (a token is spent once).
    lock: Mutex<()>,
}

impl Invites {
    /// The invitations in `data_dir`.
    pub fn new(data_dir: &Path) -> Invites {
        Invites { path: data_dir.join(INVITES_FILE), lock: Mutex::new(()) }
    }

    /// Every invitation remembered, oldest first.
    pub fn all(&self) -> Result<Vec<Pending>, Refused> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Refused::Io(e.to_string())),
        };
        Ok(text
            .lines()
            .filter_map(|l| {
                let mut w = l.split(' ');
                let (hash, name, exp, state) = (w.next()?, w.next()?, w.next()?, w.next()?);
                Some(Pending {
                    name: name.to_string(),
                    expires_s: exp.parse().ok()?,
                    used: state == "used",
                    hash: hash.to_string(),
                })
            })
            .collect())
    }

    /// The open invitations (not used, not expired at `now_s`).
    pub fn open(&self, now_s: u64) -> Vec<Pending> {
        self.all().unwrap_or_default().into_iter().filter(|p| !p.used && p.expires_s > now_s).collect()
    }

    /// A new invitation for `name`, good until `expires_s`: its token
    /// (shown once, in the code; only its hash is kept). Earlier open
    /// invitations for the same name are withdrawn.
    pub fn create(&self, name: &str, expires_s: u64, now_s: u64) -> Result<Zeroizing<[u8; TOKEN_LEN]>, Refused> {
        let _held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut token = Zeroizing::new([0u8; TOKEN_LEN]);
        getrandom::fill(token.as_mut()).map_err(|e| Refused::Io(format!("no randomness: {e}")))?;
        let hex: Zeroizing<String> = Zeroizing::new(token.iter().map(|b| format!("{b:02x}")).collect());
        let mut all: Vec<Pending> = self
            .all()?
            .into_iter()
            .filter(|p| p.expires_s.saturating_add(REMEMBER_S) > now_s && (p.used || p.name != name))
            .collect();
        all.push(Pending { name: name.to_string(), expires_s, used: false, hash: token_hash(&hex) });
        self.write(&all)?;
        Ok(token)
    }

    /// The user an open token is for, or why it is refused.
    pub fn check(&self, token_hex: &str, now_s: u64) -> Result<String, Refused> {
        let hash = token_hash(token_hex);
        let p = self.all()?.into_iter().find(|p| p.hash == hash).ok_or(Refused::Unknown)?;
        if p.used {
            return Err(Refused::Used);
        }
        if p.expires_s <= now_s {
            return Err(Refused::Expired);
        }
        Ok(p.name)
    }

    /// Spends the token for `name`, if it is open and for that name; the
    /// caller then creates the user (a crash between the two leaves the
    /// code spent and no user: ask for a new code, nothing half made).
    pub fn spend(&self, token_hex: &str, name: &str, now_s: u64) -> Result<(), Refused> {
        let _held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.check(token_hex, now_s)? != name {
            return Err(Refused::OtherName);
        }
        let hash = token_hash(token_hex);
        let mut all = self.all()?;
        for p in all.iter_mut().filter(|p| p.hash == hash) {
            p.used = true;
        }
        self.write(&all)
    }

    fn write(&self, all: &[Pending]) -> Result<(), Refused> {
        let io = |e: std::io::Error| Refused::Io(format!("{}: {e}", self.path.display()));
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        for p in all {
            writeln!(f, "{} {} {} {}", p.hash, p.name, p.expires_s, if p.used { "used" } else { "open" })
                .map_err(io)?;
        }
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(t: &[u8]) -> String {
        t.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn a_token_is_spent_once_for_its_name_and_never_after_its_time() {
        let dir = tempfile::tempdir().unwrap();
        let inv = Invites::new(dir.path());
        let t = hex(inv.create("dave", 1_000, 100).unwrap().as_ref());
        assert_eq!(inv.check(&t, 500), Ok("dave".into()));
        assert_eq!(inv.check(&t, 1_000), Err(Refused::Expired));
        assert_eq!(inv.spend(&t, "eve", 500), Err(Refused::OtherName));
        assert_eq!(inv.check(&"00".repeat(16), 500), Err(Refused::Unknown));
        inv.spend(&t, "dave", 500).unwrap();
        assert_eq!(Invites::new(dir.path()).check(&t, 500), Err(Refused::Used), "a restart remembers");
        assert_eq!(inv.spend(&t, "dave", 501), Err(Refused::Used));
        let stored = std::fs::read_to_string(dir.path().join(INVITES_FILE)).unwrap();
        assert!(!stored.contains(&t), "the token itself is never stored");
    }

    #[test]
    fn a_new_invitation_withdraws_the_open_one_for_the_same_name() {
        let dir = tempfile::tempdir().unwrap();
        let inv = Invites::new(dir.path());
        let first = hex(inv.create("dave", 1_000, 100).unwrap().as_ref());
        let other = hex(inv.create("erin", 1_000, 100).unwrap().as_ref());
        let second = hex(inv.create("dave", 1_000, 100).unwrap().as_ref());
        assert_eq!(inv.check(&first, 200), Err(Refused::Unknown));
        assert_eq!(inv.check(&second, 200), Ok("dave".into()));
        assert_eq!(inv.check(&other, 200), Ok("erin".into()));
        assert_eq!(inv.open(200).len(), 2);
        // Long expired ones are forgotten at the next change.
        inv.create("fay", 10_000_000, 1_000 + REMEMBER_S).unwrap();
        assert_eq!(inv.all().unwrap().len(), 1);
    }
}
