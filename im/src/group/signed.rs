//! Chat signed by its sender: who said it, not only that a member did.
//!
//! Owns the signed wrapper of a chat message and the rule receivers apply:
//! the key server's certificate must verify, the sender's signature must
//! verify under the certified key, and the name the message claims must be
//! the certified user's. Anything else is a forgery (by an insider: outsiders
//! are already stopped by the group key) and is refused, never shown.
//!
//! ```text
//! "LSS1" | inner_len: u32 | inner (a chat message, chat.rs) | cert (cert.rs) | signature: 64
//! ```
//!
//! The signature covers "lsim chat v1", then everything before it. It must
//! not touch keys other than the signer's and the key server's public key.

use ed25519_dalek::VerifyingKey;
pub use lsim_keymgmt::cert::now_ms;
use lsim_keymgmt::cert::{CertError, MemberCert, Signer};

use super::chat::{ChatError, ChatMessage, MAX_ENCODED};

const MAGIC: &[u8; 4] = b"LSS1";
const CONTEXT: &[u8] = b"lsim chat v1\0";
/// The largest signed chat message.
pub const MAX_SIGNED: usize = 8 + MAX_ENCODED + lsim_keymgmt::cert::MAX_CERT + 64;

/// Why a signed message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignedError {
    /// Not a signed message, or damaged.
    #[error("not a signed chat message: {0}")]
    Malformed(&'static str),
    /// The inner message is not a chat message.
    #[error(transparent)]
    Chat(#[from] ChatError),
    /// The certificate or the signature does not hold.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// Signed by one member, claiming to be another.
    #[error("claims to be from {claimed:?} but is signed by {signer:?}")]
    Impersonation {
        /// The name in the message.
        claimed: String,
        /// The certified signer.
        signer: String,
    },
    /// Its signer's certificate was revoked by the key server.
    #[error("signed by {0}, whose certificate the key server revoked")]
    Revoked(String),
}

/// `msg` signed by `signer`, ready to send.
pub fn sign(msg: &ChatMessage, signer: &Signer) -> Vec<u8> {
    let inner = msg.encode();
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&(inner.len() as u32).to_be_bytes());
    out.extend_from_slice(&inner);
    append_signature(out, signer, CONTEXT)
}

/// `body` followed by the signer's certificate and its signature over
/// `context`, `body` and the certificate: the tail every signed group
/// format here shares (chat, receipts).
pub(crate) fn append_signature(mut body: Vec<u8>, signer: &Signer, context: &[u8]) -> Vec<u8> {
    body.extend_from_slice(&signer.cert().encode());
    let sig = signer.sign(context, &body);
    body.extend_from_slice(&sig);
    body
}

/// Checks the tail [`append_signature`] wrote after the first `body_len`
/// bytes: the certificate against the key server's key at `now_ms`, the
/// signature under the certified key. `None`: no certificate and 64-byte
/// signature follow exactly.
pub(crate) fn check_signature(
    bytes: &[u8],
    body_len: usize,
    context: &[u8],
    server: &VerifyingKey,
    now_ms: u64,
) -> Option<Result<MemberCert, CertError>> {
    let rest = bytes.get(body_len..)?;
    let (cert, used) = match MemberCert::decode(rest) {
        Ok(c) => c,
        Err(e) => return Some(Err(e)),
    };
    let sig: [u8; 64] = rest.get(used..).and_then(|s| s.try_into().ok())?;
    Some(
        cert.verify(server, now_ms)
            .and_then(|()| cert.verify_signed(context, &bytes[..bytes.len() - 64], &sig))
            .map(|()| cert),
    )
}

/// Opens a signed message: the certificate checked against the key server's
/// key at `now_ms`, the signature under the certified key, and the claimed
/// sender against the certified user. Returns the message and its certificate.
pub fn open(bytes: &[u8], server: &VerifyingKey, now_ms: u64) -> Result<(ChatMessage, MemberCert), SignedError> {
    if bytes.len() > MAX_SIGNED {
        return Err(SignedError::Malformed("too long"));
    }
    if bytes.len() < 8 + 64 || &bytes[..4] != MAGIC {
        return Err(SignedError::Malformed("no signed-chat header"));
    }
    let inner_len = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
    let inner = bytes.get(8..8usize.saturating_add(inner_len)).ok_or(SignedError::Malformed("truncated"))?;
    let cert =
        check_signature(bytes, 8 + inner_len, CONTEXT, server, now_ms).ok_or(SignedError::Malformed("signature"))??;
    let msg = ChatMessage::decode(inner)?;
    if msg.from != cert.user {
        return Err(SignedError::Impersonation { claimed: msg.from, signer: cert.user });
    }
    Ok((msg, cert))
}

