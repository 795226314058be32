#![allow(clippy::unwrap_used)]
//! A sender, a repairer and its region's members in memory. The sender's
//! packets reach the repairer unharmed and the members through a lossy
//! cell; region-scoped packets never reach the sender's side.

use super::*;
use crate::core::{Sender, SenderConfig};
use crate::rng::Rng;
use crate::seal::KeyedSum;

const KEY: KeyedSum = KeyedSum(0x5eed);
const R: u32 = 10;

struct World {
    tx: Sender<KeyedSum>,
    rep: Repairer<KeyedSum>,
    members: Vec<Receiver<KeyedSum>>,
    got: Vec<Vec<u8>>,
    rng: Rng,
    loss: f64,
    repairer_alive: bool,
    /// When the repairer sent each region-scoped packet, and its length.
    local: Vec<(Time, usize)>,
}

impl World {
    fn new(n: u32, loss: f64) -> World {
        let tx = Sender::new(
            SenderConfig { node: 1, rate: 0, symbol_size: 100, block_symbols: 16, ..Default::default() },
            KEY,
        )
        .unwrap();
        let rep = Repairer::new(
            RepairerConfig {
                receiver: ReceiverConfig { node: R, seed: 3, ..Default::default() },
                ..Default::default()
            },
            KEY,
        );
        let members = (0..n)
            .map(|i| {
                let cfg = ReceiverConfig { node: 20 + i, seed: u64::from(i), repairer: Some(R), ..Default::default() };
                Receiver::new(cfg, KEY)
            })
            .collect();
        let got = vec![Vec::new(); n as usize];
        World { tx, rep, members, got, rng: Rng::new(9), loss, repairer_alive: true, local: Vec::new() }
    }

    /// Delivers one packet: `from_sender_side` packets cross into the region.
    fn deliver(&mut self, now: Time, p: &[u8], from: Option<usize>, scope: Scope, sender_side: bool) {
        if !sender_side && scope == Scope::Group {
            self.tx.handle_datagram(now, p);
        }
        if self.repairer_alive && from.is_some() {
            self.rep.handle_datagram(now, p);
        }
        for i in 0..self.members.len() {
            if from == Some(i) {
                continue;
            }
            if sender_side && self.rng.chance(self.loss) {
                continue;
            }
            self.members[i].handle_datagram(now, p);
        }
    }

    fn run(&mut self) {
        self.run_from(Time::ZERO);
    }

    fn run_from(&mut self, start: Time) {
        let mut now = start;
        let mut buf = Vec::new();
        for _ in 0..100_000 {
            while let Some(t) = self.tx.poll_transmit(now, &mut buf) {
                let p = buf[..t.len].to_vec();
                if self.repairer_alive {
                    self.rep.handle_datagram(now, &p);
                }
                self.deliver(now, &p, None, t.scope, true);
            }
            while self.repairer_alive
                && let Some(t) = self.rep.poll_transmit(now, &mut buf)
            {
                let p = buf[..t.len].to_vec();
                if t.scope == Scope::Group {
                    self.tx.handle_datagram(now, &p);
                } else if t.packet_type == wire::PacketType::Repair {
                    self.local.push((now, t.len));
                }
                for m in &mut self.members {
                    m.handle_datagram(now, &p);
                }
            }
            for i in 0..self.members.len() {
                while let Some(t) = self.members[i].poll_transmit(now, &mut buf) {
                    let p = buf[..t.len].to_vec();
                    self.deliver(now, &p, Some(i), t.scope, false);
                }
                while let Some(e) = self.members[i].poll_event() {
                    if let ReceiverEvent::ObjectData { data, .. } = e {
                        self.got[i].extend(data);
                    }
                }
            }
            while self.rep.poll_event().is_some() {}
            let mut next = self.tx.poll_timeout();
            for t in self.members.iter().filter_map(Receiver::poll_timeout) {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
            if self.repairer_alive
                && let Some(t) = self.rep.poll_timeout()
            {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
            let done = self.tx.is_idle() && self.members.iter().all(|m| m.objects_in_progress() == 0);
            match next {
                Some(t) if t < Time::from_micros(120_000_000) && !(done && now > Time::from_micros(3_000_000)) => {
                    now = now.max(t);
                    self.tx.handle_timeout(now);
                    self.rep.handle_timeout(now);
                    self.members.iter_mut().for_each(|m| m.handle_timeout(now));
                }
                _ => break,
            }
        }
    }
}

fn object(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 13 % 251) as u8).collect()
}

