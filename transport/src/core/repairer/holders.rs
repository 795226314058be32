#![allow(clippy::unwrap_used)]
//! Holders heal the group without its sender: a member away while the
//! sender sent, and back after the sender left, gets everything from the
//! members that hold it. Everything in memory, time virtual; "away" drops
//! every packet to and from the member, "gone" the sender's.

use super::*;
use crate::core::{Sender, SenderConfig};
use crate::seal::EpochSum;
use std::collections::HashMap;

const KEY: EpochSum = EpochSum::new(0x5eed);
const SECOND: u64 = 1_000_000;

struct World {
    tx: Sender<EpochSum>,
    /// Members 20, 21, 22: each a repairer holding what it received.
    members: Vec<Repairer<EpochSum>>,
    got: Vec<Vec<(u32, Vec<u8>)>>,
    away: Option<(usize, Time, Time)>,
    sender_gone_at: Time,
    /// Packets on the air (all of them, in order): (type, from).
    air: Vec<(wire::PacketType, u32)>,
    now: Time,
    /// Member 20's store, when it is an archive: every block it decoded.
    store: Option<HashMap<Key, Vec<u8>>>,
}

impl World {
    fn new(summary_interval: Duration) -> World {
        let tx = Sender::new(
            SenderConfig { node: 1, rate: 0, symbol_size: 100, block_symbols: 16, ..Default::default() },
            KEY,
        )
        .unwrap();
        let members = (0..3u32)
            .map(|i| {
                let receiver = ReceiverConfig { node: 20 + i, seed: u64::from(i), ..Default::default() };
                let cfg = RepairerConfig {
                    receiver,
                    first_repair: (1 << 19) + i * (1 << 16),
                    keep_declined: false,
                    summary_interval,
                    ..Default::default()
                };
                Repairer::new(cfg, KEY)
            })
            .collect();
        World {
            tx,
            members,
            got: vec![Vec::new(); 3],
            away: None,
            sender_gone_at: Time::from_micros(u64::MAX / 2),
            air: Vec::new(),
            now: Time::ZERO,
            store: None,
        }
    }

    /// Member 20 keeps a store (an archive), member 21 holds nothing.
    fn with_archive() -> World {
        let mut w = World::new(Duration::from_secs(3));
        w.store = Some(HashMap::new());
        let receiver = ReceiverConfig { node: 21, seed: 1, ..Default::default() };
        w.members[1] = Repairer::new(RepairerConfig { receiver, cache_bytes: 0, ..Default::default() }, KEY);
        w
    }

    /// Member 20, an archive, restarts: what survives is its store, the
    /// index of its `objects` objects of sender 1 and that sender's counter.
    fn restart_archive(&mut self, objects: u32) {
        let counter = self.members[0].sender_counter(1).unwrap();
        let index: Vec<_> = (0..objects).map(|o| (o, self.members[0].object_info(1, o).unwrap())).collect();
        let receiver = ReceiverConfig { node: 20, seed: 9, ..Default::default() };
        let cfg = RepairerConfig {
            receiver,
            cache_bytes: 20_000,
            summary_interval: Duration::from_secs(3),
            ..Default::default()
        };
        self.members[0] = Repairer::new(cfg, KEY);
        self.members[0].recall_sender(1, counter);
        for (o, held) in index {
            self.members[0].archived(1, o, held);
        }
    }

    /// Member 20's store answers what its repairer wants.
    fn archive(&mut self, now: Time) {
        let Some(store) = &self.store else { return };
        while let Some(key) = self.members[0].poll_wanted() {
            match store.get(&key) {
                Some(b) => self.members[0].restore(now, key.0, key.1, key.2, b),
                None => self.members[0].unarchived(key.0, key.1),
            }
        }
    }

    fn is_away(&self, i: usize, now: Time) -> bool {
        self.away.is_some_and(|(m, from, to)| m == i && now >= from && now < to)
    }

