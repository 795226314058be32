//! Per-sender order for chat, sans-IO. The transport numbers each sender's
//! objects and completes them in whatever order repair allows: a message
//! that needed repair finishes after the next one that did not. A member
//! shows each sender's chat in the order it was sent: a completed message
//! waits while an earlier object of the same sender may still be chat and
//! is still coming, for at most [`ChatOrder::new`]'s bound; then it is shown
//! with a count of the messages missing before it, and a missing one that
//! still arrives is shown marked late. Nothing is shown twice.
//!
//! Owns the per-sender cursor (the lowest object not yet settled) and the
//! completed messages waiting behind it. Time enters only as `now`. It must
//! not decode, verify or show anything: it releases bytes in order and says
//! how they stand.
//!
//! Objects that are not chat (files, announced at their first packet) never
//! hold chat back. An object never heard of at all may have been chat, so a
//! gap waits like an incomplete chat object.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use lsim_transport::wire::ObjectKind;

/// The default bound on how long a message waits for an earlier one.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(2);
/// The bound while a sender's objects come from holders (it went silent
/// and this member catches up): repair of old objects, one request after
/// another, takes longer than a live sender's, and nobody is waiting on a
/// live conversation.
pub const CATCH_UP_WAIT: Duration = Duration::from_secs(15);
/// Senders tracked at once; the one heard from longest ago is forgotten first.
pub const MAX_SENDERS: usize = 1024;
/// Completed messages held behind a gap, per sender, before the gap is given up at once.
pub const MAX_HELD: usize = 256;
/// An object this far below a sender's cursor starts a new run of it (the
/// sender restarted and numbers its objects from 0 again).
const RESTART_GAP: u32 = 1 << 16;

/// How a released message stands relative to its sender's earlier ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Every earlier message of its sender was shown before it.
    InOrder,
    /// This many earlier messages of its sender had not come within the bound.
    AfterMissing(u32),
    /// It came after later messages of its sender were shown.
    Late,
}

/// A chat object released for showing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// Sending node.
    pub sender: u32,
    /// Its object id.
    pub object: u32,
    /// The object's bytes.
    pub bytes: Vec<u8>,
    /// Where it stands.
    pub placement: Placement,
}

#[derive(Debug)]
enum Slot {
    /// A chat object under way.
    Coming,
    /// Not chat: it holds nothing back.
    NotChat,
    /// Complete, waiting for earlier ones since `at`.
    Ready { bytes: Vec<u8>, at: Instant },
    /// Will not complete (the transport gave it up).
    Lost,
}

/// One sender's stream of objects.
#[derive(Debug)]
struct Line {
    /// Every object below this is settled (shown, skipped or not chat).
    next: u32,
    /// What is known of objects at or above `next`.
    slots: BTreeMap<u32, Slot>,
    /// When it was last heard from.
    touched: Instant,
    /// Its objects come from holders (`CATCH_UP_WAIT`).
    catching_up: bool,
}

impl Line {
    fn new(first: u32, now: Instant) -> Line {
        Line { next: first, slots: BTreeMap::new(), touched: now, catching_up: false }
    }

    /// Whether `object` is below the cursor (already passed).
    fn passed(&self, object: u32) -> bool {
        let behind = self.next.wrapping_sub(object);
        behind != 0 && behind <= RESTART_GAP
    }

    /// Whether `object` is so far from the cursor that the sender must have restarted.
    fn new_run(&self, object: u32) -> bool {
        let ahead = object.wrapping_sub(self.next);
        ahead > RESTART_GAP && !self.passed(object)
    }

