//! The registrar protocol's messages and their encoding.
//!
//! Owns what a client and the key server say to each other over the QUIC
//! channel: one request and one response per bidirectional stream, each a
//! version byte, a type byte and fields, with every length bounded and a
//! reader that never panics (the shared `Codec` over the bounded
//! `codec::Reader`). It does not know the server's state.
//!
//! The keys message (response 2):
//!
//! ```text
//! Keys:  group id (u32) | epoch (u32) | member (u64) | leaf (u32) | leaf version (u32)
//!        | suite (u8) | path length (u8, ≤ MAX_PATH) | length × (node (u32) | version (u32) | key (32))
//!        | revoked count (u16, ≤ MAX_KEYS_REVOKED) | count × name (u8 length 1..=64, UTF-8)
//!        | history count (u16, ≤ MAX_KEYS_HISTORY) | count × (epoch (u32) | group key (32))
//! ```
//!
//! The history's epochs strictly increase, none before the leaf version
//! (the epoch the member's membership began) and each before the path's
//! epoch: a `Keys` answer cannot carry the key of an epoch the member was
//! not in the group for.
//!
//! The file key messages:
//!
//! ```text
//! WrapFileKey (request 6):  group (u16 length, UTF-8) | file key (32)
//!                           | count (u16, ≤ MAX_RECIPIENTS) | count × user (u16 length, UTF-8)
//! FileKeyWraps (response 6): count (u16, ≤ MAX_RECIPIENTS) | count × wrap (68, `Wrap::encode`)
//! ```

use std::fmt;

use lsim_transport::codec::{Codec, Reader, Short, Trailing};
use thiserror::Error;

use crate::filekey::{FileKey, MAX_RECIPIENTS, WRAP_ENCODED_LEN, WRAP_LEN, Wrap};
use crate::key::SecretKey;
use crate::tree::{MemberId, MemberPath, NodeId, PathKey};

/// Protocol version carried in every message.
pub const VERSION: u8 = 2;
/// Largest message either side reads: room for a file key request naming
/// `MAX_RECIPIENTS` users of the longest valid name (64 bytes), for its
/// answer (`MAX_RECIPIENTS` wraps of 68 bytes) and for the largest `Keys`
/// answer (a full path, `MAX_KEYS_REVOKED` names, `MAX_KEYS_HISTORY` keys).
pub const MAX_MESSAGE: usize = 104 * 1024;
/// Longest string field (user names, passwords, group names, error text).
pub const MAX_STRING: usize = 1024;
/// Most path keys in one message (a path of a tree of degree ≥ 2 with 2^32 members is shorter).
pub const MAX_PATH: usize = 64;
/// Most revoked user names a `Keys` answer carries (the newest ones; the
/// next rekey carries the whole list, up to `rekey::MAX_REVOKED`).
pub const MAX_KEYS_REVOKED: usize = 1024;
/// Most past epochs' group keys a `Keys` answer carries (the key server
/// keeps no more than `suite::MAX_HISTORY_EPOCHS` per group).
pub const MAX_KEYS_HISTORY: usize = 1024;
/// Bytes of one history entry: epoch and group key.
const HISTORY_ENTRY_LEN: usize = 4 + 32;

