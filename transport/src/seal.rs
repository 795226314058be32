//! The boundary between the transport and the keys above it.
//!
//! Owns the `Seal` trait: the transport calls `seal` on every packet it sends
//! and `open` on every packet it receives, with the packet's fixed header as
//! associated data. The transport never sees a key and never chooses a cipher;
//! the key-management crate implements this trait with the group's suite.

use thiserror::Error;

/// Why a packet could not be sealed or opened.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SealError {
    /// The packet names a key epoch this seal does not hold (too old, or not yet known).
    #[error("no key for epoch {0}")]
    UnknownEpoch(u32),
    /// The tag did not verify: forged, damaged, or sealed under another key.
    #[error("authentication failed")]
    BadTag,
    /// The seal refuses to protect more data under the current key (e.g. a 64-bit
    /// block cipher's byte limit); the layer above must rekey.
    #[error("key exhausted: {0}")]
    Exhausted(String),
}

/// Authenticated encryption of a packet, supplied by the layer above.
///
/// `header` is authenticated but sent in the clear; `payload` is encrypted in
/// place; `tag` has exactly `tag_len()` bytes. `nonce` is unique for every
/// packet a node seals under one epoch (the transport guarantees this: it is
/// the node id and a per-node packet counter).
pub trait Seal {
    /// Bytes of tag appended to every packet.
    fn tag_len(&self) -> usize;
    /// The epoch new packets are sealed under.
    fn current_epoch(&self) -> u32;
    /// Encrypts `payload` in place and writes the tag.
    fn seal(
        &mut self,
        epoch: u32,
        nonce: Nonce,
        header: &[u8],
        payload: &mut [u8],
        tag: &mut [u8],
    ) -> Result<(), SealError>;
    /// Verifies the tag and decrypts `payload` in place. On error `payload` may hold garbage
    /// and must not be used.
    fn open(
        &mut self,
        epoch: u32,
        nonce: Nonce,
        header: &[u8],
        payload: &mut [u8],
        tag: &[u8],
    ) -> Result<(), SealError>;
}

/// What makes a packet's seal unique: the sending node and its packet counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Nonce {
    /// The node that sealed the packet.
    pub node: u32,
    /// The node's packet counter (never repeats for one node and epoch).
    pub seq: u64,
}

impl Nonce {
    /// The 12-byte form used by the AEAD suites: node id then counter, big-endian.
    pub fn to_bytes(self) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[..4].copy_from_slice(&self.node.to_be_bytes());
        n[4..].copy_from_slice(&self.seq.to_be_bytes());
        n
    }
}

impl<S: Seal + ?Sized> Seal for Box<S> {
    fn tag_len(&self) -> usize {
        (**self).tag_len()
    }
    fn current_epoch(&self) -> u32 {
        (**self).current_epoch()
    }
    fn seal(
        &mut self,
        epoch: u32,
        nonce: Nonce,
        header: &[u8],
        payload: &mut [u8],
        tag: &mut [u8],
    ) -> Result<(), SealError> {
        (**self).seal(epoch, nonce, header, payload, tag)
    }
    fn open(
        &mut self,
        epoch: u32,
        nonce: Nonce,
        header: &[u8],
        payload: &mut [u8],
        tag: &[u8],
    ) -> Result<(), SealError> {
        (**self).open(epoch, nonce, header, payload, tag)
    }
}

/// A keyed checksum seal for this crate's tests: not cryptography, but any
/// change to header, body, tag, epoch or nonce is caught. Here rather than in
/// `lsim-testsupport`: a unit test needs the `Seal` of its own build of this
/// crate, and a dev-dependency would bring it another build's.
#[cfg(test)]
#[derive(Clone)]
pub(crate) struct KeyedSum(pub u64);

#[cfg(test)]
impl KeyedSum {
    fn mac(&self, epoch: u32, nonce: Nonce, header: &[u8], payload: &[u8]) -> [u8; 8] {
        let mut h = self.0 ^ u64::from(epoch) ^ (u64::from(nonce.node) << 32) ^ nonce.seq;
        for &b in header.iter().chain(payload) {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        h.to_be_bytes()
    }
}

#[cfg(test)]
impl Seal for KeyedSum {
    fn tag_len(&self) -> usize {
        8
    }
    fn current_epoch(&self) -> u32 {
        0
    }
    fn seal(&mut self, e: u32, n: Nonce, h: &[u8], p: &mut [u8], t: &mut [u8]) -> Result<(), SealError> {
        t.copy_from_slice(&self.mac(e, n, h, p));
        Ok(())
    }
    fn open(&mut self, e: u32, n: Nonce, h: &[u8], p: &mut [u8], t: &[u8]) -> Result<(), SealError> {
        if self.mac(e, n, h, p) == t { Ok(()) } else { Err(SealError::BadTag) }
    }
}
