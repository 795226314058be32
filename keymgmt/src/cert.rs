//! Member certificates: the key server's word that a signing key is a member's.
//!
//! Owns `MemberCert` (user, member id, transport node, Ed25519 public key,
//! expiry, the key server's signature), its bounded encoding, issuing and
//! verification, and `Signer`, a member's signing key with its certificate.
//! A group key proves only "some member sent this"; a signature under a
//! certified key proves which member. It does not decide what is signed
//! (the group layer does) and never sees group keys.

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use thiserror::Error;

/// Domain of the key server's signature over a certificate.
const CERT_CONTEXT: &[u8] = b"lsim member certificate v1\0";
/// Longest user name in a certificate.
pub const MAX_USER: usize = 255;
/// Largest encoded certificate.
pub const MAX_CERT: usize = 2 + MAX_USER + 8 + 4 + 32 + 8 + 64;

/// A certificate that cannot be used.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum CertError {
    /// The bytes are not a certificate.
    #[error("malformed member certificate: {0}")]
    Malformed(&'static str),
    /// The key server's signature does not verify.
    #[error("the member certificate of {0:?} is not signed by this group's key server")]
    BadSignature(String),
    /// Past its expiry.
    #[error("the member certificate of {0:?} expired")]
    Expired(String),
    /// A signature by the certified key does not verify.
    #[error("not signed by {0:?}: the signature does not verify")]
    Forged(String),
}

/// The key server's statement that `key` belongs to member `user`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberCert {
    /// The member's user name (what others are shown).
    pub user: String,
    /// Its member id at the key server.
    pub member: u64,
    /// The transport node id it sends from.
    pub node: u32,
    /// Its Ed25519 public key.
    pub key: [u8; 32],
    /// Milliseconds since the Unix epoch after which it is void.
    pub expires_ms: u64,
    /// The key server's signature over everything above.
    pub signature: [u8; 64],
}

impl MemberCert {
    fn signed_part(&self) -> Vec<u8> {
        let mut m = CERT_CONTEXT.to_vec();
        let user = &self.user.as_bytes()[..self.user.len().min(MAX_USER)];
        m.extend_from_slice(&(user.len() as u16).to_be_bytes());
        m.extend_from_slice(user);
        m.extend_from_slice(&self.member.to_be_bytes());
        m.extend_from_slice(&self.node.to_be_bytes());
        m.extend_from_slice(&self.key);
        m.extend_from_slice(&self.expires_ms.to_be_bytes());
        m
    }

    /// The key server signs a certificate (the user name is cut to `MAX_USER` bytes).
    pub fn issue(
        server: &SigningKey,
        user: &str,
        member: u64,
        node: u32,
        key: [u8; 32],
        expires_ms: u64,
    ) -> MemberCert {
        let mut end = user.len().min(MAX_USER);
        while !user.is_char_boundary(end) {
            end -= 1;
        }
        let mut c = MemberCert { user: user[..end].to_string(), member, node, key, expires_ms, signature: [0; 64] };
        c.signature = server.sign(&c.signed_part()).to_bytes();
        c
    }

    /// Checks the key server's signature and the expiry at `now_ms`.
    pub fn verify(&self, server: &VerifyingKey, now_ms: u64) -> Result<(), CertError> {
        let sig = Signature::from_bytes(&self.signature);
        server.verify(&self.signed_part(), &sig).map_err(|_| CertError::BadSignature(self.user.clone()))?;
        if now_ms > self.expires_ms {
            return Err(CertError::Expired(self.user.clone()));
        }
        Ok(())
    }

    /// Checks that `signature` over `message` (in `context`) was made with the certified key.
    pub fn verify_signed(&self, context: &[u8], message: &[u8], signature: &[u8; 64]) -> Result<(), CertError> {
        let key = VerifyingKey::from_bytes(&self.key).map_err(|_| CertError::Forged(self.user.clone()))?;
        let mut m = context.to_vec();
        m.extend_from_slice(message);
        key.verify_strict(&m, &Signature::from_bytes(signature)).map_err(|_| CertError::Forged(self.user.clone()))
    }

