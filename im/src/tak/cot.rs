//! Cursor-on-Target events as TAK clients (ATAK, WinTAK, iTAK) exchange
//! them: position reports (PLI) and GeoChat, in CoT XML.
//!
//! Owns the event model, reading it from an XML document (`xml::parse`)
//! with every field checked (types, coordinates, times, lengths), and
//! writing it. It must not decide what crosses into the group (the bridge
//! does) nor touch sockets.

use crate::xmpp::element::{Element, Node};

use super::xml::{self, XmlError};

/// The longest uid, callsign, chatroom or type kept.
pub const MAX_NAME: usize = 256;
/// The longest chat text kept (bytes).
pub const MAX_TEXT: usize = 4096;
/// The CoT type of a friendly ground unit (what ATAK sends as its PLI).
pub const PLI_TYPE: &str = "a-f-G-U-C";
/// The CoT type of a GeoChat message.
pub const CHAT_TYPE: &str = "b-t-f";
/// "Unknown" for height and errors, as TAK writes it.
pub const UNKNOWN: f64 = 9_999_999.0;

/// Why a document is not a CoT event we take.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CotError {
    /// The XML itself.
    #[error(transparent)]
    Xml(#[from] XmlError),
    /// Not an `<event>`, or a field missing or out of its range.
    #[error("CoT event: {0}")]
    Invalid(String),
}

fn invalid(s: impl Into<String>) -> CotError {
    CotError::Invalid(s.into())
}

/// Where an event is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Degrees north, -90 to 90.
    pub lat: f64,
    /// Degrees east, -180 to 180.
    pub lon: f64,
    /// Height above the ellipsoid, metres (`UNKNOWN` if not known).
    pub hae: f64,
    /// Circular error, metres.
    pub ce: f64,
    /// Linear error, metres.
    pub le: f64,
}

impl Point {
    /// A point with height and errors unknown.
    pub fn at(lat: f64, lon: f64) -> Point {
        Point { lat, lon, hae: UNKNOWN, ce: UNKNOWN, le: UNKNOWN }
    }
}

/// A GeoChat message's details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeoChat {
    /// The chatroom (ATAK's "All Chat Rooms", or a named group).
    pub chatroom: String,
    /// Who wrote it, as shown.
    pub sender_callsign: String,
    /// The writer's uid.
    pub sender_uid: String,
    /// The message's id.
    pub message_id: String,
    /// The text.
    pub text: String,
}

/// One CoT event.
#[derive(Debug, Clone, PartialEq)]
pub struct CotEvent {
    /// The event's uid (a unit's stays the same across its reports).
    pub uid: String,
    /// Its CoT type, e.g. `a-f-G-U-C` or `b-t-f`.
    pub kind: String,
    /// How it was made, e.g. `m-g` (machine, GPS) or `h-e` (human, entered).
    pub how: String,
    /// When it was made, ms since the Unix epoch.
    pub time_ms: u64,
    /// From when it holds.
    pub start_ms: u64,
    /// Until when it holds.
    pub stale_ms: u64,
    /// Where.
    pub point: Point,
    /// The unit's callsign (`<contact callsign>`), if given.
    pub callsign: Option<String>,
    /// The chat, for a GeoChat event.
    pub chat: Option<GeoChat>,
}

impl CotEvent {
    /// A position report of unit `uid` called `callsign`, valid for `stale_s`.
    pub fn pli(uid: &str, callsign: &str, point: Point, now_ms: u64, stale_s: u64) -> CotEvent {
        CotEvent {
            uid: uid.into(),
            kind: PLI_TYPE.into(),
            how: "m-g".into(),
            time_ms: now_ms,
            start_ms: now_ms,
            stale_ms: now_ms + stale_s * 1000,
            point,
            callsign: Some(callsign.into()),
            chat: None,
        }
    }

    /// A GeoChat message from `sender_uid` (`callsign`) to `chatroom`.
    pub fn geochat(
        sender_uid: &str,
        callsign: &str,
        chatroom: &str,
        message_id: &str,
        text: &str,
        now_ms: u64,
    ) -> CotEvent {
        CotEvent {
            uid: format!("GeoChat.{sender_uid}.{chatroom}.{message_id}"),
            kind: CHAT_TYPE.into(),
            how: "h-g-i-g-o".into(),
            time_ms: now_ms,
            start_ms: now_ms,
            stale_ms: now_ms + 24 * 3600 * 1000,
            point: Point { lat: 0.0, lon: 0.0, hae: UNKNOWN, ce: UNKNOWN, le: UNKNOWN },
            callsign: None,
            chat: Some(GeoChat {
                chatroom: chatroom.into(),
                sender_callsign: callsign.into(),
                sender_uid: sender_uid.into(),
                message_id: message_id.into(),
                text: text.into(),
            }),
        }
    }

