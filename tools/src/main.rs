//! `lsim`: the command line.
//!
//! Standalone file transfer over encrypted multicast (`keygen`, `send`,
//! `recv`); the group commands (server, chat, demo) come with the group client.
//!
//! Every error ends the process with status 2 and one line that names the
//! input or flag to fix (clap's own usage errors exit 2 too). Inputs are
//! checked before anything is sent or written: the files to send, the key
//! file, the `--iface` address.

mod config;
mod group;
mod keyfile;
mod pace;

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use lsim_keymgmt::key::random_bytes;
use lsim_keymgmt::suite::{GroupSeal, SuiteId};
use lsim_transport::net::driver::wall_clock_seq;
use lsim_transport::net::{Driver, DriverConfig, Loopback, MulticastConfig, MulticastSocket};
use lsim_transport::source::FileSource;
use lsim_transport::stats::Drop;
use lsim_transport::wire::ObjectKind;
use lsim_transport::{ReceiverConfig, ReceiverEvent, Repairer, RepairerConfig, Sender, SenderConfig, SenderEvent};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::keyfile::KeyFile;
use lsim_im::group::envelope::{Incoming, Outgoing};
use lsim_im::group::landing::Landing;

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
        action: UserAction,
    },
    /// Join a group: chat, and send and receive files (interactive).
    Chat(group::ChatArgs),
    /// Everything on loopback, no set-up: a server, members, chat, a file, a leave and a join, and the
    /// original system's tables measured now.
    Demo(group::DemoArgs),
}

#[derive(Subcommand)]
enum UserAction {
    /// Add a user (stored as salted SCRAM credentials only).
    Add(group::UserAddArgs),
}

/// How long a repairer started with `--once` keeps serving after the sender went quiet.
const REPAIRER_LINGER: Duration = Duration::from_secs(3);

/// How long a busy receiver lets datagrams queue before reading them (see `DriverConfig::rx_coalesce`).
const RX_COALESCE: Duration = Duration::from_micros(500);

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
        Command::Server(_) | Command::Keyserver(_) | Command::Chat(_) | Command::Demo(_) => true,
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
            Command::User { action: UserAction::Add(a) } => group::user_add(a),
            Command::Chat(a) => group::chat(a).await,
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

/// How `lsim send` sends, from its command line.
struct SendOptions {
    /// Bytes per second (with `adaptive_rate`, the ceiling).
    rate: u64,
    adaptive_rate: bool,
    linger: f64,
    proactive: f64,
    block_symbols: u16,
}

