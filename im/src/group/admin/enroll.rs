//! Enrollment by invitation on the group server: what `lsim user invite`
//! hands out (the code, with the server's addresses and fingerprints) and
//! what the XMPP server asks when a new member presents it (the token's
//! user, then creating that user).
//!
//! Owns the rules around a code: only for a name that is neither taken
//! nor revoked, spent once, and logged. It must not touch the code's
//! format (`group::invite`), the invitations file (`invites`) or the
//! registration stanzas (`xmpp::server::register`).

use std::path::PathBuf;
use std::sync::Arc;

use super::invites::Invites;
use super::journal::Journal;
use super::revoked::Revoked;
use crate::group::invite::Invite;
use crate::group::signed::now_ms;
use crate::xmpp::history::format_stamp;
use crate::xmpp::server::register::Enroll;
use crate::xmpp::users::UserStore;

/// What a code tells a new member about this server.
#[derive(Debug, Clone)]
pub struct Contact {
    /// The XMPP domain.
    pub domain: String,
    /// The XMPP server as members reach it (host:port).
    pub server: String,
    /// The room that is the group.
    pub room: String,
    /// The XMPP certificate's SHA-256.
    pub xmpp_pin: [u8; 32],
    /// The key server certificate's SHA-256.
    pub keyserver_pin: [u8; 32],
}

/// The server's invitations: handing them out and taking them in.
pub struct Enrollment {
    data_dir: PathBuf,
    invites: Invites,
    /// Set once the servers are up; never, when the server runs without
    /// TLS (a code could pin nothing).
    contact: std::sync::OnceLock<Contact>,
    notify: tokio::sync::mpsc::UnboundedSender<String>,
}

impl std::fmt::Debug for Enrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrollment").field("data_dir", &self.data_dir).field("contact", &self.contact).finish()
    }
}

fn now_s() -> u64 {
    now_ms() / 1000
}

impl Enrollment {
    /// The invitations of `data_dir`. Each enrollment is also sent on
    /// `notify` (the server prints it).
    pub fn new(data_dir: PathBuf, notify: tokio::sync::mpsc::UnboundedSender<String>) -> Arc<Enrollment> {
        let contact = std::sync::OnceLock::new();
        Arc::new(Enrollment { invites: Invites::new(&data_dir), data_dir, contact, notify })
    }

    /// How members reach this server, once it is up (codes are handed out from then on).
    pub fn set_contact(&self, contact: Contact) {
        let _ = self.contact.set(contact);
    }

    /// Why `name` cannot be invited or enrolled, if it cannot.
    fn taken(&self, name: &str) -> Option<String> {
        if Revoked::new(&self.data_dir).contains(name) {
            return Some(format!("{name} is revoked: the name stays refused"));
        }
        match UserStore::open(&self.data_dir) {
            Ok(users) if users.lookup(name).is_some() => {
                Some(format!("{name} exists: use passwd to change its password"))
            }
            Ok(_) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    /// A new code for `name`, open for `seconds`: a line saying so, and the code.
    pub fn invite(&self, name: &str, seconds: u64) -> Result<Vec<String>, String> {
        let Some(c) = self.contact.get() else {
            return Err("invitations need the server to run with --tls (a code pins its certificate)".into());
        };
        if let Some(why) = self.taken(name) {
            return Err(why);
        }
        let now = now_s();
        let expires_s = now.saturating_add(seconds);
        let token = self.invites.create(name, expires_s, now).map_err(|e| e.to_string())?;
        let invite = Invite {
            user: name.to_string(),
            domain: c.domain.clone(),
            server: c.server.clone(),
            room: c.room.clone(),
            xmpp_pin: c.xmpp_pin,
            keyserver_pin: c.keyserver_pin,
            token,
            expires_s,
        };
        let code = invite.encode().map_err(|e| e.to_string())?;
        let until = format_stamp(expires_s * 1000);
        Ok(vec![format!("invited {name}@{} until {until} (one use)", c.domain), code.to_string()])
    }

    /// The open invitations, for `lsim user list`.
    pub fn pending(&self) -> Vec<String> {
        let now = now_s();
        self.invites
            .open(now)
            .into_iter()
            .map(|p| format!("{} (invited, open until {})", p.name, format_stamp(p.expires_s * 1000)))
            .collect()
    }
}

impl Enroll for Enrollment {
    fn check(&self, token: &str) -> Result<String, String> {
        let name = self.invites.check(token, now_s()).map_err(|e| e.to_string())?;
        match self.taken(&name) {
            Some(why) => Err(why),
            None => Ok(name),
        }
    }

    fn redeem(&self, token: &str, user: &str, password: &str) -> Result<(), String> {
        self.check(token)?;
        self.invites.spend(token, user, now_s()).map_err(|e| e.to_string())?;
        let outcome =
            UserStore::open(&self.data_dir).and_then(|u| u.add(user, password, false)).map_err(|e| e.to_string());
        let said = match &outcome {
            Ok(()) => "ok: enrolled with its invitation".to_string(),
            Err(why) => format!("refused: {why}"),
        };
        let _ = self.notify.send(format!("invitation: enroll {user}: {said}"));
        if let Err(e) = Journal::new(&self.data_dir).append(now_ms(), "invitation", "enroll", Some(user), &said) {
            eprintln!("audit log: {e}");
        }
        outcome
    }
}