/// A message that could not be read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MsgError {
    /// Fewer bytes than a field needs.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// Bytes left after the message.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// Another protocol version.
    #[error("protocol version {0}, expected {VERSION}")]
    Version(u8),
    /// Unknown message type.
    #[error("unknown message type {0}")]
    Type(u8),
    /// A field longer than its limit.
    #[error("{what} of {len} exceeds {max}")]
    TooLong {
        /// The field.
        what: &'static str,
        /// Its claimed length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A string that is not UTF-8.
    #[error("{0} is not UTF-8")]
    Utf8(&'static str),
    /// A field that may not be empty is.
    #[error("{0} is empty")]
    Empty(&'static str),
    /// History epochs that do not strictly increase.
    #[error("history epoch {epoch} does not follow history epoch {after}")]
    HistoryOrder {
        /// The epoch out of order.
        epoch: u32,
        /// The epoch before it.
        after: u32,
    },
    /// A history epoch not before the path's epoch.
    #[error("history epoch {epoch} is not before the path's epoch {current}")]
    HistoryRange {
        /// The epoch.
        epoch: u32,
        /// The path's epoch.
        current: u32,
    },
}

// The largest answer to a file key request fits in a message.
const _: () = assert!(2 + 2 + MAX_RECIPIENTS * WRAP_ENCODED_LEN <= MAX_MESSAGE);
// So does the largest `Keys` answer: a full path, the most revoked names and the longest history.
const _: () = assert!(
    2 + 25
        + 1
        + MAX_PATH * 40
        + 2
        + MAX_KEYS_REVOKED * (1 + crate::users::MAX_NAME)
        + 2
        + MAX_KEYS_HISTORY * HISTORY_ENTRY_LEN
        <= MAX_MESSAGE
);
// Every epoch a key server keeps fits one answer.
const _: () = assert!(crate::suite::MAX_HISTORY_EPOCHS <= MAX_KEYS_HISTORY);
// So does the largest request naming valid users.
const _: () = assert!(2 + 2 + MAX_STRING + 32 + 2 + MAX_RECIPIENTS * (2 + crate::users::MAX_NAME) <= MAX_MESSAGE);

/// What a client asks. `Debug` shows neither passwords nor file keys.
#[derive(Clone, PartialEq, Eq)]
pub enum Request {
    /// Log in; must be the connection's first request.
    Hello {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// Join a group (the XMPP room's name).
    Join {
        /// Group name.
        group: String,
    },
    /// Leave a group.
    Leave {
        /// Group name.
        group: String,
    },
    /// Send my current path and epoch again (after missed rekeys).
    Resync {
        /// Group name.
        group: String,
    },
    /// Certify my signing key (after Hello).
    Certify {
        /// The member's Ed25519 public key.
        key: [u8; 32],
    },
    /// Wrap a file key for some members of a group (I must be one too).
    WrapFileKey {
        /// Group name.
        group: String,
        /// The recipients' user names, at most `MAX_RECIPIENTS`.
        to: Vec<String>,
        /// The file key.
        key: FileKey,
    },
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Hello { user, .. } => {
                f.debug_struct("Hello").field("user", user).field("password", &format_args!("..")).finish()
            }
            Request::Join { group } => f.debug_struct("Join").field("group", group).finish(),
            Request::Leave { group } => f.debug_struct("Leave").field("group", group).finish(),
            Request::Resync { group } => f.debug_struct("Resync").field("group", group).finish(),
            Request::Certify { key } => f.debug_struct("Certify").field("key", key).finish(),
            Request::WrapFileKey { group, to, key } => {
                f.debug_struct("WrapFileKey").field("group", group).field("to", to).field("key", key).finish()
            }
        }
    }
}

/// What the server answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// Logged in.
    Welcome {
        /// The member's id (stable across logins).
        member: u64,
        /// The member's individual key.
        individual_key: SecretKey,
        /// The key server's Ed25519 verifying key (it signs every rekey).
        server_key: [u8; 32],
    },
    /// The member's keys for a group (after Join or Resync).
    Keys {
        /// The group's cipher suite code.
        suite: u8,
        /// The member's path (group id, epoch, leaf, keys up to the group key).
        path: MemberPath,
        /// The users the key server revoked (at most `MAX_KEYS_REVOKED`
        /// names of 1..=`users::MAX_NAME` bytes): a member that got its
        /// keys here rather than from a rekey must refuse what they signed too.
        revoked: Vec<String>,
        /// The group keys of past epochs of the member's membership (at
        /// most `MAX_KEYS_HISTORY`, oldest first): those of the epochs from
        /// the start of its run of membership (`path.leaf_version`, or
        /// earlier for a member back after an eviction for absence: the
        /// key server's `Run`) to before `path.epoch` that the key server
        /// still holds, so that it can open repair of what was sent in
        /// epochs it missed.
        history: Vec<(u32, SecretKey)>,
    },
    /// Left; the rest of the group was rekeyed to this epoch.
    Left {
        /// The epoch after the leave.
        epoch: u32,
    },
    /// The member's certificate (after Certify), encoded.
    Certified {
        /// `MemberCert::encode`.
        cert: Vec<u8>,
    },
    /// A file key wrapped for each recipient, in the order asked (after WrapFileKey).
    FileKeyWraps {
        /// One wrap per recipient, at most `MAX_RECIPIENTS`.
        wraps: Vec<Wrap>,
    },
    /// Refused.
    Error {
        /// What kind of refusal.
        code: ErrorCode,
        /// Words for people.
        message: String,
    },
}

