//! The group commands: `lsim server` (embedded XMPP server + key server +
//! the group's room), `lsim keyserver` (the key server alone, for a group
//! on Prosody or ejabberd), `lsim user add`, `lsim chat` (the interactive line
//! client) and `lsim demo` (everything on loopback, with the original
//! system's tables measured now).
//!
//! Owns argument handling and what is printed. The work is done by
//! `lsim_im::group` and `lsim_im::xmpp`; nothing here speaks a protocol.

use std::io::{BufRead, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use lsim_im::group::audit::{Capture, read_with};
use lsim_im::group::member::{ChatVia, Member, MemberConfig, MemberEvent, Opener, Placement, Via};
use lsim_im::group::server::{GroupServer, GroupServerConfig, KeyService, KeyServiceConfig, XmppLogin};
use lsim_im::text;
use lsim_im::xmpp::client::{ClientConfig, TlsMode};
use lsim_im::xmpp::jid::Jid;
use lsim_im::xmpp::room::Occupant;
use lsim_im::xmpp::tls::{Trust, parse_fingerprint};
use lsim_im::xmpp::users::UserStore;
use lsim_keymgmt::client::Registration;
use lsim_keymgmt::suite::SuiteId;

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
}

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
    println!("users     lsim user add NAME --data-dir {} --password-stdin", a.data_dir.display());
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
            ev = s.next_presence_event() => match ev {
                Some(ev) => println!("{} {ev}", log_time()),
                None => break,
            },
        }
    }
    s.stop().await;
    Ok(())
}

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
            ev = service.presence.events.recv() => match ev {
                Some(ev) => println!("{} {ev}", log_time()),
                None => break,
            },
        }
    }
    service.keys.close();
    Ok(())
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
        }))
    }
}

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

/// A member of `r`'s room; `pace` is (bytes per second, adaptive), `None` for the default.
async fn room_member(r: &RoomArgs, iface: Ipv4Addr, dir: &Path, pace: Option<(u64, bool)>) -> Result<Member> {
    let password = read_password(true)?;
    let jid = r.jid.as_deref().ok_or_else(|| anyhow!("--room needs --jid"))?;
    let mut xmpp = xmpp_config(jid, &password, &r.server, &r.tls, &r.pin, &None)?;
    xmpp.allow_plain_unencrypted = r.allow_plain;
    let room = Jid::parse(r.room.as_deref().unwrap_or_default()).map_err(|e| anyhow!("--room: {e}"))?;
    let nick = xmpp.jid.local.clone().unwrap_or_else(|| "member".into());
    let mut cfg = MemberConfig::new(xmpp, room, &nick);
    cfg.interface = iface;
    cfg.download_dir = dir.to_path_buf();
    cfg.opener = Opener::Never;
    if let Some((rate, adaptive)) = pace {
        (cfg.rate, cfg.adaptive_rate) = (rate, adaptive);
    }
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
/// announced in the room), answers repairs for `linger` seconds, leaves.
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
    let mut m = room_member(r, iface, &dir, Some(pace)).await?;
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
                Some(MemberEvent::FileSent { .. }) => break,
                Some(_) => {}
                None => bail!("{}: timed out", f.display()),
            }
        }
        println!("sent {}", f.display());
    }
    if to.is_empty() {
        tokio::time::sleep(Duration::from_secs_f64(linger)).await;
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
    let mut m = room_member(r, iface, dir, None).await?;
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

/// `lsim user add`.
#[derive(clap::Args)]
pub struct UserAddArgs {
    /// The user name (the JID's local part).
    user: String,
    /// The server's data directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// Read the password from the first line of standard input.
    #[arg(long, required = true)]
    password_stdin: bool,
    /// Replace an existing user's password.
    #[arg(long)]
    replace: bool,
}

/// Adds a user (kept as salted SCRAM credentials only).
pub fn user_add(a: UserAddArgs) -> Result<()> {
    let _ = a.password_stdin;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the password")?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        bail!("empty password");
    }
    let store = UserStore::open(&a.data_dir)?;
    store.add(&a.user, password, a.replace)?;
    println!("added {} to {}", a.user, store.path().display());
    Ok(())
}

