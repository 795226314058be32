//! How the suites turn one secret into many.
//!
//! Owns the HKDF-SHA256 plumbing every suite shares: fixed-length expansion
//! into zeroized buffers, the per-message subkey derivation, and keyed
//! HMAC-SHA256 without a fallible constructor. It owns no key: callers pass
//! them in and decide what the output is for.

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::epoch_keys::EpochKeys;

/// Bytes of random salt at the front of every standalone message.
pub(crate) const MESSAGE_SALT_LEN: usize = 32;

/// HKDF info label for per-message subkeys (followed by 0x00 and the suite name).
const MESSAGE_INFO: &[u8] = b"lsim/v1/message";

/// HKDF-Expand into an `N`-byte buffer that is wiped when dropped.
pub(crate) fn expand<const N: usize>(hk: &Hkdf<Sha256>, info: &[&[u8]]) -> Zeroizing<[u8; N]> {
    const { assert!(N <= 255 * 32, "HKDF-SHA256 expands to at most 8160 bytes") };
    let mut okm = Zeroizing::new([0u8; N]);
    // The only error is an output longer than 255 hash blocks, excluded at compile time above.
    if hk.expand_multi_info(info, okm.as_mut_slice()).is_err() {
        unreachable!("HKDF output length checked at compile time");
    }
    okm
}

/// The subkey material of one standalone message: HKDF-SHA256 with the message's
/// random `salt` and the epoch's data key as input keying material, bound to the
/// suite by the info string.
pub(crate) fn message_subkey<const N: usize>(keys: &EpochKeys, salt: &[u8]) -> Zeroizing<[u8; N]> {
    let hk = Hkdf::<Sha256>::new(Some(salt), keys.data_key().as_bytes());
    expand::<N>(&hk, &[MESSAGE_INFO, &[0], keys.suite().name().as_bytes()])
}

/// HMAC-SHA256 keyed with a 32-byte key.
///
/// RFC 2104 pads keys shorter than the hash block with zeros, so keying with
/// `key || 0^32` is the same MAC and uses the infallible fixed-size constructor.
pub(crate) fn hmac_sha256(key: &[u8; 32]) -> Hmac<Sha256> {
    let mut block = Zeroizing::new([0u8; 64]);
    block[..32].copy_from_slice(key);
    Hmac::<Sha256>::new(&(*block).into())
}
