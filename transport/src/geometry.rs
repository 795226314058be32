//! How an object is cut into source blocks and symbols, and in which order
//! its source symbols go out.
//!
//! Owns `Geometry`: object length, symbol size T and source symbols per block
//! K, and the arithmetic on them (block count, a block's offset, length and
//! symbol count), and the transmission order both ends derive from it:
//! blocks go out in groups of [`INTERLEAVE`], their source symbols taken in
//! turn (block 0 symbol 0, block 1 symbol 0, ... block 0 symbol 1, ...), so
//! that a burst of the radio takes a little from several blocks instead of
//! most of one. It validates geometry that arrives from the network; it does
//! not touch the FEC codec.

use thiserror::Error;

/// RFC 6330's largest source block (K'max).
pub const MAX_BLOCK_SYMBOLS: u16 = 56_403;
/// The largest object the transport carries (RaptorQ's transfer-length limit, ~878 GiB).
pub const MAX_OBJECT_LEN: u64 = 942_574_504_275;
/// Blocks an object may have: a data header carries the block number in 23 bits.
pub const MAX_BLOCKS: u32 = 1 << 23;

/// The largest block a sender chooses unless told otherwise: large enough
/// that a file's bursts of loss average out within a block (repair per
/// source 0.49 at K = 64 against 0.21 at K = 1024 on `bursty.toml`), small
/// enough that a receiver decodes a block in milliseconds and a sender keeps
/// a few blocks with their encoders in 16 MiB.
pub const DEFAULT_MAX_BLOCK: u16 = 1024;

/// Blocks whose source symbols are sent in turn (part of the wire protocol:
/// a receiver knows a block's source is all sent only at the end of its
/// group). A block therefore waits for repair at most `INTERLEAVE` blocks'
/// worth of packets after its first symbol: 4096 packets at K = 1024, 0.5 s
/// at 100 Mbit/s, 4.4 s on an 11 Mbit/s radio.
pub const INTERLEAVE: u32 = 4;

/// The layout of one object: `len` bytes cut into symbols of `symbol_size`
/// bytes, `block_symbols` symbols per block (the last block may be shorter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Geometry {
    len: u64,
    symbol_size: u16,
    block_symbols: u16,
}

/// A geometry that cannot describe an object.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum GeometryError {
    /// Zero-sized symbols.
    #[error("symbol size is 0")]
    ZeroSymbolSize,
    /// Block size outside 1..=56403 symbols.
    #[error("block of {0} symbols (must be 1..={MAX_BLOCK_SYMBOLS})")]
    BlockSymbols(u16),
    /// Object longer than the codec supports.
    #[error("object of {0} bytes exceeds the {MAX_OBJECT_LEN}-byte limit")]
    TooLong(u64),
    /// More blocks than a 32-bit block number can name.
    #[error("object of {len} bytes needs more than 2^32 blocks of {per_block} bytes")]
    TooManyBlocks {
        /// Object length.
        len: u64,
        /// Bytes per block.
        per_block: u64,
    },
}

impl Geometry {
    /// Validates and builds a geometry.
    pub fn new(len: u64, symbol_size: u16, block_symbols: u16) -> Result<Geometry, GeometryError> {
        if symbol_size == 0 {
            return Err(GeometryError::ZeroSymbolSize);
        }
        if block_symbols == 0 || block_symbols > MAX_BLOCK_SYMBOLS {
            return Err(GeometryError::BlockSymbols(block_symbols));
        }
        if len > MAX_OBJECT_LEN {
            return Err(GeometryError::TooLong(len));
        }
        let g = Geometry { len, symbol_size, block_symbols };
        if g.total_symbols().div_ceil(u64::from(block_symbols)) > u64::from(MAX_BLOCKS) {
            return Err(GeometryError::TooManyBlocks { len, per_block: g.block_bytes() });
        }
        Ok(g)
    }

