//! Receipts: a recipient's signed "I hold it" for a file sent to some
//! members only, so that its sender learns, over multicast and without the
//! XMPP server, which of the members it named have the file (as NORM's
//! positive acknowledgements tell a sender who has its data).
//!
//! Owns the receipt format and the rule a sender applies to one: the key
//! server's certificate must verify and the signature must verify under the
//! certified key; the user it names is the certified one. It must not decide
//! when a receipt is sent or what a sender does with one (the member does).
//!
//! ```text
//! "LSK1" | node: u32 | object: u32 | size: u64 | cert (cert.rs) | signature: 64
//! ```
//!
//! `node` and `object` name the transfer (the file's sender and its object
//! id on the transport), `size` the file's length. The signature covers
//! "lsim receipt v1", then everything before it.

use ed25519_dalek::VerifyingKey;
use lsim_keymgmt::cert::{CertError, MAX_CERT, Signer};

use super::signed::{append_signature, check_signature};

const MAGIC: &[u8; 4] = b"LSK1";
const CONTEXT: &[u8] = b"lsim receipt v1\0";
const FIXED: usize = 4 + 4 + 4 + 8;
/// The largest receipt.
pub const MAX_RECEIPT: usize = FIXED + MAX_CERT + 64;

/// What a receipt says, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The file's sender (transport node).
    pub node: u32,
    /// The file's object id at that sender.
    pub object: u32,
    /// The file's length in bytes.
    pub size: u64,
    /// Who holds it: the certified user who signed the receipt.
    pub user: String,
}

/// Why bytes are not a receipt one can trust.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// Not a receipt, or damaged.
    #[error("not a receipt: {0}")]
    Malformed(&'static str),
    /// The certificate or the signature does not hold.
    #[error(transparent)]
    Cert(#[from] CertError),
}

/// Whether `bytes` claim to be a receipt (checked or not).
pub fn is_receipt(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// The transfer a receipt claims to be for, `(node, object)`, unchecked:
/// enough to drop receipts for others' files without verifying them.
pub fn peek(bytes: &[u8]) -> Option<(u32, u32)> {
    if !is_receipt(bytes) || bytes.len() < FIXED {
        return None;
    }
    let u32_at = |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    Some((u32_at(4), u32_at(8)))
}

/// The receipt for `object` of `node` (`size` bytes), signed by `signer`.
pub fn sign(node: u32, object: u32, size: u64, signer: &Signer) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&node.to_be_bytes());
    out.extend_from_slice(&object.to_be_bytes());
    out.extend_from_slice(&size.to_be_bytes());
    append_signature(out, signer, CONTEXT)
}

/// Opens a receipt: the certificate checked against the key server's key
/// at `now_ms`, the signature under the certified key.
pub fn open(bytes: &[u8], server: &VerifyingKey, now_ms: u64) -> Result<Receipt, ReceiptError> {
    if bytes.len() > MAX_RECEIPT {
        return Err(ReceiptError::Malformed("too long"));
    }
    let (node, object) = peek(bytes).ok_or(ReceiptError::Malformed("no receipt header"))?;
    if bytes.len() < FIXED + 64 {
        return Err(ReceiptError::Malformed("too short"));
    }
    let mut size = [0u8; 8];
    size.copy_from_slice(&bytes[12..FIXED]);
    let cert = check_signature(bytes, FIXED, CONTEXT, server, now_ms).ok_or(ReceiptError::Malformed("signature"))??;
    Ok(Receipt { node, object, size: u64::from_be_bytes(size), user: cert.user })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use ed25519_dalek::SigningKey;
    use lsim_keymgmt::cert::MemberCert;

    use super::*;

    fn member(server: &SigningKey, user: &str, seed: u8) -> Signer {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let cert = MemberCert::issue(server, user, u64::from(seed), 1, key.verifying_key().to_bytes(), u64::MAX);
        Signer::new(key, cert)
    }

    #[test]
    fn a_receipt_names_its_signer_and_any_change_is_refused() {
        let server = SigningKey::from_bytes(&[1; 32]);
        let vk = server.verifying_key();
        let bob = member(&server, "bob", 2);
        let r = sign(7, 42, 300_000, &bob);
        assert!(is_receipt(&r));
        assert_eq!(open(&r, &vk, 0), Ok(Receipt { node: 7, object: 42, size: 300_000, user: "bob".into() }));
        // Every flipped byte is refused: a receipt cannot be moved to another
        // transfer or another member.
        for i in 0..r.len() {
            let mut bad = r.clone();
            bad[i] ^= 0x20;
            assert!(open(&bad, &vk, 0).is_err(), "a change at byte {i} was accepted");
        }
        // Every truncation, and extra bytes, too.
        for n in 0..r.len() {
            assert!(open(&r[..n], &vk, 0).is_err(), "a truncation at {n} was accepted");
        }
        let mut longer = r.clone();
        longer.push(0);
        assert!(open(&longer, &vk, 0).is_err());
        // A member certified by another key server is refused.
        let stranger = member(&SigningKey::from_bytes(&[9; 32]), "bob", 2);
        assert!(matches!(open(&sign(7, 42, 300_000, &stranger), &vk, 0), Err(ReceiptError::Cert(_))));
    }
}
