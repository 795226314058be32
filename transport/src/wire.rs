//! The packet format on the wire (documented in `transport/WIRE.md`).
//!
//! Owns encoding and decoding of every packet: the common header, data
//! symbols, feedback (NACKs and probe replies) and sender commands, and the
//! order in which a packet is sealed and opened. It bounds every length it
//! reads and never panics on any input; it knows nothing of protocol state.

use thiserror::Error;

use crate::geometry::{Geometry, GeometryError};
use crate::seal::{Nonce, Seal, SealError};

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

/// A cursor over received bytes that cannot read past its end.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }
    /// Bytes not yet read.
    pub fn left(&self) -> usize {
        self.buf.len() - self.pos
    }
    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.left() < n {
            return Err(WireError::Truncated { what, need: n, have: self.left() });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], WireError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }
    /// A byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.array::<1>(what)?[0])
    }
    /// A big-endian u16.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }
    /// A big-endian u32.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }
    /// A big-endian u64.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }
    /// The rest of the buffer.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
    /// Fails unless everything was read.
    pub fn finish(&self, what: &'static str) -> Result<(), WireError> {
        match self.left() {
            0 => Ok(()),
            n => Err(WireError::Trailing(n, what)),
        }
    }
}

/// What a packet carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// A source or repair symbol of an object.
    Data = 1,
    /// A receiver's NACKs and/or probe reply.
    Feedback = 2,
    /// A sender's flush / heartbeat / GRTT probe.
    Command = 3,
    /// A repair symbol of another node's object, sent by a repairer to its region.
    Repair = 4,
}

impl PacketType {
    fn from_u8(v: u8) -> Result<PacketType, WireError> {
        Ok(match v {
            1 => PacketType::Data,
            2 => PacketType::Feedback,
            3 => PacketType::Command,
            4 => PacketType::Repair,
            _ => return Err(WireError::PacketType(v)),
        })
    }
}

/// The common header of every packet, as the seal authenticates it. On the
/// wire it travels compressed (`Header::encode`, `Peek`): one byte of the
/// session, two of the epoch and, in the short form, four of the counter;
/// the receiver rebuilds the rest (`Peek::expand`) and the seal checks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// What the body is.
    pub packet_type: PacketType,
    /// The session (group) this packet belongs to.
    pub session: u32,
    /// The node that sent it.
    pub node: u32,
    /// The key epoch it is sealed under.
    pub epoch: u32,
    /// The node's packet counter (with the node id, the seal's nonce).
    pub seq: u64,
}

impl Header {
    /// True if this packet must travel with the long header (the full counter).
    pub fn is_long(&self) -> bool {
        !matches!(self.packet_type, PacketType::Data | PacketType::Repair)
            || (self.seq & !RECEIVER_SEQ_BIT).is_multiple_of(LONG_EVERY)
    }
    fn first_byte(&self, long: bool) -> u8 {
        (VERSION << 4) | (u8::from(long) << 3) | self.packet_type as u8
    }
    /// Writes the header in its wire form: long if `long` or if it must be.
    pub fn encode(&self, out: &mut Vec<u8>, long: bool) {
        let long = long || self.is_long();
        out.push(self.first_byte(long));
        out.push(self.session as u8);
        out.extend_from_slice(&self.node.to_be_bytes());
        out.extend_from_slice(&(self.epoch as u16).to_be_bytes());
        if long {
            out.extend_from_slice(&self.seq.to_be_bytes());
        } else {
            out.extend_from_slice(&(self.seq as u32).to_be_bytes());
        }
    }
    /// The associated data the packet is sealed with: the first wire byte
    /// (version, form, type) and the full session, node, epoch and counter.
    pub fn aad(&self, long: bool) -> [u8; AAD_LEN] {
        let mut a = [0u8; AAD_LEN];
        a[0] = self.first_byte(long || self.is_long());
        a[1..5].copy_from_slice(&self.session.to_be_bytes());
        a[5..9].copy_from_slice(&self.node.to_be_bytes());
        a[9..13].copy_from_slice(&self.epoch.to_be_bytes());
        a[13..21].copy_from_slice(&self.seq.to_be_bytes());
        a
    }
    /// The seal nonce of this packet.
    pub fn nonce(&self) -> Nonce {
        Nonce { node: self.node, seq: self.seq }
    }
}

/// A common header as read from the wire, before the receiver rebuilds the
/// session, epoch and counter from what it knows (`expand`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peek {
    /// What the body is.
    pub packet_type: PacketType,
    /// The long form (full counter).
    pub long: bool,
    /// The low byte of the session.
    pub session_byte: u8,
    /// The node that sent it.
    pub node: u32,
    /// The low 16 bits of the key epoch.
    pub epoch_low: u16,
    /// The full counter (long form) or its low 32 bits (short form).
    pub seq_bits: u64,
}