    /// The geometry a sender chooses for an object of `len` bytes given its
    /// largest symbol size and block size: small objects get one symbol of
    /// their own size, so a short chat message is not padded to a full
    /// symbol; an object of up to `max_block` symbols is one block (chat,
    /// rekeys and receipts complete with their last packet); a larger one
    /// gets the fewest blocks of at most `max_block`, all of one size but
    /// the last (49,000 symbols in blocks of 1024 would leave a last block
    /// of 872; in 48 blocks of 1021 it is 1013).
    pub fn for_object(len: u64, max_symbol: u16, max_block: u16) -> Result<Geometry, GeometryError> {
        let t = u16::try_from(len.clamp(1, u64::from(max_symbol.max(1)))).unwrap_or(max_symbol);
        if max_block == 0 || max_block > MAX_BLOCK_SYMBOLS {
            return Err(GeometryError::BlockSymbols(max_block));
        }
        let total = len.div_ceil(u64::from(t)).max(1);
        let blocks = total.div_ceil(u64::from(max_block));
        let k = u16::try_from(total.div_ceil(blocks)).unwrap_or(max_block).min(max_block);
        Geometry::new(len, t, k)
    }

    /// Object length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// True for an empty object (still sent as one zero symbol).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Bytes per symbol (T).
    pub fn symbol_size(&self) -> u16 {
        self.symbol_size
    }
    /// Source symbols in a full block (K).
    pub fn block_symbols(&self) -> u16 {
        self.block_symbols
    }
    /// Source symbols in the whole object (at least one).
    pub fn total_symbols(&self) -> u64 {
        self.len.div_ceil(u64::from(self.symbol_size)).max(1)
    }
    fn block_bytes(&self) -> u64 {
        u64::from(self.symbol_size) * u64::from(self.block_symbols)
    }
    /// Number of source blocks.
    pub fn blocks(&self) -> u32 {
        // Checked in `new`.
        u32::try_from(self.total_symbols().div_ceil(u64::from(self.block_symbols))).unwrap_or(u32::MAX)
    }
    /// Source symbols in block `b` (0 if `b` is past the end).
    pub fn symbols_in(&self, b: u32) -> u16 {
        let start = u64::from(b) * u64::from(self.block_symbols);
        let n = self.total_symbols().saturating_sub(start).min(u64::from(self.block_symbols));
        n as u16
    }
    /// Byte offset of block `b` in the object.
    pub fn block_offset(&self, b: u32) -> u64 {
        u64::from(b) * self.block_bytes()
    }
    /// Bytes of object data in block `b` (without padding).
    pub fn block_len(&self, b: u32) -> usize {
        let off = self.block_offset(b);
        self.len.saturating_sub(off).min(self.block_bytes()) as usize
    }
    /// Bytes block `b` takes padded to whole symbols (what the codec sees).
    pub fn padded_block_len(&self, b: u32) -> usize {
        usize::from(self.symbols_in(b)) * usize::from(self.symbol_size)
    }

    /// The blocks of `b`'s interleaving group: `start..end`.
    pub fn group_of(&self, b: u32) -> std::ops::Range<u32> {
        let start = b - b % INTERLEAVE;
        start..start.saturating_add(INTERLEAVE).min(self.blocks()).max(start)
    }

    /// The source symbol sent after (block `b`, symbol `esi`): the next block
    /// of the group at this symbol index, else the group's first block at the
    /// next index, else the next group's first symbol; `None` after the
    /// object's last.
    pub fn next_source(&self, b: u32, esi: u32) -> Option<(u32, u32)> {
        let group = self.group_of(b);
        let has = |b: u32, e: u32| u32::from(self.symbols_in(b)) > e;
        if let Some(n) = (b + 1..group.end).find(|&n| has(n, esi)) {
            return Some((n, esi));
        }
        if let Some(n) = group.clone().find(|&n| has(n, esi + 1)) {
            return Some((n, esi + 1));
        }
        (group.end < self.blocks()).then_some((group.end, 0))
    }

