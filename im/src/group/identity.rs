//! A device's signing key, kept across runs: the key the key server
//! certifies for this member at every login, so that the others see the
//! same key from the same device (and a changed one means another device;
//! `trust`).
//!
//! Owns the key file: the Ed25519 seed in hex, mode 0600, created once
//! (two processes starting at once end up with the same key). It must not
//! certify or sign (`lsim_keymgmt::cert` does).

use std::io::Write as _;
use std::path::Path;

use ed25519_dalek::SigningKey;
use zeroize::Zeroizing;

/// Why the key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading or writing it failed.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// It holds something else than a key.
    #[error("{0}: not an lsim identity key (64 hex digits); move it away to start a new one")]
    Corrupt(String),
    /// No randomness for a new key.
    #[error("no randomness for a new identity key")]
    Random,
}

fn read(path: &Path) -> Result<Option<SigningKey>, IdentityError> {
    let shown = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let text = Zeroizing::new(text);
            let seed = crate::xmpp::tls::parse_fingerprint(text.trim()).ok_or(IdentityError::Corrupt(shown))?;
            let seed = Zeroizing::new(seed);
            Ok(Some(SigningKey::from_bytes(&seed)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(IdentityError::Io(shown, e)),
    }
}

/// The key kept at `path`, made there first if there is none.
pub fn load_or_create(path: &Path) -> Result<SigningKey, IdentityError> {
    if let Some(key) = read(path)? {
        return Ok(key);
    }
    let io = |e| IdentityError::Io(path.display().to_string(), e);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let key = lsim_keymgmt::cert::new_signing_key().map_err(|_| IdentityError::Random)?;
    let text = Zeroizing::new(key.to_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>());
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let written = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        // Never over a key another process made meanwhile: theirs wins.
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    match written {
        Ok(()) => Ok(key),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read(path)?.ok_or_else(|| IdentityError::Corrupt(path.display().to_string()))
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d").join("identity.key");
        let a = load_or_create(&path).unwrap();
        let b = load_or_create(&path).unwrap();
        assert_eq!(a.verifying_key(), b.verifying_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::write(&path, "not a key").unwrap();
        assert!(matches!(load_or_create(&path), Err(IdentityError::Corrupt(_))));
    }
}