    fn deliver(&mut self, now: Time, p: &[u8], from: Option<usize>) {
        if from.is_some() && now < self.sender_gone_at {
            self.tx.handle_datagram(now, p);
        }
        for i in 0..self.members.len() {
            if from != Some(i) && !self.is_away(i, now) {
                self.members[i].handle_datagram(now, p);
            }
        }
    }

    fn run_until(&mut self, end: Time) {
        let mut now = self.now;
        let mut buf = Vec::new();
        loop {
            if now < self.sender_gone_at {
                while let Some(t) = self.tx.poll_transmit(now, &mut buf) {
                    let p = buf[..t.len].to_vec();
                    self.air.push((t.packet_type, 1));
                    self.deliver(now, &p, None);
                }
            }
            for i in 0..self.members.len() {
                while let Some(t) = self.members[i].poll_transmit(now, &mut buf) {
                    if self.is_away(i, now) {
                        continue;
                    }
                    let p = buf[..t.len].to_vec();
                    self.air.push((t.packet_type, 20 + i as u32));
                    self.deliver(now, &p, Some(i));
                }
                if i == 0 {
                    self.archive(now);
                }
                while let Some(e) = self.members[i].poll_event() {
                    if let (0, Some(store), ReceiverEvent::ObjectData { sender, object, offset, data }) =
                        (i, self.store.as_mut(), &e)
                        && let Some(held) = self.members[0].object_info(*sender, *object)
                    {
                        let g = held.geometry;
                        let block = (offset / (u64::from(g.symbol_size()) * u64::from(g.block_symbols()))) as u32;
                        store.insert((*sender, *object, block), data.clone());
                        self.members[0].archived(*sender, *object, held);
                    }
                    if let ReceiverEvent::ObjectData { object, data, .. } = e {
                        match self.got[i].iter_mut().find(|(o, _)| *o == object) {
                            Some((_, bytes)) => bytes.extend(data),
                            None => self.got[i].push((object, data)),
                        }
                    }
                }
            }
            let mut next = if now < self.sender_gone_at { self.tx.poll_timeout() } else { None };
            for t in self.members.iter().filter_map(Repairer::poll_timeout) {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
            // The away member's return and the sender's end are moments too.
            for t in [self.away.map(|a| a.2), Some(self.sender_gone_at)].into_iter().flatten() {
                if t > now {
                    next = Some(next.map_or(t, |n| n.min(t)));
                }
            }
            match next {
                Some(t) if t <= end => {
                    now = now.max(t);
                    if now < self.sender_gone_at {
                        self.tx.handle_timeout(now);
                    }
                    self.members.iter_mut().for_each(|m| m.handle_timeout(now));
                }
                _ => break,
            }
        }
        self.now = end.max(now);
    }
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i * 13 % 251) as u8 ^ seed).collect()
}

/// The sender sends one object everyone gets, then (with member 22 away)
/// a chat, a 60 kB file and a chat, and is gone at 10 s; 22 is back at 20 s.
fn away_while_the_sender_leaves(summary_interval: Duration) -> (World, Vec<Vec<u8>>) {
    let mut w = World::new(summary_interval);
    let objects = vec![bytes(300, 1), bytes(200, 2), bytes(60_000, 3), bytes(250, 4)];
    w.tx.send_bytes(ObjectKind::Chat, objects[0].clone()).unwrap();
    w.run_until(Time::from_micros(SECOND / 2));
    assert!(w.got.iter().all(|g| g.len() == 1), "everyone has the first object");
    w.away = Some((2, Time::from_micros(SECOND / 2), Time::from_micros(20 * SECOND)));
    w.tx.send_bytes(ObjectKind::Chat, objects[1].clone()).unwrap();
    w.tx.send_bytes(ObjectKind::File, objects[2].clone()).unwrap();
    w.tx.send_bytes(ObjectKind::Chat, objects[3].clone()).unwrap();
    w.sender_gone_at = Time::from_micros(10 * SECOND);
    w.run_until(Time::from_micros(60 * SECOND));
    (w, objects)
}