    /// Releases what can go, in order; gives up on a gap once the oldest
    /// message waiting behind it has waited `wait` (or too many wait).
    fn release(&mut self, sender: u32, now: Instant, wait: Duration, out: &mut Vec<Released>) {
        let wait = self.patience(wait);
        let mut missing = 0u32;
        loop {
            match self.slots.remove(&self.next) {
                Some(Slot::Ready { bytes, .. }) => {
                    let placement = if missing == 0 { Placement::InOrder } else { Placement::AfterMissing(missing) };
                    out.push(Released { sender, object: self.next, bytes, placement });
                    missing = 0;
                }
                Some(Slot::NotChat) => {}
                Some(Slot::Lost) => missing += 1,
                held @ (Some(Slot::Coming) | None) => {
                    let first_ready = self.slots.iter().find_map(|(id, s)| match s {
                        Slot::Ready { at, .. } => Some((*id, *at)),
                        _ => None,
                    });
                    let ready = self.slots.values().filter(|s| matches!(s, Slot::Ready { .. })).count();
                    let Some((id, at)) = first_ready else {
                        if let Some(s) = held {
                            self.slots.insert(self.next, s);
                        }
                        return;
                    };
                    if now < at + wait && ready <= MAX_HELD {
                        if let Some(s) = held {
                            self.slots.insert(self.next, s);
                        }
                        return;
                    }
                    // Give up on everything before `id` that may have been chat.
                    let gap = id.wrapping_sub(self.next);
                    let settled = self.slots.range(self.next..id).filter(|(_, s)| matches!(s, Slot::NotChat)).count();
                    missing = missing.saturating_add(gap - settled as u32);
                    let below: Vec<u32> = self.slots.range(self.next..id).map(|(k, _)| *k).collect();
                    for k in below {
                        self.slots.remove(&k);
                    }
                    self.next = id;
                    continue;
                }
            }
            self.next = self.next.wrapping_add(1);
        }
    }

    /// The bound for this line: `wait`, or longer while catching up (a
    /// zero `wait`, a restart's, stays zero).
    fn patience(&self, wait: Duration) -> Duration {
        if self.catching_up && !wait.is_zero() { wait.max(CATCH_UP_WAIT) } else { wait }
    }

    fn deadline(&self, wait: Duration) -> Option<Instant> {
        let wait = self.patience(wait);
        if matches!(self.slots.get(&self.next), Some(Slot::Ready { .. })) {
            return None;
        }
        self.slots.values().find_map(|s| match s {
            Slot::Ready { at, .. } => Some(*at + wait),
            _ => None,
        })
    }
}

/// `sender`'s line, made (or started anew, after a restart) for `object`.
fn line_of(lines: &mut HashMap<u32, Line>, sender: u32, object: u32, now: Instant) -> &mut Line {
    if !lines.contains_key(&sender) && lines.len() >= MAX_SENDERS {
        let oldest = lines.iter().min_by_key(|(_, l)| l.touched).map(|(s, _)| *s);
        if let Some(oldest) = oldest {
            lines.remove(&oldest);
        }
    }
    let line = lines.entry(sender).or_insert_with(|| Line::new(object, now));
    if line.new_run(object) {
        *line = Line::new(object, now);
    }
    line.touched = now;
    line
}

/// Chat put back in each sender's order.
#[derive(Debug)]
pub struct ChatOrder {
    wait: Duration,
    lines: HashMap<u32, Line>,
    out: Vec<Released>,
}

impl ChatOrder {
    /// Messages wait at most `wait` for an earlier one of their sender.
    pub fn new(wait: Duration) -> ChatOrder {
        ChatOrder { wait, lines: HashMap::new(), out: Vec::new() }
    }

    /// The transport delivers `sender`'s objects from `first` on: a line
    /// not yet started begins there, so a message at `first` that needed
    /// repair is waited for rather than shown late.
    pub fn heard_from(&mut self, sender: u32, first: u32, now: Instant) {
        if !self.lines.contains_key(&sender) {
            line_of(&mut self.lines, sender, first, now);
        }
    }

