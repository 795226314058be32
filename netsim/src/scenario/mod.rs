//! What a simulation run is: a scenario file (TOML) and a seed.
//!
//! Owns the scenario's schema, its defaults, and its validation with errors
//! that name the field and the line. It builds the transport configurations
//! the nodes run with; it does not run anything.

use std::time::Duration;

use lsim_transport::{ReceiverConfig, SenderConfig};
use serde::Deserialize;
use thiserror::Error;

use crate::loss::Loss;

mod validate;

/// A scenario that could not be read.
#[derive(Debug, Error)]
pub enum ScenarioError {
    /// Not TOML, or a field of the wrong type or unknown (the message names line and field).
    #[error("{0}")]
    Parse(String),
    /// A field with a value the simulator cannot run.
    #[error("{}{field} = {value}: {why}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
    Invalid {
        /// Dotted field name.
        field: String,
        /// The line it was set on, if it was set in the file.
        line: Option<usize>,
        /// The value given.
        value: String,
        /// What is wrong with it.
        why: String,
    },
}

/// A whole scenario.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, for reports.
    pub name: String,
    /// What the scenario shows.
    #[serde(default)]
    pub description: String,
    /// Seed of every random choice in the run.
    #[serde(default = "one")]
    pub seed: u64,
    /// Receivers in the senders' own cell (regions add their own).
    #[serde(default)]
    pub receivers: u32,
    /// Senders in the senders' own cell; each sends the whole workload.
    #[serde(default = "one_u32")]
    pub senders: u32,
    /// Virtual seconds after which the run stops, finished or not.
    #[serde(default = "default_time_limit")]
    pub time_limit_s: f64,
    /// Per-receiver loss.
    #[serde(default)]
    pub loss: LossSpec,
    /// The shared medium.
    #[serde(default)]
    pub link: LinkSpec,
    /// What the sender sends.
    pub workload: Workload,
    /// Sender settings.
    #[serde(default)]
    pub sender: SenderSpec,
    /// Receiver settings.
    #[serde(default)]
    pub receiver: ReceiverSpec,
    /// An outsider injecting packets.
    #[serde(default)]
    pub attack: AttackSpec,
    /// Radio cells joined to the senders' cell by links of their own.
    #[serde(default)]
    pub regions: Vec<RegionSpec>,
    /// Things that happen mid-run: members joining, leaving, repairers crashing.
    #[serde(default)]
    pub events: Vec<EventSpec>,
    /// Interval of the report's time samples (for plots), milliseconds.
    #[serde(default = "default_sample_ms")]
    pub sample_ms: f64,
}

/// A region: its own radio cell behind a link to the senders' cell (through a router).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionSpec {
    /// Name, for reports and events.
    pub name: String,
    /// Receivers in the cell.
    #[serde(default)]
    pub receivers: u32,
    /// Senders in the cell; each sends the whole workload to everyone.
    #[serde(default)]
    pub senders: u32,
    /// Whether the region has a repairer (an extra node that also receives).
    #[serde(default)]
    pub repairer: bool,
    /// Loss of the repairer's own reception. Default none: a repairer sits at
    /// the gateway (a vehicle's mast radio, wired to the router) and hears the
    /// link as it arrives; set it to model a repairer out in the cell.
    #[serde(default)]
    pub repairer_loss: LossSpec,
    /// Loss of the members' radios inside the cell (default: the top-level `loss`).
    pub loss: Option<LossSpec>,
    /// Capacity of the cell's shared medium (default: the top-level link's).
    pub cell_bps: Option<u64>,
    /// The link between this cell and the senders' cell.
    #[serde(default)]
    pub link: RegionLink,
}

/// A point-to-point link (each direction its own pipe).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegionLink {
    /// Rate in bits per second.
    pub bandwidth_bps: u64,
    /// One-way delay.
    pub delay_ms: f64,
    /// Independent loss on the link.
    pub loss: f64,
    /// Bytes queued at each end before drop-tail.
    pub queue_bytes: u64,
}

impl Default for RegionLink {
    fn default() -> Self {
        RegionLink { bandwidth_bps: 2_000_000, delay_ms: 10.0, loss: 0.0, queue_bytes: 64 * 1024 }
    }
}

