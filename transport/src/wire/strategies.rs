//! Proptest strategies for the wire types: headers, data headers, NACK
//! entries, feedback and commands, over every value the codec carries or
//! over the few that make packets meet one set of cores.
//!
//! Owns generators for tests only: compiled for this crate's unit tests
//! (`wire/tests.rs`) and, behind the `strategies` feature, for other crates'
//! (the transport's fuzz tests reach them through `lsim-testsupport`). One
//! copy for both, because a unit test cannot use another crate's strategies:
//! they would build the types of another copy of this crate. Must not be
//! used by the library itself, nor hold a strategy for anything but a wire type.

use proptest::prelude::*;

use super::{
    Command, DataHeader, Echo, Feedback, Frontier, Header, Holding, Holdings, MAX_HOLDINGS, MAX_REPAIR_SYMBOLS,
    NackEntry, ObjectKind, PacketType, Probe,
};
use crate::geometry::Geometry;

/// How far generated values range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spread {
    /// Every value the codec carries, for round trips: any session, node,
    /// object and counter, and epochs within half the 16-bit window (a
    /// receiver whose newest epoch is 0 rebuilds them).
    Full,
    /// Mostly session 1, a few nodes and objects, small counters and epochs:
    /// for fuzzing, so that generated packets meet the state of the same
    /// cores (a receiver rebuilds their short headers from a reference of 0).
    Narrow,
}

/// Which encoding symbol ids a data header names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Symbols {
    /// Source symbols of the block, and the few ids just past them.
    Source,
    /// Repair symbols: from the block's size to `MAX_REPAIR_SYMBOLS` past it.
    Repair,
    /// Any id a receiver accepts: source or repair.
    Any,
}

/// Any `u32` under [`Spread::Full`]; one below `few` under [`Spread::Narrow`].
fn below(spread: Spread, few: u32) -> BoxedStrategy<u32> {
    match spread {
        Spread::Full => any::<u32>().boxed(),
        Spread::Narrow => (0..few).boxed(),
    }
}

/// A common header of `packet_type`.
pub fn header(packet_type: PacketType, spread: Spread) -> impl Strategy<Value = Header> {
    let (session, epoch, seq) = match spread {
        Spread::Full => (any::<u32>().boxed(), (0u32..32_768).boxed(), any::<u64>().boxed()),
        Spread::Narrow => {
            (prop_oneof![3 => Just(1u32), 1 => any::<u32>()].boxed(), (0u32..4).boxed(), (0u64..1000).boxed())
        }
    };
    (session, below(spread, 8), epoch, seq).prop_map(move |(session, node, epoch, seq)| Header {
        packet_type,
        session,
        node,
        epoch,
        seq,
    })
}

/// Any object kind.
pub fn kind() -> impl Strategy<Value = ObjectKind> {
    prop_oneof![Just(ObjectKind::File), Just(ObjectKind::Chat), Just(ObjectKind::Rekey)]
}

/// A valid geometry: an object under 5 MB in blocks of under 2000 symbols
/// ([`Spread::Full`]), or under 200 kB in blocks of under 64.
pub fn geometry(spread: Spread) -> impl Strategy<Value = Geometry> {
    let (len, block_symbols) = match spread {
        Spread::Full => (1u64..5_000_000, 1u16..2000),
        Spread::Narrow => (0u64..200_000, 1u16..64),
    };
    (len, 1u16..1500, block_symbols).prop_filter_map("impossible geometry", |(len, t, k)| Geometry::new(len, t, k).ok())
}

/// A data header of a block within its object, naming `symbols`.
pub fn data_header(spread: Spread, symbols: Symbols) -> impl Strategy<Value = DataHeader> {
    (below(spread, 6), kind(), geometry(spread), any::<u32>(), any::<u32>()).prop_map(
        move |(object, kind, geometry, b, e)| {
            let block = b % geometry.blocks();
            let k = u32::from(geometry.symbols_in(block));
            let esi = match symbols {
                Symbols::Source => e % (k + 8),
                Symbols::Repair => k + e % MAX_REPAIR_SYMBOLS,
                Symbols::Any => e % (k + MAX_REPAIR_SYMBOLS),
            };
            DataHeader { object, kind, geometry, block, esi }
        },
    )
}

/// A NACK entry of either kind.
pub fn entry(spread: Spread) -> impl Strategy<Value = NackEntry> {
    prop_oneof![
        (below(spread, 8), below(spread, 8), below(spread, 100)).prop_map(|(object, block, needed)| NackEntry::Block {
            object,
            block,
            needed
        }),
        (below(spread, 8), any::<u32>()).prop_map(|(first, bitmap)| NackEntry::Objects { first, bitmap }),
    ]
}

/// A receiver's feedback: up to 49 NACK entries ([`Spread::Full`]) or 19.
pub fn feedback(spread: Spread) -> impl Strategy<Value = Feedback> {
    let entries = match spread {
        Spread::Full => 0..50,
        Spread::Narrow => 0..20,
    };
    (
        below(spread, 8),
        prop::option::of((any::<u64>(), any::<u32>())),
        any::<u16>(),
        prop::option::of(below(spread, 8)),
        prop::option::of(any::<u32>()),
        prop::option::of(any::<u32>()),
        prop::collection::vec(entry(spread), entries),
    )
        .prop_map(|(target, echo, loss, relay, overflow, received, entries)| Feedback {
            target,
            echo: echo.map(|(probe_time, hold_us)| Echo { probe_time, hold_us }),
            loss,
            relay,
            overflow,
            received,
            entries,
        })
}

/// A holder's summary: 1 to 64 silent senders ([`Spread::Full`]) or 1 to 8.
pub fn holdings(spread: Spread) -> impl Strategy<Value = Holdings> {
    let n = match spread {
        Spread::Full => 1..=MAX_HOLDINGS,
        Spread::Narrow => 1..=8,
    };
    let holding = (below(spread, 8), below(spread, 8), below(spread, 8), below(spread, 8)).prop_map(
        |(origin, object, blocks_sent, back)| Holding {
            origin,
            frontier: Frontier { object, blocks_sent },
            oldest: object.saturating_sub(back),
        },
    );
    prop::collection::vec(holding, n).prop_map(|entries| Holdings { entries })
}

/// A sender's command.
pub fn command(spread: Spread) -> impl Strategy<Value = Command> {
    (
        any::<bool>(),
        prop::option::of((below(spread, 8), below(spread, 8))),
        below(spread, 8),
        below(spread, 1_000_000),
        any::<u16>(),
        prop::option::of((any::<u64>(), any::<u16>())),
    )
        .prop_map(|(flush, frontier, oldest, grtt_us, group_loss, probe)| Command {
            flush,
            frontier: frontier.map(|(object, blocks_sent)| Frontier { object, blocks_sent }),
            oldest,
            grtt_us,
            group_loss,
            probe: probe.map(|(time, reply_fraction)| Probe { time, reply_fraction }),
        })
}
