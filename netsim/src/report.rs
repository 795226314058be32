//! What a run produced, as a table for people and JSON for programs.
//!
//! Owns `Report` and `ReceiverReport` and their rendering. Filled in by the
//! sim at the end of a run; computes only ratios of what it was given.

use std::fmt::Write;

use serde::Serialize;

/// One receiver's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct ReceiverReport {
    /// Node id.
    pub node: u32,
    /// Objects delivered with the right SHA-256.
    pub verified: u32,
    /// Objects delivered wrong (must be 0).
    pub corrupt: u32,
    /// Objects the core gave up on.
    pub lost: u32,
    /// Virtual time at which its last object was verified.
    pub completion_s: Option<f64>,
    /// NACK entries it sent.
    pub nacks_sent: u64,
    /// NACK entries it suppressed.
    pub nacks_suppressed: u64,
    /// Packets it dropped as forged or damaged.
    pub dropped_bad_seal: u64,
    /// Authentic packets it dropped as heard before (replays, duplicates).
    pub dropped_replay: u64,
    /// Packets it dropped for any reason.
    pub dropped: u64,
    /// Its own estimate of its loss from the sender.
    pub loss_estimate: f64,
    /// The share of the senders' packets its loss process actually took.
    pub loss_actual: f64,
    /// The region it sits in (index into `Report::regions`; 0 without regions).
    pub region: u32,
    /// Times it gave up on a silent repairer and asked the sender instead.
    pub repairer_fallbacks: u64,
}

/// One region (radio cell) of a topology: its link to the rest and what crossed it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RegionReport {
    /// Region name from the scenario.
    pub name: String,
    /// Receivers in it.
    pub receivers: u32,
    /// Node id of its repairer, if it has one.
    pub repairer: Option<u32>,
    /// Datagram bytes that crossed its link into the region.
    pub link_bytes_in: u64,
    /// Datagram bytes that crossed its link out of the region.
    pub link_bytes_out: u64,
    /// link_bytes_in / object bytes.
    pub link_in_per_object_byte: f64,
    /// Repair data packets sent inside the region by its repairer.
    pub local_repair_packets: u64,
    /// Feedback packets sent by the region's nodes.
    pub feedback_packets: u64,
    /// Virtual time the region's last receiver completed.
    pub completion_s: Option<f64>,
}

/// The run at one moment, for plots. Counts are cumulative since time zero.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Sample {
    /// Virtual time, seconds.
    pub t_s: f64,
    /// Object bytes verified so far, summed over all receivers.
    pub delivered_bytes: u64,
    /// Per region, the same order as `Report::regions`.
    pub regions: Vec<RegionSample>,
}

/// One region's cumulative traffic at a sample.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RegionSample {
    /// Repair data packets heard in the region (from the sender or its repairer).
    pub repair_packets: u64,
    /// Feedback (NACK) packets sent by the region's nodes.
    pub nack_packets: u64,
    /// Datagram bytes that crossed the region's link inward.
    pub link_bytes_in: u64,
}

/// The outcome of one run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Seed used.
    pub seed: u64,
    /// Every receiver verified every object.
    pub delivered_all: bool,
    /// Receivers.
    pub receivers: u32,
    /// Objects in the workload.
    pub objects: u32,
    /// Bytes of all objects together.
    pub object_bytes: u64,
    /// Source symbols the sender sent.
    pub source_packets: u64,
    /// Repair symbols the sender sent.
    pub repair_packets: u64,
    /// repair_packets / source_packets.
    pub repair_per_source: f64,
    /// What an ideal code would need for the worst receiver's actual loss p
    /// (every packet it hears useful): p / (1 - p) repair per source.
    pub ideal_repair_per_source: f64,
    /// Repair symbols NACKs asked for beyond their requester's budget, not sent.
    pub repair_refused: u64,
    /// Commands (flush, heartbeat, probe) sent.
    pub command_packets: u64,
    /// Feedback packets all receivers sent.
    pub feedback_packets: u64,
    /// NACK entries all receivers sent.
    pub nacks_sent: u64,
    /// NACK entries all receivers suppressed.
    pub nacks_suppressed: u64,
    /// Blocks the sender repaired on demand (distinct).
    pub repaired_blocks: u64,
    /// Repair rounds the sender ran (a block may take several).
    pub repair_rounds: u64,
    /// nacks_sent / repaired_blocks.
    pub nacks_per_repaired_block: f64,
    /// Datagram bytes that went on the medium.
    pub medium_bytes: u64,
    /// medium_bytes / (object_bytes): what the air carried per byte of content.
    pub medium_per_object_byte: f64,
    /// Packets that went on the medium.
    pub medium_packets: u64,
    /// Packets dropped at the medium's queue.
    pub queue_drops: u64,
    /// Forged packets injected.
    pub forged_sent: u64,
    /// Captured packets replayed.
    pub replayed_sent: u64,
    /// Virtual time when the last receiver completed (or the run stopped).
    pub completion_s: f64,
    /// object_bytes · 8 / completion_s, in Mbit/s.
    pub goodput_mbps: f64,
    /// The sender's final GRTT estimate, milliseconds.
    pub grtt_ms: f64,
    /// Events processed.
    pub events: u64,
    /// Datagrams delivered to nodes (one per packet per hearing node).
    pub deliveries: u64,
    /// The simulator's own speed: deliveries per wall-clock second.
    pub deliveries_per_wall_s: f64,
    /// SHA-256 of the event trace: equal seeds give equal hashes.
    pub trace_hash: String,
    /// Wall-clock seconds the run took (not part of the trace).
    pub wall_s: f64,
    /// Per receiver.
    pub per_receiver: Vec<ReceiverReport>,
    /// Per cell: first the senders' own cell (named "senders"), then each region.
    pub regions: Vec<RegionReport>,
    /// The run over time, every `sample_ms` of virtual time.
    pub samples: Vec<Sample>,
    /// When each object was verified by the last receiver to get it:
    /// (sender node, index in its workload, seconds).
    pub objects_done_s: Vec<(u32, usize, f64)>,
}