async fn send(files: &[PathBuf], net: &Net, opts: SendOptions) -> Result<()> {
    let SendOptions { rate, adaptive_rate, linger, proactive, block_symbols } = opts;
    let inputs = open_inputs(files)?;
    let key = KeyFile::read(net.key_file()?)?;
    let mc = net.multicast()?;
    eprintln!("sending with key file id {} ({})", key.id(), key.suite);
    let socket = MulticastSocket::open(&mc).with_context(|| format!("--group {}: cannot join it", mc.group))?;
    let seal = key.seal();
    // The largest symbols whose every packet fits a 1500-byte MTU under this suite's tag.
    let symbol_size = lsim_transport::wire::symbol_size_for(1472, lsim_transport::seal::Seal::tag_len(&seal));
    let cfg = SenderConfig {
        session: key.session,
        node: node_id()?,
        symbol_size,
        rate,
        queue_target: adaptive_rate.then_some(lsim_transport::rate::QUEUE_TARGET),
        // A quarter millisecond of credit: fewer, still short, bursts at high rates.
        burst: (rate / 4000).max(SenderConfig::default().burst),
        proactive,
        block_symbols,
        first_seq: wall_clock_seq(),
        ..SenderConfig::default()
    };
    // The driver has this thread to itself: pace with microsecond sleeps.
    let dcfg = DriverConfig { precise_timer: true, ..DriverConfig::default() };
    let mut driver = Driver::new(Sender::new(cfg, seal)?, socket, dcfg);
    let mut total = 0u64;
    for (path, f) in files.iter().zip(inputs) {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
        let source = FileSource::new(f)?;
        total += lsim_transport::source::ObjectSource::len(&source);
        driver.core_mut().send(ObjectKind::File, Box::new(Outgoing::new(&name, source)))?;
    }
    let start = Instant::now();
    let started_unix_s = unix_now();
    let bar = progress_bar(total, "sending");
    let ticker = {
        let (h, bar) = (driver.handle(), bar.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let b = bar.clone();
                // Source symbols sent × symbol size: the share of the file on its way.
                let t = u64::from(symbol_size);
                if !h.with(move |s: &mut Sender<GroupSeal>| b.set_position((s.stats().source_sent * t).min(total))) {
                    break;
                }
            }
        })
    };
    let mut sent = 0usize;
    let mut failed = Vec::new();
    driver
        .run(|_, e| {
            match e {
                SenderEvent::ObjectSent(_) => sent += 1,
                SenderEvent::ObjectFailed { error, .. } => failed.push(error),
                SenderEvent::Idle if sent + failed.len() == files.len() => return ControlFlow::Break(()),
                _ => {}
            }
            ControlFlow::Continue(())
        })
        .await?;
    let elapsed = start.elapsed();
    ticker.abort();
    bar.finish_and_clear();
    // Late NACKs still get their repair: stay until none has come for `linger`
    // seconds (a receiver restarted late may need a whole file), but not for
    // ever: a member NACKing without end would keep us here.
    let (quiet, most) = (Duration::from_secs_f64(linger), Duration::from_secs_f64((linger * 10.0).max(30.0)));
    let lingering = Instant::now();
    let (mut heard, mut last_nack) = (driver.core().stats().nacks_received, Instant::now());
    while last_nack.elapsed() < quiet && lingering.elapsed() < most {
        let slice = quiet.saturating_sub(last_nack.elapsed()).min(Duration::from_millis(100));
        let _ = tokio::time::timeout(slice, driver.run(|_, _| ControlFlow::<()>::Continue(()))).await;
        let now_heard = driver.core().stats().nacks_received;
        if now_heard != heard {
            (heard, last_nack) = (now_heard, Instant::now());
        }
    }
    let s = driver.core().stats().clone();
    let goodput = total as f64 * 8.0 / elapsed.as_secs_f64().max(1e-9) / 1e6;
    if net.json {
        let j = serde_json::json!({
            "files": files.len(), "bytes": total, "wall_s": elapsed.as_secs_f64(), "goodput_mbps": goodput,
            "started_unix_s": started_unix_s, "peak_rss_kib": peak_rss_kib(), "cpu_s": cpu_s(),
            "packets_sent": s.packets_out, "bytes_sent": s.bytes_out, "source_packets": s.source_sent,
            "repair_packets": s.repair_sent, "nacks_received": s.nacks_received, "repair_rounds": s.repair_rounds,
            "repaired_blocks": s.repaired_blocks, "final_rate_mbps": driver.core().rate() as f64 * 8e-6, "grtt_ms": driver.core().grtt().as_secs_f64() * 1e3,
            "repair_refused": s.repair_refused, "overrun_cuts": s.overrun_cuts, "failed": failed,
            "key_file_id": key.id(),
        });
        println!("{j}");
    } else {
        println!(
            "sent {} file(s), {total} bytes in {:.2} s ({goodput:.1} Mbit/s): {} packets, {} repair, {} NACKs answered",
            files.len(),
            elapsed.as_secs_f64(),
            s.packets_out,
            s.repair_sent,
            s.nacks_received
        );
    }
    if !failed.is_empty() {
        bail!("{} file(s) could not be read: {}", failed.len(), failed.join("; "));
    }
    Ok(())
}

