//! Where a received file lands, safely.
//!
//! Owns the rules: bytes go to a hidden temporary file in the download
//! directory; only a complete, verified file is renamed to its final name;
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

/// A file being received under a temporary name.
pub struct Landing {
    dir: PathBuf,
    temp: PathBuf,
}

impl Landing {
    /// Creates the temporary file for object `tag` in `dir`.
    pub fn create(dir: &Path, tag: &str) -> io::Result<(Landing, File)> {
        let temp = dir.join(format!(".lsim-{tag}.part"));
        let f = File::create(&temp)?;
        Ok((Landing { dir: dir.to_path_buf(), temp }, f))
    }

    /// Moves the verified file to its final name (a free one unless `overwrite`).
    pub fn commit(self, file: File, name: &str, overwrite: bool) -> io::Result<PathBuf> {
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
        Ok(target)
    }

    /// Gives up: the temporary file goes, nothing appears under a final name.
    pub fn abandon(self) {
        let _ = std::fs::remove_file(&self.temp);
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
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 2, "{left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
