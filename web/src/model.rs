//! What the page shows, built from the member's events: the timeline, who
//! is here, the group's state, every file with its progress and the last
//! position of everyone who shares one.
//!
//! Owns turning `MemberEvent`s into the JSON updates the page applies (one
//! object per change, with a `type`), the snapshot a newly connected page
//! starts from, and which received file an id names. Pure: it reads no file
//! (the caller says how a received file may be shown) and serves nothing.
//! Text from the network goes into JSON strings only; the page puts it in
//! the document as text, never as markup.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use lsim_im::group::member::{MemberEvent, Placement, Via};
use lsim_im::group::position::Position;
use lsim_im::xmpp::payload::Payload;
use lsim_im::xmpp::room::Occupant;
use serde_json::{Value, json};

use crate::files::Display;

/// Timeline entries kept for a page that connects later.
pub const TIMELINE: usize = 2000;

/// A file the page knows of.
#[derive(Clone, Debug)]
struct FileEntry {
    view: Value,
    /// Where it is on disk, and how it may be shown (received or our own upload).
    local: Option<(PathBuf, Display)>,
}

/// The page's state (see the module doc).
#[derive(Debug, Default)]
pub struct Model {
    nick: String,
    group: Value,
    xmpp_up: bool,
    rate: Option<u64>,
    room: BTreeMap<String, Occupant>,
    /// While XMPP is down: who was heard on multicast.
    multicast: Option<Vec<String>>,
    timeline: VecDeque<Value>,
    files: BTreeMap<String, FileEntry>,
    /// Our uploads by path, then by transport object once sending.
    uploads: HashMap<PathBuf, String>,
    outgoing: HashMap<u32, String>,
    /// The last position of each member or relayed unit, by name.
    positions: BTreeMap<String, Value>,
    left: bool,
}

/// Most positions listed (a bridge may relay many TAK units).
pub const MAX_POSITIONS: usize = 500;

fn via(v: Via) -> &'static str {
    match v {
        Via::Multicast => "multicast",
        Via::Xmpp => "xmpp",
    }
}

/// The key server's presence in the room (it publishes the group's
/// parameters): listed, but no one to send a file or a message to.
fn is_keyserver(o: &Occupant) -> bool {
    o.payload.as_ref().is_some_and(|p| matches!(Payload::parse(p), Ok(Payload::Group(_))))
}

fn percent(got: u64, len: u64) -> u64 {
    (got.min(len) * 100).checked_div(len).unwrap_or(100)
}

impl Model {
    /// The model of a member called `nick`, before it joined.
    pub fn new(nick: &str) -> Model {
        Model { nick: nick.to_string(), xmpp_up: true, ..Model::default() }
    }

    /// Everything a page needs to start: group, members, files, then the
    /// timeline, oldest first.
    pub fn snapshot(&self) -> Vec<Value> {
        let mut out = vec![json!({"type": "reset"}), self.group_update(), self.members_update()];
        out.extend(self.files.values().map(|f| f.view.clone()));
        out.push(self.positions_update());
        out.extend(self.timeline.iter().cloned());
        if self.left {
            out.push(json!({"type": "left"}));
        }
        out
    }

    /// The file an id names, if it is one we hold (never a path from a request).
    pub fn local_file(&self, id: &str) -> Option<(PathBuf, Display)> {
        self.files.get(id).and_then(|f| f.local.clone())
    }

    /// An upload of ours was saved at `path`, for `to` (empty: everyone);
    /// `display` says how the page may show it.
    pub fn upload(&mut self, id: &str, path: &Path, name: &str, to: &[String], display: Display) -> Vec<Value> {
        let view = json!({
            "type": "file", "id": id, "dir": "out", "name": name, "from": self.nick, "to": to,
            "state": "queued", "progress": 0, "kind": display.kind(), "delivered": [],
        });
        self.uploads.insert(path.to_path_buf(), id.to_string());
        self.files.insert(id.to_string(), FileEntry { view: view.clone(), local: Some((path.to_path_buf(), display)) });
        vec![view]
    }

