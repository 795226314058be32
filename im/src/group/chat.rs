//! Chat messages as the group sends them: one transport `Chat` object on
//! multicast, or sealed under the group key in a `urn:lsim:0` payload
//! through the XMPP room. Both carry the same bytes, so a client that gets
//! a message both ways shows it once ([`Dedup`], by message id).
//!
//! Owns the byte format (versioned, every length bounded, UTF-8 checked),
//! deduplication, and the presence beacon members multicast while XMPP is
//! down (it rides as a chat object; its magic tells it apart). It must not touch keys or sockets: sealing is the
//! transport's or [`crate::group`]'s job, display is the caller's.
//!
//! ```text
//! "LSC1" | id: 16 | sent_ms: u64 | from_len: u16 | from | text_len: u32 | text
//! ```
//!
//! `from` is what the sender claims (its nick): the group MAC proves only
//! that a member sent the message, not which one.

use std::collections::{HashSet, VecDeque};

use lsim_keymgmt::cert::now_ms;

/// Magic and version.
const MAGIC: &[u8; 4] = b"LSC1";
/// The longest sender name.
pub const MAX_FROM: usize = 256;
/// The longest text, in bytes.
pub const MAX_TEXT: usize = 16 * 1024;
/// The largest encoded message.
pub const MAX_ENCODED: usize = 4 + 16 + 8 + 2 + MAX_FROM + 4 + MAX_TEXT;

