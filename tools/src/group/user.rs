//! `lsim user list | add | passwd | remove | revoke | invite | log`: the
//! users of a group server. With the server running they go through its admin socket
//! and act at once (a removed or revoked user's sessions end and the group
//! is rekeyed within the second); with it stopped they change its data
//! directory, which it reads when it starts.
//!
//! Owns the commands' flags, choosing the socket or the files, and what
//! they print. It must not touch how credentials are kept
//! (`lsim_im::xmpp::users`) or what the server does (`lsim_im::group::admin`).

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use lsim_im::group::admin::journal::Journal;
use lsim_im::group::admin::request::{Reply, Request};
use lsim_im::group::admin::revoked::Revoked;
use lsim_im::group::admin::{self, SOCKET_FILE};
use lsim_im::xmpp::users::UserStore;
use zeroize::Zeroizing;

/// The server's data directory.
#[derive(clap::Args)]
pub struct DataDir {
    /// The server's data directory.
    #[arg(long)]
    data_dir: PathBuf,
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
    /// Replace an existing user's password (as `passwd`).
    #[arg(long)]
    replace: bool,
}

/// `lsim user passwd`.
#[derive(clap::Args)]
pub struct UserPasswdArgs {
    /// The user name.
    user: String,
    /// The server's data directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// Read the new password from the first line of standard input.
    #[arg(long, required = true)]
    password_stdin: bool,
}

/// `lsim user remove` and `revoke`.
#[derive(clap::Args)]
pub struct UserNameArgs {
    /// The user name.
    user: String,
    /// The server's data directory.
    #[arg(long)]
    data_dir: PathBuf,
}

/// `lsim user invite`.
#[derive(clap::Args)]
pub struct UserInviteArgs {
    /// The new user's name.
    user: String,
    /// The server's data directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// How long the code stays open: 30m, 1h, 2d or seconds (at most 30 days).
    #[arg(long, default_value = "24h")]
    expires: String,
    /// Where to write the QR code as a PNG (default: invite-NAME.png here).
    #[arg(long)]
    png: Option<PathBuf>,
}

/// What `lsim user` does.
#[derive(clap::Subcommand)]
pub enum UserAction {
    /// List the users (revoked ones marked).
    List(DataDir),
    /// Add a user (stored as salted SCRAM credentials only).
    Add(UserAddArgs),
    /// Change a user's password; its other sessions end.
    Passwd(UserPasswdArgs),
    /// Remove a user: its sessions end, it leaves the key group (the group
    /// is rekeyed) and it cannot log in.
    Remove(UserNameArgs),
    /// As remove, and the name stays refused, across restarts (a lost or
    /// stolen device).
    Revoke(UserNameArgs),
    /// A one-time code (text, QR code, PNG) with which a new member
    /// enrolls: `lsim chat --invite CODE` on its device. Needs the server
    /// running with --tls.
    Invite(UserInviteArgs),
    /// The audit log: who did what to which user, when.
    Log(DataDir),
}

fn read_password() -> Result<Zeroizing<String>> {
    let mut line = Zeroizing::new(String::new());
    std::io::stdin().lock().read_line(&mut line).context("reading the password")?;
    let password = Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_string());
    if password.is_empty() {
        bail!("empty password");
    }
    Ok(password)
}

