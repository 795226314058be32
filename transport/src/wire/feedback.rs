//! Feedback bodies: a receiver's NACKs, its probe echo, its loss and delivered rate.
//!
//! Owns `NackEntry`, `Echo` and `Feedback`, with the bounds on how many
//! entries a packet may carry. It decides nothing about when to NACK.

use super::*;

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

impl Codec for NackEntry {
    type Error = WireError;

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
    /// Entries that fit one datagram of `max` bytes with the given tag length
    /// (without the relay, overflow and received fields, which take 4 bytes more each).
    pub fn max_entries(max: usize, tag_len: usize) -> usize {
        max.saturating_sub(HEADER_LEN + FEEDBACK_FIXED_LEN + tag_len) / NACK_ENTRY_LEN
    }
}

impl Codec for Feedback {
    type Error = WireError;

    /// Writes the feedback body.
    fn encode(&self, out: &mut Vec<u8>) {
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
    fn read(r: &mut Reader<'_>) -> Result<Feedback, WireError> {
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
}
