//! The AEAD suites: AES-256-GCM and ChaCha20-Poly1305.
//!
//! Owns `AeadCipher`, one generic implementation of `Cipher` for both AEADs.
//! Packets: the 12-byte nonce is the transport's `Nonce` (node id, per-node
//! counter; unique per epoch, which the transport guarantees), the header is
//! the associated data, the payload is encrypted in place and the 16-byte tag
//! is the trailer. Messages: a fresh subkey per message (see
//! `AeadCipher::encrypt_message`). It knows nothing of epochs beyond the
//! `EpochKeys` it is handed.

use std::marker::PhantomData;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::array::Array;
use aes_gcm::aead::consts::{U12, U16, U32};
use aes_gcm::aead::{AeadCore, AeadInOut, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use lsim_transport::seal::Nonce;

use super::epoch_keys::EpochKeys;
use super::id::SuiteId;
use super::kdf::{MESSAGE_SALT_LEN, message_subkey};
use super::{Cipher, CipherError, check_len, check_suite, check_trailer};
use crate::key::random_bytes;

/// Bytes of AEAD tag (the whole packet trailer).
pub(crate) const TAG_LEN: usize = 16;

/// How many epochs' packet keys a cipher keeps scheduled (a `GroupSeal` holds the
/// current epoch and, by default, three older ones).
const CACHED_KEY_SETS: usize = 8;

/// An AEAD with a 256-bit key, 96-bit nonce and 128-bit tag, and its plaintext limit.
pub(crate) trait AeadAlgorithm:
    AeadInOut + AeadCore<NonceSize = U12, TagSize = U16> + KeyInit<KeySize = U32> + Send + 'static
{
    /// Longest plaintext one (key, nonce) pair may encrypt.
    const MAX_PLAINTEXT: u64;
}

impl AeadAlgorithm for Aes256Gcm {
    /// NIST SP 800-38D: 2^39 - 256 bits.
    const MAX_PLAINTEXT: u64 = (1 << 36) - 32;
}

impl AeadAlgorithm for ChaCha20Poly1305 {
    /// RFC 8439 §2.8: 2^32 - 1 blocks of 64 bytes.
    const MAX_PLAINTEXT: u64 = (1 << 38) - 64;
}

/// AES-256-GCM or ChaCha20-Poly1305 behind `Cipher`.
pub(crate) struct AeadCipher<A: AeadAlgorithm> {
    suite: SuiteId,
    /// Packet-key schedules by `EpochKeys::id`, oldest first.
    scheduled: Vec<(u64, A)>,
    _alg: PhantomData<A>,
}

impl<A: AeadAlgorithm> AeadCipher<A> {
    /// A cipher for `suite`, which must be the suite `A` implements.
    pub(crate) fn new(suite: SuiteId) -> AeadCipher<A> {
        AeadCipher { suite, scheduled: Vec::new(), _alg: PhantomData }
    }

    /// The packet-key schedule of `keys`, computed once per key set rather than per
    /// packet (AES key expansion and the GHASH key cost about as much as sealing
    /// a short packet).
    fn packet_aead(&mut self, keys: &EpochKeys) -> &A {
        let at = match self.scheduled.iter().position(|(id, _)| *id == keys.id()) {
            Some(at) => at,
            None => {
                if self.scheduled.len() >= CACHED_KEY_SETS {
                    self.scheduled.remove(0);
                }
                self.scheduled.push((keys.id(), A::new(&Array(*keys.seal_key().as_bytes()))));
                self.scheduled.len() - 1
            }
        };
        &self.scheduled[at].1
    }

    /// Shortest valid message: the salt and the tag around an empty ciphertext.
    const MIN_MESSAGE: usize = MESSAGE_SALT_LEN + TAG_LEN;

    /// The one-message AEAD for `salt`.
    fn message_aead(keys: &EpochKeys, salt: &[u8]) -> A {
        let key = message_subkey::<32>(keys, salt);
        A::new(&Array(*key))
    }
}

impl<A: AeadAlgorithm> Cipher for AeadCipher<A> {
    fn suite(&self) -> SuiteId {
        self.suite
    }

    fn trailer_len(&self) -> usize {
        TAG_LEN
    }

    fn seal_packet(
        &mut self,
        keys: &EpochKeys,
        nonce: Nonce,
        header: &[u8],
        payload: &mut [u8],
        trailer: &mut [u8],
    ) -> Result<(), CipherError> {
        let suite = self.suite;
        check_suite(suite, keys)?;
        check_trailer(suite, trailer.len())?;
        check_len(suite, "packet", payload.len(), A::MAX_PLAINTEXT)?;
        let aead = self.packet_aead(keys);
        let tag = aead.encrypt_inout_detached(&Array(nonce.to_bytes()), header, payload.into()).map_err(|_| {
            CipherError::TooLong { suite, what: "packet", len: payload.len() as u64, max: A::MAX_PLAINTEXT }
        })?;
        trailer.copy_from_slice(&tag);
        Ok(())
    }

    fn open_packet(
        &mut self,
        keys: &EpochKeys,
        nonce: Nonce,
        header: &[u8],
        payload: &mut [u8],
        trailer: &[u8],
    ) -> Result<(), CipherError> {
        check_suite(self.suite, keys)?;
        let tag: [u8; TAG_LEN] = trailer.try_into().map_err(|_| CipherError::TrailerLength {
            suite: self.suite,
            len: trailer.len(),
            expected: TAG_LEN,
        })?;
        let aead = self.packet_aead(keys);
        aead.decrypt_inout_detached(&Array(nonce.to_bytes()), header, payload.into(), &Array(tag))
            .map_err(|_| CipherError::BadTag)
    }

    /// Output: `salt (32 random bytes) || ciphertext || tag (16)`.
    ///
    /// Each message gets its own key, `HKDF-SHA256(salt, data key, "lsim/v1/message"
    /// || 0x00 || suite name)`, used once with the all-zero nonce. Why not a random
    /// 96-bit nonce under the data key: NIST SP 800-38D caps random nonces at 2^32
    /// messages per key (collision chance about q^2 / 2^97), and an epoch has no
    /// message count we control. With a 256-bit random salt two messages share a
    /// (key, nonce) pair with probability about q^2 / 2^257: no practical limit.
    /// The cost, one HKDF (about a microsecond), is small beside a chat message's trip.
    fn encrypt_message(&self, keys: &EpochKeys, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CipherError> {
        check_suite(self.suite, keys)?;
        check_len(self.suite, "message", plaintext.len(), A::MAX_PLAINTEXT)?;
        let body_end = MESSAGE_SALT_LEN + plaintext.len();
        let mut out = vec![0u8; body_end + TAG_LEN];
        random_bytes(&mut out[..MESSAGE_SALT_LEN])?;
        let aead = Self::message_aead(keys, &out[..MESSAGE_SALT_LEN]);
        let body = &mut out[MESSAGE_SALT_LEN..body_end];
        body.copy_from_slice(plaintext);
        let tag =
            aead.encrypt_inout_detached(&Array::default(), aad, body.into()).map_err(|_| CipherError::TooLong {
                suite: self.suite,
                what: "message",
                len: plaintext.len() as u64,
                max: A::MAX_PLAINTEXT,
            })?;
        out[body_end..].copy_from_slice(&tag);
        Ok(out)
    }

    fn decrypt_message(&self, keys: &EpochKeys, aad: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, CipherError> {
        check_suite(self.suite, keys)?;
        if ciphertext.len() < Self::MIN_MESSAGE {
            return Err(CipherError::Truncated { suite: self.suite, len: ciphertext.len(), min: Self::MIN_MESSAGE });
        }
        let (salt, rest) = ciphertext.split_at(MESSAGE_SALT_LEN);
        let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| CipherError::BadTag)?;
        let aead = Self::message_aead(keys, salt);
        let mut plaintext = body.to_vec();
        aead.decrypt_inout_detached(&Array::default(), aad, plaintext.as_mut_slice().into(), &Array(tag))
            .map_err(|_| CipherError::BadTag)?;
        Ok(plaintext)
    }

    fn forget(&mut self, keys: &EpochKeys) {
        self.scheduled.retain(|(id, _)| *id != keys.id());
    }
}
