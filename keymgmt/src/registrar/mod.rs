//! The registrar: the authenticated channel on which a member logs in, gets
//! its individual key, joins and leaves groups, and resyncs its path keys.
//!
//! `msg` is the protocol's encoding; `quic` the channel (quinn, rustls with
//! ring, a certificate the server generates and clients pin).

pub mod known;
pub mod msg;
pub mod quic;
