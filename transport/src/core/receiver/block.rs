//! One object's blocks at a receiver: symbols collected, decoded, handed out.
//!
//! Owns `InBlock` (a block's source symbols in place, its repair symbols,
//! decode attempts and its NACK state), `InObject` (an object's blocks and
//! how far it was delivered) and `Held` (where a block stands, for a
//! repairer). RaptorQ decoding happens here. It knows nothing of timers,
//! feedback or senders.

use std::collections::BTreeMap;

use raptorq::{EncodingPacket, ObjectTransmissionInformation, PayloadId, SourceBlockDecoder};

use super::nack::Nack;
use crate::geometry::Geometry;
use crate::stats::{DropReason, Stats};
use crate::wire::{DataHeader, ObjectKind};

/// Where a block stands at a receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::core) enum Held {
    /// Never heard of the sender or the object, or it was given up.
    Unknown,
    /// Being collected (or known missing and being asked for).
    Coming,
    /// Decoded and handed out.
    Delivered,
}

pub(super) struct InBlock {
    /// Source symbols at their place; allocated with the first one.
    pub(super) buf: Vec<u8>,
    pub(super) padded: usize,
    pub(super) repair_bytes: usize,
    pub(super) have: Vec<bool>,
    pub(super) n_source: u32,
    pub(super) repairs: Vec<(u32, Vec<u8>)>,
    /// Symbols held when the last decode attempt failed.
    pub(super) failed_at: u32,
    pub(super) failures: u32,
    pub(super) decoded: Option<Vec<u8>>,
    pub(super) nack: Nack,
}

impl InBlock {
    pub(super) fn new(g: &Geometry, b: u32) -> InBlock {
        InBlock {
            buf: Vec::new(),
            padded: g.padded_block_len(b),
            repair_bytes: 0,
            have: vec![false; usize::from(g.symbols_in(b))],
            n_source: 0,
            repairs: Vec::new(),
            failed_at: 0,
            failures: 0,
            decoded: None,
            nack: Nack::Idle,
        }
    }
    /// Bytes this block holds in memory.
    pub(super) fn bytes(&self) -> usize {
        self.buf.len() + self.repair_bytes + self.decoded.as_ref().map_or(0, Vec::len)
    }
    /// Bytes adding this symbol would allocate.
    pub(super) fn growth(&self, source: bool, t: usize) -> usize {
        if !source {
            t
        } else if self.buf.is_empty() {
            self.padded
        } else {
            0
        }
    }
    pub(super) fn k(&self) -> u32 {
        self.have.len() as u32
    }
    pub(super) fn held(&self) -> u32 {
        self.n_source + self.repairs.len() as u32
    }
    /// Symbols still needed (at least one more after each failed decode).
    pub(super) fn needed(&self) -> u32 {
        (self.k() + self.failures).saturating_sub(self.held()).max(1)
    }
}

pub(super) struct InObject {
    pub(super) kind: ObjectKind,
    pub(super) geometry: Geometry,
    pub(super) next_deliver: u32,
    /// Blocks below this have been looked at for NACKing.
    pub(super) swept: u32,
    pub(super) blocks: BTreeMap<u32, InBlock>,
    /// Useful symbols held or decoded (at most K a block), and the
    /// twentieths of the object last reported (`ObjectProgress`).
    pub(super) held: u64,
    pub(super) reported: u64,
}

/// Adds one symbol to a block and decodes it once enough are held.
pub(super) fn add_symbol(block: &mut InBlock, h: &DataHeader, symbol: &[u8], stats: &mut Stats) {
    let t = symbol.len();
    let k = block.k();
    if h.esi < k {
        let i = h.esi as usize;
        if block.have[i] {
            stats.drop(DropReason::Stale);
            return;
        }
        if block.buf.is_empty() {
            block.buf = vec![0u8; block.padded];
        }
        block.have[i] = true;
        block.n_source += 1;
        block.buf[i * t..(i + 1) * t].copy_from_slice(symbol);
    } else {
        if block.repairs.iter().any(|(e, _)| *e == h.esi) {
            stats.drop(DropReason::Stale);
            return;
        }
        block.repairs.push((h.esi, symbol.to_vec()));
        block.repair_bytes += symbol.len();
    }
    if block.n_source == k {
        block.decoded = Some(std::mem::take(&mut block.buf));
        stats.blocks_decoded += 1;
        if !block.repairs.is_empty() {
            stats.blocks_repaired += 1;
        }
        block.repairs = Vec::new();
        block.repair_bytes = 0;
        return;
    }
    if block.held() >= k && block.held() > block.failed_at {
        match decode(block, h, t) {
            Some(data) => {
                block.decoded = Some(data);
                block.repairs = Vec::new();
                block.repair_bytes = 0;
                block.buf = Vec::new();
                stats.blocks_decoded += 1;
                stats.blocks_repaired += 1;
            }
            None => {
                block.failed_at = block.held();
                block.failures += 1;
                stats.decode_failures += 1;
            }
        }
    }
}

pub(super) fn decode(block: &InBlock, h: &DataHeader, t: usize) -> Option<Vec<u8>> {
    let sbn = h.block as u8;
    let oti = ObjectTransmissionInformation::new(block.padded as u64, t as u16, 1, 1, 1);
    let mut decoder = SourceBlockDecoder::new(sbn, &oti, block.padded as u64);
    let sources = block
        .have
        .iter()
        .enumerate()
        .filter(|(_, have)| **have)
        .map(|(i, _)| EncodingPacket::new(PayloadId::new(sbn, i as u32), block.buf[i * t..(i + 1) * t].to_vec()));
    let repairs = block.repairs.iter().map(|(esi, data)| EncodingPacket::new(PayloadId::new(sbn, *esi), data.clone()));
    decoder.decode(sources.chain(repairs))
}