#[test]
fn the_repairer_answers_its_region_and_the_sender_sends_no_repair() {
    let mut w = World::new(5, 0.2);
    let data = object(60_000);
    w.tx.send_bytes(ObjectKind::File, data.clone()).unwrap();
    w.run();
    for got in &w.got {
        assert!(got == &data, "every member holds the object, bytes equal");
    }
    assert_eq!(w.tx.stats().repair_sent, 0, "no repair crossed into the region");
    assert!(w.rep.stats().local_repairs > 0);
    for m in &w.members {
        assert!(m.relaying(), "the members still trust their repairer");
        assert!(m.stats().relayed_feedback > 0);
    }
}

#[test]
fn a_following_repairer_paces_local_repair_at_the_rate_data_arrives() {
    let mut w = World::new(5, 0.05);
    let rate = 50_000;
    let scfg =
        SenderConfig { node: 1, rate, queue_target: None, symbol_size: 100, block_symbols: 16, ..Default::default() };
    w.tx = Sender::new(scfg, KEY).unwrap();
    let (burst, follow) = (1500, true);
    let cfg = RepairerConfig {
        receiver: ReceiverConfig { node: R, seed: 3, ..Default::default() },
        follow,
        burst,
        ..Default::default()
    };
    w.rep = Repairer::new(cfg, KEY);
    let data = object(60_000);
    w.tx.send_bytes(ObjectKind::File, data.clone()).unwrap();
    // A burst of the radio: the members miss the first 200 packets, the
    // repairer hears them at the sender's pace.
    let (mut now, mut buf) = (Time::ZERO, Vec::new());
    for _ in 0..200 {
        while w.tx.poll_transmit(now, &mut buf).is_none() {
            now = w.tx.poll_timeout().unwrap();
            w.tx.handle_timeout(now);
        }
        w.rep.handle_datagram(now, &buf.clone());
    }
    w.run_from(now);
    for got in &w.got {
        assert!(got == &data, "every member holds the object, bytes equal");
    }
    let repaired: usize = w.local.iter().map(|p| p.1).sum();
    assert!(repaired > 20_000, "the repairer served its region the burst: {repaired} B");
    // Any 200 ms holds about what 200 ms of the sender's packets carry
    // (the rate counts payload; packets add headers) and the pacer's
    // burst; unpaced, the burst's repair leaves at once.
    let window = std::time::Duration::from_millis(200);
    let most = (rate as f64 * 0.2 * 1.5) as usize + burst as usize;
    for (i, &(start, _)) in w.local.iter().enumerate() {
        let bytes: usize =
            w.local[i..].iter().take_while(|(t, _)| t.saturating_since(start) < window).map(|p| p.1).sum();
        assert!(bytes <= most, "{bytes} B of local repair within 200 ms of {start:?}, at most {most}");
    }
}

#[test]
fn members_fall_back_to_the_sender_when_the_repairer_is_gone() {
    let mut w = World::new(3, 0.2);
    w.repairer_alive = false;
    let data = object(30_000);
    w.tx.send_bytes(ObjectKind::File, data.clone()).unwrap();
    w.run();
    for got in &w.got {
        assert!(got == &data, "every member holds the object, bytes equal");
    }
    assert!(w.tx.stats().repair_sent > 0, "the sender repaired instead");
    assert!(w.members.iter().all(|m| m.stats().repairer_fallbacks >= 1 && !m.relaying()));
}

#[test]
fn a_missing_block_at_the_repairer_is_fetched_then_served() {
    // The repairer misses the first 20 packets itself: members' NACKs for
    // those blocks wait at it until its own repair arrives.
    let mut w = World::new(3, 0.1);
    let data = object(20_000);
    w.tx.send_bytes(ObjectKind::File, data.clone()).unwrap();
    let mut buf = Vec::new();
    let now = Time::ZERO;
    for _ in 0..20 {
        let Some(t) = w.tx.poll_transmit(now, &mut buf) else { break };
        let p = buf[..t.len].to_vec();
        w.deliver(now, &p, None, t.scope, true);
    }
    w.run();
    for got in &w.got {
        assert!(got == &data, "every member holds the object, bytes equal");
    }
    assert!(w.rep.receiver().stats().nacks_sent > 0, "the repairer asked upstream for itself");
    assert!(w.rep.stats().local_repairs > 0, "and then served its region");
}