/// Runs one `lsim user` command.
pub fn user(action: UserAction) -> Result<()> {
    let (dir, req) = match action {
        UserAction::List(d) => (d.data_dir, Request::List),
        UserAction::Log(d) => (d.data_dir, Request::Log),
        UserAction::Add(a) => {
            let password = read_password()?;
            let name = name(&a.user)?;
            let replace = a.replace && UserStore::open(&a.data_dir).is_ok_and(|s| s.lookup(&name).is_some());
            let req = if replace { Request::Passwd { name, password } } else { Request::Add { name, password } };
            (a.data_dir, req)
        }
        UserAction::Passwd(a) => {
            let password = read_password()?;
            (a.data_dir, Request::Passwd { name: name(&a.user)?, password })
        }
        UserAction::Remove(a) => (a.data_dir, Request::Remove { name: name(&a.user)? }),
        UserAction::Revoke(a) => (a.data_dir, Request::Revoke { name: name(&a.user)? }),
        UserAction::Invite(a) => {
            let name = name(&a.user)?;
            let seconds = super::invite::duration_s(&a.expires)?;
            let png = a.png.unwrap_or_else(|| PathBuf::from(format!("invite-{name}.png")));
            let lines = match std::os::unix::net::UnixStream::connect(a.data_dir.join(SOCKET_FILE)) {
                Ok(stream) => through_server(stream, &Request::Invite { name, seconds })?,
                Err(_) => bail!(
                    "--data-dir {}: the server is not running here: an invitation carries its addresses and \
                     fingerprints, start it (lsim server) first",
                    a.data_dir.display()
                ),
            };
            return super::invite::show(&lines, &png);
        }
    };
    let socket = dir.join(SOCKET_FILE);
    let lines = match std::os::unix::net::UnixStream::connect(&socket) {
        Ok(stream) => through_server(stream, &req)?,
        // No server (none started, or one that crashed): the files.
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => {
            offline(&dir, &req)?
        }
        // A running server this user may not talk to: never around it.
        Err(e) => bail!("{}: {e}: only the server's own user or root may administer it", socket.display()),
    };
    for l in lines {
        println!("{l}");
    }
    Ok(())
}

/// A user name as the server stores it, or a one-line error.
fn name(raw: &str) -> Result<String> {
    lsim_im::xmpp::users::validate_name(raw).map_err(|e| anyhow!("{e}"))
}

fn through_server(mut stream: std::os::unix::net::UnixStream, req: &Request) -> Result<Vec<String>> {
    stream.write_all(req.encode().as_bytes()).context("asking the running server")?;
    stream.shutdown(std::net::Shutdown::Write).context("asking the running server")?;
    let mut text = String::new();
    stream.take(16 << 20).read_to_string(&mut text).context("reading the server's reply")?;
    Reply::parse(&text).outcome.map_err(|why| anyhow!("{why}"))
}

/// The server is not running: change its files (it reads them when it
/// starts; a removed user still in the key group is evicted once its room
/// presence stays away for the grace time).
fn offline(dir: &Path, req: &Request) -> Result<Vec<String>> {
    if !dir.is_dir() && !matches!(req, Request::Add { .. }) {
        bail!("--data-dir {}: no such directory", dir.display());
    }
    let users = UserStore::open(dir)?;
    let revoked = Revoked::new(dir);
    let outcome: Result<Vec<String>> = match req {
        Request::List => return Ok(admin::list(&users, &revoked)),
        Request::Log => return Ok(Journal::new(dir).read()?),
        Request::Add { name, .. } if revoked.contains(name) => {
            Err(anyhow!("{name} is revoked: the name stays refused"))
        }
        Request::Add { name, password } => users
            .add(name, password, false)
            .map(|()| vec![format!("added {name} to {}", users.path().display())])
            .map_err(|e| anyhow!("{e}")),
        Request::Passwd { name, .. } if users.lookup(name).is_none() => Err(anyhow!("no user {name}")),
        Request::Passwd { name, password } => users
            .add(name, password, true)
            .map(|()| vec![format!("changed {name}'s password (the server is not running)")])
            .map_err(|e| anyhow!("{e}")),
        Request::Invite { .. } => Err(anyhow!("invitations are handed out by the running server")),
        Request::Remove { name } | Request::Revoke { name } => {
            let revoke = matches!(req, Request::Revoke { .. });
            if users.lookup(name).is_none() {
                Err(anyhow!("no user {name}"))
            } else {
                if revoke {
                    revoked.add(name)?;
                }
                users.remove(name)?;
                let did = if revoke { "revoked" } else { "removed" };
                Ok(vec![format!(
                    "{did} {name} (the server is not running: at its start {name} cannot log in, and leaves the key group after the grace time)"
                )])
            }
        }
    };
    let said = match &outcome {
        Ok(lines) => format!("ok: {}", lines.join("; ")),
        Err(e) => format!("refused: {e}"),
    };
    let who = format!("offline uid {}", own_uid().map_or("?".into(), |u| u.to_string()));
    Journal::new(dir).append(now_ms(), &who, req.verb(), req.user(), &said)?;
    outcome
}

fn own_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
