//! The transport on real sockets: a multicast UDP socket and a tokio driver
//! that runs any core over it.
//!
//! Owns the only I/O and the only clock of the crate: `socket` sets up the
//! multicast socket (socket2), `stamp` reads the kernel's arrival time of each
//! datagram, `driver` receives, hands datagrams to the core,
//! transmits what the core produces, and sleeps until the core's next
//! deadline. Protocol decisions stay in the cores.

pub mod driver;
pub mod socket;
pub mod stamp;

#[cfg(test)]
mod tests;

pub use driver::{Clock, Driver, DriverConfig, DriverStats, Handle};
pub use socket::{Loopback, MulticastConfig, MulticastSocket};
