//! The protocol cores: pure state machines, no I/O, no clock.
//!
//! `Sender` sends objects and answers NACKs; `Receiver` collects, decodes,
//! delivers and NACKs. Both follow quinn-proto's shape: `handle_datagram(now,
//! bytes)`, `handle_timeout(now)`, `poll_timeout()`, `poll_transmit(now, buf)`,
//! `poll_event()`. Every datagram they produce is multicast to the group.

mod framer;
mod receiver;
mod sender;
#[cfg(test)]
mod tests;

pub use receiver::{Receiver, ReceiverConfig, ReceiverEvent};
pub use sender::{ConfigError, SendError, Sender, SenderConfig, SenderEvent};

use crate::wire::PacketType;

/// A datagram a core produced: its bytes are the first `len` of the buffer
/// passed to `poll_transmit`; it goes to the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Datagram length.
    pub len: usize,
    /// What it carries (for accounting).
    pub packet_type: PacketType,
}
