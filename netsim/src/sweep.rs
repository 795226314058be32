//! A parameter sweep: one base scenario run over a grid of loss, receiver
//! count and block size, to see where a deployment stops being comfortable.
//!
//! Owns the grid (`SweepSpec`), its points (`SweepPoint`), the CSV of them and
//! the `netsim sweep` command. Every point runs with the base scenario's seed,
//! so points differ only in the swept values (common random numbers). It
//! changes nothing in the base scenario but the three swept fields.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};

use lsim_transport::ConfigError;
use serde::Serialize;
use thiserror::Error;

use crate::scenario::{LossSpec, Scenario, ScenarioError};
use crate::sim::Sim;

/// A sweep that could not be set up or run.
#[derive(Debug, Error)]
pub enum SweepError {
    /// A list on the command line did not parse.
    #[error("--{flag} {text}: {why}")]
    List {
        /// The flag without dashes.
        flag: &'static str,
        /// What was given.
        text: String,
        /// What is wrong with it.
        why: String,
    },
    /// The base scenario with one point's values is invalid.
    #[error("{point}: {source}")]
    Scenario {
        /// The point, e.g. "loss 0.1, 4 receivers, 16 symbols per block".
        point: String,
        /// Why.
        source: ScenarioError,
    },
    /// The transport refused one point's settings.
    #[error("{point}: {source}")]
    Config {
        /// The point.
        point: String,
        /// Why.
        source: ConfigError,
    },
}

/// The grid: every combination of the three lists is one run. An empty list
/// keeps the base scenario's value for that dimension.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SweepSpec {
    /// Bernoulli loss probabilities at each receiver (0: no loss).
    pub loss: Vec<f64>,
    /// Receiver counts.
    pub receivers: Vec<u32>,
    /// Source symbols per block K.
    pub block_symbols: Vec<u16>,
}

impl SweepSpec {
    /// Parses comma-separated lists such as `"0,0.05,0.1"`; `None` or an
    /// empty string keeps the base scenario's value.
    pub fn parse(loss: Option<&str>, receivers: Option<&str>, block_symbols: Option<&str>) -> Result<Self, SweepError> {
        let spec = SweepSpec {
            loss: parse_list("loss", loss)?,
            receivers: parse_list("receivers", receivers)?,
            block_symbols: parse_list("block-symbols", block_symbols)?,
        };
        if let Some(p) = spec.loss.iter().find(|p| !(0.0..1.0).contains(*p)) {
            return Err(list_error("loss", loss, format!("{p} is not a probability in [0, 1)")));
        }
        if spec.receivers.contains(&0) {
            return Err(list_error("receivers", receivers, "a sweep point needs at least one receiver".into()));
        }
        if spec.block_symbols.contains(&0) {
            return Err(list_error("block-symbols", block_symbols, "a block needs at least one symbol".into()));
        }
        Ok(spec)
    }
}

fn list_error(flag: &'static str, text: Option<&str>, why: String) -> SweepError {
    SweepError::List { flag, text: text.unwrap_or_default().to_string(), why }
}

fn parse_list<T: FromStr>(flag: &'static str, text: Option<&str>) -> Result<Vec<T>, SweepError>
where
    T::Err: std::fmt::Display,
{
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(Vec::new());
    };
    text.split(',')
        .map(|item| {
            let item = item.trim();
            item.parse().map_err(|e| list_error(flag, Some(text), format!("{item:?}: {e}")))
        })
        .collect()
}

/// What one run of the grid gave.
#[derive(Clone, Debug, Serialize)]
pub struct SweepPoint {
    /// Loss probability at each receiver (the base's mean loss if not swept).
    pub loss: f64,
    /// Receivers in the run (with regions: the swept senders' cell and every region's).
    pub receivers: u32,
    /// Source symbols per block K in force.
    pub block_symbols: u16,
    /// Virtual time when the last receiver completed (or the run stopped).
    pub completion_s: f64,
    /// Object bytes · 8 / completion, Mbit/s (per receiver).
    pub goodput_mbps: f64,
    /// Repair symbols per source symbol the sender sent.
    pub repair_per_source: f64,
    /// Bytes on the air per byte of content.
    pub medium_per_object_byte: f64,
    /// Every receiver verified every object.
    pub delivered_all: bool,
}

/// The scenarios of the grid, ordered by block size, then receiver count,
/// then loss (loss varies fastest). A swept loss replaces the base's loss
/// model with independent (Bernoulli) loss.
pub fn scenarios(base: &Scenario, spec: &SweepSpec) -> Vec<Scenario> {
    let losses: Vec<Option<f64>> =
        if spec.loss.is_empty() { vec![None] } else { spec.loss.iter().copied().map(Some).collect() };
    let counts: Vec<u32> = if spec.receivers.is_empty() { vec![base.receivers] } else { spec.receivers.clone() };
    let sizes: Vec<Option<u16>> = if spec.block_symbols.is_empty() {
        vec![base.sender.block_symbols]
    } else {
        spec.block_symbols.iter().copied().map(Some).collect()
    };
    let mut out = Vec::new();
    for k in &sizes {
        for n in &counts {
            for p in &losses {
                let mut s = base.clone();
                if let Some(p) = *p {
                    s.loss = if p == 0.0 { LossSpec::None } else { LossSpec::Bernoulli { p } };
                }
                s.receivers = *n;
                s.sender.block_symbols = *k;
                out.push(s);
            }
        }
    }
    out
}

