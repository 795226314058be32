//! lsim's group keys.
//!
//! A key server keeps a logical key hierarchy per group (Wong/Gouda/Lam key
//! graphs, RFC 2627 LKH); members hold the keys on their leaf-to-root path;
//! every join and leave changes the group key, and the change travels as a
//! signed rekey message. The group key of each epoch is stretched by HKDF into
//! the keys of the group's cipher suite, which seal every transport packet.
#![forbid(unsafe_code)]

pub mod cert;
pub mod client;
pub mod filecipher;
pub mod filekey;
pub mod guard;
pub mod key;
pub mod member;
pub mod pin;
pub mod registrar;
pub mod rekey;
pub mod resync;
pub mod server;
pub mod store;
pub mod suite;
pub mod tree;
pub mod users;