#[test]
fn a_member_back_after_its_sender_left_gets_everything_from_the_holders() {
    let (w, objects) = away_while_the_sender_leaves(Duration::from_secs(3));
    for (i, got) in w.got.iter().enumerate() {
        let mut got = got.clone();
        got.sort_by_key(|g| g.0);
        let got: Vec<Vec<u8>> = got.into_iter().map(|g| g.1).collect();
        assert_eq!(got, objects, "member {} does not hold every object, byte for byte", 20 + i);
    }
    let summaries = w.air.iter().filter(|(t, _)| *t == wire::PacketType::Holdings).count();
    assert!(summaries >= 1, "no holder said what it holds");
    // Summaries of one silent sender: one per interval in the whole group
    // (the other holder stays quiet), not one per holder: bounded.
    assert!(summaries <= 60 / 3 + 2, "{summaries} summaries in 50 s of silence");
    assert!(w.members[2].stats().holdings_taken >= 1);
    let repaired_by_holders = w.air.iter().filter(|(t, from)| *t == wire::PacketType::Repair && *from != 22).count();
    assert!(repaired_by_holders > 0);
}

#[test]
fn without_holders_saying_so_the_member_gets_nothing_it_missed() {
    let (w, objects) = away_while_the_sender_leaves(Duration::ZERO);
    assert_eq!(w.got[0].len(), objects.len(), "a member present throughout has all");
    assert_eq!(w.got[2].len(), 1, "the member away got only what came before it left");
    assert_eq!(w.air.iter().filter(|(t, _)| *t == wire::PacketType::Holdings).count(), 0);
}

/// Member 22 away from 0.5 s to 20 s while the sender sends `objects`
/// after the first (the second of them a file) and leaves at 10 s; run to 15 s.
fn away_while_the_rest_is_sent(w: &mut World, objects: &[Vec<u8>]) {
    w.away = Some((2, Time::from_micros(SECOND / 2), Time::from_micros(20 * SECOND)));
    for (i, o) in objects.iter().enumerate().skip(1) {
        let kind = if i == 2 { ObjectKind::File } else { ObjectKind::Chat };
        w.tx.send_bytes(kind, o.clone()).unwrap();
    }
    w.sender_gone_at = Time::from_micros(10 * SECOND);
    w.run_until(Time::from_micros(15 * SECOND));
}

/// Member 20 is an archive: it keeps every block in a store and little in
/// memory, and restarts (losing its memory) after the sender left and
/// while member 22 is still away; member 21 holds nothing. Back, 22 gets
/// everything from the restarted archive's store.
#[test]
fn a_restarted_archive_serves_from_its_store() {
    let mut w = World::with_archive();
    let objects = vec![bytes(300, 1), bytes(200, 2), bytes(60_000, 3), bytes(250, 4)];
    w.tx.send_bytes(ObjectKind::Chat, objects[0].clone()).unwrap();
    w.run_until(Time::from_micros(SECOND / 2));
    away_while_the_rest_is_sent(&mut w, &objects);
    assert_eq!(w.got[2].len(), 1, "the member away got only the first object");
    w.restart_archive(4);
    assert_eq!(w.members[0].archived_objects(), 4);
    w.run_until(Time::from_micros(60 * SECOND));
    let mut got = w.got[2].clone();
    got.sort_by_key(|g| g.0);
    let got: Vec<Vec<u8>> = got.into_iter().map(|g| g.1).collect();
    assert_eq!(got, objects, "the member back holds every object, byte for byte");
    assert!(w.members[0].cached_bytes() <= 20_000 + 60_000, "the archive keeps little in memory");
    let from_archive = w.air.iter().filter(|(t, from)| *t == wire::PacketType::Repair && *from == 20).count();
    assert!(from_archive > 0, "the archive repaired");
}

