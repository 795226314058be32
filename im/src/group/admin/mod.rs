//! User administration of a running group server: `lsim user list | add |
//! remove | passwd | revoke | invite | log` reach it through a Unix socket in its
//! data directory (`admin.sock`, this user only), and act at once: a
//! removed or revoked user's XMPP sessions end, it is evicted from the key
//! group (the group is rekeyed) and cannot log in again; a revoked name
//! stays refused across restarts. Every action is appended to the audit log.
//!
//! Owns the socket, who may use it (the server's own user or root, by the
//! peer's credentials) and carrying requests out (`execute`). The protocol
//! is `request`'s, the log `journal`'s, the revoked names `revoked`'s,
//! invitations `enroll`'s (kept in `invites`). It
//! must not touch the protocols: it calls the user store, the XMPP server's
//! sessions and the key server.

pub mod enroll;
pub mod invites;
pub mod journal;
pub mod request;
pub mod revoked;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lsim_keymgmt::server::KeyServer;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

use self::enroll::Enrollment;
use self::journal::Journal;
use self::request::{MAX_LINE, Reply, Request};
use self::revoked::Revoked;
use crate::group::signed::now_ms;
use crate::xmpp::server::Sessions;
use crate::xmpp::users::UserStore;

/// The socket's file name inside the data directory.
pub const SOCKET_FILE: &str = "admin.sock";

/// The user the key server logs into the room as: not administered here.
const KEYSERVER_USER: &str = "keyserver";

/// What the admin socket acts on.
pub struct Admin {
    data_dir: PathBuf,
    sessions: Sessions,
    keys: Arc<KeyServer>,
    /// The key group's name.
    group: String,
    /// Each action carried out or refused, as the audit log has it, for the server's own log.
    notify: tokio::sync::mpsc::UnboundedSender<String>,
    /// Invitations handed out and taken in.
    enrollment: Arc<Enrollment>,
}

/// The admin socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Another server answers on it.
    #[error("{0}: another server of this data directory is running")]
    InUse(PathBuf),
    /// Binding or securing it failed.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
}

impl Admin {
    /// The admin of the group `group` served from `data_dir`.
    /// Each action is also sent on `notify` (the server prints it).
    pub fn new(
        data_dir: &Path,
        sessions: Sessions,
        keys: Arc<KeyServer>,
        group: &str,
        notify: tokio::sync::mpsc::UnboundedSender<String>,
        enrollment: Arc<Enrollment>,
    ) -> Admin {
        Admin { data_dir: data_dir.to_path_buf(), sessions, keys, group: group.to_string(), notify, enrollment }
    }

