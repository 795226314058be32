//! The outsider's attacks: forged packets, NACK floods, replays.
//!
//! Owns what the scenario's `[attack]` node sends and when its next attack
//! is due. It must not touch the honest nodes' state: it only offers frames
//! to the medium like any node.

use super::*;

impl Sim {
    /// The outsider sends one forgery and schedules the next: alternately a
    /// captured packet with one bit flipped, and a well-formed data packet
    /// claiming to be the sender but sealed under the wrong key.
    pub(super) fn forge(&mut self) {
        let Some(fi) = self.forger else { return };
        let rate = self.scenario.attack.forged_per_second;
        let file_len = self.scenario.workload.file_bytes.max(1);
        let node = &mut self.nodes[fi];
        let rng = &mut node.rng;
        let bytes: Option<Vec<u8>> = match &node.core {
            Role::Outsider(Some(last), _) if self.forged.is_multiple_of(2) => {
                let mut b = last.clone();
                let at = rng.below(b.len() as u64) as usize;
                b[at] ^= 1 << rng.below(8);
                Some(b)
            }
            _ => {
                let g = Geometry::for_object(file_len, 1400, 64).ok();
                g.map(|geometry| {
                    let k = u64::from(geometry.symbols_in(0));
                    let h =
                        DataHeader { object: 0, kind: ObjectKind::File, geometry, block: 0, esi: rng.below(k) as u32 };
                    let symbol: Vec<u8> = (0..geometry.symbol_size()).map(|_| rng.next_u64() as u8).collect();
                    let header = Header {
                        packet_type: PacketType::Data,
                        session: 1,
                        node: 1,
                        epoch: 0,
                        seq: rng.next_u64() >> 1,
                    };
                    let mut out = Vec::new();
                    let mut wrong = TestSeal::new("not the group key");
                    let _ = wire::seal_packet(&mut wrong, &header, &Body::Data(h.frame(true), &symbol), &mut out);
                    debug_assert_eq!(wrong.tag_len(), 16);
                    out
                })
            }
        };
        if let Some(b) = bytes {
            self.forged += 1;
            self.record(b'f', fi, b.len());
            self.send_from(fi, b.into(), Scope::Group);
        }
        let next = self.now + Duration::from_secs_f64(1.0 / rate);
        self.agenda.at(next, Event::Forge);
    }

    /// A rogue member asks the first sender for a whole block of its first
    /// file again, sealed under the group key, cycling over the blocks.
    pub(super) fn nack_flood(&mut self) {
        let Some(fi) = self.forger else { return };
        let len = workload::files(&self.scenario.workload).first().copied().unwrap_or(0);
        let cfg = self.scenario.sender_config(1);
        if let Ok(g) = Geometry::for_object(len.max(1), cfg.symbol_size, cfg.block_symbols) {
            let block = (self.flood_nacks % u64::from(g.blocks())) as u32;
            let needed = u32::from(g.symbols_in(block));
            let fb = lsim_transport::wire::Feedback {
                target: self.nodes[self.senders[0]].id,
                echo: None,
                loss: u16::MAX,
                relay: None,
                overflow: None,
                received: None,
                entries: vec![lsim_transport::wire::NackEntry::Block { object: 0, block, needed }],
            };
            let header = Header {
                packet_type: PacketType::Feedback,
                session: 1,
                node: 0xbad,
                epoch: 0,
                seq: (1 << 63) | self.flood_nacks,
            };
            let mut out = Vec::new();
            let mut member = TestSeal::new(GROUP_KEY);
            if wire::seal_packet(&mut member, &header, &Body::Feedback(fb), &mut out).is_ok() {
                self.flood_nacks += 1;
                self.record(b'n', fi, out.len());
                self.send_from(fi, out.into(), Scope::Group);
            }
        }
        let next = self.now + Duration::from_secs_f64(1.0 / self.scenario.attack.nack_flood_per_second);
        self.agenda.at(next, Event::NackFlood);
    }

    /// The outsider sends an authentic packet it captured, unchanged:
    /// alternately the latest one (most receivers just took it) and the
    /// first one it heard (long out of every replay window).
    pub(super) fn replay(&mut self) {
        let Some(fi) = self.forger else { return };
        let bytes = match &self.nodes[fi].core {
            Role::Outsider(last, first) => if self.replayed.is_multiple_of(2) { last } else { first }.clone(),
            _ => None,
        };
        if let Some(b) = bytes {
            self.replayed += 1;
            self.record(b'p', fi, b.len());
            self.send_from(fi, b.into(), Scope::Group);
        }
        let next = self.now + Duration::from_secs_f64(1.0 / self.scenario.attack.replayed_per_second);
        self.agenda.at(next, Event::Replay);
    }
}
