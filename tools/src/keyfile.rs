//! The group key file for standalone use (`lsim keygen`, `--key-file`).
//!
//! Owns its text format — `lsim-key 1`, `suite NAME`, `session N`,
//! `epoch N`, `key HEX` — written with owner-only permissions, and reading
//! it back into a transport seal. Group mode gets its keys from the key
//! server instead.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use lsim_keymgmt::key::{SecretKey, random_bytes};
use lsim_keymgmt::suite::{GroupSeal, SuiteId};
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
        let mut f = opts.open(path).with_context(|| format!("creating {}", path.display()))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        Ok(())
    }

    /// Reads a key file.
    pub fn read(path: &Path) -> Result<KeyFile> {
        let text =
            Zeroizing::new(std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?);
        let mut lines = text.lines();
        if lines.next() != Some("lsim-key 1") {
            bail!("{}: not an lsim key file (first line must be `lsim-key 1`)", path.display());
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
                    if v.len() != 64 {
                        bail!("{} line {}: key must be 64 hex digits", path.display(), i + 2);
                    }
                    let mut b = Zeroizing::new([0u8; 32]);
                    for (j, byte) in b.iter_mut().enumerate() {
                        *byte = u8::from_str_radix(&v[2 * j..2 * j + 2], 16)
                            .map_err(|_| anyhow!("{} line {}: key is not hex", path.display(), i + 2))?;
                    }
                    key = Some(SecretKey::from_bytes(*b));
                }
                other => bail!("{} line {}: unknown field {other:?}", path.display(), i + 2),
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

    /// The transport seal for this key.
    pub fn seal(&self) -> GroupSeal {
        GroupSeal::new(self.suite, self.epoch, &self.key)
    }
}