impl Peek {
    /// Bytes of the header on the wire.
    pub fn len(&self) -> usize {
        if self.long { HEADER_LEN } else { SHORT_HEADER_LEN }
    }
    /// Never: a header has at least `SHORT_HEADER_LEN` bytes.
    pub fn is_empty(&self) -> bool {
        false
    }
    /// True if a receiver core sealed it (the counter's role bit). A short
    /// header has no room for it: a Repair packet is always a receiver's
    /// (repairer's), a Data packet a sender's.
    pub fn receiver_role(&self) -> bool {
        if self.long { self.seq_bits & RECEIVER_SEQ_BIT != 0 } else { self.packet_type == PacketType::Repair }
    }
    /// The epoch nearest `current` (the newest this node holds) whose low 16
    /// bits are on the wire.
    pub fn epoch(&self, current: u32) -> u32 {
        nearest(i128::from(current), i128::from(self.epoch_low), 16, i128::from(u32::MAX))
            .and_then(|e| u32::try_from(e).ok())
            .unwrap_or(current)
    }
    /// The full header: `session` is ours (its low byte must match),
    /// `current_epoch` the newest epoch we hold, and `reference` the highest
    /// counter (without the role bit) accepted from this node and role, which
    /// a short header needs.
    pub fn expand(&self, session: u32, current_epoch: u32, reference: Option<u64>) -> Result<Header, WireError> {
        if self.session_byte != session as u8 {
            return Err(WireError::OtherSession(self.session_byte));
        }
        let seq = if self.long {
            self.seq_bits
        } else {
            let top = reference.ok_or(WireError::NoReference(self.node))?;
            let counter = nearest(i128::from(top) + 1, i128::from(self.seq_bits), 32, i128::from(RECEIVER_SEQ_BIT - 1))
                .and_then(|c| u64::try_from(c).ok())
                .ok_or(WireError::NoReference(self.node))?;
            counter | if self.receiver_role() { RECEIVER_SEQ_BIT } else { 0 }
        };
        let h =
            Header { packet_type: self.packet_type, session, node: self.node, epoch: self.epoch(current_epoch), seq };
        if h.is_long() && !self.long {
            return Err(WireError::Form("a short header where the long one is due"));
        }
        Ok(h)
    }
    /// Reads the wire form of a header.
    pub fn read(r: &mut Reader<'_>) -> Result<Peek, WireError> {
        let first = r.u8("version")?;
        if first >> 4 != VERSION {
            return Err(WireError::Version(first >> 4));
        }
        let long = first & 8 != 0;
        let packet_type = PacketType::from_u8(first & 7)?;
        let session_byte = r.u8("session")?;
        let node = r.u32("node")?;
        let epoch_low = r.u16("epoch")?;
        let seq_bits = if long { r.u64("seq")? } else { u64::from(r.u32("seq")?) };
        if !long && !matches!(packet_type, PacketType::Data | PacketType::Repair) {
            return Err(WireError::Form("a short header on a packet that always has the long one"));
        }
        // Only a sender's core sends Data and only a receiver's (a repairer's)
        // sends Repair: the role bit must agree, as the short form assumes.
        let receiver = seq_bits & RECEIVER_SEQ_BIT != 0;
        if long && ((packet_type == PacketType::Data && receiver) || (packet_type == PacketType::Repair && !receiver)) {
            return Err(WireError::Form("a counter of the wrong role for the packet type"));
        }
        Ok(Peek { packet_type, long, session_byte, node, epoch_low, seq_bits })
    }
}

