//! The protocol cores: pure state machines, no I/O, no clock.
//!
//! `Sender` sends objects and answers NACKs; `Receiver` collects, decodes,
//! delivers and NACKs; `Repairer` is a receiver that also answers its
//! region's NACKs from what it decoded (RMTP's designated receiver). Both follow quinn-proto's shape: `handle_datagram(now,
//! bytes)`, `handle_timeout(now)`, `poll_timeout()`, `poll_transmit(now, buf)`,
//! `poll_event()`. Every datagram they produce is multicast to the group.
//! The sender and the repairer answer NACKs with one planner (`repair`)
//! from one cache of blocks and encoders (`block_cache`).

mod block_cache;
mod framer;
pub mod policy;
mod receiver;
mod repair;
mod repairer;
mod sender;
#[cfg(test)]
mod tests;

pub use receiver::{Receiver, ReceiverConfig, ReceiverEvent, SenderProgress};
pub use repairer::{HeldObject, Repairer, RepairerConfig};
pub use sender::{
    ConfigError, DEFAULT_CEILING, DEFAULT_SYMBOL_SIZE, ReadError, SendError, Sender, SenderConfig, SenderEvent,
};

use crate::seal::Seal;
use crate::time::Time;
use crate::wire::PacketType;

/// What every core offers a driver: datagrams and time in, datagrams and
/// events out. The socket driver and the simulator run any core through it.
pub trait Core {
    /// What the core tells its owner.
    type Event;
    /// A datagram from the network.
    fn handle_datagram(&mut self, now: Time, datagram: &[u8]);
    /// Time passed; timers at or before `now` fire.
    fn handle_timeout(&mut self, now: Time);
    /// When `handle_timeout` should next be called.
    fn poll_timeout(&self) -> Option<Time>;
    /// The next datagram to send, written into `buf`.
    fn poll_transmit(&mut self, now: Time, buf: &mut Vec<u8>) -> Option<Transmit>;
    /// The next event.
    fn poll_event(&mut self) -> Option<Self::Event>;
    /// The driver's socket has dropped `total` datagrams so far because this
    /// node did not read them in time (its receive queue was full). Only a
    /// receiver acts on it (it tells its senders, `overrun.rs`).
    fn handle_overflow(&mut self, now: Time, total: u64);
}

macro_rules! impl_core {
    ($core:ident, $event:ty) => {
        impl<S: Seal> Core for $core<S> {
            type Event = $event;
            fn handle_datagram(&mut self, now: Time, datagram: &[u8]) {
                $core::handle_datagram(self, now, datagram)
            }
            fn handle_timeout(&mut self, now: Time) {
                $core::handle_timeout(self, now)
            }
            fn poll_timeout(&self) -> Option<Time> {
                $core::poll_timeout(self)
            }
            fn poll_transmit(&mut self, now: Time, buf: &mut Vec<u8>) -> Option<Transmit> {
                $core::poll_transmit(self, now, buf)
            }
            fn poll_event(&mut self) -> Option<$event> {
                $core::poll_event(self)
            }
            fn handle_overflow(&mut self, now: Time, total: u64) {
                $core::handle_overflow(self, now, total)
            }
        }
    };
}

impl_core!(Sender, SenderEvent);
impl_core!(Receiver, ReceiverEvent);
impl_core!(Repairer, ReceiverEvent);

/// A datagram a core produced: its bytes are the first `len` of the buffer
/// passed to `poll_transmit`; it goes to the group, as far as `scope` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Datagram length.
    pub len: usize,
    /// What it carries (for accounting).
    pub packet_type: PacketType,
    /// How far it should travel.
    pub scope: Scope,
}

/// How far a datagram should travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The whole group, across routers (the configured multicast TTL).
    Group,
    /// Only the sender's own region (radio cell): drivers send it with
    /// multicast TTL 1, so routers between regions do not forward it.
    /// Repairers' local repairs and the NACKs addressed to them.
    Region,
}