/// The archive hears its sender again after a restart, and the sender has
/// restarted meanwhile: what the store holds of the last run is dropped.
#[test]
fn an_archive_forgets_a_sender_that_restarted() {
    let mut r = Repairer::new(RepairerConfig::default(), KEY);
    let g = Geometry::new(300, 100, 16).unwrap();
    r.recall_sender(1, 1_000);
    r.archived(1, 0, HeldObject { kind: ObjectKind::Chat, geometry: g, epoch: 0 });
    let mut tx = Sender::new(
        SenderConfig {
            node: 1,
            rate: 0,
            symbol_size: 100,
            block_symbols: 16,
            first_seq: 1 << 40,
            ..Default::default()
        },
        KEY,
    )
    .unwrap();
    tx.send_bytes(ObjectKind::Chat, bytes(300, 7)).unwrap();
    let mut buf = Vec::new();
    let now = Time::from_micros(SECOND);
    while let Some(t) = tx.poll_transmit(now, &mut buf) {
        let p = buf[..t.len].to_vec();
        r.handle_datagram(now, &p);
    }
    let mut restarted = false;
    while let Some(e) = r.poll_event() {
        restarted |= e == ReceiverEvent::SenderRestarted { sender: 1 };
    }
    assert!(restarted);
    assert_eq!(r.archived_objects(), 0);
}

/// Member 22 heard only the sender's heartbeats before it went away: it
/// knows the sender but none of its objects. The archive still serves it.
#[test]
fn a_member_that_knew_only_heartbeats_gets_everything_from_a_restarted_archive() {
    let mut w = World::with_archive();
    w.run_until(Time::from_micros(3 * SECOND));
    w.away = Some((2, Time::from_micros(3 * SECOND), Time::from_micros(20 * SECOND)));
    let objects = vec![bytes(300, 1), bytes(60_000, 3), bytes(250, 4)];
    for o in &objects {
        w.tx.send_bytes(ObjectKind::Chat, o.clone()).unwrap();
    }
    w.sender_gone_at = Time::from_micros(10 * SECOND);
    w.run_until(Time::from_micros(15 * SECOND));
    w.restart_archive(3);
    w.run_until(Time::from_micros(60 * SECOND));
    let mut got = w.got[2].clone();
    got.sort_by_key(|g| g.0);
    let got: Vec<Vec<u8>> = got.into_iter().map(|g| g.1).collect();
    assert_eq!(got, objects, "stats {:?}", w.members[2].stats());
}

/// A holder paced by `hold_pace` grants a requester repair at that pace,
/// not at the low fixed `rate` it starts from (an archive's, for before
/// anything arrived): member 20 holds, starts from `rate::FLOOR`, and
/// received the sender's data at 1 MB/s; member 22, back after the sender
/// left, has the 400 kB file it missed within 6 s (4.1 s: the next
/// summary, up to 3 s, then the repair). Budgeted at the fixed rate, as it
/// was, it took 9.2 s (on the command post's archive across hosts: 57 s
/// for 20 MiB, against 7 s from a member).
#[test]
fn a_paced_holder_grants_repair_at_its_pace_not_its_starting_rate() {
    let mut w = World::new(Duration::from_secs(3));
    w.tx = Sender::new(
        SenderConfig { node: 1, rate: 1_000_000, symbol_size: 100, block_symbols: 16, ..Default::default() },
        KEY,
    )
    .unwrap();
    let receiver = ReceiverConfig { node: 20, seed: 0, ..Default::default() };
    w.members[0] = Repairer::new(
        RepairerConfig {
            receiver,
            first_repair: 1 << 19,
            summary_interval: Duration::from_secs(3),
            hold_pace: Some(0.5),
            rate: crate::rate::FLOOR,
            ..Default::default()
        },
        KEY,
    );
    let receiver = ReceiverConfig { node: 21, seed: 1, ..Default::default() };
    w.members[1] = Repairer::new(RepairerConfig { receiver, cache_bytes: 0, ..Default::default() }, KEY);
    w.tx.send_bytes(ObjectKind::Chat, bytes(300, 1)).unwrap();
    w.run_until(Time::from_micros(SECOND / 2));
    let back = 20 * SECOND;
    w.away = Some((2, Time::from_micros(SECOND / 2), Time::from_micros(back)));
    let file = bytes(400_000, 2);
    w.tx.send_bytes(ObjectKind::File, file.clone()).unwrap();
    w.sender_gone_at = Time::from_micros(5 * SECOND);
    w.run_until(Time::from_micros(back));
    assert!(w.got[0].iter().any(|(_, b)| *b == file), "the holder has the file");
    let mut done = None;
    for step in 1..=100u64 {
        w.run_until(Time::from_micros(back + step * SECOND / 10));
        if w.got[2].iter().any(|(_, b)| *b == file) {
            done = Some(step);
            break;
        }
    }
    let done = done.unwrap_or_else(|| panic!("member 22 never got the file: {:?}", w.members[2].stats()));
    assert!(done <= 60, "the file took {:.1} s after 22 was back", done as f64 / 10.0);
}

