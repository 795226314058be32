//! What the tests of several lsim crates share, one copy for all of them:
//! the byte mutations of every `*/tests/fuzz.rs` ([`mutate`]), the rounds
//! and seed of the fault campaigns ([`campaign`]), and, with the `transport`
//! feature, a seal that opens everything ([`seal`]) and the wire's proptest
//! strategies ([`wire`], compiled in `lsim-transport` itself so that its unit
//! tests use the same ones).
//!
//! A dev-dependency only: nothing here is reached by a library or a binary.
//! It must not hold what one crate's tests alone need (that stays in its
//! `tests/`), and must not depend on a crate above the transport, so that
//! every crate's tests can use it.

pub mod campaign;
pub mod mutate;
#[cfg(feature = "transport")]
pub mod seal;

/// Proptest strategies for every wire type (`lsim_transport::wire::strategies`).
#[cfg(feature = "transport")]
pub use lsim_transport::wire::strategies as wire;
