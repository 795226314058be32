//! The group commands: `lsim server` (embedded XMPP server + key server +
//! the group's room), `lsim keyserver` (the key server alone, for a group
//! on Prosody or ejabberd), `lsim user add`, `lsim chat` (the interactive line
//! client) and `lsim demo` (everything on loopback, with the original
//! system's tables measured now); also the group mode of `lsim send` and
//! `lsim recv` (`--room`). One file a command: `server`, `keyserver`, `user`,
//! `chat`, `demo`, `room`; how an event is shown on the terminal in `view`.
//!
//! Owns argument handling and what is printed. The work is done by
//! `lsim_im::group` and `lsim_im::xmpp`; nothing here speaks a protocol.
//! This file holds only what several commands share: the `--iface` check,
//! the XMPP client settings, the password, log times, waiting for an event,
//! and the group parameter and region flags.

mod chat;
mod demo;
mod gps;
mod invite;
mod keyserver;
mod profile;
mod qr;
mod room;
mod server;
mod tak;
mod user;
mod view;

use std::io::BufRead;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use lsim_im::group::member::{Member, MemberConfig, MemberEvent};
use lsim_im::xmpp::client::{ClientConfig, TlsMode};
use lsim_im::xmpp::jid::Jid;
use lsim_im::xmpp::tls::{Trust, parse_fingerprint};

pub use chat::{ChatArgs, chat, tak_bridge};
pub use demo::{DemoArgs, demo};
pub use keyserver::{KeyserverArgs, keyserver};
pub use room::{RoomArgs, receive_from_room, send_to_room};
pub use server::{ServerArgs, server};
pub use user::{UserAction, user};

/// Refuses an interface address this host does not have (a typo would
/// otherwise fail later as a socket error, or announce an address no member
/// can reach). The one check for every command's `--iface`.
pub fn check_iface(flag: &str, addr: Ipv4Addr) -> Result<()> {
    if addr.is_unspecified() {
        return Ok(());
    }
    let ifs = if_addrs::get_if_addrs().with_context(|| format!("{flag} {addr}: cannot list this host's interfaces"))?;
    let mut have: Vec<Ipv4Addr> = ifs
        .iter()
        .filter_map(|i| match i.ip() {
            std::net::IpAddr::V4(a) => Some(a),
            std::net::IpAddr::V6(_) => None,
        })
        .collect();
    if !have.contains(&addr) {
        have.sort();
        have.dedup();
        let list = if have.is_empty() {
            "none".to_string()
        } else {
            have.iter().map(Ipv4Addr::to_string).collect::<Vec<_>>().join(", ")
        };
        bail!("{flag} {addr}: this host has no such address (have: {list})");
    }
    Ok(())
}

fn xmpp_config(
    jid: &str,
    password: &str,
    server: &Option<String>,
    tls: &str,
    pin: &Option<String>,
    ca: &Option<PathBuf>,
) -> Result<ClientConfig> {
    let jid = Jid::parse(jid).map_err(|e| anyhow!("--jid: {e}"))?;
    let mut cfg = ClientConfig::new(jid, password);
    cfg.server = server.clone();
    cfg.tls = match tls {
        "required" => TlsMode::Required,
        "if-offered" => TlsMode::IfOffered,
        "disabled" => TlsMode::Disabled,
        other => bail!("--tls {other}: use required, if-offered or disabled"),
    };
    cfg.trust = match (pin, ca) {
        (Some(pin), _) => Trust::Pinned(parse_fingerprint(pin).ok_or_else(|| anyhow!("--pin: 64 hex digits"))?),
        (None, Some(ca)) => Trust::CaFile(ca.clone()),
        (None, None) => Trust::SystemRoots,
    };
    Ok(cfg)
}

/// The group archive's flags (`lsim server`, `lsim keyserver`).
#[derive(clap::Args, Clone, Debug)]
pub struct ArchiveArgs {
    /// Hours the archive keeps the group's objects for members who missed them.
    #[arg(long, default_value_t = 24.0)]
    archive_hours: f64,
    /// MiB the archive keeps at most (beyond, the oldest files go first).
    #[arg(long, default_value_t = 1024)]
    archive_mib: u64,
    /// Keep no archive.
    #[arg(long)]
    no_archive: bool,
    /// Who may read what was sent before they joined: `joined` (a member
    /// gets only what was sent while it was a member) or `shared:N` (a new
    /// member also gets the group's last N objects from the archive; the
    /// README says what that costs).
    #[arg(long, default_value = "joined")]
    pub history: lsim_im::xmpp::payload::History,
}

