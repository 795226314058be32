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

    /// Checks every value; `text` (the file) lets errors name the line.
    pub fn validate(&self, text: Option<&str>) -> Result<(), ScenarioError> {
        let bad = |field: &str, value: String, why: &str| ScenarioError::Invalid {
            field: field.to_string(),
            line: text.and_then(|t| line_of(t, field)),
            value,
            why: why.to_string(),
        };
        let prob = |field: &str, p: f64, max_excl: f64| {
            if (0.0..max_excl).contains(&p) {
                Ok(())
            } else {
                Err(bad(field, p.to_string(), &format!("must be at least 0 and below {max_excl}")))
            }
        };
        if !(1..=10_000).contains(&self.total_receivers()) {
            return Err(bad(
                "receivers",
                self.total_receivers().to_string(),
                "receivers in all (the senders' cell and every region) must be 1 to 10000",
            ));
        }
        let senders = self.regions.iter().fold(self.senders, |n, r| n.saturating_add(r.senders));
        if !(1..=64).contains(&senders) {
            return Err(bad("senders", senders.to_string(), "senders in all must be 1 to 64"));
        }
        if !(1.0..=60_000.0).contains(&self.sample_ms) {
            return Err(bad("sample_ms", self.sample_ms.to_string(), "must be 1 to 60000 ms"));
        }
        let nth_bad = |array: &str, i: usize, field: &str, value: String, why: &str| ScenarioError::Invalid {
            field: format!("{array}[{i}].{field}"),
            line: text.and_then(|t| line_of_nth(t, array, i, field)),
            value,
            why: why.to_string(),
        };
        let mut names = std::collections::HashSet::new();
        for (i, r) in self.regions.iter().enumerate() {
            if r.name.is_empty() || !names.insert(r.name.as_str()) {
                return Err(nth_bad(
                    "regions",
                    i,
                    "name",
                    format!("{:?}", r.name),
                    "region names must be unique and non-empty",
                ));
            }
            if !(8_000..=10_000_000_000).contains(&r.link.bandwidth_bps) {
                return Err(nth_bad(
                    "regions",
                    i,
                    "link.bandwidth_bps",
                    r.link.bandwidth_bps.to_string(),
                    "must be 8 kbit/s to 10 Gbit/s",
                ));
            }
            if !(0.0..=60_000.0).contains(&r.link.delay_ms) {
                return Err(nth_bad(
                    "regions",
                    i,
                    "link.delay_ms",
                    r.link.delay_ms.to_string(),
                    "must be 0 to 60000 ms",
                ));
            }
            if !(0.0..0.95).contains(&r.link.loss) {
                return Err(nth_bad(
                    "regions",
                    i,
                    "link.loss",
                    r.link.loss.to_string(),
                    "must be at least 0 and below 0.95",
                ));
            }
            if r.link.queue_bytes < 2048 {
                return Err(nth_bad(
                    "regions",
                    i,
                    "link.queue_bytes",
                    r.link.queue_bytes.to_string(),
                    "must hold at least one packet (2048)",
                ));
            }
            if r.cell_bps.is_some_and(|b| b > 0 && b < 8_000) {
                return Err(nth_bad(
                    "regions",
                    i,
                    "cell_bps",
                    format!("{:?}", r.cell_bps),
                    "must be 0 (unlimited) or at least 8000",
                ));
            }
            for (f, l) in [("loss", r.loss.as_ref()), ("repairer_loss", Some(&r.repairer_loss))] {
                match l {
                    Some(LossSpec::Bernoulli { p }) if !(0.0..0.95).contains(p) => {
                        return Err(nth_bad(
                            "regions",
                            i,
                            &format!("{f}.p"),
                            p.to_string(),
                            "must be at least 0 and below 0.95",
                        ));
                    }
                    Some(LossSpec::GilbertElliott { mean_loss, mean_burst }) => {
                        if !(0.0..0.95).contains(mean_loss) {
                            let why = "must be at least 0 and below 0.95";
                            return Err(nth_bad("regions", i, &format!("{f}.mean_loss"), mean_loss.to_string(), why));
                        }
                        if !(1.0..=1000.0).contains(mean_burst) {
                            let why = "must be 1 to 1000 packets";
                            return Err(nth_bad("regions", i, &format!("{f}.mean_burst"), mean_burst.to_string(), why));
                        }
                    }
                    _ => {}
                }
            }
        }
        if self.regions.len() > MAX_REGIONS {
            return Err(bad("regions", self.regions.len().to_string(), &format!("at most {MAX_REGIONS} regions")));
        }
        // Joins and leaves of one cell must not ask for more receivers than it has.
        let mut asked: std::collections::HashMap<(&str, bool), u32> = std::collections::HashMap::new();
        for (i, e) in self.events.iter().enumerate() {
            if e.action == Action::CrashRepairer {
                continue;
            }
            let n = asked.entry((e.region.as_str(), e.action == Action::Join)).or_default();
            *n = n.saturating_add(e.count);
            let available = self.regions.iter().find(|r| r.name == e.region).map_or(self.receivers, |r| r.receivers);
            if *n > available {
                let why = format!("the events of this kind in this cell ask for {n} receivers; it has {available}");
                return Err(nth_bad("events", i, "count", e.count.to_string(), &why));
            }
        }
        for (i, e) in self.events.iter().enumerate() {
            if !(0.0..=1e6).contains(&e.at_s) {
                return Err(nth_bad("events", i, "at_s", e.at_s.to_string(), "must be 0 to 1e6 s"));
            }
            let region = if e.region.is_empty() { None } else { self.regions.iter().find(|r| r.name == e.region) };
            if !e.region.is_empty() && region.is_none() {
                return Err(nth_bad("events", i, "region", format!("{:?}", e.region), "no region of that name"));
            }
            if e.action == Action::CrashRepairer && !region.is_some_and(|r| r.repairer) {
                return Err(nth_bad("events", i, "action", "\"crash-repairer\"".into(), "the region has no repairer"));
            }
            let available = region.map_or(self.receivers, |r| r.receivers);
            if e.action != Action::CrashRepairer && (e.count == 0 || e.count > available) {
                return Err(nth_bad(
                    "events",
                    i,
                    "count",
                    e.count.to_string(),
                    &format!("must be 1 to the region's {available} receivers"),
                ));
            }
        }
        if !(self.time_limit_s > 0.0 && self.time_limit_s <= 1e6) {
            return Err(bad("time_limit_s", self.time_limit_s.to_string(), "must be above 0 and at most 1e6"));
        }
        match self.loss {
            LossSpec::None => {}
            LossSpec::Bernoulli { p } => prob("loss.p", p, 0.95)?,
            LossSpec::GilbertElliott { mean_loss, mean_burst } => {
                prob("loss.mean_loss", mean_loss, 0.95)?;
                if !(1.0..=1000.0).contains(&mean_burst) {
                    return Err(bad("loss.mean_burst", mean_burst.to_string(), "must be 1 to 1000 packets"));
                }
            }
        }
        let l = &self.link;
        for (field, v) in
            [("link.delay_ms", l.delay_ms), ("link.jitter_ms", l.jitter_ms), ("link.reorder_ms", l.reorder_ms)]
        {
            if !(0.0..=60_000.0).contains(&v) {
                return Err(bad(field, v.to_string(), "must be 0 to 60000 ms"));
            }
        }
        prob("link.reorder", l.reorder, 1.0)?;
        prob("link.duplicate", l.duplicate, 1.0)?;
        if l.queue_bytes < 2048 {
            return Err(bad("link.queue_bytes", l.queue_bytes.to_string(), "must hold at least one packet (2048)"));
        }
        let w = &self.workload;
        if w.file_bytes == 0 && w.chats == 0 && w.files.is_empty() && w.rekeys == 0 {
            return Err(bad(
                "workload.file_bytes",
                "0".into(),
                "the workload sends nothing (set file_bytes, files, chats or rekeys)",
            ));
        }
        if w.files.len() > 1000 || w.files.iter().any(|&f| f == 0 || f > 1 << 40) {
            return Err(bad("workload.files", format!("{:?}", w.files), "at most 1000 files of 1 byte to 1 TiB"));
        }
        if w.rekeys > 100_000 || !(1..=65_000).contains(&w.rekey_bytes) {
            return Err(bad("workload.rekeys", w.rekeys.to_string(), "at most 100000 rekeys of 1 to 65000 bytes"));
        }
        if w.file_bytes > 1 << 40 {
            return Err(bad("workload.file_bytes", w.file_bytes.to_string(), "must be at most 1 TiB"));
        }
        if w.chat_bytes > 65_000 {
            return Err(bad("workload.chat_bytes", w.chat_bytes.to_string(), "must be at most 65000"));
        }
        if w.chats > 1_000_000 {
            return Err(bad("workload.chats", w.chats.to_string(), "must be at most 1000000"));
        }
        let s = &self.sender;
        // Every packet of a symbol must fit 1472 bytes.
        let max_t = lsim_transport::wire::symbol_size_for(1472, crate::seal::TAG_LEN);
        if let Some(t) = s.symbol_size
            && !(16..=max_t).contains(&t)
        {
            let why = format!("must be 16 to {max_t} (a packet must fit 1472 bytes)");
            return Err(bad("sender.symbol_size", t.to_string(), &why));
        }
        if let Some(k) = s.block_symbols
            && !(1..=lsim_transport::geometry::MAX_BLOCK_SYMBOLS).contains(&k)
        {
            return Err(bad("sender.block_symbols", k.to_string(), "must be 1 to 56403"));
        }
        if let Some(p) = s.proactive {
            prob("sender.proactive", p, 4.0)?;
        }
        if let Some(k) = s.backoff_k
            && !(0.0..=16.0).contains(&k)
        {
            return Err(bad("sender.backoff_k", k.to_string(), "must be 0 to 16"));
        }
        if let Some(g) = s.initial_grtt_ms
            && !(g > 0.0 && g <= 60_000.0)
        {
            return Err(bad("sender.initial_grtt_ms", g.to_string(), "must be above 0 and at most 60000"));
        }
        if let Some(r) = s.repair_share
            && !(r > 0.0 && r <= 1.0)
        {
            return Err(bad("sender.repair_share", r.to_string(), "must be above 0 and at most 1"));
        }
        if let Some(m) = s.cache_mib
            && m > 4096
        {
            return Err(bad("sender.cache_mib", m.to_string(), "must be at most 4096"));
        }
        if let Some(r) = s.rate_bps
            && r > 0
            && r < 8_000
        {
            return Err(bad("sender.rate_bps", r.to_string(), "must be 0 (unpaced) or at least 8000"));
        }
        if self.receiver.max_blocks == Some(0) {
            return Err(bad("receiver.max_blocks", "0".into(), "must be at least 1"));
        }
        if let Some(g) = self.receiver.group_size
            && !(1.0..=1e6).contains(&g)
        {
            return Err(bad("receiver.group_size", g.to_string(), "must be 1 to 1e6"));
        }
        if self.link.overhead_bytes > 10_000 {
            return Err(bad("link.overhead_bytes", self.link.overhead_bytes.to_string(), "must be at most 10000"));
        }
        for (field, v) in [
            ("workload.chat_interval_ms", self.workload.chat_interval_ms),
            ("workload.rekey_interval_ms", self.workload.rekey_interval_ms),
        ] {
            if !(0.0..=3.6e6).contains(&v) {
                return Err(bad(field, v.to_string(), "must be 0 to 3600000 ms"));
            }
        }
        if !(0.0..=1e6).contains(&self.attack.nack_flood_per_second) {
            let v = self.attack.nack_flood_per_second.to_string();
            return Err(bad("attack.nack_flood_per_second", v, "must be 0 to 1e6"));
        }
        if !(0.0..=1e6).contains(&self.attack.replayed_per_second) {
            let v = self.attack.replayed_per_second.to_string();
            return Err(bad("attack.replayed_per_second", v, "must be 0 to 1e6"));
        }
        if !(0.0..=1e6).contains(&self.attack.forged_per_second) {
            return Err(bad("attack.forged_per_second", self.attack.forged_per_second.to_string(), "must be 0 to 1e6"));
        }
        Ok(())
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

/// The line (1-based) on which `field` of the `i`-th `[[array]]` table is set
/// (the field's last part; or the table's header line if not found).
fn line_of_nth(text: &str, array: &str, i: usize, field: &str) -> Option<usize> {
    // `link.rate` is `rate` under `[array.link]`, or the line of an inline `link = {...}`.
    let (sub, key) = field.split_once('.').unwrap_or(("", field));
    let header = format!("[[{array}]]");
    let mut seen = 0;
    let mut start = None;
    let mut table = String::new();
    for (n, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.starts_with("[[") {
            if start.is_some() {
                break;
            }
            if l == header {
                if seen == i {
                    start = Some(n + 1);
                }
                seen += 1;
            }
            table.clear();
        } else if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            table = name.trim().strip_prefix(array).and_then(|t| t.strip_prefix('.')).unwrap_or("?").to_string();
        } else if start.is_some()
            && let Some((k, _)) = l.split_once('=')
        {
            let k = k.trim();
            let here = if sub.is_empty() {
                table.is_empty() && k == key
            } else {
                (table == sub && k == key) || (table.is_empty() && k == sub)
            };
            if here {
                return Some(n + 1);
            }
        }
    }
    start
}

/// The line (1-based) on which dotted `field` is assigned in `text`, found by
/// following `[table]` headers.
fn line_of(text: &str, field: &str) -> Option<usize> {
    let (table, key) = field.rsplit_once('.').unwrap_or(("", field));
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            current = name.trim().to_string();
        } else if current == table
            && let Some((k, _)) = l.split_once('=')
            && k.trim() == key
        {
            return Some(i + 1);
        }
    }
    None
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
