//! XEP-0198 stream management, sans-IO: the counts of stanzas each side
//! handled, the stanzas sent and not yet acknowledged (resent after a
//! resumption, so a dropped TCP connection loses nothing), and the
//! protocol's elements.
//!
//! Owns the counting rules (32-bit, wrapping, XEP-0198 §4) and the bound on
//! what is kept for resending. It must not touch connections, timers or
//! sessions: the client and the server drivers decide when to enable,
//! request acks, detach and resume.

use std::collections::VecDeque;

use super::element::Element;
use super::stream::NS_CLIENT;

/// XEP-0198's namespace.
pub const NS_SM: &str = "urn:xmpp:sm:3";

/// Whether `e` counts as a stanza (XEP-0198 counts `message`, `presence`
/// and `iq` only, not its own elements).
pub fn is_stanza(e: &Element) -> bool {
    e.ns == NS_CLIENT && matches!(e.name.as_str(), "message" | "presence" | "iq")
}

/// `<enable resume='true'/>`.
pub fn enable() -> Element {
    Element::new("enable", NS_SM).attr("resume", "true")
}

/// `<enabled id resume max/>`.
pub fn enabled(id: &str, max_secs: u64) -> Element {
    Element::new("enabled", NS_SM).attr("id", id).attr("resume", "true").attr("max", max_secs.to_string())
}

/// `<r/>`: please acknowledge.
pub fn request() -> Element {
    Element::new("r", NS_SM)
}

/// `<a h/>`: we handled `h` stanzas.
pub fn ack(h: u32) -> Element {
    Element::new("a", NS_SM).attr("h", h.to_string())
}

/// `<resume previd h/>`.
pub fn resume(previd: &str, h: u32) -> Element {
    Element::new("resume", NS_SM).attr("previd", previd).attr("h", h.to_string())
}

/// `<resumed previd h/>`.
pub fn resumed(previd: &str, h: u32) -> Element {
    Element::new("resumed", NS_SM).attr("previd", previd).attr("h", h.to_string())
}

/// `<failed/>` with a stanza error condition (and, when known, how many
/// of ours the other side had, so the rest can be told lost).
pub fn failed(condition: &str, h: Option<u32>) -> Element {
    let mut e = Element::new("failed", NS_SM);
    if let Some(h) = h {
        e = e.attr("h", h.to_string());
    }
    e.child(Element::new(condition, super::hub::NS_STANZAS))
}

/// The `h` of an `<a/>`, `<resume/>` or `<resumed/>`.
pub fn h_of(e: &Element) -> Option<u32> {
    e.get_attr("h")?.trim().parse().ok()
}

/// Why an acknowledgement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// It acknowledges stanzas never sent (XEP-0198 §4: `undefined-condition`).
    #[error("acknowledged {h} stanzas, but only {sent} were sent")]
    TooMany {
        /// What it said.
        h: u32,
        /// What was sent.
        sent: u32,
    },
}

/// One side's stanzas sent and not yet acknowledged, oldest first.
#[derive(Debug, Clone)]
pub struct Unacked<T> {
    /// Stanzas sent since enabling (wrapping).
    sent: u32,
    queue: VecDeque<(T, usize)>,
    bytes: usize,
    max_bytes: usize,
}

impl<T: Clone> Unacked<T> {
    /// Keeps at most `max_bytes` (as the caller weighs each stanza).
    pub fn new(max_bytes: usize) -> Unacked<T> {
        Unacked { sent: 0, queue: VecDeque::new(), bytes: 0, max_bytes }
    }

    /// A stanza of `bytes` went out; false (and not kept) if keeping it
    /// would pass the bound: the session can no longer promise resumption.
    pub fn push(&mut self, stanza: T, bytes: usize) -> bool {
        if self.bytes + bytes > self.max_bytes && !self.queue.is_empty() {
            return false;
        }
        self.sent = self.sent.wrapping_add(1);
        self.bytes += bytes;
        self.queue.push_back((stanza, bytes));
        true
    }

    /// The other side handled `h` stanzas: those are forgotten.
    pub fn ack(&mut self, h: u32) -> Result<(), AckError> {
        let acked = self.sent.wrapping_sub(self.queue.len() as u32);
        let newly = h.wrapping_sub(acked);
        if newly as usize > self.queue.len() {
            return Err(AckError::TooMany { h, sent: self.sent });
        }
        for _ in 0..newly {
            if let Some((_, b)) = self.queue.pop_front() {
                self.bytes -= b;
            }
        }
        Ok(())
    }

    /// What is still unacknowledged, oldest first (to resend).
    pub fn pending(&self) -> impl Iterator<Item = &T> {
        self.queue.iter().map(|(t, _)| t)
    }

    /// How many are unacknowledged.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether all are acknowledged.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Stanzas sent since enabling (wrapping), as `h` would count them.
    pub fn sent(&self) -> u32 {
        self.sent
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn acks_forget_what_was_handled_and_the_rest_is_resent() {
        let mut u = Unacked::new(1 << 20);
        for n in 0..5 {
            assert!(u.push(n, 10));
        }
        u.ack(2).unwrap();
        assert_eq!(u.pending().copied().collect::<Vec<_>>(), [2, 3, 4]);
        u.ack(2).unwrap();
        assert_eq!(u.len(), 3, "an old ack changes nothing");
        assert_eq!(u.ack(9), Err(AckError::TooMany { h: 9, sent: 5 }));
        u.ack(5).unwrap();
        assert!(u.is_empty());
    }

    #[test]
    fn what_is_kept_is_bounded() {
        let mut u = Unacked::new(25);
        assert!(u.push("a", 10));
        assert!(u.push("b", 10));
        assert!(!u.push("c", 10));
        assert_eq!(u.sent(), 2);
        u.ack(1).unwrap();
        assert!(u.push("c", 10));
        // One stanza larger than the bound still goes into an empty queue.
        let mut big = Unacked::new(5);
        assert!(big.push("x", 50));
    }

    #[test]
    fn elements_and_counts() {
        assert!(is_stanza(&Element::new("message", NS_CLIENT)));
        assert!(!is_stanza(&request()));
        assert_eq!(h_of(&ack(7)), Some(7));
        assert_eq!(h_of(&resume("abc", u32::MAX)), Some(u32::MAX));
        assert_eq!(h_of(&Element::new("a", NS_SM).attr("h", "-1")), None);
    }

    proptest! {
        /// Counting wraps at 2^32 like the other side's, and an ack is
        /// accepted exactly when it is within what was sent.
        #[test]
        fn counts_wrap(start in any::<u32>(), n in 0u32..50, acked in 0u32..60) {
            let mut u: Unacked<u32> = Unacked::new(usize::MAX);
            u.sent = start;
            for i in 0..n {
                u.push(i, 1);
            }
            let h = start.wrapping_add(acked);
            prop_assert_eq!(u.ack(h).is_ok(), acked <= n);
            if acked <= n {
                prop_assert_eq!(u.len() as u32, n - acked);
            }
        }
    }
}
