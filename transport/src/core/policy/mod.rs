//! The transport's policies: pure arithmetic the cores consult.
//!
//! Each module owns one rule and its constants, cited where it comes from
//! (NORM's timers, LEDBAT's delay target, RMTP's budget): `backoff` (when a
//! NACK goes), `grtt` (the group round trip), `budget` (how much repair a
//! NACK may get), `pacing` (when a packet may leave), `rate` (the adaptive
//! rate), `linger` (when a sender may stop), `overrun` (not outrunning receivers' hosts), `replay` (which
//! packets were seen). None holds a packet, a block or a socket; the crate
//! root re-exports them under their old paths (`lsim_transport::rate`).

pub mod backoff;
pub mod budget;
pub mod grtt;
pub mod linger;
pub mod overrun;
pub mod pacing;
pub mod rate;
pub mod replay;
