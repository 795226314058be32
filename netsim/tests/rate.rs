//! The adaptive rate (`rate_auto`, issue 7) on an 11 Mbit/s medium with 5 %
//! random loss: it must find and hold the link's rate although the loss
//! never stops (goodput at least 90 % of what the link can carry of payload
//! after the loss), and two senders on the one medium must share it.

mod common;

use common::{assert_delivered, run, shipped};
use lsim_netsim::scenario::LossSpec;
use lsim_netsim::{Report, Scenario};
use lsim_transport::wire::{DATA_HEADER_LEN, SHORT_HEADER_LEN};

/// Payload bits per second the medium carries when it carries only data
/// packets (all of them in the shortest form), times the share of them a
/// receiver gets.
fn payload_rate_after_loss(s: &Scenario) -> f64 {
    let symbol = f64::from(s.sender_config(0).symbol_size);
    let datagram = (SHORT_HEADER_LEN + DATA_HEADER_LEN + lsim_netsim::seal::TAG_LEN) as f64 + symbol;
    let on_air = datagram + f64::from(s.link.overhead_bytes);
    let LossSpec::Bernoulli { p } = s.loss else { panic!("rate-auto.toml has Bernoulli loss") };
    s.link.bandwidth_bps as f64 * symbol / on_air * (1.0 - p) / 1e6
}

/// Mbit/s of one sender's workload, from when its last object was verified by all.
fn sender_goodput(r: &Report, s: &Scenario, sender: u32) -> f64 {
    let done = r.objects_done_s.iter().filter(|&&(n, _, _)| n == sender).map(|&(_, _, t)| t).fold(0.0, f64::max);
    assert!(done > 0.0, "sender {sender} never finished:\n{}", r.table());
    s.workload.file_bytes as f64 * 8.0 / done / 1e6
}

#[test]
fn one_sender_holds_the_link_under_random_loss() {
    let s = shipped("rate-auto");
    let target = 0.9 * payload_rate_after_loss(&s);
    let r = run(s);
    assert_delivered(&r);
    eprintln!("goodput {:.2} Mbit/s, 90 % target {target:.2} Mbit/s", r.goodput_mbps);
    assert!(r.goodput_mbps >= target, "goodput {:.2} < {target:.2} Mbit/s\n{}", r.goodput_mbps, r.table());
    assert_eq!(r.queue_drops, 0, "the queue the rate follows never overflowed");
}

#[test]
fn two_senders_share_the_link() {
    let mut s = shipped("rate-auto");
    s.senders = 2;
    let target = 0.9 * payload_rate_after_loss(&s);
    let r = run(s.clone());
    assert_delivered(&r);
    let senders: Vec<u32> = {
        let mut v: Vec<u32> = r.objects_done_s.iter().map(|&(n, _, _)| n).collect();
        v.dedup();
        v
    };
    assert_eq!(senders.len(), 2, "{:?}", r.objects_done_s);
    let (a, b) = (sender_goodput(&r, &s, senders[0]), sender_goodput(&r, &s, senders[1]));
    eprintln!("senders {a:.2} and {b:.2} Mbit/s, together {:.2} (90 % target {target:.2})", a + b);
    assert!(a.max(b) / a.min(b) <= 1.2, "shares {a:.2} and {b:.2} Mbit/s differ by more than 20 %");
    assert!(a + b >= target, "together {:.2} < {target:.2} Mbit/s\n{}", a + b, r.table());
}