/// The value nearest `expected` (within half a window either way) whose low
/// `bits` bits are `low`, kept in 0..=`max` (QUIC's packet-number recovery,
/// RFC 9000 appendix A.3). `None` if no such value is in range.
fn nearest(expected: i128, low: i128, bits: u32, max: i128) -> Option<i128> {
    let window = 1i128 << bits;
    let half = window / 2;
    let candidate = (expected & !(window - 1)) | low;
    let v = if candidate <= expected - half && candidate + window <= max {
        candidate + window
    } else if (candidate > expected + half || candidate > max) && candidate >= window {
        candidate - window
    } else {
        candidate
    };
    (0..=max).contains(&v).then_some(v)
}

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
    fn from_u8(v: u8) -> Result<ObjectKind, WireError> {
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
    fn symbol_error(&self, why: &'static str) -> WireError {
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
    /// Writes the data header (and the object info, if any).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let block = (self.block & (INFO_BIT - 1)) | if self.info.is_some() { INFO_BIT } else { 0 };
        out.extend_from_slice(&self.object.to_be_bytes());
        out.extend_from_slice(&block.to_be_bytes()[1..]);
        out.extend_from_slice(&(self.esi & 0xff_ffff).to_be_bytes()[1..]);
        if let Some(info) = &self.info {
            info.encode(out);
        }
    }
    /// Reads a data header; with object info, checks that the symbol it names exists.
    pub fn read(r: &mut Reader<'_>) -> Result<DataFrame, WireError> {
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

/// One thing a receiver asks a sender to repair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NackEntry {
    /// Block `block` of `object` still needs `needed` symbols.
    Block {
        /// Object number.
        object: u32,
        /// Block number.
        block: u32,
        /// Symbols still needed to decode.
        needed: u32,
    },
    /// Objects `first + i` for each set bit `i` of `bitmap` were never heard of.
    Objects {
        /// First object of the range.
        first: u32,
        /// Bit i set: object `first + i` is missing entirely.
        bitmap: u32,
    },
}

impl NackEntry {
    fn encode(&self, out: &mut Vec<u8>) {
        let (t, a, b, c) = match *self {
            NackEntry::Block { object, block, needed } => (1u8, object, block, needed),
            NackEntry::Objects { first, bitmap } => (2u8, first, bitmap, 0),
        };
        out.push(t);
        out.extend_from_slice(&a.to_be_bytes());
        out.extend_from_slice(&b.to_be_bytes());
        out.extend_from_slice(&c.to_be_bytes());
    }
    fn read(r: &mut Reader<'_>) -> Result<NackEntry, WireError> {
        let t = r.u8("NACK entry type")?;
        let (a, b, c) = (r.u32("NACK entry")?, r.u32("NACK entry")?, r.u32("NACK entry")?);
        match t {
            1 => Ok(NackEntry::Block { object: a, block: b, needed: c }),
            2 if c == 0 => Ok(NackEntry::Objects { first: a, bitmap: b }),
            2 => Err(WireError::Reserved("objects NACK entry")),
            _ => Err(WireError::EntryType(t)),
        }
    }
}

/// A receiver's echo of the sender's latest GRTT probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Echo {
    /// The probe's send time, in the sender's clock (microseconds).
    pub probe_time: u64,
    /// Microseconds the receiver held the probe before answering.
    pub hold_us: u32,
}

/// Feedback from a receiver to one sender: NACKs, a probe echo, its loss rate.
/// Multicast, so that other receivers can suppress NACKs it already made.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Feedback {
    /// The sender this feedback is for.
    pub target: u32,
    /// The echo of the sender's probe, if any.
    pub echo: Option<Echo>,
    /// The receiver's recent packet loss from this sender, in 1/65535ths.
    pub loss: u16,
    /// The repairer asked to answer, instead of the sender (which then
    /// ignores the feedback but for suppression by its peers).
    pub relay: Option<u32>,
    /// Datagrams the receiver's own socket dropped so far (its host fell
    /// behind; modulo 2^32), once it has dropped any (`overrun.rs`).
    pub overflow: Option<u32>,
    /// Bytes per second the receiver lately got from this sender (what the
    /// path delivers; `rate.rs` cuts to it when a queue shows), once measured.
    pub received: Option<u32>,
    /// What to repair.
    pub entries: Vec<NackEntry>,
}

impl Feedback {
    /// Writes the feedback body.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.target.to_be_bytes());
        let (flags, echo) = match self.echo {
            Some(e) => (1u8, e),
            None => (0u8, Echo { probe_time: 0, hold_us: 0 }),
        };
        let optional = if self.relay.is_some() { 2 } else { 0 }
            | if self.overflow.is_some() { 4 } else { 0 }
            | if self.received.is_some() { 8 } else { 0 };
        out.push(flags | optional);
        out.extend_from_slice(&echo.probe_time.to_be_bytes());
        out.extend_from_slice(&echo.hold_us.to_be_bytes());
        out.extend_from_slice(&self.loss.to_be_bytes());
        let n = u16::try_from(self.entries.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&n.to_be_bytes());
        if let Some(relay) = self.relay {
            out.extend_from_slice(&relay.to_be_bytes());
        }
        if let Some(overflow) = self.overflow {
            out.extend_from_slice(&overflow.to_be_bytes());
        }
        if let Some(received) = self.received {
            out.extend_from_slice(&received.to_be_bytes());
        }
        for e in self.entries.iter().take(usize::from(n)) {
            e.encode(out);
        }
    }
    /// Reads a feedback body; the entry count must match the bytes present exactly.
    pub fn read(r: &mut Reader<'_>) -> Result<Feedback, WireError> {
        let target = r.u32("feedback target")?;
        let flags = r.u8("feedback flags")?;
        let probe_time = r.u64("probe time")?;
        let hold_us = r.u32("probe hold")?;
        let loss = r.u16("loss")?;
        let n = usize::from(r.u16("entry count")?);
        if flags & !15 != 0 {
            return Err(WireError::Flags(flags, "feedback"));
        }
        let relay = if flags & 2 != 0 { Some(r.u32("feedback relay")?) } else { None };
        let overflow = if flags & 4 != 0 { Some(r.u32("feedback overflow")?) } else { None };
        let received = if flags & 8 != 0 { Some(r.u32("feedback received rate")?) } else { None };
        let need = n * NACK_ENTRY_LEN;
        if r.left() < need {
            return Err(WireError::Truncated { what: "NACK entries", need, have: r.left() });
        }
        if r.left() > need {
            return Err(WireError::Trailing(r.left() - need, "NACK entries"));
        }
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            entries.push(NackEntry::read(r)?);
        }
        let echo = (flags & 1 != 0).then_some(Echo { probe_time, hold_us });
        Ok(Feedback { target, echo, loss, relay, overflow, received, entries })
    }
    /// Entries that fit one datagram of `max` bytes with the given tag length
    /// (without the relay, overflow and received fields, which take 4 bytes more each).
    pub fn max_entries(max: usize, tag_len: usize) -> usize {
        max.saturating_sub(HEADER_LEN + FEEDBACK_FIXED_LEN + tag_len) / NACK_ENTRY_LEN
    }
}

