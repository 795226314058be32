//! `lsim chat`: the interactive line client. A member joins the group, and
//! the lines typed become chat, files sent (`/send`) or private messages
//! (`/msg`); what the group does is printed as it happens.
//!
//! Owns the chat flags, the line commands and how received files are opened
//! (`--open-with`). It must not touch how an event is shown (`view`) or the
//! protocols (`lsim_im::group::member` runs them).

use std::io::BufRead;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use lsim_im::group::member::{Member, MemberConfig, MemberEvent, Via, Viewer};
use lsim_im::group::position::Position;
use lsim_im::tak::bridge::{Bridge, BridgeConfig, Format, ToGroup};
use lsim_im::text;
use lsim_im::xmpp::client::ClientConfig;
use lsim_im::xmpp::jid::Jid;
use lsim_web::{Web, WebConfig};
use tokio::sync::mpsc;

use lsim_im::xmpp::tls::parse_fingerprint;
use zeroize::Zeroizing;

use super::profile::Profile;
use super::view::{positions_lines, show, who_is};
use super::{ParamsArgs, RegionArgs, check_iface, read_password, xmpp_config};

/// `lsim chat`.
#[derive(clap::Args)]
pub struct ChatArgs {
    /// Your JID (user@domain). Without it: the saved profile (--profile).
    #[arg(long, requires = "room", conflicts_with = "invite")]
    jid: Option<String>,
    /// The room (the group), e.g. lsim@conference.localhost.
    #[arg(long, requires = "jid")]
    room: Option<String>,
    /// Enroll with an invitation code (`lsim user invite` on the server):
    /// this device chooses its password, registers it with the code, saves
    /// the account as its profile and joins. The code works once.
    #[arg(long, value_name = "CODE")]
    invite: Option<String>,
    /// The saved account (written by --invite, read when --jid is not
    /// given; default $XDG_CONFIG_HOME/lsim/profile.toml).
    #[arg(long, value_name = "PATH")]
    profile: Option<PathBuf>,
    /// Your nick in the room (default: the JID's user).
    #[arg(long)]
    nick: Option<String>,
    /// XMPP server host:port (default: the JID's domain, port 5222).
    #[arg(long)]
    server: Option<String>,
    /// Read the password from the first line of standard input (otherwise
    /// LSIM_PASSWORD, or the profile's; with --invite: the password to choose).
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
    /// Do not open received files (with --web: do not open the page in a
    /// browser; received files are shown in the page).
    #[arg(long)]
    no_open: bool,
    /// Serve this client as a web page instead of the terminal: on
    /// 127.0.0.1 and any free port, or on ADDR. The URL it prints carries
    /// the page's access token.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:0")]
    web: Option<SocketAddr>,
    /// Let --web listen on an address other hosts can reach (anyone there
    /// who has the URL can use this member).
    #[arg(long, requires = "web")]
    web_remote: bool,
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
    /// Share this member's position with the group: LAT,LON in decimal
    /// degrees (a command post, a staging area: when joined and every
    /// minute), or `gpsd` (the GPS receiver gpsd reads, at 127.0.0.1:2947;
    /// `gpsd:HOST:PORT` elsewhere: when it moved 25 m, at most every 5 s,
    /// and every minute). `/pos` in the chat shares a new fixed one instead.
    #[arg(long, value_parser = super::gps::parse_source)]
    position: Option<super::gps::PositionSource>,
    /// Bridge the group to a TAK network (ATAK, WinTAK, iTAK) on the
    /// interface with this address: the group's chat and positions go out
    /// in the clear there, TAK's GeoChat and positions come in signed by
    /// this member (see the README's "TAK" section).
    #[arg(long)]
    tak: Option<Ipv4Addr>,
    /// What the bridge sends to TAK: xml (CoT XML, every TAK client reads
    /// it) or v1 (TAK Protocol version 1).
    #[arg(long, default_value = "xml", value_parser = ["xml", "v1"])]
    tak_format: String,
    #[command(flatten)]
    params: ParamsArgs,
    #[command(flatten)]
    region: RegionArgs,
}

/// Who this member is and where it joins: the flags, or the profile
/// (enrolling first with --invite).
struct Account {
    xmpp: ClientConfig,
    room: Jid,
    keyserver_pin: Option<[u8; 32]>,
}

