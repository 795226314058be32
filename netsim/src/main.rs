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
        /// Write goodput.svg, completion.svg and repair.svg into this folder.
        #[arg(long, value_name = "DIR")]
        plot: Option<PathBuf>,
    },
    /// Run a scenario over a grid of loss, receiver count and block size, and plot it.
    Sweep(lsim_netsim::sweep::SweepArgs),
    /// Real processes on an emulated network of namespaces (root).
    Testbed(lsim_netsim::testbed::TestbedArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { scenario, seed, json, overrides, plot } => {
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
            if let Some(Err(e)) = plot.as_deref().map(|dir| lsim_netsim::plot::plot_cli(&report, dir)) {
                eprintln!("netsim: {e}");
                return ExitCode::FAILURE;
            }
            if report.delivered_all { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Command::Sweep(args) => match lsim_netsim::sweep::run_cli(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("netsim: {e}");
                ExitCode::from(2)
            }
        },
        Command::Testbed(args) => lsim_netsim::testbed::run(args),
    }
}
