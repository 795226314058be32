//! The audit log of user administration: who did what to which user, when,
//! and how it ended, one line per action, appended and synced, never
//! rewritten (`audit.log` in the server's data directory).
//!
//! Owns the file and its line format. It must not decide anything: the
//! admin socket and the offline commands write what they did.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::xmpp::history::format_stamp;

/// The file name inside the data directory.
pub const AUDIT_FILE: &str = "audit.log";

/// The audit log of one data directory.
#[derive(Debug, Clone)]
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    /// The log in `data_dir` (created on the first entry).
    pub fn new(data_dir: &Path) -> Journal {
        Journal { path: data_dir.join(AUDIT_FILE) }
    }

    /// Appends `who` did `what` to `user` (if any) at `unix_ms`, and how it
    /// ended. Network text cannot break a line: newlines become spaces.
    pub fn append(
        &self,
        unix_ms: u64,
        who: &str,
        what: &str,
        user: Option<&str>,
        outcome: &str,
    ) -> std::io::Result<()> {
        let clean = |s: &str| s.replace(['\n', '\r'], " ");
        let line = format!(
            "{} {} {} {}: {}\n",
            format_stamp(unix_ms),
            clean(who),
            what,
            user.map(clean).unwrap_or_else(|| "-".into()),
            clean(outcome)
        );
        let mut f = OpenOptions::new().create(true).append(true).open(&self.path)?;
        f.write_all(line.as_bytes())?;
        f.sync_data()
    }

    /// Every entry, oldest first (none yet: empty).
    pub fn read(&self) -> std::io::Result<Vec<String>> {
        match std::fs::read_to_string(&self.path) {
            Ok(s) => Ok(s.lines().map(str::to_string).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_appended_one_line_each() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(dir.path());
        assert!(j.read().unwrap().is_empty());
        j.append(1_796_600_000_000, "uid 0", "revoke", Some("carol"), "ok: 1 session ended, epoch 5").unwrap();
        j.append(1_796_600_001_000, "uid 1000", "remove", Some("x\ny"), "refused: no rights\nreally").unwrap();
        let lines = j.read().unwrap();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with("uid 0 revoke carol: ok: 1 session ended, epoch 5"), "{}", lines[0]);
        assert!(lines[0].starts_with("2026-"), "{}", lines[0]);
        assert!(lines[1].contains("remove x y: refused: no rights really"), "{}", lines[1]);
    }
}
