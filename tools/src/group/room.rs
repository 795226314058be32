//! The group mode of `lsim send` and `lsim recv` (`--room`): a member joins
//! the room, gets the keys from the key server, sends its files to the group
//! (waiting for signed receipts when they are for some members only) or
//! receives the group's files, and leaves.
//!
//! Owns the `--room` flags and what these two print. It must not touch the
//! standalone `send` and `recv` (the crate's `send` and `recv` modules) or
//! the protocols (`lsim_im::group::member` runs them).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use lsim_im::group::member::{Member, MemberConfig, MemberEvent, Viewer};
use lsim_im::xmpp::jid::Jid;
use lsim_transport::linger::LingerConfig;

use super::view::show;
use super::{ParamsArgs, RegionArgs, read_password, wait, xmpp_config};

/// Group mode of `lsim send` and `lsim recv`: the room names the group.
#[derive(clap::Args, Clone)]
pub struct RoomArgs {
    /// Group mode: the room that is the group (e.g. lsim@conference.fire.example); the member joins it
    /// with --jid, gets the keys from the key server and sends or receives there.
    #[arg(long, requires = "jid")]
    pub room: Option<String>,
    /// Group mode: your JID (user@domain); the password comes on stdin.
    #[arg(long)]
    jid: Option<String>,
    /// Group mode: XMPP server host:port (default: the JID's domain, port 5222).
    #[arg(long)]
    server: Option<String>,
    /// Group mode: STARTTLS required, if-offered or disabled.
    #[arg(long, default_value = "if-offered")]
    tls: String,
    /// Group mode: trust the XMPP certificate with this SHA-256 fingerprint.
    #[arg(long)]
    pin: Option<String>,
    /// Group mode: allow PLAIN without TLS (loopback only).
    #[arg(long)]
    allow_plain: bool,
    #[command(flatten)]
    params: ParamsArgs,
    #[command(flatten)]
    region: RegionArgs,
}

/// A member of `r`'s room; `pace` is (bytes per second, adaptive), `None` for the default.
/// Joins as the member `r` names; `tune` sets what the command changes.
async fn room_member(
    r: &RoomArgs,
    iface: Ipv4Addr,
    dir: &Path,
    tune: impl FnOnce(&mut MemberConfig),
) -> Result<Member> {
    let password = read_password(true)?;
    let jid = r.jid.as_deref().ok_or_else(|| anyhow!("--room needs --jid"))?;
    let mut xmpp = xmpp_config(jid, &password, &r.server, &r.tls, &r.pin, &None)?;
    xmpp.allow_plain_unencrypted = r.allow_plain;
    let room = Jid::parse(r.room.as_deref().unwrap_or_default()).map_err(|e| anyhow!("--room: {e}"))?;
    let nick = xmpp.jid.local.clone().unwrap_or_else(|| "member".into());
    let mut cfg = MemberConfig::new(xmpp, room, &nick);
    cfg.interface = iface;
    cfg.download_dir = dir.to_path_buf();
    cfg.viewer = Viewer::Never;
    let (identity, known) = super::profile::device_files(&cfg.xmpp.jid, None)?;
    (cfg.identity, cfg.known_keys) = (Some(identity), Some(known));
    tune(&mut cfg);
    r.region.apply(&mut cfg);
    cfg.params = r.params.params()?;
    let mut m = Member::start(cfg).await.context("joining the group")?;
    let joined = wait(&mut m, |e| matches!(e, MemberEvent::Joined { .. })).await?;
    if let Some(text) = show(&joined) {
        println!("{text}");
    }
    Ok(m)
}

/// `lsim send --room`: joins the group, streams the files to it (each
/// announced in the room), answers late repair requests until `linger`
/// seconds pass without one (its sender says when: `Member::until_quiet`),
/// leaves.
/// With `to`, the files are for those members only, and it waits (up to a
/// minute) for each of them to confirm each file with a signed receipt: it
/// leaves as soon as all have, and fails naming those who have not.
pub async fn send_to_room(
    files: &[PathBuf],
    to: &[String],
    r: &RoomArgs,
    iface: Ipv4Addr,
    pace: (u64, bool),
    linger: f64,
) -> Result<()> {
    let dir = std::env::temp_dir();
    let mut m = room_member(r, iface, &dir, |cfg| {
        (cfg.rate, cfg.adaptive_rate) = pace;
        cfg.linger = LingerConfig::quiet(Duration::from_secs_f64(linger));
    })
    .await?;
    let mut last = None;
    // Let the others take the rekey of our join before data under it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Signed receipts heard, by file and recipient (they may come while
    // later files are still going out).
    let mut delivered = std::collections::BTreeSet::new();
    let next = async |m: &mut Member, delivered: &mut std::collections::BTreeSet<(PathBuf, String)>| {
        let ev = tokio::time::timeout(Duration::from_secs(60), m.next_event()).await.ok().flatten();
        if let Some(MemberEvent::FileDelivered { path, to, .. }) = &ev {
            println!("delivered {} to {to}", path.display());
            delivered.insert((path.clone(), to.clone()));
        }
        ev
    };
    for f in files {
        m.send_file_to(f, to).await;
        loop {
            match next(&mut m, &mut delivered).await {
                Some(MemberEvent::FileNotSent { path, why }) => {
                    // Leave properly (a rekey for the rest) rather than vanish.
                    m.leave().await;
                    bail!("{}: {why}", path.display())
                }
                Some(MemberEvent::FileSent { object }) => {
                    last = Some(object);
                    break;
                }
                Some(_) => {}
                None => bail!("{}: timed out", f.display()),
            }
        }
        println!("sent {}", f.display());
    }
    if to.is_empty() {
        if let Some(object) = last {
            m.until_quiet(object).await;
        }
        m.leave().await;
        return Ok(());
    }
    let expected: Vec<(PathBuf, String)> =
        files.iter().flat_map(|f| to.iter().map(move |u| (f.clone(), u.clone()))).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while expected.iter().any(|e| !delivered.contains(e)) && tokio::time::Instant::now() < deadline {
        if tokio::time::timeout_at(deadline, next(&mut m, &mut delivered)).await.ok().flatten().is_none() {
            break;
        }
    }
    m.leave().await;
    let missing: Vec<String> =
        expected.iter().filter(|e| !delivered.contains(*e)).map(|(f, u)| format!("{u} ({})", f.display())).collect();
    if !missing.is_empty() {
        bail!("no receipt within a minute from: {}", missing.join(", "));
    }
    Ok(())
}

/// `lsim recv --room`: joins the group and receives its files into `dir`
/// until interrupted (or after the first, with `once`).
pub async fn receive_from_room(r: &RoomArgs, iface: Ipv4Addr, dir: &Path, once: bool, overwrite: bool) -> Result<()> {
    if overwrite {
        bail!("--overwrite is for standalone mode: group files always land under a free name");
    }
    let mut m = room_member(r, iface, dir, |_| {}).await?;
    std::fs::create_dir_all(dir).with_context(|| format!("--dir {}: cannot create it", dir.display()))?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            ev = m.next_event() => {
                let Some(ev) = ev else { break };
                if let Some(text) = show(&ev) {
                    println!("{text}");
                }
                if once && matches!(ev, MemberEvent::FileReceived { .. }) {
                    break;
                }
            }
        }
    }
    m.leave().await;
    Ok(())
}