    /// The sending rate now (bytes per second), polled by the caller.
    pub fn rate(&mut self, rate: Option<u64>) -> Vec<Value> {
        if rate == self.rate {
            return Vec::new();
        }
        self.rate = rate;
        vec![self.group_update()]
    }

    fn group_update(&self) -> Value {
        let mut g = self.group.clone();
        if !g.is_object() {
            g = json!({});
        }
        g["type"] = json!("group");
        g["nick"] = json!(self.nick);
        g["xmpp"] = json!(if self.xmpp_up { "up" } else { "down" });
        g["rate_mbps"] = json!(self.rate.map(|r| (r as f64 * 8e-6 * 10.0).round() / 10.0));
        g
    }

    fn members_update(&self) -> Value {
        let room: Vec<Value> = self
            .room
            .values()
            .map(|o| {
                json!({
                    "user": o.user(), "nick": o.nick, "name": lsim_im::text::named(&o.user(), &o.nick),
                    "keyserver": is_keyserver(o),
                })
            })
            .collect();
        json!({"type": "members", "room": room, "multicast": self.multicast})
    }

    fn positions_update(&self) -> Value {
        json!({"type": "positions", "list": self.positions.values().collect::<Vec<_>>()})
    }

    /// A position of `who` (signed by `from`; relayed by it when `who` is
    /// another unit) arrived at `now_ms`.
    fn position(&mut self, who: &str, from: &str, p: &Position, now_ms: u64) -> Vec<Value> {
        if !self.positions.contains_key(who) && self.positions.len() >= MAX_POSITIONS {
            return Vec::new();
        }
        let via = p.subject.is_some().then_some(from);
        let entry = json!({
            "who": who, "lat": p.lat, "lon": p.lon, "accuracy_m": p.accuracy_m, "via": via,
            "at_ms": now_ms, "own": who == self.nick,
        });
        self.positions.insert(who.to_string(), entry);
        vec![self.positions_update()]
    }

    /// We shared our own position.
    pub fn own_position(&mut self, p: &Position, now_ms: u64) -> Vec<Value> {
        let nick = self.nick.clone();
        self.position(&nick, &nick, p, now_ms)
    }

    fn say(&mut self, entry: Value) -> Vec<Value> {
        if self.timeline.len() == TIMELINE {
            self.timeline.pop_front();
        }
        self.timeline.push_back(entry.clone());
        vec![entry]
    }

    fn notice(&mut self, level: &str, text: String) -> Vec<Value> {
        self.say(json!({"type": "notice", "level": level, "text": text}))
    }

    /// Changes a file the page knows; `None` if it does not know it.
    fn file(&mut self, id: &str, change: impl FnOnce(&mut Value)) -> Vec<Value> {
        match self.files.get_mut(id) {
            Some(f) => {
                change(&mut f.view);
                vec![f.view.clone()]
            }
            None => Vec::new(),
        }
    }

