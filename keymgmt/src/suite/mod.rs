//! The group cipher suites and the packet seal built from them.
//!
//! Owns: the suite names (`SuiteId`), the per-epoch key schedule
//! (`EpochKeys`), the `Cipher` trait behind which Blowfish-CBC-HMAC-SHA256,
//! AES-256-GCM and ChaCha20-Poly1305 are interchangeable, and `GroupSeal`, the
//! transport's `Seal` for one group. It must not touch the key tree, rekey
//! messages or the member's key store (they hand it group keys and epochs),
//! nor the transport's packet format (it sees a header, a payload and a
//! trailer, nothing more).
//!
//! ```
//! use lsim_keymgmt::key::SecretKey;
//! use lsim_keymgmt::suite::{GroupSeal, SuiteId};
//! use lsim_transport::seal::{Nonce, Seal};
//!
//! let suite: SuiteId = "chacha20-poly1305".parse()?;
//! let group_key = SecretKey::from_bytes([7; 32]);
//! let mut sender = GroupSeal::new(suite, 1, &group_key);
//! let mut receiver = GroupSeal::new(suite, 1, &group_key);
//!
//! let nonce = Nonce { node: 3, seq: 42 };
//! let mut payload = *b"twenty-one byte body!";
//! let mut tag = vec![0; sender.tag_len()];
//! sender.seal(1, nonce, b"header", &mut payload, &mut tag)?;
//! receiver.open(1, nonce, b"header", &mut payload, &tag)?;
//! assert_eq!(&payload, b"twenty-one byte body!");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use lsim_transport::seal::Nonce;
use thiserror::Error;

use crate::key::RandomError;

mod aead;
mod blowfish;
mod epoch_keys;
mod group_seal;
mod id;
mod kdf;

#[cfg(test)]
mod tests;

pub use blowfish::{BLOWFISH_MAX_MESSAGE, BLOWFISH_MAX_PAYLOAD, BLOWFISH_PACKETS_PER_SUBKEY};
pub use epoch_keys::EpochKeys;
pub use group_seal::{DEFAULT_PAST_EPOCHS, GroupSeal, InstallError, MAX_HISTORY_EPOCHS};
pub use id::{SuiteId, SuiteIdError};

/// Why a packet or message could not be sealed or opened.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CipherError {
    /// The keys were derived for another suite than the cipher's.
    #[error("keys of suite {keys} given to the {cipher} cipher")]
    WrongSuite {
        /// The suite the keys were derived for.
        keys: SuiteId,
        /// The cipher's suite.
        cipher: SuiteId,
    },
    /// The trailer buffer does not have the suite's trailer length.
    #[error("{suite} needs a {expected}-byte trailer, got {len} bytes")]
    TrailerLength {
        /// The suite.
        suite: SuiteId,
        /// The trailer's length.
        len: usize,
        /// The suite's trailer length.
        expected: usize,
    },
    /// The payload or message is longer than the suite protects under one key.
    #[error("{suite} protects at most {max} bytes per {what}, got {len}")]
    TooLong {
        /// The suite.
        suite: SuiteId,
        /// `"packet"` or `"message"`.
        what: &'static str,
        /// The length given.
        len: u64,
        /// The suite's limit.
        max: u64,
    },
    /// A message is too short to be one: it cannot hold the salt, ciphertext and tag.
    #[error("{suite} message of {len} bytes is truncated: at least {min} bytes expected")]
    Truncated {
        /// The suite.
        suite: SuiteId,
        /// The message's length.
        len: usize,
        /// The shortest valid message.
        min: usize,
    },
    /// The tag did not verify: forged, damaged, or sealed under other keys.
    #[error("authentication failed")]
    BadTag,
    /// A message names an epoch whose keys are not held.
    #[error("no key for epoch {0}")]
    UnknownEpoch(u32),
    /// No randomness for an IV or salt.
    #[error(transparent)]
    Random(#[from] RandomError),
}

