//! What a core counts.
//!
//! Owns `Stats` and `DropReason`: packets and bytes in and out by kind, NACK entries
//! sent and suppressed, and every dropped packet by reason. Counters only;
//! the cores decide what to count.

use std::fmt;

use crate::wire::WireError;

/// Why an incoming packet was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// Not a packet of ours: wrong version, unknown type, truncated header.
    Malformed,
    /// A sealed packet whose tag failed (forged, damaged, or another group's key).
    BadSeal,
    /// Sealed under an epoch whose key this node does not hold.
    UnknownEpoch,
    /// Another session's packet.
    OtherSession,
    /// Our own packet, looped back.
    Own,
    /// Authentic, but claiming impossible sizes (block past the end, symbol of the
    /// wrong length, a NACK for more symbols than the block has...).
    Invalid,
    /// Authentic and valid but useless now (a symbol of a finished block, a NACK
    /// for an object no longer held).
    Stale,
    /// Dropped because a configured memory bound was reached.
    Overload,
    /// Authentic, but a copy of a packet already accepted (or older than the replay window).
    Replay,
    /// A short header from a node not yet heard in a long one: its counter
    /// cannot be rebuilt until then (at most `wire::LONG_EVERY` packets).
    NoReference,
    /// A symbol of an object whose info (kind and geometry) this receiver
    /// has not heard yet: it missed every packet of the object that carried
    /// it. Repaired like a lost symbol.
    NoInfo,
    /// Authentic under an epoch past its grace, kept only for repair of
    /// what was sent in it, but not repair of an object this receiver knows
    /// of from live traffic: what a member removed by a rekey would send
    /// under the key it kept.
    PastEpoch,
}

impl DropReason {
    /// Every reason, in report order.
    pub const ALL: [DropReason; 12] = [
        DropReason::Malformed,
        DropReason::BadSeal,
        DropReason::UnknownEpoch,
        DropReason::OtherSession,
        DropReason::Own,
        DropReason::Invalid,
        DropReason::Stale,
        DropReason::Overload,
        DropReason::Replay,
        DropReason::NoReference,
        DropReason::NoInfo,
        DropReason::PastEpoch,
    ];

    /// The reason a decode error maps to.
    pub fn of(err: &WireError) -> DropReason {
        use crate::seal::SealError;
        match err {
            WireError::Seal(SealError::UnknownEpoch(_)) => DropReason::UnknownEpoch,
            WireError::Seal(_) => DropReason::BadSeal,
            WireError::Geometry { .. } | WireError::Symbol { .. } => DropReason::Invalid,
            WireError::OtherSession(_) => DropReason::OtherSession,
            WireError::NoReference(_) => DropReason::NoReference,
            _ => DropReason::Malformed,
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Counters of one core.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams handed in.
    pub packets_in: u64,
    /// Datagrams produced.
    pub packets_out: u64,
    /// Bytes produced.
    pub bytes_out: u64,
    /// Source symbols sent.
    pub source_sent: u64,
    /// Repair symbols sent (proactive and on demand).
    pub repair_sent: u64,
    /// Commands sent (flush, heartbeat, probe).
    pub commands_sent: u64,
    /// Feedback packets sent.
    pub feedback_sent: u64,
    /// NACK entries sent (one per block or object range asked for).
    pub nacks_sent: u64,
    /// NACK entries not sent because an equal-or-larger one was heard.
    pub nacks_suppressed: u64,
    /// NACK entries received (sender).
    pub nacks_received: u64,
    /// Blocks the sender answered with repair symbols (one per repair round).
    pub repair_rounds: u64,
    /// Distinct blocks the sender repaired on demand.
    pub repaired_blocks: u64,
    /// Blocks a receiver needed repair for (decoded with at least one repair symbol).
    pub blocks_repaired: u64,
    /// Blocks decoded.
    pub blocks_decoded: u64,
    /// Decode attempts that failed for want of one more symbol.
    pub decode_failures: u64,
    /// Feedback packets with NACKs sent to the region's repairer instead of the sender.
    pub relayed_feedback: u64,
    /// Times a receiver stopped waiting for a silent repairer and went back to the sender.
    pub repairer_fallbacks: u64,
    /// Repair symbols a repairer sent to its region for other nodes' objects.
    pub local_repairs: u64,
    /// Repair symbols not sent because the key of the epoch their object was
    /// sent in is no longer held (repair goes only under that epoch, so that
    /// a member that joined later cannot read it).
    pub repair_unsealable: u64,
    /// Requests a holder refused because of the group's history policy: from
    /// a node it does not know as a member, or for an object sent before the
    /// requester joined (`Repairer::set_members`).
    pub repair_refused_policy: u64,
    /// NACK entries a repairer passed up to the sender for its region.
    pub forwarded_nacks: u64,
    /// Holders' summaries that told this receiver of objects of a silent
    /// sender it had not known of.
    pub holdings_taken: u64,
    /// Summaries of silent senders this holder sent.
    pub holdings_sent: u64,
    /// Repair symbols asked for beyond the requester's budget, and not sent
    /// (`budget::RepairBudget`).
    pub repair_refused: u64,
    /// Times a sender slowed because a receiver's socket overflowed (`overrun.rs`).
    pub overrun_cuts: u64,
    /// Dropped packets, by reason (indexed like `DropReason::ALL`).
    pub dropped: [u64; DropReason::ALL.len()],
}

impl Stats {
    /// Counts one dropped packet.
    pub fn drop(&mut self, why: DropReason) {
        self.dropped[why as usize] += 1;
    }
    /// Dropped packets for one reason.
    pub fn dropped(&self, why: DropReason) -> u64 {
        self.dropped[why as usize]
    }
    /// Dropped packets for every reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }
}