    /// The transport heard of a new object of `sender`.
    pub fn started(&mut self, sender: u32, object: u32, kind: ObjectKind, now: Instant) {
        let line = line_of(&mut self.lines, sender, object, now);
        if line.passed(object) {
            return;
        }
        if kind == ObjectKind::Chat {
            line.slots.entry(object).or_insert(Slot::Coming);
        } else {
            // A file at the cursor may free messages behind it.
            line.slots.insert(object, Slot::NotChat);
            line.release(sender, now, self.wait, &mut self.out);
        }
    }

    /// A complete object of `sender` that is never shown (a beacon, a
    /// receipt): it settles its place like a file, holding nothing back and
    /// held back by nothing. Otherwise a catch-up that brought such an
    /// object before an earlier message would give that message up.
    pub fn not_shown(&mut self, sender: u32, object: u32, now: Instant) {
        let line = line_of(&mut self.lines, sender, object, now);
        if line.passed(object) {
            return;
        }
        line.slots.insert(object, Slot::NotChat);
        line.release(sender, now, self.wait, &mut self.out);
    }

    /// Whether `sender`'s objects now come from holders (it went silent and
    /// this member catches up) or from itself again: while they do, a gap
    /// is waited for up to `CATCH_UP_WAIT`.
    pub fn catching_up(&mut self, sender: u32, from_holders: bool) {
        if let Some(line) = self.lines.get_mut(&sender) {
            line.catching_up = from_holders;
        }
    }

    /// A chat object of `sender` is complete.
    pub fn complete(&mut self, sender: u32, object: u32, bytes: Vec<u8>, now: Instant) {
        let line = line_of(&mut self.lines, sender, object, now);
        if line.passed(object) {
            self.out.push(Released { sender, object, bytes, placement: Placement::Late });
            return;
        }
        line.slots.insert(object, Slot::Ready { bytes, at: now });
        line.release(sender, now, self.wait, &mut self.out);
    }

    /// An object of `sender` will not complete.
    pub fn lost(&mut self, sender: u32, object: u32, now: Instant) {
        let line = line_of(&mut self.lines, sender, object, now);
        if line.passed(object) {
            return;
        }
        if !matches!(line.slots.get(&object), Some(Slot::NotChat)) {
            line.slots.insert(object, Slot::Lost);
        }
        line.release(sender, now, self.wait, &mut self.out);
    }

    /// The transport says `sender` restarted: what its last run still held
    /// back is released at once (gaps given up), and its next run starts a
    /// line of its own, from wherever it starts.
    pub fn restarted(&mut self, sender: u32, now: Instant) {
        if let Some(mut line) = self.lines.remove(&sender) {
            line.release(sender, now, Duration::ZERO, &mut self.out);
        }
    }

