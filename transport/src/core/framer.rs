//! Turning bodies into sealed datagrams and back, for one node.
//!
//! Owns the node's identity on the wire (session, node id, packet counter) and
//! its seal. Every packet a core sends goes through `write`, every datagram it
//! receives through `open`, which drops and names what is not ours, not
//! authentic, or heard before, before any protocol state is touched.

use std::collections::HashMap;

use crate::replay::ReplayWindow;
use crate::seal::{Seal, SealError};
use crate::stats::{DropReason, Stats};
use crate::wire::{self, Body, Header, RECEIVER_SEQ_BIT};

/// Peers whose replay windows are kept; past this the state is dropped wholesale.
const MAX_PEERS: usize = 65_536;

/// A sender's counter this far past the highest accepted from it means the
/// sender restarted: a node's counter starts from the wall clock in
/// nanoseconds, so a restart moves it on by about the time since the last
/// run began, while a sender that keeps running moves it by one per packet
/// (2^20 packets is 1.4 GB of symbols no receiver heard).
const RESTART_JUMP: u64 = 1 << 20;

pub(crate) struct Framer<S> {
    pub(crate) seal: S,
    pub(crate) session: u32,
    pub(crate) node: u32,
    seq: u64,
    /// Packets sealed so far (the first `LONG_EVERY` carry the full counter:
    /// peers that heard an earlier run of this node know another one).
    sealed: u64,
    replay: HashMap<(u32, bool), ReplayWindow>,
    /// Senders (node ids) seen restarting, for the core to forget what it
    /// knew of their last run (their object numbers start again).
    pub(crate) restarted: Vec<u32>,
}

/// True for the packets that may travel with a short header: symbols of
/// files (a frame without object info is one). Chat and rekeys are few
/// packets, sparse, and read by members who may have heard nothing from their
/// sender yet; they always carry the full counter, so the first one heard opens.
fn bulk(body: &Body<'_>) -> bool {
    matches!(body, Body::Data(f, _) | Body::Repair(_, f, _)
        if f.info.is_none_or(|i| i.kind == wire::ObjectKind::File))
}

impl<S: Seal> Framer<S> {
    /// `first_seq` must exceed every counter this node id sealed under the
    /// same key before (drivers use the wall clock in nanoseconds), or a
    /// restarted node would reuse nonces and be refused as a replay.
    pub(crate) fn new(seal: S, session: u32, node: u32, receiver: bool, first_seq: u64) -> Framer<S> {
        let seq = (first_seq & !RECEIVER_SEQ_BIT) | if receiver { RECEIVER_SEQ_BIT } else { 0 };
        Framer { seal, session, node, seq, sealed: 0, replay: HashMap::new(), restarted: Vec::new() }
    }

    /// The highest packet counter accepted from sender `node` (its run's
    /// position: a restarted sender starts far past it).
    pub(crate) fn counter_of(&self, node: u32) -> Option<u64> {
        self.replay.get(&(node, false)).and_then(ReplayWindow::top)
    }

    /// Remembers that sender `node` had got to `counter` (a holder's store,
    /// after a restart): its next packet tells whether it restarted since.
    pub(crate) fn recall(&mut self, node: u32, counter: u64) {
        if self.replay.len() < MAX_PEERS {
            let window = self.replay.entry((node, false)).or_default();
            if window.top().is_none_or(|t| t < counter) {
                window.accept(counter & !RECEIVER_SEQ_BIT);
            }
        }
    }

    /// True if the next symbol of a file sealed goes with the long header
    /// (the sender then adds the object info: a peer that can rebuild nothing
    /// else of this node can start from that packet).
    pub(crate) fn next_is_long(&self) -> bool {
        self.sealed < wire::LONG_EVERY || (self.seq & !RECEIVER_SEQ_BIT).is_multiple_of(wire::LONG_EVERY)
    }

    /// Seals `body` into `out` under the current epoch; returns the packet's length.
    pub(crate) fn write(&mut self, body: &Body<'_>, out: &mut Vec<u8>, stats: &mut Stats) -> Result<usize, SealError> {
        let epoch = self.seal.current_epoch();
        self.write_under(epoch, body, out, stats)
    }

    /// Seals `body` into `out` under `epoch` (repair: the epoch its object
    /// was sent in); returns the packet's length. An epoch whose key is not
    /// held is `SealError::UnknownEpoch`, and nothing is counted.
    pub(crate) fn write_under(
        &mut self,
        epoch: u32,
        body: &Body<'_>,
        out: &mut Vec<u8>,
        stats: &mut Stats,
    ) -> Result<usize, SealError> {
        let header =
            Header { packet_type: body.packet_type(), session: self.session, node: self.node, epoch, seq: self.seq };
        let long = self.next_is_long() || !bulk(body);
        wire::seal_packet_as(&mut self.seal, &header, long, body, out)?;
        self.sealed += 1;
        self.seq = (self.seq & RECEIVER_SEQ_BIT) | (self.seq.wrapping_add(1) & !RECEIVER_SEQ_BIT);
        stats.packets_out += 1;
        stats.bytes_out += out.len() as u64;
        Ok(out.len())
    }

    /// Copies `datagram` into `scratch`, opens and parses it; counts and drops
    /// anything not for us or not authentic.
    pub(crate) fn open<'a>(
        &mut self,
        datagram: &[u8],
        scratch: &'a mut Vec<u8>,
        stats: &mut Stats,
    ) -> Option<(Header, Body<'a>)> {
        stats.packets_in += 1;
        let peek = match wire::peek_header(datagram) {
            Ok(h) => h,
            Err(e) => {
                stats.drop(DropReason::of(&e));
                return None;
            }
        };
        if peek.session_byte != self.session as u8 {
            stats.drop(DropReason::OtherSession);
            return None;
        }
        if peek.node == self.node {
            stats.drop(DropReason::Own);
            return None;
        }
        scratch.clear();
        scratch.extend_from_slice(datagram);
        let replay = &self.replay;
        let reference = |node, receiver| replay.get(&(node, receiver)).and_then(ReplayWindow::top);
        match wire::open_peeked(&mut self.seal, scratch, &peek, self.session, reference) {
            Ok(p) => {
                let header = p.0;
                let peer = (header.node, header.seq & RECEIVER_SEQ_BIT != 0);
                if self.replay.len() >= MAX_PEERS && !self.replay.contains_key(&peer) {
                    self.replay.clear();
                }
                let window = self.replay.entry(peer).or_default();
                let (counter, before) = (header.seq & !RECEIVER_SEQ_BIT, window.top());
                if window.accept(counter) {
                    // Bounded: a sender core reads no restarts (it keeps nothing per peer sender).
                    let jumped = before.is_some_and(|t| counter > t.saturating_add(RESTART_JUMP));
                    if !peer.1 && jumped && self.restarted.len() < 64 {
                        self.restarted.push(peer.0);
                    }
                    Some(p)
                } else {
                    stats.drop(DropReason::Replay);
                    None
                }
            }
            Err(e) => {
                stats.drop(DropReason::of(&e));
                None
            }
        }
    }
}
