//! How a sender behaves: its settings, their defaults, and which cannot work.
//!
//! Owns `SenderConfig` (with the defaults a user gets: the adaptive rate up
//! to `DEFAULT_CEILING`, blocks up to `geometry::DEFAULT_MAX_BLOCK`, a 16 MiB
//! cache) and `ConfigError`. The checks themselves run in `Sender::new`; it
//! holds no state.

use std::time::Duration;

use crate::linger::LingerConfig;
use crate::wire;

/// How a sender behaves. `Default` gives values suited to a LAN or a radio cell.
#[derive(Clone, Debug)]
pub struct SenderConfig {
    /// Session (group) id stamped on every packet.
    pub session: u32,
    /// This node's id.
    pub node: u32,
    /// Largest symbol size T in bytes (a packet is T + 47 bytes + the seal's tag).
    pub symbol_size: u16,
    /// The largest block K, in source symbols: an object of up to this many
    /// symbols is one block, a larger one the fewest blocks of at most this
    /// (`Geometry::for_object`).
    pub block_symbols: u16,
    /// Pacing rate in bytes per second; 0 sends as fast as polled. With
    /// `queue_target` set, the ceiling of the adaptive rate.
    pub rate: u64,
    /// Adapt the rate to the receivers: keep the queueing delay that probe
    /// round trips show near this (see `rate::RateControl`), between
    /// `rate::FLOOR` and `rate`. Probes go out every 2·GRTT (5 to 20 ms)
    /// while sending. `None`: a fixed rate. The default adapts, up to
    /// `DEFAULT_CEILING`.
    pub queue_target: Option<Duration>,
    /// Pacer burst in bytes.
    pub burst: u64,
    /// Proactive repair symbols sent after each block, as a share of its K.
    pub proactive: f64,
    /// GRTT assumed before the first probe echo.
    pub initial_grtt: Duration,
    /// NORM's backoff factor K (NACK window = K·GRTT); the receivers must use the same.
    pub backoff_k: f64,
    /// Answer a NACK with `needed / (1 - p)` symbols, `p` the loss its
    /// receiver reports (at most `budget::MAX_MARGIN_LOSS`), so it likely
    /// completes in one round despite losing repair too.
    pub loss_margin: bool,
    /// The largest share of the sending rate one receiver's NACKs may take
    /// in repair (`budget::RepairBudget`); past it, they wait for the next round.
    pub repair_share: f64,
    /// Objects kept for repair after their source is sent.
    pub retain_objects: usize,
    /// Bytes of blocks (and their encoders, counted as much again) kept in
    /// memory; the least recently used are dropped past it and re-read on
    /// demand. An interleaving group's blocks are always kept.
    pub cache_bytes: usize,
    /// Flushes sent (every 2·GRTT) after the last data before going idle.
    pub flush_count: u32,
    /// Interval of heartbeats once idle.
    pub heartbeat: Duration,
    /// Longest interval between GRTT probes while active.
    pub probe_interval: Duration,
    /// How long, once idle, the sender waits for late repair requests before
    /// it says it may stop (`SenderEvent::MayStop`; see `linger`).
    pub linger: LingerConfig,
    /// Receivers asked to answer each probe (the rest stay quiet).
    pub probe_replies: u32,
    /// Largest datagram to produce (a data packet is T + 47 bytes + the seal's tag).
    pub max_datagram: usize,
    /// First packet counter. Must exceed every counter this node id used under
    /// the same key before: drivers pass the wall clock in nanoseconds, so a
    /// restarted sender never reuses a nonce and is not taken for a replay.
    pub first_seq: u64,
}

/// The symbol size a sender uses unless told otherwise: the largest whose
/// every packet (`wire::MAX_SYMBOL_OVERHEAD`) fits a 1500-byte MTU over IPv4.
pub const DEFAULT_SYMBOL_SIZE: u16 = (1472 - wire::MAX_SYMBOL_OVERHEAD) as u16;

/// The ceiling of the default adaptive rate, bytes per second (1 Gbit/s):
/// above what a radio carries and what this 2-core machine sends, so the
/// path decides, not the setting.
pub const DEFAULT_CEILING: u64 = 125_000_000;

impl Default for SenderConfig {
    fn default() -> SenderConfig {
        SenderConfig {
            session: 1,
            node: 1,
            symbol_size: DEFAULT_SYMBOL_SIZE,
            block_symbols: crate::geometry::DEFAULT_MAX_BLOCK,
            rate: DEFAULT_CEILING,
            queue_target: Some(crate::rate::QUEUE_TARGET),
            burst: 8 * 1500,
            proactive: 0.0,
            initial_grtt: Duration::from_millis(50),
            backoff_k: 4.0,
            loss_margin: true,
            repair_share: 0.5,
            retain_objects: 4096,
            cache_bytes: 16 << 20,
            flush_count: 4,
            heartbeat: Duration::from_secs(1),
            probe_interval: Duration::from_secs(1),
            linger: LingerConfig::default(),
            probe_replies: 4,
            max_datagram: 1472,
            first_seq: 0,
        }
    }
}

/// A sender configuration that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// Packets of this symbol size would exceed the datagram limit.
    #[error("symbol size {symbol_size} makes {packet}-byte packets; the limit is {max}")]
    SymbolSize {
        /// The configured T.
        symbol_size: u16,
        /// The resulting data packet size.
        packet: usize,
        /// The configured datagram limit.
        max: usize,
    },
    /// Block size outside 1..=56403 symbols.
    #[error("block of {0} symbols (must be 1..=56403)")]
    BlockSymbols(u16),
}
