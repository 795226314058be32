//! What a file key encrypts: a private chat message sealed whole, and a
//! restricted file's name and bytes as a keystream.
//!
//! Owns the two constructions under a [`FileKey`] and nothing else:
//!
//! - [`seal`] / [`open`]: ChaCha20-Poly1305 under the file key, nonce 0,
//!   with the caller's associated data (a private message binds its whole
//!   header, `im`'s `group::private`);
//! - [`Keystream`]: raw ChaCha20 under the file key, nonce 0 for a file's
//!   bytes and nonce 1 for its name, seekable so a repair can re-encrypt
//!   any range (`im`'s `group::envelope`, format LSF3).
//!
//! The fixed nonces are safe because a file key is drawn for one message or
//! one file and never used for another; keeping that true is the caller's
//! business. It does not make, wrap or unwrap file keys (`filekey` does), it
//! knows no framing of what it encrypts, and it must not touch the group's
//! key tree or its epoch keys.

use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use thiserror::Error;
use zeroize::ZeroizeOnDrop;

use crate::filekey::FileKey;

/// Bytes [`seal`] adds to its plaintext: the Poly1305 tag.
pub const TAG_LEN: usize = 16;
/// Bytes of keystream under one key and nonce: ChaCha20's 2^32 blocks of
/// 64 bytes (256 GiB). A restricted file is at most this long.
pub const MAX_KEYSTREAM: u64 = 64 << 32;

const SEAL_NONCE: [u8; 12] = [0; 12];
/// The last nonce byte of a file's bytes and of its name.
const BYTES_NONCE: u8 = 0;
const NAME_NONCE: u8 = 1;

/// Why something did not encrypt or decrypt under a file key.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum FileCipherError {
    /// A plaintext longer than ChaCha20-Poly1305 seals under one nonce.
    #[error("{len} bytes are more than ChaCha20-Poly1305 seals under one nonce")]
    TooLong {
        /// The plaintext's length.
        len: usize,
    },
    /// Not sealed under this key and associated data, or altered.
    #[error("sealed bytes do not open under this file key and associated data")]
    Open,
    /// A seek or an application past the keystream's end.
    #[error("past the end of a file key's keystream ({MAX_KEYSTREAM} bytes)")]
    KeystreamEnd,
}

/// `plaintext` sealed under `key` (nonce 0), binding `aad`: the
/// ciphertext followed by its [`TAG_LEN`]-byte tag.
pub fn seal(key: &FileKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, FileCipherError> {
    aead(key)
        .encrypt(&SEAL_NONCE.into(), Payload { msg: plaintext, aad })
        .map_err(|_| FileCipherError::TooLong { len: plaintext.len() })
}

/// The plaintext of `sealed` (ciphertext and tag), if it was sealed under
/// `key` with `aad` and not altered since.
pub fn open(key: &FileKey, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, FileCipherError> {
    aead(key).decrypt(&SEAL_NONCE.into(), Payload { msg: sealed, aad }).map_err(|_| FileCipherError::Open)
}

fn aead(key: &FileKey) -> ChaCha20Poly1305 {
    ChaCha20Poly1305::new(&(*key.as_bytes()).into())
}

/// The ChaCha20 keystream of a restricted file's bytes or name, XORed onto
/// buffers in place (encrypting and decrypting alike). Its state is
/// zeroized on drop; it never prints.
pub struct Keystream(ChaCha20);

impl Keystream {
    /// The keystream of a file's bytes (nonce 0), at position 0.
    pub fn for_bytes(key: &FileKey) -> Keystream {
        Keystream::with_nonce(key, BYTES_NONCE)
    }

    /// The keystream of a file's name (nonce 1), at position 0.
    pub fn for_name(key: &FileKey) -> Keystream {
        Keystream::with_nonce(key, NAME_NONCE)
    }

    fn with_nonce(key: &FileKey, last: u8) -> Keystream {
        let mut nonce = [0u8; 12];
        nonce[11] = last;
        Keystream(ChaCha20::new(&(*key.as_bytes()).into(), &nonce.into()))
    }

    /// Moves to byte `pos` of the keystream.
    pub fn seek(&mut self, pos: u64) -> Result<(), FileCipherError> {
        self.0.try_seek(pos).map_err(|_| FileCipherError::KeystreamEnd)
    }

    /// XORs the next `buf.len()` bytes of the keystream onto `buf`; refused
    /// (and `buf` left as it was) if they run past the keystream's end.
    pub fn apply(&mut self, buf: &mut [u8]) -> Result<(), FileCipherError> {
        self.0.try_apply_keystream(buf).map_err(|_| FileCipherError::KeystreamEnd)
    }
}

impl std::fmt::Debug for Keystream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keystream(..)")
    }
}

