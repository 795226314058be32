//! The `netsim` tool as a user runs it.

#![allow(clippy::unwrap_used)] // test helpers: a failure is the test failing

use std::process::Command;

fn netsim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_netsim")).args(args).output().unwrap()
}

fn scenario(name: &str) -> String {
    format!("{}/scenarios/{name}.toml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn json_report_has_the_documented_fields_and_repeats_per_seed() {
    let file = scenario("chat-1000");
    let args = ["run", &file, "--json", "--seed", "3", "--set", "receivers=5", "--set", "workload.chats=100"];
    let out = netsim(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for field in [
        "delivered_all",
        "receivers",
        "object_bytes",
        "source_packets",
        "repair_packets",
        "repair_per_source",
        "nacks_sent",
        "nacks_suppressed",
        "medium_bytes",
        "completion_s",
        "trace_hash",
    ] {
        assert!(r.get(field).is_some(), "missing {field}");
    }
    assert_eq!(
        (r["delivered_all"].as_bool(), r["receivers"].as_u64(), r["seed"].as_u64()),
        (Some(true), Some(5), Some(3))
    );
    assert_eq!(r["object_bytes"].as_u64(), Some(100 * 120));
    let again: serde_json::Value = serde_json::from_slice(&netsim(&args).stdout).unwrap();
    assert_eq!(r["trace_hash"], again["trace_hash"]);
}

#[test]
fn a_bad_scenario_names_the_field_and_the_line() {
    let dir = std::env::temp_dir().join(format!("netsim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "name = \"x\"\nreceivers = 3\n\n[link]\njitter_ms = -4\n\n[workload]\nchats = 1\n").unwrap();
    let out = netsim(&["run", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("line 5") && err.contains("link.jitter_ms = -4"), "{err}");
    std::fs::write(&bad, "name = \"x\"\nreceivers = \"three\"\n[workload]\nchats = 1\n").unwrap();
    let err = String::from_utf8_lossy(&netsim(&["run", bad.to_str().unwrap()]).stderr).to_string();
    assert!(err.contains("line 2") && err.contains("receivers"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
