//! Helpers shared by the scenario tests.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)] // test helpers: a failure is the test failing

use lsim_netsim::scenario::LossSpec;
use lsim_netsim::{Report, Scenario, Sim};

/// Loads a shipped scenario file.
pub fn shipped(name: &str) -> Scenario {
    let path = format!("{}/scenarios/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    Scenario::parse(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Runs a scenario after validating it again (overrides must stay valid).
pub fn run(s: Scenario) -> Report {
    s.validate(None).unwrap();
    Sim::new(s).unwrap().run()
}

/// The loss settings of the delivery matrix.
pub fn loss(name: &str) -> LossSpec {
    match name {
        "0" => LossSpec::None,
        "5" => LossSpec::Bernoulli { p: 0.05 },
        "20" => LossSpec::Bernoulli { p: 0.20 },
        "50" => LossSpec::Bernoulli { p: 0.50 },
        "bursty" => LossSpec::GilbertElliott { mean_loss: 0.10, mean_burst: 8.0 },
        _ => panic!("unknown loss {name}"),
    }
}

/// Asserts that every receiver verified every object bit-exact.
pub fn assert_delivered(r: &Report) {
    assert!(r.delivered_all, "not delivered to all:\n{}", r.table());
    for rx in &r.per_receiver {
        assert_eq!((rx.verified, rx.corrupt, rx.lost), (r.objects, 0, 0), "receiver {}:\n{}", rx.node, r.table());
    }
}