/// Something that happens during a run.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    /// Virtual time, seconds.
    pub at_s: f64,
    /// What happens.
    pub action: Action,
    /// The region it happens in ("" or absent: the senders' cell).
    #[serde(default)]
    pub region: String,
    /// How many receivers join or leave.
    #[serde(default = "one_u32")]
    pub count: u32,
}

/// A membership event.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Receivers switch on (they are part of the region but hear nothing before).
    Join,
    /// Receivers go away for good (no longer expected to complete).
    Leave,
    /// The region's repairer dies without a word.
    CrashRepairer,
    /// Receivers go out of range: they hear and send nothing (their timers
    /// run on) until a `back` event, and are still expected to complete.
    Away,
    /// The receivers longest away come back in range.
    Back,
    /// Senders stop for good (switched off): nothing more from them, no
    /// repair either. `count` senders of the cell.
    Quit,
}

/// Loss model, the same for every receiver (each draws independently).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(tag = "model", rename_all = "kebab-case", deny_unknown_fields)]
pub enum LossSpec {
    /// No loss.
    #[default]
    None,
    /// Independent loss with probability `p`.
    Bernoulli {
        /// Loss probability, 0 ≤ p < 1.
        p: f64,
    },
    /// Bursty loss: all packets lost in the bad state, average `mean_loss`, bursts of `mean_burst` packets.
    GilbertElliott {
        /// Average loss.
        mean_loss: f64,
        /// Mean burst length in packets.
        mean_burst: f64,
    },
}

impl LossSpec {
    /// A fresh loss process of this model.
    pub fn process(&self) -> Loss {
        match *self {
            LossSpec::None => Loss::None,
            LossSpec::Bernoulli { p } => Loss::Bernoulli { p },
            LossSpec::GilbertElliott { mean_loss, mean_burst } => Loss::bursty(mean_loss, mean_burst),
        }
    }
}

/// The shared medium (one transmission at a time, like one radio channel).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkSpec {
    /// Medium capacity in bits per second (0: unlimited).
    pub bandwidth_bps: u64,
    /// Per-packet bytes on the air besides the datagram (IP + UDP headers).
    pub overhead_bytes: u32,
    /// Bytes queued for the medium before further packets are dropped.
    pub queue_bytes: u64,
    /// Propagation delay.
    pub delay_ms: f64,
    /// Extra uniform random delay per packet per receiver.
    pub jitter_ms: f64,
    /// Probability that a delivery is held back by `reorder_ms` (reordering).
    pub reorder: f64,
    /// How long a reordered packet is held.
    pub reorder_ms: f64,
    /// Probability that a delivery happens twice.
    pub duplicate: f64,
}

impl Default for LinkSpec {
    fn default() -> Self {
        LinkSpec {
            bandwidth_bps: 11_000_000,
            overhead_bytes: 28,
            queue_bytes: 256 * 1024,
            delay_ms: 1.0,
            jitter_ms: 1.0,
            reorder: 0.0,
            reorder_ms: 5.0,
            duplicate: 0.0,
        }
    }
}

/// What the sender sends, all from time zero.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Size of one file object (0: none).
    #[serde(default)]
    pub file_bytes: u64,
    /// Number of chat objects.
    #[serde(default)]
    pub chats: u32,
    /// Bytes per chat message.
    #[serde(default = "default_chat_bytes")]
    pub chat_bytes: u32,
    /// Interval between chat messages (0: all queued at once).
    #[serde(default)]
    pub chat_interval_ms: f64,
    /// More files, sent after `file_bytes` (sizes in bytes).
    #[serde(default)]
    pub files: Vec<u64>,
    /// Number of rekey messages.
    #[serde(default)]
    pub rekeys: u32,
    /// Bytes per rekey message.
    #[serde(default = "default_rekey_bytes")]
    pub rekey_bytes: u32,
    /// Interval between rekeys (0: all queued at once).
    #[serde(default)]
    pub rekey_interval_ms: f64,
}

