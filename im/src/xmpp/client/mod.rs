//! The XMPP client: one connection set up end to end ([`connect`]: TCP,
//! STARTTLS, SASL, resource bind) and a long-lived [`Client`] task that
//! keeps it alive (XEP-0199 pings), reconnects with backoff and re-joins
//! its rooms.
//!
//! Owns the connection sequence and the reconnect policy. Stanza meaning
//! lives elsewhere: SASL in [`super::sasl`], room state in
//! [`super::room`], payloads in [`super::payload`]. It must not touch the
//! multicast transport or keys.
//!
//! This file owns the public face: the namespaces the client speaks and
//! the re-exports. It must not hold logic; that is split by noun:
//!
//! - `config`: how to reach and log into a server;
//! - `error`: why a connection could not be set up or went down;
//! - `connect`: the connection sequence, TCP to a bound (or resumed)
//!   [`Session`];
//! - `enroll`: registering with an invitation's token before the first login;
//! - `session`: one logged-in, bound connection, and what resuming it takes;
//! - `handle`: the long-lived [`Client`], its commands and its events;
//! - `run`: the client task: reconnect with backoff, the online loop, our
//!   side of stream management;
//! - `incoming`: what the task does with each element from the server.

mod config;
mod connect;
mod enroll;
mod error;
mod handle;
mod incoming;
mod run;
mod session;
#[cfg(test)]
mod tests;

pub use self::config::{ClientConfig, TlsMode};
pub use self::connect::{connect, connect_resuming, enroll};
pub use self::error::ClientError;
pub use self::handle::{Client, ClientEvent};
pub use self::session::{Resumption, Session};

pub use super::ns::{NS_BIND, NS_DISCO_INFO, NS_PING, NS_SESSION};
