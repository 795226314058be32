//! What must hold before a testbed is built: root, kernel, tools, sane values.
//!
//! Owns the checks and the parsing of rates and losses; each says what is
//! missing. It builds nothing.

use super::*;

pub(super) fn check_name(name: &str) -> Result<(), String> {
    let ok_chars = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if name.is_empty() || name.len() > 16 || !ok_chars || name.starts_with('-') {
        return Err(format!(
            "testbed name `{name}`: use 1 to 16 lowercase letters, digits or `-`, not starting with `-`"
        ));
    }
    Ok(())
}

/// The effective uid, from `/proc/self/status` (`Uid: real effective saved fs`).
pub(super) fn effective_uid() -> Result<u32, String> {
    let status = fs::read_to_string("/proc/self/status").map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .ok_or_else(|| "no `Uid:` line in /proc/self/status".to_string())
}

pub(super) fn require_root() -> Result<(), String> {
    if effective_uid()? != 0 {
        return Err("netsim testbed needs root (network namespaces); run it with sudo".to_string());
    }
    Ok(())
}

/// Why this kernel cannot route multicast between regions, or `None` if it
/// can (or if there is no `/proc` to tell).
///
/// A kernel built with IP multicast routing (`CONFIG_IP_MROUTE`) gives every
/// network namespace a `/proc/net/ip_mr_vif`, so looking in ours answers for
/// the router's too. Without it `smcrouted` starts but can add no interface,
/// and two regions never hear each other: `up` says so before building
/// anything, and tests that need routing skip with this reason.
pub fn multicast_routing_missing() -> Option<String> {
    let proc_net = Path::new("/proc/net");
    if !proc_net.join("dev").exists() || proc_net.join("ip_mr_vif").exists() {
        return None;
    }
    Some(
        "the kernel was built without IP multicast routing (CONFIG_IP_MROUTE): /proc/net/ip_mr_vif does not \
         exist, so multicast cannot be routed between regions; one region (--regions 1) works"
            .to_string(),
    )
}

/// Root, then the kernel, then the tools a testbed of `regions` needs: the
/// first thing missing, named with how to get it.
pub(super) fn require_machine(regions: u8) -> Result<(), String> {
    require_root()?;
    let mut tools = vec![IP, TC, NFT];
    if regions > 1 {
        // Before smcroute: installing it would not help.
        if let Some(why) = multicast_routing_missing() {
            return Err(format!("{regions} regions need a multicast router, but {why}"));
        }
        tools.push(SMCROUTED);
    }
    require_tools(&tools)
}

pub(super) fn has_tool(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .any(|dir| dir.join(tool).is_file())
}

/// Each tool with the Debian package that provides it.
pub(super) fn require_tools(tools: &[(&str, &str)]) -> Result<(), String> {
    for (tool, package) in tools {
        if !has_tool(tool) {
            return Err(format!("netsim testbed needs `{tool}`: install it with `apt-get install {package}`"));
        }
    }
    Ok(())
}

pub(super) const IP: (&str, &str) = ("ip", "iproute2");
pub(super) const TC: (&str, &str) = ("tc", "iproute2");
pub(super) const NFT: (&str, &str) = ("nft", "nftables");
pub(super) const SMCROUTED: (&str, &str) = ("smcrouted", "smcroute");

/// `11mbit`, `500kbit`, `2mbps` … in bits per second (tc's units: k = 1000).
pub(super) fn parse_rate(rate: &str) -> Result<u64, String> {
    let bad = || format!("rate `{rate}`: expected a number and a unit like 11mbit, 500kbit or 2mbps (or `off`)");
    let lower = rate.to_ascii_lowercase();
    let split = lower.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
    let (number, unit) = lower.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let scale = match unit {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "bps" => 8.0,
        "kbps" => 8e3,
        "mbps" => 8e6,
        "gbps" => 8e9,
        _ => return Err(bad()),
    };
    let bits = number * scale;
    if !(1e3..=1e11).contains(&bits) {
        return Err(format!("rate `{rate}`: must be between 1kbit and 100gbit"));
    }
    Ok(bits as u64)
}

pub(super) fn check_loss(percent: u8) -> Result<(), String> {
    if percent > 100 {
        return Err(format!("loss {percent}%: must be 0 to 100"));
    }
    Ok(())
}