/// Sender settings; unset fields keep the transport's defaults.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SenderSpec {
    /// Symbol size T.
    pub symbol_size: Option<u16>,
    /// Source symbols per block K.
    pub block_symbols: Option<u16>,
    /// Pacing rate in bits per second (0: unpaced), or with `rate_auto` its
    /// ceiling. Default: the transport's ceiling (1 Gbit/s) when adaptive,
    /// 90 % of the link when fixed.
    pub rate_bps: Option<u64>,
    /// Proactive repair share of each block.
    pub proactive: Option<f64>,
    /// Answer NACKs with a margin for the loss their receiver reports.
    pub loss_margin: Option<bool>,
    /// The largest share of the rate one receiver's NACKs may take in repair.
    pub repair_share: Option<f64>,
    /// Backoff factor K (also given to the receivers).
    pub backoff_k: Option<f64>,
    /// GRTT before the first probe echo, milliseconds.
    pub initial_grtt_ms: Option<f64>,
    /// Mebibytes of blocks (and encoders) kept in the sender's cache.
    pub cache_mib: Option<usize>,
    /// Adapt the rate to the queueing delay probes show (a 5 ms target),
    /// with `rate_bps` as the ceiling. Default: true, as the transport's.
    pub rate_auto: Option<bool>,
}

/// Receiver settings; unset fields keep the transport's defaults.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverSpec {
    /// Group size estimate for the NACK backoff.
    pub group_size: Option<f64>,
    /// Blocks held per object.
    pub max_blocks: Option<usize>,
    /// Mebibytes of received blocks each member keeps to repair others
    /// from when their sender has gone silent (a holder, as `lsim chat`
    /// members are). Default 0: plain receivers.
    pub hold_mib: Option<usize>,
}

/// An outsider without the group key.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackSpec {
    /// Forged packets per second: captured packets with a flipped bit, and
    /// packets sealed under a wrong key claiming to be the sender.
    #[serde(default)]
    pub forged_per_second: f64,
    /// Replayed packets per second: authentic packets captured off the air
    /// and sent again unchanged, alternately the latest and the first one heard.
    #[serde(default)]
    pub replayed_per_second: f64,
    /// NACKs per second from a rogue *member* (it holds the group key): each
    /// asks the first sender for a whole block again, cycling over the blocks
    /// of the first file, as if it had received nothing.
    #[serde(default)]
    pub nack_flood_per_second: f64,
}

fn one() -> u64 {
    1
}
/// Regions a scenario may have (node ids of repairers are 60000 + region).
pub const MAX_REGIONS: usize = 256;

fn one_u32() -> u32 {
    1
}
fn default_sample_ms() -> f64 {
    100.0
}
fn default_rekey_bytes() -> u32 {
    600
}
fn default_time_limit() -> f64 {
    600.0
}
fn default_chat_bytes() -> u32 {
    120
}

impl Scenario {
    /// Parses a scenario file's text with `overrides` (`dotted.key=value`, the
    /// value in TOML syntax or a bare string) applied, then validates it.
    pub fn parse_with(text: &str, overrides: &[String]) -> Result<Scenario, ScenarioError> {
        if overrides.is_empty() {
            return Scenario::parse(text);
        }
        let mut doc: toml::Table = toml::from_str(text).map_err(|e| ScenarioError::Parse(e.to_string()))?;
        for o in overrides {
            let (key, value) =
                o.split_once('=').ok_or_else(|| ScenarioError::Parse(format!("--set {o}: expected key=value")))?;
            let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(value.to_string()));
            let mut table = &mut doc;
            let mut parts = key.trim().split('.').peekable();
            while let Some(part) = parts.next() {
                if parts.peek().is_none() {
                    table.insert(part.to_string(), value.clone());
                    break;
                }
                let next = table.entry(part.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
                table = next
                    .as_table_mut()
                    .ok_or_else(|| ScenarioError::Parse(format!("--set {o}: {part} is not a table")))?;
            }
        }
        let s: Scenario =
            doc.try_into().map_err(|e: toml::de::Error| ScenarioError::Parse(format!("with --set: {e}")))?;
        s.validate(None)?;
        Ok(s)
    }