async fn account(a: &ChatArgs) -> Result<Account> {
    if let (Some(jid), Some(room)) = (&a.jid, &a.room) {
        let password = read_password(a.password_stdin)?;
        let mut xmpp = xmpp_config(jid, &password, &a.server, &a.tls, &a.pin, &a.ca_file)?;
        xmpp.allow_plain_unencrypted = a.allow_plain;
        let room = Jid::parse(room).map_err(|e| anyhow!("--room: {e}"))?;
        return Ok(Account { xmpp, room, keyserver_pin: None });
    }
    let path = match &a.profile {
        Some(p) => p.clone(),
        None => super::profile::default_path()?,
    };
    let profile = match &a.invite {
        Some(code) => {
            let chosen = if a.password_stdin { Some(Zeroizing::new(read_password(true)?)) } else { None };
            super::invite::enroll(code, chosen, &path).await?
        }
        None => Profile::load(&path)?,
    };
    let server = Some(a.server.clone().unwrap_or_else(|| profile.server.clone()));
    let pin = Some(a.pin.clone().unwrap_or_else(|| profile.pin.clone()));
    let mut xmpp = xmpp_config(&profile.jid, &profile.password, &server, "required", &pin, &None)?;
    xmpp.allow_plain_unencrypted = false;
    let room = Jid::parse(&profile.room).map_err(|e| anyhow!("{}: room: {e}", path.display()))?;
    let keyserver_pin = parse_fingerprint(&profile.keyserver_pin)
        .ok_or_else(|| anyhow!("{}: keyserver_pin: 64 hex digits", path.display()))?;
    Ok(Account { xmpp, room, keyserver_pin: Some(keyserver_pin) })
}

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
    run(a, false).await
}

/// `lsim tak-bridge`: the same member with its bridge, reading no terminal
/// input (a service's standard input is closed), until SIGINT or SIGTERM.
pub async fn tak_bridge(a: ChatArgs) -> Result<()> {
    if a.tak.is_none() {
        bail!("tak-bridge needs --tak ADDR: this host's address on the TAK network");
    }
    if a.web.is_some() {
        bail!("tak-bridge has no web client: use lsim chat --web --tak");
    }
    run(a, true).await
}

async fn run(a: ChatArgs, headless: bool) -> Result<()> {
    check_iface("--iface", a.iface)?;
    let Account { xmpp, room, keyserver_pin } = account(&a).await?;
    let nick = a.nick.clone().or_else(|| xmpp.jid.local.clone()).unwrap_or_else(|| "member".into());
    // What the bridge needs: the name our chat is signed with, and the group's.
    let user_name = xmpp.jid.local.clone().unwrap_or_default();
    let room_name = room.local.clone().unwrap_or_else(|| "lsim".into());
    // The page's port first: a taken one fails before anyone sees us join.
    let web = match a.web {
        Some(listen) => {
            let uploads = std::env::temp_dir().join(format!("lsim-web-{}", std::process::id()));
            Some(Web::bind(WebConfig { listen, allow_remote: a.web_remote, uploads }).await?)
        }
        None => None,
    };
    let mut cfg = MemberConfig::new(xmpp, room, &nick);
    cfg.download_dir = a.download_dir.clone();
    cfg.keyserver_pin = keyserver_pin;
    let (identity, known) = super::profile::device_files(&cfg.xmpp.jid, a.profile.as_deref())?;
    // What this device received in this room, for a restart after a crash.
    let room_file: String = cfg
        .room
        .bare()
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "@.-_".contains(c) { c } else { '_' })
        .collect();
    cfg.progress = identity.parent().map(|d| d.join(format!("progress-{room_file}")));
    (cfg.identity, cfg.known_keys) = (Some(identity), Some(known));
    cfg.viewer = match (&a.open_with, a.no_open) {
        (_, true) => Viewer::Never,
        (Some(cmd), false) => Viewer::Command(open_with(cmd)?),
        (None, false) => Viewer::System,
    };
    if web.is_some() {
        // Shown in the page instead.
        cfg.viewer = Viewer::Never;
    }
    cfg.chat_via = if a.chat_via == "xmpp" { Via::Xmpp } else { Via::Multicast };
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
    let mut own = a.position.clone().map(super::gps::start);
    if let Some(web) = web {
        return serve_web(member, web, &nick, !a.no_open, own).await;
    }
    if !headless {
        println!(
            "commands: /send FILE, /send --to USER,USER FILE, /msg USER,USER TEXT, /pos LAT,LON, /who, /files, \
             /leave, /quit; anything else is chat"
        );
    }
    let mut positions = std::collections::BTreeMap::new();
    let mut tak = match a.tak {
        Some(iface) => {
            let net = super::tak::TakNet::open(iface).context("--tak")?;
            let mut cfg = BridgeConfig::new(&room_name, &user_name);
            cfg.format = if a.tak_format == "v1" { Format::V1 } else { Format::Xml };
            println!(
                "-- bridging to TAK on {iface} (chatroom {room_name}, {}): what crosses is in the clear there",
                a.tak_format
            );
            Some((net, Bridge::new(cfg)))
        }
        None => None,
    };
    let (tx, mut lines) = tokio::sync::mpsc::channel::<String>(16);
    // A service ends on a signal, not at the end of its input.
    let mut stop = Box::pin(stopped(headless));
    // Headless, nothing is read: the sender is kept, unused, so the loop waits for a signal.
    let _no_input = if headless {
        Some(tx)
    } else {
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.blocking_send(line).is_err() {
                    break;
                }
            }
        });
        None
    };
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
                    ("/pos", rest) => match Position::typed(rest) {
                        // From now on this fixed one, instead of --position's source.
                        Ok(p) => own = Some(super::gps::start(super::gps::PositionSource::Fixed(p))),
                        Err(e) => println!("!! {e}; usage: /pos LAT,LON (decimal degrees)"),
                    },
                    ("/who", _) => {
                        println!("-- here: {}", who.iter().cloned().collect::<Vec<String>>().join(", "));
                        for line in positions_lines(&positions) {
                            println!("{line}");
                        }
                    }
                    ("/files", _) => println!("-- files: {}", if files.is_empty() { "none yet".into() } else { files.join(", ") }),
                    ("/leave", _) | ("/quit", _) => break,
                    ("", _) => {}
                    (c, _) if c.starts_with('/') => println!("!! unknown command {c}"),
                    _ => member.chat(line).await,
                }
            }
            () = &mut stop => break,
            Some(datagram) = tak_datagram(&mut tak) => {
                if let Some((_, bridge)) = tak.as_mut() {
                    match bridge.from_tak(lsim_keymgmt::cert::now_ms(), &datagram) {
                        Some(ToGroup::Chat(text)) => member.chat(&text).await,
                        Some(ToGroup::Position(p)) => member.share_position(&p).await,
                        None => {}
                    }
                }
            }
            p = own_position(&mut own) => match p {
                Some(p) => member.share_position(&p).await,
                None => own = None,
            },
            ev = member.next_event() => {
                let Some(ev) = ev else { break };
                match &ev {
                    MemberEvent::Position { from, position, .. } => {
                        let who = position.subject.clone().unwrap_or_else(|| from.clone());
                        positions.insert(who, (position.clone(), from.clone(), std::time::Instant::now()));
                    }
                    MemberEvent::RoomJoined(present) => who = present.iter().map(who_is).collect(),
                    MemberEvent::PresenceIn(o) => { who.insert(who_is(o)); }
                    MemberEvent::PresenceOut(o) => { who.remove(&who_is(o)); }
                    MemberEvent::MulticastPresence(nicks) => who = nicks.iter().map(|n| text::visible(n)).collect(),
                    MemberEvent::FileReceived { path, .. } => files.push(path.display().to_string()),
                    _ => {}
                }
                if let Some((net, bridge)) = tak.as_mut()
                    && let Some(out) = bridge.from_group(lsim_keymgmt::cert::now_ms(), &ev)
                    && let Err(e) = net.send(&out).await
                {
                    println!("!! TAK: {e}");
                }
                if let Some(text) = show(&ev) {
                    println!("{text}");
                }
            }
        }
    }
    if let Some((_, bridge)) = &tak {
        let s = bridge.stats();
        println!(
            "-- TAK bridge: {} in, {} out; dropped {} malformed, {} looped, {} over the rate, {} not for the group",
            s.from_tak, s.to_tak, s.malformed, s.looped, s.rate_limited, s.ignored
        );
    }
    for ev in member.leave().await.events {
        if let Some(text) = show(&ev) {
            println!("{text}");
        }
    }
    Ok(())
}

