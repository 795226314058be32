//! `netsim testbed`: real processes on an emulated network, as root.
//!
//! Owns the network namespaces, veth pairs, bridges, nftables tables and tc
//! qdiscs of one named testbed, its state file, and the `smcrouted` it starts
//! in the router namespace. It creates every interface directly inside its
//! namespace, so nothing is ever left in the root namespace: deleting the
//! testbed's namespaces removes all of it. It must not touch anything it did
//! not list in the state file.
//!
//! Layout of `up --name tb --regions 2 --hosts 2`:
//!
//! ```text
//!  tb-r0h0  tb-r0h1           tb-r1h0  tb-r1h1       host namespaces, eth0 = 10.<r+1>.0.<h+1>/16
//!     |        |                 |        |
//!  [r0h0]   [r0h1]            [r1h0]   [r1h1]        veth ends in tb-hub
//!     +--br0---+--[rt0]    [rt1]--+--br1---+         one bridge per region, in tb-hub
//!                   |        |
//!                  l0        l1                      tb-rt: 10.<r+1>.255.254/16 on l<r>,
//!                   +--tb-rt-+                       IP forwarding, smcrouted
//! ```
//!
//! One hub namespace holds every region's bridge because bridges carry no
//! addresses and never route: regions stay separate at layer 2 whatever
//! namespace their bridges live in, and one hub halves the namespace count and
//! keeps `exec hub` a single place to watch all regions from. The bridges flood
//! multicast (`mcast_snooping 0`), like a radio channel. Multicast crosses
//! between regions only through the router, where `smcrouted` installs
//! `(*, 224.0.0.0/4)` routes from each region's interface to all the others;
//! the kernel forwards only datagrams whose TTL is above 1, so TTL 1 stays in
//! its region. With `--regions 1` there is one bridge and no router. Routing
//! needs a kernel built with IP multicast routing: without it, `up` of more
//! than one region (and `check`) says so before building anything.
//!
//! Shaping: a host's loss drops that share of the UDP datagrams arriving at it
//! (nftables input hook in its namespace); its rate is a token bucket on its
//! `eth0` (what it sends). A region link's loss drops that share of UDP
//! crossing it in either direction (nftables forward hook in the router,
//! matched on `l<r>`), its rate is a token bucket on both ends of the router's
//! veth toward the region. Loss applies to UDP only, so TCP and ping stay
//! usable for control.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

mod build;
mod checks;
mod shaping;
mod state;
mod system;

use build::*;
pub use checks::multicast_routing_missing;
use checks::*;
use shaping::*;
use state::*;
use system::*;

/// Where state files live unless `--state-dir` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/run/lsim-testbed";

/// `netsim testbed …`: build, use and remove an emulated network of namespaces.
#[derive(clap::Args, Debug)]
pub struct TestbedArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: TestbedCommand,
}

/// Which testbed a command is about.
#[derive(clap::Args, Debug, Clone)]
pub struct Which {
    /// The testbed's name: prefixes its namespaces (letters, digits, `-`; at most 16).
    #[arg(long, default_value = "tb")]
    pub name: String,
    /// Where state files live.
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
}

