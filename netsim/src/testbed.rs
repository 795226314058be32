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

/// What `up` was asked for.
struct Plan {
    regions: u8,
    hosts: u8,
    link_rate: Option<String>,
    link_loss: u8,
    host_loss: u8,
    host_rate: Option<String>,
}

/// Loss and rate of one host or link.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
struct Shape {
    /// Percent of UDP dropped.
    loss: u8,
    /// A tc rate (`11mbit`), if shaped.
    rate: Option<String>,
}

/// A testbed as recorded on disk: enough for `down` to remove it and for
/// `loss`/`rate` to rebuild a namespace's rules from scratch.
#[derive(Serialize, Deserialize, Debug)]
struct State {
    name: String,
    regions: u8,
    hosts: u8,
    /// Every namespace the testbed has or may have created, in creation order.
    namespaces: Vec<String>,
    /// By target label (`r0h1`, `link0`).
    shapes: BTreeMap<String, Shape>,
}

/// Something that has a loss and a rate.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Host { region: u8, host: u8 },
    Link(u8),
}

impl Target {
    fn label(self) -> String {
        match self {
            Target::Host { region, host } => format!("r{region}h{host}"),
            Target::Link(region) => format!("link{region}"),
        }
    }
}

impl State {
    fn new(name: &str, regions: u8, hosts: u8) -> State {
        let mut s = State { name: name.to_string(), regions, hosts, namespaces: Vec::new(), shapes: BTreeMap::new() };
        s.namespaces.push(s.hub());
        if s.routed() {
            s.namespaces.push(s.router());
        }
        for t in s.hosts_iter() {
            s.namespaces.push(s.namespace_of(t));
        }
        s
    }

    fn routed(&self) -> bool {
        self.regions > 1
    }

    fn hub(&self) -> String {
        format!("{}-hub", self.name)
    }

    fn router(&self) -> String {
        format!("{}-rt", self.name)
    }

    fn namespace_of(&self, t: Target) -> String {
        format!("{}-{}", self.name, t.label())
    }

    fn hosts_iter(&self) -> impl Iterator<Item = Target> + use<> {
        let hosts = self.hosts;
        (0..self.regions).flat_map(move |region| (0..hosts).map(move |host| Target::Host { region, host }))
    }

    fn targets(&self) -> Vec<Target> {
        let links = if self.routed() { (0..self.regions).map(Target::Link).collect() } else { Vec::new() };
        self.hosts_iter().chain(links).collect()
    }

    fn shape(&self, t: Target) -> Shape {
        self.shapes.get(&t.label()).cloned().unwrap_or_default()
    }

    /// `r1h0` or `link1`, checked against this testbed's size.
    fn target(&self, label: &str) -> Result<Target, String> {
        let found = self.targets().into_iter().find(|t| t.label() == label);
        found.ok_or_else(|| {
            let links = if self.routed() {
                format!(" or link0..link{}", self.regions - 1)
            } else {
                " (a one-region testbed has no links)".to_string()
            };
            format!(
                "testbed {} has no `{label}`: targets are r0h0..r{}h{}{links}",
                self.name,
                self.regions - 1,
                self.hosts - 1
            )
        })
    }

    /// The namespace `exec` runs in: a host, `router` or `hub`.
    fn exec_namespace(&self, label: &str) -> Result<String, String> {
        match label {
            "hub" => Ok(self.hub()),
            "router" if self.routed() => Ok(self.router()),
            "router" => Err(format!("testbed {} has one region and no router", self.name)),
            _ => match self.target(label)? {
                t @ Target::Host { .. } => Ok(self.namespace_of(t)),
                Target::Link(_) => Err(format!("`{label}` is a link; exec runs in a host, `router` or `hub`")),
            },
        }
    }

    fn describe(&self) -> String {
        let mut out = format!(
            "testbed {}: {} region(s) x {} host(s){}\n",
            self.name,
            self.regions,
            self.hosts,
            if self.routed() { format!(", router {}", self.router()) } else { String::new() }
        );
        for region in 0..self.regions {
            out += &format!("region {region}: bridge br{region} in {}", self.hub());
            if self.routed() {
                let link = self.shape(Target::Link(region));
                out += &format!(", router {}, link{region} {}", router_addr(region), shape_text(&link));
            }
            out += "\n";
            for host in 0..self.hosts {
                let t = Target::Host { region, host };
                out += &format!(
                    "  {:<9} {:<20} {:<12} {}\n",
                    t.label(),
                    self.namespace_of(t),
                    host_addr(region, host),
                    shape_text(&self.shape(t))
                );
            }
        }
        out
    }
}