    /// Reads one event from a CoT XML document.
    pub fn from_xml(bytes: &[u8]) -> Result<CotEvent, CotError> {
        let root = xml::parse(bytes)?;
        CotEvent::from_element(&root)
    }

    /// Reads one event from its element (also how TAK Protocol v1 carries
    /// the details it has no field for).
    pub fn from_element(root: &Element) -> Result<CotEvent, CotError> {
        if root.name != "event" {
            return Err(invalid(format!("the root is <{}>, not <event>", root.name)));
        }
        let attr = |el: &Element, name: &str| -> Result<String, CotError> {
            let v = el.get_attr(name).ok_or_else(|| invalid(format!("<{}> has no {name}", el.name)))?;
            name_checked(v, name)
        };
        let kind = attr(root, "type")?;
        if !kind.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
            return Err(invalid(format!("type {kind:?}")));
        }
        let point_el = child(root, "point").ok_or_else(|| invalid("no <point>"))?;
        let num = |name: &str| -> Result<f64, CotError> {
            let v = point_el.get_attr(name).ok_or_else(|| invalid(format!("<point> has no {name}")))?;
            let x: f64 = v.trim().parse().map_err(|_| invalid(format!("{name} {v:?}")))?;
            if x.is_finite() { Ok(x) } else { Err(invalid(format!("{name} {v:?}"))) }
        };
        let point = Point { lat: num("lat")?, lon: num("lon")?, hae: num("hae")?, ce: num("ce")?, le: num("le")? };
        if !(-90.0..=90.0).contains(&point.lat) || !(-180.0..=180.0).contains(&point.lon) {
            return Err(invalid(format!("position {}, {} off the globe", point.lat, point.lon)));
        }
        let time = |name: &str| -> Result<u64, CotError> {
            let v = root.get_attr(name).ok_or_else(|| invalid(format!("<event> has no {name}")))?;
            parse_time(v).ok_or_else(|| invalid(format!("{name} {v:?}")))
        };
        let (time_ms, start_ms, stale_ms) = (time("time")?, time("start")?, time("stale")?);
        let detail = child(root, "detail");
        let callsign = match detail.and_then(|d| child(d, "contact")).and_then(|c| c.get_attr("callsign")) {
            Some(c) => Some(name_checked(c, "callsign")?),
            None => None,
        };
        let chat = match detail.and_then(|d| child(d, "__chat")) {
            Some(c) => {
                let remarks = detail.and_then(|d| child(d, "remarks")).map(text_of).unwrap_or_default();
                if remarks.len() > MAX_TEXT {
                    return Err(invalid("chat text over its bound"));
                }
                let sender_uid = match c.elements().find(|e| e.name == "chatgrp").and_then(|g| g.get_attr("uid0")) {
                    Some(u) => name_checked(u, "uid0")?,
                    None => String::new(),
                };
                Some(GeoChat {
                    chatroom: attr(c, "chatroom")?,
                    sender_callsign: attr(c, "senderCallsign")?,
                    sender_uid,
                    message_id: c
                        .get_attr("messageId")
                        .map(|m| name_checked(m, "messageId"))
                        .transpose()?
                        .unwrap_or_default(),
                    text: remarks,
                })
            }
            None => None,
        };
        Ok(CotEvent {
            uid: attr(root, "uid")?,
            kind,
            how: root.get_attr("how").map(|h| name_checked(h, "how")).transpose()?.unwrap_or_default(),
            time_ms,
            start_ms,
            stale_ms,
            point,
            callsign,
            chat,
        })
    }

    /// The event as an element.
    pub fn to_element(&self) -> Element {
        let p = &self.point;
        let point = Element::new("point", "")
            .attr("lat", format!("{:.7}", p.lat))
            .attr("lon", format!("{:.7}", p.lon))
            .attr("hae", format!("{:.1}", p.hae))
            .attr("ce", format!("{:.1}", p.ce))
            .attr("le", format!("{:.1}", p.le));
        let mut detail = Element::new("detail", "");
        if let Some(c) = &self.callsign {
            detail = detail.child(Element::new("contact", "").attr("callsign", c.as_str()));
        }
        if let Some(chat) = &self.chat {
            let grp = Element::new("chatgrp", "")
                .attr("uid0", chat.sender_uid.as_str())
                .attr("uid1", chat.chatroom.as_str())
                .attr("id", chat.chatroom.as_str());
            detail = detail
                .child(
                    Element::new("__chat", "")
                        .attr("parent", "RootContactGroup")
                        .attr("groupOwner", "false")
                        .attr("messageId", chat.message_id.as_str())
                        .attr("chatroom", chat.chatroom.as_str())
                        .attr("id", chat.chatroom.as_str())
                        .attr("senderCallsign", chat.sender_callsign.as_str())
                        .child(grp),
                )
                .child(
                    Element::new("link", "")
                        .attr("uid", chat.sender_uid.as_str())
                        .attr("type", PLI_TYPE)
                        .attr("relation", "p-p"),
                )
                .child(
                    Element::new("remarks", "")
                        .attr("source", format!("BAO.F.ATAK.{}", chat.sender_uid))
                        .attr("to", chat.chatroom.as_str())
                        .attr("time", format_time(self.time_ms))
                        .text(chat.text.as_str()),
                );
        }
        Element::new("event", "")
            .attr("version", "2.0")
            .attr("uid", self.uid.as_str())
            .attr("type", self.kind.as_str())
            .attr("how", self.how.as_str())
            .attr("time", format_time(self.time_ms))
            .attr("start", format_time(self.start_ms))
            .attr("stale", format_time(self.stale_ms))
            .child(point)
            .child(detail)
    }

    /// The event as a CoT XML document.
    pub fn to_xml(&self) -> String {
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>{}", self.to_element().to_xml())
    }
}

