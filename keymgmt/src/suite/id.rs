//! What a cipher suite is called.
//!
//! Owns `SuiteId`: the suite's configuration name and its one-byte wire code.
//! Both are stable: they appear in configuration files, in the registrar's
//! messages and in the HKDF info strings of every key, so renaming a suite or
//! renumbering a code changes every key derived under it.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// One of the group cipher suites. A group uses exactly one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SuiteId {
    /// Blowfish in CBC mode with ciphertext stealing, then HMAC-SHA256 truncated to
    /// 16 bytes (encrypt-then-MAC): the original LSIM system's cipher.
    BlowfishCbcHmacSha256,
    /// AES-256 in Galois/Counter Mode.
    Aes256Gcm,
    /// ChaCha20 with the Poly1305 authenticator (RFC 8439).
    ChaCha20Poly1305,
}

/// A suite name or code that names no suite.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SuiteIdError {
    /// The configuration name is not one of the suites.
    #[error("unknown cipher suite {name:?}; valid suites: {}", SuiteId::valid_names())]
    UnknownName {
        /// The name as given (at most 80 characters of it).
        name: String,
    },
    /// The wire code is not one of the suites.
    #[error("unknown cipher suite code {code}; valid codes: 1 to 3")]
    UnknownCode {
        /// The code as received.
        code: u8,
    },
}

impl SuiteId {
    /// Every suite, in wire-code order.
    pub const ALL: [SuiteId; 3] = [SuiteId::BlowfishCbcHmacSha256, SuiteId::Aes256Gcm, SuiteId::ChaCha20Poly1305];

    /// The suite's configuration name, e.g. `"aes-256-gcm"`.
    pub fn name(self) -> &'static str {
        match self {
            SuiteId::BlowfishCbcHmacSha256 => "blowfish-cbc-hmac-sha256",
            SuiteId::Aes256Gcm => "aes-256-gcm",
            SuiteId::ChaCha20Poly1305 => "chacha20-poly1305",
        }
    }

    /// The suite's one-byte code on the wire (0 is never used).
    pub fn to_u8(self) -> u8 {
        match self {
            SuiteId::BlowfishCbcHmacSha256 => 1,
            SuiteId::Aes256Gcm => 2,
            SuiteId::ChaCha20Poly1305 => 3,
        }
    }

    /// The suite a wire code names.
    pub fn from_u8(code: u8) -> Result<SuiteId, SuiteIdError> {
        SuiteId::ALL.into_iter().find(|s| s.to_u8() == code).ok_or(SuiteIdError::UnknownCode { code })
    }

    fn valid_names() -> String {
        SuiteId::ALL.map(SuiteId::name).join(", ")
    }
}

impl fmt::Display for SuiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SuiteId {
    type Err = SuiteIdError;

    fn from_str(name: &str) -> Result<SuiteId, SuiteIdError> {
        SuiteId::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| SuiteIdError::UnknownName { name: name.chars().take(80).collect() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_round_trip_and_are_pinned() {
        let pinned = [
            (SuiteId::BlowfishCbcHmacSha256, "blowfish-cbc-hmac-sha256", 1),
            (SuiteId::Aes256Gcm, "aes-256-gcm", 2),
            (SuiteId::ChaCha20Poly1305, "chacha20-poly1305", 3),
        ];
        for (suite, name, code) in pinned {
            assert_eq!(suite.to_string(), name);
            assert_eq!(name.parse::<SuiteId>(), Ok(suite));
            assert_eq!(suite.to_u8(), code);
            assert_eq!(SuiteId::from_u8(code), Ok(suite));
        }
    }

    #[test]
    fn unknown_names_and_codes_are_typed_errors_that_list_the_valid_ones() {
        let err = "aes-128-gcm".parse::<SuiteId>().unwrap_err();
        assert_eq!(err, SuiteIdError::UnknownName { name: "aes-128-gcm".into() });
        let text = err.to_string();
        assert!(text.contains("\"aes-128-gcm\""), "{text}");
        assert!(text.contains("blowfish-cbc-hmac-sha256, aes-256-gcm, chacha20-poly1305"), "{text}");
        assert!("AES-256-GCM".parse::<SuiteId>().is_err(), "names are case-sensitive");
        for code in [0u8, 4, 255] {
            assert_eq!(SuiteId::from_u8(code), Err(SuiteIdError::UnknownCode { code }));
        }
    }
}