    /// Blocks whose source symbols have all been sent once (block `b`,
    /// symbol `esi`) has gone out: the blocks before its group, or the whole
    /// group if it was the group's last symbol.
    pub fn sent_through(&self, b: u32, esi: u32) -> u32 {
        let group = self.group_of(b);
        match self.next_source(b, esi) {
            Some((n, _)) if group.contains(&n) => group.start,
            _ => group.end,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_the_object_exactly() {
        let g = Geometry::new(10_000, 100, 16).unwrap();
        assert_eq!(g.total_symbols(), 100);
        assert_eq!(g.blocks(), 7);
        assert_eq!(g.symbols_in(6), 4);
        assert_eq!(g.symbols_in(7), 0);
        let total: usize = (0..g.blocks()).map(|b| g.block_len(b)).sum();
        assert_eq!(total, 10_000);
        assert_eq!(g.block_offset(6), 9600);
        assert_eq!(g.padded_block_len(6), 400);
    }

    #[test]
    fn small_and_empty_objects_get_one_symbol() {
        let g = Geometry::for_object(37, 1400, 64).unwrap();
        assert_eq!((g.symbol_size(), g.blocks(), g.symbols_in(0)), (37, 1, 1));
        let e = Geometry::for_object(0, 1400, 64).unwrap();
        assert_eq!((e.symbol_size(), e.blocks(), e.block_len(0), e.padded_block_len(0)), (1, 1, 0, 1));
    }

    #[test]
    fn large_objects_get_balanced_blocks_and_small_ones_one() {
        let g = Geometry::for_object(49_000 * 1000, 1000, 1024).unwrap();
        assert_eq!((g.blocks(), g.block_symbols(), g.symbols_in(47)), (48, 1021, 1013));
        let chat = Geometry::for_object(5000, 1000, 1024).unwrap();
        assert_eq!((chat.blocks(), chat.symbols_in(0)), (1, 5));
        let exact = Geometry::for_object(2048 * 100, 100, 1024).unwrap();
        assert_eq!((exact.blocks(), exact.block_symbols()), (2, 1024));
        assert_eq!(Geometry::for_object(10, 100, 0), Err(GeometryError::BlockSymbols(0)));
    }

    /// Every source symbol comes exactly once, in turn within each group,
    /// and `sent_through` never claims a block whose symbols are still to come.
    #[test]
    fn interleaved_order_covers_every_symbol_once() {
        for (len, k) in [(10_000u64, 16u16), (1, 16), (1600, 16), (16 * 100 * 9 + 50, 16), (100 * 3, 1)] {
            let g = Geometry::new(len, 100, k).unwrap();
            let mut order = vec![(0u32, 0u32)];
            while let Some(n) = {
                let &(b, e) = order.last().unwrap();
                g.next_source(b, e)
            } {
                order.push(n);
            }
            let mut sorted = order.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), order.len(), "no symbol twice");
            assert_eq!(order.len() as u64, g.total_symbols(), "{len} bytes, K {k}");
            for (i, &(b, e)) in order.iter().enumerate() {
                let through = g.sent_through(b, e);
                assert!(order[i + 1..].iter().all(|&(later, _)| later >= through), "{b}/{e} claims {through}");
                if let Some(&(nb, _)) = order.get(i + 1) {
                    assert!(nb / INTERLEAVE >= b / INTERLEAVE, "groups go in order");
                }
            }
            assert_eq!(g.sent_through(order[order.len() - 1].0, order[order.len() - 1].1), g.blocks());
        }
        // Within a group the blocks take turns.
        let g = Geometry::new(10_000, 100, 16).unwrap();
        assert_eq!(g.next_source(0, 0), Some((1, 0)));
        assert_eq!(g.next_source(3, 0), Some((0, 1)));
        assert_eq!(g.next_source(3, 15), Some((4, 0)));
        // The last group of 7 blocks is 4..7, its block 6 holding 4 symbols.
        assert_eq!(g.next_source(6, 3), Some((4, 4)));
        assert_eq!(g.next_source(5, 15), None);
        assert_eq!(g.sent_through(5, 15), 7);
        assert_eq!(g.sent_through(4, 15), 4);
    }

    #[test]
    fn rejects_impossible_geometry() {
        assert_eq!(Geometry::new(1, 0, 1), Err(GeometryError::ZeroSymbolSize));
        assert_eq!(Geometry::new(1, 1, 0), Err(GeometryError::BlockSymbols(0)));
        assert_eq!(Geometry::new(1, 1, 60_000), Err(GeometryError::BlockSymbols(60_000)));
        assert!(matches!(Geometry::new(u64::MAX, 1, 1), Err(GeometryError::TooLong(_))));
        assert!(matches!(Geometry::new(MAX_OBJECT_LEN, 1, 1), Err(GeometryError::TooManyBlocks { .. })));
    }
}
