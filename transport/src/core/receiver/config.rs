//! How a receiver behaves: its settings and their defaults.
//!
//! Owns `ReceiverConfig`. It holds no state and decides nothing.

use std::time::Duration;

/// How a receiver behaves.
#[derive(Clone, Debug)]
pub struct ReceiverConfig {
    /// Session (group) id; packets of other sessions are dropped.
    pub session: u32,
    /// This node's id.
    pub node: u32,
    /// NORM's backoff factor K (NACK window = K·GRTT); must match the senders'.
    pub backoff_k: f64,
    /// Group size estimate for the backoff distribution (λ = ln(size) + 1).
    pub group_size: f64,
    /// GRTT assumed until a sender advertises one.
    pub initial_grtt: Duration,
    /// Incomplete or undelivered blocks held per object; symbols past this window are dropped.
    pub max_blocks: usize,
    /// Objects in progress per sender.
    pub max_objects: usize,
    /// Bytes of symbols and decoded blocks held at once, over all senders;
    /// symbols that would exceed it are dropped (and asked for again later).
    pub max_buffered: usize,
    /// Senders tracked at once.
    pub max_senders: usize,
    /// Take objects a sender still holds from before we first heard it.
    pub accept_backlog: bool,
    /// Largest datagram to produce.
    pub max_datagram: usize,
    /// Seed of the receiver's random choices.
    pub seed: u64,
    /// First packet counter of this node's feedback (see `SenderConfig::first_seq`).
    pub first_seq: u64,
    /// The node id of this region's repairer: NACKs go to it (scoped to the
    /// region) instead of to the sender, until it stays silent.
    pub repairer: Option<u32>,
    /// NACK rounds sent to the repairer with nothing heard from it since the
    /// previous one before falling back to the sender. Anything heard from the
    /// repairer later makes it the first choice again.
    pub repairer_patience: u32,
    /// A sender not heard from for this long is silent (gone, or out of
    /// range): a holder's summary of its objects is believed, and what is
    /// missing of them is asked of that holder instead (`Holdings`).
    pub silent_after: Duration,
    /// The holder whose summaries offer the group's history (the archive,
    /// under the history policy `shared`): the objects it names older than
    /// what this receiver has of a sender are fetched too, asked of it
    /// alone. `None`: no history is taken.
    pub history_from: Option<u32>,
}

impl Default for ReceiverConfig {
    fn default() -> ReceiverConfig {
        ReceiverConfig {
            session: 1,
            node: 2,
            backoff_k: 4.0,
            group_size: 1000.0,
            initial_grtt: Duration::from_millis(50),
            max_blocks: 256,
            max_objects: 4096,
            max_buffered: 64 << 20,
            max_senders: 256,
            accept_backlog: true,
            max_datagram: 1472,
            seed: 0,
            first_seq: 0,
            repairer: None,
            repairer_patience: 3,
            silent_after: Duration::from_secs(5),
            history_from: None,
        }
    }
}
