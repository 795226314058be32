//! How the client reaches and logs into a server: [`ClientConfig`] and its
//! defaults, and the STARTTLS policy [`TlsMode`].
//!
//! Owns the settings and their defaults. It must not connect, log in or
//! keep state: `connect` and the client task read it.

use std::time::Duration;

use zeroize::Zeroizing;

use crate::xmpp::jid::Jid;
use crate::xmpp::sasl::Mechanism;
use crate::xmpp::stream::Limits;
use crate::xmpp::tls::Trust;

/// Whether to use STARTTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Never (test set-ups and trusted loopback only).
    Disabled,
    /// Use it when the server offers it, go on in the clear otherwise.
    IfOffered,
    /// Refuse a server that does not offer it.
    Required,
}

/// How to reach and log into a server.
#[derive(Clone)]
pub struct ClientConfig {
    /// Our bare JID (`user@domain`).
    pub jid: Jid,
    /// The password.
    pub password: Zeroizing<String>,
    /// Resource to ask for; the server picks one if `None`.
    pub resource: Option<String>,
    /// `host:port` to connect to; `domain:5222` if `None`.
    pub server: Option<String>,
    /// STARTTLS policy.
    pub tls: TlsMode,
    /// How to trust the server's certificate.
    pub trust: Trust,
    /// Mechanisms we accept, in preference order.
    pub mechanisms: Vec<Mechanism>,
    /// Allow PLAIN without TLS (test set-ups only).
    pub allow_plain_unencrypted: bool,
    /// Limit for the whole connection sequence.
    pub connect_timeout: Duration,
    /// Ping the server this often when connected.
    pub keepalive: Duration,
    /// A ping unanswered this long means the connection is dead.
    pub keepalive_timeout: Duration,
    /// Reconnect after a lost connection.
    pub reconnect: bool,
    /// First reconnect delay; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Limits on what the server may send.
    pub limits: Limits,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("jid", &self.jid.to_string())
            .field("server", &self.server)
            .field("tls", &self.tls)
            .field("mechanisms", &self.mechanisms)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// Defaults: STARTTLS required and checked against the system roots,
    /// SCRAM-SHA-256 then SCRAM-SHA-1 then PLAIN (PLAIN over TLS only),
    /// a ping after 10 s of silence answered within 10 s, reconnect from
    /// 0.5 s up to 5 s.
    ///
    /// Tuned for radio links that drop for seconds to minutes: a cut is
    /// noticed within 20 s and a link that comes back is tried within 5 s,
    /// so the session resumes (XEP-0198) instead of waiting on TCP's own
    /// retransmission backoff (measured: ≈ 1 s against 6.5–10 s after a
    /// 20 s cut, BENCHMARKS.md). A ping is one small stanza per 10 s.
    pub fn new(jid: Jid, password: &str) -> ClientConfig {
        ClientConfig {
            jid: jid.bare(),
            password: Zeroizing::new(password.to_string()),
            resource: None,
            server: None,
            tls: TlsMode::Required,
            trust: Trust::SystemRoots,
            mechanisms: Mechanism::ALL.to_vec(),
            allow_plain_unencrypted: false,
            connect_timeout: Duration::from_secs(20),
            keepalive: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(10),
            reconnect: true,
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(5),
            limits: Limits::default(),
        }
    }

    pub(super) fn server_addr(&self) -> String {
        self.server.clone().unwrap_or_else(|| format!("{}:5222", self.jid.domain))
    }

    pub(super) fn user(&self) -> &str {
        self.jid.local.as_deref().unwrap_or_default()
    }
}
