//! The common header of every packet, in full and as it travels.
//!
//! Owns `PacketType`, `Header` (what the seal authenticates) and `Peek`
//! (the compressed form read off the wire, expanded with what the receiver
//! knows). It knows nothing of bodies or of protocol state.

use super::*;

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
    /// What a holder can still repair of senders gone silent.
    Holdings = 5,
}

impl PacketType {
    pub(super) fn from_u8(v: u8) -> Result<PacketType, WireError> {
        Ok(match v {
            1 => PacketType::Data,
            2 => PacketType::Feedback,
            3 => PacketType::Command,
            4 => PacketType::Repair,
            5 => PacketType::Holdings,
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
