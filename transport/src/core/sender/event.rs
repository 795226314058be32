//! What a sender tells its owner, and why it refuses or abandons an object.
//!
//! Owns `SenderEvent` (objects sent, progressing, failed, released; idle;
//! may stop), `ReadError` and `SendError`. The sender decides when each is
//! due; nothing here holds state.

use crate::geometry::GeometryError;

/// What the sender tells its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SenderEvent {
    /// Every source symbol of the object has been sent (repairs may follow).
    ObjectSent(u32),
    /// The object could not be read and was abandoned.
    ObjectFailed {
        /// Object id.
        object: u32,
        /// What went wrong.
        error: ReadError,
    },
    /// The object left the retention window: no more repairs for it.
    ObjectReleased(u32),
    /// Part of a file's source went out: reported every twentieth (chat
    /// and rekeys, one block each, only get `ObjectSent`).
    ObjectProgress {
        /// Object id.
        object: u32,
        /// Bytes of it sent once (source symbols × symbol size, at most `len`).
        sent: u64,
        /// Its length in bytes.
        len: u64,
    },
    /// Everything is sent, flushed, and no NACK is outstanding.
    Idle,
    /// Everything queued was sent, the sender is idle and no repair request
    /// came for the linger's quiet time (or its longest time passed since
    /// the last source symbol went out): a sender that wants to exit may now,
    /// without stranding a receiver whose NACK was late (`linger`). Once
    /// per object queued.
    MayStop,
}

/// An object's bytes could not be read from its source.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("reading block {block} of object {object}: {message}")]
pub struct ReadError {
    /// Object id.
    pub object: u32,
    /// The block being read.
    pub block: u32,
    /// The kind of I/O error.
    pub kind: std::io::ErrorKind,
    /// The error as the source said it.
    pub message: String,
}

/// Refusal to queue an object.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The object's size cannot be carried.
    #[error("cannot send object: {0}")]
    Geometry(#[from] GeometryError),
}
