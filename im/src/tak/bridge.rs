//! The bridge between a TAK network and the group, sans-IO: what a member
//! at the command post that is also on the TAK network passes each way.
//!
//! Owns the decisions: the group's chat goes out as GeoChat in a chatroom
//! named after the group and its members' positions as position reports
//! (PLI); GeoChat to that chatroom (or ATAK's "All Chat Rooms") comes in as
//! chat "CALLSIGN (TAK): text" and TAK position reports as positions of
//! "CALLSIGN (TAK)", both signed by the bridge's member. Nothing goes back
//! where it came from: what the bridge itself signed is never sent to TAK,
//! and TAK events with an lsim uid (this bridge's or another's) never come
//! in, nor does chat another bridge relayed from TAK go out to it again
//! (its text starts "CALLSIGN (TAK): "). Both ways are rate-limited; malformed, oversized and looped events
//! are dropped and counted. It must not touch sockets or the member: the
//! caller sends what it returns.

use std::collections::HashMap;

use super::cot::{CHAT_TYPE, CotEvent, Point};
use super::proto;
use crate::group::member::MemberEvent;
use crate::group::position::Position;

/// Where ATAK sends position reports (SA) on the local network.
pub const PLI_GROUP: std::net::SocketAddrV4 = std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(239, 2, 3, 1), 6969);
/// Where ATAK sends GeoChat on the local network.
pub const CHAT_GROUP: std::net::SocketAddrV4 =
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(224, 10, 10, 1), 17012);
/// ATAK's chatroom for everyone.
pub const ALL_CHAT_ROOMS: &str = "All Chat Rooms";
/// What every uid an lsim bridge writes starts with.
pub const LSIM_UID: &str = "lsim.";
/// How long a position report of an lsim member holds, seconds.
pub const STALE_S: u64 = 300;

/// The form events go to TAK in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// CoT XML (what every TAK client reads).
    Xml,
    /// TAK Protocol v1 (mesh).
    V1,
}

/// How the bridge behaves.
#[derive(Clone, Debug)]
pub struct BridgeConfig {
    /// The chatroom named after the group.
    pub chatroom: String,
    /// The bridge's own member (what it signs is never sent back to TAK).
    pub own_user: String,
    /// The form sent to TAK.
    pub format: Format,
    /// Events each way per second at most (a burst of as many).
    pub per_second: u32,
    /// The least time between two positions of one TAK unit into the group.
    pub position_every_ms: u64,
}

impl BridgeConfig {
    /// XML, 10 events a second each way, a TAK unit's position at most every 10 s.
    pub fn new(chatroom: &str, own_user: &str) -> BridgeConfig {
        BridgeConfig {
            chatroom: chatroom.into(),
            own_user: own_user.into(),
            format: Format::Xml,
            per_second: 10,
            position_every_ms: 10_000,
        }
    }
}

/// What to do in the group.
#[derive(Clone, Debug, PartialEq)]
pub enum ToGroup {
    /// Send this chat text.
    Chat(String),
    /// Share this position (its subject the TAK unit).
    Position(Position),
}

/// A datagram for the TAK network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToTak {
    /// Where: `PLI_GROUP` or `CHAT_GROUP`.
    pub to: std::net::SocketAddrV4,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// What the bridge counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BridgeStats {
    /// TAK events taken into the group.
    pub from_tak: u64,
    /// Group events sent to TAK.
    pub to_tak: u64,
    /// TAK datagrams that did not read (malformed, oversized, hostile).
    pub malformed: u64,
    /// TAK events an lsim bridge wrote (never taken back in).
    pub looped: u64,
    /// Events dropped by the rate limits.
    pub rate_limited: u64,
    /// TAK events of other kinds or chatrooms (not for the group).
    pub ignored: u64,
}

/// A token bucket of events per second.
#[derive(Clone, Debug)]
struct Bucket {
    tokens: f64,
    at_ms: u64,
}

