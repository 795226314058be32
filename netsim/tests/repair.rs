//! Repair efficiency and NACK implosion, against REFERENCE.md's table
//! ("The argument for FEC repair": N = 16, K = 64, ideal code, all rounds).

mod common;

use common::{assert_delivered, run, shipped};
use lsim_netsim::scenario::LossSpec;

/// (p, ideal code, ARQ) at N = 16 from the table.
const TABLE_N16: [(f64, f64, f64); 3] = [(0.05, 0.110, 0.601), (0.10, 0.196, 0.981), (0.20, 0.382, 1.604)];

fn efficiency(i: usize) {
    let (p, ideal, arq) = TABLE_N16[i];
    let mut s = shipped("efficiency-n16");
    s.loss = LossSpec::Bernoulli { p };
    let r = run(s);
    assert_delivered(&r);
    let measured = r.repair_per_source;
    eprintln!("p = {p}: repair/source {measured:.3} (ideal {ideal}, ARQ {arq})");
    assert!(measured <= 1.3 * ideal, "p = {p}: {measured:.3} > 1.3 × ideal {ideal}\n{}", r.table());
    assert!(measured <= 0.5 * arq, "p = {p}: {measured:.3} > 0.5 × ARQ {arq}");
    assert!(measured > 0.5 * ideal, "p = {p}: {measured:.3} is below what any code needs: the loss was not applied");
}

#[test]
fn efficiency_p5() {
    efficiency(0);
}

#[test]
fn efficiency_p10() {
    efficiency(1);
}

#[test]
fn efficiency_p20() {
    efficiency(2);
}

/// 100 receivers at 10 % loss, default blocks (16 MiB in 12 blocks of
/// about 1000 symbols): every receiver needs every block repaired, yet few
/// speak. Without suppression each would NACK each block (1,200 NACKs a
/// round); the bounds allow a quarter of that in all rounds together, and
/// NACKs at most 3 % of the source packets (at K = 64 they were 5 %).
#[test]
fn nack_implosion_is_held_at_100_receivers() {
    let r = run(shipped("implosion-n100"));
    assert_delivered(&r);
    assert!(r.repaired_blocks >= 10, "the scenario must need repair:\n{}", r.table());
    eprintln!("NACKs per repaired block: {:.2}, in all {}", r.nacks_per_repaired_block, r.nacks_sent);
    let receivers = 100.0;
    assert!(
        r.nacks_per_repaired_block <= 0.25 * receivers,
        "{:.2} NACKs per repaired block\n{}",
        r.nacks_per_repaired_block,
        r.table()
    );
    assert!(r.nacks_sent * 100 <= 3 * r.source_packets, "{} NACKs\n{}", r.nacks_sent, r.table());
    // Most would-be NACKs were suppressed: without suppression every receiver NACKs every block.
    assert!(r.nacks_suppressed > 10 * r.nacks_sent);
}
