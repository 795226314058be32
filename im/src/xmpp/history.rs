//! A room's history (XEP-0045 §7.2.15), sans-IO: the last groupchat
//! messages of a room, bounded in count and bytes, and the part of them a
//! joiner asks for (`maxstanzas`, `maxchars`, `seconds`, `since`), each
//! stamped with when the room got it (XEP-0203 delay, XEP-0082 time).
//!
//! Owns the stored messages and the request's meaning. Time is an
//! argument (Unix milliseconds). It must not route or decide who may
//! join: the hub asks it what to replay.

use std::collections::VecDeque;

use super::element::Element;
use super::room::NS_DELAY;

/// Messages kept per room by default.
pub const DEFAULT_STANZAS: usize = 20;
/// Bytes (serialized) kept per room by default.
pub const DEFAULT_BYTES: usize = 1 << 20;
/// Messages replayed to a joiner that does not say how many it wants.
pub const DEFAULT_REPLAY: usize = 20;

/// What a joiner asked for, from the `<history/>` element of its join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Request {
    /// At most this many messages.
    pub max_stanzas: Option<usize>,
    /// At most this many characters of serialized messages (the newest
    /// that fit whole).
    pub max_chars: Option<usize>,
    /// Only messages from the last this many seconds.
    pub seconds: Option<u64>,
    /// Only messages after this time (Unix ms).
    pub since_ms: Option<u64>,
}

/// Why a `<history/>` element was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("history request: {attr}='{value}' is not {wants}")]
pub struct BadRequest {
    /// The attribute.
    pub attr: &'static str,
    /// Its value (truncated).
    pub value: String,
    /// What it should be.
    pub wants: &'static str,
}

impl Request {
    /// The request in a join's `<history/>` element (`None`: no element,
    /// the room's default).
    pub fn parse(history: Option<&Element>) -> Result<Request, BadRequest> {
        let Some(h) = history else {
            return Ok(Request { max_stanzas: Some(DEFAULT_REPLAY), ..Request::default() });
        };
        let number = |attr: &'static str| -> Result<Option<u64>, BadRequest> {
            match h.get_attr(attr) {
                None => Ok(None),
                Some(v) => v.trim().parse::<u64>().map(Some).map_err(|_| BadRequest {
                    attr,
                    value: v.chars().take(32).collect(),
                    wants: "a whole number of 0 or more",
                }),
            }
        };
        let since_ms = match h.get_attr("since") {
            None => None,
            Some(v) => Some(parse_stamp(v).ok_or_else(|| BadRequest {
                attr: "since",
                value: v.chars().take(32).collect(),
                wants: "an XEP-0082 date and time (2026-12-07T03:20:54Z)",
            })?),
        };
        Ok(Request {
            max_stanzas: number("maxstanzas")?.map(|n| n.min(usize::MAX as u64) as usize),
            max_chars: number("maxchars")?.map(|n| n.min(usize::MAX as u64) as usize),
            seconds: number("seconds")?,
            since_ms,
        })
    }
}

/// One stored message: as the room broadcast it, and when.
#[derive(Debug, Clone)]
struct Entry {
    message: Element,
    at_ms: u64,
    bytes: usize,
}

/// A room's history.
#[derive(Debug, Clone)]
pub struct History {
    entries: VecDeque<Entry>,
    bytes: usize,
    max_stanzas: usize,
    max_bytes: usize,
}

impl Default for History {
    fn default() -> History {
        History::new(DEFAULT_STANZAS, DEFAULT_BYTES)
    }
}

impl History {
    /// Keeps at most `max_stanzas` messages and `max_bytes` bytes; the
    /// oldest go first.
    pub fn new(max_stanzas: usize, max_bytes: usize) -> History {
        History { entries: VecDeque::new(), bytes: 0, max_stanzas, max_bytes }
    }