struct InFile {
    landing: Landing,
    incoming: Incoming<std::io::BufWriter<File>>,
    progress: ProgressBar,
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

#[derive(Default)]
struct Arrivals {
    files: std::collections::HashMap<(u32, u32), InFile>,
    /// Name, bytes, where it landed, and when (Unix seconds) it was verified and renamed.
    done: Vec<(String, u64, PathBuf, f64)>,
    failed: Vec<String>,
}

/// RMTP-style local repair, for `lsim recv` (standalone mode).
#[derive(clap::Args, Clone, Debug)]
struct RepairArgs {
    /// Also repair for this region: keep what was received and answer the
    /// NACKs of members that name this node (--repairer-node) with fresh
    /// repair symbols that stay in the region (TTL 1).
    #[arg(long)]
    repairer: bool,
    /// Which of the region's repairer ESI ranges to use (0-7; repairers whose
    /// regions overlap must differ).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..8))]
    repairer_index: u32,
    /// Memory kept to answer from, MiB.
    #[arg(long, default_value_t = 64)]
    repair_cache_mib: usize,
    /// Send NACKs to this region's repairer (its node id) instead of the
    /// sender; if it stays silent they go to the sender again.
    #[arg(long)]
    repairer_node: Option<u32>,
    /// This receiver's node id (default: random), so a repairer can be named in members' configs.
    #[arg(long)]
    node: Option<u32>,
}

/// How `lsim recv` receives, from its command line.
struct RecvOptions {
    once: bool,
    overwrite: bool,
    idle: f64,
    loss: f64,
    repair: RepairArgs,
}

async fn recv(net: &Net, dir: &Path, opts: RecvOptions) -> Result<()> {
    let RecvOptions { once, overwrite, idle, loss, repair } = opts;
    let key = KeyFile::read(net.key_file()?)?;
    // Every input checked before the directory is touched.
    let mut mc = net.multicast()?;
    std::fs::create_dir_all(dir).with_context(|| format!("--dir {}: cannot create it", dir.display()))?;
    let swept = Landing::sweep_stale(dir);
    if swept > 0 {
        eprintln!("removed {swept} partial file(s) left in {} by a receiver that was stopped mid-file", dir.display());
    }
    eprintln!("receiving with key file id {} ({})", key.id(), key.suite);
    if repair.repairer_node.is_some() || repair.repairer {
        // Region-scoped packets go out with TTL 1; the rest need to cross the routers.
        mc.ttl = mc.ttl.max(2);
    }
    let socket = MulticastSocket::open(&mc).with_context(|| format!("--group {}: cannot join it", mc.group))?;
    let node = match repair.node {
        Some(n) if n == 0 || n >= 0xfff0_0000 => bail!("--node {n}: must be 1 to {}", 0xfff0_0000u32 - 1),
        Some(n) => n,
        None => node_id()?,
    };
    if repair.repairer {
        eprintln!("repairing for this region as node {node} (members: --repairer-node {node})");
    }
    let cfg = ReceiverConfig {
        session: key.session,
        node,
        seed: u64::from(node),
        first_seq: wall_clock_seq(),
        // Blocks held behind one still missing: at a few hundred Mbit/s a NACK round trip spans hundreds of
        // blocks; past the window new data is dropped and must be repaired. Memory stays bounded by
        // `max_buffered`.
        max_blocks: 4096,
        repairer: repair.repairer_node,
        ..Default::default()
    };
    let rcfg = RepairerConfig {
        receiver: cfg,
        first_repair: (1 << 19) + repair.repairer_index * (1 << 16),
        cache_bytes: if repair.repairer { repair.repair_cache_mib.max(1) << 20 } else { 0 },
        ..RepairerConfig::default()
    };
    let mut driver: Driver<Repairer<GroupSeal>> = Driver::new(
        Repairer::new(rcfg, key.seal()),
        socket,
        // The driver has this thread to itself: read the socket in batches (half a millisecond of
        // datagrams) rather than being woken for each one.
        DriverConfig { simulated_loss: loss, seed: u64::from(node), rx_coalesce: RX_COALESCE, precise_timer: false },
    );
    let mut a = Arrivals::default();
    let start = Instant::now();
    let (mut last_in, mut last_count) = (Instant::now(), 0u64);
    let idle = Duration::from_secs_f64(idle);
    let mut warned = false;
    loop {
        let slice = tokio::time::timeout(
            Duration::from_millis(250),
            // A repairer stays after its own file: members may still need it.
            driver.run(|_, e| on_event(e, dir, overwrite, once && !repair.repairer, &mut a)),
        )
        .await;
        if let Ok(r) = slice {
            r?;
            break;
        }
        // Only senders' packets count: receivers that still miss data keep NACKing each other.
        let count = driver.core().sender_packets();
        // Nothing opened, yet packets came that would not open: not a silent
        // sender but another key (said once; with --once, the end).
        let foreign = unopened(driver.core().stats());
        if count == 0 && foreign > 0 && a.done.is_empty() && a.files.is_empty() && last_in.elapsed() >= idle {
            let why = format!(
                "{foreign} packets arrived under a key this receiver does not hold (our key file id {}) and none \
                 could be opened: is the sender using another key file? (`lsim send` prints its id)",
                key.id()
            );
            if once {
                report(net.json, &a, &driver, start, &key);
                bail!(why);
            }
            if !warned {
                eprintln!("lsim: {why}");
                warned = true;
            }
        }
        if count != last_count {
            (last_in, last_count) = (Instant::now(), count);
        } else if repair.repairer && once && !a.done.is_empty() && last_in.elapsed() >= REPAIRER_LINGER {
            // The sender went quiet: everyone has what they asked for.
            break;
        } else if last_in.elapsed() >= idle && (once || !a.files.is_empty()) {
            for (_, f) in a.files.drain() {
                f.landing.abandon();
            }
            report(net.json, &a, &driver, start, &key);
            bail!("no packet for {:.0} s: the sender is gone; nothing incomplete was kept", idle.as_secs_f64());
        }
    }
    report(net.json, &a, &driver, start, &key);
    if a.done.is_empty() {
        bail!("no file received: {}", a.failed.join("; "));
    }
    Ok(())
}

fn on_event(e: ReceiverEvent, dir: &Path, overwrite: bool, once: bool, a: &mut Arrivals) -> ControlFlow<()> {
    match e {
        ReceiverEvent::ObjectStarted { sender, object, kind: ObjectKind::File, len } => {
            match Landing::create(dir, &format!("{sender:08x}-{object}")) {
                Ok((landing, f)) => {
                    let incoming = Incoming::new(std::io::BufWriter::new(f));
                    let progress = progress_bar(len, &format!("receiving from {sender:08x}"));
                    a.files.insert((sender, object), InFile { landing, incoming, progress });
                }
                Err(err) => a.failed.push(format!("cannot create a file in {}: {err}", dir.display())),
            }
        }
        ReceiverEvent::ObjectProgress { sender, object, got } => {
            if let Some(f) = a.files.get_mut(&(sender, object)) {
                f.progress.set_position(got.max(f.progress.position()));
            }
        }
        ReceiverEvent::ObjectData { sender, object, data, offset } => {
            let pushed = a.files.get_mut(&(sender, object)).map(|f| {
                f.progress.set_position((offset + data.len() as u64).max(f.progress.position()));
                f.incoming.push(&data)
            });
            if let Some(Err(err)) = pushed
                && let Some(f) = a.files.remove(&(sender, object))
            {
                f.progress.abandon();
                f.landing.abandon();
                a.failed.push(format!("object {object} from {sender:08x}: {err}"));
            }
        }
        ReceiverEvent::ObjectComplete { sender, object } => {
            if let Some(f) = a.files.remove(&(sender, object)) {
                f.progress.finish_and_clear();
                match f.incoming.finish().and_then(|(r, w)| Ok((r, w.into_inner().map_err(|e| e.into_error())?))) {
                    Ok((r, file)) => match f.landing.commit(file, &r.name, overwrite) {
                        Ok(path) => {
                            eprintln!("received {} ({} bytes) -> {}", r.name, r.size, path.display());
                            a.done.push((r.name, r.size, path, unix_now()));
                            if once {
                                return ControlFlow::Break(());
                            }
                        }
                        Err(err) => a.failed.push(format!("{}: {err}", r.name)),
                    },
                    Err(err) => {
                        f.landing.abandon();
                        a.failed.push(format!("object {object} from {sender:08x}: {err}"));
                    }
                }
            }
        }
        ReceiverEvent::ObjectLost { sender, object } => {
            if let Some(f) = a.files.remove(&(sender, object)) {
                f.landing.abandon();
                a.failed.push(format!("object {object} from {sender:08x} was lost: the sender no longer has it"));
            }
        }
        _ => {}
    }
    ControlFlow::Continue(())
}

/// Packets dropped because they would not open here: forged or damaged, or
/// sealed under a session, epoch or key this receiver does not hold (a short
/// header from a node never heard in a long one is one of those too).
fn unopened(s: &lsim_transport::stats::Stats) -> u64 {
    [Drop::BadSeal, Drop::NoReference, Drop::OtherSession, Drop::UnknownEpoch].iter().map(|d| s.dropped(*d)).sum()
}

fn report(json: bool, a: &Arrivals, driver: &Driver<Repairer<GroupSeal>>, start: Instant, key: &KeyFile) {
    let s = driver.core().stats();
    let bytes: u64 = a.done.iter().map(|d| d.1).sum();
    let wall = start.elapsed().as_secs_f64();
    if json {
        let j = serde_json::json!({
            "files": a.done.iter().map(|d| serde_json::json!({"name": d.0, "bytes": d.1, "path": d.2, "verified_unix_s": d.3})).collect::<Vec<_>>(),
            "bytes": bytes, "wall_s": wall, "packets_in": s.packets_in, "nacks_sent": s.nacks_sent,
            "nacks_suppressed": s.nacks_suppressed, "blocks_repaired": s.blocks_repaired,
            "decode_failures": s.decode_failures, "dropped_stale": s.dropped(Drop::Stale),
            "dropped_overload": s.dropped(Drop::Overload),
            "dropped_bad_seal": s.dropped(Drop::BadSeal), "dropped_malformed": s.dropped(Drop::Malformed),
            "dropped_other_session": s.dropped(Drop::OtherSession),
            "dropped_no_reference": s.dropped(Drop::NoReference), "dropped_no_info": s.dropped(Drop::NoInfo),
            "dropped_total": s.dropped_total(),
            "simulated_drops": driver.stats().simulated_drops, "failed": a.failed, "peak_rss_kib": peak_rss_kib(), "cpu_s": cpu_s(),
            "local_repairs": s.local_repairs, "forwarded_nacks": s.forwarded_nacks,
            "relayed_feedback": s.relayed_feedback, "repairer_fallbacks": s.repairer_fallbacks,
            "dropped_unknown_epoch": s.dropped(Drop::UnknownEpoch), "dropped_unopened": unopened(s),
            "key_file_id": key.id(),
        });
        println!("{j}");
    } else {
        println!(
            "received {} file(s), {bytes} bytes; {} packets, {} NACKs sent, {} dropped unopened (forged, damaged, \
             or under a key this receiver does not hold)",
            a.done.len(),
            s.packets_in,
            s.nacks_sent,
            unopened(s)
        );
    }
}
