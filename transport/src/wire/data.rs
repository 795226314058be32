//! Data packets' bodies: which symbol of which object, and the object's info.
//!
//! Owns `ObjectKind`, `ObjectInfo`, `DataHeader` and `DataFrame`. It knows
//! nothing of the symbol's bytes beyond their length, nor of sealing.

use super::*;

/// The three kinds of object the transport carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    /// A chat message.
    Chat = 1,
    /// A file, streamed.
    File = 2,
    /// A key server's rekey message.
    Rekey = 3,
}

impl ObjectKind {
    pub(super) fn from_u8(v: u8) -> Result<ObjectKind, WireError> {
        Ok(match v {
            1 => ObjectKind::Chat,
            2 => ObjectKind::File,
            3 => ObjectKind::Rekey,
            _ => return Err(WireError::ObjectKind(v)),
        })
    }
}

/// What a receiver must know of an object to use its symbols: what it is
/// and how it is cut into blocks and symbols.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ObjectInfo {
    /// What the object is.
    pub kind: ObjectKind,
    /// The object's layout.
    pub geometry: Geometry,
}

impl ObjectInfo {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.kind as u8);
        out.extend_from_slice(&self.geometry.len().to_be_bytes());
        out.extend_from_slice(&self.geometry.symbol_size().to_be_bytes());
        out.extend_from_slice(&self.geometry.block_symbols().to_be_bytes());
    }
    fn read(r: &mut Reader<'_>, object: u32) -> Result<ObjectInfo, WireError> {
        let kind = ObjectKind::from_u8(r.u8("object kind")?)?;
        let len = r.u64("object length")?;
        let symbol_size = r.u16("symbol size")?;
        let block_symbols = r.u16("block symbols")?;
        let geometry =
            Geometry::new(len, symbol_size, block_symbols).map_err(|source| WireError::Geometry { object, source })?;
        Ok(ObjectInfo { kind, geometry })
    }
}

/// A symbol's full header, as the cores use it: the symbol
/// (`geometry.symbol_size()` bytes) follows. On the wire it travels as a
/// `DataFrame`, with or without the object info.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DataHeader {
    /// The sender's object number.
    pub object: u32,
    /// What the object is.
    pub kind: ObjectKind,
    /// The object's layout.
    pub geometry: Geometry,
    /// Source block number.
    pub block: u32,
    /// Encoding symbol id in the block (below K: source; from K on: repair).
    pub esi: u32,
}

impl DataHeader {
    /// The wire form, carrying the object info if `with_info`.
    pub fn frame(&self, with_info: bool) -> DataFrame {
        DataFrame {
            object: self.object,
            block: self.block,
            esi: self.esi,
            info: with_info.then_some(ObjectInfo { kind: self.kind, geometry: self.geometry }),
        }
    }
    /// The object info.
    pub fn info(&self) -> ObjectInfo {
        ObjectInfo { kind: self.kind, geometry: self.geometry }
    }
    /// True for a repair symbol.
    pub fn is_repair(&self) -> bool {
        self.esi >= u32::from(self.geometry.symbols_in(self.block))
    }
    /// Fails unless a symbol of `len` bytes is one of this object's.
    pub fn check_symbol(&self, len: usize) -> Result<(), WireError> {
        if len == usize::from(self.geometry.symbol_size()) {
            Ok(())
        } else {
            Err(self.symbol_error("symbol length differs from the object's symbol size"))
        }
    }
    pub(super) fn symbol_error(&self, why: &'static str) -> WireError {
        WireError::Symbol { object: self.object, block: self.block, esi: self.esi, why }
    }
}

/// A data packet's header as it travels: which symbol, and the object's
/// info when the sender added it (always on chat and rekeys, repair symbols,
/// each block's first symbol and long-header packets; see WIRE.md §3). A
/// receiver without the info for the object can use the symbol only once it
/// has heard it (`complete`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DataFrame {
    /// The sender's object number.
    pub object: u32,
    /// Source block number (below 2^23).
    pub block: u32,
    /// Encoding symbol id in the block (below 2^24).
    pub esi: u32,
    /// The object's kind and geometry, if carried.
    pub info: Option<ObjectInfo>,
}

impl DataFrame {
    /// The full header, given the object's info (the frame's own if it has
    /// one: a different `info` is refused): checks that the symbol exists.
    pub fn complete(&self, info: ObjectInfo) -> Result<DataHeader, WireError> {
        let h = DataHeader {
            object: self.object,
            kind: info.kind,
            geometry: info.geometry,
            block: self.block,
            esi: self.esi,
        };
        if self.info.is_some_and(|own| own != info) {
            return Err(h.symbol_error("object info differs from what the object said before"));
        }
        if self.block >= info.geometry.blocks() {
            return Err(h.symbol_error("block past the end of the object"));
        }
        if self.esi >= u32::from(info.geometry.symbols_in(self.block)) + MAX_REPAIR_SYMBOLS {
            return Err(h.symbol_error("encoding symbol id beyond the repair limit"));
        }
        Ok(h)
    }
}

impl Codec for DataFrame {
    type Error = WireError;

    /// Writes the data header (and the object info, if any).
    fn encode(&self, out: &mut Vec<u8>) {
        let block = (self.block & (INFO_BIT - 1)) | if self.info.is_some() { INFO_BIT } else { 0 };
        out.extend_from_slice(&self.object.to_be_bytes());
        out.extend_from_slice(&block.to_be_bytes()[1..]);
        out.extend_from_slice(&(self.esi & 0xff_ffff).to_be_bytes()[1..]);
        if let Some(info) = &self.info {
            info.encode(out);
        }
    }

    /// Reads a data header; with object info, checks that the symbol it names exists.
    fn read(r: &mut Reader<'_>) -> Result<DataFrame, WireError> {
        let object = r.u32("object")?;
        let block = u32::from_be_bytes([0, r.u8("block")?, r.u8("block")?, r.u8("block")?]);
        let esi = u32::from_be_bytes([0, r.u8("esi")?, r.u8("esi")?, r.u8("esi")?]);
        let info = if block & INFO_BIT != 0 { Some(ObjectInfo::read(r, object)?) } else { None };
        let f = DataFrame { object, block: block & (INFO_BIT - 1), esi, info };
        if let Some(info) = info {
            f.complete(info)?;
        }
        Ok(f)
    }
}