/// Member 22 restarts (its process killed; memory gone) while away, and
/// takes back its last run's `progress`: back after the sender left, it
/// fetches from the holders every object it missed and none it had.
/// Without the progress a restarted member knows nothing of the sender,
/// and gets nothing.
#[test]
fn a_restarted_member_takes_back_its_progress_and_fetches_only_what_it_missed() {
    for resume in [true, false] {
        let mut w = World::new(Duration::from_secs(3));
        let objects = [bytes(300, 1), bytes(200, 2), bytes(60_000, 3), bytes(250, 4)];
        w.tx.send_bytes(ObjectKind::Chat, objects[0].clone()).unwrap();
        w.run_until(Time::from_micros(SECOND / 2));
        assert_eq!(w.got[2].len(), 1);
        let progress = w.members[2].progress();
        assert_eq!(progress.len(), 1, "{progress:?}");
        assert_eq!((progress[0].origin, progress[0].next), (1, 1), "object 0 delivered");
        // Killed: a new process, nothing in memory.
        let receiver = ReceiverConfig { node: 22, seed: 7, ..Default::default() };
        let cfg = RepairerConfig {
            receiver,
            first_repair: (1 << 19) + 2 * (1 << 16),
            summary_interval: Duration::from_secs(3),
            ..Default::default()
        };
        w.members[2] = Repairer::new(cfg, KEY);
        w.got[2].clear();
        away_while_the_rest_is_sent(&mut w, &objects);
        if resume {
            for p in &progress {
                w.members[2].resume_sender(Time::from_micros(15 * SECOND), p);
            }
        }
        w.run_until(Time::from_micros(60 * SECOND));
        let mut got = w.got[2].clone();
        got.sort_by_key(|g| g.0);
        if resume {
            let want: Vec<(u32, Vec<u8>)> =
                objects.iter().cloned().enumerate().skip(1).map(|(i, o)| (i as u32, o)).collect();
            assert_eq!(got, want, "every object missed, byte for byte, and not the one it had");
        } else {
            assert!(got.is_empty(), "without its progress it knew nothing of the sender");
        }
    }
}

