//! Topologies of regions: repairers keep repair inside their region, a
//! crashed repairer's region falls back to the sender, members join and leave
//! mid-transfer, several senders and a traffic mix share the regions.

mod common;

use common::{assert_delivered, run, shipped};
use lsim_netsim::Scenario;
use lsim_netsim::scenario::{Action, EventSpec, LossSpec};

fn link_ratios(r: &lsim_netsim::Report) -> Vec<f64> {
    r.regions.iter().filter(|g| g.receivers > 0).map(|g| g.link_in_per_object_byte).collect()
}

#[test]
fn repairers_keep_each_links_traffic_within_1_15_of_the_file() {
    let with = run(shipped("regions-4x25"));
    assert_delivered(&with);
    let mut s = shipped("regions-4x25");
    s.regions.iter_mut().for_each(|r| r.repairer = false);
    let without = run(s);
    assert_delivered(&without);
    let (a, b) = (link_ratios(&with), link_ratios(&without));
    eprintln!("link bytes in / file bytes per region: with repairers {a:.3?}, without {b:.3?}");
    assert_eq!(a.len(), 4);
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(*x <= 1.15, "region {i}: {x:.3} > 1.15 with repairers\n{}", with.table());
        assert!(*x >= 1.0, "region {i}: {x:.3}: less than the file crossed the link");
        assert!(y > x, "region {i}: without repairers {y:.3} ≤ with {x:.3}: the repairers did nothing");
    }
    assert_eq!(with.repair_packets, 0, "no repair from the sender crossed any link");
    for g in with.regions.iter().filter(|g| g.receivers > 0) {
        assert!(g.local_repair_packets > 0, "{}: its repairer answered nothing", g.name);
    }
}

#[test]
fn a_crashed_repairers_region_falls_back_to_the_sender_and_completes() {
    let mut s = shipped("regions-4x25");
    s.events.push(EventSpec { at_s: 3.0, action: Action::CrashRepairer, region: "crew-a".into(), count: 1 });
    let r = run(s);
    assert!(r.delivered_all, "{}", r.table());
    let crew_a: Vec<_> =
        r.per_receiver.iter().filter(|x| x.region == 1 && x.node < lsim_netsim::sim::REPAIRER_IDS).collect();
    assert_eq!(crew_a.len(), 25);
    for x in &crew_a {
        assert_eq!((x.verified, x.corrupt), (1, 0), "receiver {} of crew-a:\n{}", x.node, r.table());
    }
    // Members that still missed something after the crash went back to the sender
    // (the others had everything, or got it from repair the first ones asked for).
    let fell_back = crew_a.iter().filter(|x| x.repairer_fallbacks > 0).count();
    assert!(fell_back > 0, "nobody in crew-a went back to the sender");
    let others = r.per_receiver.iter().filter(|x| x.region > 1).map(|x| x.repairer_fallbacks).sum::<u64>();
    assert_eq!(others, 0, "regions whose repairer lives never fall back");
    assert!(r.repair_packets > 0, "the sender repaired crew-a");
}

const SMALL: &str = r#"
name = "small-regions"
seed = 3
receivers = 2
senders = 1
time_limit_s = 120
[loss]
model = "bernoulli"
p = 0.05
[sender]
rate_bps = 1_500_000
[workload]
file_bytes = 300_000
chats = 20
chat_interval_ms = 50
rekeys = 5
rekey_interval_ms = 200
[[regions]]
name = "north"
receivers = 10
senders = 1
repairer = true
loss = { model = "bernoulli", p = 0.1 }
[[regions]]
name = "south"
receivers = 6
loss = { model = "gilbert-elliott", mean_loss = 0.1, mean_burst = 4 }
[regions.link]
bandwidth_bps = 1_000_000
delay_ms = 40
loss = 0.02
"#;

#[test]
fn two_senders_and_a_traffic_mix_reach_every_region() {
    let s = Scenario::parse(SMALL).unwrap();
    let r = run(s);
    assert_delivered(&r);
    assert_eq!(r.objects, 2 * (1 + 20 + 5), "both senders' file, chats and rekeys");
    assert!(r.regions[1].local_repair_packets > 0, "north's repairer served both senders' objects");
}

#[test]
fn members_join_and_leave_mid_transfer() {
    let mut s = Scenario::parse(SMALL).unwrap();
    s.events.push(EventSpec { at_s: 1.0, action: Action::Join, region: "north".into(), count: 3 });
    s.events.push(EventSpec { at_s: 0.5, action: Action::Leave, region: "south".into(), count: 2 });
    s.events.push(EventSpec { at_s: 0.8, action: Action::Leave, region: String::new(), count: 1 });
    let r = run(s);
    assert!(r.delivered_all, "{}", r.table());
    let verified_all = r.per_receiver.iter().filter(|x| x.verified == r.objects && x.corrupt == 0).count();
    assert_eq!(verified_all, r.per_receiver.len() - 3, "all but the three leavers, joiners included\n{}", r.table());
    assert!(r.per_receiver.iter().all(|x| x.corrupt == 0));
}

#[test]
fn bad_regions_and_events_name_the_entry_and_the_line() {
    let text = SMALL.replace("bandwidth_bps = 1_000_000", "bandwidth_bps = 5");
    let line = text.lines().position(|l| l.contains("bandwidth_bps = 5")).unwrap() + 1;
    let e = Scenario::parse(&text).unwrap_err().to_string();
    assert_eq!(e, format!("line {line}: regions[1].link.bandwidth_bps = 5: must be 8 kbit/s to 10 Gbit/s"));
    let text = format!("{SMALL}[[events]]\nat_s = 1\naction = \"crash-repairer\"\nregion = \"south\"\n");
    let e = Scenario::parse(&text).unwrap_err().to_string();
    assert!(e.contains("events[0].action") && e.contains("no repairer"), "{e}");
    let text = format!("{SMALL}[[events]]\nat_s = 1\naction = \"join\"\nregion = \"east\"\n");
    let e = Scenario::parse(&text).unwrap_err().to_string();
    assert!(e.contains("events[0].region") && e.contains("no region of that name"), "{e}");
    let mut s = Scenario::parse(SMALL).unwrap();
    s.regions[0].loss = Some(LossSpec::Bernoulli { p: 1.2 });
    let e = s.validate(None).unwrap_err().to_string();
    assert!(e.contains("regions[0].loss.p = 1.2"), "{e}");
}
