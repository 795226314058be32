//! SASL for XMPP (RFC 6120 §6): SCRAM-SHA-256 (RFC 7677), SCRAM-SHA-1
//! (RFC 5802) and PLAIN (RFC 4616), client and server side, sans-IO.
//!
//! Owns the mechanism state machines, the stored SCRAM credentials a
//! server keeps instead of passwords, and the failure conditions. It must
//! not touch streams or sockets: callers feed decoded `<auth/>`,
//! `<challenge/>`, `<response/>` and `<success/>` bodies in and send what
//! comes out (base64 encoding on the wire is [`encode`]/[`decode`]).
//!
//! Channel binding (`-PLUS`) is not offered; clients send the `n,,` GS2
//! header. Passwords are used as UTF-8 without SASLprep normalisation
//! (ASCII passwords, the common case, are unaffected).
//!
//! This file owns what both sides share: the mechanisms, the failure
//! conditions and base64 on the wire. It must not hold either side's
//! state machine; those are split by noun:
//!
//! - `client`: the client side of one exchange ([`ClientSasl`]);
//! - `server`: the server side of one exchange ([`ServerSasl`]);
//! - `credentials`: what a server stores instead of passwords
//!   ([`StoredCredentials`]);
//! - `scram`: SCRAM's building blocks (the hashes, nonces, name escaping,
//!   message attributes).

mod client;
mod credentials;
mod scram;
mod server;
#[cfg(test)]
mod tests;

use base64ct::{Base64, Encoding};

pub use self::client::ClientSasl;
pub use self::credentials::{DEFAULT_ITERATIONS, MAX_ITERATIONS, ScramKeys, StoredCredentials};
use self::scram::Hash;
pub use self::server::{ServerSasl, ServerStep};

/// A SASL mechanism lsim speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// SCRAM with SHA-256 (preferred).
    ScramSha256,
    /// SCRAM with SHA-1.
    ScramSha1,
    /// Cleartext user and password; only over TLS unless allowed.
    Plain,
}

impl Mechanism {
    /// Every mechanism, strongest first.
    pub const ALL: [Mechanism; 3] = [Mechanism::ScramSha256, Mechanism::ScramSha1, Mechanism::Plain];

    /// The IANA name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::Plain => "PLAIN",
        }
    }

    /// The mechanism called `name`, if lsim speaks it.
    pub fn parse(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    fn hash(self) -> Option<Hash> {
        match self {
            Mechanism::ScramSha256 => Some(Hash::Sha256),
            Mechanism::ScramSha1 => Some(Hash::Sha1),
            Mechanism::Plain => None,
        }
    }
}

/// A SASL failure condition (RFC 6120 §6.5); [`Failure::condition`] is the
/// element name to send in `<failure/>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// Wrong user or password (deliberately the same for both).
    #[error("not authorized (wrong user or password)")]
    NotAuthorized,
    /// Too many failed logins for this user from here, or from this
    /// address: refused unchecked for a while.
    #[error("too many failed logins; try again in a minute")]
    TemporaryAuthFailure,
    /// The peer's message is not what the mechanism defines.
    #[error("malformed SASL message: {0}")]
    MalformedRequest(&'static str),
    /// Bad base64.
    #[error("SASL data is not valid base64")]
    IncorrectEncoding,
    /// The mechanism is not offered.
    #[error("mechanism not offered")]
    InvalidMechanism,
    /// PLAIN without TLS, where that is not allowed.
    #[error("this mechanism needs an encrypted connection")]
    EncryptionRequired,
    /// An authorization identity other than the user.
    #[error("cannot act for another identity")]
    InvalidAuthzid,
    /// The server proved nothing (its signature did not verify) or asked
    /// for an absurd iteration count: we stop before sending anything else.
    #[error("the server failed SCRAM's mutual authentication: {0}")]
    ServerNotAuthenticated(&'static str),
    /// The exchange was cut short.
    #[error("aborted")]
    Aborted,
    /// The system random generator failed.
    #[error("no randomness available")]
    Random,
}

impl Failure {
    /// The RFC 6120 §6.5 condition element for this failure.
    pub fn condition(&self) -> &'static str {
        match self {
            Failure::NotAuthorized | Failure::ServerNotAuthenticated(_) | Failure::Random => "not-authorized",
            Failure::MalformedRequest(_) => "malformed-request",
            Failure::IncorrectEncoding => "incorrect-encoding",
            Failure::InvalidMechanism => "invalid-mechanism",
            Failure::EncryptionRequired => "encryption-required",
            Failure::InvalidAuthzid => "invalid-authzid",
            Failure::Aborted => "aborted",
            Failure::TemporaryAuthFailure => "temporary-auth-failure",
        }
    }
}

/// Base64 for SASL payloads on the wire; an empty payload is `=`.
pub fn encode(data: &[u8]) -> String {
    if data.is_empty() { "=".to_string() } else { Base64::encode_string(data) }
}

/// Decodes a SASL payload (`=` or empty is an empty payload; whitespace
/// is ignored).
pub fn decode(text: &str) -> Result<Vec<u8>, Failure> {
    let text: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if text.is_empty() || text == "=" {
        return Ok(Vec::new());
    }
    Base64::decode_vec(&text).map_err(|_| Failure::IncorrectEncoding)
}
