//! Who may register with the key server, and how their passwords are checked.
//!
//! Owns user names (what is a valid one) and `PasswordVerifier`: an
//! Argon2id hash of the password under a random salt, with its cost
//! parameters, in a small versioned encoding for the server's store. The
//! password itself is never stored. It knows nothing of groups or keys.

use argon2::{Algorithm, Argon2, Params, Version};
use subtle::ConstantTimeEq;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::key::{RandomError, random_bytes};

/// Longest user name.
pub const MAX_NAME: usize = 64;
/// Longest password accepted (longer input is refused before hashing).
pub const MAX_PASSWORD: usize = 1024;

/// Why a name, password or stored verifier was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum UserError {
    /// The name is empty, too long, or has characters outside `[A-Za-z0-9._-]`.
    #[error("invalid user name {0:?}: use 1-64 of A-Z a-z 0-9 . _ -")]
    Name(String),
    /// The password is empty or longer than the limit.
    #[error("password must be 1 to {MAX_PASSWORD} bytes")]
    Password,
    /// The stored verifier could not be read.
    #[error("corrupt password verifier: {0}")]
    Corrupt(&'static str),
    /// The hash function refused its parameters.
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// No randomness for the salt.
    #[error(transparent)]
    Random(#[from] RandomError),
}

/// Checks a user name.
pub fn check_name(name: &str) -> Result<(), UserError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok { Ok(()) } else { Err(UserError::Name(name.chars().take(80).collect())) }
}

/// Argon2id cost: memory in KiB, passes, lanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cost {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub passes: u32,
    /// Lanes.
    pub lanes: u32,
}

impl Cost {
    /// OWASP's recommended Argon2id setting (19 MiB, 2 passes, 1 lane).
    pub const RECOMMENDED: Cost = Cost { memory_kib: 19 * 1024, passes: 2, lanes: 1 };

    fn argon2(&self) -> Result<Argon2<'static>, UserError> {
        let params = Params::new(self.memory_kib, self.passes, self.lanes, Some(32))
            .map_err(|e| UserError::Hash(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// A salted, slow hash of one user's password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordVerifier {
    cost: Cost,
    salt: [u8; 16],
    hash: [u8; 32],
}

const FORMAT: u8 = 1;
const ENCODED_LEN: usize = 1 + 12 + 16 + 32;

impl PasswordVerifier {
    /// Hashes `password` under a fresh salt.
    pub fn new(password: &str, cost: Cost) -> Result<PasswordVerifier, UserError> {
        check_password(password)?;
        let mut salt = [0u8; 16];
        random_bytes(&mut salt)?;
        let hash = hash(password, &salt, cost)?;
        Ok(PasswordVerifier { cost, salt, hash: *hash })
    }

    /// True if `password` is the one hashed (constant-time comparison).
    pub fn verify(&self, password: &str) -> bool {
        if check_password(password).is_err() {
            return false;
        }
        match hash(password, &self.salt, self.cost) {
            Ok(h) => h.ct_eq(&self.hash).into(),
            Err(_) => false,
        }
    }

    /// The stored form: format byte, cost (3 × u32), salt, hash.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(ENCODED_LEN);
        v.push(FORMAT);
        for x in [self.cost.memory_kib, self.cost.passes, self.cost.lanes] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v.extend_from_slice(&self.salt);
        v.extend_from_slice(&self.hash);
        v
    }

    /// Reads the stored form.
    pub fn from_bytes(b: &[u8]) -> Result<PasswordVerifier, UserError> {
        if b.len() != ENCODED_LEN {
            return Err(UserError::Corrupt("wrong length"));
        }
        if b[0] != FORMAT {
            return Err(UserError::Corrupt("unknown format"));
        }
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let cost = Cost { memory_kib: u32_at(1), passes: u32_at(5), lanes: u32_at(9) };
        // Refuse costs that would let a corrupted store exhaust memory or time.
        if cost.memory_kib > 1 << 20 || cost.passes > 64 || cost.lanes == 0 || cost.lanes > 16 {
            return Err(UserError::Corrupt("cost out of range"));
        }
        let mut salt = [0u8; 16];
        salt.copy_from_slice(&b[13..29]);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&b[29..61]);
        Ok(PasswordVerifier { cost, salt, hash })
    }
}

fn check_password(password: &str) -> Result<(), UserError> {
    if password.is_empty() || password.len() > MAX_PASSWORD { Err(UserError::Password) } else { Ok(()) }
}

fn hash(password: &str, salt: &[u8; 16], cost: Cost) -> Result<Zeroizing<[u8; 32]>, UserError> {
    let mut out = Zeroizing::new([0u8; 32]);
    cost.argon2()?
        .hash_password_into(password.as_bytes(), salt, out.as_mut())
        .map_err(|e| UserError::Hash(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: Cost = Cost { memory_kib: 64, passes: 1, lanes: 1 };

    #[test]
    fn right_password_verifies_wrong_does_not() {
        let v = PasswordVerifier::new("correct horse", CHEAP).unwrap();
        assert!(v.verify("correct horse"));
        assert!(!v.verify("correct horsf"));
        assert!(!v.verify(""));
        let again = PasswordVerifier::new("correct horse", CHEAP).unwrap();
        assert_ne!(v.to_bytes(), again.to_bytes(), "salted");
    }

    #[test]
    fn stored_form_round_trips_and_garbage_is_refused() {
        let v = PasswordVerifier::new("pw", Cost::RECOMMENDED).unwrap();
        let back = PasswordVerifier::from_bytes(&v.to_bytes()).unwrap();
        assert_eq!(back, v);
        assert!(back.verify("pw"));
        assert!(PasswordVerifier::from_bytes(&[1, 2, 3]).is_err());
        let mut huge = v.to_bytes();
        huge[1..5].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(PasswordVerifier::from_bytes(&huge), Err(UserError::Corrupt("cost out of range")));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("ayen").is_ok());
        assert!(check_name("ganesh.k-2_b").is_ok());
        for bad in ["", "a b", "ünï", "x/y", &"n".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
