//! Byte mutations for the fuzz tests of every crate (`*/tests/fuzz.rs`):
//! flip, set, insert, delete, truncate, duplicate, and integers spliced to
//! extreme values, applied to valid encodings so fuzzing gets past the
//! first length check; and how many cases a property runs.
//!
//! Owns the mutation engine only: what is valid for a format, and what must
//! hold of its decoder, stay with each crate's fuzz test.

use proptest::prelude::*;

/// Cases per property: `LSIM_FUZZ_CASES`, or `default` (sized for CI).
pub fn cases(default: u32) -> u32 {
    std::env::var("LSIM_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A property's configuration: [`cases`] cases and no regression file.
pub fn config(default: u32) -> ProptestConfig {
    ProptestConfig { cases: cases(default), failure_persistence: None, ..ProptestConfig::default() }
}

/// One change to a valid encoding.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Bit `bit` of the byte at `at` flipped.
    Flip {
        /// Where (modulo the length).
        at: usize,
        /// Which bit (0 to 7).
        bit: u8,
    },
    /// The byte at `at` set to `byte`.
    Set {
        /// Where (modulo the length).
        at: usize,
        /// The new byte.
        byte: u8,
    },
    /// `bytes` inserted before `at`.
    Insert {
        /// Where (modulo the length plus one).
        at: usize,
        /// What.
        bytes: Vec<u8>,
    },
    /// Up to `len` bytes removed from `at`.
    Delete {
        /// Where (modulo the length).
        at: usize,
        /// How many, at most.
        len: usize,
    },
    /// Everything from `at` on removed.
    Truncate {
        /// Where (modulo the length plus one).
        at: usize,
    },
    /// Up to `len` bytes from `at` repeated in place.
    Duplicate {
        /// Where (modulo the length).
        at: usize,
        /// How many, at most.
        len: usize,
    },
    /// A big-endian integer of `width` bytes at `at` set to `value` (lengths and counts to extremes).
    Splice {
        /// Where (modulo the room left for `width` bytes).
        at: usize,
        /// Bytes of the integer: 1, 2, 4 or 8.
        width: usize,
        /// Its new value (truncated to `width` bytes).
        value: u64,
    },
}

/// Integers at the edges where lengths and counts go wrong (sign bits,
/// byte and word boundaries, the maxima), and any other.
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

/// One mutation of any kind.
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

/// One to four mutations, applied in order.
pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..5)
}

/// `b` with `ms` applied in order; a mutation that does not fit what is
/// left (e.g. a flip of an empty input) is skipped.
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
