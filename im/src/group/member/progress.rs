//! What this device had received of each sender, kept in a file across
//! runs: a member that was killed or whose handheld rebooted fetches, when
//! it starts again, what it missed meanwhile and nothing it had.
//!
//! Owns the file's form and writing it whole or not at all (a temporary
//! name, then a rename). It must not decide what is fetched (the
//! transport's `Receiver::resume_sender` does) nor hold any key: the file
//! names senders' nodes and object numbers only.
//!
//! Kept for one membership only: the file names the key server, the
//! group's session and the epoch the member joined in (its leaf key's version). After a leave
//! or an eviction the member joins anew, at another epoch, and the file is
//! no progress: what was sent while it was not a member is not its to
//! fetch (the `joined` history policy).
//!
//! ```text
//! lsim-progress 1 SERVER SESSION JOINED      hex key server and session, decimal epoch
//! ORIGIN NEXT COUNTER [DONE,DONE,...]      one line per sender, hex node
//! ```

use std::io::Write;
use std::path::Path;

use lsim_transport::SenderProgress;

const HEADER: &str = "lsim-progress 1";

/// Which membership a progress file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    /// The key server (the first bytes of its signing key).
    pub server: u64,
    /// The group's session (its id).
    pub session: u32,
    /// The epoch the member joined in.
    pub joined: u32,
}
/// Senders read from a file at most (a group has far fewer).
pub const MAX_SENDERS: usize = 4096;
/// The largest file read.
const MAX_FILE: u64 = 4 << 20;

/// Reads the progress kept at `path` for membership `of`. A missing,
/// unreadable or foreign file, or one of another membership, is no progress
/// (the member then fetches only from now on); lines that do not read are
/// skipped.
pub fn load(path: &Path, of: Membership) -> Vec<SenderProgress> {
    let Ok(meta) = std::fs::metadata(path) else { return Vec::new() };
    if meta.len() > MAX_FILE {
        return Vec::new();
    }
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    let mut lines = text.lines();
    if lines.next() != Some(&header(of)) {
        return Vec::new();
    }
    lines.filter_map(line).take(MAX_SENDERS).collect()
}

fn line(l: &str) -> Option<SenderProgress> {
    let mut f = l.split_ascii_whitespace();
    let origin = u32::from_str_radix(f.next()?, 16).ok()?;
    let next = f.next()?.parse().ok()?;
    let counter = f.next()?.parse().ok()?;
    let done = match f.next() {
        Some(d) => d.split(',').map(str::parse).collect::<Result<Vec<u32>, _>>().ok()?,
        None => Vec::new(),
    };
    if f.next().is_some() {
        return None;
    }
    Some(SenderProgress { origin, next, done, counter })
}

fn header(of: Membership) -> String {
    format!("{HEADER} {:016x} {:08x} {}", of.server, of.session, of.joined)
}

/// Writes `progress` of membership `of` to `path`, whole or not at all.
pub fn save(path: &Path, of: Membership, progress: &[SenderProgress]) -> std::io::Result<()> {
    let mut text = header(of);
    text.push('\n');
    for p in progress.iter().take(MAX_SENDERS) {
        text.push_str(&format!("{:08x} {} {}", p.origin, p.next, p.counter));
        if !p.done.is_empty() {
            let done: Vec<String> = p.done.iter().map(u32::to_string).collect();
            text.push(' ');
            text.push_str(&done.join(","));
        }
        text.push('\n');
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn p(origin: u32, next: u32, done: &[u32], counter: u64) -> SenderProgress {
        SenderProgress { origin, next, done: done.to_vec(), counter }
    }

    const OF: Membership = Membership { server: 0x5eed, session: 0xabcd, joined: 4 };

    #[test]
    fn progress_round_trips_and_replaces_the_last_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device").join("progress");
        assert!(load(&path, OF).is_empty(), "no file: no progress");
        let first = vec![p(0x1234_5678, 7, &[9, 12], 1 << 40), p(0xffff_0000, 0, &[], 3)];
        save(&path, OF, &first).unwrap();
        assert_eq!(load(&path, OF), first);
        let second = vec![p(0x1234_5678, 13, &[], (1 << 40) + 99)];
        save(&path, OF, &second).unwrap();
        assert_eq!(load(&path, OF), second);
        assert!(!path.with_extension("tmp").exists());
    }

    #[test]
    fn another_membership_has_no_progress_here() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("progress");
        save(&path, OF, &[p(1, 2, &[], 3)]).unwrap();
        assert!(load(&path, Membership { joined: 9, ..OF }).is_empty(), "joined again after a leave");
        assert!(load(&path, Membership { session: 1, ..OF }).is_empty(), "another group");
        assert!(load(&path, Membership { server: 1, ..OF }).is_empty(), "another key server");
    }

    #[test]
    fn a_foreign_or_damaged_file_is_no_progress_and_bad_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("progress");
        std::fs::write(&path, "some other file\n00000001 2 3\n").unwrap();
        assert!(load(&path, OF).is_empty());
        std::fs::write(
            &path,
            format!(
                "{}\nzz 1 2\n00000001 x 3\n00000001 2 3 4,five\n00000002 5 6 7,8\n0000000a 1 2 3 4\n\u{0}\n",
                header(OF)
            ),
        )
        .unwrap();
        assert_eq!(load(&path, OF), vec![p(2, 5, &[7, 8], 6)]);
        std::fs::write(&path, vec![b'a'; (MAX_FILE + 1) as usize]).unwrap();
        assert!(load(&path, OF).is_empty());
    }
}
