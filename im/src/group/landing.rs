//! Where a received file lands, safely.
//!
//! Owns the rules: bytes go to a hidden temporary file in the download
//! directory, named after the receiving process; only a complete, verified
//! file is renamed to its final name; a temporary that is not committed is
//! removed (on abandon, and when the landing is dropped), and one left by a
//! receiver that was killed is removed by the next one to use the directory;
//! names from the network are reduced to one plain file name (no path, no
//! dot-files, no control characters); an existing file is never overwritten
//! unless asked (the new one gets a free name instead). Nothing else.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// A name from the network made safe: the last path component, without
/// control characters or leading dots; never empty.
pub fn sanitize(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = last.chars().filter(|c| !c.is_control()).collect();
    let clean = clean.trim().trim_start_matches('.').to_string();
    if clean.is_empty() { "received-file".to_string() } else { clean.chars().take(200).collect() }
}

/// A file being received under a temporary name; the temporary goes when
/// the landing is dropped uncommitted.
pub struct Landing {
    dir: PathBuf,
    temp: PathBuf,
    committed: bool,
}

/// The process id in a temporary's name `.lsim-<pid>-<tag>.part`.
fn temp_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(".lsim-")?.strip_suffix(".part")?;
    rest.split_once('-')?.0.parse().ok()
}

/// Whether process `pid` is still running: `None` where this cannot be told.
fn running(pid: u32) -> Option<bool> {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return None;
    }
    Some(proc.join(pid.to_string()).exists())
}

impl Landing {
    /// Creates the temporary file for object `tag` in `dir`.
    pub fn create(dir: &Path, tag: &str) -> io::Result<(Landing, File)> {
        let temp = dir.join(format!(".lsim-{}-{tag}.part", std::process::id()));
        let f = File::create(&temp)?;
        Ok((Landing { dir: dir.to_path_buf(), temp, committed: false }, f))
    }

    /// Removes the temporaries in `dir` that receivers which are no longer
    /// running left behind (killed before they could clean up); returns
    /// how many. Where it cannot tell whether a process runs (no `/proc`),
    /// it removes nothing: another receiver may be writing them.
    pub fn sweep_stale(dir: &Path) -> usize {
        let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
        let mut removed = 0;
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(pid) = name.to_str().and_then(temp_owner) else { continue };
            if pid != std::process::id() && running(pid) == Some(false) && std::fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// Moves the verified file to its final name (a free one unless `overwrite`).
    pub fn commit(mut self, file: File, name: &str, overwrite: bool) -> io::Result<PathBuf> {
        file.sync_all()?;
        drop(file);
        let name = sanitize(name);
        let mut target = self.dir.join(&name);
        if !overwrite {
            let (stem, ext) = match name.rsplit_once('.') {
                Some((s, e)) if !s.is_empty() => (s.to_string(), format!(".{e}")),
                _ => (name.clone(), String::new()),
            };
            let mut n = 2;
            while target.exists() {
                target = self.dir.join(format!("{stem} ({n}){ext}"));
                n += 1;
            }
        }
        std::fs::rename(&self.temp, &target)?;
        self.committed = true;
        Ok(target)
    }

    /// Gives up: the temporary file goes, nothing appears under a final name.
    pub fn abandon(self) {
        drop(self);
    }
}

impl Drop for Landing {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_the_network_are_made_safe() {
        assert_eq!(sanitize("../../etc/passwd"), "passwd");
        assert_eq!(sanitize("C:\\Windows\\evil.exe"), "evil.exe");
        assert_eq!(sanitize(".bashrc"), "bashrc");
        assert_eq!(sanitize("a\u{0}b\nc.txt"), "abc.txt");
        assert_eq!(sanitize("/"), "received-file");
        assert_eq!(sanitize("map of sector 4.png"), "map of sector 4.png");
    }

    #[test]
    fn only_commit_creates_the_final_name_and_never_overwrites() {
        let dir = std::env::temp_dir().join(format!("lsim-landing-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("plan.txt"), b"old").unwrap();
        let (l, mut f) = Landing::create(&dir, "a").unwrap();
        std::io::Write::write_all(&mut f, b"new").unwrap();
        assert!(!dir.join("plan (2).txt").exists());
        let path = l.commit(f, "../plan.txt", false).unwrap();
        assert_eq!(path, dir.join("plan (2).txt"));
        assert_eq!(std::fs::read(dir.join("plan.txt")).unwrap(), b"old");
        let (l, _f) = Landing::create(&dir, "b").unwrap();
        l.abandon();
        // Dropped without a commit (a receiver ending mid-file): no temporary left.
        drop(Landing::create(&dir, "c").unwrap());
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 2, "{left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn temporaries_of_receivers_no_longer_running_are_swept() {
        let dir = std::env::temp_dir().join(format!("lsim-landing-sweep-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A process that has ended, and one that runs (this one's parent).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let alive = std::os::unix::process::parent_id();
        for name in [format!(".lsim-{dead}-0a-1.part"), format!(".lsim-{alive}-0a-2.part"), ".lsim-x.part".into()] {
            std::fs::write(dir.join(name), b"partial").unwrap();
        }
        let (mine, _f) = Landing::create(&dir, "0a-3").unwrap();
        assert_eq!(Landing::sweep_stale(&dir), 1);
        let mut left: Vec<_> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        let own = format!(".lsim-{}-0a-3.part", std::process::id());
        let mut want = vec![format!(".lsim-{alive}-0a-2.part"), own, ".lsim-x.part".to_string()];
        want.sort();
        assert_eq!(left, want, "only the dead receiver's temporary goes");
        drop(mine);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