/// The history policy `joined`, in the transport: member 22 is away while
/// the sender sends a file at epoch 0; the group is rekeyed to epoch 1 and
/// member 21 replaced by a newcomer that joined at epoch 1 (it never held
/// epoch 0); the sender sends a chat at epoch 1 and is gone. Back, 22 gets
/// both from holder 20: the file's repair under epoch 0 (kept in the
/// history), the chat's under epoch 1. The newcomer hears the file's repair
/// and cannot open it. A member removed at the rekey, still holding epoch
/// 0, sends a new object under it: 22 takes nothing of it.
#[test]
fn repair_goes_under_its_objects_epoch_so_a_later_joiner_cannot_read_it() {
    let mut w = World::new(Duration::from_secs(3));
    let (hello, file, chat) = (bytes(100, 6), bytes(20_000, 7), bytes(200, 8));
    w.tx.send_bytes(ObjectKind::Chat, hello.clone()).unwrap();
    w.run_until(Time::from_micros(SECOND / 2));
    w.away = Some((2, Time::from_micros(SECOND / 2), Time::from_micros(20 * SECOND)));
    w.tx.send_bytes(ObjectKind::File, file.clone()).unwrap();
    w.run_until(Time::from_micros(2 * SECOND));
    assert!(w.got[0] == [(0, hello.clone()), (1, file.clone())]);

    // The rekey: everyone still a member moves to epoch 1, then retires 0.
    w.tx.seal_mut().install(1);
    w.tx.seal_mut().retire_before(1);
    for i in [0, 2] {
        w.members[i].seal_mut().install(1);
        w.members[i].seal_mut().retire_before(1);
    }
    let receiver = ReceiverConfig { node: 21, seed: 5, ..Default::default() };
    let cfg = RepairerConfig { receiver, keep_declined: false, ..Default::default() };
    w.members[1] = Repairer::new(cfg, EpochSum::joined_at(0x5eed, 1));
    w.got[1].clear();
    w.tx.send_bytes(ObjectKind::Chat, chat.clone()).unwrap();
    w.sender_gone_at = Time::from_micros(4 * SECOND);
    w.run_until(Time::from_micros(60 * SECOND));

    let mut back = w.got[2].clone();
    back.sort_by_key(|g| g.0);
    let objects = |got: &[(u32, Vec<u8>)]| got.iter().map(|g| g.0).collect::<Vec<_>>();
    assert_eq!(objects(&back), [0, 1, 2], "22, back, holds every object");
    assert!(back == [(0, hello), (1, file), (2, chat.clone())], "byte for byte");
    assert_eq!(objects(&w.got[1]), [2], "the newcomer has the chat sent after it joined, and not the file");
    assert!(w.got[1][0].1 == chat);
    let newcomer = w.members[1].stats();
    assert!(
        newcomer.dropped(DropReason::UnknownEpoch) > 0,
        "the newcomer heard the file's repair and could not open it"
    );
    assert_eq!(w.members[0].stats().repair_unsealable, 0);
    let old_repair = w.air.iter().filter(|(t, from)| *t == wire::PacketType::Repair && *from == 20).count();
    assert!(old_repair > 0);

    // Removed at the rekey, still holding epoch 0: a new object under it,
    // in the sender's name and past its counter (no replay), and as itself.
    let removed_as = |node| {
        let cfg = SenderConfig { node, rate: 0, symbol_size: 100, first_seq: 1 << 40, ..Default::default() };
        Sender::new(cfg, KEY).unwrap()
    };
    let mut removed = removed_as(1);
    let before = w.members[2].stats().dropped(DropReason::PastEpoch);
    removed.send_bytes(ObjectKind::Chat, bytes(100, 9)).unwrap();
    let mut buf = Vec::new();
    let now = Time::from_micros(61 * SECOND);
    let mut itself = removed_as(30);
    itself.send_bytes(ObjectKind::Chat, bytes(100, 10)).unwrap();
    for tx in [&mut removed, &mut itself] {
        while let Some(t) = tx.poll_transmit(now, &mut buf) {
            w.members[2].handle_datagram(now, &buf[..t.len]);
        }
    }
    assert!(w.members[2].stats().dropped(DropReason::PastEpoch) >= before + 2);
    while let Some(e) = w.members[2].poll_event() {
        assert!(!matches!(e, ReceiverEvent::ObjectData { .. }), "took {e:?} from a removed member");
    }
}