/// `lsim chat`.
#[derive(clap::Args)]
pub struct ChatArgs {
    /// Your JID (user@domain).
    #[arg(long)]
    jid: String,
    /// The room (the group), e.g. lsim@conference.localhost.
    #[arg(long)]
    room: String,
    /// Your nick in the room (default: the JID's user).
    #[arg(long)]
    nick: Option<String>,
    /// XMPP server host:port (default: the JID's domain, port 5222).
    #[arg(long)]
    server: Option<String>,
    /// Read the password from the first line of standard input (otherwise LSIM_PASSWORD).
    #[arg(long)]
    password_stdin: bool,
    /// STARTTLS: required, if-offered or disabled.
    #[arg(long, default_value = "if-offered")]
    tls: String,
    /// Trust the server certificate with this SHA-256 fingerprint.
    #[arg(long)]
    pin: Option<String>,
    /// Trust the CAs in this PEM file.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Allow PLAIN without TLS (loopback only).
    #[arg(long)]
    allow_plain: bool,
    /// Where received files go.
    #[arg(long, default_value = ".")]
    download_dir: PathBuf,
    /// Command that opens a received file, in shell words (quotes work,
    /// e.g. --open-with "feh --title 'from the group'"); the file's path is
    /// appended as one more argument. No shell runs it.
    #[arg(long)]
    open_with: Option<String>,
    /// Do not open received files.
    #[arg(long)]
    no_open: bool,
    /// Send chat via multicast (default) or xmpp (sealed, through the room).
    #[arg(long, default_value = "multicast")]
    chat_via: String,
    /// Multicast interface address.
    #[arg(long, default_value = "0.0.0.0")]
    iface: Ipv4Addr,
    #[command(flatten)]
    pace: crate::pace::PaceArgs,
    /// Drop this share of received datagrams (testing only).
    #[arg(long, default_value_t = 0.0, hide = true)]
    simulated_loss: f64,
    /// Seconds a message waits for an earlier one of the same sender that
    /// is still being repaired, before it is shown without it.
    #[arg(long, default_value_t = 2.0)]
    chat_order_wait: f64,
    #[command(flatten)]
    params: ParamsArgs,
    #[command(flatten)]
    region: RegionArgs,
}

fn client_config(a: &ChatArgs, password: &str) -> Result<ClientConfig> {
    let mut cfg = xmpp_config(&a.jid, password, &a.server, &a.tls, &a.pin, &a.ca_file)?;
    cfg.allow_plain_unencrypted = a.allow_plain;
    Ok(cfg)
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

/// One line for an event, as the chat client shows it.
/// The arguments of the chat command `/send`: `FILE` for the whole group,
/// or `--to USER,USER FILE` for those members only. `None`: no file.
fn send_command(rest: &str) -> Option<(&str, Vec<String>)> {
    let rest = rest.trim();
    let Some(after) = rest.strip_prefix("--to ") else {
        return (!rest.is_empty()).then(|| (rest, Vec::new()));
    };
    let (users, path) = after.trim_start().split_once(' ')?;
    let to: Vec<String> = users.split(',').filter(|u| !u.is_empty()).map(str::to_string).collect();
    let path = path.trim();
    (!to.is_empty() && !path.is_empty()).then_some((path, to))
}

/// How a room occupant is named: its user, with its nick when it differs.
fn who_is(o: &Occupant) -> String {
    text::named(&o.user(), &o.nick)
}

/// One chat message as lines: the first after its prefix, the rest
/// indented beneath it; every line made visible (no control character
/// from the network reaches the terminal).
fn chat_lines(prefix: &str, body: &str, suffix: &str) -> String {
    let lines = text::lines(body);
    let indent = " ".repeat(prefix.chars().count().min(40));
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            out.push('\n');
            out.push_str(&indent);
        }
        out.push_str(line);
    }
    format!("{prefix}{out}{suffix}")
}

