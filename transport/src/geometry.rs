//! How an object is cut into source blocks and symbols.
//!
//! Owns `Geometry`: object length, symbol size T and source symbols per block
//! K, and the arithmetic on them (block count, a block's offset, length and
//! symbol count). It validates geometry that arrives from the network; it does
//! not touch the FEC codec.

use thiserror::Error;

/// RFC 6330's largest source block (K'max).
pub const MAX_BLOCK_SYMBOLS: u16 = 56_403;
/// The largest object the transport carries (RaptorQ's transfer-length limit, ~878 GiB).
pub const MAX_OBJECT_LEN: u64 = 942_574_504_275;
/// Blocks an object may have: a data header carries the block number in 23 bits.
pub const MAX_BLOCKS: u32 = 1 << 23;

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
    /// maximum symbol size and block size: small objects get one symbol of their
    /// own size, so a short chat message is not padded to a full symbol.
    pub fn for_object(len: u64, max_symbol: u16, block_symbols: u16) -> Result<Geometry, GeometryError> {
        let t = u16::try_from(len.clamp(1, u64::from(max_symbol.max(1)))).unwrap_or(max_symbol);
        Geometry::new(len, t, block_symbols)
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
    fn rejects_impossible_geometry() {
        assert_eq!(Geometry::new(1, 0, 1), Err(GeometryError::ZeroSymbolSize));
        assert_eq!(Geometry::new(1, 1, 0), Err(GeometryError::BlockSymbols(0)));
        assert_eq!(Geometry::new(1, 1, 60_000), Err(GeometryError::BlockSymbols(60_000)));
        assert!(matches!(Geometry::new(u64::MAX, 1, 1), Err(GeometryError::TooLong(_))));
        assert!(matches!(Geometry::new(MAX_OBJECT_LEN, 1, 1), Err(GeometryError::TooManyBlocks { .. })));
    }
}