impl ArchiveArgs {
    /// The archive's bounds, or none.
    pub fn limits(&self) -> Result<Option<lsim_im::group::archive::Limits>> {
        if self.no_archive {
            if self.history != lsim_im::xmpp::payload::History::Joined {
                bail!("--history {} needs the archive (leave out --no-archive)", self.history);
            }
            return Ok(None);
        }
        if !(self.archive_hours > 0.0 && self.archive_hours <= 24.0 * 365.0) || self.archive_mib == 0 {
            bail!("--archive-hours must be more than 0 and at most a year, --archive-mib at least 1");
        }
        Ok(Some(lsim_im::group::archive::Limits {
            max_age: Duration::from_secs_f64(self.archive_hours * 3600.0),
            max_bytes: self.archive_mib.saturating_mul(1 << 20),
        }))
    }
}

fn read_password(stdin: bool) -> Result<String> {
    if stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("reading the password")?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    std::env::var("LSIM_PASSWORD")
        .map_err(|_| anyhow!("give the password on stdin (--password-stdin) or in LSIM_PASSWORD"))
}

/// The time of day (UTC) for a log line.
fn log_time() -> String {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    clock(ms)
}

fn clock(ms: u64) -> String {
    let secs = ms / 1000;
    format!("{:02}:{:02}:{:02}", (secs / 3600) % 24, (secs / 60) % 60, secs % 60)
}

/// Waits up to 60 s for an event `pred` accepts, printing chat on the way.
async fn wait(m: &mut Member, pred: impl Fn(&MemberEvent) -> bool) -> Result<MemberEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ev = tokio::time::timeout_at(deadline, m.next_event())
            .await
            .map_err(|_| anyhow!("timed out"))?
            .ok_or_else(|| anyhow!("member stopped"))?;
        if pred(&ev) {
            return Ok(ev);
        }
    }
}

/// The group's parameters given directly instead of learned from the room
/// (all three of multicast, key server and pin, or none).
#[derive(clap::Args, Clone)]
pub struct ParamsArgs {
    /// The group's multicast address and port (instead of the room's announcement).
    #[arg(long, requires_all = ["keyserver", "keyserver_pin"])]
    multicast: Option<SocketAddrV4>,
    /// The key server's registrar address.
    #[arg(long, requires = "multicast")]
    keyserver: Option<SocketAddr>,
    /// SHA-256 fingerprint of the key server's certificate.
    #[arg(long, requires = "multicast")]
    keyserver_pin: Option<String>,
}

impl ParamsArgs {
    fn params(&self) -> Result<Option<lsim_im::xmpp::payload::GroupParams>> {
        let (Some(group), Some(keyserver), Some(pin)) = (self.multicast, self.keyserver, &self.keyserver_pin) else {
            return Ok(None);
        };
        let fingerprint = parse_fingerprint(pin).ok_or_else(|| anyhow!("--keyserver-pin: 64 hex digits"))?;
        // The suite and epoch come with the keys; these fields are informational.
        Ok(Some(lsim_im::xmpp::payload::GroupParams {
            group: SocketAddr::V4(group),
            keyserver,
            fingerprint,
            suite: String::new(),
            epoch: 0,
            history: lsim_im::xmpp::payload::History::Joined,
        }))
    }
}

/// Where a member sits in a site of several radio cells (group mode).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct RegionArgs {
    /// Our region (radio cell): NACKs go to the repairer that announces
    /// itself in the room for it, while it answers.
    #[arg(long, value_name = "NAME")]
    region: Option<String>,
    /// Repair for this region: keep what arrives and answer its members'
    /// NACKs locally (announced in our room presence). Implies --region NAME.
    #[arg(long, value_name = "NAME")]
    repairs: Option<String>,
}

impl RegionArgs {
    fn apply(&self, cfg: &mut MemberConfig) {
        cfg.repairer = self.repairs.clone();
        cfg.region = self.region.clone().or_else(|| self.repairs.clone());
        if cfg.region.is_some() {
            // Region-scoped packets go out with TTL 1; the rest must cross the routers.
            cfg.ttl = cfg.ttl.max(8);
        }
    }
}
