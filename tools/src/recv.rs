//! `lsim recv` in standalone mode: files received from a multicast group
//! under a key file into a directory, each verified before it lands; with
//! `--repairer`, RMTP-style local repair for this region as well.
//!
//! Owns the receiver's set-up from its flags, where files land and what it
//! prints (or, with `--json`, its statistics). It must not touch the
//! protocol (`lsim_transport`'s `Repairer` does the work), the group mode
//! (`group::room`) or the parsing of the command line (`main`).

use std::fs::File;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::ProgressBar;
use lsim_im::group::envelope::Incoming;
use lsim_im::group::landing::Landing;
use lsim_keymgmt::suite::GroupSeal;
use lsim_transport::net::driver::wall_clock_seq;
use lsim_transport::net::{Driver, DriverConfig, MulticastSocket};
use lsim_transport::stats::DropReason;
use lsim_transport::wire::ObjectKind;
use lsim_transport::{ReceiverConfig, ReceiverEvent, Repairer, RepairerConfig};

use crate::keyfile::KeyFile;
use crate::{Net, cpu_s, node_id, peak_rss_kib, progress_bar, unix_now};

/// How long a repairer started with `--once` keeps serving after the sender went quiet.
const REPAIRER_LINGER: Duration = Duration::from_secs(3);

/// How long a busy receiver lets datagrams queue before reading them (see `DriverConfig::rx_coalesce`).
const RX_COALESCE: Duration = Duration::from_micros(500);

struct InFile {
    landing: Landing,
    incoming: Incoming<std::io::BufWriter<File>>,
    progress: ProgressBar,
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
pub struct RepairArgs {
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
pub struct RecvOptions {
    pub once: bool,
    pub overwrite: bool,
    pub idle: f64,
    pub loss: f64,
    pub repair: RepairArgs,
}

pub async fn recv(net: &Net, dir: &Path, opts: RecvOptions) -> Result<()> {
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
    [DropReason::BadSeal, DropReason::NoReference, DropReason::OtherSession, DropReason::UnknownEpoch]
        .iter()
        .map(|d| s.dropped(*d))
        .sum()
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
            "decode_failures": s.decode_failures, "dropped_stale": s.dropped(DropReason::Stale),
            "dropped_overload": s.dropped(DropReason::Overload),
            "dropped_bad_seal": s.dropped(DropReason::BadSeal), "dropped_malformed": s.dropped(DropReason::Malformed),
            "dropped_other_session": s.dropped(DropReason::OtherSession),
            "dropped_no_reference": s.dropped(DropReason::NoReference), "dropped_no_info": s.dropped(DropReason::NoInfo),
            "dropped_total": s.dropped_total(),
            "simulated_drops": driver.stats().simulated_drops, "failed": a.failed, "peak_rss_kib": peak_rss_kib(), "cpu_s": cpu_s(),
            "local_repairs": s.local_repairs, "forwarded_nacks": s.forwarded_nacks,
            "relayed_feedback": s.relayed_feedback, "repairer_fallbacks": s.repairer_fallbacks,
            "dropped_unknown_epoch": s.dropped(DropReason::UnknownEpoch), "dropped_unopened": unopened(s),
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
