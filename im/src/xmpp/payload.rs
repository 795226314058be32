//! lsim's control payloads in `urn:lsim:0`, carried in groupchat messages
//! and room presence: the group's parameters, file offers, a member's
//! transport status, and chat sealed under the group key (the original
//! system's way of chatting through the room).
//!
//! Owns the element form of each payload and its bounded parsing: a
//! payload from the network that is malformed is an error, never a panic,
//! and strings are length-capped. It must not interpret them (joining the
//! multicast group, fetching keys, decrypting: that is the group client).

use std::net::SocketAddr;

use base64ct::{Base64, Encoding};

use super::element::Element;
use super::stanza::NS_LSIM;

/// The longest text field (names, suites) a payload may carry.
pub const MAX_TEXT: usize = 1024;
/// The largest sealed chat a payload may carry (before base64).
pub const MAX_SEALED: usize = 64 * 1024;

/// Why an element is not a valid payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Not in `urn:lsim:0`, or a name we do not know.
    #[error("not an lsim payload: <{0}>")]
    Unknown(String),
    /// A required attribute is missing.
    #[error("<{0}> needs attribute '{1}'")]
    Missing(&'static str, &'static str),
    /// An attribute does not parse or is out of bounds.
    #[error("<{0}> attribute '{1}' is invalid")]
    Invalid(&'static str, &'static str),
}

/// Who may read what was sent before they joined (the group's history
/// policy), as the room announces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum History {
    /// A member gets only what was sent while it was a member.
    #[default]
    Joined,
    /// A new member also gets the last N objects the group sent (chat and
    /// files), re-sealed for the group of now by the command post's archive.
    Shared(u32),
}

/// The largest N of `shared:N`.
pub const MAX_SHARED: u32 = 10_000;

impl std::fmt::Display for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            History::Joined => f.write_str("joined"),
            History::Shared(n) => write!(f, "shared:{n}"),
        }
    }
}

impl std::str::FromStr for History {
    type Err = String;
    fn from_str(s: &str) -> Result<History, String> {
        match s.split_once(':') {
            None if s == "joined" => Ok(History::Joined),
            Some(("shared", n)) => match n.parse::<u32>() {
                Ok(n) if (1..=MAX_SHARED).contains(&n) => Ok(History::Shared(n)),
                _ => Err(format!("shared:N needs N from 1 to {MAX_SHARED}, not {n:?}")),
            },
            _ => Err(format!("{s:?}: the history policy is joined or shared:N")),
        }
    }
}

/// The group's parameters, published in the room by the key server or an
/// operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupParams {
    /// Multicast group address and port.
    pub group: SocketAddr,
    /// The key server's registrar (QUIC) address.
    pub keyserver: SocketAddr,
    /// SHA-256 of the key server's certificate.
    pub fingerprint: [u8; 32],
    /// Cipher suite name.
    pub suite: String,
    /// The group key epoch current when this was sent.
    pub epoch: u64,
    /// The history policy (attribute `history`; absent: `joined`).
    pub history: History,
}

/// A file about to be streamed to the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOffer {
    /// Offer id, unique per sender.
    pub id: String,
    /// File name as the sender gives it (receivers sanitize it).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content, when the sender knows it up front (the
    /// transport's envelope carries and checks it in any case).
    pub sha256: Option<[u8; 32]>,
    /// The sender's transport node id.
    pub node: u32,
    /// The transport object id carrying it.
    pub object: u64,
}

/// A member's transport status (in its room presence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    /// Transport node id.
    pub node: u32,
    /// The group key epoch it holds.
    pub epoch: u64,
    /// Its measured loss, per mille.
    pub loss_permille: u16,
    /// The region it repairs for, if it is a repairer (members of that
    /// region send it their NACKs).
    pub repairs: Option<String>,
}

/// Chat sealed under the group key, sent through the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedChat {
    /// Message id (for deduplication with the multicast copy).
    pub id: String,
    /// The key epoch it was sealed under.
    pub epoch: u64,
    /// The sealed bytes.
    pub sealed: Vec<u8>,
}

/// One `urn:lsim:0` payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// `<group/>`
    Group(GroupParams),
    /// `<file/>`
    File(FileOffer),
    /// `<status/>`
    Status(MemberStatus),
    /// `<chat/>`
    Chat(SealedChat),
}

fn text<'a>(e: &'a Element, el: &'static str, name: &'static str) -> Result<&'a str, PayloadError> {
    let v = e.get_attr(name).ok_or(PayloadError::Missing(el, name))?;
    if v.len() > MAX_TEXT {
        return Err(PayloadError::Invalid(el, name));
    }
    Ok(v)
}

fn parsed<T: std::str::FromStr>(e: &Element, el: &'static str, name: &'static str) -> Result<T, PayloadError> {
    text(e, el, name)?.parse().map_err(|_| PayloadError::Invalid(el, name))
}

fn digest(e: &Element, el: &'static str, name: &'static str) -> Result<[u8; 32], PayloadError> {
    crate::xmpp::tls::parse_fingerprint(text(e, el, name)?).ok_or(PayloadError::Invalid(el, name))
}

fn hex(d: &[u8; 32]) -> String {
    crate::xmpp::tls::fingerprint_hex(d)
}

