//! `lsim`: the command line.
//!
//! Standalone file transfer over encrypted multicast (`keygen`, `send`,
//! `recv`); the group commands (server, chat, tak-bridge, demo) come with the group client.
//!
//! Every error ends the process with status 2 and one line that names the
//! input or flag to fix (clap's own usage errors exit 2 too). Inputs are
//! checked before anything is sent or written: the files to send, the key
//! file, the `--iface` address.
//!
//! Owns the parsing of the command line, the flags `send` and `recv` share
//! (`Net`), `keygen`, and the exit status. The standalone `send` and `recv`
//! run in their own modules, the group commands in `group`; nothing here
//! speaks a protocol.

mod config;
mod group;
mod keyfile;
mod pace;
mod recv;
mod send;

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use lsim_keymgmt::key::random_bytes;
use lsim_keymgmt::suite::SuiteId;
use lsim_transport::net::{Loopback, MulticastConfig};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::keyfile::KeyFile;
use crate::recv::{RecvOptions, RepairArgs, recv};
use crate::send::{SendOptions, send};

#[derive(Parser)]
#[command(
    name = "lsim",
    version,
    about = "Secure group communication over reliable multicast",
    after_help = "Every command also takes --config FILE: a TOML file whose keys are flag names ([chat], [server]... \
                  sections per command); flags on the command line win."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct Net {
    /// Multicast group and port, e.g. 239.1.2.3:5000 (standalone mode; with --room the room says).
    #[arg(long, required_unless_present = "room")]
    group: Option<SocketAddrV4>,
    /// Interface to use, by name (eth0, wlan0, lo) or IPv4 address (default: the kernel's choice).
    #[arg(long)]
    iface: Option<String>,
    /// Multicast TTL (hops).
    #[arg(long, default_value_t = 1)]
    ttl: u32,
    /// The group key file (from `lsim keygen`; standalone mode).
    #[arg(long, required_unless_present = "room")]
    key_file: Option<PathBuf>,
    #[command(flatten)]
    room: group::RoomArgs,
    /// Print one JSON object of statistics at the end.
    #[arg(long)]
    json: bool,
    /// Never loop our own multicast back to this host. By default it loops
    /// back only while another socket on this host has joined the group.
    #[arg(long)]
    no_loopback: bool,
}

impl Net {
    /// The `--iface` address, checked against this host's: a mistyped
    /// address would otherwise fail later as a socket error, or not at all.
    fn interface(&self) -> Result<Ipv4Addr> {
        let Some(s) = &self.iface else { return Ok(Ipv4Addr::UNSPECIFIED) };
        let ifs =
            if_addrs::get_if_addrs().with_context(|| format!("--iface {s}: cannot list this host's interfaces"))?;
        match s.parse::<Ipv4Addr>() {
            Ok(a) => group::check_iface("--iface", a).map(|()| a),
            Err(_) => interface_addr(s, &ifs),
        }
    }

    fn group(&self) -> Result<SocketAddrV4> {
        let g = self.group.ok_or_else(|| anyhow!("--group is required (or --room for group mode)"))?;
        if !g.ip().is_multicast() {
            bail!("--group {g}: not a multicast address (give one in 224.0.0.0/4, e.g. 239.1.2.3:5000)");
        }
        Ok(g)
    }

    fn key_file(&self) -> Result<&Path> {
        self.key_file.as_deref().ok_or_else(|| anyhow!("--key-file is required (or --room for group mode)"))
    }

    fn multicast(&self) -> Result<MulticastConfig> {
        let interface = self.interface()?;
        Ok(MulticastConfig {
            group: self.group()?,
            interface,
            ttl: self.ttl,
            // Our multicast comes back to this host only while another socket here listens.
            loopback: if self.no_loopback { Loopback::Off } else { Loopback::WhenShared { own: 1 } },
            recv_buffer: 8 << 20,
            send_buffer: 4 << 20,
        })
    }
}

