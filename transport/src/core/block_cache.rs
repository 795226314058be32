//! Blocks kept to answer repair from, and their RaptorQ encoders.
//!
//! Owns `BlockCache`: the padded bytes of source blocks under a byte bound,
//! each with an encoder built the first time a repair symbol of it is asked
//! for (an encoder holds about as much again as its block, and is counted):
//! over the bound, encoders go first (they can be built again), then
//! blocks, least recently used first. The sender keeps the blocks it reads
//! from its objects here, a repairer the blocks it decoded. It knows nothing
//! of rounds, budgets or the wire: which symbol to make is the planner's
//! (`repair`), how to frame it the caller's.

use std::collections::HashMap;
use std::hash::Hash;

use raptorq::{EncodingPacket, ObjectTransmissionInformation, SourceBlockEncoder};

struct Block {
    data: Vec<u8>,
    symbol_size: u16,
    /// The block's number in RaptorQ's payload id (the wire carries its own).
    number: u8,
    encoder: Option<SourceBlockEncoder>,
    used: u64,
}

impl Block {
    /// What it holds: the block, and about as much again once it has an encoder.
    fn cost(&self) -> usize {
        self.data.len() * if self.encoder.is_some() { 2 } else { 1 }
    }
}

/// Blocks under a byte bound, least recently used dropped first (see the module doc).
pub(super) struct BlockCache<K> {
    blocks: HashMap<K, Block>,
    bytes: usize,
    limit: usize,
    tick: u64,
}

impl<K: Copy + Eq + Hash> BlockCache<K> {
    /// An empty cache holding at most `limit` bytes (blocks a caller asks to
    /// keep may take it past that).
    pub(super) fn new(limit: usize) -> BlockCache<K> {
        BlockCache { blocks: HashMap::new(), bytes: 0, limit, tick: 0 }
    }