    /// What `ev`, reported at `now_ms` (Unix milliseconds), changes on the
    /// page. `display` says how a received file may be shown (the caller
    /// looks at its first bytes).
    pub fn apply(&mut self, ev: &MemberEvent, now_ms: u64, display: impl FnOnce(&Path, &str) -> Display) -> Vec<Value> {
        match ev {
            MemberEvent::Joined { session, node, epoch, params } => {
                self.group = json!({
                    "epoch": epoch, "session": format!("{session:08x}"), "node": format!("{node:08x}"),
                    "suite": params.suite, "multicast": params.group.to_string(),
                });
                vec![self.group_update()]
            }
            MemberEvent::Epoch(epoch) => {
                if let Some(g) = self.group.as_object_mut() {
                    g.insert("epoch".into(), json!(epoch));
                }
                vec![self.group_update()]
            }
            MemberEvent::Chat { id, from, sent_ms, text, via: v, private, placement, history } => {
                let (placement, missing) = match placement {
                    Placement::InOrder => ("in-order", 0),
                    Placement::AfterMissing(n) => ("after-missing", *n),
                    Placement::Late => ("late", 0),
                };
                self.say(json!({
                    "type": "chat", "id": id, "from": from, "sent_ms": sent_ms, "text": text, "via": via(*v),
                    "private": private, "placement": placement, "missing": missing, "history": history,
                    "own": *from == self.nick,
                }))
            }
            MemberEvent::Unreadable { from, via: v, why } => {
                self.say(json!({"type": "unreadable", "from": from, "via": via(*v), "why": why}))
            }
            MemberEvent::KeyChanged { user, was, now } => self.notice(
                "error",
                format!(
                    "{user}'s key changed ({was} → {now}): a new device, or someone else holding {user}'s password"
                ),
            ),
            MemberEvent::Position { from, position, .. } => {
                let who = position.subject.clone().unwrap_or_else(|| from.clone());
                self.position(&who, from, position, now_ms)
            }
            MemberEvent::FileOffered { .. } => Vec::new(),
            MemberEvent::FileSending { path, object } => {
                let Some(id) = self.uploads.get(path).cloned() else { return Vec::new() };
                self.outgoing.insert(*object, id.clone());
                self.file(&id, |v| v["state"] = json!("sending"))
            }
            MemberEvent::FileSendProgress { object, sent, len } => {
                let Some(id) = self.outgoing.get(object).cloned() else { return Vec::new() };
                let p = percent(*sent, *len);
                self.file(&id, |v| v["progress"] = json!(p))
            }
            MemberEvent::FileSent { object } => {
                let Some(id) = self.outgoing.get(object).cloned() else { return Vec::new() };
                self.file(&id, |v| {
                    v["state"] = json!("sent");
                    v["progress"] = json!(100);
                })
            }
            MemberEvent::FileNotSent { path, why } => {
                let Some(id) = self.uploads.get(path).cloned() else {
                    return self.notice("error", format!("could not send a file: {why}"));
                };
                self.file(&id, |v| {
                    v["state"] = json!("failed");
                    v["why"] = json!(why);
                })
            }
            MemberEvent::FileDelivered { object, to, .. } => {
                let Some(id) = self.outgoing.get(object).cloned() else { return Vec::new() };
                self.file(&id, |v| {
                    if let Some(d) = v["delivered"].as_array_mut()
                        && !d.iter().any(|x| x == to)
                    {
                        d.push(json!(to));
                    }
                })
            }
            MemberEvent::FileProgress { sender, object, got, len } => {
                let id = format!("in-{sender:08x}-{object}");
                let p = percent(*got, *len);
                let entry = self.files.entry(id.clone()).or_insert_with(|| FileEntry {
                    view: json!({"type": "file", "id": id, "dir": "in", "state": "receiving", "progress": 0, "total": len}),
                    local: None,
                });
                entry.view["progress"] = json!(p.max(entry.view["progress"].as_u64().unwrap_or(0)));
                vec![entry.view.clone()]
            }
            MemberEvent::FileReceived { sender, object, from, name, size, path } => {
                let id = format!("in-{sender:08x}-{object}");
                let shown = display(path, name);
                let view = json!({
                    "type": "file", "id": id, "dir": "in", "name": name, "from": from, "total": size,
                    "state": "received", "progress": 100, "kind": shown.kind(), "verified_ms": now_ms,
                });
                self.files.insert(id, FileEntry { view: view.clone(), local: Some((path.clone(), shown)) });
                vec![view]
            }
            MemberEvent::FileNotForUs { .. } => self.notice("info", "a file for other members went by".into()),
            MemberEvent::FileFailed { sender, object, why } => {
                let id = format!("in-{sender:08x}-{object}");
                let mut out = self.file(&id, |v| {
                    v["state"] = json!("failed");
                    v["why"] = json!(why);
                });
                out.extend(self.notice("error", format!("a file did not arrive: {why}")));
                out
            }
            MemberEvent::FileShown { .. } => Vec::new(),
            MemberEvent::PresenceIn(o) => {
                self.room.insert(o.nick.clone(), o.clone());
                vec![self.members_update()]
            }
            MemberEvent::PresenceOut(o) => {
                self.room.remove(&o.nick);
                vec![self.members_update()]
            }
            MemberEvent::RoomJoined(present) => {
                self.room = present.iter().map(|o| (o.nick.clone(), o.clone())).collect();
                vec![self.members_update()]
            }
            MemberEvent::XmppOffline(why) => {
                self.xmpp_up = false;
                self.multicast = Some(Vec::new());
                let mut out = vec![self.group_update(), self.members_update()];
                out.extend(self.notice("error", format!("XMPP lost ({why}); chat and files go on over multicast")));
                out
            }
            MemberEvent::XmppOnline => {
                self.xmpp_up = true;
                self.multicast = None;
                let mut out = vec![self.group_update(), self.members_update()];
                out.extend(self.notice("info", "XMPP is back".into()));
                out
            }
            MemberEvent::MulticastPresence(nicks) => {
                self.multicast = Some(nicks.clone());
                vec![self.members_update()]
            }
            MemberEvent::Repairer(r) => {
                let text = match r {
                    Some(nick) => format!("repairs in our region come from {nick}"),
                    None => "no repairer in our region: repairs come from the senders".into(),
                };
                self.notice("info", text)
            }
            MemberEvent::Error(e) => self.notice("error", e.clone()),
            MemberEvent::Left { epoch } => {
                self.left = true;
                let mut out = self.notice("info", format!("left the group (it moved to epoch {epoch})"));
                out.push(json!({"type": "left"}));
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn occupant(nick: &str, user: &str) -> Occupant {
        Occupant { nick: nick.into(), jid: Some(format!("{user}@fire.example/x")), role: None, payload: None }
    }

    fn chat(from: &str, text: &str) -> MemberEvent {
        MemberEvent::Chat {
            id: "1".into(),
            from: from.into(),
            sent_ms: 0,
            text: text.into(),
            via: Via::Multicast,
            private: false,
            placement: Placement::InOrder,
            history: false,
        }
    }

    fn never(_: &Path, _: &str) -> Display {
        panic!("no file here")
    }

    #[test]
    fn hostile_text_stays_a_json_string() {
        let mut m = Model::new("alice");
        let evil = "<script>alert(1)</script><img src=x onerror=alert(2)>";
        let out = m.apply(&chat(evil, evil), 0, never);
        assert_eq!(out[0]["text"], evil);
        assert_eq!(out[0]["from"], evil);
        assert!(serde_json::to_string(&out[0]).unwrap().contains("\\u003c") || out[0]["text"].is_string());
    }

    #[test]
    fn the_timeline_is_bounded_and_a_snapshot_replays_it_in_order() {
        let mut m = Model::new("alice");
        for i in 0..TIMELINE + 10 {
            m.apply(&chat("bob", &format!("m{i}")), 0, never);
        }
        let snap = m.snapshot();
        let chats: Vec<&Value> = snap.iter().filter(|v| v["type"] == "chat").collect();
        assert_eq!(chats.len(), TIMELINE);
        assert_eq!(chats[0]["text"], "m10");
        assert_eq!(chats[TIMELINE - 1]["text"], format!("m{}", TIMELINE + 9));
        assert_eq!(snap[0]["type"], "reset");
    }

    #[test]
    fn positions_list_each_member_and_relayed_unit_once_with_its_newest_place() {
        let mut m = Model::new("alice");
        let at = |lat: f64, subject: Option<&str>| {
            let mut p = Position::new(lat, 151.2153, Some(5.0)).unwrap();
            p.subject = subject.map(str::to_string);
            p
        };
        let ev = |from: &str, p: Position| MemberEvent::Position {
            from: from.into(),
            position: p,
            sent_ms: 0,
            via: Via::Multicast,
        };
        m.apply(&ev("bob", at(-33.8568, None)), 1_000, never);
        m.apply(&ev("bob", at(-33.9, Some("ENGINE 7 (TAK)"))), 2_000, never);
        let out = m.apply(&ev("bob", at(-33.8570, None)), 3_000, never);
        m.own_position(&at(-33.0, None), 4_000);
        let list = &m.snapshot().into_iter().find(|v| v["type"] == "positions").unwrap()["list"];
        assert_eq!(out[0]["list"].as_array().unwrap().len(), 2, "bob's newest replaced his first");
        let list = list.as_array().unwrap();
        assert_eq!(list.len(), 3);
        let engine = list.iter().find(|p| p["who"] == "ENGINE 7 (TAK)").unwrap();
        assert_eq!((engine["via"].as_str(), engine["at_ms"].as_u64()), (Some("bob"), Some(2_000)));
        let bob = list.iter().find(|p| p["who"] == "bob").unwrap();
        assert_eq!(
            (bob["lat"].as_f64(), bob["via"].is_null(), bob["own"].as_bool()),
            (Some(-33.857), true, Some(false))
        );
        assert_eq!(list.iter().find(|p| p["who"] == "alice").unwrap()["own"], true);
        // A bridge relaying thousands of units does not grow the page without bound.
        for k in 0..MAX_POSITIONS + 50 {
            m.apply(&ev("bob", at(1.0, Some(&format!("UNIT {k}")))), 5_000, never);
        }
        assert_eq!(m.positions.len(), MAX_POSITIONS);
    }

    #[test]
    fn members_come_and_go_and_an_outage_shows_who_is_heard_on_multicast() {
        let mut m = Model::new("alice");
        m.apply(&MemberEvent::RoomJoined(vec![occupant("bob", "bob"), occupant("boss", "carol")]), 0, never);
        let out = m.apply(&MemberEvent::PresenceOut(occupant("bob", "bob")), 0, never);
        assert_eq!(out[0]["room"].as_array().unwrap().len(), 1);
        assert_eq!(out[0]["room"][0]["name"], "carol (boss)");
        let out = m.apply(&MemberEvent::XmppOffline("gone".into()), 0, never);
        assert_eq!(out[0]["xmpp"], "down");
        let out = m.apply(&MemberEvent::MulticastPresence(vec!["bob".into()]), 0, never);
        assert_eq!(out[0]["multicast"][0], "bob");
    }

    #[test]
    fn an_upload_goes_from_queued_to_sent_and_collects_receipts() {
        let mut m = Model::new("alice");
        let path = PathBuf::from("/tmp/up/1/map.png");
        m.upload("up-1", &path, "map.png", &["bob".into()], Display::Image("image/png"));
        m.apply(&MemberEvent::FileSending { path: path.clone(), object: 7 }, 0, never);
        let out = m.apply(&MemberEvent::FileSendProgress { object: 7, sent: 50, len: 200 }, 0, never);
        assert_eq!(out[0]["progress"], 25);
        let out = m.apply(&MemberEvent::FileSent { object: 7 }, 0, never);
        assert_eq!((out[0]["state"].as_str(), out[0]["progress"].as_u64()), (Some("sent"), Some(100)));
        let d = MemberEvent::FileDelivered { path: path.clone(), object: 7, to: "bob".into() };
        m.apply(&d, 0, never);
        let out = m.apply(&d, 0, never);
        assert_eq!(out[0]["delivered"], json!(["bob"]), "once per recipient");
        assert_eq!(m.local_file("up-1").map(|(p, _)| p), Some(path));
    }

    #[test]
    fn a_received_file_is_shown_as_its_bytes_say_and_served_only_by_its_id() {
        let mut m = Model::new("bob");
        m.apply(&MemberEvent::FileProgress { sender: 1, object: 3, got: 10, len: 100 }, 0, never);
        let ev = MemberEvent::FileReceived {
            sender: 1,
            object: 3,
            from: "alice".into(),
            name: "x.svg".into(),
            size: 100,
            path: "/dl/x.svg".into(),
        };
        let out = m.apply(&ev, 0, |_, name| {
            assert_eq!(name, "x.svg");
            Display::Download
        });
        assert_eq!(out[0]["id"], "in-00000001-3");
        assert_eq!(out[0]["kind"], "download");
        assert_eq!(out[0]["progress"], 100);
        assert!(m.local_file("in-00000001-3").is_some());
        assert!(m.local_file("/dl/x.svg").is_none());
        assert!(m.local_file("../x").is_none());
    }
}