/// The testbed subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum TestbedCommand {
    /// Build a testbed: regions of hosts on bridges, joined by a multicast router.
    Up {
        /// Which testbed.
        #[command(flatten)]
        which: Which,
        /// Regions (1 = a single flat bridge, no router).
        #[arg(long, default_value_t = 1)]
        regions: u8,
        /// Hosts per region.
        #[arg(long, default_value_t = 3)]
        hosts: u8,
        /// Rate of every region's link to the router, like `2mbit`.
        #[arg(long)]
        link_rate: Option<String>,
        /// Percent of UDP lost on every region's link to the router.
        #[arg(long, default_value_t = 0)]
        link_loss: u8,
        /// Percent of UDP lost at every host's input.
        #[arg(long, default_value_t = 0)]
        host_loss: u8,
        /// Rate of every host's own link, like `11mbit`.
        #[arg(long)]
        host_rate: Option<String>,
    },
    /// Remove a testbed, even a half-built one; a testbed that is not there is a no-op.
    Down {
        /// Which testbed.
        #[command(flatten)]
        which: Which,
    },
    /// Run a command inside a host's namespace (`r0h1`, `router` or `hub`).
    Exec {
        /// Which testbed.
        #[command(flatten)]
        which: Which,
        /// `r<region>h<host>`, `router` or `hub`.
        host: String,
        /// The command and its arguments (after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Set the loss of a host (`r0h1`) or of a region's link (`link0`).
    Loss {
        /// Which testbed.
        #[command(flatten)]
        which: Which,
        /// `r<region>h<host>` or `link<region>`.
        target: String,
        /// Percent of UDP datagrams dropped, 0 to 100.
        percent: u8,
    },
    /// Set the rate of a host (`r0h1`) or of a region's link (`link0`).
    Rate {
        /// Which testbed.
        #[command(flatten)]
        which: Which,
        /// `r<region>h<host>` or `link<region>`.
        target: String,
        /// Like `11mbit`, `500kbit`, `2mbps`, or `off`.
        rate: String,
    },
    /// List a testbed's hosts, addresses and shaping.
    Status {
        /// Which testbed.
        #[command(flatten)]
        which: Which,
    },
    /// Say whether this machine can build a testbed of this many regions
    /// (root, the tools, the kernel's multicast routing); exit 2 with what is
    /// missing if not.
    Check {
        /// Regions (more than 1 needs a kernel that routes multicast).
        #[arg(long, default_value_t = 1)]
        regions: u8,
    },
}

/// Run a testbed command, printing its error: the one-line entry point for `main`.
pub fn run(args: TestbedArgs) -> ExitCode {
    run_cli(args).unwrap_or_else(|e| {
        eprintln!("netsim: {e}");
        ExitCode::from(2)
    })
}

/// Run a testbed command; `Err` says what was wrong with which input or which system command.
pub fn run_cli(args: TestbedArgs) -> Result<ExitCode, String> {
    let which = match &args.command {
        // About the machine, not a testbed: no name, and answered here.
        TestbedCommand::Check { regions } => return check(*regions),
        TestbedCommand::Up { which, .. }
        | TestbedCommand::Down { which }
        | TestbedCommand::Exec { which, .. }
        | TestbedCommand::Loss { which, .. }
        | TestbedCommand::Rate { which, .. }
        | TestbedCommand::Status { which } => which.clone(),
    };
    check_name(&which.name)?;
    require_root()?;
    match args.command {
        TestbedCommand::Up { regions, hosts, link_rate, link_loss, host_loss, host_rate, .. } => {
            let plan = Plan { regions, hosts, link_rate, link_loss, host_loss, host_rate };
            up(&which, plan)?;
            Ok(ExitCode::SUCCESS)
        }
        TestbedCommand::Down { .. } => {
            down(&which)?;
            Ok(ExitCode::SUCCESS)
        }
        TestbedCommand::Exec { host, command, .. } => exec(&which, &host, &command),
        TestbedCommand::Loss { target, percent, .. } => {
            set_loss(&which, &target, percent)?;
            Ok(ExitCode::SUCCESS)
        }
        TestbedCommand::Rate { target, rate, .. } => {
            set_rate(&which, &target, &rate)?;
            Ok(ExitCode::SUCCESS)
        }
        TestbedCommand::Status { .. } => {
            print!("{}", load(&which)?.describe());
            Ok(ExitCode::SUCCESS)
        }
        TestbedCommand::Check { regions } => check(regions),
    }
}

