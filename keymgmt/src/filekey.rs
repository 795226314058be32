//! File keys: a file sent to some members of a group only.
//!
//! Owns `FileKey` (the 32-byte key a sender draws for one file), `Wrap` (that
//! key sealed for one recipient, and its 68-byte encoding) and `wrap`/`unwrap`.
//! The key server wraps a file key under each named recipient's individual
//! key; the recipients unwrap it with theirs, and nobody else can. It does not
//! decide who may receive a file (the server does), it does not encrypt the
//! file (`filecipher` does), and it must not touch the group's key tree or its epoch keys.
//!
//! A wrap is ChaCha20-Poly1305 under a key derived from the recipient's
//! individual key with HKDF-SHA256 and the info [`WRAP_INFO`] (the individual
//! key also keys the member's leaf in the tree; the derivation keeps the two
//! uses apart). The nonce is random: the number of wraps under one member's
//! key stays far below the 2^32 at which 96-bit random nonces start to
//! collide with any probability that matters. The associated data binds the
//! group's name and the member's id, so a wrap cannot be replayed to another
//! member or group.
//!
//! Encoding of a wrap (`Wrap::encode`), 68 bytes:
//!
//! ```text
//! offset  size  field
//!  0       8    member    the recipient's member id, big-endian
//!  8      12    nonce     random
//! 20      32    ciphertext of the file key
//! 52      16    tag
//! ```

use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::array::Array;
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use hkdf::Hkdf;
use sha2::Sha256;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::key::{RandomError, SecretKey, random_bytes};

/// Bytes of a file key.
pub const FILE_KEY_LEN: usize = 32;
/// Bytes of a sealed file key: 12-byte nonce, 32-byte ciphertext, 16-byte tag.
pub const WRAP_LEN: usize = NONCE_LEN + FILE_KEY_LEN + TAG_LEN;
/// Bytes of an encoded [`Wrap`]: the member id, then the sealed key.
pub const WRAP_ENCODED_LEN: usize = 8 + WRAP_LEN;
/// Most recipients of one file key (one registrar request).
pub const MAX_RECIPIENTS: usize = 1024;
/// HKDF info of the wrapping key (HKDF-SHA256 of the individual key, no salt).
pub const WRAP_INFO: &[u8] = b"lsim file key wrap v1";
/// Prefix of every wrap's associated data.
pub const WRAP_CONTEXT: &[u8] = b"lsim file key\0";

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Why a file key could not be made, wrapped or unwrapped.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FileKeyError {
    /// No randomness for a key or a nonce.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// An encoded wrap of the wrong length.
    #[error("file key wrap of {len} bytes, expected {WRAP_ENCODED_LEN}")]
    Length {
        /// The length given.
        len: usize,
    },
    /// A group name too long to bind into a wrap.
    #[error("group name of {len} bytes is longer than {max}")]
    GroupName {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The wrap does not open: not sealed for this key, group and member, or altered.
    #[error("the file key wrap for member {member} in group {group:?} does not open with this key")]
    Unwrap {
        /// The member the wrap names.
        member: u64,
        /// The group it was opened for.
        group: String,
    },
    /// The wrap names another member than the one unwrapping.
    #[error("the file key wrap is for member {wrap}, not for member {mine}")]
    OtherMember {
        /// The member the wrap names.
        wrap: u64,
        /// The member unwrapping.
        mine: u64,
    },
    /// More recipients than one request carries.
    #[error("{count} recipients, at most {max} per file key request")]
    TooManyRecipients {
        /// How many were named.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// The key of one file: a [`SecretKey`] (zeroized on drop, compared in
/// constant time, never printed) of its own type, so that it cannot be
/// passed where an individual or group key is meant.
#[derive(Clone, PartialEq, Eq)]
pub struct FileKey(SecretKey);

impl std::fmt::Debug for FileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileKey(..)")
    }
}

impl FileKey {
    /// A fresh key from the system's random generator.
    pub fn generate() -> Result<FileKey, FileKeyError> {
        Ok(FileKey(SecretKey::random()?))
    }

    /// A key from its bytes (unwrapping, a decoded request).
    pub fn from_bytes(bytes: [u8; FILE_KEY_LEN]) -> FileKey {
        FileKey(SecretKey::from_bytes(bytes))
    }

    /// The key's bytes. Callers must not keep copies that outlive the key
    /// without zeroizing them.
    pub fn as_bytes(&self) -> &[u8; FILE_KEY_LEN] {
        self.0.as_bytes()
    }
}

/// A file key sealed for one member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wrap {
    /// The recipient's member id (bound into the seal).
    pub member: u64,
    /// Nonce, ciphertext and tag.
    pub sealed: [u8; WRAP_LEN],
}