impl Report {
    /// A readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "scenario {} (seed {})", self.scenario, self.seed);
        let rows: [(&str, String); 16] = [
            (
                "delivered to all",
                format!("{} ({} receivers × {} objects)", self.delivered_all, self.receivers, self.objects),
            ),
            ("object bytes", self.object_bytes.to_string()),
            (
                "completion",
                format!(
                    "{:.3} s virtual ({:.2} s wall, {:.0} deliveries/s)",
                    self.completion_s, self.wall_s, self.deliveries_per_wall_s
                ),
            ),
            ("goodput", format!("{:.2} Mbit/s", self.goodput_mbps)),
            ("source packets", self.source_packets.to_string()),
            (
                "repair packets",
                format!(
                    "{} ({:.3} per source; an ideal code: {:.3})",
                    self.repair_packets, self.repair_per_source, self.ideal_repair_per_source
                ),
            ),
            ("repaired blocks", format!("{} in {} rounds", self.repaired_blocks, self.repair_rounds)),
            ("NACKs sent", format!("{} ({:.2} per repaired block)", self.nacks_sent, self.nacks_per_repaired_block)),
            ("NACKs suppressed", self.nacks_suppressed.to_string()),
            ("feedback packets", self.feedback_packets.to_string()),
            ("commands", self.command_packets.to_string()),
            ("medium bytes", format!("{} ({:.3} per object byte)", self.medium_bytes, self.medium_per_object_byte)),
            ("medium queue drops", self.queue_drops.to_string()),
            ("forged injected", self.forged_sent.to_string()),
            ("sender GRTT", format!("{:.2} ms", self.grtt_ms)),
            ("trace", format!("{} ({} events)", self.trace_hash, self.events)),
        ];
        for (k, v) in rows {
            let _ = writeln!(s, "  {k:<20} {v}");
        }
        let _ = writeln!(
            s,
            "  {:<6} {:>8} {:>7} {:>5} {:>12} {:>6} {:>6} {:>8} {:>6} {:>6}",
            "node", "verified", "corrupt", "lost", "done at (s)", "nacks", "supp", "forged", "loss", "(est)"
        );
        let shown = self.per_receiver.len().min(20);
        for r in &self.per_receiver[..shown] {
            let done = r.completion_s.map_or("-".to_string(), |t| format!("{t:.3}"));
            let _ = writeln!(
                s,
                "  {:<6} {:>8} {:>7} {:>5} {:>12} {:>6} {:>6} {:>8} {:>5.1}% {:>5.1}%",
                r.node,
                r.verified,
                r.corrupt,
                r.lost,
                done,
                r.nacks_sent,
                r.nacks_suppressed,
                r.dropped_bad_seal,
                r.loss_actual * 100.0,
                r.loss_estimate * 100.0
            );
        }
        if self.per_receiver.len() > shown {
            let _ = writeln!(s, "  ... and {} more receivers", self.per_receiver.len() - shown);
        }
        if self.regions.len() > 1 {
            let _ = writeln!(
                s,
                "  {:<12} {:>9} {:>8} {:>12} {:>9} {:>12} {:>8} {:>12}",
                "region", "receivers", "repairer", "link in (B)", "per byte", "link out (B)", "local", "done at (s)"
            );
            for r in self.regions.iter().filter(|r| r.receivers > 0 || r.link_bytes_in > 0) {
                let done = r.completion_s.map_or("-".to_string(), |t| format!("{t:.3}"));
                let _ = writeln!(
                    s,
                    "  {:<12} {:>9} {:>8} {:>12} {:>9.3} {:>12} {:>8} {:>12}",
                    r.name,
                    r.receivers,
                    r.repairer.map_or("-".to_string(), |n| n.to_string()),
                    r.link_bytes_in,
                    r.link_in_per_object_byte,
                    r.link_bytes_out,
                    r.local_repair_packets,
                    done
                );
            }
        }
        s
    }
}
