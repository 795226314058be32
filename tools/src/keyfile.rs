//! The group key file for standalone use (`lsim keygen`, `--key-file`).
//!
//! Owns its text format — `lsim-key 1`, `suite NAME`, `session N`,
//! `epoch N`, `key HEX` — written with owner-only permissions, and reading
//! it back into a transport seal. Group mode gets its keys from the key
//! server instead.
//!
//! A key file's id (`KeyFile::id`) is derived, not stored, so files written
//! before ids existed have one too: both ends print it, and a receiver that
//! hears only packets it cannot open names its own, so a user can see that
//! the two ends hold different files without showing the key.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use lsim_keymgmt::key::{SecretKey, random_bytes};
use lsim_keymgmt::suite::{GroupSeal, SuiteId};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// A group key for standalone use.
pub struct KeyFile {
    /// Cipher suite.
    pub suite: SuiteId,
    /// Transport session id (so different key files do not share a session).
    pub session: u32,
    /// Key epoch.
    pub epoch: u32,
    /// The group key.
    pub key: SecretKey,
}

impl KeyFile {
    /// A new random key.
    pub fn generate(suite: SuiteId) -> Result<KeyFile> {
        let mut s = [0u8; 4];
        random_bytes(&mut s).map_err(|e| anyhow!(e))?;
        Ok(KeyFile {
            suite,
            session: u32::from_be_bytes(s),
            epoch: 1,
            key: SecretKey::random().map_err(|e| anyhow!(e))?,
        })
    }

    /// Writes it (owner-only), refusing to replace an existing file unless `force`.
    pub fn write(&self, path: &Path, force: bool) -> Result<()> {
        if path.exists() && !force {
            bail!("{} exists; pass --force to replace it", path.display());
        }
        let hex: Zeroizing<String> = Zeroizing::new(self.key.as_bytes().iter().map(|b| format!("{b:02x}")).collect());
        let text = Zeroizing::new(format!(
            "lsim-key 1\nsuite {}\nsession {}\nepoch {}\nkey {}\n",
            self.suite, self.session, self.epoch, *hex
        ));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts
            .open(path)
            .map_err(|e| anyhow!("--out {}: cannot create it: {}", path.display(), crate::io_why(&e)))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        Ok(())
    }

    /// Reads a key file.
    pub fn read(path: &Path) -> Result<KeyFile> {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| anyhow!("--key-file {}: cannot read it: {}", path.display(), crate::io_why(&e)))?,
        );
        let mut lines = text.lines();
        if lines.next() != Some("lsim-key 1") {
            bail!(
                "--key-file {}: not an lsim key file (its first line must be `lsim-key 1`; `lsim keygen` writes one)",
                path.display()
            );
        }
        let (mut suite, mut session, mut epoch, mut key) = (None, None, None, None);
        for (i, line) in lines.enumerate() {
            let (k, v) = line
                .split_once(' ')
                .ok_or_else(|| anyhow!("{} line {}: expected `name value`", path.display(), i + 2))?;
            match k {
                "suite" => {
                    suite = Some(v.parse::<SuiteId>().map_err(|e| anyhow!("{} line {}: {e}", path.display(), i + 2))?)
                }
                "session" => {
                    session = Some(v.parse::<u32>().with_context(|| format!("{} line {}", path.display(), i + 2))?)
                }
                "epoch" => {
                    epoch = Some(v.parse::<u32>().with_context(|| format!("{} line {}", path.display(), i + 2))?)
                }
                "key" => {
                    // Checked as bytes first: slicing a string with other characters could split one.
                    if v.len() != 64 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                        bail!("{} line {}: key must be 64 hex digits", path.display(), i + 2);
                    }
                    let mut b = Zeroizing::new([0u8; 32]);
                    for (j, byte) in b.iter_mut().enumerate() {
                        *byte = u8::from_str_radix(&v[2 * j..2 * j + 2], 16)
                            .map_err(|_| anyhow!("{} line {}: key is not hex", path.display(), i + 2))?;
                    }
                    key = Some(SecretKey::from_bytes(*b));
                }
                other => bail!("{} line {}: unknown field `{other}`", path.display(), i + 2),
            }
        }
        let missing = |f: &str| anyhow!("{}: missing `{f}`", path.display());
        Ok(KeyFile {
            suite: suite.ok_or_else(|| missing("suite"))?,
            session: session.ok_or_else(|| missing("session"))?,
            epoch: epoch.ok_or_else(|| missing("epoch"))?,
            key: key.ok_or_else(|| missing("key"))?,
        })
    }

    /// A short id naming this key file: the first 8 hex digits of a
    /// domain-separated SHA-256 of everything both ends must share (suite,
    /// session, epoch, key). Different ids: the files do not interoperate.
    /// Four bytes of a hash say nothing usable about the key.
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"lsim key file id v1\0");
        h.update(self.suite.name().as_bytes());
        h.update([0]);
        h.update(self.session.to_be_bytes());
        h.update(self.epoch.to_be_bytes());
        h.update(self.key.as_bytes());
        h.finalize()[..4].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The transport seal for this key.
    pub fn seal(&self) -> GroupSeal {
        GroupSeal::new(self.suite, self.epoch, &self.key)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(suite: SuiteId, session: u32, epoch: u32, byte: u8) -> KeyFile {
        KeyFile { suite, session, epoch, key: SecretKey::from_bytes([byte; 32]) }
    }

    #[test]
    fn the_id_names_everything_both_ends_must_share() {
        let a = key(SuiteId::Aes256Gcm, 7, 1, 1);
        assert_eq!(a.id().len(), 8);
        assert!(a.id().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a.id(), key(SuiteId::Aes256Gcm, 7, 1, 1).id());
        for other in [
            key(SuiteId::Aes256Gcm, 7, 1, 2),
            key(SuiteId::Aes256Gcm, 8, 1, 1),
            key(SuiteId::Aes256Gcm, 7, 2, 1),
            key(SuiteId::ChaCha20Poly1305, 7, 1, 1),
        ] {
            assert_ne!(a.id(), other.id());
        }
    }

    #[test]
    fn a_file_written_before_ids_reads_and_has_its_id() {
        let dir = std::env::temp_dir().join(format!("lsim-keyfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("old.key");
        let old = format!("lsim-key 1\nsuite aes-256-gcm\nsession 7\nepoch 1\nkey {}\n", "01".repeat(32));
        std::fs::write(&path, old).unwrap();
        assert_eq!(KeyFile::read(&path).unwrap().id(), key(SuiteId::Aes256Gcm, 7, 1, 1).id());
        std::fs::write(&path, format!("lsim-key 1\nkey {}\n", "é".repeat(32))).unwrap();
        let err = format!("{:#}", KeyFile::read(&path).err().unwrap());
        assert!(err.contains("64 hex digits"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