impl Wrap {
    /// The wrap's 68 bytes (see the module doc).
    pub fn encode(&self) -> [u8; WRAP_ENCODED_LEN] {
        let mut out = [0u8; WRAP_ENCODED_LEN];
        out[..8].copy_from_slice(&self.member.to_be_bytes());
        out[8..].copy_from_slice(&self.sealed);
        out
    }

    /// Reads a wrap of exactly [`WRAP_ENCODED_LEN`] bytes.
    pub fn decode(b: &[u8]) -> Result<Wrap, FileKeyError> {
        let Ok(b) = <&[u8; WRAP_ENCODED_LEN]>::try_from(b) else {
            return Err(FileKeyError::Length { len: b.len() });
        };
        let mut member = [0u8; 8];
        member.copy_from_slice(&b[..8]);
        let mut sealed = [0u8; WRAP_LEN];
        sealed.copy_from_slice(&b[8..]);
        Ok(Wrap { member: u64::from_be_bytes(member), sealed })
    }
}

/// Seals `key` for `member` of `group` under that member's individual key.
pub fn wrap(individual_key: &SecretKey, group: &str, member: u64, key: &FileKey) -> Result<Wrap, FileKeyError> {
    let ad = associated_data(group, member)?;
    let mut nonce = [0u8; NONCE_LEN];
    random_bytes(&mut nonce)?;
    let mut sealed = [0u8; WRAP_LEN];
    sealed[..NONCE_LEN].copy_from_slice(&nonce);
    let (ciphertext, tag) = sealed[NONCE_LEN..].split_at_mut(FILE_KEY_LEN);
    ciphertext.copy_from_slice(key.as_bytes());
    let Ok(t) = cipher(individual_key).encrypt_inout_detached(&Array(nonce), &ad, ciphertext.into()) else {
        // ChaCha20-Poly1305 refuses only plaintexts over 256 GiB; this one is 32 bytes.
        unreachable!("ChaCha20-Poly1305 refused a 32-byte key");
    };
    tag.copy_from_slice(&t);
    Ok(Wrap { member, sealed })
}

/// Opens a wrap sealed for `wrap.member` of `group` with that member's individual key.
pub fn unwrap(individual_key: &SecretKey, group: &str, wrap: &Wrap) -> Result<FileKey, FileKeyError> {
    let ad = associated_data(group, wrap.member)?;
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&wrap.sealed[..NONCE_LEN]);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&wrap.sealed[NONCE_LEN + FILE_KEY_LEN..]);
    let mut plain = Zeroizing::new([0u8; FILE_KEY_LEN]);
    plain.copy_from_slice(&wrap.sealed[NONCE_LEN..NONCE_LEN + FILE_KEY_LEN]);
    cipher(individual_key)
        .decrypt_inout_detached(&Array(nonce), &ad, plain.as_mut_slice().into(), &Array(tag))
        .map_err(|_| FileKeyError::Unwrap { member: wrap.member, group: group.chars().take(80).collect() })?;
    Ok(FileKey::from_bytes(*plain))
}

/// The AEAD under the wrapping key derived from `individual_key`.
fn cipher(individual_key: &SecretKey) -> ChaCha20Poly1305 {
    let hk = Hkdf::<Sha256>::new(None, individual_key.as_bytes());
    let mut okm = Zeroizing::new([0u8; 32]);
    // HKDF-SHA256 refuses only outputs over 8160 bytes.
    if hk.expand(WRAP_INFO, okm.as_mut_slice()).is_err() {
        unreachable!("HKDF refused a 32-byte output");
    }
    ChaCha20Poly1305::new(&Array(*okm))
}

