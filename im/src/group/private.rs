//! Chat for some members only: a signed chat message (`signed.rs`) sealed
//! under a fresh key that the key server wrapped for each recipient
//! (`lsim_keymgmt::filekey`, as for files for some members), so that the
//! rest of the group, which holds the group key, still cannot read it.
//!
//! Owns the sealed format and its opening; who may be named is the key
//! server's business, who signed the message is `signed`'s.
//!
//! ```text
//! "LSP1" | n: u16 | n × wrap (68) | ChaCha20-Poly1305(key, nonce 0, aad: all before) of the signed message
//! ```
//!
//! The sealing itself is `lsim_keymgmt::filecipher`'s; this module frames it.
//!
//! The key is drawn for this one message, so the fixed nonce is never
//! reused under it.

use lsim_keymgmt::filecipher;
use lsim_keymgmt::filekey::{FileKey, WRAP_ENCODED_LEN, Wrap};

use super::signed::MAX_SIGNED;

const MAGIC: &[u8; 4] = b"LSP1";
const TAG: usize = filecipher::TAG_LEN;
/// Most recipients of one private message.
pub const MAX_PRIVATE_RECIPIENTS: usize = 64;
/// The largest sealed private message.
pub const MAX_PRIVATE: usize = 4 + 2 + MAX_PRIVATE_RECIPIENTS * WRAP_ENCODED_LEN + MAX_SIGNED + TAG;

/// Why a private message was not sealed or not opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrivateError {
    /// Not a private message, or damaged.
    #[error("not a private message: {0}")]
    Malformed(&'static str),
    /// Its key was not wrapped for us: it is for other members.
    #[error("a private message for other members")]
    NotForUs,
    /// Too many or no recipients, or a message too long.
    #[error("a private message needs 1 to {MAX_PRIVATE_RECIPIENTS} recipients and at most {MAX_SIGNED} bytes")]
    Bounds,
}

/// Whether `bytes` claim to be a private message.
pub fn is_private(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// `signed` (a signed chat message) sealed under `key`, with the `wraps`
/// of `key` for its recipients.
pub fn seal(signed: &[u8], wraps: &[Wrap], key: &FileKey) -> Result<Vec<u8>, PrivateError> {
    if wraps.is_empty() || wraps.len() > MAX_PRIVATE_RECIPIENTS || signed.len() > MAX_SIGNED {
        return Err(PrivateError::Bounds);
    }
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&(wraps.len() as u16).to_be_bytes());
    for w in wraps {
        out.extend_from_slice(&w.encode());
    }
    let sealed = filecipher::seal(key, &out, signed).map_err(|_| PrivateError::Bounds)?;
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// The signed message inside `bytes`, with the key `open` finds for us
/// among the wraps (`None`: the message is for other members).
pub fn open(bytes: &[u8], open: impl FnOnce(&[Wrap]) -> Option<FileKey>) -> Result<Vec<u8>, PrivateError> {
    if bytes.len() > MAX_PRIVATE {
        return Err(PrivateError::Malformed("too long"));
    }
    if bytes.len() < 6 || !is_private(bytes) {
        return Err(PrivateError::Malformed("no private-message header"));
    }
    let n = usize::from(u16::from_be_bytes([bytes[4], bytes[5]]));
    if n == 0 || n > MAX_PRIVATE_RECIPIENTS {
        return Err(PrivateError::Malformed("recipient count out of range"));
    }
    let header = 6 + n * WRAP_ENCODED_LEN;
    if bytes.len() < header + TAG {
        return Err(PrivateError::Malformed("truncated"));
    }
    let wraps = bytes[6..header]
        .chunks_exact(WRAP_ENCODED_LEN)
        .map(Wrap::decode)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| PrivateError::Malformed("wrap"))?;
    let key = open(&wraps).ok_or(PrivateError::NotForUs)?;
    filecipher::open(&key, &bytes[..header], &bytes[header..])
        .map_err(|_| PrivateError::Malformed("does not open under its key"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use lsim_keymgmt::filekey;
    use lsim_keymgmt::key::SecretKey;

    use super::*;

    #[test]
    fn only_a_recipient_opens_a_private_message_and_any_change_is_refused() {
        let individual = |m: u8| SecretKey::from_bytes([m; 32]);
        let key = FileKey::generate().unwrap();
        let wraps: Vec<Wrap> =
            [2u64, 5].iter().map(|&m| filekey::wrap(&individual(m as u8), "lsim", m, &key).unwrap()).collect();
        let inner = b"LSS1 a signed chat message stands here".to_vec();
        let sealed = seal(&inner, &wraps, &key).unwrap();
        assert!(is_private(&sealed));
        assert!(!sealed.windows(8).any(|w| w == b"a signed"), "the text is not in the clear");
        let opener = |m: u64| {
            move |ws: &[Wrap]| {
                ws.iter().find(|w| w.member == m).and_then(|w| filekey::unwrap(&individual(m as u8), "lsim", w).ok())
            }
        };
        assert_eq!(open(&sealed, opener(2)), Ok(inner.clone()));
        assert_eq!(open(&sealed, opener(5)), Ok(inner.clone()));
        assert_eq!(open(&sealed, opener(3)), Err(PrivateError::NotForUs));
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(open(&bad, opener(2)).is_err(), "a change at byte {i} was accepted");
        }
        for n in 0..sealed.len() {
            assert!(open(&sealed[..n], opener(2)).is_err(), "a truncation at {n} was accepted");
        }
        assert_eq!(seal(&inner, &[], &key), Err(PrivateError::Bounds));
        assert_eq!(seal(&inner, &vec![wraps[0].clone(); MAX_PRIVATE_RECIPIENTS + 1], &key), Err(PrivateError::Bounds));
    }
}
