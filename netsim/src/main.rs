//! `netsim`: run a scenario file and print what happened.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lsim_netsim::{Scenario, Sim};

#[derive(Parser)]
#[command(name = "netsim", version, about = "Deterministic simulator for lsim's reliable multicast")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario file and print a report.
    Run {
        /// The scenario (TOML; see netsim/scenarios/).
        scenario: PathBuf,
        /// Override the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Override a field: `--set receivers=100 --set loss.p=0.2` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { scenario, seed, json, overrides } => {
            let text = match std::fs::read_to_string(&scenario) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("netsim: cannot read {}: {e}", scenario.display());
                    return ExitCode::from(2);
                }
            };
            let mut s = match Scenario::parse_with(&text, &overrides) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("netsim: {}: {e}", scenario.display());
                    return ExitCode::from(2);
                }
            };
            if let Some(seed) = seed {
                s.seed = seed;
            }
            let report = match Sim::new(s) {
                Ok(sim) => sim.run(),
                Err(e) => {
                    eprintln!("netsim: {}: {e}", scenario.display());
                    return ExitCode::from(2);
                }
            };
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(j) => println!("{j}"),
                    Err(e) => {
                        eprintln!("netsim: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", report.table());
            }
            if report.delivered_all { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
    }
}