/// Kinds of refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// Unknown user or wrong password.
    BadCredentials = 1,
    /// A request before Hello.
    NotLoggedIn = 2,
    /// No such group.
    UnknownGroup = 3,
    /// The user may not join this group.
    NotAllowed = 4,
    /// Already a member / not a member.
    State = 5,
    /// The request could not be read.
    Malformed = 6,
    /// Too many attempts; try later.
    RateLimited = 7,
    /// The server failed.
    Internal = 8,
    /// Users named in the request are not members of the group.
    NotMember = 9,
}

impl ErrorCode {
    fn from_u8(v: u8) -> ErrorCode {
        match v {
            1 => ErrorCode::BadCredentials,
            2 => ErrorCode::NotLoggedIn,
            3 => ErrorCode::UnknownGroup,
            4 => ErrorCode::NotAllowed,
            5 => ErrorCode::State,
            6 => ErrorCode::Malformed,
            7 => ErrorCode::RateLimited,
            9 => ErrorCode::NotMember,
            _ => ErrorCode::Internal,
        }
    }
}

impl From<Short> for MsgError {
    fn from(s: Short) -> MsgError {
        MsgError::Truncated(s.what)
    }
}

impl From<Trailing> for MsgError {
    fn from(t: Trailing) -> MsgError {
        MsgError::Trailing(t.left)
    }
}

/// The registrar's fields, read with the shared bounded `codec::Reader`.
trait Fields {
    fn key(&mut self, what: &'static str) -> Result<[u8; 32], MsgError>;
    fn count(&mut self, what: &'static str, max: usize, min_len: usize) -> Result<(usize, usize), MsgError>;
    fn wrap(&mut self) -> Result<Wrap, MsgError>;
    fn string(&mut self, what: &'static str) -> Result<String, MsgError>;
}

impl Fields for Reader<'_> {
    fn key(&mut self, what: &'static str) -> Result<[u8; 32], MsgError> {
        let mut a = [0u8; 32];
        a.copy_from_slice(self.take(32, what)?);
        Ok(a)
    }
    /// A count of at most `max` items of at least `min_len` bytes each, and
    /// the capacity to reserve for them (no more than the bytes left can hold).
    fn count(&mut self, what: &'static str, max: usize, min_len: usize) -> Result<(usize, usize), MsgError> {
        let n = usize::from(self.u16(what)?);
        if n > max {
            return Err(MsgError::TooLong { what, len: n, max });
        }
        Ok((n, n.min(self.left() / min_len)))
    }
    fn wrap(&mut self) -> Result<Wrap, MsgError> {
        let member = self.u64("wrap member")?;
        let mut sealed = [0u8; WRAP_LEN];
        sealed.copy_from_slice(self.take(WRAP_LEN, "wrap")?);
        Ok(Wrap { member, sealed })
    }
    fn string(&mut self, what: &'static str) -> Result<String, MsgError> {
        let len = usize::from(self.u16(what)?);
        if len > MAX_STRING {
            return Err(MsgError::TooLong { what, len, max: MAX_STRING });
        }
        let b = self.take(len, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| MsgError::Utf8(what))
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    // Strings are bounded by MAX_STRING when built; longer ones are cut at a char boundary.
    let mut end = s.len().min(MAX_STRING);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

fn start(out: &mut Vec<u8>, t: u8) {
    out.push(VERSION);
    out.push(t);
}

/// Reads the version and returns the type of a message that is the rest of
/// `r`'s input.
fn header(r: &mut Reader<'_>) -> Result<u8, MsgError> {
    if r.left() > MAX_MESSAGE {
        return Err(MsgError::TooLong { what: "message", len: r.left(), max: MAX_MESSAGE });
    }
    let v = r.u8("version")?;
    if v != VERSION {
        return Err(MsgError::Version(v));
    }
    Ok(r.u8("type")?)
}

impl Request {
    /// Encodes into `out` (cleared first; `Codec::encode` appends).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        Codec::encode(self, out);
    }

    /// Decodes one request that is all of `b` (`Codec::from_bytes`).
    pub fn decode(b: &[u8]) -> Result<Request, MsgError> {
        Request::from_bytes(b)
    }
}

impl Codec for Request {
    type Error = MsgError;

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Request::Hello { user, password } => {
                start(out, 1);
                put_string(out, user);
                put_string(out, password);
            }
            Request::Join { group } => {
                start(out, 2);
                put_string(out, group);
            }
            Request::Leave { group } => {
                start(out, 3);
                put_string(out, group);
            }
            Request::Resync { group } => {
                start(out, 4);
                put_string(out, group);
            }
            Request::Certify { key } => {
                start(out, 5);
                out.extend_from_slice(key);
            }
            Request::WrapFileKey { group, to, key } => {
                start(out, 6);
                put_string(out, group);
                out.extend_from_slice(key.as_bytes());
                let n = to.len().min(MAX_RECIPIENTS);
                out.extend_from_slice(&(n as u16).to_be_bytes());
                for user in &to[..n] {
                    put_string(out, user);
                }
            }
        }
    }

    /// Reads one request, which ends its input (a stream's one message).
    fn read(r: &mut Reader<'_>) -> Result<Request, MsgError> {
        let t = header(r)?;
        let req = match t {
            1 => Request::Hello { user: r.string("user")?, password: r.string("password")? },
            2 => Request::Join { group: r.string("group")? },
            3 => Request::Leave { group: r.string("group")? },
            4 => Request::Resync { group: r.string("group")? },
            5 => Request::Certify { key: r.key("signing key")? },
            6 => {
                let group = r.string("group")?;
                let key = FileKey::from_bytes(r.key("file key")?);
                let (n, capacity) = r.count("recipients", MAX_RECIPIENTS, 2)?;
                let mut to = Vec::with_capacity(capacity);
                for _ in 0..n {
                    to.push(r.string("recipient")?);
                }
                Request::WrapFileKey { group, to, key }
            }
            _ => return Err(MsgError::Type(t)),
        };
        r.finish("message")?;
        Ok(req)
    }
}

impl Response {
    /// Encodes into `out` (cleared first; `Codec::encode` appends).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        Codec::encode(self, out);
    }

