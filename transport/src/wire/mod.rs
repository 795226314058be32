//! The packet format on the wire (documented in `transport/WIRE.md`).
//!
//! Owns encoding and decoding of every packet: the common header, data
//! symbols, feedback (NACKs and probe replies), sender commands and
//! holders' summaries of silent senders, and the
//! order in which a packet is sealed and opened. It bounds every length it
//! reads and never panics on any input; it knows nothing of protocol state.

use thiserror::Error;

use crate::geometry::{Geometry, GeometryError};
use crate::seal::{Nonce, Seal, SealError};

mod command;
mod data;
mod feedback;
mod header;
mod holdings;
mod packet;
#[cfg(any(test, feature = "strategies"))]
pub mod strategies;
#[cfg(test)]
mod tests;

pub use crate::codec::{Codec, Reader};
pub use command::{Command, Frontier, Probe};
pub use data::{DataFrame, DataHeader, ObjectInfo, ObjectKind};
pub use feedback::{Echo, Feedback, NackEntry};
pub use header::{Header, PacketType, Peek};
pub use holdings::{HOLDING_LEN, Holding, Holdings, MAX_HOLDINGS};
pub use packet::{Body, open_packet, open_peeked, peek_header, seal_packet, seal_packet_as};

/// Wire format version carried in every packet (the high four bits of its first byte).
pub const VERSION: u8 = 4;
/// Bytes of the short common header: Data and Repair packets whose counter is
/// not a multiple of `LONG_EVERY` carry only its low 32 bits.
pub const SHORT_HEADER_LEN: usize = 12;
/// Bytes of the long common header (the full 64-bit counter): the most a
/// common header takes.
pub const HEADER_LEN: usize = 16;
/// Bytes of the associated data a packet is sealed with: its first byte and
/// the full session, node, epoch and counter (`Header::aad`).
pub const AAD_LEN: usize = 21;
/// A Data or Repair packet must carry its full counter (long header) when
/// the counter is a multiple of this, and may at any time; every other
/// packet always does.
pub const LONG_EVERY: u64 = 16;
/// The top bit of the packet counter says which core of a node sealed the
/// packet (set: a receiver's), so a sender and a receiver sharing a node id
/// never share a nonce.
pub const RECEIVER_SEQ_BIT: u64 = 1 << 63;
/// Bytes of a data packet's body before the symbol, without object info.
pub const DATA_HEADER_LEN: usize = 10;
/// Bytes of the object info (kind and geometry) a data packet may carry
/// after its data header.
pub const OBJECT_INFO_LEN: usize = 13;
/// The most a symbol's packet adds to the symbol besides the seal's tag: the
/// long header, a Repair packet's origin, the data header and object info.
pub const MAX_SYMBOL_HEADERS: usize = HEADER_LEN + 4 + DATA_HEADER_LEN + OBJECT_INFO_LEN;
/// `MAX_SYMBOL_HEADERS` and a 16-byte tag: a symbol size of at most
/// 1472 − this fits every packet of an AEAD suite in a 1500-byte MTU.
pub const MAX_SYMBOL_OVERHEAD: usize = MAX_SYMBOL_HEADERS + 16;

/// The longest packet a symbol of `symbol_size` bytes travels in, under a
/// seal with `tag_len`-byte tags (a long-header Repair packet with the info).
pub fn symbol_packet_len(symbol_size: u16, tag_len: usize) -> usize {
    MAX_SYMBOL_HEADERS + usize::from(symbol_size) + tag_len
}

/// The largest symbol size whose every packet fits `max_datagram` bytes
/// under a seal with `tag_len`-byte tags (the inverse of `symbol_packet_len`).
pub fn symbol_size_for(max_datagram: usize, tag_len: usize) -> u16 {
    let t = max_datagram.min(MAX_DATAGRAM).saturating_sub(MAX_SYMBOL_HEADERS + tag_len);
    u16::try_from(t).unwrap_or(u16::MAX)
}
/// Bit of the data header's 24-bit block field that says object info follows.
const INFO_BIT: u32 = 1 << 23;
/// Bytes of a command body.
pub const COMMAND_LEN: usize = 29;
/// Bytes of a feedback body before its entries.
pub const FEEDBACK_FIXED_LEN: usize = 21;
/// Bytes of one NACK entry.
pub const NACK_ENTRY_LEN: usize = 13;
/// The largest UDP payload; nothing longer is accepted or produced.
pub const MAX_DATAGRAM: usize = 65_507;
/// Repair symbols a block may carry beyond its source symbols; an ESI past
/// `K + MAX_REPAIR_SYMBOLS` is refused.
pub const MAX_REPAIR_SYMBOLS: u32 = 1 << 20;

/// Why bytes from the network were refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Fewer bytes than a field needs.
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        /// The field or structure being read.
        what: &'static str,
        /// Bytes it needs.
        need: usize,
        /// Bytes left.
        have: usize,
    },
    /// Bytes left over after a structure that must end the packet.
    #[error("{0} trailing bytes after {1}")]
    Trailing(usize, &'static str),
    /// A datagram longer than UDP allows.
    #[error("datagram of {0} bytes exceeds {MAX_DATAGRAM}")]
    Oversized(usize),
    /// Another version of the protocol.
    #[error("wire version {0}, expected {VERSION}")]
    Version(u8),
    /// Unknown packet type.
    #[error("unknown packet type {0}")]
    PacketType(u8),
    /// Unknown object kind.
    #[error("unknown object kind {0}")]
    ObjectKind(u8),
    /// Flag bits this version does not define.
    #[error("unknown flags {0:#04x} in {1}")]
    Flags(u8, &'static str),
    /// A reserved field that is not zero.
    #[error("reserved field of {0} is not zero")]
    Reserved(&'static str),
    /// Unknown NACK entry type.
    #[error("unknown NACK entry type {0}")]
    EntryType(u8),
    /// Geometry that cannot describe an object.
    #[error("object {object}: {source}")]
    Geometry {
        /// The object named.
        object: u32,
        /// What was wrong.
        source: GeometryError,
    },
    /// A symbol reference outside its object.
    #[error("object {object} block {block} esi {esi}: {why}")]
    Symbol {
        /// The object.
        object: u32,
        /// The block.
        block: u32,
        /// The encoding symbol id.
        esi: u32,
        /// What was wrong.
        why: &'static str,
    },
    /// The packet's tag did not verify or its epoch is unknown.
    #[error("seal: {0}")]
    Seal(#[from] SealError),
    /// The session byte names another session.
    #[error("session byte {0:#04x} is not ours")]
    OtherSession(u8),
    /// A short header from a node and role never heard in a long one: its
    /// counter cannot be rebuilt (it will be, after the next long header).
    #[error("short header from node {0} before any long one")]
    NoReference(u32),
    /// A header whose form (short or long) is not the one the packet must use.
    #[error("{0}")]
    Form(&'static str),
}

impl From<crate::codec::Short> for WireError {
    fn from(s: crate::codec::Short) -> WireError {
        WireError::Truncated { what: s.what, need: s.need, have: s.have }
    }
}

impl From<crate::codec::Trailing> for WireError {
    fn from(t: crate::codec::Trailing) -> WireError {
        WireError::Trailing(t.left, t.what)
    }
}