    /// Bytes held, encoders included.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Every key held, in no order.
    pub(super) fn keys(&self) -> impl Iterator<Item = &K> + '_ {
        self.blocks.keys()
    }

    /// True if `key` is held.
    pub(super) fn contains(&self, key: &K) -> bool {
        self.blocks.contains_key(key)
    }

    /// The bytes of `key`, marked as used now.
    pub(super) fn get(&mut self, key: &K) -> Option<&[u8]> {
        self.tick += 1;
        let b = self.blocks.get_mut(key)?;
        b.used = self.tick;
        Some(&b.data)
    }

    /// Holds `data` (a padded block of `symbol_size`-byte symbols, RaptorQ
    /// block `number`) as `key`, then drops other blocks, least recently
    /// used first, until the bound holds, never one `keep` names. Returns
    /// the keys dropped.
    pub(super) fn insert(
        &mut self,
        key: K,
        data: Vec<u8>,
        symbol_size: u16,
        number: u8,
        keep: impl Fn(&K) -> bool,
    ) -> Vec<K> {
        self.tick += 1;
        let block = Block { data, symbol_size, number, encoder: None, used: self.tick };
        self.bytes += block.cost();
        if let Some(old) = self.blocks.insert(key, block) {
            self.bytes -= old.cost();
        }
        self.evict(key, keep)
    }

    /// Repair symbol `index` of `key` (RaptorQ's repair index: ESI − K), and
    /// the keys dropped to make room for an encoder built for it (never one
    /// `keep` names). `None` if `key` is not held.
    pub(super) fn repair(&mut self, key: K, index: u32, keep: impl Fn(&K) -> bool) -> Option<(EncodingPacket, Vec<K>)> {
        self.tick += 1;
        let b = self.blocks.get_mut(&key)?;
        b.used = self.tick;
        let before = b.cost();
        let encoder = b.encoder.get_or_insert_with(|| {
            let oti = ObjectTransmissionInformation::new(b.data.len() as u64, b.symbol_size, 1, 1, 1);
            SourceBlockEncoder::new(b.number, &oti, &b.data)
        });
        let packet = encoder.repair_packets(index, 1).pop()?;
        let grown = b.cost() - before;
        self.bytes += grown;
        let dropped = if grown > 0 { self.evict(key, keep) } else { Vec::new() };
        Some((packet, dropped))
    }

    /// Keeps only the blocks `f` accepts.
    pub(super) fn retain(&mut self, f: impl Fn(&K) -> bool) {
        let mut dropped = 0;
        self.blocks.retain(|k, b| {
            let stays = f(k);
            if !stays {
                dropped += b.cost();
            }
            stays
        });
        self.bytes -= dropped;
    }

    /// Drops encoders (they can be built again), then least recently used
    /// blocks, other than `touched`'s and those `keep` names, until the
    /// bound holds.
    fn evict(&mut self, touched: K, keep: impl Fn(&K) -> bool) -> Vec<K> {
        while self.bytes > self.limit {
            let oldest = self
                .blocks
                .iter_mut()
                .filter(|(k, b)| **k != touched && b.encoder.is_some())
                .min_by_key(|(_, b)| b.used)
                .map(|(_, b)| b);
            let Some(b) = oldest else { break };
            b.encoder = None;
            self.bytes -= b.data.len();
        }
        let mut dropped = Vec::new();
        while self.bytes > self.limit {
            let oldest = self
                .blocks
                .iter()
                .filter(|(k, _)| **k != touched && !keep(k))
                .min_by_key(|(_, b)| b.used)
                .map(|(k, _)| *k);
            let Some(k) = oldest else { break };
            if let Some(b) = self.blocks.remove(&k) {
                self.bytes -= b.cost();
            }
            dropped.push(k);
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn block(fill: u8) -> Vec<u8> {
        vec![fill; 4 * 100]
    }

    #[test]
    fn drops_the_least_recently_used_within_the_bound() {
        let mut c = BlockCache::new(1_000);
        assert!(c.insert(1, block(1), 100, 0, |_| false).is_empty());
        assert!(c.insert(2, block(2), 100, 0, |_| false).is_empty());
        assert_eq!(c.get(&1).map(|d| d[0]), Some(1), "1 is used again");
        assert_eq!(c.insert(3, block(3), 100, 0, |_| false), vec![2], "2 was used least recently");
        assert_eq!(c.bytes(), 800);
        assert!(c.contains(&1) && c.contains(&3) && !c.contains(&2));
    }

    #[test]
    fn an_encoder_counts_and_kept_blocks_stay() {
        let mut c = BlockCache::new(1_000);
        c.insert(1, block(1), 100, 0, |_| false);
        c.insert(2, block(2), 100, 0, |_| false);
        // An encoder for 2 doubles its cost past the bound; 1 is kept.
        let (packet, dropped) = c.repair(2, 0, |k| *k == 1).unwrap();
        assert!(dropped.is_empty(), "the kept block stays even over the bound");
        assert_eq!(packet.data().len(), 100);
        assert_eq!(c.bytes(), 1_200);
        let (_, dropped) = c.repair(2, 1, |_| false).unwrap();
        assert!(dropped.is_empty(), "no growth, no eviction");
        c.retain(|k| *k != 1);
        assert_eq!(c.bytes(), 800);
        assert!(c.repair(1, 0, |_| false).is_none(), "a block not held has no repair");
    }

    #[test]
    fn encoders_go_before_blocks() {
        let mut c = BlockCache::new(1_000);
        c.insert(1, block(1), 100, 0, |_| false);
        c.repair(1, 0, |_| false).unwrap();
        assert_eq!(c.bytes(), 800, "block 1 and its encoder");
        // Block 2 takes it over the bound: 1's encoder goes, 1 stays.
        assert!(c.insert(2, block(2), 100, 0, |_| false).is_empty());
        assert_eq!(c.bytes(), 800);
        assert!(c.contains(&1) && c.contains(&2));
        // Repair of 1 again builds its encoder anew; 2 has none to drop, so 2 goes.
        let (_, dropped) = c.repair(1, 1, |_| false).unwrap();
        assert_eq!(dropped, vec![2]);
    }

    #[test]
    fn repair_symbols_decode_with_the_source() {
        use raptorq::{PayloadId, SourceBlockDecoder};
        let data: Vec<u8> = (0..400).map(|i| (i * 7 % 251) as u8).collect();
        let mut c = BlockCache::new(10_000);
        c.insert(9, data.clone(), 100, 0, |_| false);
        let oti = ObjectTransmissionInformation::new(400, 100, 1, 1, 1);
        let mut dec = SourceBlockDecoder::new(0, &oti, 400);
        // Source symbols 0 and 2, and two repair symbols, stand for the four.
        let mut packets: Vec<EncodingPacket> = [0u32, 2]
            .iter()
            .map(|&i| EncodingPacket::new(PayloadId::new(0, i), data[i as usize * 100..][..100].to_vec()))
            .collect();
        packets.extend((0..2).map(|j| c.repair(9, j, |_| false).unwrap().0));
        assert_eq!(dec.decode(packets), Some(data));
    }
}