    /// Decodes one response that is all of `b` (`Codec::from_bytes`).
    pub fn decode(b: &[u8]) -> Result<Response, MsgError> {
        Response::from_bytes(b)
    }
}

impl Codec for Response {
    type Error = MsgError;

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Response::Welcome { member, individual_key, server_key } => {
                start(out, 1);
                out.extend_from_slice(&member.to_be_bytes());
                out.extend_from_slice(individual_key.as_bytes());
                out.extend_from_slice(server_key);
            }
            Response::Keys { suite, path, revoked, history } => {
                start(out, 2);
                out.extend_from_slice(&path.group.to_be_bytes());
                out.extend_from_slice(&path.epoch.to_be_bytes());
                out.extend_from_slice(&path.member.0.to_be_bytes());
                out.extend_from_slice(&path.leaf.0.to_be_bytes());
                out.extend_from_slice(&path.leaf_version.to_be_bytes());
                out.push(*suite);
                let n = path.keys.len().min(MAX_PATH);
                out.push(n as u8);
                for p in &path.keys[..n] {
                    out.extend_from_slice(&p.node.0.to_be_bytes());
                    out.extend_from_slice(&p.version.to_be_bytes());
                    out.extend_from_slice(p.key.as_bytes());
                }
                // Names past the bounds are not carried (the key server never makes them).
                let names: Vec<&String> = revoked
                    .iter()
                    .filter(|n| (1..=crate::users::MAX_NAME).contains(&n.len()))
                    .take(MAX_KEYS_REVOKED)
                    .collect();
                out.extend_from_slice(&(names.len() as u16).to_be_bytes());
                for name in names {
                    out.push(name.len() as u8);
                    out.extend_from_slice(name.as_bytes());
                }
                let history = carried_history(path, history);
                out.extend_from_slice(&(history.len() as u16).to_be_bytes());
                for (epoch, key) in history {
                    out.extend_from_slice(&epoch.to_be_bytes());
                    out.extend_from_slice(key.as_bytes());
                }
            }
            Response::Left { epoch } => {
                start(out, 3);
                out.extend_from_slice(&epoch.to_be_bytes());
            }
            Response::Error { code, message } => {
                start(out, 4);
                out.push(*code as u8);
                put_string(out, message);
            }
            Response::Certified { cert } => {
                start(out, 5);
                let n = cert.len().min(crate::cert::MAX_CERT);
                out.extend_from_slice(&(n as u16).to_be_bytes());
                out.extend_from_slice(&cert[..n]);
            }
            Response::FileKeyWraps { wraps } => {
                start(out, 6);
                let n = wraps.len().min(MAX_RECIPIENTS);
                out.extend_from_slice(&(n as u16).to_be_bytes());
                for w in &wraps[..n] {
                    out.extend_from_slice(&w.encode());
                }
            }
        }
    }

    /// Reads one response, which ends its input (a stream's one message).
    fn read(r: &mut Reader<'_>) -> Result<Response, MsgError> {
        let t = header(r)?;
        let resp = match t {
            1 => Response::Welcome {
                member: r.u64("member")?,
                individual_key: SecretKey::from_bytes(r.key("individual key")?),
                server_key: r.key("server key")?,
            },
            2 => {
                let group = r.u32("group id")?;
                let epoch = r.u32("epoch")?;
                let member = MemberId(r.u64("member")?);
                let leaf = NodeId(r.u32("leaf")?);
                let leaf_version = r.u32("leaf version")?;
                let suite = r.u8("suite")?;
                let n = usize::from(r.u8("path length")?);
                if n > MAX_PATH {
                    return Err(MsgError::TooLong { what: "path", len: n, max: MAX_PATH });
                }
                let mut keys = Vec::with_capacity(n);
                for _ in 0..n {
                    keys.push(PathKey {
                        node: NodeId(r.u32("path node")?),
                        version: r.u32("path version")?,
                        key: SecretKey::from_bytes(r.key("path key")?),
                    });
                }
                let (n, capacity) = r.count("revoked names", MAX_KEYS_REVOKED, 2)?;
                let mut revoked = Vec::with_capacity(capacity);
                for _ in 0..n {
                    let len = usize::from(r.u8("revoked name length")?);
                    if len == 0 {
                        return Err(MsgError::Empty("revoked name"));
                    }
                    if len > crate::users::MAX_NAME {
                        return Err(MsgError::TooLong { what: "revoked name", len, max: crate::users::MAX_NAME });
                    }
                    let name = r.take(len, "revoked name")?;
                    revoked.push(String::from_utf8(name.to_vec()).map_err(|_| MsgError::Utf8("revoked name"))?);
                }
                let history = read_history(r, epoch)?;
                let path = MemberPath { group, epoch, member, leaf, leaf_version, keys };
                Response::Keys { suite, path, revoked, history }
            }
            3 => Response::Left { epoch: r.u32("epoch")? },
            4 => Response::Error { code: ErrorCode::from_u8(r.u8("code")?), message: r.string("message")? },
            5 => {
                let n = usize::from(r.u16("certificate length")?);
                if n > crate::cert::MAX_CERT {
                    return Err(MsgError::TooLong { what: "certificate", len: n, max: crate::cert::MAX_CERT });
                }
                Response::Certified { cert: r.take(n, "certificate")?.to_vec() }
            }
            6 => {
                let (n, capacity) = r.count("wraps", MAX_RECIPIENTS, WRAP_ENCODED_LEN)?;
                let mut wraps = Vec::with_capacity(capacity);
                for _ in 0..n {
                    wraps.push(r.wrap()?);
                }
                Response::FileKeyWraps { wraps }
            }
            _ => return Err(MsgError::Type(t)),
        };
        r.finish("message")?;
        Ok(resp)
    }
}

