//! What a server keeps instead of passwords: SCRAM keys per hash
//! ([`ScramKeys`]), both hashes for one user ([`StoredCredentials`]), their
//! one-line text form for user store files, and the bounds on iterations.
//!
//! Owns the derivation, the PLAIN password check and the text form. It must
//! not run an exchange (`server` does) nor read or write files (the user
//! store does).

use base64ct::{Base64, Encoding};
use zeroize::Zeroizing;

use super::Failure;
use super::scram::{Hash, ct_eq};

/// What a server keeps for one user and one hash: never the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramKeys {
    /// The salt.
    pub salt: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// H(ClientKey).
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: Vec<u8>,
}

impl ScramKeys {
    fn derive(hash: Hash, password: &str, salt: Vec<u8>, iterations: u32) -> ScramKeys {
        let salted = hash.salted_password(password, &salt, iterations);
        let client_key = Zeroizing::new(hash.hmac(&salted, b"Client Key"));
        ScramKeys {
            stored_key: hash.digest(&client_key),
            server_key: hash.hmac(&salted, b"Server Key"),
            salt,
            iterations,
        }
    }
}

/// A user's SCRAM credentials for both hashes, as the server stores them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCredentials {
    /// For SCRAM-SHA-1.
    pub sha1: ScramKeys,
    /// For SCRAM-SHA-256.
    pub sha256: ScramKeys,
}

/// Iterations for new credentials (RFC 7677 asks for at least 4096).
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// The most iterations a client computes for a server; more is a denial
/// of service, not security.
pub const MAX_ITERATIONS: u32 = 1_000_000;

impl StoredCredentials {
    /// Derives credentials for `password` with fresh random salts.
    pub fn new(password: &str, iterations: u32) -> Result<StoredCredentials, Failure> {
        let iterations = iterations.clamp(1, MAX_ITERATIONS);
        let mut salt1 = vec![0u8; 16];
        let mut salt256 = vec![0u8; 16];
        getrandom::fill(&mut salt1).map_err(|_| Failure::Random)?;
        getrandom::fill(&mut salt256).map_err(|_| Failure::Random)?;
        Ok(StoredCredentials {
            sha1: ScramKeys::derive(Hash::Sha1, password, salt1, iterations),
            sha256: ScramKeys::derive(Hash::Sha256, password, salt256, iterations),
        })
    }

    /// Checks a cleartext password (PLAIN) against the SHA-256 keys.
    pub fn verify_password(&self, password: &str) -> bool {
        let k = &self.sha256;
        let derived = ScramKeys::derive(Hash::Sha256, password, k.salt.clone(), k.iterations);
        ct_eq(&derived.stored_key, &k.stored_key)
    }

    pub(super) fn keys(&self, hash: Hash) -> &ScramKeys {
        match hash {
            Hash::Sha1 => &self.sha1,
            Hash::Sha256 => &self.sha256,
        }
    }

    /// One line of text: `sha1 SALT ITER STORED SERVER sha256 SALT ITER
    /// STORED SERVER`, binary fields in base64. For user store files.
    pub fn to_line(&self) -> String {
        let one = |name: &str, k: &ScramKeys| {
            format!(
                "{name} {} {} {} {}",
                Base64::encode_string(&k.salt),
                k.iterations,
                Base64::encode_string(&k.stored_key),
                Base64::encode_string(&k.server_key)
            )
        };
        format!("{} {}", one("sha1", &self.sha1), one("sha256", &self.sha256))
    }

    /// Parses [`StoredCredentials::to_line`]'s output.
    pub fn from_line(line: &str) -> Option<StoredCredentials> {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        let keys = |f: &[&str], hash: Hash| -> Option<ScramKeys> {
            let k = ScramKeys {
                salt: Base64::decode_vec(f[0]).ok()?,
                iterations: f[1].parse().ok().filter(|i| (1..=MAX_ITERATIONS).contains(i))?,
                stored_key: Base64::decode_vec(f[2]).ok()?,
                server_key: Base64::decode_vec(f[3]).ok()?,
            };
            (k.stored_key.len() == hash.len() && k.server_key.len() == hash.len() && !k.salt.is_empty()).then_some(k)
        };
        if f.len() != 10 || f[0] != "sha1" || f[5] != "sha256" {
            return None;
        }
        Some(StoredCredentials { sha1: keys(&f[1..5], Hash::Sha1)?, sha256: keys(&f[6..10], Hash::Sha256)? })
    }
}
