//! Loss and rate on a host or a region link: nftables and tc.
//!
//! Owns the nftables tables and token buckets of a testbed and changing
//! them while it runs. It creates no namespace.

use super::*;

/// The namespaces whose nftables rules carry loss: every host, and the router.
pub(super) fn loss_namespaces(state: &State) -> Vec<String> {
    let hosts = state.hosts_iter().map(|t| state.namespace_of(t));
    hosts.chain(state.routed().then(|| state.router())).collect()
}

/// Rewrite one namespace's loss rules from the state, atomically (one `nft -f`).
pub(super) fn apply_loss(state: &State, ns: &str) -> Result<(), String> {
    // nft refuses `< 100` (numgen's range is 0-99), and 100% needs no dice anyway.
    let drop_rule = |percent: u8| match percent {
        100.. => "meta l4proto udp drop".to_string(),
        p => format!("meta l4proto udp numgen random mod 100 < {p} drop"),
    };
    let (hook, rules) = if ns == state.router() {
        let rules = (0..state.regions)
            .map(|r| (r, state.shape(Target::Link(r)).loss))
            .filter(|(_, loss)| *loss > 0)
            .flat_map(|(r, loss)| {
                [format!("iifname \"l{r}\" {}", drop_rule(loss)), format!("oifname \"l{r}\" {}", drop_rule(loss))]
            })
            .collect::<Vec<_>>();
        ("forward", rules)
    } else {
        let host = state.hosts_iter().find(|t| state.namespace_of(*t) == ns);
        let loss = host.map(|t| state.shape(t).loss).unwrap_or(0);
        ("input", if loss > 0 { vec![drop_rule(loss)] } else { Vec::new() })
    };
    let body: String = rules.iter().map(|r| format!("    {r}\n")).collect();
    // Declaring the table first makes the delete succeed on a fresh namespace.
    let ruleset = format!(
        "table inet lsim_testbed\ndelete table inet lsim_testbed\ntable inet lsim_testbed {{\n  \
         chain {hook} {{\n    type filter hook {hook} priority 0; policy accept;\n{body}  }}\n}}\n"
    );
    run_cmd(&["ip", "netns", "exec", ns, "nft", "-f", "-"], Some(&ruleset)).map(drop)
}

/// The (namespace, device) pairs a target's token bucket sits on.
pub(super) fn rate_devices(state: &State, t: Target) -> Vec<(String, String)> {
    match t {
        Target::Host { .. } => vec![(state.namespace_of(t), "eth0".to_string())],
        Target::Link(r) => vec![(state.router(), format!("l{r}")), (state.hub(), format!("rt{r}"))],
    }
}

pub(super) fn apply_rate(state: &State, t: Target) -> Result<(), String> {
    let shape = state.shape(t);
    for (ns, dev) in rate_devices(state, t) {
        match &shape.rate {
            Some(rate) => {
                let bits = parse_rate(rate)?;
                // At least 10 kB and 10 ms of traffic, so fast rates are not starved by timer granularity.
                let burst = (bits / 8 / 100).max(10_000);
                sh(&["ip", "-n", &ns, "link", "set", &dev, "txqueuelen", "1000"])?;
                let (rate, burst) = (format!("{bits}bit"), format!("{burst}b"));
                let args = ["qdisc", "replace", "dev", &dev, "root", "tbf", "rate", &rate, "burst", &burst];
                sh(&["tc", "-n", &ns].iter().chain(&args).chain(&["latency", "100ms"]).copied().collect::<Vec<_>>())?;
            }
            // Deleting a qdisc that is not there fails harmlessly: "off" is idempotent.
            None => drop(sh(&["tc", "-n", &ns, "qdisc", "del", "dev", &dev, "root"])),
        }
    }
    Ok(())
}

pub(super) fn set_loss(which: &Which, label: &str, percent: u8) -> Result<(), String> {
    check_loss(percent)?;
    require_tools(&[IP, NFT])?;
    let mut state = load(which)?;
    let t = state.target(label)?;
    state.shapes.entry(t.label()).or_default().loss = percent;
    let ns = match t {
        Target::Host { .. } => state.namespace_of(t),
        Target::Link(_) => state.router(),
    };
    apply_loss(&state, &ns)?;
    save(which, &state)
}

pub(super) fn set_rate(which: &Which, label: &str, rate: &str) -> Result<(), String> {
    let rate = if rate.eq_ignore_ascii_case("off") { None } else { Some(rate.to_string()) };
    if let Some(r) = &rate {
        parse_rate(r)?;
    }
    require_tools(&[IP, TC])?;
    let mut state = load(which)?;
    let t = state.target(label)?;
    state.shapes.entry(t.label()).or_default().rate = rate;
    apply_rate(&state, t)?;
    save(which, &state)
}
