//! The simulator's own speed: datagram deliveries per wall-clock second with
//! 100 receivers (a 2 MiB file at 10 % loss, so repair, NACKs, suppression and
//! decoding are all in the loop).

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use lsim_netsim::scenario::LossSpec;
use lsim_netsim::{Scenario, Sim};

fn scenario() -> Scenario {
    let mut s = Scenario::parse(include_str!("../scenarios/implosion-n100.toml")).unwrap_or_else(|e| panic!("{e}"));
    s.workload.file_bytes = 2 << 20;
    s.loss = LossSpec::Bernoulli { p: 0.10 };
    s
}

fn bench(c: &mut Criterion) {
    // One run to learn how many deliveries a run makes (the same every run: seeded).
    let probe = Sim::new(scenario()).unwrap_or_else(|e| panic!("{e}")).run();
    assert!(probe.delivered_all);
    let mut g = c.benchmark_group("netsim");
    g.sample_size(10).sampling_mode(SamplingMode::Flat).throughput(Throughput::Elements(probe.deliveries));
    g.bench_function("n100_2mib_loss10", |b| {
        b.iter(|| {
            let r = Sim::new(scenario()).unwrap_or_else(|e| panic!("{e}")).run();
            assert_eq!(r.trace_hash, probe.trace_hash);
            r
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
