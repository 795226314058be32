//! Why a client connection could not be set up or went down
//! ([`ClientError`]), what a SASL refusal means for the person who typed
//! the password, and which errors no retry can help.
//!
//! Owns the error type and its words. It must not decide when to retry:
//! the client task does, asking [`ClientError::is_fatal`].

use std::io;

use crate::xmpp::sasl;
use crate::xmpp::stream::StreamError;

/// Why a connection could not be set up or went down.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TCP connect or a read/write failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A step took too long.
    #[error("timed out during {0}")]
    Timeout(&'static str),
    /// The server's stream could not be parsed.
    #[error("server stream: {0}")]
    Stream(#[from] StreamError),
    /// The server sent `<stream:error/>`.
    #[error("server closed the stream with <{0}/>")]
    StreamErrorReceived(String),
    /// The server closed the stream.
    #[error("server closed the stream")]
    Closed,
    /// TLS failed (handshake, certificate check).
    #[error("TLS: {0}")]
    Tls(String),
    /// TLS is required and the server does not offer it.
    #[error("the server does not offer STARTTLS and TLS is required")]
    TlsRequired,
    /// No mechanism we accept is offered (PLAIN without TLS counts as
    /// not acceptable).
    #[error("no acceptable SASL mechanism (server offers {0:?})")]
    NoMechanism(Vec<String>),
    /// Our side of SASL refused the exchange.
    #[error("SASL: {0}")]
    Sasl(#[from] sasl::Failure),
    /// The server refused the login.
    #[error("{}", refusal(.0))]
    AuthRejected(String),
    /// Resource binding failed.
    #[error("resource bind failed: {0}")]
    Bind(String),
    /// The server refused to enroll us with the invitation.
    #[error("enrollment refused: {0}")]
    Enrollment(String),
    /// The server did something the protocol does not allow.
    #[error("protocol: {0}")]
    Protocol(String),
}

/// What a SASL failure condition means for the person who typed the password.
fn refusal(condition: &str) -> String {
    match condition {
        "not-authorized" => "the server refused the login: wrong user name or password (<not-authorized/>)".into(),
        "temporary-auth-failure" => {
            "the server refuses logins from here for now after too many failures: wait a minute (<temporary-auth-failure/>)"
                .into()
        }
        "account-disabled" => "the server has disabled this account (<account-disabled/>)".into(),
        other => format!("the server refused the login (<{other}/>)"),
    }
}

impl ClientError {
    /// Whether retrying cannot help (wrong password, certificate mismatch,
    /// no common mechanism): the client stops instead of reconnecting.
    pub fn is_fatal(&self) -> bool {
        // temporary-auth-failure: too many failed logins, refused for a
        // while (the server's login guard); retrying later can help.
        matches!(self, ClientError::AuthRejected(c) if c != "temporary-auth-failure")
            || matches!(
                self,
                ClientError::Tls(_)
                    | ClientError::TlsRequired
                    | ClientError::NoMechanism(_)
                    | ClientError::Enrollment(_)
                    | ClientError::Sasl(sasl::Failure::ServerNotAuthenticated(_))
            )
    }
}
