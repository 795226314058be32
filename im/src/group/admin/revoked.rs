//! The users revoked on this server: their names stay refused (no new
//! account, no login) across restarts, and are listed.
//!
//! Owns the file `revoked-users` in the data directory (one name per line)
//! and its crash-safe rewriting (temporary file, fsync, rename). It must
//! not touch credentials or sessions.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The file name inside the data directory.
pub const REVOKED_FILE: &str = "revoked-users";

/// The revoked names of one data directory.
#[derive(Debug, Clone)]
pub struct Revoked {
    path: PathBuf,
}

impl Revoked {
    /// The list in `data_dir`.
    pub fn new(data_dir: &Path) -> Revoked {
        Revoked { path: data_dir.join(REVOKED_FILE) }
    }

    /// Every revoked name.
    pub fn names(&self) -> std::io::Result<BTreeSet<String>> {
        match std::fs::read_to_string(&self.path) {
            Ok(s) => Ok(s.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
            Err(e) => Err(e),
        }
    }

    /// Whether `name` is revoked (an unreadable list counts as "yes": refuse).
    pub fn contains(&self, name: &str) -> bool {
        self.names().map_or(true, |n| n.contains(name))
    }

    /// Adds `name`; durable when this returns.
    pub fn add(&self, name: &str) -> std::io::Result<()> {
        let mut names = self.names()?;
        if !names.insert(name.to_string()) {
            return Ok(());
        }
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        for n in &names {
            writeln!(f, "{n}")?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocations_persist_and_are_kept_once() {
        let dir = tempfile::tempdir().unwrap();
        let r = Revoked::new(dir.path());
        assert!(!r.contains("carol"));
        r.add("carol").unwrap();
        r.add("carol").unwrap();
        r.add("dave").unwrap();
        let again = Revoked::new(dir.path());
        assert!(again.contains("carol") && again.contains("dave") && !again.contains("alice"));
        assert_eq!(again.names().unwrap().len(), 2);
    }
}
