//! Who signed as whom before: each user's signing key as this member
//! first saw it (trust on first use, as messengers keep their contacts'
//! identity keys), so that a user whose key changes is flagged: "bob's key
//! changed" means a new device, or someone else holding bob's password.
//!
//! Every member keeps its own signing key across runs (`identity`), so a
//! restart of the same device keeps its key and says nothing.
//!
//! A user may use several devices: each key seen for it is remembered (up
//! to [`MAX_KEYS_PER_USER`], the oldest forgotten first), and only a key
//! never seen from it is flagged, once; devices taking turns are not.
//!
//! Owns the map of user to keys, what a new sighting means, and the file
//! it is kept in (`known-keys`: one `NAME HEX` line per key, rewritten
//! whole, crash-safe). It must not verify certificates (the caller hands
//! it keys the key server certified) nor decide what is shown.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The most users remembered (the file stays bounded whatever is heard).
pub const MAX_KNOWN: usize = 65_536;
/// The most keys (devices) remembered per user.
pub const MAX_KEYS_PER_USER: usize = 8;

/// What a sighting of a user's key means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The first key seen for this user: remembered.
    First,
    /// A key seen before from this user.
    Same,
    /// A key never seen from this user (now remembered too).
    Changed {
        /// The key seen from it most recently before.
        was: [u8; 32],
    },
}

/// Users' signing keys as first seen.
#[derive(Debug, Default)]
pub struct KnownKeys {
    /// Per user, its keys, the most recently seen last.
    keys: BTreeMap<String, Vec<[u8; 32]>>,
    /// Where they are kept; `None`: only for this run.
    path: Option<PathBuf>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A key as people compare it aloud: the first 8 bytes of its SHA-256,
/// in groups of four hex digits.
pub fn short_fingerprint(key: &[u8; 32]) -> String {
    let h = Sha256::digest(key);
    h[..8].chunks(2).map(hex).collect::<Vec<_>>().join(" ")
}

impl KnownKeys {
    /// The keys kept at `path` (none yet if it does not exist; lines that
    /// do not parse are skipped).
    pub fn load(path: &Path) -> KnownKeys {
        let mut keys: BTreeMap<String, Vec<[u8; 32]>> = BTreeMap::new();
        if let Ok(text) = std::fs::read_to_string(path) {
            for line in text.lines().take(MAX_KNOWN * MAX_KEYS_PER_USER) {
                let Some((name, key)) = line.split_once(' ') else { continue };
                let Some(key) = crate::xmpp::tls::parse_fingerprint(key) else { continue };
                let known = keys.entry(name.to_string()).or_default();
                if known.len() < MAX_KEYS_PER_USER && !known.contains(&key) {
                    known.push(key);
                }
            }
        }
        KnownKeys { keys, path: Some(path.to_path_buf()) }
    }

    /// `user` signed with `key`: what that means. A first or changed key
    /// is remembered (and written, if kept in a file; a write that fails
    /// is returned beside the answer, which holds either way).
    pub fn observe(&mut self, user: &str, key: [u8; 32]) -> (Seen, Option<std::io::Error>) {
        let full = self.keys.len() >= MAX_KNOWN;
        let seen = match self.keys.get_mut(user) {
            Some(known) if known.contains(&key) => {
                // The most recently seen goes last (kept in memory; the file
                // needs no rewrite for the order alone).
                known.retain(|k| *k != key);
                known.push(key);
                return (Seen::Same, None);
            }
            Some(known) => Seen::Changed { was: known.last().copied().unwrap_or_default() },
            None if full => return (Seen::First, None),
            None => Seen::First,
        };
        // A name with a space or a line break would break the file: such a
        // user cannot exist (user names are validated), so it is not kept.
        if user.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return (seen, None);
        }
        let known = self.keys.entry(user.to_string()).or_default();
        if known.len() >= MAX_KEYS_PER_USER {
            known.remove(0);
        }
        known.push(key);
        (seen, self.save().err())
    }

    fn save(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else { return Ok(()) };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut f = std::fs::File::create(&tmp)?;
        for (name, keys) in &self.keys {
            for key in keys {
                writeln!(f, "{name} {}", hex(key))?;
            }
        }
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_key_is_flagged_once_and_remembered_across_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known-keys");
        let mut k = KnownKeys::load(&path);
        assert_eq!(k.observe("bob", [1; 32]).0, Seen::First);
        assert_eq!(k.observe("bob", [1; 32]).0, Seen::Same);
        assert_eq!(k.observe("carol", [3; 32]).0, Seen::First);
        let mut again = KnownKeys::load(&path);
        assert_eq!(again.observe("bob", [1; 32]).0, Seen::Same, "a restart remembers");
        assert_eq!(again.observe("bob", [2; 32]).0, Seen::Changed { was: [1; 32] });
        assert_eq!(again.observe("bob", [2; 32]).0, Seen::Same, "flagged once");
        assert_eq!(again.observe("bob", [1; 32]).0, Seen::Same, "two devices taking turns: not flagged");
        assert_eq!(KnownKeys::load(&path).observe("bob", [2; 32]).0, Seen::Same);
        // Bounded per user: the oldest key is forgotten first.
        for i in 10..10 + MAX_KEYS_PER_USER as u8 {
            assert!(matches!(again.observe("bob", [i; 32]).0, Seen::Changed { .. }));
        }
        assert!(matches!(KnownKeys::load(&path).observe("bob", [1; 32]).0, Seen::Changed { .. }));
        assert_eq!(KnownKeys::default().observe("bob", [9; 32]).0, Seen::First, "in memory only");
        assert_eq!(short_fingerprint(&[1; 32]).len(), 19);
    }
}