impl Bucket {
    fn take(&mut self, now_ms: u64, rate: u32) -> bool {
        let rate = f64::from(rate.max(1));
        let elapsed = now_ms.saturating_sub(self.at_ms) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.at_ms = now_ms;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The bridge (see the module doc).
pub struct Bridge {
    cfg: BridgeConfig,
    stats: BridgeStats,
    inbound: Bucket,
    outbound: Bucket,
    /// When each TAK unit's position last came in (bounded).
    last_position: HashMap<String, u64>,
    /// GeoChat message ids taken (TAK clients send each more than once), bounded.
    seen_chat: std::collections::VecDeque<String>,
}

impl Bridge {
    /// A bridge with `cfg`.
    pub fn new(cfg: BridgeConfig) -> Bridge {
        let full = f64::from(cfg.per_second.max(1));
        Bridge {
            stats: BridgeStats::default(),
            inbound: Bucket { tokens: full, at_ms: 0 },
            outbound: Bucket { tokens: full, at_ms: 0 },
            last_position: HashMap::new(),
            seen_chat: std::collections::VecDeque::new(),
            cfg,
        }
    }

    /// What it counted.
    pub fn stats(&self) -> &BridgeStats {
        &self.stats
    }

    /// A datagram from the TAK network (either form): what to do in the group.
    pub fn from_tak(&mut self, now_ms: u64, datagram: &[u8]) -> Option<ToGroup> {
        let event = match proto::decode_any(datagram) {
            Ok(e) => e,
            Err(_) => {
                self.stats.malformed += 1;
                return None;
            }
        };
        let lsim_chat = event.chat.as_ref().is_some_and(|c| c.sender_uid.starts_with(LSIM_UID));
        if event.uid.starts_with(LSIM_UID) || lsim_chat || event.uid.starts_with(&format!("GeoChat.{LSIM_UID}")) {
            self.stats.looped += 1;
            return None;
        }
        let out = if let Some(chat) = &event.chat {
            let ours = chat.chatroom == self.cfg.chatroom || chat.chatroom == ALL_CHAT_ROOMS;
            if event.kind != CHAT_TYPE || !ours || chat.text.trim().is_empty() {
                self.stats.ignored += 1;
                return None;
            }
            let id = if chat.message_id.is_empty() { event.uid.clone() } else { chat.message_id.clone() };
            if self.seen_chat.contains(&id) {
                self.stats.ignored += 1;
                return None;
            }
            if self.seen_chat.len() >= 1024 {
                self.seen_chat.pop_front();
            }
            self.seen_chat.push_back(id);
            ToGroup::Chat(format!("{} (TAK): {}", chat.sender_callsign, chat.text))
        } else if event.kind.starts_with("a-") {
            let callsign = event.callsign.clone().unwrap_or_else(|| event.uid.clone());
            if self
                .last_position
                .get(&event.uid)
                .is_some_and(|t| now_ms.saturating_sub(*t) < self.cfg.position_every_ms)
            {
                self.stats.rate_limited += 1;
                return None;
            }
            if self.last_position.len() >= 4096 {
                self.last_position.clear();
            }
            self.last_position.insert(event.uid.clone(), now_ms);
            let accuracy = (event.point.ce < super::cot::UNKNOWN).then_some(event.point.ce);
            let Ok(mut p) = Position::new(event.point.lat, event.point.lon, accuracy) else {
                self.stats.malformed += 1;
                return None;
            };
            p.subject = Some(format!("{callsign} (TAK)"));
            ToGroup::Position(p)
        } else {
            self.stats.ignored += 1;
            return None;
        };
        if !self.inbound.take(now_ms, self.cfg.per_second) {
            self.stats.rate_limited += 1;
            return None;
        }
        self.stats.from_tak += 1;
        Some(out)
    }

    /// An event of the bridge's member: what to send to the TAK network.
    pub fn from_group(&mut self, now_ms: u64, ev: &MemberEvent) -> Option<ToTak> {
        let (to, event) = match ev {
            // What the bridge signed came from TAK: never back.
            MemberEvent::Chat { from, .. } | MemberEvent::Position { from, .. } if *from == self.cfg.own_user => {
                return None;
            }
            // What another bridge relayed from TAK ("CALLSIGN (TAK): text") is TAK's already.
            MemberEvent::Chat { text, .. } if relayed(text) => {
                self.stats.looped += 1;
                return None;
            }
            MemberEvent::Chat { id, from, text, private: false, history: false, .. } => {
                let uid = format!("{LSIM_UID}{from}");
                (CHAT_GROUP, CotEvent::geochat(&uid, from, &self.cfg.chatroom, id, text, now_ms))
            }
            MemberEvent::Position { from, position, .. } if position.subject.is_none() => {
                let mut point = Point::at(position.lat, position.lon);
                if let Some(a) = position.accuracy_m {
                    point.ce = a;
                }
                (PLI_GROUP, CotEvent::pli(&format!("{LSIM_UID}{from}"), from, point, now_ms, STALE_S))
            }
            _ => return None,
        };
        if !self.outbound.take(now_ms, self.cfg.per_second) {
            self.stats.rate_limited += 1;
            return None;
        }
        self.stats.to_tak += 1;
        let bytes = match self.cfg.format {
            Format::Xml => event.to_xml().into_bytes(),
            Format::V1 => proto::encode(&event),
        };
        Some(ToTak { to, bytes })
    }
}

/// True for chat a bridge relayed from TAK: it starts "CALLSIGN (TAK): ".
fn relayed(text: &str) -> bool {
    text.split_once(": ").is_some_and(|(who, _)| who.ends_with(" (TAK)"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::group::member::{Placement, Via};

    fn chat(from: &str, text: &str) -> MemberEvent {
        MemberEvent::Chat {
            id: "00ff".into(),
            from: from.into(),
            sent_ms: 1,
            text: text.into(),
            via: Via::Multicast,
            private: false,
            placement: Placement::InOrder,
            history: false,
        }
    }

    #[test]
    fn group_chat_and_positions_go_out_as_geochat_and_pli() {
        let mut b = Bridge::new(BridgeConfig::new("lsim", "bridge"));
        let out = b.from_group(1_000, &chat("alice", "fire at the north gate")).unwrap();
        assert_eq!(out.to, CHAT_GROUP);
        let e = CotEvent::from_xml(&out.bytes).unwrap();
        let c = e.chat.unwrap();
        assert_eq!(
            (c.chatroom.as_str(), c.sender_callsign.as_str(), c.text.as_str()),
            ("lsim", "alice", "fire at the north gate")
        );
        let pos = MemberEvent::Position {
            from: "alice".into(),
            position: Position::new(47.6, -122.3, Some(5.0)).unwrap(),
            sent_ms: 1,
            via: Via::Multicast,
        };
        let out = b.from_group(2_000, &pos).unwrap();
        let e = proto::decode_any(&out.bytes).unwrap();
        assert_eq!(
            (out.to, e.uid.as_str(), e.callsign.as_deref(), e.point.ce),
            (PLI_GROUP, "lsim.alice", Some("alice"), 5.0)
        );
        // What the bridge itself signed came from TAK: it never goes back.
        assert_eq!(b.from_group(3_000, &chat("bridge", "ENGINE 7 (TAK): hello")), None);
        // Nor what another bridge relayed from TAK.
        assert_eq!(b.from_group(3_000, &chat("carol", "ENGINE 7 (TAK): hello")), None);
        b.cfg.format = Format::V1;
        let out = b.from_group(4_000, &chat("bob", "copy")).unwrap();
        assert_eq!(&out.bytes[..3], &proto::MESH_HEADER);
    }

    #[test]
    fn tak_chat_and_positions_come_in_once_and_never_loop() {
        let mut b = Bridge::new(BridgeConfig::new("lsim", "bridge"));
        let g = CotEvent::geochat("ANDROID-1", "ENGINE 7", "lsim", "m1", "water here", 1);
        assert_eq!(b.from_tak(10, g.to_xml().as_bytes()), Some(ToGroup::Chat("ENGINE 7 (TAK): water here".into())));
        assert_eq!(b.from_tak(20, &proto::encode(&g)), None, "the same message again (ATAK repeats)");
        let other = CotEvent::geochat("ANDROID-1", "ENGINE 7", "Team Red", "m2", "not for us", 1);
        assert_eq!(b.from_tak(30, other.to_xml().as_bytes()), None);
        let pli = CotEvent::pli("ANDROID-1", "ENGINE 7", Point::at(1.0, 2.0), 1, 60);
        match b.from_tak(40, &proto::encode(&pli)) {
            Some(ToGroup::Position(p)) => {
                assert_eq!((p.lat, p.lon, p.subject.as_deref()), (1.0, 2.0, Some("ENGINE 7 (TAK)")))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(b.from_tak(1_000, pli.to_xml().as_bytes()), None, "a unit's position at most every 10 s");
        assert!(b.from_tak(11_000, pli.to_xml().as_bytes()).is_some());
        // What an lsim bridge wrote (this one, or another on the same networks) never comes in.
        let ours = b.from_group(50, &chat("alice", "hi")).unwrap();
        assert_eq!(b.from_tak(60, &ours.bytes), None);
        let mut other_bridge = Bridge::new(BridgeConfig::new("lsim", "bridge2"));
        let theirs = other_bridge.from_group(50, &chat("carol", "hi")).unwrap();
        assert_eq!(b.from_tak(70, &theirs.bytes), None);
        assert_eq!(b.stats().looped, 2);
        // Hostile input is counted, never taken.
        for bad in [&b"<!DOCTYPE x><event/>"[..], b"\xbf\x01\xbf\xff", &[b'<'; 70_000][..], b""] {
            assert_eq!(b.from_tak(80, bad), None);
        }
        assert_eq!(b.stats().malformed, 4);
    }

    #[test]
    fn both_ways_are_rate_limited() {
        let mut b = Bridge::new(BridgeConfig::new("lsim", "bridge"));
        let sent = (0..100).filter(|i| b.from_group(5_000, &chat("alice", &format!("m{i}"))).is_some()).count();
        assert_eq!(sent, 10, "a burst of 10");
        assert!(b.from_group(5_100, &chat("alice", "later")).is_some(), "a tenth of a second refills one");
        let taken = (0..100)
            .filter(|i| {
                let g = CotEvent::geochat("A", "A", "lsim", &format!("id{i}"), "x", 1);
                b.from_tak(9_000, g.to_xml().as_bytes()).is_some()
            })
            .count();
        assert_eq!(taken, 10);
        assert!(b.stats().rate_limited >= 180);
    }
}