/// Holders told the members' join epochs (`set_members`) refuse a member
/// that asks for what was sent before it joined, and serve it otherwise.
#[test]
fn holders_refuse_what_was_sent_before_the_requester_joined() {
    let run = |joined_22: u32| {
        let mut w = World::new(Duration::from_secs(3));
        let (hello, file) = (bytes(100, 1), bytes(20_000, 2));
        w.tx.send_bytes(ObjectKind::Chat, hello).unwrap();
        w.run_until(Time::from_micros(SECOND / 2));
        w.away = Some((2, Time::from_micros(SECOND / 2), Time::from_micros(20 * SECOND)));
        w.tx.send_bytes(ObjectKind::File, file.clone()).unwrap();
        w.sender_gone_at = Time::from_micros(5 * SECOND);
        for m in &mut w.members[..2] {
            m.set_members(HashMap::from([(20, 0), (21, 0), (22, joined_22)]));
        }
        w.run_until(Time::from_micros(60 * SECOND));
        let refused: u64 = w.members[..2].iter().map(|m| m.stats().repair_refused_policy).sum();
        let got_file = w.got[2].iter().any(|(o, b)| *o == 1 && *b == file);
        (got_file, refused)
    };
    let (got, refused) = run(1);
    assert!(!got && refused > 0, "a member that joined at epoch 1 got the file of epoch 0 ({refused} refused)");
    let (got, refused) = run(0);
    assert!(got && refused == 0, "a member since epoch 0 did not get it ({refused} refused)");
}

/// The history policy `shared`: the archive (member 20) shares the last two
/// of the sender's three objects. A newcomer that joined at epoch 1, after
/// all three went at epoch 0, takes the archive's offer: it gets those two
/// (re-sealed under epoch 1) and not the first; whether the sender left
/// or is still there (its own repair would be under epoch 0).
#[test]
fn the_shared_history_reaches_a_newcomer_and_no_more() {
    shared_history(true);
    shared_history(false);
}

fn shared_history(sender_leaves: bool) {
    let mut w = World::with_archive();
    let objects = [bytes(300, 1), bytes(20_000, 2), bytes(250, 3)];
    for (i, o) in objects.iter().enumerate() {
        let kind = if i == 1 { ObjectKind::File } else { ObjectKind::Chat };
        w.tx.send_bytes(kind, o.clone()).unwrap();
    }
    if sender_leaves {
        w.sender_gone_at = Time::from_micros(2 * SECOND);
    }
    w.run_until(Time::from_micros(3 * SECOND));
    assert_eq!(w.got[0].len(), 3);
    if !sender_leaves {
        w.tx.seal_mut().install(1);
        w.tx.seal_mut().retire_before(1);
    }
    // The rekey for the newcomer's join.
    for i in [0, 1] {
        w.members[i].seal_mut().install(1);
        w.members[i].seal_mut().retire_before(1);
    }
    // As a member's receiver: nothing from before it first heard a sender, but what the archive shares.
    let receiver =
        ReceiverConfig { node: 22, seed: 7, accept_backlog: false, history_from: Some(20), ..Default::default() };
    let cfg = RepairerConfig { receiver, keep_declined: false, ..Default::default() };
    w.members[2] = Repairer::new(cfg, EpochSum::joined_at(0x5eed, 1));
    w.got[2].clear();
    w.members[0].set_members(HashMap::from([(20, 0), (21, 0), (22, 1)]));
    w.members[0].set_shared([(1, 1), (1, 2)]);
    w.run_until(Time::from_micros(40 * SECOND));

    let mut got = w.got[2].clone();
    got.sort_by_key(|g| g.0);
    assert_eq!(
        got.iter().map(|g| g.0).collect::<Vec<_>>(),
        [1, 2],
        "the newcomer has the shared two, not the first (the sender left: {sender_leaves})"
    );
    assert!(got[0].1 == objects[1] && got[1].1 == objects[2], "byte for byte");
    assert_eq!(w.members[0].stats().repair_unsealable, 0);
}