/// `--web`: the member's page, until it leaves (from the page, or Ctrl-C);
/// its events are logged here as in the terminal client.
async fn serve_web(
    member: Member,
    web: Web,
    nick: &str,
    open: bool,
    own: Option<mpsc::Receiver<Position>>,
) -> Result<()> {
    println!("web client: {}", web.url());
    if let Some(addr) = web.local_addr().filter(|a| !a.ip().is_loopback()) {
        eprintln!("warning: the web client listens on {addr}: anyone who reaches it with the URL can use this member");
    }
    if open {
        let launched = std::process::Command::new("xdg-open")
            .arg(web.url())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        if let Err(e) = launched {
            println!("-- no browser opened ({e}): open the URL above");
        }
    }
    let stop = Box::pin(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    // Our own positions (--position); without any, a channel that never yields.
    let (_none, nothing) = mpsc::channel(1);
    web.run(member, nick, stop, own.unwrap_or(nothing), |ev| {
        if let Some(text) = show(ev) {
            println!("{text}");
        }
    })
    .await?;
    Ok(())
}

/// The next datagram from the TAK network; never, without a bridge.
async fn tak_datagram(tak: &mut Option<(super::tak::TakNet, Bridge)>) -> Option<Vec<u8>> {
    match tak {
        Some((net, _)) => net.incoming.recv().await,
        None => std::future::pending().await,
    }
}

/// SIGINT or SIGTERM, for a service (`headless`); never otherwise (the
/// terminal client ends with /quit, or with its input).
async fn stopped(headless: bool) {
    if !headless {
        return std::future::pending().await;
    }
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The next word from our own position's source; never, without one.
async fn own_position(own: &mut Option<mpsc::Receiver<Position>>) -> Option<Position> {
    match own {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
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
