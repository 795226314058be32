//! The admin protocol of a running group server: one request per
//! connection on its admin socket, as lines; one reply, as lines.
//!
//! ```text
//! request:  VERB [NAME]\n  (list | log | add NAME | passwd NAME | remove NAME | revoke NAME
//!                          | invite NAME SECONDS)
//!           PASSWORD\n     (add and passwd only)
//! reply:    ok\n  or  error REASON\n, then the output, a line each
//! ```
//!
//! Owns parsing and writing both, with their bounds. Pure: it must not
//! touch sockets, files or the server.

use zeroize::Zeroizing;

use crate::xmpp::users::validate_name;

/// The longest request line, and the longest password.
pub const MAX_LINE: usize = 1024;

/// The longest an invitation may stay open: 30 days.
pub const MAX_INVITE_S: u64 = 30 * 24 * 3600;

/// What an administrator asks.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// Every user, with their state.
    List,
    /// The audit log.
    Log,
    /// A new user.
    Add {
        /// The user name (stored lowercase).
        name: String,
        /// Its password.
        password: Zeroizing<String>,
    },
    /// A new password; the user's other sessions end.
    Passwd {
        /// The user.
        name: String,
        /// The new password.
        password: Zeroizing<String>,
    },
    /// The user is gone: sessions closed, evicted and rekeyed, login refused.
    Remove {
        /// The user.
        name: String,
    },
    /// As `Remove`, and the name stays refused (across restarts) and listed.
    Revoke {
        /// The user.
        name: String,
    },
    /// A one-time enrollment code for a new user.
    Invite {
        /// The user it is for.
        name: String,
        /// How long it stays open, in seconds.
        seconds: u64,
    },
}

/// A request that cannot be carried out as written.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not one of the verbs.
    #[error("unknown request {0:?}: list, log, add, passwd, remove, revoke or invite")]
    Verb(String),
    /// A verb that names a user without one, or the other way round.
    #[error("{0} needs {1}")]
    Shape(&'static str, &'static str),
    /// A name that cannot be a user.
    #[error("{0}")]
    Name(String),
    /// Too long, or no password where one is needed.
    #[error("{0}")]
    Bounds(&'static str),
}

impl Request {
    /// Parses a request from its lines (the password line, if any, second).
    pub fn parse(first: &str, password: Option<&str>) -> Result<Request, RequestError> {
        if first.len() > MAX_LINE || password.is_some_and(|p| p.len() > MAX_LINE) {
            return Err(RequestError::Bounds("a request line is limited to 1024 bytes"));
        }
        let mut words = first.split(' ');
        let verb = words.next().unwrap_or("");
        let name = words.next();
        let seconds = if verb == "invite" { words.next() } else { None };
        if words.next().is_some() {
            return Err(RequestError::Shape("a request", "one verb and at most one user name"));
        }
        let user = |verb: &'static str| -> Result<String, RequestError> {
            let n = name.ok_or(RequestError::Shape(verb, "a user name"))?;
            validate_name(n).map_err(|e| RequestError::Name(e.to_string()))
        };
        let secret = || -> Result<Zeroizing<String>, RequestError> {
            match password {
                Some(p) if !p.is_empty() => Ok(Zeroizing::new(p.to_string())),
                _ => Err(RequestError::Bounds("an empty password is refused")),
            }
        };
        let bare =
            |r: Request, verb| if name.is_none() { Ok(r) } else { Err(RequestError::Shape(verb, "no user name")) };
        match verb {
            "list" => bare(Request::List, "list"),
            "log" => bare(Request::Log, "log"),
            "add" => Ok(Request::Add { name: user("add")?, password: secret()? }),
            "passwd" => Ok(Request::Passwd { name: user("passwd")?, password: secret()? }),
            "remove" => Ok(Request::Remove { name: user("remove")? }),
            "revoke" => Ok(Request::Revoke { name: user("revoke")? }),
            "invite" => {
                let name = user("invite")?;
                match seconds.and_then(|s| s.parse::<u64>().ok()) {
                    Some(seconds @ 1..=MAX_INVITE_S) => Ok(Request::Invite { name, seconds }),
                    _ => Err(RequestError::Bounds("an invitation stays open from 1 second to 30 days")),
                }
            }
            other => Err(RequestError::Verb(other.chars().take(40).collect())),
        }
    }

    /// The request as it goes on the socket.
    pub fn encode(&self) -> Zeroizing<String> {
        Zeroizing::new(match self {
            Request::List => "list\n".to_string(),
            Request::Log => "log\n".to_string(),
            Request::Add { name, password } => format!("add {name}\n{}\n", password.as_str()),
            Request::Passwd { name, password } => format!("passwd {name}\n{}\n", password.as_str()),
            Request::Remove { name } => format!("remove {name}\n"),
            Request::Revoke { name } => format!("revoke {name}\n"),
            Request::Invite { name, seconds } => format!("invite {name} {seconds}\n"),
        })
    }

    /// Whether a password line follows the first.
    pub fn takes_password(first: &str) -> bool {
        matches!(first.split(' ').next(), Some("add" | "passwd"))
    }

    /// The verb, for the audit log.
    pub fn verb(&self) -> &'static str {
        match self {
            Request::List => "list",
            Request::Log => "log",
            Request::Add { .. } => "add",
            Request::Passwd { .. } => "passwd",
            Request::Remove { .. } => "remove",
            Request::Revoke { .. } => "revoke",
            Request::Invite { .. } => "invite",
        }
    }

    /// The user it is about, if any.
    pub fn user(&self) -> Option<&str> {
        match self {
            Request::List | Request::Log => None,
            Request::Add { name, .. }
            | Request::Passwd { name, .. }
            | Request::Remove { name }
            | Request::Revoke { name }
            | Request::Invite { name, .. } => Some(name),
        }
    }
}

