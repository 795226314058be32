//! `up`: building a testbed's namespaces, bridges, router and shaping.
//!
//! Owns creating every interface inside its namespace and starting the
//! router's `smcrouted`. It must not touch anything the state file does not list.

use super::*;

pub(super) fn up(which: &Which, plan: Plan) -> Result<(), String> {
    if plan.regions == 0 || plan.regions > 250 || plan.hosts == 0 || plan.hosts > 250 {
        return Err(format!("{} regions x {} hosts: each must be 1 to 250", plan.regions, plan.hosts));
    }
    if plan.regions == 1 && (plan.link_rate.is_some() || plan.link_loss > 0) {
        return Err("--link-rate and --link-loss need at least 2 regions (one region has no router)".to_string());
    }
    check_loss(plan.link_loss)?;
    check_loss(plan.host_loss)?;
    for rate in plan.link_rate.iter().chain(&plan.host_rate) {
        parse_rate(rate)?;
    }
    // Before the state file: on a machine that cannot run it, nothing is built.
    require_machine(plan.regions)?;
    if state_path(which).exists() {
        let dir = if which.state_dir == Path::new(DEFAULT_STATE_DIR) {
            String::new()
        } else {
            format!(" --state-dir {}", which.state_dir.display())
        };
        return Err(format!(
            "testbed {} is already up (state file {}); run `netsim testbed down --name {}{dir}` first",
            which.name,
            state_path(which).display(),
            which.name
        ));
    }
    let mut state = State::new(&which.name, plan.regions, plan.hosts);
    let existing = existing_namespaces()?;
    if let Some(clash) = state.namespaces.iter().find(|ns| existing.contains(ns)) {
        return Err(format!("namespace {clash} already exists (not listed by any testbed state); remove it first"));
    }
    for t in state.targets() {
        let (loss, rate) = match t {
            Target::Host { .. } => (plan.host_loss, plan.host_rate.clone()),
            Target::Link(_) => (plan.link_loss, plan.link_rate.clone()),
        };
        let shape = Shape { loss, rate };
        if shape != Shape::default() {
            state.shapes.insert(t.label(), shape);
        }
    }
    // Written before anything exists, so `down` can undo a build cut short.
    save(which, &state)?;
    if let Err(e) = build(which, &state) {
        let undo = down(which).err().map(|d| format!(" (and cleaning up failed too: {d})")).unwrap_or_default();
        return Err(format!("{e}{undo}"));
    }
    print!("{}", state.describe());
    Ok(())
}

pub(super) fn build(which: &Which, state: &State) -> Result<(), String> {
    let hub = state.hub();
    sh(&["ip", "netns", "add", &hub])?;
    for region in 0..state.regions {
        let br = format!("br{region}");
        sh(&["ip", "-n", &hub, "link", "add", &br, "type", "bridge", "mcast_snooping", "0"])?;
        sh(&["ip", "-n", &hub, "link", "set", &br, "up"])?;
    }
    if state.routed() {
        build_router(state)?;
    }
    for t in state.hosts_iter() {
        build_host(state, t)?;
    }
    for t in state.targets() {
        apply_rate(state, t)?;
    }
    for ns in loss_namespaces(state) {
        apply_loss(state, &ns)?;
    }
    if state.routed() {
        start_router_daemon(which, state)?;
    }
    Ok(())
}

/// The router: one veth per region bridge, forwarding on.
pub(super) fn build_router(state: &State) -> Result<(), String> {
    let (hub, rt) = (state.hub(), state.router());
    sh(&["ip", "netns", "add", &rt])?;
    sh(&["ip", "-n", &rt, "link", "set", "lo", "up"])?;
    in_ns(&rt, &["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])?;
    for region in 0..state.regions {
        let (inner, port) = (format!("l{region}"), format!("rt{region}"));
        let addr = format!("{}/16", router_addr(region));
        sh(&["ip", "link", "add", &inner, "netns", &rt, "type", "veth", "peer", "name", &port, "netns", &hub])?;
        sh(&["ip", "-n", &hub, "link", "set", &port, "master", &format!("br{region}"), "up"])?;
        sh(&["ip", "-n", &rt, "addr", "add", &addr, "dev", &inner])?;
        sh(&["ip", "-n", &rt, "link", "set", &inner, "up"])?;
    }
    Ok(())
}

pub(super) fn build_host(state: &State, t: Target) -> Result<(), String> {
    let Target::Host { region, host } = t else { return Ok(()) };
    let (hub, ns, port) = (state.hub(), state.namespace_of(t), t.label());
    sh(&["ip", "netns", "add", &ns])?;
    sh(&["ip", "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port, "netns", &hub])?;
    sh(&["ip", "-n", &hub, "link", "set", &port, "master", &format!("br{region}"), "up"])?;
    sh(&["ip", "-n", &ns, "addr", "add", &format!("{}/16", host_addr(region, host)), "dev", "eth0"])?;
    sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
    sh(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
    sh(&["ip", "-n", &ns, "route", "add", "224.0.0.0/4", "dev", "eth0"])?;
    if state.routed() {
        sh(&["ip", "-n", &ns, "route", "add", "default", "via", &router_addr(region)])?;
    }
    Ok(())
}

/// `smcrouted` in the router namespace, forwarding every routable group from
/// each region to all the others. Its socket, pid file and log live next to
/// the state file so testbeds never share them.
pub(super) fn start_router_daemon(which: &Which, state: &State) -> Result<(), String> {
    let links: Vec<String> = (0..state.regions).map(|r| format!("l{r}")).collect();
    let mut conf = String::from("# netsim testbed: forward multicast between regions (TTL 1 stays home)\n");
    for from in &links {
        let to: Vec<&str> = links.iter().filter(|l| *l != from).map(String::as_str).collect();
        conf += &format!("mroute from {from} group 224.0.0.0/4 to {}\n", to.join(" "));
    }
    let conf_path = daemon_file(which, "conf");
    let (pid_path, sock_path, log_path) =
        (daemon_file(which, "pid"), daemon_file(which, "sock"), daemon_file(which, "log"));
    fs::write(&conf_path, conf).map_err(|e| format!("cannot write {}: {e}", conf_path.display()))?;
    let log = fs::File::create(&log_path).map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    let rt = state.router();
    let ident = format!("lsim-{}", state.name);
    let mut child = Command::new("ip")
        .args(["netns", "exec", &rt, "smcrouted", "-n", "-l", "notice", "-i", &ident])
        .arg("-f")
        .arg(&conf_path)
        .arg("-P")
        .arg(&pid_path)
        .arg("-u")
        .arg(&sock_path)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| format!("cannot start smcrouted: {e}"))?;
    // Ready when the kernel has a multicast interface for every link and the pid file is written.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            return Err(format!("smcrouted in {rt} exited ({status}): {}", log.trim()));
        }
        let vifs = run_cmd(&["ip", "netns", "exec", &rt, "cat", "/proc/net/ip_mr_vif"], None).unwrap_or_default();
        let all_vifs = links.iter().all(|l| vifs.split_whitespace().any(|w| w == l));
        if all_vifs && pid_path.exists() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            return Err(format!("smcrouted in {rt} not ready after 5 s: {}", log.trim()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