    /// The encoding: the signed fields, then the signature.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.signed_part()[CERT_CONTEXT.len()..].to_vec();
        out.extend_from_slice(&self.signature);
        out
    }

    /// Reads a certificate from the front of `b`; returns it and the bytes it took.
    pub fn decode(b: &[u8]) -> Result<(MemberCert, usize), CertError> {
        let take = |at: usize, n: usize, what: &'static str| b.get(at..at + n).ok_or(CertError::Malformed(what));
        let len = usize::from(u16::from_be_bytes(take(0, 2, "user length")?.try_into().unwrap_or([0; 2])));
        if len > MAX_USER {
            return Err(CertError::Malformed("user name too long"));
        }
        let user = std::str::from_utf8(take(2, len, "user")?).map_err(|_| CertError::Malformed("user not UTF-8"))?;
        let mut at = 2 + len;
        let mut fixed = |n: usize, what: &'static str| {
            let s = take(at, n, what);
            at += n;
            s
        };
        let member = u64::from_be_bytes(fixed(8, "member")?.try_into().map_err(|_| CertError::Malformed("member"))?);
        let node = u32::from_be_bytes(fixed(4, "node")?.try_into().map_err(|_| CertError::Malformed("node"))?);
        let key: [u8; 32] = fixed(32, "key")?.try_into().map_err(|_| CertError::Malformed("key"))?;
        let expires_ms =
            u64::from_be_bytes(fixed(8, "expiry")?.try_into().map_err(|_| CertError::Malformed("expiry"))?);
        let signature: [u8; 64] = fixed(64, "signature")?.try_into().map_err(|_| CertError::Malformed("signature"))?;
        Ok((MemberCert { user: user.to_string(), member, node, key, expires_ms, signature }, at))
    }
}

/// A member's signing key and its certificate. The key is zeroized on drop
/// (`ed25519_dalek::SigningKey` does so itself).
pub struct Signer {
    key: SigningKey,
    cert: MemberCert,
}

impl Signer {
    /// A signer from its key and the certificate the key server issued for it.
    pub fn new(key: SigningKey, cert: MemberCert) -> Signer {
        Signer { key, cert }
    }

    /// Its certificate.
    pub fn cert(&self) -> &MemberCert {
        &self.cert
    }

    /// Signs `message` in `context` (so a signature made for one use is useless in another).
    pub fn sign(&self, context: &[u8], message: &[u8]) -> [u8; 64] {
        let mut m = context.to_vec();
        m.extend_from_slice(message);
        self.key.sign(&m).to_bytes()
    }
}

/// Milliseconds since the Unix epoch: the clock certificates expire by.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A fresh signing key from the OS's random source.
pub fn new_signing_key() -> Result<SigningKey, getrandom::Error> {
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut())?;
    Ok(SigningKey::from_bytes(&seed))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn server() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    #[test]
    fn a_certificate_round_trips_and_verifies() {
        let member = SigningKey::from_bytes(&[9; 32]);
        let c = MemberCert::issue(&server(), "alice", 42, 0x1234, member.verifying_key().to_bytes(), 1_000);
        let bytes = c.encode();
        let (d, used) = MemberCert::decode(&[bytes.as_slice(), b"rest"].concat()).unwrap();
        assert_eq!((d.clone(), used), (c, bytes.len()));
        assert_eq!(d.verify(&server().verifying_key(), 999), Ok(()));
        assert_eq!(d.verify(&server().verifying_key(), 1_001), Err(CertError::Expired("alice".into())));
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        assert!(matches!(d.verify(&other, 0), Err(CertError::BadSignature(_))));
    }

    #[test]
    fn a_changed_field_breaks_the_servers_signature() {
        let c = MemberCert::issue(&server(), "bob", 1, 2, [3; 32], u64::MAX);
        for f in 0..4 {
            let mut x = c.clone();
            match f {
                0 => x.user = "mallory".into(),
                1 => x.node ^= 1,
                2 => x.key[0] ^= 1,
                _ => x.expires_ms -= 1,
            }
            assert!(x.verify(&server().verifying_key(), 0).is_err(), "field {f}");
        }
    }

    #[test]
    fn signatures_are_bound_to_key_and_context() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let cert = MemberCert::issue(&server(), "carol", 3, 4, key.verifying_key().to_bytes(), u64::MAX);
        let s = Signer::new(key, cert.clone());
        let sig = s.sign(b"chat", b"hello");
        assert_eq!(cert.verify_signed(b"chat", b"hello", &sig), Ok(()));
        assert!(cert.verify_signed(b"file", b"hello", &sig).is_err());
        assert!(cert.verify_signed(b"chat", b"hellO", &sig).is_err());
    }

    #[test]
    fn decoding_truncated_or_oversized_input_fails_cleanly() {
        let c = MemberCert::issue(&server(), "dave", 1, 2, [3; 32], 4).encode();
        for n in 0..c.len() {
            assert!(MemberCert::decode(&c[..n]).is_err());
        }
        let mut long = c.clone();
        long[0..2].copy_from_slice(&1000u16.to_be_bytes());
        assert_eq!(MemberCert::decode(&long), Err(CertError::Malformed("user name too long")));
    }
}
