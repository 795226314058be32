//! The run's report: what every node got, lost and sent, summed up.
//!
//! Owns turning a finished `Sim` into a `Report` (per receiver, per region,
//! the ideal code's repair for the worst actual loss). It changes nothing.

use super::*;

impl Sim {
    pub(super) fn report(self, wall: Duration) -> Report {
        let sender = self.senders.first().and_then(|&i| match &self.nodes[i].core {
            Role::Sender(s) => Some(s),
            _ => None,
        });
        let grtt_ms = sender.map_or(0.0, |s| s.grtt().as_secs_f64() * 1e3);
        let mut st = lsim_transport::stats::Stats::default();
        for s in self.senders.iter().filter_map(|&i| self.nodes[i].stats()) {
            st.source_sent += s.source_sent;
            st.repair_sent += s.repair_sent;
            st.commands_sent += s.commands_sent;
            st.repaired_blocks += s.repaired_blocks;
            st.repair_rounds += s.repair_rounds;
            st.repair_refused += s.repair_refused;
        }
        let first_sender = sender.map_or(1, |_| self.nodes[self.senders[0]].id);
        let mut per_receiver = Vec::new();
        let (mut nacks, mut supp, mut fb) = (0, 0, 0);
        let mut last_done = Time::ZERO;
        let mut region_done: Vec<Option<Time>> = vec![None; self.cells.len()];
        let mut region_all = vec![true; self.cells.len()];
        let mut object_done: HashMap<(u32, usize), Time> = HashMap::new();
        for n in &self.nodes {
            let Some(v) = n.verifier() else { continue };
            let Some(s) = n.stats() else { continue };
            nacks += s.nacks_sent;
            supp += s.nacks_suppressed;
            fb += s.feedback_sent;
            let counted = !n.gone || n.finished;
            if counted {
                if let Some(t) = v.completed_at {
                    last_done = last_done.max(t);
                    let d = &mut region_done[n.cell];
                    *d = Some(d.map_or(t, |d| d.max(t)));
                } else {
                    region_all[n.cell] = false;
                }
                for &(sender, i, t) in &v.verified_at {
                    let e = object_done.entry((sender, i)).or_insert(t);
                    *e = (*e).max(t);
                }
            }
            let loss_estimate = match &n.core {
                Role::Receiver(r, _) => r.loss_from(first_sender),
                Role::Repairer(r, _) => r.receiver().loss_from(first_sender),
                _ => None,
            };
            per_receiver.push(ReceiverReport {
                node: n.id,
                verified: v.verified,
                corrupt: v.corrupt,
                lost: v.lost,
                completion_s: v.completed_at.map(Time::as_secs_f64),
                nacks_sent: s.nacks_sent,
                nacks_suppressed: s.nacks_suppressed,
                dropped_bad_seal: s.dropped(DropReason::BadSeal),
                dropped_replay: s.dropped(DropReason::Replay),
                dropped: s.dropped_total(),
                loss_estimate: loss_estimate.unwrap_or(0.0),
                loss_actual: if n.heard == 0 { 0.0 } else { n.lost_on_air as f64 / n.heard as f64 },
                region: n.cell as u32,
                repairer_fallbacks: s.repairer_fallbacks,
            });
        }
        let delivered_all = self.nodes.iter().all(|n| {
            n.verifier().is_none_or(|v| (n.gone && !n.finished) || (v.completed_at.is_some() && v.corrupt == 0))
        });
        let expected = workload::expected(&self.scenario.workload, self.scenario.seed);
        let object_bytes: u64 = expected.iter().map(|e| e.len).sum::<u64>() * self.senders.len() as u64;
        let completion = if delivered_all { last_done } else { self.now };
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let medium_bytes: u64 = self.cells.iter().map(|c| c.medium.bytes).sum();
        let medium_packets: u64 = self.cells.iter().map(|c| c.medium.packets).sum();
        let queue_drops: u64 = self.cells.iter().map(|c| c.medium.queue_drops).sum();
        let regions = (0..self.cells.len())
            .map(|c| {
                let cell = &self.cells[c];
                let (mut receivers, mut local, mut feedback, mut repairer) = (0, 0, 0, None);
                for &i in &cell.nodes {
                    let n = &self.nodes[i];
                    if let Some(s) = n.stats() {
                        local += s.local_repairs;
                        if n.verifier().is_some() {
                            feedback += s.feedback_sent;
                        }
                    }
                    match n.core {
                        Role::Receiver(..) => receivers += 1,
                        Role::Repairer(..) => repairer = Some(n.id),
                        _ => {}
                    }
                }
                let (bytes_in, bytes_out) = cell.link.as_ref().map_or((0, 0), |(down, up)| (down.bytes, up.bytes));
                RegionReport {
                    name: if c == 0 { "senders".to_string() } else { self.scenario.regions[c - 1].name.clone() },
                    receivers,
                    repairer,
                    link_bytes_in: bytes_in,
                    link_bytes_out: bytes_out,
                    link_in_per_object_byte: ratio(bytes_in, object_bytes),
                    local_repair_packets: local,
                    feedback_packets: feedback,
                    completion_s: if region_all[c] { region_done[c].map(Time::as_secs_f64) } else { None },
                }
            })
            .collect();
        let mut objects_done_s: Vec<(u32, usize, f64)> =
            object_done.into_iter().map(|((s, i), t)| (s, i, t.as_secs_f64())).collect();
        objects_done_s.sort_by_key(|&(s, i, _)| (s, i));
        let mut trace = self.trace;
        trace.update(completion.as_micros().to_le_bytes());
        Report {
            scenario: self.scenario.name.clone(),
            seed: self.scenario.seed,
            delivered_all,
            receivers: self.scenario.total_receivers(),
            objects: (expected.len() * self.senders.len()) as u32,
            object_bytes,
            source_packets: st.source_sent,
            repair_packets: st.repair_sent,
            repair_per_source: ratio(st.repair_sent, st.source_sent),
            ideal_repair_per_source: {
                // An ideal code: every packet heard is useful, so the worst
                // receiver needs source / (1 - p) packets in all.
                let worst = per_receiver.iter().map(|r| r.loss_actual).fold(0.0, f64::max).min(0.999);
                worst / (1.0 - worst)
            },
            repair_refused: st.repair_refused,
            command_packets: st.commands_sent,
            feedback_packets: fb,
            nacks_sent: nacks,
            nacks_suppressed: supp,
            repaired_blocks: st.repaired_blocks,
            repair_rounds: st.repair_rounds,
            nacks_per_repaired_block: ratio(nacks, st.repaired_blocks),
            medium_bytes,
            medium_per_object_byte: ratio(medium_bytes, object_bytes),
            medium_packets,
            queue_drops,
            forged_sent: self.forged,
            replayed_sent: self.replayed,
            completion_s: completion.as_secs_f64(),
            goodput_mbps: if completion > Time::ZERO {
                object_bytes as f64 * 8.0 / completion.as_secs_f64() / 1e6
            } else {
                0.0
            },
            grtt_ms,
            events: self.events,
            deliveries: self.deliveries,
            deliveries_per_wall_s: self.deliveries as f64 / wall.as_secs_f64().max(1e-9),
            trace_hash: trace.finalize().iter().map(|b| format!("{b:02x}")).collect(),
            wall_s: wall.as_secs_f64(),
            per_receiver,
            regions,
            samples: self.samples,
            objects_done_s,
        }
    }
}