/// A reply: the outcome and what it shows.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    /// `Ok(lines)`, or the reason it was refused.
    pub outcome: Result<Vec<String>, String>,
}

impl Reply {
    /// The reply as it goes on the socket (no line may break the framing).
    pub fn encode(&self) -> String {
        let clean = |s: &str| s.replace(['\n', '\r'], " ");
        match &self.outcome {
            Ok(lines) => {
                std::iter::once("ok".to_string()).chain(lines.iter().map(|l| clean(l))).map(|l| l + "\n").collect()
            }
            Err(why) => format!("error {}\n", clean(why)),
        }
    }

    /// Parses a reply read to its end.
    pub fn parse(text: &str) -> Reply {
        let mut lines = text.lines();
        match lines.next() {
            Some("ok") => Reply { outcome: Ok(lines.map(str::to_string).collect()) },
            Some(l) => Reply { outcome: Err(l.strip_prefix("error ").unwrap_or(l).to_string()) },
            None => Reply { outcome: Err("the server closed without a reply".into()) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_round_trips() {
        let pw = || Zeroizing::new("s3cret pass".to_string());
        for r in [
            Request::List,
            Request::Log,
            Request::Add { name: "carol".into(), password: pw() },
            Request::Passwd { name: "carol".into(), password: pw() },
            Request::Remove { name: "carol".into() },
            Request::Revoke { name: "carol".into() },
            Request::Invite { name: "dave".into(), seconds: 3600 },
        ] {
            let text = r.encode();
            let mut lines = text.lines();
            let first = lines.next().unwrap();
            let second = Request::takes_password(first).then(|| lines.next().unwrap());
            assert_eq!(Request::parse(first, second), Ok(r));
        }
    }

    #[test]
    fn bad_requests_are_clear_errors() {
        assert!(matches!(Request::parse("drop carol", None), Err(RequestError::Verb(_))));
        assert!(matches!(Request::parse("remove", None), Err(RequestError::Shape("remove", _))));
        assert!(matches!(Request::parse("list carol", None), Err(RequestError::Shape("list", _))));
        assert!(matches!(Request::parse("remove a b", None), Err(RequestError::Shape(..))));
        for bad in ["car@ol", "a/b", "bell\u{7}", "x:y"] {
            assert!(matches!(Request::parse(&format!("revoke {bad}"), None), Err(RequestError::Name(_))), "{bad}");
        }
        assert!(matches!(Request::parse("add carol", None), Err(RequestError::Bounds(_))));
        assert!(matches!(Request::parse("add carol", Some("")), Err(RequestError::Bounds(_))));
        assert!(matches!(Request::parse(&"x".repeat(2000), None), Err(RequestError::Bounds(_))));
        for bad in ["invite dave", "invite dave 0", "invite dave 1h", "invite dave 2592001"] {
            assert!(matches!(Request::parse(bad, None), Err(RequestError::Bounds(_))), "{bad}");
        }
        assert!(matches!(Request::parse("remove carol 5", None), Err(RequestError::Shape(..))));
        assert_eq!(Request::parse("remove Carol", None), Ok(Request::Remove { name: "carol".into() }));
    }

    #[test]
    fn replies_keep_their_framing() {
        let r = Reply { outcome: Ok(vec!["alice".into(), "evil\nok".into()]) };
        assert_eq!(Reply::parse(&r.encode()).outcome, Ok(vec!["alice".into(), "evil ok".into()]));
        let r = Reply { outcome: Err("no such user\ncarol".into()) };
        assert_eq!(Reply::parse(&r.encode()).outcome, Err("no such user carol".into()));
        assert!(Reply::parse("").outcome.is_err());
    }
}
