#![allow(clippy::unwrap_used)]
//! Holders heal the group without its sender: a member away while the
//! sender sent, and back after the sender left, gets everything from the
//! members that hold it. Everything in memory, time virtual; "away" drops
//! every packet to and from the member, "gone" the sender's.

use super::*;
use crate::core::{Sender, SenderConfig};
use crate::seal::KeyedSum;

const KEY: KeyedSum = KeyedSum(0x5eed);
const SECOND: u64 = 1_000_000;

struct World {
    tx: Sender<KeyedSum>,
    /// Members 20, 21, 22: each a repairer holding what it received.
    members: Vec<Repairer<KeyedSum>>,
    got: Vec<Vec<(u32, Vec<u8>)>>,
    away: Option<(usize, Time, Time)>,
    sender_gone_at: Time,
    /// Packets on the air (all of them, in order): (type, from).
    air: Vec<(wire::PacketType, u32)>,
    now: Time,
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
                while let Some(e) = self.members[i].poll_event() {
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
