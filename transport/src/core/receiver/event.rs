//! What a receiver hands to its owner.
//!
//! Owns `ReceiverEvent`: data in order, objects started, progressing,
//! complete or lost, epochs ahead. The receiver decides when each is due.

use crate::wire::ObjectKind;

/// What a receiver hands to its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReceiverEvent {
    /// A new object from `sender` was heard of.
    ObjectStarted {
        /// Sending node.
        sender: u32,
        /// Object id.
        object: u32,
        /// Object kind.
        kind: ObjectKind,
        /// Object length in bytes.
        len: u64,
    },
    /// The next bytes of an object, in order (a whole decoded block).
    ObjectData {
        /// Sending node.
        sender: u32,
        /// Object id.
        object: u32,
        /// Offset of `data` in the object.
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Symbols are arriving for a multi-block object: about `got` of its
    /// bytes are held, decoded or not (reported every twentieth of it).
    /// Blocks are sent interleaved and decoded whole, so `ObjectData` comes
    /// in steps of up to four blocks; this is what a progress bar shows.
    ObjectProgress {
        /// Sending node.
        sender: u32,
        /// Object id.
        object: u32,
        /// Bytes held (symbols times their size, at most the object's length).
        got: u64,
    },
    /// Every byte of the object was delivered.
    ObjectComplete {
        /// Sending node.
        sender: u32,
        /// Object id.
        object: u32,
    },
    /// The sender can no longer repair the object: it will not complete.
    ObjectLost {
        /// Sending node.
        sender: u32,
        /// Object id.
        object: u32,
    },
    /// Packets arrive sealed under an epoch newer than any this receiver's
    /// seal holds: it missed rekeys and should resync. Reported once per
    /// newer epoch. The epoch number is not authenticated (nobody here can
    /// open the packet), so the layer above must rate-limit its resyncs.
    EpochAhead {
        /// The claimed sending node.
        sender: u32,
        /// The epoch the packet claims.
        epoch: u32,
    },
    /// `sender` restarted (a new process, or the same member joined again
    /// and given the same node): its object numbers start again, and any
    /// per-sender state above (chat order) must start again too. Objects of
    /// its last run still incomplete were reported lost just before.
    SenderRestarted {
        /// Sending node.
        sender: u32,
    },
}
