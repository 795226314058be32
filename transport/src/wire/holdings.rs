//! Holdings bodies: what a holder can still repair of senders that have
//! gone silent (a member or an archive that holds their objects), so that
//! a receiver that missed them learns they exist and asks the holder.
//!
//! Owns `Holding` and `Holdings`, with their bounds. It decides nothing
//! about when a holder speaks or whom a receiver asks.

use super::*;

/// Bytes of one holding entry.
pub const HOLDING_LEN: usize = 16;
/// The most entries one holdings packet carries.
pub const MAX_HOLDINGS: usize = 64;

/// One silent sender's stream as a holder knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Holding {
    /// The sender whose objects these are.
    pub origin: u32,
    /// How far the holder knows the sender got.
    pub frontier: Frontier,
    /// The oldest of its objects the holder can still repair.
    pub oldest: u32,
}

/// A holder's summary (packet type 5).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Holdings {
    /// One per silent sender, at least one, at most [`MAX_HOLDINGS`].
    pub entries: Vec<Holding>,
}

impl Codec for Holdings {
    type Error = WireError;

    fn encode(&self, out: &mut Vec<u8>) {
        let n = self.entries.len().min(MAX_HOLDINGS);
        out.push(n as u8);
        for h in &self.entries[..n] {
            out.extend_from_slice(&h.origin.to_be_bytes());
            out.extend_from_slice(&h.frontier.object.to_be_bytes());
            out.extend_from_slice(&h.frontier.blocks_sent.to_be_bytes());
            out.extend_from_slice(&h.oldest.to_be_bytes());
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Holdings, WireError> {
        let n = usize::from(r.u8("holdings count")?);
        if n == 0 || n > MAX_HOLDINGS {
            return Err(WireError::Form("a holdings packet carries 1 to 64 entries"));
        }
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let origin = r.u32("holding origin")?;
            let frontier = Frontier { object: r.u32("holding frontier")?, blocks_sent: r.u32("holding frontier")? };
            let oldest = r.u32("holding oldest")?;
            if oldest > frontier.object {
                return Err(WireError::Form("a holding whose oldest object is past its frontier"));
            }
            entries.push(Holding { origin, frontier, oldest });
        }
        r.finish("holdings").map_err(WireError::from)?;
        Ok(Holdings { entries })
    }
}
