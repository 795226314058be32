//! `lsim server`: the group server (embedded XMPP server, key server and
//! the group's room) from its flags, run until interrupted, its addresses and
//! the group's key epochs and presence printed as they change.
//!
//! Owns the server's flags and what it prints. It must not touch the
//! protocols (`lsim_im::group::server` runs them) or the other commands.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use lsim_im::group::server::{GroupServer, GroupServerConfig};
use lsim_keymgmt::suite::SuiteId;

use super::{ArchiveArgs, check_iface, log_time};

/// `lsim server`.
#[derive(clap::Args)]
pub struct ServerArgs {
    /// Where users, keys and certificates are kept.
    #[arg(long)]
    data_dir: PathBuf,
    /// XMPP client address.
    #[arg(long, default_value = "127.0.0.1:5222")]
    xmpp_listen: SocketAddr,
    /// XMPP domain.
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// Offer STARTTLS (a certificate is generated on first start).
    #[arg(long)]
    tls: bool,
    /// Allow PLAIN logins without TLS (loopback only).
    #[arg(long)]
    allow_plain: bool,
    /// Key server (registrar, QUIC) address.
    #[arg(long, default_value = "127.0.0.1:4433")]
    keyserver_listen: SocketAddr,
    /// This host's address on the members' network, announced in the room
    /// for services listening on 0.0.0.0 (default: the --iface address).
    #[arg(long)]
    advertise: Option<Ipv4Addr>,
    /// The key server address members are told, when it differs from what
    /// it listens on (behind a port forward, say).
    #[arg(long)]
    keyserver_advertise: Option<SocketAddr>,
    /// The group's multicast address and port.
    #[arg(long, default_value = "239.192.76.1:5000")]
    group: SocketAddrV4,
    /// Multicast interface address.
    #[arg(long, default_value = "127.0.0.1")]
    iface: Ipv4Addr,
    /// Cipher suite of the group.
    #[arg(long, default_value = "aes-256-gcm")]
    suite: SuiteId,
    /// The room (and key group) name.
    #[arg(long, default_value = "lsim")]
    room: String,
    /// Seconds a member may be out of the room before it is removed.
    #[arg(long, default_value_t = 30.0)]
    grace: f64,
    #[command(flatten)]
    archive: ArchiveArgs,
}

/// Runs the group server until interrupted.
pub async fn server(a: ServerArgs) -> Result<()> {
    check_iface("--iface", a.iface)?;
    let mut cfg = GroupServerConfig::new(&a.data_dir);
    let domain = a.domain.clone();
    cfg.domain = a.domain;
    cfg.advertise = a.advertise.map(Into::into);
    cfg.keyserver_advertise = a.keyserver_advertise;
    cfg.xmpp_listen = a.xmpp_listen;
    cfg.tls = a.tls;
    cfg.allow_plain_unencrypted = a.allow_plain;
    cfg.keyserver_listen = a.keyserver_listen;
    cfg.group = a.group;
    cfg.interface = a.iface;
    cfg.suite = a.suite;
    cfg.room = a.room;
    cfg.grace = Duration::from_secs_f64(a.grace);
    cfg.archive = a.archive.limits()?;
    cfg.history = a.archive.history;
    let cfg_archive = cfg.archive;
    let mut s = GroupServer::start(cfg).await.context("starting the group server")?;
    println!("XMPP      {} (domain {domain}), room {}", s.xmpp.local_addr(), s.room);
    if let Some(fp) = s.xmpp.fingerprint() {
        println!("XMPP TLS  certificate {}", lsim_im::xmpp::tls::fingerprint_hex(&fp));
    }
    println!(
        "keys      {} certificate {}",
        s.params.keyserver,
        lsim_im::xmpp::tls::fingerprint_hex(&s.params.fingerprint)
    );
    println!("group     {} ({})", s.params.group, s.params.suite);
    match &cfg_archive {
        Some(l) => println!(
            "archive   {} (the group's objects for members who missed them: {} h, {} MiB)",
            a.data_dir.join(lsim_im::group::server::ARCHIVE_FILE).display(),
            l.max_age.as_secs_f64() / 3600.0,
            l.max_bytes >> 20
        ),
        None => println!("archive   none (--no-archive)"),
    }
    println!("users     lsim user add NAME --data-dir {} --password-stdin", a.data_dir.display());
    if a.tls {
        println!(
            "          lsim user invite NAME --data-dir {} (a one-time code to enroll with)",
            a.data_dir.display()
        );
    }
    let group = s.room.local.clone().unwrap_or_default();
    let mut epochs = tokio::time::interval(Duration::from_millis(500));
    let mut last = None;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = epochs.tick() => {
                let now = s.keys.group_state(&group).await;
                if now != last {
                    if let Some((epoch, members)) = now {
                        println!("{} the group key is at epoch {epoch}, held by {members} member{}", log_time(), if members == 1 { "" } else { "s" });
                    }
                    last = now;
                }
            }
            ev = s.next_event() => match ev {
                Some(ev) => println!("{} {ev}", log_time()),
                None => break,
            },
        }
    }
    s.stop().await;
    Ok(())
}