// Its only field zeroizes itself on drop (chacha20's `zeroize` feature).
impl ZeroizeOnDrop for Keystream {}
const _: () = {
    fn zeroized_on_drop<T: ZeroizeOnDrop>() {}
    let _ = zeroized_on_drop::<ChaCha20>;
};

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    fn key(b: u8) -> FileKey {
        FileKey::from_bytes([b; 32])
    }

    #[test]
    fn a_sealed_message_opens_under_its_key_and_aad_only() {
        let msg = b"a signed chat message stands here";
        let sealed = seal(&key(1), b"header", msg).unwrap();
        assert_eq!(sealed.len(), msg.len() + TAG_LEN);
        assert!(!sealed.windows(8).any(|w| w == b"a signed"), "the text is not in the clear");
        assert_eq!(open(&key(1), b"header", &sealed), Ok(msg.to_vec()));
        assert_eq!(open(&key(2), b"header", &sealed), Err(FileCipherError::Open), "another key");
        assert_eq!(open(&key(1), b"headex", &sealed), Err(FileCipherError::Open), "changed aad");
        assert_eq!(open(&key(1), b"", &sealed), Err(FileCipherError::Open), "no aad");
        for bit in 0..sealed.len() * 8 {
            let mut bad = sealed.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(open(&key(1), b"header", &bad), Err(FileCipherError::Open), "bit {bit} flipped");
        }
        for n in 0..sealed.len() {
            assert_eq!(open(&key(1), b"header", &sealed[..n]), Err(FileCipherError::Open), "cut at {n}");
        }
        assert_eq!(open(&key(1), b"", &seal(&key(1), b"", b"").unwrap()), Ok(Vec::new()));
    }

    /// Pins the construction (RFC 8439 ChaCha20 and ChaCha20-Poly1305 under
    /// the nonces the module doc names), so a refactor cannot change the
    /// bytes members already exchange.
    #[test]
    fn the_constructions_are_the_ones_on_the_wire() {
        let k = key(7);
        let mut nonce = [0u8; 12];
        let direct = ChaCha20Poly1305::new(&[7u8; 32].into());
        let sealed = direct.encrypt(&nonce.into(), Payload { msg: b"hello", aad: b"ad" }).unwrap();
        assert_eq!(seal(&k, b"ad", b"hello").unwrap(), sealed);
        for (last, mut stream) in [(0u8, Keystream::for_bytes(&k)), (1, Keystream::for_name(&k))] {
            nonce[11] = last;
            let mut expected = [0u8; 100];
            ChaCha20::new(&[7u8; 32].into(), &nonce.into()).apply_keystream(&mut expected);
            let mut got = [0u8; 100];
            stream.apply(&mut got).unwrap();
            assert_eq!(got, expected, "nonce {last}");
        }
        let (mut name, mut bytes) = ([0u8; 16], [0u8; 16]);
        Keystream::for_name(&k).apply(&mut name).unwrap();
        Keystream::for_bytes(&k).apply(&mut bytes).unwrap();
        assert_ne!(name, bytes, "name and bytes never share a keystream");
    }

    #[test]
    fn the_keystream_ends_where_chacha20_does_and_never_prints() {
        let mut s = Keystream::for_bytes(&key(3));
        assert_eq!(format!("{s:?}"), "Keystream(..)");
        s.seek(MAX_KEYSTREAM - 128).unwrap();
        s.apply(&mut [0u8; 64]).unwrap();
        assert_eq!(s.seek(MAX_KEYSTREAM + 1), Err(FileCipherError::KeystreamEnd));
        s.seek(MAX_KEYSTREAM - 128).unwrap();
        let mut over = [0u8; 256];
        assert_eq!(s.apply(&mut over), Err(FileCipherError::KeystreamEnd));
        assert_eq!(over, [0u8; 256], "a refused application leaves the buffer alone");
    }

    proptest! {
        #[test]
        fn seal_then_open_round_trips(k in any::<[u8; 32]>(), aad in prop::collection::vec(any::<u8>(), 0..64),
                                      msg in prop::collection::vec(any::<u8>(), 0..512)) {
            let k = FileKey::from_bytes(k);
            let sealed = seal(&k, &aad, &msg).unwrap();
            prop_assert_eq!(open(&k, &aad, &sealed), Ok(msg));
        }

        /// A seek then an application gives the bytes a sequential
        /// application gives at that offset, as a repair re-reads a range.
        #[test]
        fn a_seek_equals_reading_in_order(k in any::<[u8; 32]>(), at in 0usize..1000, len in 0usize..300) {
            let k = FileKey::from_bytes(k);
            let mut whole = vec![0u8; at + len];
            let mut s = Keystream::for_bytes(&k);
            for chunk in whole.chunks_mut(37) {
                s.apply(chunk).unwrap();
            }
            let mut part = vec![0u8; len];
            let mut s = Keystream::for_bytes(&k);
            s.apply(&mut [0u8; 5]).unwrap();
            s.seek(at as u64).unwrap();
            s.apply(&mut part).unwrap();
            prop_assert_eq!(&part[..], &whole[at..]);
            // Applying twice gives the plaintext back.
            let mut s = Keystream::for_bytes(&k);
            s.seek(at as u64).unwrap();
            s.apply(&mut part).unwrap();
            prop_assert!(part.iter().all(|&b| b == 0));
        }
    }
}
