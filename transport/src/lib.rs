//! lsim's reliable multicast transport.
//!
//! Objects (chat messages, files, rekeys) go from a [`Sender`] to every
//! [`Receiver`] of a group over an unreliable multicast medium. Each object is
//! cut into RaptorQ source blocks; source symbols go out as they are, and
//! receivers that miss some NACK, after a randomized backoff, the *number* of
//! symbols they still need. The sender answers the largest count for a block
//! with that many fresh repair symbols, so one repair packet fixes a different
//! loss at every receiver.
//!
//! The cores are sans-IO: time enters as [`Time`], datagrams as byte slices,
//! and output is pulled. A driver (the socket driver, or `lsim-netsim`'s
//! virtual network) moves the bytes:
//!
//! ```
//! use lsim_transport::{Receiver, ReceiverConfig, ReceiverEvent, Sender, SenderConfig, Time};
//! use lsim_transport::seal::{Nonce, Seal, SealError};
//! use lsim_transport::wire::ObjectKind;
//!
//! /// No protection at all: for this example only.
//! struct Clear;
//! impl Seal for Clear {
//!     fn tag_len(&self) -> usize { 0 }
//!     fn current_epoch(&self) -> u32 { 0 }
//!     fn seal(&mut self, _: u32, _: Nonce, _: &[u8], _: &mut [u8], _: &mut [u8]) -> Result<(), SealError> { Ok(()) }
//!     fn open(&mut self, _: u32, _: Nonce, _: &[u8], _: &mut [u8], _: &[u8]) -> Result<(), SealError> { Ok(()) }
//! }
//!
//! let mut tx = Sender::new(SenderConfig { node: 1, rate: 0, ..Default::default() }, Clear).unwrap();
//! let mut rx = Receiver::new(ReceiverConfig { node: 2, ..Default::default() }, Clear);
//! tx.send_bytes(ObjectKind::Chat, b"hello, crew".to_vec()).unwrap();
//!
//! let (now, mut buf) = (Time::ZERO, Vec::new());
//! while let Some(t) = tx.poll_transmit(now, &mut buf) {
//!     rx.handle_datagram(now, &buf[..t.len]);
//! }
//! let mut got = Vec::new();
//! while let Some(ev) = rx.poll_event() {
//!     if let ReceiverEvent::ObjectData { data, .. } = ev { got.extend(data); }
//! }
//! assert_eq!(got, b"hello, crew");
//! ```
// Denied everywhere but `net::stamp` (two system calls, each with its SAFETY note).
#![deny(unsafe_code)]

pub mod codec;
pub mod core;
pub mod geometry;
#[cfg(feature = "net")]
pub mod net;
pub mod rng;
pub mod seal;
pub mod source;
pub mod stats;
pub mod time;
pub mod wire;

pub use crate::core::policy::{backoff, budget, grtt, linger, overrun, pacing, rate, replay};
pub use crate::core::{
    ConfigError, Core, DEFAULT_SYMBOL_SIZE, HeldObject, ReadError, Receiver, ReceiverConfig, ReceiverEvent, Repairer,
    RepairerConfig, Scope, SendError, Sender, SenderConfig, SenderEvent, SenderProgress, Transmit,
};
pub use crate::time::Time;