/// How far the sender has got: every source symbol of objects before
/// `object`, and of blocks before `blocks_sent` in `object`, has been sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Frontier {
    /// The newest object the sender has started.
    pub object: u32,
    /// Blocks of that object whose source symbols are all sent.
    pub blocks_sent: u32,
}

/// A sender command: FLUSH (after data) or heartbeat (idle), optionally a GRTT probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Command {
    /// True right after data (a flush), false for an idle heartbeat.
    pub flush: bool,
    /// How far the sender has got; `None` before its first object.
    pub frontier: Option<Frontier>,
    /// Oldest object the sender can still repair.
    pub oldest: u32,
    /// The sender's group RTT estimate, microseconds.
    pub grtt_us: u32,
    /// The median loss the receivers reported lately, in 1/65535ths (scales NACK urgency).
    pub group_loss: u16,
    /// A probe to echo, if this command carries one.
    pub probe: Option<Probe>,
}

/// A GRTT probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Probe {
    /// Send time in the sender's clock (microseconds).
    pub time: u64,
    /// Which receivers answer: those whose `reply_hash` falls below this (out of 65536).
    pub reply_fraction: u16,
}

impl Command {
    /// Writes the command body.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut flags = 0u8;
        if self.flush {
            flags |= 1;
        }
        if self.frontier.is_some() {
            flags |= 2;
        }
        if self.probe.is_some() {
            flags |= 4;
        }
        out.push(flags);
        let f = self.frontier.unwrap_or(Frontier { object: 0, blocks_sent: 0 });
        out.extend_from_slice(&f.object.to_be_bytes());
        out.extend_from_slice(&f.blocks_sent.to_be_bytes());
        out.extend_from_slice(&self.oldest.to_be_bytes());
        out.extend_from_slice(&self.grtt_us.to_be_bytes());
        out.extend_from_slice(&self.group_loss.to_be_bytes());
        let p = self.probe.unwrap_or(Probe { time: 0, reply_fraction: 0 });
        out.extend_from_slice(&p.time.to_be_bytes());
        out.extend_from_slice(&p.reply_fraction.to_be_bytes());
    }
    /// Reads a command body.
    pub fn read(r: &mut Reader<'_>) -> Result<Command, WireError> {
        let flags = r.u8("command flags")?;
        if flags & !7 != 0 {
            return Err(WireError::Flags(flags, "command"));
        }
        let object = r.u32("frontier object")?;
        let blocks_sent = r.u32("frontier blocks")?;
        let oldest = r.u32("oldest object")?;
        let grtt_us = r.u32("grtt")?;
        let group_loss = r.u16("group loss")?;
        let time = r.u64("probe time")?;
        let reply_fraction = r.u16("reply fraction")?;
        r.finish("command")?;
        Ok(Command {
            flush: flags & 1 != 0,
            frontier: (flags & 2 != 0).then_some(Frontier { object, blocks_sent }),
            oldest,
            grtt_us,
            group_loss,
            probe: (flags & 4 != 0).then_some(Probe { time, reply_fraction }),
        })
    }
}