fn shape_text(s: &Shape) -> String {
    format!("loss {}% rate {}", s.loss, s.rate.as_deref().unwrap_or("-"))
}

fn host_addr(region: u8, host: u8) -> String {
    format!("10.{}.0.{}", u16::from(region) + 1, u16::from(host) + 1)
}

fn router_addr(region: u8) -> String {
    format!("10.{}.255.254", u16::from(region) + 1)
}

// ---------------------------------------------------------------- checks

fn check_name(name: &str) -> Result<(), String> {
    let ok_chars = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if name.is_empty() || name.len() > 16 || !ok_chars || name.starts_with('-') {
        return Err(format!(
            "testbed name `{name}`: use 1 to 16 lowercase letters, digits or `-`, not starting with `-`"
        ));
    }
    Ok(())
}

/// The effective uid, from `/proc/self/status` (`Uid: real effective saved fs`).
fn effective_uid() -> Result<u32, String> {
    let status = fs::read_to_string("/proc/self/status").map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .ok_or_else(|| "no `Uid:` line in /proc/self/status".to_string())
}

fn require_root() -> Result<(), String> {
    if effective_uid()? != 0 {
        return Err("netsim testbed needs root (network namespaces); run it with sudo".to_string());
    }
    Ok(())
}

/// Why this kernel cannot route multicast between regions, or `None` if it
/// can (or if there is no `/proc` to tell).
///
/// A kernel built with IP multicast routing (`CONFIG_IP_MROUTE`) gives every
/// network namespace a `/proc/net/ip_mr_vif`, so looking in ours answers for
/// the router's too. Without it `smcrouted` starts but can add no interface,
/// and two regions never hear each other: `up` says so before building
/// anything, and tests that need routing skip with this reason.
pub fn multicast_routing_missing() -> Option<String> {
    let proc_net = Path::new("/proc/net");
    if !proc_net.join("dev").exists() || proc_net.join("ip_mr_vif").exists() {
        return None;
    }
    Some(
        "the kernel was built without IP multicast routing (CONFIG_IP_MROUTE): /proc/net/ip_mr_vif does not \
         exist, so multicast cannot be routed between regions; one region (--regions 1) works"
            .to_string(),
    )
}

/// Root, then the kernel, then the tools a testbed of `regions` needs: the
/// first thing missing, named with how to get it.
fn require_machine(regions: u8) -> Result<(), String> {
    require_root()?;
    let mut tools = vec![IP, TC, NFT];
    if regions > 1 {
        // Before smcroute: installing it would not help.
        if let Some(why) = multicast_routing_missing() {
            return Err(format!("{regions} regions need a multicast router, but {why}"));
        }
        tools.push(SMCROUTED);
    }
    require_tools(&tools)
}

fn has_tool(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .any(|dir| dir.join(tool).is_file())
}

/// Each tool with the Debian package that provides it.
fn require_tools(tools: &[(&str, &str)]) -> Result<(), String> {
    for (tool, package) in tools {
        if !has_tool(tool) {
            return Err(format!("netsim testbed needs `{tool}`: install it with `apt-get install {package}`"));
        }
    }
    Ok(())
}

const IP: (&str, &str) = ("ip", "iproute2");
const TC: (&str, &str) = ("tc", "iproute2");
const NFT: (&str, &str) = ("nft", "nftables");
const SMCROUTED: (&str, &str) = ("smcrouted", "smcroute");

/// `11mbit`, `500kbit`, `2mbps` … in bits per second (tc's units: k = 1000).
fn parse_rate(rate: &str) -> Result<u64, String> {
    let bad = || format!("rate `{rate}`: expected a number and a unit like 11mbit, 500kbit or 2mbps (or `off`)");
    let lower = rate.to_ascii_lowercase();
    let split = lower.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
    let (number, unit) = lower.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let scale = match unit {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "bps" => 8.0,
        "kbps" => 8e3,
        "mbps" => 8e6,
        "gbps" => 8e9,
        _ => return Err(bad()),
    };
    let bits = number * scale;
    if !(1e3..=1e11).contains(&bits) {
        return Err(format!("rate `{rate}`: must be between 1kbit and 100gbit"));
    }
    Ok(bits as u64)
}

fn check_loss(percent: u8) -> Result<(), String> {
    if percent > 100 {
        return Err(format!("loss {percent}%: must be 0 to 100"));
    }
    Ok(())
}