impl Payload {
    /// Reads a payload element.
    pub fn parse(e: &Element) -> Result<Payload, PayloadError> {
        if e.ns != NS_LSIM {
            return Err(PayloadError::Unknown(e.name.clone()));
        }
        match e.name.as_str() {
            "group" => Ok(Payload::Group(GroupParams {
                group: parsed(e, "group", "addr")?,
                keyserver: parsed(e, "group", "keyserver")?,
                fingerprint: digest(e, "group", "fingerprint")?,
                suite: text(e, "group", "suite")?.to_string(),
                epoch: parsed(e, "group", "epoch")?,
                history: match e.get_attr("history") {
                    Some(h) => h.parse().map_err(|_| PayloadError::Invalid("group", "history"))?,
                    None => History::Joined,
                },
            })),
            "file" => Ok(Payload::File(FileOffer {
                id: text(e, "file", "id")?.to_string(),
                name: text(e, "file", "name")?.to_string(),
                size: parsed(e, "file", "size")?,
                sha256: match e.get_attr("sha256") {
                    Some(_) => Some(digest(e, "file", "sha256")?),
                    None => None,
                },
                node: parsed(e, "file", "node")?,
                object: parsed(e, "file", "object")?,
            })),
            "status" => Ok(Payload::Status(MemberStatus {
                node: parsed(e, "status", "node")?,
                epoch: parsed(e, "status", "epoch")?,
                loss_permille: parsed::<u16>(e, "status", "loss")?.min(1000),
                repairs: match e.get_attr("repairs") {
                    Some(_) => Some(text(e, "status", "repairs")?.to_string()),
                    None => None,
                },
            })),
            "chat" => {
                let body = e.text_content();
                if body.len() > MAX_SEALED * 4 / 3 + 4 {
                    return Err(PayloadError::Invalid("chat", "content"));
                }
                let compact: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
                Ok(Payload::Chat(SealedChat {
                    id: text(e, "chat", "id")?.to_string(),
                    epoch: parsed(e, "chat", "epoch")?,
                    sealed: Base64::decode_vec(&compact).map_err(|_| PayloadError::Invalid("chat", "content"))?,
                }))
            }
            other => Err(PayloadError::Unknown(other.to_string())),
        }
    }

    /// The element form.
    pub fn to_element(&self) -> Element {
        match self {
            Payload::Group(g) => Element::new("group", NS_LSIM)
                .attr("addr", g.group.to_string())
                .attr("keyserver", g.keyserver.to_string())
                .attr("fingerprint", hex(&g.fingerprint))
                .attr("suite", g.suite.as_str())
                .attr("epoch", g.epoch.to_string())
                .attr("history", g.history.to_string()),
            Payload::File(f) => Element::new("file", NS_LSIM)
                .attr("id", f.id.as_str())
                .attr("name", f.name.as_str())
                .attr("size", f.size.to_string())
                .attr_opt("sha256", f.sha256.as_ref().map(hex))
                .attr("node", f.node.to_string())
                .attr("object", f.object.to_string()),
            Payload::Status(s) => Element::new("status", NS_LSIM)
                .attr("node", s.node.to_string())
                .attr("epoch", s.epoch.to_string())
                .attr("loss", s.loss_permille.to_string())
                .attr_opt("repairs", s.repairs.clone()),
            Payload::Chat(c) => Element::new("chat", NS_LSIM)
                .attr("id", c.id.as_str())
                .attr("epoch", c.epoch.to_string())
                .text(Base64::encode_string(&c.sealed)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn all() -> Vec<Payload> {
        vec![
            Payload::Group(GroupParams {
                group: "239.1.2.3:5000".parse().unwrap(),
                keyserver: "[::1]:4433".parse().unwrap(),
                fingerprint: [7; 32],
                suite: "aes-256-gcm".into(),
                epoch: 42,
                history: History::Shared(50),
            }),
            Payload::File(FileOffer {
                id: "f1".into(),
                name: "map <north> & \"south\".png".into(),
                size: 195 * 1024,
                sha256: Some([9; 32]),
                node: 0xdead,
                object: 7,
            }),
            Payload::Status(MemberStatus { node: 3, epoch: 2, loss_permille: 50, repairs: None }),
            Payload::Status(MemberStatus { node: 4, epoch: 2, loss_permille: 0, repairs: Some("crew-a".into()) }),
            Payload::Chat(SealedChat { id: "m1".into(), epoch: 5, sealed: vec![0, 1, 2, 255] }),
        ]
    }

    #[test]
    fn round_trip() {
        for p in all() {
            assert_eq!(Payload::parse(&p.to_element()).unwrap(), p);
        }
    }

    #[test]
    fn bad_payloads_are_errors() {
        let good = all()[0].to_element();
        let mut no_epoch = good.clone();
        no_epoch.attrs.retain(|(k, _)| k != "epoch");
        assert_eq!(Payload::parse(&no_epoch), Err(PayloadError::Missing("group", "epoch")));
        let bad_addr = good.clone().attr("addr", "nowhere");
        assert_eq!(Payload::parse(&bad_addr), Err(PayloadError::Invalid("group", "addr")));
        let long = all()[1].to_element().attr("name", "x".repeat(MAX_TEXT + 1));
        assert_eq!(Payload::parse(&long), Err(PayloadError::Invalid("file", "name")));
        assert!(matches!(Payload::parse(&Element::new("group", "urn:other")), Err(PayloadError::Unknown(_))));
        assert!(matches!(Payload::parse(&Element::new("what", NS_LSIM)), Err(PayloadError::Unknown(_))));
        let chat = Element::new("chat", NS_LSIM).attr("id", "a").attr("epoch", "1").text("!!notbase64");
        assert_eq!(Payload::parse(&chat), Err(PayloadError::Invalid("chat", "content")));
    }
}
