//! `--config FILE`: a TOML file for everything a flag can say.
//!
//! Keys are flag names without the dashes (`data-dir`, `xmpp-listen`,
//! `open-with`); a table named after the subcommand (`[server]`,
//! `[chat]`, `[user]`…) applies to that subcommand, top-level keys to
//! all. A flag on the command line wins over the file. Booleans are
//! switches (`tls = true` is `--tls`); arrays repeat the flag.
//!
//! Owns only the rewriting of the argument list; clap checks the result,
//! so a wrong key gets clap's own clear error.

use std::ffi::OsString;

use anyhow::{Context, Result, anyhow, bail};

/// Returns `args` with the config file's settings added, or `args`
/// unchanged when there is no `--config`.
pub fn expand(args: Vec<OsString>) -> Result<Vec<OsString>> {
    let strings: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let Some(at) = strings.iter().position(|a| a == "--config" || a.starts_with("--config=")) else {
        return Ok(args);
    };
    let (path, remove) = match strings[at].strip_prefix("--config=") {
        Some(p) => (p.to_string(), 1),
        None => (strings.get(at + 1).cloned().context("--config needs a file")?, 2),
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow!("--config {path}: cannot read it: {}", crate::io_why(&e)))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        // toml's own text spans lines (a snippet of the file): one line with the line number instead.
        let at = e.span().map_or(0, |s| s.start.min(text.len()));
        let line = 1 + text.as_bytes()[..at].iter().filter(|b| **b == b'\n').count();
        anyhow!("--config {path}: not valid TOML at line {line}: {}", e.message().trim())
    })?;
    let mut out: Vec<String> = strings[..at].iter().chain(&strings[at + remove..]).cloned().collect();
    // The subcommand: the first argument that is not a flag.
    let sub = out.iter().skip(1).find(|a| !a.starts_with('-')).cloned().unwrap_or_default();
    let given =
        |out: &[String], key: &str| out.iter().any(|a| *a == format!("--{key}") || a.starts_with(&format!("--{key}=")));
    let mut extra = Vec::new();
    let add = |key: &str, value: &toml::Value, out: &[String], extra: &mut Vec<String>| -> Result<()> {
        if given(out, key) {
            return Ok(());
        }
        match value {
            toml::Value::Boolean(true) => extra.push(format!("--{key}")),
            toml::Value::Boolean(false) => {}
            toml::Value::String(s) => extra.extend([format!("--{key}"), s.clone()]),
            toml::Value::Integer(i) => extra.extend([format!("--{key}"), i.to_string()]),
            toml::Value::Float(f) => extra.extend([format!("--{key}"), f.to_string()]),
            toml::Value::Array(items) => {
                for item in items {
                    match item {
                        toml::Value::String(s) => extra.extend([format!("--{key}"), s.clone()]),
                        other => extra.extend([format!("--{key}"), other.to_string()]),
                    }
                }
            }
            other => bail!("{path}: {key} = {other}: use a string, number, boolean or array"),
        }
        Ok(())
    };
    for (key, value) in &table {
        match value {
            toml::Value::Table(section) if *key == sub => {
                for (k, v) in section {
                    add(k, v, &out, &mut extra)?;
                }
            }
            toml::Value::Table(_) => {}
            v => add(key, v, &out, &mut extra)?,
        }
    }
    out.extend(extra);
    Ok(out.into_iter().map(OsString::from).collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn run(file: &str, args: &[&str]) -> Vec<String> {
        let path = std::env::temp_dir().join(format!("lsim-config-{}-{}.toml", std::process::id(), args.len()));
        std::fs::write(&path, file).unwrap();
        let mut argv: Vec<OsString> = args.iter().map(OsString::from).collect();
        argv.extend([OsString::from("--config"), path.clone().into()]);
        let out = expand(argv).unwrap().into_iter().map(|a| a.into_string().unwrap()).collect();
        std::fs::remove_file(path).unwrap();
        out
    }

    #[test]
    fn file_fills_in_and_the_command_line_wins() {
        let file = "iface = \"10.0.0.7\"\n[chat]\njid = \"a@x\"\nno-open = true\ntls = \"required\"\n[server]\ndata-dir = \"/srv\"\n";
        let out = run(file, &["lsim", "chat", "--tls", "disabled"]);
        assert_eq!(out[..4], ["lsim", "chat", "--tls", "disabled"]);
        assert!(out.windows(2).any(|w| w == ["--jid", "a@x"]));
        assert!(out.contains(&"--no-open".to_string()));
        assert!(out.windows(2).any(|w| w == ["--iface", "10.0.0.7"]));
        assert_eq!(out.iter().filter(|a| *a == "--tls").count(), 1);
        assert!(!out.contains(&"--data-dir".to_string()), "other sections stay out");
    }

    #[test]
    fn a_bad_file_is_one_line_naming_the_flag_and_the_line() {
        let path = std::env::temp_dir().join(format!("lsim-config-{}-bad.toml", std::process::id()));
        std::fs::write(&path, "iface = \"lo\"\n[chat\njid = 1\n").unwrap();
        let argv: Vec<OsString> =
            ["lsim", "chat", "--config"].iter().map(OsString::from).chain([path.clone().into()]).collect();
        let err = format!("{:#}", expand(argv).unwrap_err());
        std::fs::remove_file(&path).unwrap();
        assert!(err.starts_with(&format!("--config {}: not valid TOML at line 2: ", path.display())), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn no_config_changes_nothing() {
        let argv: Vec<OsString> = ["lsim", "demo"].iter().map(OsString::from).collect();
        assert_eq!(expand(argv.clone()).unwrap(), argv);
    }
}
