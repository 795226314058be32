//! The registrar protocol's messages and their encoding.
//!
//! Owns what a client and the key server say to each other over the QUIC
//! channel: one request and one response per bidirectional stream, each a
//! version byte, a type byte and fields, with every length bounded and a
//! reader that never panics. It does not know the server's state.

use thiserror::Error;

use crate::key::SecretKey;
use crate::tree::{MemberId, MemberPath, NodeId, PathKey};

/// Protocol version carried in every message.
pub const VERSION: u8 = 1;
/// Largest message either side reads.
pub const MAX_MESSAGE: usize = 16 * 1024;
/// Longest string field (user names, passwords, group names, error text).
pub const MAX_STRING: usize = 1024;
/// Most path keys in one message (a path of a tree of degree ≥ 2 with 2^32 members is shorter).
pub const MAX_PATH: usize = 64;

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
}

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Eq)]
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
            _ => ErrorCode::Internal,
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], MsgError> {
        if self.buf.len() < n {
            return Err(MsgError::Truncated(what));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, MsgError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, MsgError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, MsgError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4, what)?);
        Ok(u32::from_be_bytes(a))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, MsgError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_be_bytes(a))
    }
    fn key(&mut self, what: &'static str) -> Result<[u8; 32], MsgError> {
        let mut a = [0u8; 32];
        a.copy_from_slice(self.take(32, what)?);
        Ok(a)
    }
    fn string(&mut self, what: &'static str) -> Result<String, MsgError> {
        let len = usize::from(self.u16(what)?);
        if len > MAX_STRING {
            return Err(MsgError::TooLong { what, len, max: MAX_STRING });
        }
        let b = self.take(len, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| MsgError::Utf8(what))
    }
    fn finish(&self) -> Result<(), MsgError> {
        if self.buf.is_empty() { Ok(()) } else { Err(MsgError::Trailing(self.buf.len())) }
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
    out.clear();
    out.push(VERSION);
    out.push(t);
}

fn header<'a>(b: &'a [u8]) -> Result<(u8, Reader<'a>), MsgError> {
    if b.len() > MAX_MESSAGE {
        return Err(MsgError::TooLong { what: "message", len: b.len(), max: MAX_MESSAGE });
    }
    let mut r = Reader { buf: b };
    let v = r.u8("version")?;
    if v != VERSION {
        return Err(MsgError::Version(v));
    }
    let t = r.u8("type")?;
    Ok((t, r))
}

impl Request {
    /// Encodes into `out` (cleared first).
    pub fn encode(&self, out: &mut Vec<u8>) {
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
        }
    }

    /// Decodes one request.
    pub fn decode(b: &[u8]) -> Result<Request, MsgError> {
        let (t, mut r) = header(b)?;
        let req = match t {
            1 => Request::Hello { user: r.string("user")?, password: r.string("password")? },
            2 => Request::Join { group: r.string("group")? },
            3 => Request::Leave { group: r.string("group")? },
            4 => Request::Resync { group: r.string("group")? },
            5 => Request::Certify { key: r.key("signing key")? },
            _ => return Err(MsgError::Type(t)),
        };
        r.finish()?;
        Ok(req)
    }
}

impl Response {
    /// Encodes into `out` (cleared first).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Response::Welcome { member, individual_key, server_key } => {
                start(out, 1);
                out.extend_from_slice(&member.to_be_bytes());
                out.extend_from_slice(individual_key.as_bytes());
                out.extend_from_slice(server_key);
            }
            Response::Keys { suite, path } => {
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
        }
    }

    /// Decodes one response.
    pub fn decode(b: &[u8]) -> Result<Response, MsgError> {
        let (t, mut r) = header(b)?;
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
                Response::Keys { suite, path: MemberPath { group, epoch, member, leaf, leaf_version, keys } }
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
            _ => return Err(MsgError::Type(t)),
        };
        r.finish()?;
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        ]
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
            (any::<u8>(), path).prop_map(|(suite, path)| Response::Keys { suite, path }),
            any::<u32>().prop_map(|epoch| Response::Left { epoch }),
            (1u8..9, text()).prop_map(|(c, message)| Response::Error { code: ErrorCode::from_u8(c), message }),
            prop::collection::vec(any::<u8>(), 0..=crate::cert::MAX_CERT).prop_map(|cert| Response::Certified { cert }),
        ]
    }

    proptest! {
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
        b.extend(vec![b'a'; 0xffff]);
        assert_eq!(Request::decode(&b), Err(MsgError::TooLong { what: "message", len: b.len(), max: MAX_MESSAGE }));
        let b = [VERSION, 2, 0x08, 0x00, b'a'];
        assert_eq!(Request::decode(&b), Err(MsgError::TooLong { what: "group", len: 2048, max: MAX_STRING }));
        let mut b = Vec::new();
        Request::Join { group: "lsim".into() }.encode(&mut b);
        b.push(0);
        assert_eq!(Request::decode(&b), Err(MsgError::Trailing(1)));
    }
}
