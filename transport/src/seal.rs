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
    /// Whether new traffic may go under `epoch`: the current one, or one
    /// still in its grace after a rekey. An epoch held only for repair of
    /// what was sent in it (a seal's history) is not live: the receiver
    /// takes nothing under it but repair of objects it knows of.
    fn is_live(&self, epoch: u32) -> bool {
        let _ = epoch;
        true
    }
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
    fn is_live(&self, epoch: u32) -> bool {
        (**self).is_live(epoch)
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

/// `KeyedSum` with epochs, for tests of what goes under which epoch: a
/// live window (`install`, `retire_before`) and a history of retired
/// epochs, like the group's seal. An epoch neither live nor in the history
/// is `UnknownEpoch`.
#[cfg(test)]
#[derive(Clone)]
pub(crate) struct EpochSum {
    key: u64,
    current: u32,
    live_from: u32,
    history: Vec<u32>,
}

#[cfg(test)]
impl EpochSum {
    /// Epoch 0 only.
    pub(crate) const fn new(key: u64) -> EpochSum {
        EpochSum { key, current: 0, live_from: 0, history: Vec::new() }
    }
    /// Only `epoch`: a member that joined at it.
    pub(crate) fn joined_at(key: u64, epoch: u32) -> EpochSum {
        EpochSum { key, current: epoch, live_from: epoch, history: Vec::new() }
    }
    /// `epoch` becomes current; the older live ones stay live (their grace).
    pub(crate) fn install(&mut self, epoch: u32) {
        self.current = epoch;
    }
    /// The live epochs before `epoch` go to the history.
    pub(crate) fn retire_before(&mut self, epoch: u32) {
        let epoch = epoch.min(self.current);
        self.history.extend(self.live_from..epoch);
        self.live_from = self.live_from.max(epoch);
    }
    fn holds(&self, epoch: u32) -> Result<u64, SealError> {
        let live = (self.live_from..=self.current).contains(&epoch);
        if live || self.history.contains(&epoch) {
            Ok(self.key ^ u64::from(epoch).rotate_left(17))
        } else {
            Err(SealError::UnknownEpoch(epoch))
        }
    }
}

#[cfg(test)]
impl Seal for EpochSum {
    fn tag_len(&self) -> usize {
        8
    }
    fn current_epoch(&self) -> u32 {
        self.current
    }
    fn is_live(&self, epoch: u32) -> bool {
        (self.live_from..=self.current).contains(&epoch)
    }
    fn seal(&mut self, e: u32, n: Nonce, h: &[u8], p: &mut [u8], t: &mut [u8]) -> Result<(), SealError> {
        t.copy_from_slice(&KeyedSum(self.holds(e)?).mac(e, n, h, p));
        Ok(())
    }
    fn open(&mut self, e: u32, n: Nonce, h: &[u8], p: &mut [u8], t: &[u8]) -> Result<(), SealError> {
        if KeyedSum(self.holds(e)?).mac(e, n, h, p) == t { Ok(()) } else { Err(SealError::BadTag) }
    }
}
