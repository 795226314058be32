//! What a user who gives no flags gets is what the benchmarks ran and what
//! the transport calls its default: an adaptive rate up to 1 Gbit/s and
//! blocks of up to 1024 symbols, for `lsim send` and for members (`lsim chat`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test harness

mod common;

use common::lsim;
use lsim_transport::SenderConfig;

/// The `[default: X]` clap prints for `--flag` in `lsim <command> --help`.
fn default_of(command: &str, flag: &str) -> String {
    let out = lsim().args([command, "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let from = help.find(&format!("--{flag} <")).unwrap_or_else(|| panic!("no --{flag} in:\n{help}"));
    let rest = &help[from..];
    let start = rest.find("[default: ").unwrap_or_else(|| panic!("--{flag} has no default:\n{rest}")) + 10;
    rest[start..rest[start..].find(']').unwrap() + start].to_string()
}

#[test]
fn no_flags_means_the_transports_defaults() {
    let d = SenderConfig::default();
    assert!(d.queue_target.is_some());
    let ceiling_mbit = format!("{}", d.rate as f64 * 8e-6);
    for command in ["send", "chat"] {
        assert_eq!(default_of(command, "rate"), "auto", "lsim {command}");
        assert_eq!(default_of(command, "max-rate"), ceiling_mbit, "lsim {command}");
    }
    assert_eq!(default_of("send", "block-symbols"), d.block_symbols.to_string());
}
