//! What `fuzz.rs` feeds the IM layer and how it checks what comes out,
//! by subject: the stream parser (`stream`), the small decoders and
//! `urn:lsim:0` payloads (`decoders`), the group layer's multicast formats
//! (`group`) and SASL exchanges (`sasl`); here, mutations that know XML.
//!
//! Owns the inputs and the checks. It must not hold properties: every
//! `#[test]` stays in `fuzz.rs`, so the long-run command (`--test fuzz`)
//! and the test names cover them all. Not a test target of its own: a
//! directory module, like `common/`.

pub mod decoders;
pub mod group;
pub mod sasl;
pub mod stream;

use proptest::prelude::*;

use self::stream::FRAGMENTS;
use lsim_testsupport::mutate::{Mutation, interesting, mutate};

pub fn xml_mutation() -> impl Strategy<Value = Mutation> {
    // XML-significant bytes are worth more than random ones.
    let byte = prop_oneof![any::<u8>(), prop::sample::select(b"<>/='\"&;:![]?-x \r\n\0".to_vec())];
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), byte).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), prop::sample::select(FRAGMENTS.to_vec()))
            .prop_map(|(at, f)| Mutation::Insert { at, bytes: f.as_bytes().to_vec() }),
        (any::<usize>(), 1usize..32).prop_map(|(at, len)| Mutation::Delete { at, len }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
        (any::<usize>(), prop_oneof![Just(1usize), Just(2), Just(4), Just(8)], interesting())
            .prop_map(|(at, width, value)| Mutation::Splice { at, width, value }),
    ]
}

pub fn xml_mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(xml_mutation(), 1..8)
}

pub fn mutate_str(s: &str, ms: &[Mutation]) -> String {
    String::from_utf8_lossy(&mutate(s.as_bytes().to_vec(), ms)).into_owned()
}
