//! SCRAM's building blocks (RFC 5802): the two hashes with their HMAC,
//! digest and PBKDF2, constant-time comparison, nonces, user name escaping
//! and the `k=value` attributes of a SCRAM message.
//!
//! Owns those primitives. It must not hold an exchange's state or decide
//! what an exchange accepts: `client` and `server` do.

use base64ct::{Base64, Encoding};
use ring::{digest, hmac, pbkdf2};
use zeroize::Zeroizing;

use super::Failure;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hash {
    Sha1,
    Sha256,
}

impl Hash {
    pub(super) fn len(self) -> usize {
        match self {
            Hash::Sha1 => 20,
            Hash::Sha256 => 32,
        }
    }
    fn hmac_alg(self) -> hmac::Algorithm {
        match self {
            Hash::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Hash::Sha256 => hmac::HMAC_SHA256,
        }
    }
    pub(super) fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac_alg(), key), data).as_ref().to_vec()
    }
    pub(super) fn digest(self, data: &[u8]) -> Vec<u8> {
        let alg = match self {
            Hash::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            Hash::Sha256 => &digest::SHA256,
        };
        digest::digest(alg, data).as_ref().to_vec()
    }
    pub(super) fn salted_password(self, password: &str, salt: &[u8], iterations: u32) -> Zeroizing<Vec<u8>> {
        let alg = match self {
            Hash::Sha1 => pbkdf2::PBKDF2_HMAC_SHA1,
            Hash::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
        };
        let mut out = Zeroizing::new(vec![0u8; self.len()]);
        // ring refuses zero iterations; callers bound the count first.
        let iterations = std::num::NonZeroU32::new(iterations).unwrap_or(std::num::NonZeroU32::MIN);
        pbkdf2::derive(alg, iterations, salt, password.as_bytes(), &mut out);
        out
    }
}

/// Constant-time equality (lengths are public).
pub(super) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(subtle::ConstantTimeEq::ct_eq(a, b))
}

pub(super) fn random_nonce() -> Result<String, Failure> {
    let mut raw = [0u8; 18];
    getrandom::fill(&mut raw).map_err(|_| Failure::Random)?;
    Ok(Base64::encode_string(&raw))
}

/// `=` and `,` escaped in a SCRAM user name (RFC 5802 §5.1).
pub(super) fn escape_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

pub(super) fn unescape_name(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=3D") => out.push('='),
            Some("=2C") => out.push(','),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// The `k=value` attributes of a SCRAM message, in order.
pub(super) fn attributes(msg: &str) -> Option<Vec<(char, &str)>> {
    msg.split(',')
        .map(|part| {
            let mut chars = part.chars();
            let key = chars.next()?;
            (key.is_ascii_alphabetic() && chars.next() == Some('=')).then(|| (key, &part[2..]))
        })
        .collect()
}

pub(super) const GS2_HEADER: &str = "n,,";
