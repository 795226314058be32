//! Scenario files: `Scenario::parse` returns Ok or Err; an Ok scenario
//! yields its configurations and, when its workload is small, builds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lsim_netsim::{Scenario, Sim};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(s) = Scenario::parse(text) else { return };
    let _ = s.sender_config(1);
    let _ = s.receiver_config(100, 1);
    let w = &s.workload;
    let senders = u64::from(s.senders) + s.regions.iter().map(|r| u64::from(r.senders)).sum::<u64>();
    let bytes = w.file_bytes.saturating_add(w.files.iter().fold(0u64, |a, &f| a.saturating_add(f)));
    let objects = u64::from(w.chats) + u64::from(w.rekeys) + w.files.len() as u64;
    let nodes = u64::from(s.receivers) + s.regions.iter().map(|r| u64::from(r.receivers)).sum::<u64>();
    if senders.saturating_mul(bytes) <= 16 << 20 && senders.saturating_mul(objects) <= 5_000 && nodes <= 1_000 {
        let _ = Sim::new(s);
    }
});
