//! Secret key material and where its randomness comes from.
//!
//! Owns `SecretKey` (32 bytes, zeroized on drop, compared in constant time,
//! never printed) and `random_bytes`, the crate's only door to the operating
//! system's random generator. It does not know what a key is used for.

use std::fmt;

use subtle::ConstantTimeEq;
use thiserror::Error;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The operating system's random generator failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("system random generator failed: {0}")]
pub struct RandomError(pub String);

/// Fills `buf` from the operating system's random generator.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), RandomError> {
    getrandom::fill(buf).map_err(|e| RandomError(e.to_string()))
}

/// A 256-bit secret key.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    /// Key length in bytes.
    pub const LEN: usize = 32;

    /// A fresh key from the system's random generator.
    pub fn random() -> Result<SecretKey, RandomError> {
        let mut k = SecretKey([0u8; 32]);
        random_bytes(&mut k.0)?;
        Ok(k)
    }

    /// A key from its bytes (known-answer tests, unwrapping, loading state).
    pub fn from_bytes(bytes: [u8; 32]) -> SecretKey {
        SecretKey(bytes)
    }

    /// The key's bytes. Callers must not copy them into storage that outlives the key
    /// without zeroizing it.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl PartialEq for SecretKey {
    fn eq(&self, other: &SecretKey) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for SecretKey {}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_keys_differ_and_never_print() {
        let a = SecretKey::random().unwrap();
        let b = SecretKey::random().unwrap();
        assert_ne!(a, b);
        assert_eq!(a, a.clone());
        assert_eq!(format!("{a:?}"), "SecretKey(..)");
    }
}
