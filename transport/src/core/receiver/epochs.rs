//! What a packet's epoch allows a receiver to take: under an epoch past
//! its grace (kept for repair of what was sent in it), only repair of an
//! object known from live traffic; an epoch not held at all, if later than
//! ours, is reported once (`EpochAhead`) so the member can fetch its keys.
//!
//! Owns `old_repair` and `note_unknown_epoch`. It must not open packets
//! (the framer does) nor decide which epochs are live (the seal does).

use super::*;

impl<S: Seal> Receiver<S> {
    /// Whether a packet under an epoch past its grace (kept for repair of
    /// what was sent in it) is such repair: a repair symbol, from the sender
    /// or a holder, of an object this receiver knows its sender reached
    /// from live traffic (its own packets, or a holder's summary). Anything
    /// else under such an epoch is what a member removed by a rekey could
    /// send: new objects, commands, feedback, summaries.
    pub(super) fn old_repair(&self, node: u32, body: &Body<'_>) -> bool {
        let (sender, f) = match body {
            Body::Data(f, _) => (node, f),
            Body::Repair(origin, f, _) => (*origin, f),
            _ => return false,
        };
        let Some(r) = self.remotes.get(&sender) else { return false };
        let known = r.objects.get(&f.object).map(|o| o.geometry).or_else(|| f.info.map(|i| i.geometry));
        let is_repair = known.is_some_and(|g| f.block < g.blocks() && f.esi >= u32::from(g.symbols_in(f.block)));
        is_repair && r.frontier.is_some_and(|fr| f.object <= fr.object)
    }

    pub(super) fn note_unknown_epoch(&mut self, datagram: &[u8]) {
        let current = self.framer.seal.current_epoch();
        if let Ok(h) = wire::peek_header(datagram) {
            let epoch = h.epoch(current);
            if epoch > current && epoch > self.epoch_ahead {
                self.epoch_ahead = epoch;
                self.events.push_back(ReceiverEvent::EpochAhead { sender: h.node, epoch });
            }
        }
    }
}