/// One line (or a few, for multi-line chat) for an event, as the chat
/// client shows it. Everything that came from the network is made visible
/// text first.
fn show(ev: &MemberEvent) -> Option<String> {
    let v = text::visible;
    Some(match ev {
        MemberEvent::Chat { from, sent_ms, text: body, via, private, placement, history, .. } => {
            let mut before = String::new();
            if let Placement::AfterMissing(n) = placement {
                let s = if *n == 1 { "" } else { "s" };
                before = format!("!! {n} earlier message{s} from {} did not arrive in time\n", v(from));
            }
            let mut marks = String::new();
            if *private {
                marks.push_str(" (private)");
            }
            if *placement == Placement::Late {
                marks.push_str(" (late)");
            }
            if *history {
                marks.push_str(" (history)");
            }
            let via = if *via == Via::Xmpp { " (via room)" } else { "" };
            before + &chat_lines(&format!("[{}] <{}>{marks} ", clock(*sent_ms), v(from)), body, via)
        }
        MemberEvent::Unreadable { from, why, .. } => {
            format!("!! a message from {} could not be read: {}", v(from), v(why))
        }
        MemberEvent::Joined { epoch, params, .. } => {
            format!("-- in the group (epoch {epoch}, {} on {})", v(&params.suite), params.group)
        }
        MemberEvent::Epoch(e) => format!("-- new group key (epoch {e})"),
        MemberEvent::PresenceIn(o) => format!("-- {} is here", who_is(o)),
        MemberEvent::PresenceOut(o) => format!("-- {} left", who_is(o)),
        MemberEvent::FileOffered { from, offer } => {
            format!("-- {} is sending {} ({} bytes)", v(from), v(&offer.name), offer.size)
        }
        MemberEvent::FileSending { path, .. } => format!("-- sending {}", path.display()),
        MemberEvent::FileSent { .. } => "-- file sent (answering repairs)".to_string(),
        MemberEvent::FileNotSent { path, why } => format!("!! could not send {}: {}", path.display(), v(why)),
        MemberEvent::FileProgress { got, len, .. } if *got == 0 || got == len => return None,
        MemberEvent::FileProgress { got, len, .. } => format!("-- receiving: {}%", got * 100 / (*len).max(1)),
        MemberEvent::FileReceived { from, name, size, path, .. } => format!(
            "-- received {} from {} ({size} bytes, signed and verified) -> {}",
            v(name),
            v(from),
            v(&path.display().to_string())
        ),
        MemberEvent::FileFailed { why, .. } => format!("!! a file did not arrive: {}", v(why)),
        MemberEvent::FileDelivered { path, to, .. } => {
            format!("-- {} has {} (signed receipt)", v(to), path.display())
        }
        MemberEvent::FileNotForUs { sender } => format!("-- a file for other members went by (node {sender:08x})"),
        MemberEvent::FileOpened { path } => format!("-- opened {}", v(&path.display().to_string())),
        MemberEvent::XmppOffline(e) => format!("!! XMPP lost ({}); chat and files go on over multicast", v(e)),
        MemberEvent::XmppOnline => "-- XMPP back".to_string(),
        MemberEvent::MulticastPresence(nicks) => {
            format!("-- heard on multicast: {}", nicks.iter().map(|n| v(n)).collect::<Vec<_>>().join(", "))
        }
        MemberEvent::RoomJoined(_) => return None,
        MemberEvent::Repairer(Some(nick)) => format!("-- {} repairs for our region", v(nick)),
        MemberEvent::Repairer(None) => "-- no repairer in our region: repairs come from the senders".to_string(),
        MemberEvent::Error(e) => format!("!! {}", v(e)),
        MemberEvent::Left { epoch } => format!("-- left the group (the others moved to epoch {epoch})"),
    })
}

/// `--open-with`'s command split into words as a POSIX shell would.
fn open_with(cmd: &str) -> Result<Vec<String>> {
    match shlex::split(cmd) {
        Some(words) if !words.is_empty() => Ok(words),
        Some(_) => bail!("--open-with is empty: give a command, or --no-open"),
        None => bail!("--open-with {cmd:?}: unbalanced quotes or a trailing backslash"),
    }
}