/// `check`: whether `up --regions <regions>` can work here.
fn check(regions: u8) -> Result<ExitCode, String> {
    if regions == 0 || regions > 250 {
        return Err(format!("--regions {regions}: must be 1 to 250"));
    }
    require_machine(regions)?;
    println!("this machine can build a testbed of {regions} region(s)");
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------- exec

fn exec(which: &Which, host: &str, command: &[String]) -> Result<ExitCode, String> {
    require_tools(&[IP])?;
    let state = load(which)?;
    let ns = state.exec_namespace(host)?;
    let status = Command::new("ip")
        .args(["netns", "exec", &ns])
        .args(command)
        .status()
        .map_err(|e| format!("cannot run `ip netns exec {ns}`: {e}"))?;
    use std::os::unix::process::ExitStatusExt;
    let code = status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

// ---------------------------------------------------------------- down

/// Remove everything the state file lists; what is already gone is skipped.
fn down(which: &Which) -> Result<(), String> {
    require_tools(&[IP])?;
    let state = match load(which) {
        Ok(s) => s,
        Err(_) if !state_path(which).exists() => {
            let path = state_path(which);
            eprintln!(
                "netsim testbed: no testbed named {} (no state file {}); nothing to do",
                which.name,
                path.display()
            );
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let existing = existing_namespaces()?;
    let ours: Vec<&String> = state.namespaces.iter().rev().filter(|ns| existing.contains(ns)).collect();
    // A process left in a namespace (smcrouted, a stray receiver) keeps its interfaces alive.
    for ns in &ours {
        stop_processes(ns);
    }
    let mut failures = Vec::new();
    for ns in &ours {
        if let Err(e) = sh(&["ip", "netns", "del", ns]) {
            failures.push(e);
        }
    }
    if !failures.is_empty() {
        return Err(format!("testbed {} only partly removed: {}", which.name, failures.join("; ")));
    }
    for suffix in ["conf", "pid", "sock", "log"] {
        let _ = fs::remove_file(daemon_file(which, suffix));
    }
    fs::remove_file(state_path(which)).map_err(|e| format!("cannot remove {}: {e}", state_path(which).display()))?;
    Ok(())
}

fn stop_processes(ns: &str) {
    let pids = || -> Vec<String> {
        let list = run_cmd(&["ip", "netns", "pids", ns], None).unwrap_or_default();
        list.split_whitespace().map(str::to_string).collect()
    };
    for signal in ["-TERM", "-KILL"] {
        let list = pids();
        if list.is_empty() {
            return;
        }
        // The shell's own `kill`: no dependency on procps.
        let mut args = vec!["sh", "-c", "kill \"$@\"", "kill", signal];
        args.extend(list.iter().map(String::as_str));
        drop(sh(&args));
        // A process that has exited leaves the namespace even while it waits to be reaped.
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && !pids().is_empty() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_in_tc_units_and_reject_nonsense() {
        assert_eq!(parse_rate("11mbit"), Ok(11_000_000));
        assert_eq!(parse_rate("500kbit"), Ok(500_000));
        assert_eq!(parse_rate("2MBps"), Ok(16_000_000));
        assert_eq!(parse_rate("1.5mbit"), Ok(1_500_000));
        for bad in ["", "mbit", "11", "11 mbit", "11furlongs", "0mbit", "-1mbit"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_fit_interfaces_and_prefix_the_namespaces() {
        let s = State::new("tb-7", 2, 3);
        assert_eq!(s.namespaces[..3], ["tb-7-hub", "tb-7-rt", "tb-7-r0h0"]);
        assert_eq!(s.namespaces.len(), 2 + 6);
        assert!(s.namespaces.iter().all(|n| n.starts_with("tb-7-")));
        assert_eq!(s.target("r1h2"), Ok(Target::Host { region: 1, host: 2 }));
        assert_eq!(s.target("link1"), Ok(Target::Link(1)));
        assert!(s.target("r2h0").is_err() && s.target("link2").is_err() && s.target("router").is_err());
        assert_eq!(s.exec_namespace("router").as_deref(), Ok("tb-7-rt"));
        let flat = State::new("x", 1, 2);
        assert!(!flat.namespaces.contains(&"x-rt".to_string()));
        assert!(flat.target("link0").is_err() && flat.exec_namespace("router").is_err());
        assert_eq!(Target::Host { region: 249, host: 249 }.label().len(), 8);
        assert_eq!(host_addr(249, 249), "10.250.0.250");
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", "-x", "Tb", "a_b", "a-very-long-testbed-name"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_name("lsim-123").is_ok());
    }
}