/// `WRAP_CONTEXT | group length (u16) | group | member (u64)`.
fn associated_data(group: &str, member: u64) -> Result<Vec<u8>, FileKeyError> {
    let len = u16::try_from(group.len())
        .map_err(|_| FileKeyError::GroupName { len: group.len(), max: usize::from(u16::MAX) })?;
    let mut ad = Vec::with_capacity(WRAP_CONTEXT.len() + 2 + group.len() + 8);
    ad.extend_from_slice(WRAP_CONTEXT);
    ad.extend_from_slice(&len.to_be_bytes());
    ad.extend_from_slice(group.as_bytes());
    ad.extend_from_slice(&member.to_be_bytes());
    Ok(ad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn individual(i: u8) -> SecretKey {
        SecretKey::from_bytes([i; 32])
    }

    #[test]
    fn a_wrap_opens_for_its_member_only() {
        let key = FileKey::generate().unwrap();
        let w = wrap(&individual(1), "lsim", 7, &key).unwrap();
        assert_eq!(w.member, 7);
        assert_eq!(unwrap(&individual(1), "lsim", &w), Ok(key.clone()));
        assert_ne!(&w.sealed[NONCE_LEN..NONCE_LEN + FILE_KEY_LEN], key.as_bytes(), "the key is not in the clear");

        let refused = |r: Result<FileKey, FileKeyError>| matches!(r, Err(FileKeyError::Unwrap { .. }));
        assert!(refused(unwrap(&individual(2), "lsim", &w)), "another member's individual key");
        assert!(refused(unwrap(&individual(1), "lsim2", &w)), "another group");
        assert!(refused(unwrap(&individual(1), "", &w)), "no group");
        assert!(refused(unwrap(&individual(1), "lsim", &Wrap { member: 8, ..w.clone() })), "another member id");
        // The wrapping key is not the individual key itself.
        let direct = ChaCha20Poly1305::new(&Array(*individual(1).as_bytes()));
        let mut plain = [0u8; FILE_KEY_LEN];
        plain.copy_from_slice(&w.sealed[NONCE_LEN..NONCE_LEN + FILE_KEY_LEN]);
        let nonce = Array(<[u8; NONCE_LEN]>::try_from(&w.sealed[..NONCE_LEN]).unwrap());
        let tag = Array(<[u8; TAG_LEN]>::try_from(&w.sealed[NONCE_LEN + FILE_KEY_LEN..]).unwrap());
        let ad = associated_data("lsim", 7).unwrap();
        assert!(direct.decrypt_inout_detached(&nonce, &ad, (&mut plain[..]).into(), &tag).is_err());
    }

    #[test]
    fn two_wraps_of_one_key_differ() {
        let key = FileKey::from_bytes([9; 32]);
        let (a, b) = (wrap(&individual(1), "lsim", 7, &key).unwrap(), wrap(&individual(1), "lsim", 7, &key).unwrap());
        assert_ne!(a.sealed, b.sealed, "fresh nonce each time");
        assert_eq!(unwrap(&individual(1), "lsim", &a), unwrap(&individual(1), "lsim", &b));
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let key = FileKey::from_bytes([3; 32]);
        let encoded = wrap(&individual(4), "lsim", 42, &key).unwrap().encode();
        assert_eq!(unwrap(&individual(4), "lsim", &Wrap::decode(&encoded).unwrap()), Ok(key));
        for bit in 0..encoded.len() * 8 {
            let mut b = encoded;
            b[bit / 8] ^= 1 << (bit % 8);
            let w = Wrap::decode(&b).unwrap();
            assert!(
                matches!(unwrap(&individual(4), "lsim", &w), Err(FileKeyError::Unwrap { .. })),
                "bit {bit} flipped and the wrap still opened"
            );
        }
    }

    #[test]
    fn keys_never_print_and_long_groups_are_refused() {
        let key = FileKey::from_bytes([0xab; 32]);
        assert_eq!(format!("{key:?}"), "FileKey(..)");
        assert_ne!(FileKey::generate().unwrap(), FileKey::generate().unwrap());
        let long = "g".repeat(usize::from(u16::MAX) + 1);
        assert_eq!(
            wrap(&individual(1), &long, 1, &key),
            Err(FileKeyError::GroupName { len: long.len(), max: usize::from(u16::MAX) })
        );
        let w = wrap(&individual(1), "lsim", 1, &key).unwrap();
        assert!(matches!(unwrap(&individual(1), &long, &w), Err(FileKeyError::GroupName { .. })));
        assert_eq!(Wrap::decode(&[0u8; WRAP_ENCODED_LEN - 1]), Err(FileKeyError::Length { len: WRAP_ENCODED_LEN - 1 }));
    }

    proptest! {
        #[test]
        fn decode_never_panics(b in prop::collection::vec(any::<u8>(), 0..200)) {
            match Wrap::decode(&b) {
                Ok(w) => prop_assert_eq!(&w.encode()[..], &b[..]),
                Err(e) => prop_assert_eq!(e, FileKeyError::Length { len: b.len() }),
            }
        }

        #[test]
        fn wraps_round_trip(member in any::<u64>(), sealed in prop::collection::vec(any::<u8>(), WRAP_LEN)) {
            let mut s = [0u8; WRAP_LEN];
            s.copy_from_slice(&sealed);
            let w = Wrap { member, sealed: s };
            prop_assert_eq!(Wrap::decode(&w.encode()), Ok(w));
        }

        #[test]
        fn any_key_round_trips(key in any::<[u8; 32]>(), member in any::<u64>(), group in "\\PC{0,40}") {
            let k = FileKey::from_bytes(key);
            let w = wrap(&individual(5), &group, member, &k).unwrap();
            prop_assert_eq!(unwrap(&individual(5), &group, &w), Ok(k));
        }
    }
}