fn child<'a>(el: &'a Element, name: &str) -> Option<&'a Element> {
    el.elements().find(|e| e.name == name)
}

fn text_of(el: &Element) -> String {
    el.children
        .iter()
        .filter_map(|n| match n {
            Node::Text(t) => Some(t.as_str()),
            Node::Element(_) => None,
        })
        .collect()
}

/// A name-like attribute: bounded, no control characters.
fn name_checked(v: &str, what: &str) -> Result<String, CotError> {
    if v.len() > MAX_NAME || v.chars().any(char::is_control) {
        return Err(invalid(format!("{what} too long or with control characters")));
    }
    Ok(v.to_string())
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

/// `2026-12-07T20:00:00.000Z` (UTC, milliseconds).
pub fn format_time(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", s / 3600, s % 3600 / 60, s % 60, ms % 1000)
}

/// Reads `YYYY-MM-DDTHH:MM:SS[.fff…]Z` (UTC) as ms since the Unix epoch.
pub fn parse_time(v: &str) -> Option<u64> {
    let b = v.as_bytes();
    if b.len() < 20 || b.len() > 40 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = v.get(r)?;
        if s.bytes().all(|c| c.is_ascii_digit()) { s.parse().ok() } else { None }
    };
    let (y, mo, d, h, mi, s) = (n(0..4)?, n(5..7)?, n(8..10)?, n(11..13)?, n(14..16)?, n(17..19)?);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let rest = v.get(19..)?;
    let frac = rest.strip_suffix('Z')?;
    let ms = match frac.strip_prefix('.') {
        Some(f) if !f.is_empty() && f.bytes().all(|c| c.is_ascii_digit()) => {
            let mut digits: String = f.chars().take(3).collect();
            while digits.len() < 3 {
                digits.push('0');
            }
            digits.parse::<u64>().ok()?
        }
        Some(_) => return None,
        None if frac.is_empty() => 0,
        None => return None,
    };
    let days = days_from_civil(i64::from(y), mo, d);
    let secs = days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s);
    u64::try_from(secs).ok().map(|s| s * 1000 + ms)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A position report as ATAK 4.x writes one (fields it adds that we do not read included).
    const ATAK_PLI: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><event version="2.0" uid="ANDROID-5d1c7a" type="a-f-G-U-C" time="2026-12-07T20:01:02.345Z" start="2026-12-07T20:01:02.345Z" stale="2026-12-07T20:07:17.345Z" how="m-g"><point lat="47.6205063" lon="-122.3492774" hae="56.3" ce="9.9" le="9999999.0"/><detail><takv os="34" version="4.10.0" device="PIXEL" platform="ATAK-CIV"/><contact endpoint="*:-1:stcp" callsign="ENGINE 7"/><uid Droid="ENGINE 7"/><__group role="Team Member" name="Cyan"/><status battery="88"/><track course="12.0" speed="0.0"/></detail></event>"#;

    #[test]
    fn an_atak_position_report_reads() {
        let e = CotEvent::from_xml(ATAK_PLI.as_bytes()).unwrap();
        assert_eq!((e.uid.as_str(), e.kind.as_str(), e.how.as_str()), ("ANDROID-5d1c7a", PLI_TYPE, "m-g"));
        assert_eq!(e.callsign.as_deref(), Some("ENGINE 7"));
        assert!((e.point.lat - 47.620_506_3).abs() < 1e-9 && (e.point.lon + 122.349_277_4).abs() < 1e-9);
        assert_eq!(format_time(e.time_ms), "2026-12-07T20:01:02.345Z");
        assert_eq!(e.stale_ms - e.time_ms, 375_000);
        assert!(e.chat.is_none());
    }

    #[test]
    fn a_geochat_round_trips_through_xml() {
        let e = CotEvent::geochat(
            "ANDROID-1",
            "ENGINE 7",
            "lsim",
            "m-42",
            "water at the north gate <now> & \"fast\"",
            1_796_000_000_123,
        );
        let back = CotEvent::from_xml(e.to_xml().as_bytes()).unwrap();
        assert_eq!(back, e);
        let pli = CotEvent::pli("lsim-alice", "alice", Point::at(-33.5, 151.25), 1_796_000_000_000, 120);
        assert_eq!(CotEvent::from_xml(pli.to_xml().as_bytes()).unwrap(), pli);
    }

    #[test]
    fn hostile_documents_are_refused_with_a_reason() {
        let dtd = r#"<?xml version="1.0"?><!DOCTYPE event [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><event uid="&b;"/>"#;
        assert!(matches!(CotEvent::from_xml(dtd.as_bytes()), Err(CotError::Xml(XmlError::Refused(_)))));
        let entity = ATAK_PLI.replace("ENGINE 7\"/><uid", "&x;\"/><uid");
        assert!(CotEvent::from_xml(entity.as_bytes()).is_err());
        let huge = format!("<event>{}</event>", "a".repeat(xml::MAX_DOCUMENT));
        assert_eq!(CotEvent::from_xml(huge.as_bytes()), Err(CotError::Xml(XmlError::TooLarge("bytes"))));
        // A 1 MiB event (over TCP or reassembled, bigger than a datagram) is refused before it is read.
        let mib = ATAK_PLI.replace("<detail>", &format!("<detail><remarks>{}</remarks>", "x".repeat(1 << 20)));
        assert_eq!(CotEvent::from_xml(mib.as_bytes()), Err(CotError::Xml(XmlError::TooLarge("bytes"))));
        let deep = format!("{}{}", "<a>".repeat(40), "</a>".repeat(40));
        assert_eq!(CotEvent::from_xml(deep.as_bytes()), Err(CotError::Xml(XmlError::TooLarge("depth"))));
        let wide = format!("<event>{}</event>", "<x/>".repeat(xml::MAX_ELEMENTS + 1));
        assert_eq!(CotEvent::from_xml(wide.as_bytes()), Err(CotError::Xml(XmlError::TooLarge("elements"))));
        let pi = ATAK_PLI.replace("<detail>", "<detail><?php evil ?>");
        assert!(matches!(CotEvent::from_xml(pi.as_bytes()), Err(CotError::Xml(XmlError::Refused(_)))));
        for (from, to) in [
            ("lat=\"47.6205063\"", "lat=\"91\""),
            ("lon=\"-122.3492774\"", "lon=\"NaN\""),
            ("type=\"a-f-G-U-C\"", "type=\"a f<\""),
            ("time=\"2026-12-07T20:01:02.345Z\"", "time=\"yesterday\""),
        ] {
            let doc = ATAK_PLI.replace(from, to);
            assert!(matches!(CotEvent::from_xml(doc.as_bytes()), Err(CotError::Invalid(_))), "{to}");
        }
        let evil = ATAK_PLI.replace("<event ", "<evil ").replace("</event>", "</evil>");
        assert!(matches!(CotEvent::from_xml(evil.as_bytes()), Err(CotError::Invalid(_))));
        assert!(CotEvent::from_xml(&[0xff, 0xfe, b'<']).is_err());
        assert!(CotEvent::from_xml(b"<event><point/>").is_err());
    }

    #[test]
    fn times_read_as_tak_writes_them() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("2026-12-07T20:01:02.3Z"), Some(parse_time("2026-12-07T20:01:02.300Z").unwrap()));
        assert_eq!(parse_time("2026-12-07T20:01:02.123456Z"), parse_time("2026-12-07T20:01:02.123Z"));
        for bad in [
            "2026-13-07T20:01:02Z",
            "2026-12-07 20:01:02Z",
            "2026-12-07T20:01:02",
            "2026-12-07T20:01:02.Z",
            "+026-12-07T20:01:02Z",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn any_time_round_trips(ms in 0u64..253_402_300_799_000) {
            prop_assert_eq!(parse_time(&format_time(ms)), Some(ms));
        }

        #[test]
        fn no_bytes_panic_the_reader(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = CotEvent::from_xml(&bytes);
        }

        #[test]
        fn mutated_reports_never_panic_and_what_reads_writes_back(pos in 0usize..ATAK_PLI.len(), b in any::<u8>()) {
            let mut doc = ATAK_PLI.as_bytes().to_vec();
            doc[pos] = b;
            if let Ok(e) = CotEvent::from_xml(&doc) {
                let again = CotEvent::from_xml(e.to_xml().as_bytes()).unwrap();
                prop_assert_eq!(again.uid, e.uid);
                prop_assert_eq!(again.callsign, e.callsign);
            }
        }
    }
}