    /// Listens on `admin.sock` in the data directory (a stale socket left
    /// by a crash is replaced; a live one is refused).
    pub async fn serve(self) -> Result<JoinHandle<()>, AdminError> {
        let path = self.data_dir.join(SOCKET_FILE);
        if path.exists() {
            if UnixStream::connect(&path).await.is_ok() {
                return Err(AdminError::InUse(path));
            }
            std::fs::remove_file(&path).map_err(|e| AdminError::Io(path.clone(), e))?;
        }
        let listener = UnixListener::bind(&path).map_err(|e| AdminError::Io(path.clone(), e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| AdminError::Io(path.clone(), e))?;
        }
        let admin = Arc::new(self);
        Ok(tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let admin = admin.clone();
                tokio::spawn(async move { admin.connection(stream).await });
            }
        }))
    }

    async fn connection(&self, stream: UnixStream) {
        let uid = stream.peer_cred().map(|c| c.uid()).ok();
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read.take(2 * MAX_LINE as u64 + 2)).lines();
        let who = uid.map_or_else(|| "uid ?".to_string(), |u| format!("uid {u}"));
        let first = tokio::time::timeout(std::time::Duration::from_secs(5), lines.next_line()).await;
        let Ok(Ok(Some(first))) = first else { return };
        let password = if Request::takes_password(&first) {
            lines.next_line().await.ok().flatten().map(zeroize::Zeroizing::new)
        } else {
            None
        };
        let reply = match Request::parse(&first, password.as_deref().map(String::as_str)) {
            Err(e) => Reply { outcome: Err(e.to_string()) },
            Ok(req) if !allowed(uid, self.owner()) => {
                let why = "refused: only the server's own user or root may administer it".to_string();
                self.log(&who, &req, &why);
                Reply { outcome: Err(why) }
            }
            Ok(req) => {
                let outcome = self.execute(&req).await;
                if !matches!(req, Request::List | Request::Log) {
                    let said = match &outcome {
                        // Never the code itself: it holds the one-time secret.
                        Ok(lines) if matches!(req, Request::Invite { .. }) => {
                            format!("ok: {}", lines.first().map_or("", String::as_str))
                        }
                        Ok(lines) => format!("ok: {}", lines.join("; ")),
                        Err(why) => format!("refused: {why}"),
                    };
                    self.log(&who, &req, &said);
                }
                Reply { outcome }
            }
        };
        let _ = write.write_all(reply.encode().as_bytes()).await;
        let _ = write.shutdown().await;
    }

    /// The server's own uid: the owner of the socket it created.
    fn owner(&self) -> Option<u32> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(self.data_dir.join(SOCKET_FILE)).ok().map(|m| m.uid())
    }

    fn log(&self, who: &str, req: &Request, outcome: &str) {
        let user = req.user().map(crate::text::visible).unwrap_or_default();
        let _ = self.notify.send(format!("{who}: {} {user}: {outcome}", req.verb()));
        // The action happened either way; a log that cannot be written is said on stderr.
        if let Err(e) = Journal::new(&self.data_dir).append(now_ms(), who, req.verb(), req.user(), outcome) {
            eprintln!("audit log: {e}");
        }
    }

    /// Carries out `req`: `Ok` with what to show, or why it was refused.
    pub async fn execute(&self, req: &Request) -> Result<Vec<String>, String> {
        let users = UserStore::open(&self.data_dir).map_err(|e| e.to_string())?;
        let revoked = Revoked::new(&self.data_dir);
        let exists = |name: &str| users.lookup(name).is_some();
        match req {
            Request::List => {
                let mut all = list(&users, &revoked);
                all.extend(self.enrollment.pending());
                Ok(all)
            }
            Request::Log => Journal::new(&self.data_dir).read().map_err(|e| e.to_string()),
            _ if req.user() == Some(KEYSERVER_USER) => Err("the key server's own account is not administered".into()),
            Request::Add { name, password } => {
                if revoked.contains(name) {
                    return Err(format!("{name} is revoked: the name stays refused"));
                }
                if exists(name) {
                    return Err(format!("{name} exists: use passwd to change its password"));
                }
                users.add(name, password, false).map_err(|e| e.to_string())?;
                Ok(vec![format!("added {name}")])
            }
            Request::Invite { name, seconds } => self.enrollment.invite(name, *seconds),
            Request::Passwd { name, password } => {
                if !exists(name) {
                    return Err(format!("no user {name}"));
                }
                users.add(name, password, true).map_err(|e| e.to_string())?;
                let ended = self.sessions.end(name, "not-authorized");
                Ok(vec![format!("changed {name}'s password; {ended} session(s) ended")])
            }
            Request::Remove { name } | Request::Revoke { name } => {
                let revoke = matches!(req, Request::Revoke { .. });
                if !exists(name) {
                    return Err(format!("no user {name}"));
                }
                if revoke {
                    // First, so that nothing after can let the name back in.
                    revoked.add(name).map_err(|e| format!("recording the revocation: {e}"))?;
                }
                users.remove(name).map_err(|e| e.to_string())?;
                let ended = self.sessions.end(name, "not-authorized");
                let epoch = if revoke {
                    self.keys.revoke(&self.group, name).await
                } else {
                    self.keys.evict(&self.group, name).await
                };
                let epoch = epoch.map_err(|e| format!("evicting {name}: {e}"))?;
                let rekey = epoch.map_or("not in the key group".to_string(), |e| format!("group rekeyed to epoch {e}"));
                let did = if revoke { "revoked" } else { "removed" };
                Ok(vec![format!("{did} {name}: {ended} session(s) ended, {rekey}")])
            }
        }
    }
}

/// Every user, and what state it is in.
pub fn list(users: &UserStore, revoked: &Revoked) -> Vec<String> {
    let mut out: Vec<String> = users.names().into_iter().filter(|n| n != KEYSERVER_USER).collect();
    out.extend(revoked.names().unwrap_or_default().into_iter().map(|n| format!("{n} (revoked)")));
    out
}

/// Whether a peer of this uid may administer the server: the server's own
/// user (the owner of the socket it created), or root.
fn allowed(uid: Option<u32>, owner: Option<u32>) -> bool {
    uid.is_some_and(|u| u == 0 || Some(u) == owner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_servers_own_user_or_root_may_administer_it() {
        assert!(allowed(Some(0), Some(1000)));
        assert!(allowed(Some(1000), Some(1000)));
        assert!(!allowed(Some(1001), Some(1000)));
        assert!(!allowed(None, Some(1000)), "unknown peer");
        assert!(!allowed(Some(1000), None), "no socket owner known");
    }
}
