//! The account this device enrolled with: written by `lsim chat --invite
//! CODE`, read by a later `lsim chat` with no `--jid`, so that a member
//! who enrolled by scanning a code never types an address, a fingerprint
//! or a password.
//!
//! Beside it, per account (`<jid>/`), what the device keeps whether it
//! enrolled or not: its signing key (`identity.key`, so others see the same
//! key from it every run) and the keys others signed with (`known-keys`,
//! so a changed one is flagged).
//!
//! Owns the file (`$XDG_CONFIG_HOME/lsim/profile.toml`, else
//! `~/.config/lsim/profile.toml`; `--profile PATH` for another), its
//! fields, its mode (0600: it holds the password) and its crash-safe
//! writing, and where the per-account files are. It must not enroll
//! (`invite`) or join (`chat`).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use zeroize::Zeroizing;

/// What a member needs to join again.
#[derive(serde::Serialize, serde::Deserialize, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct Profile {
    /// user@domain.
    pub jid: String,
    /// The XMPP server (host:port).
    pub server: String,
    /// The room that is the group.
    pub room: String,
    /// The XMPP certificate's SHA-256, hex.
    pub pin: String,
    /// The key server certificate's SHA-256, hex.
    pub keyserver_pin: String,
    /// The password this device chose when it enrolled.
    pub password: String,
}

/// Where the profile is when `--profile` does not say.
pub fn default_path() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").ok_or_else(|| anyhow!("no HOME: give --profile PATH"))?)
            .join(".config"),
    };
    Ok(base.join("lsim").join("profile.toml"))
}

/// Where this device keeps `jid`'s signing key and the keys it saw from
/// others: `<dir of the profile>/<bare jid>/`.
pub fn device_files(jid: &lsim_im::xmpp::jid::Jid, profile: Option<&Path>) -> Result<(PathBuf, PathBuf)> {
    let base = match profile {
        Some(p) => p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf(),
        None => default_path()?.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    let dir = base.join(jid.bare().to_string());
    Ok((dir.join("identity.key"), dir.join("known-keys")))
}

impl Profile {
    /// Reads the profile at `path`.
    pub fn load(path: &Path) -> Result<Profile> {
        let text = Zeroizing::new(std::fs::read_to_string(path).with_context(|| {
            format!("{}: no saved profile (enroll with --invite CODE, or give --jid and --room)", path.display())
        })?);
        toml::from_str(&text).map_err(|e| anyhow!("{}: not an lsim profile: {}", path.display(), e.message()))
    }

    /// Writes the profile to `path` (mode 0600, whole or not at all).
    /// One that exists for another user is not overwritten.
    pub fn save(&self, path: &Path) -> Result<()> {
        if path.exists()
            && let Ok(old) = Profile::load(path)
            && old.jid != self.jid
        {
            bail!("{} holds the profile of {}: give --profile PATH for {}", path.display(), old.jid, self.jid);
        }
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let text = Zeroizing::new(toml::to_string(self).map_err(|e| anyhow!("writing the profile: {e}"))?);
        let tmp = path.with_extension("tmp");
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let write = || -> std::io::Result<()> {
            let mut f = opts.open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            std::fs::File::open(dir)?.sync_all()
        };
        write().with_context(|| format!("writing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(jid: &str) -> Profile {
        Profile {
            jid: jid.into(),
            server: "10.1.0.1:5222".into(),
            room: "lsim@conference.fire.example".into(),
            pin: "ab".repeat(32),
            keyserver_pin: "cd".repeat(32),
            password: "pw".into(),
        }
    }

    #[test]
    fn a_profile_reads_back_private_and_is_not_overwritten_by_another_user() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("profile.toml");
        profile("dave@fire.example").save(&path).unwrap();
        let back = Profile::load(&path).unwrap();
        assert_eq!((back.jid.as_str(), back.password.as_str()), ("dave@fire.example", "pw"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        profile("dave@fire.example").save(&path).unwrap();
        let e = profile("erin@fire.example").save(&path).unwrap_err().to_string();
        assert!(e.contains("holds the profile of dave@fire.example"), "{e}");
        let missing = Profile::load(&dir.path().join("none")).err().unwrap().to_string();
        assert!(missing.contains("--invite"), "{missing}");
    }
}
