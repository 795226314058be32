//! Byte mutations for the fuzz tests of every crate (`*/tests/fuzz.rs`),
//! included by path so each crate's test binary has the same engine:
//! flip, set, insert, delete, truncate, duplicate, and integers spliced to
//! extreme values, applied to valid encodings so fuzzing gets past the
//! first length check. Not a crate: test support only.
#![allow(dead_code)]

use proptest::prelude::*;

/// Cases per property: `LSIM_FUZZ_CASES`, or `default` (sized for CI).
pub fn cases(default: u32) -> u32 {
    std::env::var("LSIM_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub fn config(default: u32) -> ProptestConfig {
    ProptestConfig { cases: cases(default), failure_persistence: None, ..ProptestConfig::default() }
}

// ------------------------------------------------------------ mutations

/// One change to a valid encoding.
#[derive(Debug, Clone)]
pub enum Mutation {
    Flip {
        at: usize,
        bit: u8,
    },
    Set {
        at: usize,
        byte: u8,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Delete {
        at: usize,
        len: usize,
    },
    Truncate {
        at: usize,
    },
    Duplicate {
        at: usize,
        len: usize,
    },
    /// A big-endian integer of `width` bytes at `at` set to `value` (lengths and counts to extremes).
    Splice {
        at: usize,
        width: usize,
        value: u64,
    },
}

pub fn interesting() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(0x7f),
        Just(0x80),
        Just(0xff),
        Just(0x100),
        Just(0x7fff),
        Just(0xffff),
        Just(0x1_0000),
        Just(0x7fff_ffff),
        Just(0xffff_ffff),
        Just(u64::MAX),
        any::<u64>(),
    ]
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1usize..32).prop_map(|(at, len)| Mutation::Delete { at, len }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
        (any::<usize>(), prop_oneof![Just(1usize), Just(2), Just(4), Just(8)], interesting())
            .prop_map(|(at, width, value)| Mutation::Splice { at, width, value }),
    ]
}

pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..5)
}

pub fn mutate(mut b: Vec<u8>, ms: &[Mutation]) -> Vec<u8> {
    for m in ms {
        let n = b.len();
        match m {
            Mutation::Flip { at, bit } if n > 0 => b[at % n] ^= 1 << bit,
            Mutation::Set { at, byte } if n > 0 => b[at % n] = *byte,
            Mutation::Insert { at, bytes } => {
                let at = at % (n + 1);
                b.splice(at..at, bytes.iter().copied());
            }
            Mutation::Delete { at, len } if n > 0 => {
                let at = at % n;
                b.drain(at..(at + len).min(n));
            }
            Mutation::Truncate { at } => b.truncate(at % (n + 1)),
            Mutation::Duplicate { at, len } if n > 0 => {
                let at = at % n;
                let piece: Vec<u8> = b[at..(at + len).min(n)].to_vec();
                b.splice(at..at, piece);
            }
            Mutation::Splice { at, width, value } if n >= *width => {
                let at = at % (n - width + 1);
                b[at..at + width].copy_from_slice(&value.to_be_bytes()[8 - width..]);
            }
            _ => {}
        }
    }
    b
}