/// Runs every point of the grid on up to `jobs` threads (each run is
/// deterministic, so the result does not depend on `jobs`); points come back
/// in the order of `scenarios`.
pub fn run(base: &Scenario, spec: &SweepSpec, jobs: usize) -> Result<Vec<SweepPoint>, SweepError> {
    let grid = scenarios(base, spec);
    let sims = grid
        .into_iter()
        .map(|s| {
            let point = describe(&s);
            s.validate(None).map_err(|source| SweepError::Scenario { point: point.clone(), source })?;
            Ok(s)
        })
        .collect::<Result<Vec<_>, SweepError>>()?;
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, Result<SweepPoint, SweepError>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs.clamp(1, sims.len().max(1)))
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(s) = sims.get(i) else { break };
                        mine.push((i, run_one(s.clone())));
                    }
                    mine
                })
            })
            .collect();
        // A panic in a run is a simulator bug: pass it on unchanged.
        workers.into_iter().flat_map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

fn run_one(s: Scenario) -> Result<SweepPoint, SweepError> {
    let point = describe(&s);
    let loss = match s.loss {
        LossSpec::None => 0.0,
        LossSpec::Bernoulli { p } => p,
        LossSpec::GilbertElliott { mean_loss, .. } => mean_loss,
    };
    let block_symbols = s.sender_config(1).block_symbols;
    let r = Sim::new(s).map_err(|source| SweepError::Config { point, source })?.run();
    Ok(SweepPoint {
        loss,
        receivers: r.receivers,
        block_symbols,
        completion_s: r.completion_s,
        goodput_mbps: r.goodput_mbps,
        repair_per_source: r.repair_per_source,
        medium_per_object_byte: r.medium_per_object_byte,
        delivered_all: r.delivered_all,
    })
}

fn describe(s: &Scenario) -> String {
    let loss = match &s.loss {
        LossSpec::None => "no loss".to_string(),
        LossSpec::Bernoulli { p } => format!("loss {p}"),
        LossSpec::GilbertElliott { mean_loss, mean_burst } => format!("bursty loss {mean_loss} (bursts {mean_burst})"),
    };
    let k = s.sender.block_symbols.map_or("default block size".to_string(), |k| format!("{k} symbols per block"));
    format!("{} with {loss}, {} receivers, {k}", s.name, s.receivers)
}

/// The points as CSV, a header line and one row per point.
pub fn csv(points: &[SweepPoint]) -> String {
    let mut s = String::from(
        "loss,receivers,block_symbols,completion_s,goodput_mbps,repair_per_source,medium_per_object_byte,delivered_all\n",
    );
    for p in points {
        let _ = writeln!(
            s,
            "{},{},{},{:.6},{:.6},{:.6},{:.6},{}",
            p.loss,
            p.receivers,
            p.block_symbols,
            p.completion_s,
            p.goodput_mbps,
            p.repair_per_source,
            p.medium_per_object_byte,
            p.delivered_all
        );
    }
    s
}

/// The points as a table for people.
pub fn table(points: &[SweepPoint]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>6} {:>9} {:>6} {:>10} {:>13} {:>14} {:>13}  all delivered",
        "loss", "receivers", "K", "done (s)", "goodput Mb/s", "repair/source", "air/content"
    );
    for p in points {
        let _ = writeln!(
            s,
            "{:>5.1}% {:>9} {:>6} {:>10.3} {:>13.2} {:>14.3} {:>13.3}  {}",
            p.loss * 100.0,
            p.receivers,
            p.block_symbols,
            p.completion_s,
            p.goodput_mbps,
            p.repair_per_source,
            p.medium_per_object_byte,
            if p.delivered_all { "yes" } else { "NO" }
        );
    }
    s
}

/// `netsim sweep`: run a base scenario over a grid of values.
#[derive(Clone, Debug, clap::Args)]
pub struct SweepArgs {
    /// The base scenario (TOML; see netsim/scenarios/).
    pub scenario: PathBuf,
    /// Independent loss probabilities at each receiver, comma-separated (e.g. 0,0.05,0.1), replacing the
    /// scenario's loss model; default: the scenario's loss.
    #[arg(long, value_name = "P,P,...")]
    pub loss: Option<String>,
    /// Receiver counts, comma-separated (e.g. 10,50,100); default: the scenario's.
    #[arg(long, value_name = "N,N,...")]
    pub receivers: Option<String>,
    /// Source symbols per block, comma-separated (e.g. 16,64); default: the scenario's.
    #[arg(long = "block-symbols", value_name = "K,K,...")]
    pub block_symbols: Option<String>,
    /// Write sweep.csv and one sweep-<K>.svg per block size into this folder.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Override the scenario's seed (the same seed runs every point).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override a field of the base: `--set link.delay_ms=20` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Runs at once (default: the machine's cores).
    #[arg(long)]
    pub jobs: Option<usize>,
}

/// Runs a sweep from the command line, prints its table, and writes the CSV
/// and plots if `--out` was given.
pub fn run_cli(args: SweepArgs) -> Result<(), String> {
    let path = args.scenario.display();
    let text = std::fs::read_to_string(&args.scenario).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut base = Scenario::parse_with(&text, &args.overrides).map_err(|e| format!("{path}: {e}"))?;
    if let Some(seed) = args.seed {
        base.seed = seed;
    }
    let spec = SweepSpec::parse(args.loss.as_deref(), args.receivers.as_deref(), args.block_symbols.as_deref())
        .map_err(|e| e.to_string())?;
    let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let points = run(&base, &spec, jobs).map_err(|e| e.to_string())?;
    println!("sweep of {} (seed {})", base.name, base.seed);
    print!("{}", table(&points));
    if let Some(dir) = &args.out {
        for f in crate::plot::render_sweep(&points, dir).map_err(|e| e.to_string())? {
            println!("wrote {}", f.display());
        }
    }
    Ok(())
}
