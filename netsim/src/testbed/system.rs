//! Running the system's commands (ip, tc, nft) and reading what they report.
//!
//! Owns starting a command and turning its failure into a message. It knows
//! no testbed layout.

use super::*;

/// Run a command to completion; `Err` carries its stderr.
pub(super) fn run_cmd(args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..]).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().map_err(|e| format!("`{}`: {e}", args.join(" ")))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(|e| format!("`{}`: {e}", args.join(" ")))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("`{}`: {e}", args.join(" ")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("`{}` failed: {}", args.join(" "), err.trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(super) fn sh(args: &[&str]) -> Result<(), String> {
    run_cmd(args, None).map(drop)
}

/// Run a command inside a namespace.
pub(super) fn in_ns(ns: &str, args: &[&str]) -> Result<(), String> {
    let full: Vec<&str> = ["ip", "netns", "exec", ns].iter().chain(args).copied().collect();
    sh(&full)
}

pub(super) fn existing_namespaces() -> Result<Vec<String>, String> {
    let list = run_cmd(&["ip", "netns", "list"], None)?;
    Ok(list.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect())
}
