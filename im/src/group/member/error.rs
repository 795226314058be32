//! Why a member could not start ([`MemberError`], public), and why a file
//! or private message of ours was not sent ([`NotSent`], reported in an
//! event's text).
//!
//! Owns the errors' types and words. It must not decide what is retried or
//! reported: the login flow and the running member do.

use std::net::SocketAddr;
use std::path::PathBuf;

use lsim_keymgmt::client::ClientError;
use lsim_keymgmt::filekey::FileKeyError;

use crate::group::private::{MAX_PRIVATE_RECIPIENTS, PrivateError};

/// Why a member could not start.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    /// XMPP login failed for good.
    #[error("XMPP: {0}")]
    Xmpp(String),
    /// Nobody in the room published the group's parameters in time.
    #[error(
        "nobody in {0} announced the group's parameters within the wait: check --room (the server prints its room) \
         and that the key server is in it"
    )]
    NoParams(String),
    /// The key server refused or failed.
    #[error("key server: {0}")]
    Keys(ClientError),
    /// The key server did not answer.
    #[error(
        "the key server at {addr} did not answer ({why}): is it running and reachable from this host? \
         (its address comes from the room's announcement, or --keyserver)"
    )]
    KeyServerUnreachable {
        /// Where we tried.
        addr: SocketAddr,
        /// What the connection said.
        why: String,
    },
    /// The parameters cannot be used.
    #[error("group parameters: {0}")]
    Params(String),
    /// The multicast socket or transport could not be set up.
    #[error("multicast: {0}")]
    Multicast(String),
}

impl From<ClientError> for MemberError {
    // Not a `#[from]` source: the message already holds the cause, and a
    // chain printed with `{:#}` would say it twice.
    fn from(e: ClientError) -> MemberError {
        MemberError::Keys(e)
    }
}

/// Why a file or a private message of ours was not sent. Shown as text in
/// [`super::MemberEvent::FileNotSent`] or [`super::MemberEvent::Error`].
// Causes are in the message, not `#[source]`s: a chain printed with `{:#}`
// would say them twice.
#[derive(Debug, thiserror::Error)]
pub(super) enum NotSent {
    /// No fresh file key could be made.
    #[error("{0}")]
    FileKey(FileKeyError),
    /// The key server would not wrap the file key for the recipients.
    #[error("key server: {0}")]
    KeyServer(ClientError),
    /// The file could not be opened or read.
    #[error("{}: {why}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What reading it said.
        why: std::io::Error,
    },
    /// The envelope of a file for some members could not be made.
    #[error("{0}")]
    Envelope(std::io::Error),
    /// The transport sender refused the object.
    #[error("{0}")]
    Queue(lsim_transport::SendError),
    /// The transport sender is gone.
    #[error("the sender stopped")]
    SenderStopped,
    /// More recipients than a private message can name.
    #[error("at most {max} recipients", max = MAX_PRIVATE_RECIPIENTS)]
    TooManyRecipients,
    /// A private message for nobody.
    #[error("no recipients")]
    NoRecipients,
    /// The private message could not be sealed.
    #[error("{0}")]
    Private(PrivateError),
}