/// Why bytes are not a chat message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    /// Too short, or a length runs past the end.
    #[error("chat message truncated")]
    Truncated,
    /// Not `LSC1`.
    #[error("not a chat message (bad magic or version)")]
    BadMagic,
    /// A length over its bound.
    #[error("chat {0} longer than allowed")]
    TooLong(&'static str),
    /// Not UTF-8.
    #[error("chat {0} is not UTF-8")]
    NotUtf8(&'static str),
    /// Bytes after the text.
    #[error("trailing bytes after the chat message")]
    Trailing,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// Random id, for deduplication.
    pub id: [u8; 16],
    /// Sender's clock at sending, milliseconds since the Unix epoch.
    pub sent_ms: u64,
    /// Sender's name as it claims it.
    pub from: String,
    /// The text.
    pub text: String,
}

impl ChatMessage {
    /// A new message from `from` with a fresh random id and the current
    /// time. Text and name are cut (at a character boundary) to their
    /// bounds.
    pub fn new(from: &str, text: &str) -> ChatMessage {
        let mut id = [0u8; 16];
        // Without system randomness the id falls back to time and text,
        // which only weakens deduplication, never secrecy.
        if getrandom::fill(&mut id).is_err() {
            let t = now_ms().to_le_bytes();
            id[..8].copy_from_slice(&t);
            for (i, b) in text.bytes().take(8).enumerate() {
                id[8 + i] = b;
            }
        }
        ChatMessage { id, sent_ms: now_ms(), from: cut(from, MAX_FROM), text: cut(text, MAX_TEXT) }
    }

    /// The id in hex (for XMPP message ids and display).
    pub fn id_hex(&self) -> String {
        self.id.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The bytes.
    pub fn encode(&self) -> Vec<u8> {
        let from = cut(&self.from, MAX_FROM);
        let text = cut(&self.text, MAX_TEXT);
        let mut out = Vec::with_capacity(34 + from.len() + text.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&self.sent_ms.to_be_bytes());
        out.extend_from_slice(&(from.len() as u16).to_be_bytes());
        out.extend_from_slice(from.as_bytes());
        out.extend_from_slice(&(text.len() as u32).to_be_bytes());
        out.extend_from_slice(text.as_bytes());
        out
    }

    /// Parses bytes from the network.
    pub fn decode(bytes: &[u8]) -> Result<ChatMessage, ChatError> {
        let mut r = bytes;
        let mut take = |n: usize| -> Result<&[u8], ChatError> {
            if r.len() < n {
                return Err(ChatError::Truncated);
            }
            let (head, rest) = r.split_at(n);
            r = rest;
            Ok(head)
        };
        if take(4)? != MAGIC {
            return Err(ChatError::BadMagic);
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(take(16)?);
        let sent_ms = u64::from_be_bytes(take(8)?.try_into().map_err(|_| ChatError::Truncated)?);
        let from_len = u16::from_be_bytes(take(2)?.try_into().map_err(|_| ChatError::Truncated)?) as usize;
        if from_len > MAX_FROM {
            return Err(ChatError::TooLong("sender name"));
        }
        let from = std::str::from_utf8(take(from_len)?).map_err(|_| ChatError::NotUtf8("sender name"))?.to_string();
        let text_len = u32::from_be_bytes(take(4)?.try_into().map_err(|_| ChatError::Truncated)?) as usize;
        if text_len > MAX_TEXT {
            return Err(ChatError::TooLong("text"));
        }
        let text = std::str::from_utf8(take(text_len)?).map_err(|_| ChatError::NotUtf8("text"))?.to_string();
        if !r.is_empty() {
            return Err(ChatError::Trailing);
        }
        Ok(ChatMessage { id, sent_ms, from, text })
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Magic of a presence beacon.
const BEACON: &[u8; 4] = b"LSB1";

/// A member's "I am here" on multicast, sent while XMPP is down so that
/// presence degrades to what the group itself can hear:
/// `"LSB1" | nick_len: u8 | nick`.
pub fn encode_beacon(nick: &str) -> Vec<u8> {
    let nick = cut(nick, u8::MAX as usize);
    let mut out = BEACON.to_vec();
    out.push(nick.len() as u8);
    out.extend_from_slice(nick.as_bytes());
    out
}

/// The nick in a beacon, or `None` if `bytes` is not one.
pub fn decode_beacon(bytes: &[u8]) -> Option<String> {
    let rest = bytes.strip_prefix(BEACON)?;
    let (&len, nick) = rest.split_first()?;
    (nick.len() == usize::from(len)).then(|| std::str::from_utf8(nick).ok().map(str::to_string)).flatten()
}

/// Remembers the ids of the last `capacity` messages shown.
#[derive(Debug, Clone)]
pub struct Dedup {
    seen: HashSet<[u8; 16]>,
    order: VecDeque<[u8; 16]>,
    capacity: usize,
}

impl Dedup {
    /// Remembers up to `capacity` ids (at least 1).
    pub fn new(capacity: usize) -> Dedup {
        Dedup { seen: HashSet::new(), order: VecDeque::new(), capacity: capacity.max(1) }
    }

    /// True the first time `id` is seen (show the message), false after.
    pub fn first_time(&mut self, id: [u8; 16]) -> bool {
        if !self.seen.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_bounds() {
        let m = ChatMessage::new("ålice", "Wind shifted: pull back to the ridge ⛰");
        assert_eq!(ChatMessage::decode(&m.encode()).unwrap(), m);
        let long = ChatMessage::new(&"n".repeat(1000), &"é".repeat(MAX_TEXT));
        assert_eq!(long.from.len(), MAX_FROM);
        assert!(long.text.len() <= MAX_TEXT && long.text.chars().all(|c| c == 'é'));
        assert!(long.encode().len() <= MAX_ENCODED);
        assert_ne!(ChatMessage::new("a", "b").id, ChatMessage::new("a", "b").id);
    }

    #[test]
    fn bad_bytes_are_errors() {
        let m = ChatMessage::new("bob", "hi").encode();
        assert_eq!(ChatMessage::decode(&m[..m.len() - 1]), Err(ChatError::Truncated));
        assert_eq!(ChatMessage::decode(b"LSC2"), Err(ChatError::BadMagic));
        let mut trailing = m.clone();
        trailing.push(0);
        assert_eq!(ChatMessage::decode(&trailing), Err(ChatError::Trailing));
        let mut bad_utf8 = m.clone();
        let at = bad_utf8.len() - 1;
        bad_utf8[at] = 0xff;
        assert_eq!(ChatMessage::decode(&bad_utf8), Err(ChatError::NotUtf8("text")));
        let mut huge = m[..28].to_vec();
        huge.extend_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(ChatMessage::decode(&huge), Err(ChatError::TooLong("sender name")));
    }

    #[test]
    fn beacons_round_trip_and_are_not_chat() {
        let b = encode_beacon("crew-2 ⛑");
        assert_eq!(decode_beacon(&b).as_deref(), Some("crew-2 ⛑"));
        assert!(ChatMessage::decode(&b).is_err());
        assert_eq!(decode_beacon(&ChatMessage::new("a", "b").encode()), None);
        assert_eq!(decode_beacon(&b[..b.len() - 1]), None);
    }

    #[test]
    fn dedup_remembers_a_bounded_window() {
        let mut d = Dedup::new(2);
        assert!(d.first_time([1; 16]));
        assert!(!d.first_time([1; 16]));
        assert!(d.first_time([2; 16]));
        assert!(d.first_time([3; 16]));
        // [1] fell out of the window.
        assert!(d.first_time([1; 16]));
        assert!(d.seen.len() <= 2);
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = ChatMessage::decode(&bytes);
        }

        #[test]
        fn any_message_round_trips(from in ".{0,40}", text in ".{0,400}", sent_ms in any::<u64>()) {
            let mut m = ChatMessage::new(&from, &text);
            m.sent_ms = sent_ms;
            prop_assert_eq!(ChatMessage::decode(&m.encode()).unwrap(), m);
        }
    }
}