/// A packet's body, borrowed from the opened datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Body<'a> {
    /// A symbol and its header.
    Data(DataFrame, &'a [u8]),
    /// Feedback.
    Feedback(Feedback),
    /// A command.
    Command(Command),
    /// A repair symbol of `origin`'s object, relayed by a repairer (always
    /// with the object info).
    Repair(u32, DataFrame, &'a [u8]),
}

impl Body<'_> {
    /// The packet type of this body.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Body::Data(..) => PacketType::Data,
            Body::Feedback(_) => PacketType::Feedback,
            Body::Command(_) => PacketType::Command,
            Body::Repair(..) => PacketType::Repair,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Body::Data(h, symbol) => {
                h.encode(out);
                out.extend_from_slice(symbol);
            }
            Body::Feedback(f) => f.encode(out),
            Body::Command(c) => c.encode(out),
            Body::Repair(origin, h, symbol) => {
                out.extend_from_slice(&origin.to_be_bytes());
                h.encode(out);
                out.extend_from_slice(symbol);
            }
        }
    }

    fn read<'a>(packet_type: PacketType, body: &'a [u8]) -> Result<Body<'a>, WireError> {
        let mut r = Reader::new(body);
        Ok(match packet_type {
            PacketType::Data => {
                let f = DataFrame::read(&mut r)?;
                let symbol = r.rest();
                if let Some(info) = f.info {
                    f.complete(info)?.check_symbol(symbol.len())?;
                }
                Body::Data(f, symbol)
            }
            PacketType::Feedback => Body::Feedback(Feedback::read(&mut r)?),
            PacketType::Command => Body::Command(Command::read(&mut r)?),
            PacketType::Repair => {
                let origin = r.u32("repair origin")?;
                let f = DataFrame::read(&mut r)?;
                let symbol = r.rest();
                let Some(info) = f.info else { return Err(WireError::Form("a relayed symbol without object info")) };
                let h = f.complete(info)?;
                h.check_symbol(symbol.len())?;
                if !h.is_repair() {
                    return Err(h.symbol_error("a relayed symbol must be a repair symbol"));
                }
                Body::Repair(origin, f, symbol)
            }
        })
    }
}

/// Writes `header` (in its wire form, as short as it may be) and `body` into
/// `out` (cleared first) and seals it: the full header is associated data
/// (`Header::aad`), the body is encrypted, the tag is appended.
pub fn seal_packet<S: Seal + ?Sized>(
    seal: &mut S,
    header: &Header,
    body: &Body<'_>,
    out: &mut Vec<u8>,
) -> Result<(), SealError> {
    seal_packet_as(seal, header, false, body, out)
}

/// `seal_packet` with the long header if `long` (a node whose peers may not
/// know its counter yet sends its full counter).
pub fn seal_packet_as<S: Seal + ?Sized>(
    seal: &mut S,
    header: &Header,
    long: bool,
    body: &Body<'_>,
    out: &mut Vec<u8>,
) -> Result<(), SealError> {
    debug_assert_eq!(header.packet_type, body.packet_type());
    out.clear();
    header.encode(out, long);
    let header_len = out.len();
    body.encode(out);
    let tag_len = seal.tag_len();
    let body_end = out.len();
    out.resize(body_end + tag_len, 0);
    let (payload, tag) = out[header_len..].split_at_mut(body_end - header_len);
    seal.seal(header.epoch, header.nonce(), &header.aad(long), payload, tag)
}

/// Reads only the common header's wire form, without opening the packet (to
/// route or drop it early).
pub fn peek_header(datagram: &[u8]) -> Result<Peek, WireError> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(WireError::Oversized(datagram.len()));
    }
    Peek::read(&mut Reader::new(datagram))
}

/// Opens a datagram in place: reads the header, rebuilds it (`Peek::expand`:
/// `session` is ours; `reference(node, receiver_role)` gives the highest
/// counter accepted from that node and role, for short headers), verifies and
/// decrypts the body, and parses it. Nothing of a packet whose seal fails is
/// parsed.
pub fn open_packet<'a, S: Seal + ?Sized>(
    seal: &mut S,
    datagram: &'a mut [u8],
    session: u32,
    reference: impl FnOnce(u32, bool) -> Option<u64>,
) -> Result<(Header, Body<'a>), WireError> {
    let peek = peek_header(datagram)?;
    open_peeked(seal, datagram, &peek, session, reference)
}

