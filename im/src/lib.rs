//! lsim's XMPP control plane: who is in the group (room presence), the
//! group's parameters, file offers. Chat and files do not ride on it by
//! default; they go on the multicast transport.
#![forbid(unsafe_code)]

pub mod gpsd;
pub mod group;
pub mod tak;
pub mod text;
pub mod xmpp;