/// The interactive line client.
pub async fn chat(a: ChatArgs) -> Result<()> {
    check_iface("--iface", a.iface)?;
    let password = read_password(a.password_stdin)?;
    let xmpp = client_config(&a, &password)?;
    let room = Jid::parse(&a.room).map_err(|e| anyhow!("--room: {e}"))?;
    let nick = a.nick.clone().or_else(|| xmpp.jid.local.clone()).unwrap_or_else(|| "member".into());
    let mut cfg = MemberConfig::new(xmpp, room, &nick);
    cfg.download_dir = a.download_dir.clone();
    cfg.opener = match (&a.open_with, a.no_open) {
        (_, true) => Opener::Never,
        (Some(cmd), false) => Opener::Command(open_with(cmd)?),
        (None, false) => Opener::System,
    };
    cfg.chat_via = if a.chat_via == "xmpp" { ChatVia::Xmpp } else { ChatVia::Multicast };
    cfg.interface = a.iface;
    a.region.apply(&mut cfg);
    (cfg.rate, cfg.adaptive_rate) = a.pace.resolve().map_err(|e| anyhow!(e))?;
    cfg.simulated_loss = a.simulated_loss;
    if !(0.0..=3600.0).contains(&a.chat_order_wait) {
        bail!("--chat-order-wait {}: give seconds from 0 to 3600", a.chat_order_wait);
    }
    cfg.chat_order_wait = Duration::from_secs_f64(a.chat_order_wait);
    cfg.params = a.params.params()?;
    let mut member = Member::start(cfg).await.context("joining the group")?;
    // Only once in: a failed start writes nothing.
    std::fs::create_dir_all(&a.download_dir)
        .with_context(|| format!("--download-dir {}: cannot create it", a.download_dir.display()))?;
    println!(
        "commands: /send FILE, /send --to USER,USER FILE, /msg USER,USER TEXT, /who, /files, /leave, /quit; \
         anything else is chat"
    );
    let (tx, mut lines) = tokio::sync::mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let mut who = std::collections::BTreeSet::new();
    let mut files: Vec<String> = Vec::new();
    loop {
        tokio::select! {
            line = lines.recv() => {
                let Some(line) = line else { break };
                let line = line.trim();
                match line.split_once(' ').map_or((line, ""), |(c, r)| (c, r.trim())) {
                    ("/msg", rest) => match rest.split_once(' ') {
                        // Never to everyone by mistake: no recipients is a usage error.
                        Some((users, text)) if !text.trim().is_empty() && users.split(',').any(|u| !u.is_empty()) => {
                            let to: Vec<String> = users.split(',').filter(|u| !u.is_empty()).map(str::to_string).collect();
                            member.chat_to(text.trim(), &to).await;
                        }
                        _ => println!("!! usage: /msg USER,USER TEXT"),
                    },
                    ("/send", rest) => match send_command(rest) {
                        Some((path, to)) => member.send_file_to(Path::new(path), &to).await,
                        None => println!("!! usage: /send FILE or /send --to USER,USER FILE"),
                    },
                    ("/who", _) => println!("-- here: {}", who.iter().cloned().collect::<Vec<String>>().join(", ")),
                    ("/files", _) => println!("-- files: {}", if files.is_empty() { "none yet".into() } else { files.join(", ") }),
                    ("/leave", _) | ("/quit", _) => break,
                    ("", _) => {}
                    (c, _) if c.starts_with('/') => println!("!! unknown command {c}"),
                    _ => member.chat(line).await,
                }
            }
            ev = member.next_event() => {
                let Some(ev) = ev else { break };
                match &ev {
                    MemberEvent::RoomJoined(present) => who = present.iter().map(who_is).collect(),
                    MemberEvent::PresenceIn(o) => { who.insert(who_is(o)); }
                    MemberEvent::PresenceOut(o) => { who.remove(&who_is(o)); }
                    MemberEvent::MulticastPresence(nicks) => who = nicks.iter().map(|n| text::visible(n)).collect(),
                    MemberEvent::FileReceived { path, .. } => files.push(path.display().to_string()),
                    _ => {}
                }
                if let Some(text) = show(&ev) {
                    println!("{text}");
                }
            }
        }
    }
    for ev in member.leave().await.events {
        if let Some(text) = show(&ev) {
            println!("{text}");
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ demo

/// `lsim demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Simulated loss at every receiver.
    #[arg(long, default_value_t = 0.10)]
    loss: f64,
    /// The ceiling of the members' adaptive rate in Mbit/s (11: the
    /// original system's 802.11b link, which loopback does not have).
    #[arg(long, default_value_t = 11.0)]
    rate: f64,
    /// Runs for the registration/join/leave timings.
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

struct Demo {
    server: GroupServer,
    passwords: Vec<(String, String)>,
    dir: PathBuf,
    loss: f64,
    rate: u64,
}

impl Demo {
    fn xmpp(&self, user: &str) -> Result<ClientConfig> {
        let pw = &self.passwords.iter().find(|(u, _)| u == user).ok_or_else(|| anyhow!("no user {user}"))?.1;
        let mut c = ClientConfig::new(Jid::bare_of(user, "localhost"), pw);
        c.server = Some(self.server.xmpp.local_addr().to_string());
        c.tls = TlsMode::Disabled;
        c.allow_plain_unencrypted = true;
        Ok(c)
    }

    async fn member(&self, user: &str) -> Result<(Member, u32)> {
        let mut cfg = MemberConfig::new(self.xmpp(user)?, self.server.room.clone(), user);
        cfg.download_dir = self.dir.join("downloads").join(user);
        std::fs::create_dir_all(&cfg.download_dir)?;
        // A harmless viewer: says what it would show.
        cfg.opener = Opener::Command(vec![
            "sh".into(),
            "-c".into(),
            format!("echo \"    [{user}'s viewer] showing $(basename \"$0\") ($(wc -c < \"$0\") bytes)\""),
        ]);
        cfg.simulated_loss = self.loss;
        cfg.rate = self.rate;
        let mut m = Member::start(cfg).await.with_context(|| format!("{user} joining"))?;
        match wait(&mut m, |e| matches!(e, MemberEvent::Joined { .. })).await? {
            MemberEvent::Joined { session, .. } => Ok((m, session)),
            _ => bail!("{user} did not join"),
        }
    }
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

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Runs the demo: server, members, chat, a file to everyone, a leave and
/// a join with their secrecy shown on captured packets, and the tables.
pub async fn demo(a: DemoArgs) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("lsim-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let users = UserStore::open(&dir)?;
    let mut passwords = Vec::new();
    for user in ["alice", "bob", "carol", "dave", "erin", "timer"] {
        let mut raw = [0u8; 12];
        lsim_keymgmt::key::random_bytes(&mut raw).map_err(|e| anyhow!("{e}"))?;
        let pw: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        users.add(user, &pw, true)?;
        passwords.push((user.to_string(), pw));
    }
    let pid = std::process::id();
    let group = SocketAddrV4::new(Ipv4Addr::new(239, 192, 77, (pid % 250) as u8 + 1), 20_000 + (pid % 20_000) as u16);
    let mut cfg = GroupServerConfig::new(&dir);
    cfg.xmpp_listen = "127.0.0.1:0".parse()?;
    cfg.keyserver_listen = "127.0.0.1:0".parse()?;
    cfg.allow_plain_unencrypted = true;
    cfg.group = group;
    let server = GroupServer::start(cfg).await?;
    println!("lsim demo: XMPP server, key server and room {} on loopback; group {group}", server.room);
    println!(
        "           every receiver drops {:.0} % of datagrams; senders adapt their rate, up to {} Mbit/s\n",
        a.loss * 100.0,
        a.rate
    );
    let demo = Demo { server, passwords, dir: dir.clone(), loss: a.loss, rate: (a.rate * 125_000.0) as u64 };
    let capture = Capture::loopback(group)?;

    // Table 4.1: registration, join and leave with the key server.
    let (ks, fp) = (demo.server.params.keyserver, demo.server.params.fingerprint);
    let timer_pw = demo.passwords.iter().find(|(u, _)| u == "timer").map(|(_, p)| p.clone()).unwrap_or_default();
    let (mut reg, mut join, mut leave) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..a.runs.max(1) {
        let t = Instant::now();
        let r = Registration::login(ks, fp, "timer", &timer_pw).await?;
        reg.push(t.elapsed());
        let t = Instant::now();
        r.join("lsim").await?;
        join.push(t.elapsed());
        let t = Instant::now();
        r.leave("lsim").await?;
        leave.push(t.elapsed());
    }

    println!("1. alice, bob and carol log into XMPP, register with the key server and join");
    let mut members = Vec::new();
    let mut session = 0;
    for user in ["alice", "bob", "carol"] {
        let (m, s) = demo.member(user).await?;
        session = s;
        members.push((user, m));
    }
    let (epoch, _) = demo.server.keys.group_state("lsim").await.ok_or_else(|| anyhow!("no group"))?;
    for (_, m) in members.iter_mut().take(2) {
        wait(m, |e| matches!(e, MemberEvent::Epoch(n) if *n == epoch)).await?;
    }
    println!("   all three hold the group key of epoch {epoch}\n");

    println!("2. chat, encrypted, on multicast");
    members[0].1.chat("Fire crossed the ridge road. Crew 2 pull back to the river.").await;
    for (user, m) in members.iter_mut().skip(1) {
        if let MemberEvent::Chat { from, text, .. } = wait(m, |e| matches!(e, MemberEvent::Chat { .. })).await? {
            println!("   {user} sees <{from}> {text}");
        }
    }

    println!("\n3. a map to everyone, opened on arrival");
    let map = dir.join("ridge-map.png");
    std::fs::write(&map, pattern(195 * 1024))?;
    members[0].1.send_file(&map).await;
    for (user, m) in members.iter_mut().skip(1) {
        if let MemberEvent::FileReceived { size, .. } =
            wait(m, |e| matches!(e, MemberEvent::FileReceived { .. })).await?
        {
            println!("   {user} received ridge-map.png ({size} bytes, SHA-256 verified)");
        }
        wait(m, |e| matches!(e, MemberEvent::FileOpened { .. })).await?;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    println!("\n4. a casualty list and a message for bob only: the key server wraps their keys for him alone");
    let list = dir.join("casualties.txt");
    std::fs::write(&list, "crew 2: two smoke inhalation, evacuated to the river landing\n")?;
    members[0].1.send_file_to(&list, &["bob".to_string()]).await;
    let arrived = |e: &MemberEvent| {
        matches!(
            e,
            MemberEvent::FileReceived { .. } | MemberEvent::FileNotForUs { .. } | MemberEvent::FileFailed { .. }
        )
    };
    for (user, m) in members.iter_mut().skip(1) {
        match wait(m, arrived).await? {
            MemberEvent::FileReceived { name, from, .. } => {
                println!("   {user} received {name} from {from}, decrypted and verified")
            }
            MemberEvent::FileNotForUs { .. } => {
                println!("   {user}: a file for other members went by (no name, nothing written)")
            }
            other => bail!("{user}: {other:?}"),
        }
    }
    wait(&mut members[1].1, |e| matches!(e, MemberEvent::FileOpened { .. })).await?;
    if let MemberEvent::FileDelivered { to, .. } =
        wait(&mut members[0].1, |e| matches!(e, MemberEvent::FileDelivered { .. })).await?
    {
        println!("   alice has {to}'s signed receipt for it, over multicast");
    }
    members[0].1.chat_to("Read it out at the river landing, not on the open channel.", &["bob".to_string()]).await;
    members[0].1.chat("All crews: regroup at the river.").await;
    let chat = |e: &MemberEvent| matches!(e, MemberEvent::Chat { .. });
    for (user, m) in members.iter_mut().skip(1) {
        if let MemberEvent::Chat { text, private, .. } = wait(m, chat).await? {
            println!("   {user}'s next message{}: {text}", if private { " (private, for bob only)" } else { "" });
        }
    }
    if std::fs::read_dir(demo.dir.join("downloads").join("carol"))?.flatten().any(|e| e.file_name() == "casualties.txt")
    {
        bail!("carol holds the casualty list");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    println!("\n5. dave joins, then leaves; what is said after cannot be read with any key he had");
    let (dave, _) = demo.member("dave").await?;
    let (dave_epoch, _) = demo.server.keys.group_state("lsim").await.ok_or_else(|| anyhow!("no group"))?;
    for (_, m) in members.iter_mut() {
        wait(m, |e| matches!(e, MemberEvent::Epoch(n) if *n >= dave_epoch)).await?;
    }
    dave.chat("dave here, on the east flank").await;
    wait(&mut members[0].1, |e| matches!(e, MemberEvent::Chat { from, .. } if from == "dave")).await?;
    let departure = dave.leave().await;
    let left =
        departure.events.iter().find_map(|e| if let MemberEvent::Left { epoch } = e { Some(*epoch) } else { None });
    let left = left.ok_or_else(|| anyhow!("dave did not leave"))?;
    for (_, m) in members.iter_mut() {
        wait(m, |e| matches!(e, MemberEvent::Epoch(n) if *n >= left)).await?;
    }
    let mark = capture.mark();
    members[1].1.chat("Dave's radio is gone; do not tell it where we are.").await;
    wait(&mut members[0].1, |e| matches!(e, MemberEvent::Chat { from, .. } if from == "bob")).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = capture.since(mark);
    let dave_reads = read_with(session, SuiteId::Aes256Gcm, &departure.keys_held, &after);
    let current = demo.server.keys.group_key("lsim").await.ok_or_else(|| anyhow!("no group key"))?;
    let control = read_with(session, SuiteId::Aes256Gcm, &[(left, current)], &after);
    println!(
        "   {} datagrams captured after dave left. The current group key reads bob's message: {}.",
        after.len(),
        yes(control.contains(b"Dave's radio")),
    );
    println!(
        "   Every key dave ever held ({}) reads it: {} ({} datagrams are under epochs he never had; {} are not, \
         such as the rekey that shut him out, sealed under the epoch the others still held)",
        departure.keys_held.len(),
        yes(dave_reads.contains(b"Dave's radio")),
        dave_reads.unopenable,
        after.len() as u64 - dave_reads.unopenable,
    );
    if dave_reads.contains(b"Dave's radio") || !control.contains(b"Dave's radio") {
        bail!("secrecy check failed");
    }

    println!("\n6. erin joins; nothing captured before her join opens with her keys");
    let before = capture.before(capture.mark());
    let (erin, _) = demo.member("erin").await?;
    let erin_keys = erin.leave().await.keys_held;
    let erin_reads = read_with(session, SuiteId::Aes256Gcm, &erin_keys, &before);
    let secret = erin_reads.contains(b"Fire crossed") || erin_reads.contains(b"Dave's radio");
    println!(
        "   {} datagrams from before her join; erin's keys open {} of them and read the earlier chat: {}",
        before.len(),
        before.len() as u64 - erin_reads.unopenable,
        yes(secret)
    );
    if secret {
        bail!("secrecy check failed");
    }

    // Table 4.2: file transfer times, alice to bob and carol.
    let mut times = Vec::new();
    for (kb, original_ms) in [(8.5, 35_302.47), (25.0, 105_986.05), (60.0, 305_934.53), (195.0, 1_007_949.38)] {
        let path = dir.join(format!("file-{kb}k.bin"));
        std::fs::write(&path, pattern((kb * 1024.0) as usize))?;
        let t = Instant::now();
        members[0].1.send_file(&path).await;
        for (_, m) in members.iter_mut().skip(1) {
            wait(m, |e| matches!(e, MemberEvent::FileReceived { .. })).await?;
        }
        times.push((kb, original_ms, t.elapsed()));
    }

    println!("\nTable 4.1  registration, join and leave ({} runs, median)", a.runs.max(1));
    println!("           {:<14} {:>12} {:>14}", "", "lsim now", "original LSIM");
    for (what, v, orig) in [("registration", reg, 260.57), ("group join", join, 427.60), ("group leave", leave, 366.38)]
    {
        println!("           {what:<14} {:>9.1} ms {:>11.0} ms", median(v).as_secs_f64() * 1e3, orig);
    }
    println!(
        "\nTable 4.2  file transfer to the group ({:.0} % loss at each receiver, {} Mbit/s)",
        a.loss * 100.0,
        a.rate
    );
    println!("           {:<10} {:>12} {:>14} {:>9}", "file size", "lsim now", "original LSIM", "speed-up");
    for (kb, orig, t) in times {
        let ms = t.as_secs_f64() * 1e3;
        println!(
            "           {:<10} {:>9.1} ms {:>11.0} ms {:>8.0}x",
            format!("{kb} KB"),
            ms,
            orig,
            orig / ms.max(0.001)
        );
    }
    for (_, m) in members {
        m.leave().await;
    }
    demo.server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    std::io::stdout().flush()?;
    Ok(())
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Incompressible-looking bytes of a given length.
fn pattern(len: usize) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

#[cfg(test)]
mod tests {
    use super::send_command;

    #[test]
    fn open_with_takes_shell_words() {
        assert_eq!(super::open_with("feh --title 'from the group'").unwrap(), ["feh", "--title", "from the group"]);
        assert_eq!(super::open_with(r#"sh -c "echo \"$0\"""#).unwrap(), ["sh", "-c", r#"echo "$0""#]);
        assert!(super::open_with("feh 'unbalanced").unwrap_err().to_string().contains("unbalanced"));
        assert!(super::open_with("  ").is_err());
    }

    #[test]
    fn hostile_text_never_reaches_the_terminal_raw() {
        use lsim_im::group::member::{MemberEvent, Placement, Via};
        let hostile = "\x1b[2J\x1b]0;pwned\x07\rX\x1b[K<alice> trust me\u{9b}1m\u{202e}\x00\x7f";
        let chat = MemberEvent::Chat {
            id: "1".into(),
            from: format!("bob{hostile}"),
            sent_ms: 0,
            text: format!("line one{hostile}\nline two"),
            via: Via::Multicast,
            private: false,
            placement: Placement::AfterMissing(2),
            history: false,
        };
        let occupant = lsim_im::xmpp::room::Occupant {
            nick: format!("commander{hostile}"),
            jid: Some("bob@fire.example/x".into()),
            role: None,
            payload: None,
        };
        let events = [
            chat,
            MemberEvent::PresenceIn(occupant.clone()),
            MemberEvent::Unreadable { from: hostile.into(), via: Via::Xmpp, why: hostile.into() },
            MemberEvent::FileReceived {
                sender: 1,
                from: hostile.into(),
                name: format!("map{hostile}.png"),
                size: 1,
                path: format!("/tmp/map{hostile}").into(),
            },
            MemberEvent::XmppOffline(hostile.into()),
            MemberEvent::MulticastPresence(vec![hostile.into()]),
        ];
        for ev in &events {
            let shown = super::show(ev).unwrap();
            assert!(!shown.chars().any(|c| c.is_control() && c != '\n'), "{shown:?}");
        }
        // Multi-line chat: continuation lines are indented under the text, and the
        // nick is shown beside the certified user.
        let shown = super::show(&events[0]).unwrap();
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), 3, "{shown}");
        assert!(lines[0].starts_with("!! 2 earlier messages from bob"), "{shown}");
        assert!(lines[2].starts_with("  ") && lines[2].trim_start() == "line two", "{shown}");
        assert!(super::show(&events[1]).unwrap().starts_with("-- bob (commander\\x1b[2J"));
    }

    #[test]
    fn the_send_command_takes_a_file_and_optional_recipients() {
        assert_eq!(send_command("map.pdf"), Some(("map.pdf", vec![])));
        assert_eq!(send_command("  my map.pdf "), Some(("my map.pdf", vec![])));
        let to = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(send_command("--to bob,carol my map.pdf"), Some(("my map.pdf", to(&["bob", "carol"]))));
        assert_eq!(send_command("--to bob,,carol, x"), Some(("x", to(&["bob", "carol"]))));
        assert_eq!(send_command(""), None);
        assert_eq!(send_command("--to bob"), None, "recipients without a file");
        assert_eq!(send_command("--to , x"), None, "a file without recipients");
    }
}
