//! Fuzz tests of scenario files: `Scenario::parse` and
//! `Scenario::parse_with` on the shipped scenarios with bytes mutated, with
//! random TOML values put into their fields, and with random `--set`
//! overrides. A scenario file is outside input (`netsim run FILE`), so:
//! parsing returns `Ok` or `Err` and never panics, and an `Ok` scenario
//! yields its transport configurations and builds (`Sim::new`) without
//! panicking (it is not run).
//!
//! CI runs a modest number of cases. To fuzz for long:
//!
//! ```text
//! LSIM_FUZZ_CASES=1000000 cargo test --release -p lsim-netsim --test fuzz
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use lsim_netsim::{Scenario, Sim};
use lsim_testsupport::mutate::{config, mutate, mutation};
use proptest::prelude::*;

/// The smallest valid scenario.
const MIN: &str = "name = \"min\"\nreceivers = 1\n[workload]\nfile_bytes = 1000\n";

/// A small site: two regions, one with a repairer, several senders, a traffic mix and events.
const REGIONS: &str = r#"
name = "regions"
receivers = 1
senders = 1
[workload]
file_bytes = 3000
chats = 2
rekeys = 1
[[regions]]
name = "a"
receivers = 2
senders = 1
repairer = true
loss = { model = "bernoulli", p = 0.1 }
[regions.link]
bandwidth_bps = 1_000_000
delay_ms = 5
[[regions]]
name = "b"
receivers = 2
loss = { model = "gilbert-elliott", mean_loss = 0.1, mean_burst = 3 }
[[events]]
at_s = 0.1
action = "crash-repairer"
region = "a"
[[events]]
at_s = 0.2
action = "join"
region = "b"
count = 1
"#;

/// The scenarios shipped in `netsim/scenarios`, and the two above.
fn scenarios() -> &'static [String] {
    static S: OnceLock<Vec<String>> = OnceLock::new();
    S.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut v: Vec<(std::path::PathBuf, String)> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .map(|p| (p.clone(), std::fs::read_to_string(p).unwrap()))
            .collect();
        v.sort();
        let mut texts: Vec<String> = v.into_iter().map(|(_, t)| t).collect();
        texts.push(MIN.to_string());
        texts.push(REGIONS.to_string());
        texts
    })
}

// ------------------------------------------------------------ field values

/// Every field of the schema, dotted; `regions.N.` and `events.N.` address
/// array entries.
const FIELDS: &[&str] = &[
    "name",
    "description",
    "seed",
    "receivers",
    "senders",
    "time_limit_s",
    "sample_ms",
    "loss.model",
    "loss.p",
    "loss.mean_loss",
    "loss.mean_burst",
    "link.bandwidth_bps",
    "link.overhead_bytes",
    "link.queue_bytes",
    "link.delay_ms",
    "link.jitter_ms",
    "link.reorder",
    "link.reorder_ms",
    "link.duplicate",
    "workload.file_bytes",
    "workload.chats",
    "workload.chat_bytes",
    "workload.chat_interval_ms",
    "workload.files",
    "workload.rekeys",
    "workload.rekey_bytes",
    "workload.rekey_interval_ms",
    "sender.symbol_size",
    "sender.block_symbols",
    "sender.rate_bps",
    "sender.proactive",
    "sender.loss_margin",
    "sender.repair_share",
    "sender.backoff_k",
    "sender.initial_grtt_ms",
    "sender.cache_mib",
    "sender.rate_auto",
    "receiver.group_size",
    "receiver.max_blocks",
    "attack.forged_per_second",
    "regions.0.name",
    "regions.0.receivers",
    "regions.0.senders",
    "regions.0.repairer",
    "regions.0.cell_bps",
    "regions.0.loss",
    "regions.0.repairer_loss",
    "regions.0.link.bandwidth_bps",
    "regions.0.link.delay_ms",
    "regions.0.link.loss",
    "regions.0.link.queue_bytes",
    "regions.1.receivers",
    "regions.1.senders",
    "events.0.at_s",
    "events.0.action",
    "events.0.region",
    "events.0.count",
];