/// A cipher suite: seals transport packets in place and encrypts standalone messages.
///
/// Every method takes the `EpochKeys` to use, so one cipher serves every epoch
/// of its suite; it may cache key schedules derived from them (hence `&mut self`
/// for packets), keyed by the derivation, never by the epoch number alone.
/// No method panics on any input: wrong lengths, truncated or forged data give
/// a `CipherError`.
pub trait Cipher: Send {
    /// The suite this cipher implements.
    fn suite(&self) -> SuiteId;

    /// Bytes of trailer every packet carries after its payload.
    fn trailer_len(&self) -> usize;

    /// Encrypts `payload` in place (its length is unchanged) and writes the trailer.
    ///
    /// `header` is authenticated, not encrypted. `nonce` must be unique per packet
    /// and epoch (the transport's node id and packet counter).
    fn seal_packet(
        &mut self,
        keys: &EpochKeys,
        nonce: Nonce,
        header: &[u8],
        payload: &mut [u8],
        trailer: &mut [u8],
    ) -> Result<(), CipherError>;

    /// Verifies the trailer, then decrypts `payload` in place. On error `payload`
    /// may hold garbage and must not be used.
    fn open_packet(
        &mut self,
        keys: &EpochKeys,
        nonce: Nonce,
        header: &[u8],
        payload: &mut [u8],
        trailer: &[u8],
    ) -> Result<(), CipherError>;

    /// Encrypts a standalone message under the epoch's data key, authenticating `aad`
    /// with it. The output carries its own random salt: no nonce to manage.
    fn encrypt_message(&self, keys: &EpochKeys, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CipherError>;

    /// Decrypts what `encrypt_message` produced under the same keys and `aad`.
    fn decrypt_message(&self, keys: &EpochKeys, aad: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, CipherError>;

    /// Drops any state cached for `keys` (called when their epoch leaves the window).
    fn forget(&mut self, keys: &EpochKeys);
}

impl SuiteId {
    /// A fresh cipher for this suite.
    pub fn cipher(self) -> Box<dyn Cipher> {
        match self {
            SuiteId::BlowfishCbcHmacSha256 => Box::new(blowfish::BlowfishCbcHmac::new()),
            SuiteId::Aes256Gcm => Box::new(aead::AeadCipher::<aes_gcm::Aes256Gcm>::new(self)),
            SuiteId::ChaCha20Poly1305 => Box::new(aead::AeadCipher::<chacha20poly1305::ChaCha20Poly1305>::new(self)),
        }
    }

    /// Bytes of trailer each packet carries under this suite (16 for the AEADs' tag;
    /// 24 for Blowfish: an 8-byte IV and a 16-byte truncated HMAC).
    pub fn trailer_len(self) -> usize {
        match self {
            SuiteId::BlowfishCbcHmacSha256 => blowfish::TRAILER_LEN,
            SuiteId::Aes256Gcm | SuiteId::ChaCha20Poly1305 => aead::TAG_LEN,
        }
    }
}

/// Refuses keys derived for another suite.
fn check_suite(cipher: SuiteId, keys: &EpochKeys) -> Result<(), CipherError> {
    if keys.suite() == cipher { Ok(()) } else { Err(CipherError::WrongSuite { keys: keys.suite(), cipher }) }
}

/// Refuses a trailer buffer of the wrong length.
fn check_trailer(suite: SuiteId, len: usize) -> Result<(), CipherError> {
    let expected = suite.trailer_len();
    if len == expected { Ok(()) } else { Err(CipherError::TrailerLength { suite, len, expected }) }
}

/// Refuses data longer than `max`.
fn check_len(suite: SuiteId, what: &'static str, len: usize, max: u64) -> Result<(), CipherError> {
    let len = u64::try_from(len).unwrap_or(u64::MAX);
    if len <= max { Ok(()) } else { Err(CipherError::TooLong { suite, what, len, max }) }
}
