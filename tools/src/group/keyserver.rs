//! `lsim keyserver`: the key server alone, for a group whose room is on
//! another XMPP server (Prosody, ejabberd); member passwords are checked by
//! logging into that server with them.
//!
//! Owns the key server's flags and what it prints. It must not touch the
//! protocols (`lsim_im::group::server` runs them) or the other commands.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use lsim_im::group::server::{KeyService, KeyServiceConfig, XmppLogin};
use lsim_im::xmpp::jid::Jid;
use lsim_keymgmt::suite::SuiteId;

use super::{ArchiveArgs, check_iface, log_time, read_password, xmpp_config};

/// `lsim keyserver`: the key server for a group on an external XMPP server.
#[derive(clap::Args)]
pub struct KeyserverArgs {
    /// Where the key store is kept.
    #[arg(long)]
    data_dir: PathBuf,
    /// The key server's own XMPP account (e.g. keyserver@example.org); its password on stdin.
    #[arg(long)]
    jid: String,
    /// The room that is the group, e.g. lsim@conference.example.org.
    #[arg(long)]
    room: String,
    /// XMPP server host:port (default: the JID's domain, port 5222).
    #[arg(long)]
    server: Option<String>,
    /// STARTTLS: required, if-offered or disabled.
    #[arg(long, default_value = "required")]
    tls: String,
    /// Trust the XMPP server certificate with this SHA-256 fingerprint.
    #[arg(long)]
    pin: Option<String>,
    /// Trust the CAs in this PEM file.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Registrar (QUIC) address.
    #[arg(long, default_value = "0.0.0.0:4433")]
    listen: SocketAddr,
    /// The registrar address members are told (default: the listen address).
    #[arg(long)]
    advertise: Option<SocketAddr>,
    /// The group's multicast address and port.
    #[arg(long, default_value = "239.192.76.1:5000")]
    group: SocketAddrV4,
    /// Multicast interface address.
    #[arg(long, default_value = "0.0.0.0")]
    iface: Ipv4Addr,
    /// Cipher suite of the group.
    #[arg(long, default_value = "aes-256-gcm")]
    suite: SuiteId,
    /// Seconds a member may be out of the room before it is removed.
    #[arg(long, default_value_t = 30.0)]
    grace: f64,
    #[command(flatten)]
    archive: ArchiveArgs,
}

/// Runs the key service until interrupted. Member passwords are checked
/// by logging into the XMPP server with them.
pub async fn keyserver(a: KeyserverArgs) -> Result<()> {
    check_iface("--iface", a.iface)?;
    let password = read_password(true)?;
    let xmpp = xmpp_config(&a.jid, &password, &a.server, &a.tls, &a.pin, &a.ca_file)?;
    let cfg = KeyServiceConfig {
        data_dir: a.data_dir,
        listen: a.listen,
        advertise: a.advertise,
        host: None,
        group: a.group,
        interface: a.iface,
        ttl: 1,
        suite: a.suite,
        xmpp: xmpp.clone(),
        room: Jid::parse(&a.room).map_err(|e| anyhow!("--room: {e}"))?,
        grace: Duration::from_secs_f64(a.grace),
        guard: None,
        archive: a.archive.limits()?,
        history: a.archive.history,
    };
    let mut service =
        KeyService::start(cfg, Arc::new(XmppLogin::new(xmpp))).await.context("starting the key service")?;
    println!(
        "keys      {} certificate {}",
        service.params.keyserver,
        lsim_im::xmpp::tls::fingerprint_hex(&service.params.fingerprint)
    );
    println!("group     {} ({}), announced in {}", service.params.group, service.params.suite, a.room);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            Some(ev) = lsim_im::group::archive::next_event(&mut service.archive) => println!("{} {ev}", log_time()),
            ev = service.presence.events.recv() => match ev {
                Some(ev) => println!("{} {ev}", log_time()),
                None => break,
            },
        }
    }
    service.keys.close();
    Ok(())
}