fn value() -> impl Strategy<Value = toml::Value> {
    use toml::Value;
    let int = prop_oneof![
        Just(0i64),
        Just(1),
        Just(2),
        Just(-1),
        Just(7),
        Just(15),
        Just(16),
        Just(1000),
        Just(2047),
        Just(8000),
        Just(65_000),
        Just(65_535),
        Just(65_536),
        Just(1 << 20),
        Just(i64::from(u32::MAX)),
        Just(i64::from(u32::MAX) + 1),
        Just(1 << 40),
        Just((1 << 40) + 1),
        Just(10_000_000_000),
        Just(10_000_000_001),
        Just(i64::MAX),
        Just(i64::MIN),
        any::<i64>(),
    ];
    let float = prop_oneof![
        Just(0.0f64),
        Just(-0.0),
        Just(1e-300),
        Just(0.5),
        Just(0.95),
        Just(0.949_999),
        Just(1.0),
        Just(1e6),
        Just(1e300),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::NAN),
        any::<f64>(),
    ];
    let string = prop_oneof![
        Just("bernoulli".to_string()),
        Just("gilbert-elliott".to_string()),
        Just("none".to_string()),
        Just("join".to_string()),
        Just("leave".to_string()),
        Just("crash-repairer".to_string()),
        Just("a".to_string()),
        Just(String::new()),
        any::<String>(),
    ];
    let leaf = prop_oneof![
        int.prop_map(Value::Integer),
        float.prop_map(Value::Float),
        string.prop_map(Value::String),
        any::<bool>().prop_map(Value::Boolean),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(
                (prop::sample::select(vec!["model", "p", "mean_loss", "mean_burst", "x"]), inner),
                0..4
            )
            .prop_map(|kv| Value::Table(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

/// Sets dotted `field` (with array indices) in `doc`, creating what is missing.
fn set(doc: &mut toml::Table, field: &str, v: toml::Value) {
    let parts: Vec<&str> = field.split('.').collect();
    let mut cur = doc;
    let mut i = 0;
    while i + 1 < parts.len() {
        let key = parts[i];
        if let Some(Ok(idx)) = parts.get(i + 1).map(|p| p.parse::<usize>()) {
            let arr = cur.entry(key.to_string()).or_insert_with(|| toml::Value::Array(Vec::new()));
            let Some(arr) = arr.as_array_mut() else { return };
            while arr.len() <= idx {
                arr.push(toml::Value::Table(toml::Table::new()));
            }
            let Some(t) = arr[idx].as_table_mut() else { return };
            cur = t;
            i += 2;
            if i >= parts.len() {
                return;
            }
            if i + 1 == parts.len() {
                break;
            }
            continue;
        }
        let next = cur.entry(key.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(t) = next.as_table_mut() else { return };
        cur = t;
        i += 1;
    }
    cur.insert(parts[parts.len() - 1].to_string(), v);
}

// ------------------------------------------------------------ the property

/// Whether building `s` is cheap enough for a test: `Sim::new` hashes the
/// whole workload of every sender up front and makes every node.
fn cheap(s: &Scenario) -> bool {
    let w = &s.workload;
    let senders = u64::from(s.senders) + s.regions.iter().map(|r| u64::from(r.senders)).sum::<u64>();
    let bytes = w.file_bytes.saturating_add(w.files.iter().fold(0u64, |a, &f| a.saturating_add(f)));
    let objects = u64::from(w.chats) + u64::from(w.rekeys) + w.files.len() as u64;
    let nodes = u64::from(s.receivers) + s.regions.iter().map(|r| u64::from(r.receivers)).sum::<u64>();
    senders.saturating_mul(bytes) <= 64 << 20 && senders.saturating_mul(objects) <= 20_000 && nodes <= 2_000
}

fn check(text: &str, overrides: &[String]) {
    let parsed = if overrides.is_empty() { Scenario::parse(text) } else { Scenario::parse_with(text, overrides) };
    let Ok(s) = parsed else { return };
    let _ = s.sender_config(1);
    let _ = s.receiver_config(100, 1);
    let _ = s.loss_process();
    for r in &s.regions {
        let _ = r.loss.as_ref().map(|l| l.process());
        let _ = r.repairer_loss.process();
    }
    if cheap(&s) {
        let _ = Sim::new(s);
    }
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn mutated_scenario_files(i in any::<prop::sample::Index>(), ms in prop::collection::vec(mutation(), 1..6)) {
        let base = i.get(scenarios());
        let text = String::from_utf8_lossy(&mutate(base.as_bytes().to_vec(), &ms)).into_owned();
        check(&text, &[]);
    }

    #[test]
    fn random_values_in_fields(i in any::<prop::sample::Index>(),
                               sets in prop::collection::vec((prop::sample::select(FIELDS.to_vec()), value()), 1..5)) {
        let base = i.get(scenarios());
        let mut doc: toml::Table = toml::from_str(base).unwrap();
        for (field, v) in sets {
            set(&mut doc, field, v);
        }
        // NaN and infinities have TOML spellings; a value TOML cannot write is skipped.
        if let Ok(text) = toml::to_string(&doc) {
            check(&text, &[]);
        }
    }

    #[test]
    fn random_overrides(i in any::<prop::sample::Index>(),
                        sets in prop::collection::vec((prop::sample::select(FIELDS.to_vec()), value()), 1..4),
                        raw in prop::collection::vec(any::<String>(), 0..2)) {
        let base = i.get(scenarios());
        let mut overrides: Vec<String> = sets
            .into_iter()
            .filter(|(f, _)| !f.starts_with("regions.") && !f.starts_with("events."))
            .map(|(f, v)| format!("{f}={v}"))
            .collect();
        overrides.extend(raw);
        if !overrides.is_empty() {
            check(base, &overrides);
        }
    }
}

// ------------------------------------------------------------ findings

/// Found by fuzzing, fixed; this keeps it fixed. It was:
/// Receivers are summed in `u32` with overflow checks on: a scenario with
/// two regions of 2^31 receivers each panics instead of being refused.
#[test]
fn huge_region_receiver_counts_are_refused() {
    let text = "name = \"t\"\n[workload]\nfile_bytes = 1000\n\
                [[regions]]\nname = \"a\"\nreceivers = 2147483648\n\
                [[regions]]\nname = \"b\"\nreceivers = 2147483648\n";
    assert!(Scenario::parse(text).is_err());
}

/// Found by fuzzing, fixed; this keeps it fixed. It was:
/// Senders are added in `u32` with overflow checks on.
#[test]
fn huge_sender_counts_are_refused() {
    let text = "name = \"t\"\nreceivers = 1\nsenders = 4294967295\n[workload]\nfile_bytes = 1000\n\
                [[regions]]\nname = \"a\"\nreceivers = 1\nsenders = 1\n";
    assert!(Scenario::parse(text).is_err());
}