fn ipv4(i: &if_addrs::Interface) -> Option<Ipv4Addr> {
    match i.ip() {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

/// The IPv4 address of the interface called `name` (`--iface` by name).
fn interface_addr(name: &str, ifs: &[if_addrs::Interface]) -> Result<Ipv4Addr> {
    ifs.iter().filter(|i| i.name == name).find_map(ipv4).ok_or_else(|| {
        let names: std::collections::BTreeSet<&str> =
            ifs.iter().filter(|i| ipv4(i).is_some()).map(|i| i.name.as_str()).collect();
        anyhow!(
            "--iface {name}: this host has no interface of that name with an IPv4 address (have: {})",
            names.into_iter().collect::<Vec<_>>().join(", ")
        )
    })
}

/// Why a file could not be used, as words (no "(os error 2)").
fn io_why(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        std::io::ErrorKind::IsADirectory => "it is a directory".to_string(),
        _ => e.to_string(),
    }
}

/// The files to send, each opened: a missing, unreadable or non-regular
/// file (a directory) is refused by name before anything goes out.
fn open_inputs(files: &[PathBuf]) -> Result<Vec<File>> {
    files
        .iter()
        .map(|p| {
            let meta = std::fs::metadata(p).map_err(|e| anyhow!("{}: {}", p.display(), io_why(&e)))?;
            if meta.is_dir() {
                bail!("{} is a directory: give files, not directories", p.display());
            }
            if !meta.is_file() {
                bail!("{} is not a regular file (a device, pipe or socket): give files", p.display());
            }
            File::open(p).map_err(|e| anyhow!("{}: cannot open it: {}", p.display(), io_why(&e)))
        })
        .collect()
}

#[derive(Subcommand)]
enum Command {
    /// Write a new group key file.
    Keygen {
        /// Cipher suite: aes-256-gcm, chacha20-poly1305 or blowfish-cbc-hmac-sha256.
        #[arg(long, default_value = "aes-256-gcm")]
        suite: SuiteId,
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Send files to everyone listening on the group.
    Send {
        /// Files to send.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        net: Net,
        #[command(flatten)]
        pace: pace::PaceArgs,
        /// Seconds without a repair request, after the last file went out,
        /// before exiting (at most ten times this, or 30 s, in all).
        #[arg(long, default_value_t = 2.0)]
        linger: f64,
        /// Proactive repair symbols per block, as a share of the block.
        #[arg(long, default_value_t = 0.0)]
        proactive: f64,
        /// The largest FEC block, in source symbols: a smaller file is one
        /// block, a larger one the fewest blocks of at most this, sent four
        /// at a time interleaved (larger blocks need less repair under
        /// bursty loss, and wait longer for it).
        #[arg(long, default_value_t = lsim_transport::geometry::DEFAULT_MAX_BLOCK)]
        block_symbols: u16,
        /// Group mode: only these members (user names, comma-separated) can
        /// open the files; the rest of the group sees only that a file went
        /// to them.
        #[arg(long, value_delimiter = ',', requires = "room")]
        to: Vec<String>,
    },
    /// Receive files from the group into a directory.
    Recv {
        #[command(flatten)]
        net: Net,
        /// Where files land.
        #[arg(long)]
        dir: PathBuf,
        /// Exit after the first file.
        #[arg(long)]
        once: bool,
        /// Replace existing files instead of choosing a free name.
        #[arg(long)]
        overwrite: bool,
        /// Give up on a file (or, with --once, on waiting) after this many seconds without a packet.
        #[arg(long, default_value_t = 30.0)]
        idle_timeout: f64,
        /// Drop this share of received packets (to try lossy radio on a LAN).
        #[arg(long, default_value_t = 0.0, hide = true)]
        simulated_loss: f64,
        #[command(flatten)]
        repair: RepairArgs,
    },
    /// Run the group server: embedded XMPP server, key server and the group's room.
    Server(group::ServerArgs),
    /// Run the key server alone, for a group whose room is on another XMPP server (Prosody, ejabberd).
    Keyserver(group::KeyserverArgs),
    /// Manage the users of a group server.
    User {
        #[command(subcommand)]
        action: group::UserAction,
    },
    /// Join a group: chat, and send and receive files (interactive).
    Chat(group::ChatArgs),
    /// Bridge a group to a TAK network as a service: `lsim chat`'s options, --tak required, no terminal
    /// input; runs until SIGINT or SIGTERM.
    TakBridge(group::ChatArgs),
    /// Everything on loopback, no set-up: a server, members, chat, a file, a leave and a join, and the
    /// original system's tables measured now.
    Demo(group::DemoArgs),
}

fn node_id() -> Result<u32> {
    let mut b = [0u8; 4];
    random_bytes(&mut b).map_err(|e| anyhow!(e))?;
    // Avoid 0 and the key server's reserved ids.
    Ok(u32::from_be_bytes(b) % 0xfff0_0000 + 1)
}

fn main() -> ExitCode {
    let args = match config::expand(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => return fail(&e),
    };
    let cli = Cli::parse_from(args);
    // One driver loop per process: a single thread avoids handing it between workers (measured: half the
    // CPU went to context switches with a multi-threaded runtime).
    // The group commands run a server and members side by side: those get the threads.
    let group = match &cli.command {
        Command::Server(_) | Command::Keyserver(_) | Command::Chat(_) | Command::TakBridge(_) | Command::Demo(_) => {
            true
        }
        Command::Send { net, .. } | Command::Recv { net, .. } => net.room.room.is_some(),
        _ => false,
    };
    let builder =
        if group { tokio::runtime::Builder::new_multi_thread() } else { tokio::runtime::Builder::new_current_thread() };
    let rt = match { builder }.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&anyhow!("cannot start the runtime: {e}")),
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Keygen { suite, out, force } => keygen(suite, &out, force),
            Command::Send { files, net, pace, linger, to, .. } if net.room.room.is_some() => {
                open_inputs(&files)?;
                let (rate, auto) = pace.resolve().map_err(|e| anyhow!(e))?;
                group::send_to_room(&files, &to, &net.room, net.interface()?, (rate, auto), linger).await
            }
            Command::Recv { net, dir, once, overwrite, .. } if net.room.room.is_some() => {
                group::receive_from_room(&net.room, net.interface()?, &dir, once, overwrite).await
            }
            Command::Send { files, net, pace, linger, proactive, block_symbols, .. } => {
                let (rate, adaptive_rate) = pace.resolve().map_err(|e| anyhow!(e))?;
                send(&files, &net, SendOptions { rate, adaptive_rate, linger, proactive, block_symbols }).await
            }
            Command::Recv { net, dir, once, overwrite, idle_timeout, simulated_loss, repair } => {
                recv(&net, &dir, RecvOptions { once, overwrite, idle: idle_timeout, loss: simulated_loss, repair })
                    .await
            }
            Command::Server(a) => group::server(a).await,
            Command::Keyserver(a) => group::keyserver(a).await,
            Command::User { action } => group::user(action),
            Command::Chat(a) => group::chat(a).await,
            Command::TakBridge(a) => group::tak_bridge(a).await,
            Command::Demo(a) => group::demo(a).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// Prints `e` as one line and gives the exit status of every error: 2.
fn fail(e: &anyhow::Error) -> ExitCode {
    let text = format!("{e:#}");
    let line: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    eprintln!("lsim: {}", line.join(" "));
    ExitCode::from(2)
}

/// This process's peak resident memory in KiB (Linux's VmHWM), for `--json`.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The wall clock in Unix seconds.
fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// CPU seconds this process has used, user and system (Linux: /proc, in
/// clock ticks of 1/100 s).
fn cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let mut fields = stat.get(stat.rfind(')')? + 2..)?.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

fn keygen(suite: SuiteId, out: &Path, force: bool) -> Result<()> {
    let key = KeyFile::generate(suite)?;
    key.write(out, force)?;
    println!("wrote a new {suite} group key to {} (key file id {})", out.display(), key.id());
    Ok(())
}

/// A per-file progress bar on a terminal (drawn on stderr only when it is one).
fn progress_bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}