    /// Keeps `message` (a groupchat as the room sent it, `from` its
    /// occupant JID) received at `now_ms`. One larger than the byte bound
    /// is not kept.
    pub fn push(&mut self, message: &Element, now_ms: u64) {
        let bytes = message.to_xml().len();
        if self.max_stanzas == 0 || bytes > self.max_bytes {
            return;
        }
        while self.entries.len() >= self.max_stanzas || self.bytes + bytes > self.max_bytes {
            let Some(old) = self.entries.pop_front() else { break };
            self.bytes -= old.bytes;
        }
        self.bytes += bytes;
        self.entries.push_back(Entry { message: message.clone(), at_ms: now_ms, bytes });
    }

    /// Messages kept now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What `request` asks for at `now_ms`, oldest first, each addressed
    /// `to` and stamped with a delay from `room`.
    pub fn replay(&self, request: &Request, now_ms: u64, room: &str, to: &str) -> Vec<Element> {
        let oldest_ms = match (request.seconds, request.since_ms) {
            (Some(s), Some(t)) => now_ms.saturating_sub(s.saturating_mul(1000)).max(t.saturating_add(1)),
            (Some(s), None) => now_ms.saturating_sub(s.saturating_mul(1000)),
            (None, Some(t)) => t.saturating_add(1),
            (None, None) => 0,
        };
        let mut chars = 0usize;
        let mut chosen: Vec<&Entry> = Vec::new();
        for e in self.entries.iter().rev() {
            if e.at_ms < oldest_ms || request.max_stanzas.is_some_and(|m| chosen.len() >= m) {
                break;
            }
            if request.max_chars.is_some_and(|m| chars + e.bytes > m) {
                break;
            }
            chars += e.bytes;
            chosen.push(e);
        }
        chosen
            .into_iter()
            .rev()
            .map(|e| {
                let mut m = e.message.clone();
                m.set_attr("to", to);
                m.child(Element::new("delay", NS_DELAY).attr("from", room).attr("stamp", format_stamp(e.at_ms)))
            })
            .collect()
    }
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// XEP-0082 date and time in UTC, with milliseconds: `2026-12-07T03:20:54.123Z`.
pub fn format_stamp(unix_ms: u64) -> String {
    let secs = (unix_ms / 1000) as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", s / 3600, s / 60 % 60, s % 60, unix_ms % 1000)
}

/// An XEP-0082 date and time (`CCYY-MM-DDThh:mm:ss[.sss](Z|±hh:mm)`) as
/// Unix milliseconds; `None` if malformed or before 1970.
pub fn parse_stamp(s: &str) -> Option<u64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let t = s.get(r)?;
        t.bytes().all(|c| c.is_ascii_digit()).then(|| t.parse().ok())?
    };
    let (y, mo, d, h, mi, se) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut ms = 0u64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let f = &frac[..digits];
        ms = f.chars().chain("000".chars()).take(3).collect::<String>().parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_s: i64 = match rest {
        "Z" => 0,
        _ => {
            let (sign, hm) = match rest.as_bytes().first()? {
                b'+' => (1, &rest[1..]),
                b'-' => (-1, &rest[1..]),
                _ => return None,
            };
            let (oh, om) = hm.split_once(':')?;
            if oh.len() != 2 || om.len() != 2 {
                return None;
            }
            let (oh, om): (i64, i64) = (oh.parse().ok()?, om.parse().ok()?);
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
    };
    let days = days_from_civil(i64::from(y), mo, d);
    let secs = days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(se) - offset_s;
    u64::try_from(secs).ok().map(|s| s * 1000 + ms)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::xmpp::stream::NS_CLIENT;
    use proptest::prelude::*;

    fn msg(n: usize) -> Element {
        Element::new("message", NS_CLIENT)
            .attr("type", "groupchat")
            .attr("from", "lsim@conference.x/alice")
            .child(Element::new("body", NS_CLIENT).text(format!("message {n}")))
    }

    fn bodies(v: &[Element]) -> Vec<String> {
        v.iter().map(|m| m.get_child("body", NS_CLIENT).unwrap().text_content()).collect()
    }

    #[test]
    fn stamps_are_xep_0082() {
        assert_eq!(format_stamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_stamp(1_796_613_654_123), "2026-12-07T03:20:54.123Z");
        assert_eq!(parse_stamp("2026-12-07T03:20:54.123Z"), Some(1_796_613_654_123));
        assert_eq!(parse_stamp("2026-12-07T04:20:54+01:00"), Some(1_796_613_654_000));
        assert_eq!(parse_stamp("2000-02-29T00:00:00Z"), Some(951_782_400_000));
        for bad in ["", "2026-13-01T00:00:00Z", "2026-12-07 03:20:54Z", "2026-12-07T03:20:54", "1969-12-31T23:59:59Z"] {
            assert_eq!(parse_stamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_room_keeps_the_newest_within_its_bounds() {
        let mut h = History::new(20, 1 << 20);
        for n in 0..30 {
            h.push(&msg(n), 1000 + n as u64);
        }
        assert_eq!(h.len(), 20);
        let all = h.replay(&Request::default(), 5000, "lsim@conference.x", "bob@x/r");
        assert_eq!(bodies(&all).first().map(String::as_str), Some("message 10"));
        let one = msg(0).to_xml().len();
        let mut small = History::new(100, one * 3);
        for n in 0..10 {
            small.push(&msg(n), 0);
        }
        assert_eq!(small.len(), 3, "bounded in bytes");
    }

    #[test]
    fn a_joiner_gets_what_it_asks_for_stamped() {
        let mut h = History::default();
        for n in 0..10 {
            h.push(&msg(n), 1_000_000 + n as u64 * 1000);
        }
        let ask = |attrs: &[(&str, &str)]| {
            let mut e = Element::new("history", crate::xmpp::stanza::NS_MUC);
            for (k, v) in attrs {
                e = e.attr(*k, *v);
            }
            Request::parse(Some(&e)).unwrap()
        };
        let now = 1_010_000;
        let last5 = h.replay(&ask(&[("maxstanzas", "5")]), now, "lsim@conference.x", "bob@x/r");
        assert_eq!(bodies(&last5), ["message 5", "message 6", "message 7", "message 8", "message 9"]);
        let delay = last5[0].get_child("delay", NS_DELAY).unwrap();
        assert_eq!(delay.get_attr("stamp"), Some(format_stamp(1_005_000).as_str()));
        assert_eq!(delay.get_attr("from"), Some("lsim@conference.x"));
        assert_eq!(last5[0].get_attr("to"), Some("bob@x/r"));
        assert!(h.replay(&ask(&[("maxstanzas", "0")]), now, "r", "t").is_empty());
        assert_eq!(h.replay(&ask(&[("seconds", "3")]), now, "r", "t").len(), 3);
        let since = format_stamp(1_007_000);
        assert_eq!(bodies(&h.replay(&ask(&[("since", &since)]), now, "r", "t")), ["message 8", "message 9"]);
        let two = msg(9).to_xml().len() * 2;
        assert_eq!(h.replay(&ask(&[("maxchars", &two.to_string())]), now, "r", "t").len(), 2);
        assert_eq!(h.replay(&ask(&[("maxchars", "0")]), now, "r", "t").len(), 0);
        // No <history/> at all: the room's default.
        assert_eq!(h.replay(&Request::parse(None).unwrap(), now, "r", "t").len(), 10);
    }

    #[test]
    fn bad_requests_name_the_attribute() {
        for (attr, value) in [("maxstanzas", "-1"), ("maxchars", "lots"), ("seconds", "1e9"), ("since", "yesterday")] {
            let e = Element::new("history", crate::xmpp::stanza::NS_MUC).attr(attr, value);
            let err = Request::parse(Some(&e)).unwrap_err();
            assert_eq!(err.attr, attr);
        }
    }

    proptest! {
        #[test]
        fn stamps_round_trip(ms in 0u64..253_402_300_799_999) {
            prop_assert_eq!(parse_stamp(&format_stamp(ms)), Some(ms));
        }

        #[test]
        fn parsing_never_panics(s in ".{0,40}") {
            let _ = parse_stamp(&s);
        }
    }
}