#[test]
fn a_restarted_sender_s_last_run_is_forgotten() {
    let cfg = RepairerConfig { receiver: ReceiverConfig { node: R, ..Default::default() }, ..Default::default() };
    let mut rep = Repairer::new(cfg, KEY);
    let mut buf = Vec::new();
    for first_seq in [0, 10_000_000_000] {
        // The same node, restarted seconds later: object 0 again, other bytes.
        let scfg =
            SenderConfig { node: 1, rate: 0, symbol_size: 100, block_symbols: 16, first_seq, ..Default::default() };
        let mut tx = Sender::new(scfg, KEY).unwrap();
        tx.send_bytes(ObjectKind::File, vec![first_seq as u8 ^ 0x5a; 3_000]).unwrap();
        let t = tx.poll_transmit(Time::ZERO, &mut buf).unwrap();
        rep.handle_datagram(Time::ZERO, &buf[..t.len]);
        if first_seq == 0 {
            while let Some(t) = tx.poll_transmit(Time::ZERO, &mut buf) {
                rep.handle_datagram(Time::ZERO, &buf[..t.len]);
            }
            assert!(rep.cached_bytes() > 0, "the first run's blocks are kept");
        }
    }
    assert_eq!(rep.cached_bytes(), 0, "nothing of the last run may answer for the new one");
    assert!(std::iter::from_fn(|| rep.poll_event()).any(|e| matches!(e, ReceiverEvent::ObjectComplete { .. })));
}

#[test]
fn the_repairer_uses_its_own_esi_range_and_bounded_cache() {
    let cfg = RepairerConfig {
        receiver: ReceiverConfig { node: R, ..Default::default() },
        cache_bytes: 5_000,
        ..Default::default()
    };
    let mut rep = Repairer::new(cfg, KEY);
    let mut tx =
        Sender::new(SenderConfig { node: 1, rate: 0, symbol_size: 100, block_symbols: 16, ..Default::default() }, KEY)
            .unwrap();
    tx.send_bytes(ObjectKind::File, object(20_000)).unwrap();
    let mut buf = Vec::new();
    while let Some(t) = tx.poll_transmit(Time::ZERO, &mut buf) {
        rep.handle_datagram(Time::ZERO, &buf[..t.len]);
    }
    assert!(rep.cached_bytes() <= 5_000, "cache bounded: {}", rep.cached_bytes());
    // A member asks for 3 symbols of the last block (still cached).
    let last = Geometry::for_object(20_000, 100, 16).unwrap().blocks() - 1;
    let fb = Feedback {
        target: 1,
        echo: None,
        loss: 0,
        relay: Some(R),
        overflow: None,
        received: None,
        entries: vec![NackEntry::Block { object: 0, block: last, needed: 3 }],
    };
    let mut member_framer = super::super::framer::Framer::new(KEY, 1, 30, true, 0);
    let mut p = Vec::new();
    member_framer.write(&Body::Feedback(fb), &mut p, &mut Stats::default()).unwrap();
    rep.handle_datagram(Time::from_micros(10), &p);
    let mut esis = Vec::new();
    while let Some(t) = rep.poll_transmit(Time::from_micros(10), &mut buf) {
        assert_eq!(t.scope, Scope::Region);
        if let Ok((_, Body::Repair(origin, h, _))) =
            wire::open_packet(&mut KEY.clone(), &mut buf[..t.len], 1, |_, _| Some(0))
        {
            assert_eq!(origin, 1);
            let g = h.info.expect("relayed symbols carry the object info").geometry;
            esis.push(h.esi - u32::from(g.symbols_in(h.block)));
        }
    }
    assert_eq!(esis, vec![1 << 19, (1 << 19) + 1, (1 << 19) + 2], "three fresh symbols from its own range");
}