    /// Gives up on gaps whose bound has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        for (sender, line) in &mut self.lines {
            line.release(*sender, now, self.wait, &mut self.out);
        }
    }

    /// When [`ChatOrder::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.lines.values().filter_map(|l| l.deadline(self.wait)).min()
    }

    /// Whether messages are released and waiting for [`ChatOrder::poll`].
    pub fn has_released(&self) -> bool {
        !self.out.is_empty()
    }

    /// The next message to show.
    pub fn poll(&mut self) -> Option<Released> {
        if self.out.is_empty() {
            return None;
        }
        Some(self.out.remove(0))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn drain(o: &mut ChatOrder) -> Vec<(u32, Placement)> {
        std::iter::from_fn(|| o.poll()).map(|r| (r.object, r.placement)).collect()
    }

    #[test]
    fn an_object_never_shown_neither_holds_back_nor_gives_up_an_earlier_message() {
        let t0 = Instant::now();
        let mut o = ChatOrder::new(DEFAULT_WAIT);
        o.started(1, 0, ObjectKind::Chat, t0);
        o.started(1, 1, ObjectKind::Chat, t0);
        // Object 1 (a beacon) completes first; object 0 comes much later.
        o.not_shown(1, 1, t0);
        o.handle_timeout(t0 + DEFAULT_WAIT * 10);
        assert!(drain(&mut o).is_empty());
        o.complete(1, 0, b"m".to_vec(), t0 + DEFAULT_WAIT * 10);
        assert_eq!(drain(&mut o), [(0, Placement::InOrder)]);
        // And a beacon after the cursor frees the message behind it.
        o.started(1, 2, ObjectKind::Chat, t0);
        o.complete(1, 3, b"n".to_vec(), t0);
        o.not_shown(1, 2, t0);
        assert_eq!(drain(&mut o), [(3, Placement::InOrder)]);
    }

    #[test]
    fn while_catching_up_a_gap_is_waited_for_longer() {
        let t0 = Instant::now();
        let mut o = ChatOrder::new(DEFAULT_WAIT);
        o.started(1, 0, ObjectKind::Chat, t0);
        o.catching_up(1, true);
        o.complete(1, 1, b"b".to_vec(), t0);
        o.handle_timeout(t0 + DEFAULT_WAIT * 3);
        assert!(drain(&mut o).is_empty(), "still waiting for object 0");
        assert_eq!(o.poll_timeout(), Some(t0 + CATCH_UP_WAIT));
        o.complete(1, 0, b"a".to_vec(), t0 + DEFAULT_WAIT * 3);
        assert_eq!(drain(&mut o), [(0, Placement::InOrder), (1, Placement::InOrder)]);
        // Live again: the default bound.
        o.catching_up(1, false);
        o.started(1, 2, ObjectKind::Chat, t0);
        o.complete(1, 3, b"d".to_vec(), t0);
        o.handle_timeout(t0 + DEFAULT_WAIT);
        assert_eq!(drain(&mut o), [(3, Placement::AfterMissing(1))]);
    }

    #[test]
    fn a_message_waits_for_an_earlier_one_under_repair() {
        let t0 = Instant::now();
        let mut o = ChatOrder::new(DEFAULT_WAIT);
        o.started(1, 10, ObjectKind::Chat, t0);
        o.started(1, 11, ObjectKind::Chat, t0);
        o.complete(1, 11, b"second".to_vec(), t0);
        assert!(drain(&mut o).is_empty(), "11 waits for 10");
        assert_eq!(o.poll_timeout(), Some(t0 + DEFAULT_WAIT));
        o.complete(1, 10, b"first".to_vec(), t0 + Duration::from_millis(300));
        assert_eq!(drain(&mut o), [(10, Placement::InOrder), (11, Placement::InOrder)]);
        assert_eq!(o.poll_timeout(), None);
    }

    #[test]
    fn a_sender_that_restarts_numbering_low_is_in_order_not_late() {
        let t0 = Instant::now();
        let mut o = ChatOrder::new(DEFAULT_WAIT);
        for id in 0..5 {
            o.complete(1, id, b"old run".to_vec(), t0);
        }
        o.started(1, 5, ObjectKind::Chat, t0);
        o.complete(1, 6, b"held behind 5".to_vec(), t0);
        assert_eq!(drain(&mut o).len(), 5);
        // The same node, a new process: numbers from 0 again (not far
        // enough below the cursor to look like a new run by itself).
        o.restarted(1, t0);
        assert_eq!(drain(&mut o), [(6, Placement::AfterMissing(1))], "what the last run held is shown at once");
        o.heard_from(1, 0, t0);
        o.started(1, 0, ObjectKind::Chat, t0);
        o.complete(1, 0, b"new run".to_vec(), t0);
        assert_eq!(drain(&mut o), [(0, Placement::InOrder)]);
    }

    #[test]
    fn after_the_bound_a_message_is_shown_with_the_gap_and_the_late_one_marked() {
        let t0 = Instant::now();
        let mut o = ChatOrder::new(DEFAULT_WAIT);
        o.complete(1, 5, b"a".to_vec(), t0);
        o.started(1, 6, ObjectKind::Chat, t0);
        o.complete(1, 8, b"d".to_vec(), t0);
        assert_eq!(drain(&mut o), [(5, Placement::InOrder)]);
        o.handle_timeout(t0 + Duration::from_millis(1999));
        assert!(drain(&mut o).is_empty());
        o.handle_timeout(t0 + DEFAULT_WAIT);
        assert_eq!(drain(&mut o), [(8, Placement::AfterMissing(2))]);
        o.complete(1, 6, b"b".to_vec(), t0 + Duration::from_secs(3));
        assert_eq!(drain(&mut o), [(6, Placement::Late)]);
        o.complete(1, 9, b"e".to_vec(), t0 + Duration::from_secs(3));
        assert_eq!(drain(&mut o), [(9, Placement::InOrder)]);
    }

    #[test]
    fn files_and_lost_objects_do_not_hold_chat_back() {
        let t0 = Instant::now();
        let mut o = ChatOrder::new(DEFAULT_WAIT);
        o.complete(2, 0, b"a".to_vec(), t0);
        o.started(2, 1, ObjectKind::File, t0);
        o.complete(2, 2, b"b".to_vec(), t0);
        assert_eq!(drain(&mut o), [(0, Placement::InOrder), (2, Placement::InOrder)]);
        o.started(2, 3, ObjectKind::Chat, t0);
        o.complete(2, 4, b"c".to_vec(), t0);
        o.lost(2, 3, t0);
        assert_eq!(drain(&mut o), [(4, Placement::AfterMissing(1))]);
        // A file announced late, after the chat behind it completed, frees it.
        o.complete(2, 6, b"d".to_vec(), t0);
        assert!(drain(&mut o).is_empty());
        o.started(2, 5, ObjectKind::File, t0);
        assert_eq!(drain(&mut o), [(6, Placement::InOrder)]);
    }

    #[test]
    fn senders_are_independent_and_a_restart_starts_a_new_run() {
        let t0 = Instant::now();
        let mut o = ChatOrder::new(DEFAULT_WAIT);
        o.complete(1, 100, b"x".to_vec(), t0);
        o.complete(2, 7, b"y".to_vec(), t0);
        o.complete(1, 102, b"z".to_vec(), t0);
        assert_eq!(drain(&mut o), [(100, Placement::InOrder), (7, Placement::InOrder)]);
        // Sender 1 restarted: its objects count from 0 again.
        o.complete(1, 100_000, b"new run".to_vec(), t0);
        assert_eq!(drain(&mut o), [(100_000, Placement::InOrder)]);
        o.complete(1, 0, b"restart".to_vec(), t0);
        assert_eq!(drain(&mut o), [(0, Placement::InOrder)]);
    }

    #[test]
    fn a_line_starts_where_the_transport_does() {
        let t0 = Instant::now();
        let mut o = ChatOrder::new(DEFAULT_WAIT);
        o.heard_from(4, 20, t0);
        o.complete(4, 21, b"b".to_vec(), t0);
        assert!(drain(&mut o).is_empty(), "21 waits for 20");
        o.heard_from(4, 21, t0);
        o.complete(4, 20, b"a".to_vec(), t0);
        assert_eq!(drain(&mut o), [(20, Placement::InOrder), (21, Placement::InOrder)]);
    }

    #[test]
    fn held_messages_are_bounded() {
        let t0 = Instant::now();
        let mut o = ChatOrder::new(Duration::from_secs(3600));
        o.complete(1, 0, b"a".to_vec(), t0);
        for id in 2..(2 + MAX_HELD as u32 + 1) {
            o.complete(1, id, b"x".to_vec(), t0);
        }
        let out = drain(&mut o);
        assert_eq!(out[1], (2, Placement::AfterMissing(1)));
        assert_eq!(out.len(), MAX_HELD + 2);
    }
}