/// The history entries a `Keys` answer carries: the newest
/// `MAX_KEYS_HISTORY` of those `read_history` accepts (entries out of
/// order or outside the membership are not carried; the key server never
/// makes them).
fn carried_history<'a>(path: &MemberPath, history: &'a [(u32, SecretKey)]) -> Vec<&'a (u32, SecretKey)> {
    let mut kept: Vec<&(u32, SecretKey)> = Vec::with_capacity(history.len().min(MAX_KEYS_HISTORY));
    for entry in history {
        if entry.0 < path.epoch && kept.last().is_none_or(|last| last.0 < entry.0) {
            kept.push(entry);
        }
    }
    let skip = kept.len().saturating_sub(MAX_KEYS_HISTORY);
    kept.split_off(skip)
}

/// Reads a `Keys` answer's history: epochs strictly increasing, each
/// before `current` (the path's epoch). Which past epochs a member may have
/// is the key server's to decide, not the wire's.
fn read_history(r: &mut Reader<'_>, current: u32) -> Result<Vec<(u32, SecretKey)>, MsgError> {
    let (n, capacity) = r.count("history", MAX_KEYS_HISTORY, HISTORY_ENTRY_LEN)?;
    let mut history: Vec<(u32, SecretKey)> = Vec::with_capacity(capacity);
    for _ in 0..n {
        let epoch = r.u32("history epoch")?;
        if let Some(&(after, _)) = history.last()
            && epoch <= after
        {
            return Err(MsgError::HistoryOrder { epoch, after });
        }
        if epoch >= current {
            return Err(MsgError::HistoryRange { epoch, current });
        }
        history.push((epoch, SecretKey::from_bytes(r.key("history key")?)));
    }
    Ok(history)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rekey::tests::codec_round_trip;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        "\\PC{0,40}"
    }

    fn request() -> impl Strategy<Value = Request> {
        prop_oneof![
            (text(), text()).prop_map(|(user, password)| Request::Hello { user, password }),
            text().prop_map(|group| Request::Join { group }),
            text().prop_map(|group| Request::Leave { group }),
            text().prop_map(|group| Request::Resync { group }),
            any::<[u8; 32]>().prop_map(|key| Request::Certify { key }),
            (text(), prop::collection::vec(text(), 0..20), any::<[u8; 32]>())
                .prop_map(|(group, to, key)| { Request::WrapFileKey { group, to, key: FileKey::from_bytes(key) } }),
        ]
    }

    fn wrap() -> impl Strategy<Value = Wrap> {
        (any::<u64>(), prop::collection::vec(any::<u8>(), WRAP_LEN)).prop_map(|(member, b)| {
            let mut sealed = [0u8; WRAP_LEN];
            sealed.copy_from_slice(&b);
            Wrap { member, sealed }
        })
    }

    /// Strictly increasing epochs from 0 (added to a join epoch), with keys.
    fn history() -> impl Strategy<Value = Vec<(u32, SecretKey)>> {
        prop::collection::btree_map(0u32..64, any::<[u8; 32]>().prop_map(SecretKey::from_bytes), 0..6)
            .prop_map(|m| m.into_iter().collect())
    }

    fn response() -> impl Strategy<Value = Response> {
        let key = any::<[u8; 32]>().prop_map(SecretKey::from_bytes);
        let keys = prop::collection::vec((any::<u32>(), any::<u32>(), key.clone()), 0..20).prop_map(|v| {
            v.into_iter().map(|(node, version, key)| PathKey { node: NodeId(node), version, key }).collect()
        });
        let path = (any::<u32>(), any::<u32>(), any::<u64>(), any::<u32>(), any::<u32>(), keys).prop_map(
            |(group, epoch, member, leaf, leaf_version, keys)| MemberPath {
                group,
                epoch,
                member: MemberId(member),
                leaf: NodeId(leaf),
                leaf_version,
                keys,
            },
        );
        prop_oneof![
            (any::<u64>(), key, any::<[u8; 32]>()).prop_map(|(member, individual_key, server_key)| Response::Welcome {
                member,
                individual_key,
                server_key
            }),
            (any::<u8>(), path, prop::collection::vec("[a-z]{1,64}", 0..4), history()).prop_map(
                |(suite, path, revoked, history)| {
                    // Epochs from the member's join on, before the path's epoch.
                    let history = history
                        .into_iter()
                        .filter_map(|(after, key)| Some((path.leaf_version.checked_add(after)?, key)))
                        .filter(|(e, _)| *e < path.epoch)
                        .collect();
                    Response::Keys { suite, path, revoked, history }
                }
            ),
            any::<u32>().prop_map(|epoch| Response::Left { epoch }),
            (1u8..10, text()).prop_map(|(c, message)| Response::Error { code: ErrorCode::from_u8(c), message }),
            prop::collection::vec(any::<u8>(), 0..=crate::cert::MAX_CERT).prop_map(|cert| Response::Certified { cert }),
            prop::collection::vec(wrap(), 0..20).prop_map(|wraps| Response::FileKeyWraps { wraps }),
        ]
    }

    proptest! {
        #[test]
        fn requests_round_trip_through_the_codec(r in request()) {
            codec_round_trip(&r)?;
        }

        #[test]
        fn responses_round_trip_through_the_codec(r in response()) {
            codec_round_trip(&r)?;
        }

        #[test]
        fn requests_round_trip(r in request()) {
            let mut b = Vec::new();
            r.encode(&mut b);
            prop_assert_eq!(Request::decode(&b), Ok(r));
        }

        #[test]
        fn responses_round_trip(r in response()) {
            let mut b = Vec::new();
            r.encode(&mut b);
            prop_assert_eq!(Response::decode(&b), Ok(r));
        }

        #[test]
        fn garbage_never_panics(b in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = Request::decode(&b);
            let _ = Response::decode(&b);
        }
    }

    #[test]
    fn limits_are_enforced() {
        let mut b = vec![VERSION, 2, 0xff, 0xff];
        b.extend(vec![b'a'; MAX_MESSAGE]);
        assert_eq!(Request::decode(&b), Err(MsgError::TooLong { what: "message", len: b.len(), max: MAX_MESSAGE }));
        let b = [VERSION, 2, 0x08, 0x00, b'a'];
        assert_eq!(Request::decode(&b), Err(MsgError::TooLong { what: "group", len: 2048, max: MAX_STRING }));
        let mut b = Vec::new();
        Request::Join { group: "lsim".into() }.encode(&mut b);
        b.push(0);
        assert_eq!(Request::decode(&b), Err(MsgError::Trailing(1)));
    }

    #[test]
    fn error_codes_survive_the_wire() {
        for c in 1u8..=9 {
            let code = ErrorCode::from_u8(c);
            assert_eq!(code as u8, c);
        }
        assert_eq!(ErrorCode::from_u8(0), ErrorCode::Internal);
        assert_eq!(ErrorCode::from_u8(200), ErrorCode::Internal);
    }

    #[test]
    fn file_key_messages_at_their_limits() {
        let key = FileKey::from_bytes([7; 32]);
        let to: Vec<String> = (0..MAX_RECIPIENTS).map(|i| format!("{i:064}")).collect();
        let full = Request::WrapFileKey { group: "g".repeat(MAX_STRING), to: to.clone(), key: key.clone() };
        let mut b = Vec::new();
        full.encode(&mut b);
        assert!(b.len() <= MAX_MESSAGE, "{} bytes", b.len());
        assert_eq!(Request::decode(&b), Ok(full));
        // One more name is cut at the limit when encoding and refused when read.
        let mut more = to.clone();
        more.push("extra".into());
        Request::WrapFileKey { group: "lsim".into(), to: more, key: key.clone() }.encode(&mut b);
        assert_eq!(Request::decode(&b), Ok(Request::WrapFileKey { group: "lsim".into(), to, key: key.clone() }));
        let mut over = vec![VERSION, 6, 0, 0];
        over.extend_from_slice(key.as_bytes());
        over.extend_from_slice(&(MAX_RECIPIENTS as u16 + 1).to_be_bytes());
        assert_eq!(
            Request::decode(&over),
            Err(MsgError::TooLong { what: "recipients", len: MAX_RECIPIENTS + 1, max: MAX_RECIPIENTS })
        );
        // A count past the data is a truncation, not an allocation.
        over.truncate(over.len() - 2);
        over.extend_from_slice(&1000u16.to_be_bytes());
        over.extend_from_slice(&[0, 1, b'a']);
        assert_eq!(Request::decode(&over), Err(MsgError::Truncated("recipient")));

        let wraps = vec![Wrap { member: u64::MAX, sealed: [0xee; WRAP_LEN] }; MAX_RECIPIENTS];
        let full = Response::FileKeyWraps { wraps };
        full.encode(&mut b);
        assert!(b.len() <= MAX_MESSAGE, "{} bytes", b.len());
        assert_eq!(Response::decode(&b), Ok(full));
        let mut short = vec![VERSION, 6];
        short.extend_from_slice(&(MAX_RECIPIENTS as u16).to_be_bytes());
        short.extend_from_slice(&[0; WRAP_ENCODED_LEN + 3]);
        assert_eq!(Response::decode(&short), Err(MsgError::Truncated("wrap member")));
        short[3] = 0xff;
        assert!(matches!(Response::decode(&short), Err(MsgError::TooLong { what: "wraps", .. })));
    }

    fn path(leaf_version: u32, epoch: u32) -> MemberPath {
        MemberPath {
            group: 5,
            epoch,
            member: MemberId(7),
            leaf: NodeId(11),
            leaf_version,
            keys: vec![PathKey { node: NodeId(0), version: epoch, key: SecretKey::from_bytes([1; 32]) }],
        }
    }

    fn past(epochs: impl IntoIterator<Item = u32>) -> Vec<(u32, SecretKey)> {
        epochs.into_iter().map(|e| (e, SecretKey::from_bytes([e as u8; 32]))).collect()
    }

    fn keys(path: MemberPath, history: Vec<(u32, SecretKey)>) -> Response {
        Response::Keys { suite: 1, path, revoked: vec!["carol".into()], history }
    }

    /// A `Keys` answer's bytes, and where its history (the count) starts.
    fn keys_bytes(resp: &Response) -> (Vec<u8>, usize) {
        let mut b = Vec::new();
        resp.encode(&mut b);
        let Response::Keys { path, revoked, .. } = resp else { unreachable!() };
        let at = 2 + 25 + 1 + path.keys.len() * 40 + 2 + revoked.iter().map(|n| 1 + n.len()).sum::<usize>();
        (b, at)
    }

    #[test]
    fn keys_carry_the_history_of_the_membership() {
        let full = keys(path(3, 9), past(3..9));
        let (b, at) = keys_bytes(&full);
        assert_eq!(b.len(), at + 2 + 6 * HISTORY_ENTRY_LEN);
        assert_eq!(Response::decode(&b), Ok(full));
        let none = keys(path(9, 9), Vec::new());
        assert_eq!(Response::decode(&keys_bytes(&none).0), Ok(none));
        // The largest answer fits a message and reads back.
        let long = keys(path(0, 5000), past(5000 - MAX_KEYS_HISTORY as u32..5000));
        let (b, _) = keys_bytes(&long);
        assert!(b.len() <= MAX_MESSAGE);
        assert_eq!(Response::decode(&b), Ok(long));
        // The encoder carries only what the decoder takes: the newest
        // MAX_KEYS_HISTORY, before the path's epoch, in order.
        let over = keys(path(0, 5000), past(3000..5000));
        let Ok(Response::Keys { history, .. }) = Response::decode(&keys_bytes(&over).0) else { panic!() };
        assert_eq!(history.len(), MAX_KEYS_HISTORY);
        assert_eq!(history.first().map(|h| h.0), Some(5000 - MAX_KEYS_HISTORY as u32));
        let stray = keys(path(3, 9), past([1, 2, 3, 5, 4, 9, 12]));
        let Ok(Response::Keys { history, .. }) = Response::decode(&keys_bytes(&stray).0) else { panic!() };
        assert_eq!(history.iter().map(|h| h.0).collect::<Vec<_>>(), [1, 2, 3, 5]);
    }

    #[test]
    fn keys_with_a_bad_history_are_refused() {
        let (good, at) = keys_bytes(&keys(path(3, 9), past([3, 5])));
        let entry = |b: &mut Vec<u8>, i: usize, epoch: u32| {
            let o = at + 2 + i * HISTORY_ENTRY_LEN;
            b[o..o + 4].copy_from_slice(&epoch.to_be_bytes());
        };
        let mut b = good.clone();
        entry(&mut b, 1, 3);
        assert_eq!(Response::decode(&b), Err(MsgError::HistoryOrder { epoch: 3, after: 3 }));
        entry(&mut b, 0, 4);
        assert_eq!(Response::decode(&b), Err(MsgError::HistoryOrder { epoch: 3, after: 4 }));
        let mut b = good.clone();
        entry(&mut b, 1, 9);
        assert_eq!(Response::decode(&b), Err(MsgError::HistoryRange { epoch: 9, current: 9 }));
        entry(&mut b, 1, u32::MAX);
        assert_eq!(Response::decode(&b), Err(MsgError::HistoryRange { epoch: u32::MAX, current: 9 }));
        // Too many entries: refused on the count, before any is read.
        let mut b = good[..at].to_vec();
        b.extend_from_slice(&(MAX_KEYS_HISTORY as u16 + 1).to_be_bytes());
        assert_eq!(
            Response::decode(&b),
            Err(MsgError::TooLong { what: "history", len: MAX_KEYS_HISTORY + 1, max: MAX_KEYS_HISTORY })
        );
        // A count past the data is a truncation, not an allocation.
        b[at..at + 2].copy_from_slice(&1000u16.to_be_bytes());
        b.extend_from_slice(&3u32.to_be_bytes());
        assert_eq!(Response::decode(&b), Err(MsgError::Truncated("history key")));
        // Every cut of a good answer is refused, without a panic.
        for len in 0..good.len() {
            assert!(Response::decode(&good[..len]).is_err(), "cut at {len}");
        }
        assert!(matches!(Response::decode(&good[..at + 1]), Err(MsgError::Truncated("history"))));
        assert!(matches!(Response::decode(&good[..at + 4]), Err(MsgError::Truncated("history epoch"))));
    }

    #[test]
    fn secrets_in_requests_never_print() {
        let hello = Request::Hello { user: "ayen".into(), password: "hunter2".into() };
        assert!(!format!("{hello:?}").contains("hunter2"), "{hello:?}");
        let key = FileKey::from_bytes([0x5a; 32]);
        let req = Request::WrapFileKey { group: "lsim".into(), to: vec!["ganesh".into()], key };
        let shown = format!("{req:?}");
        assert!(shown.contains("ganesh") && shown.contains("FileKey(..)") && !shown.contains("90"), "{shown}");
    }
}