// ---------------------------------------------------------------- state file

fn state_path(which: &Which) -> PathBuf {
    which.state_dir.join(format!("{}.json", which.name))
}

fn load(which: &Which) -> Result<State, String> {
    let path = state_path(which);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("no testbed named {} (no state file {})", which.name, path.display()));
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn save(which: &Which, state: &State) -> Result<(), String> {
    fs::create_dir_all(&which.state_dir).map_err(|e| format!("cannot create {}: {e}", which.state_dir.display()))?;
    let path = state_path(which);
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(state).map_err(|e| e.to_string())?;
    fs::write(&tmp, text + "\n").map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    fs::rename(&tmp, &path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Files next to the state file that belong to the router daemon.
fn daemon_file(which: &Which, suffix: &str) -> PathBuf {
    which.state_dir.join(format!("{}.smcroute.{suffix}", which.name))
}

// ---------------------------------------------------------------- system commands

/// Run a command to completion; `Err` carries its stderr.
fn run_cmd(args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..]).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().map_err(|e| format!("`{}`: {e}", args.join(" ")))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(|e| format!("`{}`: {e}", args.join(" ")))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("`{}`: {e}", args.join(" ")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("`{}` failed: {}", args.join(" "), err.trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sh(args: &[&str]) -> Result<(), String> {
    run_cmd(args, None).map(drop)
}

/// Run a command inside a namespace.
fn in_ns(ns: &str, args: &[&str]) -> Result<(), String> {
    let full: Vec<&str> = ["ip", "netns", "exec", ns].iter().chain(args).copied().collect();
    sh(&full)
}

fn existing_namespaces() -> Result<Vec<String>, String> {
    let list = run_cmd(&["ip", "netns", "list"], None)?;
    Ok(list.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect())
}

// ---------------------------------------------------------------- up

fn up(which: &Which, plan: Plan) -> Result<(), String> {
    if plan.regions == 0 || plan.regions > 250 || plan.hosts == 0 || plan.hosts > 250 {
        return Err(format!("{} regions x {} hosts: each must be 1 to 250", plan.regions, plan.hosts));
    }
    if plan.regions == 1 && (plan.link_rate.is_some() || plan.link_loss > 0) {
        return Err("--link-rate and --link-loss need at least 2 regions (one region has no router)".to_string());
    }
    check_loss(plan.link_loss)?;
    check_loss(plan.host_loss)?;
    for rate in plan.link_rate.iter().chain(&plan.host_rate) {
        parse_rate(rate)?;
    }
    // Before the state file: on a machine that cannot run it, nothing is built.
    require_machine(plan.regions)?;
    if state_path(which).exists() {
        let dir = if which.state_dir == Path::new(DEFAULT_STATE_DIR) {
            String::new()
        } else {
            format!(" --state-dir {}", which.state_dir.display())
        };
        return Err(format!(
            "testbed {} is already up (state file {}); run `netsim testbed down --name {}{dir}` first",
            which.name,
            state_path(which).display(),
            which.name
        ));
    }
    let mut state = State::new(&which.name, plan.regions, plan.hosts);
    let existing = existing_namespaces()?;
    if let Some(clash) = state.namespaces.iter().find(|ns| existing.contains(ns)) {
        return Err(format!("namespace {clash} already exists (not listed by any testbed state); remove it first"));
    }
    for t in state.targets() {
        let (loss, rate) = match t {
            Target::Host { .. } => (plan.host_loss, plan.host_rate.clone()),
            Target::Link(_) => (plan.link_loss, plan.link_rate.clone()),
        };
        let shape = Shape { loss, rate };
        if shape != Shape::default() {
            state.shapes.insert(t.label(), shape);
        }
    }
    // Written before anything exists, so `down` can undo a build cut short.
    save(which, &state)?;
    if let Err(e) = build(which, &state) {
        let undo = down(which).err().map(|d| format!(" (and cleaning up failed too: {d})")).unwrap_or_default();
        return Err(format!("{e}{undo}"));
    }
    print!("{}", state.describe());
    Ok(())
}

fn build(which: &Which, state: &State) -> Result<(), String> {
    let hub = state.hub();
    sh(&["ip", "netns", "add", &hub])?;
    for region in 0..state.regions {
        let br = format!("br{region}");
        sh(&["ip", "-n", &hub, "link", "add", &br, "type", "bridge", "mcast_snooping", "0"])?;
        sh(&["ip", "-n", &hub, "link", "set", &br, "up"])?;
    }
    if state.routed() {
        build_router(state)?;
    }
    for t in state.hosts_iter() {
        build_host(state, t)?;
    }
    for t in state.targets() {
        apply_rate(state, t)?;
    }
    for ns in loss_namespaces(state) {
        apply_loss(state, &ns)?;
    }
    if state.routed() {
        start_router_daemon(which, state)?;
    }
    Ok(())
}

/// The router: one veth per region bridge, forwarding on.
fn build_router(state: &State) -> Result<(), String> {
    let (hub, rt) = (state.hub(), state.router());
    sh(&["ip", "netns", "add", &rt])?;
    sh(&["ip", "-n", &rt, "link", "set", "lo", "up"])?;
    in_ns(&rt, &["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])?;
    for region in 0..state.regions {
        let (inner, port) = (format!("l{region}"), format!("rt{region}"));
        let addr = format!("{}/16", router_addr(region));
        sh(&["ip", "link", "add", &inner, "netns", &rt, "type", "veth", "peer", "name", &port, "netns", &hub])?;
        sh(&["ip", "-n", &hub, "link", "set", &port, "master", &format!("br{region}"), "up"])?;
        sh(&["ip", "-n", &rt, "addr", "add", &addr, "dev", &inner])?;
        sh(&["ip", "-n", &rt, "link", "set", &inner, "up"])?;
    }
    Ok(())
}

fn build_host(state: &State, t: Target) -> Result<(), String> {
    let Target::Host { region, host } = t else { return Ok(()) };
    let (hub, ns, port) = (state.hub(), state.namespace_of(t), t.label());
    sh(&["ip", "netns", "add", &ns])?;
    sh(&["ip", "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port, "netns", &hub])?;
    sh(&["ip", "-n", &hub, "link", "set", &port, "master", &format!("br{region}"), "up"])?;
    sh(&["ip", "-n", &ns, "addr", "add", &format!("{}/16", host_addr(region, host)), "dev", "eth0"])?;
    sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
    sh(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
    sh(&["ip", "-n", &ns, "route", "add", "224.0.0.0/4", "dev", "eth0"])?;
    if state.routed() {
        sh(&["ip", "-n", &ns, "route", "add", "default", "via", &router_addr(region)])?;
    }
    Ok(())
}

/// `smcrouted` in the router namespace, forwarding every routable group from
/// each region to all the others. Its socket, pid file and log live next to
/// the state file so testbeds never share them.
fn start_router_daemon(which: &Which, state: &State) -> Result<(), String> {
    let links: Vec<String> = (0..state.regions).map(|r| format!("l{r}")).collect();
    let mut conf = String::from("# netsim testbed: forward multicast between regions (TTL 1 stays home)\n");
    for from in &links {
        let to: Vec<&str> = links.iter().filter(|l| *l != from).map(String::as_str).collect();
        conf += &format!("mroute from {from} group 224.0.0.0/4 to {}\n", to.join(" "));
    }
    let conf_path = daemon_file(which, "conf");
    let (pid_path, sock_path, log_path) =
        (daemon_file(which, "pid"), daemon_file(which, "sock"), daemon_file(which, "log"));
    fs::write(&conf_path, conf).map_err(|e| format!("cannot write {}: {e}", conf_path.display()))?;
    let log = fs::File::create(&log_path).map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    let rt = state.router();
    let ident = format!("lsim-{}", state.name);
    let mut child = Command::new("ip")
        .args(["netns", "exec", &rt, "smcrouted", "-n", "-l", "notice", "-i", &ident])
        .arg("-f")
        .arg(&conf_path)
        .arg("-P")
        .arg(&pid_path)
        .arg("-u")
        .arg(&sock_path)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| format!("cannot start smcrouted: {e}"))?;
    // Ready when the kernel has a multicast interface for every link and the pid file is written.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            return Err(format!("smcrouted in {rt} exited ({status}): {}", log.trim()));
        }
        let vifs = run_cmd(&["ip", "netns", "exec", &rt, "cat", "/proc/net/ip_mr_vif"], None).unwrap_or_default();
        let all_vifs = links.iter().all(|l| vifs.split_whitespace().any(|w| w == l));
        if all_vifs && pid_path.exists() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            return Err(format!("smcrouted in {rt} not ready after 5 s: {}", log.trim()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------- shaping

/// The namespaces whose nftables rules carry loss: every host, and the router.
fn loss_namespaces(state: &State) -> Vec<String> {
    let hosts = state.hosts_iter().map(|t| state.namespace_of(t));
    hosts.chain(state.routed().then(|| state.router())).collect()
}

/// Rewrite one namespace's loss rules from the state, atomically (one `nft -f`).
fn apply_loss(state: &State, ns: &str) -> Result<(), String> {
    // nft refuses `< 100` (numgen's range is 0-99), and 100% needs no dice anyway.
    let drop_rule = |percent: u8| match percent {
        100.. => "meta l4proto udp drop".to_string(),
        p => format!("meta l4proto udp numgen random mod 100 < {p} drop"),
    };
    let (hook, rules) = if ns == state.router() {
        let rules = (0..state.regions)
            .map(|r| (r, state.shape(Target::Link(r)).loss))
            .filter(|(_, loss)| *loss > 0)
            .flat_map(|(r, loss)| {
                [format!("iifname \"l{r}\" {}", drop_rule(loss)), format!("oifname \"l{r}\" {}", drop_rule(loss))]
            })
            .collect::<Vec<_>>();
        ("forward", rules)
    } else {
        let host = state.hosts_iter().find(|t| state.namespace_of(*t) == ns);
        let loss = host.map(|t| state.shape(t).loss).unwrap_or(0);
        ("input", if loss > 0 { vec![drop_rule(loss)] } else { Vec::new() })
    };
    let body: String = rules.iter().map(|r| format!("    {r}\n")).collect();
    // Declaring the table first makes the delete succeed on a fresh namespace.
    let ruleset = format!(
        "table inet lsim_testbed\ndelete table inet lsim_testbed\ntable inet lsim_testbed {{\n  \
         chain {hook} {{\n    type filter hook {hook} priority 0; policy accept;\n{body}  }}\n}}\n"
    );
    run_cmd(&["ip", "netns", "exec", ns, "nft", "-f", "-"], Some(&ruleset)).map(drop)
}

/// The (namespace, device) pairs a target's token bucket sits on.
fn rate_devices(state: &State, t: Target) -> Vec<(String, String)> {
    match t {
        Target::Host { .. } => vec![(state.namespace_of(t), "eth0".to_string())],
        Target::Link(r) => vec![(state.router(), format!("l{r}")), (state.hub(), format!("rt{r}"))],
    }
}

fn apply_rate(state: &State, t: Target) -> Result<(), String> {
    let shape = state.shape(t);
    for (ns, dev) in rate_devices(state, t) {
        match &shape.rate {
            Some(rate) => {
                let bits = parse_rate(rate)?;
                // At least 10 kB and 10 ms of traffic, so fast rates are not starved by timer granularity.
                let burst = (bits / 8 / 100).max(10_000);
                sh(&["ip", "-n", &ns, "link", "set", &dev, "txqueuelen", "1000"])?;
                let (rate, burst) = (format!("{bits}bit"), format!("{burst}b"));
                let args = ["qdisc", "replace", "dev", &dev, "root", "tbf", "rate", &rate, "burst", &burst];
                sh(&["tc", "-n", &ns].iter().chain(&args).chain(&["latency", "100ms"]).copied().collect::<Vec<_>>())?;
            }
            // Deleting a qdisc that is not there fails harmlessly: "off" is idempotent.
            None => drop(sh(&["tc", "-n", &ns, "qdisc", "del", "dev", &dev, "root"])),
        }
    }
    Ok(())
}

fn set_loss(which: &Which, label: &str, percent: u8) -> Result<(), String> {
    check_loss(percent)?;
    require_tools(&[IP, NFT])?;
    let mut state = load(which)?;
    let t = state.target(label)?;
    state.shapes.entry(t.label()).or_default().loss = percent;
    let ns = match t {
        Target::Host { .. } => state.namespace_of(t),
        Target::Link(_) => state.router(),
    };
    apply_loss(&state, &ns)?;
    save(which, &state)
}

fn set_rate(which: &Which, label: &str, rate: &str) -> Result<(), String> {
    let rate = if rate.eq_ignore_ascii_case("off") { None } else { Some(rate.to_string()) };
    if let Some(r) = &rate {
        parse_rate(r)?;
    }
    require_tools(&[IP, TC])?;
    let mut state = load(which)?;
    let t = state.target(label)?;
    state.shapes.entry(t.label()).or_default().rate = rate;
    apply_rate(&state, t)?;
    save(which, &state)
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