/// `open_packet` for a datagram whose header was already read into `peek`
/// (by `peek_header` on these same bytes).
pub fn open_peeked<'a, S: Seal + ?Sized>(
    seal: &mut S,
    datagram: &'a mut [u8],
    peek: &Peek,
    session: u32,
    reference: impl FnOnce(u32, bool) -> Option<u64>,
) -> Result<(Header, Body<'a>), WireError> {
    let header_len = peek.len();
    let tag_len = seal.tag_len();
    if datagram.len() < header_len + tag_len {
        return Err(WireError::Truncated { what: "tag", need: header_len + tag_len, have: datagram.len() });
    }
    let top = if peek.long { None } else { reference(peek.node, peek.receiver_role()) };
    let header = peek.expand(session, seal.current_epoch(), top)?;
    let aad = header.aad(peek.long);
    let rest = &mut datagram[header_len..];
    let body_len = rest.len() - tag_len;
    let (payload, tag) = rest.split_at_mut(body_len);
    seal.open(header.epoch, header.nonce(), &aad, payload, tag)?;
    let body = Body::read(header.packet_type, payload)?;
    Ok((header, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::KeyedSum as SumSeal;
    use proptest::prelude::*;

    /// Headers a receiver whose newest epoch is 0 can rebuild: epochs within
    /// half the 16-bit window, any counter of either role.
    fn header(packet_type: PacketType) -> impl Strategy<Value = Header> {
        (any::<u32>(), any::<u32>(), 0u32..32_768, any::<u64>()).prop_map(move |(session, node, epoch, seq)| Header {
            packet_type,
            session,
            node,
            epoch,
            seq,
        })
    }

    /// What a receiver that accepted the packet just before `h` knows.
    fn reference_for(h: &Header) -> impl FnOnce(u32, bool) -> Option<u64> + use<> {
        let top = (h.seq & !RECEIVER_SEQ_BIT).saturating_sub(1);
        move |_, _| Some(top)
    }

    fn data() -> impl Strategy<Value = (DataHeader, Vec<u8>)> {
        (1u64..5_000_000, 1u16..1500, 1u16..2000, any::<u32>(), any::<u32>(), 1u8..4).prop_flat_map(
            |(len, t, k, object, esi_seed, kind)| {
                let g = Geometry::new(len, t, k).unwrap();
                (0..g.blocks()).prop_map(move |block| {
                    let esi = esi_seed % (u32::from(g.symbols_in(block)) + MAX_REPAIR_SYMBOLS);
                    let kind = ObjectKind::from_u8(kind).unwrap();
                    let h = DataHeader { object, kind, geometry: g, block, esi };
                    (h, vec![kind as u8; usize::from(t)])
                })
            },
        )
    }

    fn entry() -> impl Strategy<Value = NackEntry> {
        prop_oneof![
            (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(object, block, needed)| NackEntry::Block {
                object,
                block,
                needed
            }),
            (any::<u32>(), any::<u32>()).prop_map(|(first, bitmap)| NackEntry::Objects { first, bitmap }),
        ]
    }

    fn feedback() -> impl Strategy<Value = Feedback> {
        (
            any::<u32>(),
            proptest::option::of((any::<u64>(), any::<u32>())),
            any::<u16>(),
            prop::collection::vec(entry(), 0..50),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u32>()),
        )
            .prop_map(|(target, echo, loss, entries, relay, overflow, received)| Feedback {
                target,
                echo: echo.map(|(probe_time, hold_us)| Echo { probe_time, hold_us }),
                loss,
                relay,
                overflow,
                received,
                entries,
            })
    }

    fn command() -> impl Strategy<Value = Command> {
        (
            any::<bool>(),
            proptest::option::of((any::<u32>(), any::<u32>())),
            any::<u32>(),
            any::<u32>(),
            any::<u16>(),
            proptest::option::of((any::<u64>(), any::<u16>())),
        )
            .prop_map(|(flush, f, oldest, grtt_us, group_loss, p)| Command {
                flush,
                frontier: f.map(|(object, blocks_sent)| Frontier { object, blocks_sent }),
                oldest,
                grtt_us,
                group_loss,
                probe: p.map(|(time, reply_fraction)| Probe { time, reply_fraction }),
            })
    }

    fn round_trip(h: Header, body: Body<'_>) {
        let mut seal = SumSeal(42);
        let mut buf = Vec::new();
        seal_packet(&mut seal, &h, &body, &mut buf).unwrap();
        let (h2, b2) = open_packet(&mut seal, &mut buf, h.session, reference_for(&h)).unwrap();
        assert_eq!(h, h2);
        assert_eq!(body, b2);
    }

    proptest! {
        #[test]
        fn data_round_trips(h in header(PacketType::Data), (d, sym) in data(), info in any::<bool>()) {
            let h = Header { seq: h.seq & !RECEIVER_SEQ_BIT, ..h };
            round_trip(h, Body::Data(d.frame(info), &sym));
        }

        #[test]
        fn feedback_round_trips(h in header(PacketType::Feedback), f in feedback()) {
            round_trip(h, Body::Feedback(f));
        }

        #[test]
        fn repair_round_trips(h in header(PacketType::Repair), origin in any::<u32>(), (d, sym) in data()) {
            let k = u32::from(d.geometry.symbols_in(d.block));
            let d = DataHeader { esi: k + d.esi % 1000, ..d };
            let h = Header { seq: h.seq | RECEIVER_SEQ_BIT, ..h };
            round_trip(h, Body::Repair(origin, d.frame(true), &sym));
        }

        #[test]
        fn command_round_trips(h in header(PacketType::Command), c in command()) {
            round_trip(h, Body::Command(c));
        }

        #[test]
        fn random_bytes_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..2000), top in any::<Option<u64>>()) {
            let _ = peek_header(&bytes);
            let _ = open_packet(&mut SumSeal(1), &mut bytes, 0, |_, _| top);
        }

        /// Any single-byte change to a sealed packet is refused (never parsed into something else).
        #[test]
        fn mutated_packets_are_refused(h in header(PacketType::Feedback), f in feedback(), at in any::<usize>(), x in 1u8..=255) {
            let mut seal = SumSeal(7);
            let mut buf = Vec::new();
            seal_packet(&mut seal, &h, &Body::Feedback(f), &mut buf).unwrap();
            let i = at % buf.len();
            buf[i] ^= x;
            prop_assert!(open_packet(&mut seal, &mut buf, h.session, reference_for(&h)).is_err());
        }

        /// The same for data packets, in both header forms: a changed byte of
        /// the compressed header rebuilds another header, which the seal refuses.
        #[test]
        fn mutated_data_packets_are_refused(h in header(PacketType::Data), (d, sym) in data(), long in any::<bool>(),
                                            at in any::<usize>(), x in 1u8..=255) {
            let seq = (h.seq & !RECEIVER_SEQ_BIT & !(LONG_EVERY - 1)) + u64::from(!long);
            let h = Header { seq, ..h };
            prop_assert_eq!(h.is_long(), long);
            let mut seal = SumSeal(7);
            let mut buf = Vec::new();
            seal_packet(&mut seal, &h, &Body::Data(d.frame(at % 2 == 0), &sym), &mut buf).unwrap();
            let i = at % buf.len();
            buf[i] ^= x;
            prop_assert!(open_packet(&mut seal, &mut buf, h.session, reference_for(&h)).is_err());
        }

        /// A short header's counter is rebuilt exactly from any reference up
        /// to 2^31 packets behind or ahead of it.
        #[test]
        fn short_counters_are_rebuilt(counter in 0u64..(1 << 62), back in 1i64..(1 << 31), ahead in any::<bool>()) {
            let top = if ahead { counter.saturating_add(back as u64 - 1) } else { counter.saturating_sub(back as u64) };
            let h = Header { packet_type: PacketType::Data, session: 5, node: 9, epoch: 0, seq: counter | 1 };
            let mut buf = Vec::new();
            h.encode(&mut buf, false);
            let peek = peek_header(&buf).unwrap();
            prop_assert!(!peek.long);
            prop_assert_eq!(peek.expand(5, 0, Some(top)).unwrap(), h);
        }

        /// A rebuilt counter never leaves the counter space (63 bits: the top
        /// bit is the role), whatever the reference.
        #[test]
        fn rebuilt_counters_stay_below_the_role_bit(top in prop_oneof![any::<u64>(), Just(RECEIVER_SEQ_BIT - 1)],
                                                    low in any::<u32>()) {
            let h = Header { packet_type: PacketType::Data, session: 5, node: 9, epoch: 0, seq: u64::from(low) | 1 };
            let mut buf = Vec::new();
            h.encode(&mut buf, false);
            let r = peek_header(&buf).unwrap().expand(5, 0, Some(top & !RECEIVER_SEQ_BIT)).unwrap();
            prop_assert_eq!(r.seq & RECEIVER_SEQ_BIT, 0);
            prop_assert_eq!(r.seq as u32, low | 1);
        }

        /// Epochs within 2^15 of the receiver's newest are rebuilt exactly.
        #[test]
        fn epochs_are_rebuilt_near_the_newest(current in any::<u32>(), delta in -32_767i64..32_768) {
            let epoch = i64::from(current) + delta;
            prop_assume!((0..=i64::from(u32::MAX)).contains(&epoch));
            let h = Header { packet_type: PacketType::Command, session: 1, node: 2, epoch: epoch as u32, seq: 3 };
            let mut buf = Vec::new();
            h.encode(&mut buf, false);
            prop_assert_eq!(peek_header(&buf).unwrap().expand(1, current, None).unwrap(), h);
        }

        /// Bodies parsed without a seal (as if the seal were broken) still never panic.
        #[test]
        fn unsealed_bodies_never_panic(t in 1u8..5, body in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = Body::read(PacketType::from_u8(t).unwrap(), &body);
        }
    }

    #[test]
    fn refuses_symbols_outside_the_object() {
        let g = Geometry::new(1000, 100, 4).unwrap();
        let mut buf = Vec::new();
        let h = DataHeader { object: 3, kind: ObjectKind::File, geometry: g, block: 3, esi: 0 };
        h.frame(true).encode(&mut buf);
        let err = DataFrame::read(&mut Reader::new(&buf)).unwrap_err();
        assert_eq!(err.to_string(), "object 3 block 3 esi 0: block past the end of the object");
        // Without the info it reads, and fails when the receiver completes it.
        buf.clear();
        h.frame(false).encode(&mut buf);
        let f = DataFrame::read(&mut Reader::new(&buf)).unwrap();
        assert_eq!(f.complete(h.info()).unwrap_err().to_string(), err.to_string());
        let other = ObjectInfo { kind: ObjectKind::Chat, ..h.info() };
        let with = DataHeader { block: 0, ..h }.frame(true);
        assert!(with.complete(other).unwrap_err().to_string().contains("differs from what the object said"));
    }

    #[test]
    fn relayed_symbols_are_repair_symbols_with_their_object_info() {
        let g = Geometry::new(1000, 100, 4).unwrap();
        let relayed = |esi: u32, info: bool| {
            let mut buf = 7u32.to_be_bytes().to_vec();
            DataHeader { object: 3, kind: ObjectKind::File, geometry: g, block: 0, esi }.frame(info).encode(&mut buf);
            buf.extend_from_slice(&[0u8; 100]);
            Body::read(PacketType::Repair, &buf).map(|_| ())
        };
        assert_eq!(relayed(5, true), Ok(()));
        assert!(matches!(relayed(5, false), Err(WireError::Form(_))));
        let err = relayed(3, true).unwrap_err();
        assert!(err.to_string().contains("must be a repair symbol"), "{err}");
    }

    #[test]
    fn feedback_count_must_match_bytes() {
        let f = Feedback {
            target: 1,
            echo: None,
            loss: 0,
            relay: None,
            overflow: None,
            received: None,
            entries: vec![NackEntry::Objects { first: 1, bitmap: 3 }],
        };
        let mut buf = Vec::new();
        f.encode(&mut buf);
        buf[FEEDBACK_FIXED_LEN - 1] = 200; // claims 200 entries, carries one
        assert!(matches!(Feedback::read(&mut Reader::new(&buf)), Err(WireError::Truncated { .. })));
    }

    #[test]
    fn short_headers_need_a_reference_and_the_due_form() {
        let h = Header { packet_type: PacketType::Data, session: 0x1234_5678, node: 4, epoch: 2, seq: 65 };
        let mut buf = Vec::new();
        h.encode(&mut buf, false);
        assert_eq!(buf.len(), SHORT_HEADER_LEN);
        let peek = peek_header(&buf).unwrap();
        assert_eq!(peek.expand(0x1234_5678, 2, None), Err(WireError::NoReference(4)));
        assert_eq!(peek.expand(0x1234_5600, 2, Some(64)), Err(WireError::OtherSession(0x78)));
        assert_eq!(peek.expand(0x1234_5678, 2, Some(64)), Ok(h));
        // The counter one below rebuilds 64, a multiple of LONG_EVERY: that one travels long.
        buf[11] = 64;
        assert!(matches!(peek_header(&buf).unwrap().expand(0x1234_5678, 2, Some(63)), Err(WireError::Form(_))));
        // A long Data packet must carry a sender's counter, a long Repair packet a receiver's.
        let mut long = Vec::new();
        Header { seq: 64 | RECEIVER_SEQ_BIT, ..h }.encode(&mut long, true);
        assert!(matches!(peek_header(&long), Err(WireError::Form(_))));
        long[0] = (VERSION << 4) | 8 | PacketType::Repair as u8;
        assert!(peek_header(&long).is_ok());
        // Feedback and commands are always long.
        buf[0] = (VERSION << 4) | PacketType::Feedback as u8;
        assert!(matches!(peek_header(&buf), Err(WireError::Form(_))));
    }

    #[test]
    fn the_symbol_size_for_a_suite_fits_every_packet_of_it() {
        assert_eq!(symbol_size_for(1472, 16), 1413);
        assert_eq!(symbol_size_for(1472, 24), 1405);
        assert_eq!(symbol_size_for(10, 16), 0);
        for tag in [0, 16, 24] {
            assert_eq!(symbol_packet_len(symbol_size_for(1472, tag), tag), 1472);
        }
    }

    #[test]
    fn sizes_match_the_documented_layout() {
        let mut buf = Vec::new();
        Header { packet_type: PacketType::Data, session: 0, node: 0, epoch: 0, seq: 0 }.encode(&mut buf, false);
        assert_eq!(buf.len(), HEADER_LEN);
        buf.clear();
        let h = Header { packet_type: PacketType::Data, session: 0, node: 0, epoch: 0, seq: 1 };
        h.encode(&mut buf, false);
        assert_eq!(buf.len(), SHORT_HEADER_LEN);
        buf.clear();
        h.encode(&mut buf, true);
        assert_eq!(buf.len(), HEADER_LEN);
        buf.clear();
        let g = Geometry::new(1, 1, 1).unwrap();
        let d = DataHeader { object: 0, kind: ObjectKind::Chat, geometry: g, block: 0, esi: 0 };
        d.frame(false).encode(&mut buf);
        assert_eq!(buf.len(), DATA_HEADER_LEN);
        buf.clear();
        d.frame(true).encode(&mut buf);
        assert_eq!(buf.len(), DATA_HEADER_LEN + OBJECT_INFO_LEN);
        buf.clear();
        Command { flush: true, frontier: None, oldest: 0, grtt_us: 0, group_loss: 0, probe: None }.encode(&mut buf);
        assert_eq!(buf.len(), COMMAND_LEN);
        buf.clear();
        Feedback { target: 0, echo: None, loss: 0, relay: None, overflow: None, received: None, entries: vec![] }
            .encode(&mut buf);
        assert_eq!(buf.len(), FEEDBACK_FIXED_LEN);
    }
}