    /// Parses and validates a scenario file's text.
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse(e.to_string()))?;
        s.validate(Some(text))?;
        Ok(s)
    }

    /// The loss process of one receiver.
    pub fn loss_process(&self) -> Loss {
        self.loss.process()
    }

    /// Receivers in all: the senders' cell and every region.
    pub fn total_receivers(&self) -> u32 {
        self.regions.iter().fold(self.receivers, |n, r| n.saturating_add(r.receivers))
    }

    /// The sender's transport configuration.
    pub fn sender_config(&self, node: u32) -> SenderConfig {
        let d = SenderConfig::default();
        let s = &self.sender;
        let auto = s.rate_auto.unwrap_or(d.queue_target.is_some());
        SenderConfig {
            session: 1,
            node,
            symbol_size: s.symbol_size.unwrap_or(d.symbol_size),
            block_symbols: s.block_symbols.unwrap_or(d.block_symbols),
            rate: s.rate_bps.map_or(if auto { d.rate } else { self.default_rate() }, |r| r / 8),
            proactive: s.proactive.unwrap_or(d.proactive),
            loss_margin: s.loss_margin.unwrap_or(d.loss_margin),
            repair_share: s.repair_share.unwrap_or(d.repair_share),
            backoff_k: s.backoff_k.unwrap_or(d.backoff_k),
            initial_grtt: s.initial_grtt_ms.map_or(d.initial_grtt, |ms| Duration::from_secs_f64(ms / 1e3)),
            cache_bytes: s.cache_mib.map_or(d.cache_bytes, |m| m << 20),
            queue_target: auto.then_some(lsim_transport::rate::QUEUE_TARGET),
            ..d
        }
    }

    /// A fixed pacing that leaves room on the medium for feedback: 90 % of the link.
    fn default_rate(&self) -> u64 {
        self.link.bandwidth_bps / 8 * 9 / 10
    }

    /// A receiver's transport configuration.
    pub fn receiver_config(&self, node: u32, seed: u64) -> ReceiverConfig {
        let d = ReceiverConfig::default();
        ReceiverConfig {
            session: 1,
            node,
            backoff_k: self.sender.backoff_k.unwrap_or(d.backoff_k),
            group_size: self.receiver.group_size.unwrap_or(d.group_size),
            initial_grtt: self.sender_config(0).initial_grtt,
            max_blocks: self.receiver.max_blocks.unwrap_or(d.max_blocks),
            seed,
            ..d
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "name = \"t\"\nreceivers = 3\n[workload]\nfile_bytes = 1000\n";

    #[test]
    fn minimal_file_parses_with_defaults() {
        let s = Scenario::parse(MIN).unwrap();
        assert_eq!(s.seed, 1);
        assert_eq!(s.loss, LossSpec::None);
        assert_eq!(s.link.bandwidth_bps, 11_000_000);
        // The transport's default: adaptive, up to its ceiling; fixed, 90 % of the link.
        let d = SenderConfig::default();
        assert_eq!((s.sender_config(0).rate, s.sender_config(0).queue_target), (d.rate, d.queue_target));
        let fixed = Scenario::parse(&format!("{MIN}[sender]\nrate_auto = false\n")).unwrap();
        assert_eq!((fixed.sender_config(0).rate, fixed.sender_config(0).queue_target), (1_237_500, None));
    }

    #[test]
    fn bad_values_name_field_and_line() {
        let text = format!("{MIN}[loss]\nmodel = \"bernoulli\"\np = 1.5\n");
        let e = Scenario::parse(&text).unwrap_err().to_string();
        assert_eq!(e, "line 7: loss.p = 1.5: must be at least 0 and below 0.95");
    }

    #[test]
    fn unknown_fields_name_line_and_field() {
        let text = format!("{MIN}[link]\nbandwith_bps = 5\n");
        let e = Scenario::parse(&text).unwrap_err().to_string();
        assert!(e.contains("line 6") && e.contains("bandwith_bps"), "{e}");
    }

    #[test]
    fn overrides_apply_and_are_validated() {
        let s =
            Scenario::parse_with(MIN, &["receivers=100".into(), "loss.model=bernoulli".into(), "loss.p=0.2".into()])
                .unwrap();
        assert_eq!((s.receivers, s.loss.clone()), (100, LossSpec::Bernoulli { p: 0.2 }));
        let e = Scenario::parse_with(MIN, &["loss.model=bernoulli".into(), "loss.p=2".into()]).unwrap_err();
        assert!(e.to_string().contains("loss.p = 2"), "{e}");
    }

    #[test]
    fn empty_workload_is_refused() {
        let e = Scenario::parse("name = \"t\"\nreceivers = 1\n[workload]\n").unwrap_err().to_string();
        assert!(e.contains("workload.file_bytes") && e.contains("sends nothing"), "{e}");
    }
}
