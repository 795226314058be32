//! The group client: what ties XMPP control, the group keys and the
//! multicast transport into chat and file sharing for a team.
//!
//! Owns the group-level formats and behaviour: chat messages and their
//! deduplication, the file envelope and where received files land, and
//! the running member. It must not reimplement the transport, the key
//! tree or XMPP: it composes `lsim-transport`, `lsim-keymgmt` and
//! [`crate::xmpp`].

pub mod admin;
pub mod archive;
pub mod audit;
pub mod chat;
pub mod envelope;
pub mod identity;
pub mod inbox;
pub mod invite;
pub mod landing;
pub mod member;
pub mod order;
pub mod position;
pub mod presence;
pub mod private;
pub mod receipt;
pub mod server;
pub mod signed;
pub mod trust;
