//! The fast path is the default (issue 17): scenarios run the transport's
//! default sender, and with it bursty loss, heavy bursts and eight senders
//! on one radio cell stay within bounds that the settings before issue 17
//! (fixed rates, K = 64 blocks sent one after another) broke by far. The
//! figures in BENCHMARKS.md come from the same shipped scenarios at full size.

mod common;

use common::{assert_delivered, run, shipped};
use lsim_netsim::Scenario;
use lsim_transport::SenderConfig;

/// A scenario that sets nothing about its sender gets the transport's
/// default sender, the one `lsim send` and the members run: adaptive rate
/// up to its ceiling, blocks of up to 1024 symbols, the same cache.
#[test]
fn scenarios_run_the_transports_default_sender() {
    let s = Scenario::parse("name = \"d\"\nreceivers = 2\n[workload]\nfile_bytes = 1000\n").unwrap();
    let (got, want) = (s.sender_config(1), SenderConfig::default());
    assert_eq!(
        (got.rate, got.queue_target, got.block_symbols, got.cache_bytes, got.symbol_size, got.proactive),
        (want.rate, want.queue_target, want.block_symbols, want.cache_bytes, want.symbol_size, want.proactive)
    );
    assert!(want.queue_target.is_some(), "the default rate adapts");
    for name in ["bursty", "bursty-20", "many-senders"] {
        let c = shipped(name).sender_config(1);
        assert_eq!(
            (c.rate, c.queue_target, c.block_symbols),
            (want.rate, want.queue_target, want.block_symbols),
            "{name}"
        );
    }
}

/// Bursty loss (10 % in bursts of 8) at a quarter of `bursty.toml`'s size:
/// 0.15 to 0.16 repair per source over seeds; blocks of 64 sent one after
/// another needed 0.24 here (0.49 at full size).
#[test]
fn bursty_loss_costs_little_more_repair_than_random_loss() {
    let mut s = shipped("bursty");
    s.workload.file_bytes = 4 << 20;
    s.receivers = 8;
    let r = run(s);
    assert_delivered(&r);
    eprintln!("repair per source {:.3} (an ideal code {:.3})", r.repair_per_source, r.ideal_repair_per_source);
    assert!(r.repair_per_source <= 0.20, "{:.3} repair per source\n{}", r.repair_per_source, r.table());
}

/// Bursts of 20 packets, 20 % loss on average: the repair spent stays
/// within 1.5 times what an ideal code would need for the worst receiver's
/// actual losses (1.1 times at this size; K = 64 one block after another
/// needed 1.9 times).
#[test]
fn heavy_bursts_cost_at_most_half_again_an_ideal_code() {
    let mut s = shipped("bursty-20");
    s.workload.file_bytes = 4 << 20;
    let r = run(s);
    assert_delivered(&r);
    let ratio = r.repair_per_source / r.ideal_repair_per_source;
    eprintln!(
        "repair per source {:.3}, an ideal code {:.3}: {ratio:.2}×",
        r.repair_per_source, r.ideal_repair_per_source
    );
    assert!(ratio <= 1.5, "{ratio:.2} × an ideal code\n{}", r.table());
}

/// Eight members each send a 1 MiB file and 20 chats at once on one 11
/// Mbit/s cell at 10 % loss, with default settings: 8.7 s, 0.20 repair per
/// source, 312 queue drops (at the start). At the fixed 10 Mbit/s members
/// used before, the cell's queues overflowed: 7,972 drops, 1.58 repair per
/// source, 20.1 s.
#[test]
fn eight_senders_share_one_cell_without_overflowing_it() {
    let s = shipped("many-senders");
    let all_bits = {
        let one = s.workload.file_bytes + u64::from(s.workload.chats) * u64::from(s.workload.chat_bytes);
        one as f64 * f64::from(s.senders) * 8.0
    };
    let floor = all_bits / (0.9 * s.link.bandwidth_bps as f64);
    let r = run(s);
    assert_delivered(&r);
    eprintln!(
        "done in {:.2} s ({:.2}× all bytes at 90 % of the cell), repair per source {:.3}, queue drops {}",
        r.completion_s,
        r.completion_s / floor,
        r.repair_per_source,
        r.queue_drops
    );
    assert!(r.repair_per_source <= 0.30, "{:.3} repair per source\n{}", r.repair_per_source, r.table());
    assert!(r.queue_drops <= 1000, "{} queue drops\n{}", r.queue_drops, r.table());
    assert!(r.completion_s <= 1.35 * floor, "{:.2} s against {floor:.2} s\n{}", r.completion_s, r.table());
}
