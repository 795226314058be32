//! Forged packets (bad tag, or sealed under another key) are dropped and
//! counted, and never change what a receiver delivers.

mod common;

use common::{assert_delivered, run, shipped};

#[test]
fn forged_packets_never_change_deliveries() {
    let attacked = run(shipped("forged"));
    assert_delivered(&attacked);
    assert!(attacked.forged_sent > 1000, "the attack must actually run: {}", attacked.forged_sent);
    for rx in &attacked.per_receiver {
        // Each receiver hears ~90 % of the forgeries; every one it hears is dropped as forged.
        assert!(
            rx.dropped_bad_seal as f64 > 0.8 * attacked.forged_sent as f64,
            "receiver {} dropped {} of {} forgeries as bad seals",
            rx.node,
            rx.dropped_bad_seal,
            attacked.forged_sent
        );
    }
    let mut clean = shipped("forged");
    clean.attack.forged_per_second = 0.0;
    let clean = run(clean);
    assert_delivered(&clean);
    assert!(clean.per_receiver.iter().all(|r| r.dropped_bad_seal == 0));
}

/// An outsider replaying authentic packets it captured (the latest one, and
/// the first one long after) changes nothing: receivers drop what they
/// already took as replays, and every delivery is still exact.
#[test]
fn replayed_packets_are_dropped_and_change_nothing() {
    let mut s = shipped("forged");
    s.attack.forged_per_second = 0.0;
    s.attack.replayed_per_second = 500.0;
    let r = run(s);
    assert_delivered(&r);
    assert!(r.replayed_sent > 1000, "the attack must actually run: {}", r.replayed_sent);
    for rx in &r.per_receiver {
        // Each receiver hears ~90 % of the replays; it takes only a copy of a
        // packet it had lost (10 %), never one it had.
        assert!(
            rx.dropped_replay as f64 > 0.7 * r.replayed_sent as f64,
            "receiver {} dropped {} of {} replays",
            rx.node,
            rx.dropped_replay,
            r.replayed_sent
        );
        assert_eq!(rx.dropped_bad_seal, 0, "a replay is authentic, not forged");
    }
}

/// A rogue member (it holds the group key) NACKing whole blocks without end,
/// claiming 100 % loss, slows a transfer but cannot stop it: its repair is
/// held to half the sending rate by its own budget, its claimed loss sets
/// only its own margin, and honest receivers, whose budgets it cannot touch,
/// all complete. (With no bound the flood kept the file from ever
/// completing; with only the bound on repair runs, it took 15× as long.)
#[test]
fn a_member_flooding_nacks_slows_but_cannot_stop_a_transfer() {
    let mut s = shipped("forged");
    s.attack.forged_per_second = 0.0;
    s.workload.file_bytes = 1 << 20;
    s.workload.chats = 5;
    // Many blocks, each of which the flood opens a new round on: with the
    // default 1 MiB is one block, whose open round absorbs most of the
    // flood's NACKs before the budget is even asked.
    s.sender.block_symbols = Some(64);
    s.time_limit_s = 120.0;
    let mut flooded = s.clone();
    flooded.attack.nack_flood_per_second = 200.0;
    let (calm, flooded) = (run(s), run(flooded));
    assert_delivered(&calm);
    assert_delivered(&flooded);
    eprintln!("completion: {:.2} s calm, {:.2} s under the flood", calm.completion_s, flooded.completion_s);
    assert!(flooded.repair_packets > 10 * calm.repair_packets.max(1), "the flood must actually run");
    assert!(flooded.repair_refused > 10 * flooded.repair_packets, "the rogue asks far beyond its budget");
    assert_eq!(calm.repair_refused, 0, "honest receivers at 10 % loss never reach theirs");
    assert!(
        flooded.completion_s < 4.0 * calm.completion_s,
        "a budget of half the rate slows the transfer at most about 2-3×: {:.2} s against {:.2} s",
        flooded.completion_s,
        calm.completion_s
    );
}
