//! A seed reproduces a run bit for bit; another seed gives another run.

mod common;

use common::{run, shipped};

#[test]
fn same_seed_same_trace_different_seed_different_trace() {
    let mut s = shipped("forged");
    s.workload.file_bytes = 1 << 20;
    let a = run(s.clone());
    let b = run(s.clone());
    s.seed += 1;
    let c = run(s);
    assert!(a.delivered_all && c.delivered_all);
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!((a.events, a.completion_s, a.repair_packets), (b.events, b.completion_s, b.repair_packets));
    assert_ne!(a.trace_hash, c.trace_hash);
}