/// [`open`], refusing a message whose signer `revoked` names: whatever it
/// signed, whenever (a message signed before the revocation and replayed
/// after it is refused like a new one).
pub fn open_unrevoked(
    bytes: &[u8],
    server: &VerifyingKey,
    now_ms: u64,
    revoked: &dyn Fn(&str) -> bool,
) -> Result<(ChatMessage, MemberCert), SignedError> {
    let (msg, cert) = open(bytes, server, now_ms)?;
    if revoked(&cert.user) {
        return Err(SignedError::Revoked(cert.user));
    }
    Ok((msg, cert))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use ed25519_dalek::SigningKey;

    use super::*;

    fn server() -> SigningKey {
        SigningKey::from_bytes(&[1; 32])
    }

    fn member(user: &str, seed: u8) -> Signer {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let cert = MemberCert::issue(
            &server(),
            user,
            u64::from(seed),
            u32::from(seed),
            key.verifying_key().to_bytes(),
            u64::MAX,
        );
        Signer::new(key, cert)
    }

    #[test]
    fn a_members_message_opens_with_its_verified_sender() {
        let alice = member("alice", 2);
        let m = ChatMessage::new("alice", "fire moving north");
        let (got, cert) = open(&sign(&m, &alice), &server().verifying_key(), 0).unwrap();
        assert_eq!((got, cert.user.as_str()), (m, "alice"));
    }

    #[test]
    fn what_a_revoked_member_signed_before_is_refused_when_replayed_after() {
        let carol = member("carol", 4);
        let vk = server().verifying_key();
        let before = sign(&ChatMessage::new("carol", "signed before the revocation"), &carol);
        let nobody = |_: &str| false;
        assert!(open_unrevoked(&before, &vk, 0, &nobody).is_ok(), "accepted while carol is a member");
        // The rekey named carol revoked: the same bytes, replayed, are refused.
        let carol_revoked = |u: &str| u == "carol";
        let e = open_unrevoked(&before, &vk, 10, &carol_revoked).unwrap_err();
        assert!(matches!(&e, SignedError::Revoked(u) if u == "carol"), "{e}");
        assert_eq!(e.to_string(), "signed by carol, whose certificate the key server revoked");
        // Others are not affected.
        let alice = member("alice", 2);
        assert!(open_unrevoked(&sign(&ChatMessage::new("alice", "hi"), &alice), &vk, 10, &carol_revoked).is_ok());
    }

    #[test]
    fn an_insider_cannot_speak_as_another_member() {
        let (alice, bob) = (member("alice", 2), member("bob", 3));
        let vk = server().verifying_key();
        // bob claims to be alice in the message, signing with his own certificate.
        let forged = sign(&ChatMessage::new("alice", "evacuate now"), &bob);
        assert_eq!(
            open(&forged, &vk, 0),
            Err(SignedError::Impersonation { claimed: "alice".into(), signer: "bob".into() })
        );
        // bob puts alice's certificate on a message he signs himself.
        let mut stolen = sign(&ChatMessage::new("alice", "evacuate now"), &bob);
        let bob_cert = bob.cert().encode();
        let at = stolen.windows(bob_cert.len()).position(|w| w == bob_cert.as_slice()).unwrap();
        stolen.splice(at..at + bob_cert.len(), alice.cert().encode());
        assert!(matches!(open(&stolen, &vk, 0), Err(SignedError::Cert(CertError::Forged(_)))));
        // bob changes the text of a message alice signed.
        let mut changed = sign(&ChatMessage::new("alice", "hold position"), &alice);
        let at = changed.windows(4).position(|w| w == b"hold").unwrap();
        changed[at..at + 4].copy_from_slice(b"drop");
        assert!(matches!(open(&changed, &vk, 0), Err(SignedError::Cert(CertError::Forged(_)))));
        // A certificate from another key server is worthless.
        let other = SigningKey::from_bytes(&[9; 32]);
        let key = SigningKey::from_bytes(&[4; 32]);
        let cert = MemberCert::issue(&other, "alice", 2, 2, key.verifying_key().to_bytes(), u64::MAX);
        let rogue = sign(&ChatMessage::new("alice", "x"), &Signer::new(key, cert));
        assert!(matches!(open(&rogue, &vk, 0), Err(SignedError::Cert(CertError::BadSignature(_)))));
    }

    #[test]
    fn damaged_or_unsigned_bytes_are_refused_without_panicking() {
        let alice = member("alice", 2);
        let good = sign(&ChatMessage::new("alice", "ok"), &alice);
        let vk = server().verifying_key();
        for n in 0..good.len() {
            assert!(open(&good[..n], &vk, 0).is_err());
        }
        assert!(open(&ChatMessage::new("alice", "plain").encode(), &vk, 0).is_err());
        let mut huge = good.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(open(&huge, &vk, 0).is_err());
    }
}
