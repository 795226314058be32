//! `lsim send` in standalone mode: files streamed to a multicast group under
//! a key file, repairs answered until the receivers go quiet, and what it
//! took printed (or, with `--json`, its statistics).
//!
//! Owns the sender's set-up from its flags and what it prints. It must not
//! touch the protocol (`lsim_transport`'s `Sender` does the work), the group
//! mode (`group::room`) or the parsing of the command line (`main`).

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use lsim_im::group::envelope::Outgoing;
use lsim_keymgmt::suite::GroupSeal;
use lsim_transport::linger::LingerConfig;
use lsim_transport::net::driver::wall_clock_seq;
use lsim_transport::net::{Driver, DriverConfig, MulticastSocket};
use lsim_transport::source::FileSource;
use lsim_transport::wire::ObjectKind;
use lsim_transport::{Sender, SenderConfig, SenderEvent};

use crate::keyfile::KeyFile;
use crate::{Net, cpu_s, node_id, open_inputs, peak_rss_kib, progress_bar, unix_now};

/// How `lsim send` sends, from its command line.
pub struct SendOptions {
    /// Bytes per second (with `adaptive_rate`, the ceiling).
    pub rate: u64,
    pub adaptive_rate: bool,
    pub linger: f64,
    pub proactive: f64,
    pub block_symbols: u16,
}

pub async fn send(files: &[PathBuf], net: &Net, opts: SendOptions) -> Result<()> {
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
        linger: LingerConfig::quiet(Duration::from_secs_f64(linger)),
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
    let mut elapsed = None;
    // The transfer's time ends when every file went out and no repair is
    // owed; late NACKs still get theirs until the sender says it may stop
    // (`--linger` of silence, ten times that at most: `linger`).
    driver
        .run(|_, e| {
            match e {
                SenderEvent::ObjectSent(_) => sent += 1,
                SenderEvent::ObjectFailed { error, .. } => failed.push(error.to_string()),
                SenderEvent::Idle if sent + failed.len() == files.len() => {
                    elapsed.get_or_insert_with(|| start.elapsed());
                }
                SenderEvent::MayStop if sent + failed.len() == files.len() => return ControlFlow::Break(()),
                _ => {}
            }
            ControlFlow::Continue(())
        })
        .await?;
    let elapsed = elapsed.unwrap_or_else(|| start.elapsed());
    ticker.abort();
    bar.finish_and_clear();
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
