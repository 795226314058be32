//! A scenario's values checked, with errors that name the field and the line.
//!
//! Owns `Scenario::validate` and finding a field's line in the TOML text. It
//! changes no value and builds nothing.

use super::*;

impl Scenario {
    /// Checks every value; `text` (the file) lets errors name the line.
    pub fn validate(&self, text: Option<&str>) -> Result<(), ScenarioError> {
        let bad = |field: &str, value: String, why: &str| ScenarioError::Invalid {
            field: field.to_string(),
            line: text.and_then(|t| line_of(t, field)),
            value,
            why: why.to_string(),
        };
        let prob = |field: &str, p: f64, max_excl: f64| {
            if (0.0..max_excl).contains(&p) {
                Ok(())
            } else {
                Err(bad(field, p.to_string(), &format!("must be at least 0 and below {max_excl}")))
            }
        };
        if !(1..=10_000).contains(&self.total_receivers()) {
            return Err(bad(
                "receivers",
                self.total_receivers().to_string(),
                "receivers in all (the senders' cell and every region) must be 1 to 10000",
            ));
        }
        let senders = self.regions.iter().fold(self.senders, |n, r| n.saturating_add(r.senders));
        if !(1..=64).contains(&senders) {
            return Err(bad("senders", senders.to_string(), "senders in all must be 1 to 64"));
        }
        if !(1.0..=60_000.0).contains(&self.sample_ms) {
            return Err(bad("sample_ms", self.sample_ms.to_string(), "must be 1 to 60000 ms"));
        }
        let nth_bad = |array: &str, i: usize, field: &str, value: String, why: &str| ScenarioError::Invalid {
            field: format!("{array}[{i}].{field}"),
            line: text.and_then(|t| line_of_nth(t, array, i, field)),
            value,
            why: why.to_string(),
        };
        let mut names = std::collections::HashSet::new();
        for (i, r) in self.regions.iter().enumerate() {
            if r.name.is_empty() || !names.insert(r.name.as_str()) {
                return Err(nth_bad(
                    "regions",
                    i,
                    "name",
                    format!("{:?}", r.name),
                    "region names must be unique and non-empty",
                ));
            }
            if !(8_000..=10_000_000_000).contains(&r.link.bandwidth_bps) {
                return Err(nth_bad(
                    "regions",
                    i,
                    "link.bandwidth_bps",
                    r.link.bandwidth_bps.to_string(),
                    "must be 8 kbit/s to 10 Gbit/s",
                ));
            }
            if !(0.0..=60_000.0).contains(&r.link.delay_ms) {
                return Err(nth_bad(
                    "regions",
                    i,
                    "link.delay_ms",
                    r.link.delay_ms.to_string(),
                    "must be 0 to 60000 ms",
                ));
            }
            if !(0.0..0.95).contains(&r.link.loss) {
                return Err(nth_bad(
                    "regions",
                    i,
                    "link.loss",
                    r.link.loss.to_string(),
                    "must be at least 0 and below 0.95",
                ));
            }
            if r.link.queue_bytes < 2048 {
                return Err(nth_bad(
                    "regions",
                    i,
                    "link.queue_bytes",
                    r.link.queue_bytes.to_string(),
                    "must hold at least one packet (2048)",
                ));
            }
            if r.cell_bps.is_some_and(|b| b > 0 && b < 8_000) {
                return Err(nth_bad(
                    "regions",
                    i,
                    "cell_bps",
                    format!("{:?}", r.cell_bps),
                    "must be 0 (unlimited) or at least 8000",
                ));
            }
            for (f, l) in [("loss", r.loss.as_ref()), ("repairer_loss", Some(&r.repairer_loss))] {
                match l {
                    Some(LossSpec::Bernoulli { p }) if !(0.0..0.95).contains(p) => {
                        return Err(nth_bad(
                            "regions",
                            i,
                            &format!("{f}.p"),
                            p.to_string(),
                            "must be at least 0 and below 0.95",
                        ));
                    }
                    Some(LossSpec::GilbertElliott { mean_loss, mean_burst }) => {
                        if !(0.0..0.95).contains(mean_loss) {
                            let why = "must be at least 0 and below 0.95";
                            return Err(nth_bad("regions", i, &format!("{f}.mean_loss"), mean_loss.to_string(), why));
                        }
                        if !(1.0..=1000.0).contains(mean_burst) {
                            let why = "must be 1 to 1000 packets";
                            return Err(nth_bad("regions", i, &format!("{f}.mean_burst"), mean_burst.to_string(), why));
                        }
                    }
                    _ => {}
                }
            }
        }
        if self.regions.len() > MAX_REGIONS {
            return Err(bad("regions", self.regions.len().to_string(), &format!("at most {MAX_REGIONS} regions")));
        }
        // Joins and leaves of one cell must not ask for more receivers than it has.
        let mut asked: std::collections::HashMap<(&str, bool), u32> = std::collections::HashMap::new();
        for (i, e) in self.events.iter().enumerate() {
            if !matches!(e.action, Action::Join | Action::Leave) {
                continue;
            }
            let n = asked.entry((e.region.as_str(), e.action == Action::Join)).or_default();
            *n = n.saturating_add(e.count);
            let available = self.regions.iter().find(|r| r.name == e.region).map_or(self.receivers, |r| r.receivers);
            if *n > available {
                let why = format!("the events of this kind in this cell ask for {n} receivers; it has {available}");
                return Err(nth_bad("events", i, "count", e.count.to_string(), &why));
            }
        }
        for (i, e) in self.events.iter().enumerate() {
            if !(0.0..=1e6).contains(&e.at_s) {
                return Err(nth_bad("events", i, "at_s", e.at_s.to_string(), "must be 0 to 1e6 s"));
            }
            let region = if e.region.is_empty() { None } else { self.regions.iter().find(|r| r.name == e.region) };
            if !e.region.is_empty() && region.is_none() {
                return Err(nth_bad("events", i, "region", format!("{:?}", e.region), "no region of that name"));
            }
            if e.action == Action::CrashRepairer && !region.is_some_and(|r| r.repairer) {
                return Err(nth_bad("events", i, "action", "\"crash-repairer\"".into(), "the region has no repairer"));
            }
            let available = match e.action {
                Action::Quit => region.map_or(self.senders, |r| r.senders),
                _ => region.map_or(self.receivers, |r| r.receivers),
            };
            if e.action != Action::CrashRepairer && (e.count == 0 || e.count > available) {
                return Err(nth_bad(
                    "events",
                    i,
                    "count",
                    e.count.to_string(),
                    &format!(
                        "must be 1 to the cell's {available} {}",
                        if e.action == Action::Quit { "senders" } else { "receivers" }
                    ),
                ));
            }
        }
        if !(self.time_limit_s > 0.0 && self.time_limit_s <= 1e6) {
            return Err(bad("time_limit_s", self.time_limit_s.to_string(), "must be above 0 and at most 1e6"));
        }
        match self.loss {
            LossSpec::None => {}
            LossSpec::Bernoulli { p } => prob("loss.p", p, 0.95)?,
            LossSpec::GilbertElliott { mean_loss, mean_burst } => {
                prob("loss.mean_loss", mean_loss, 0.95)?;
                if !(1.0..=1000.0).contains(&mean_burst) {
                    return Err(bad("loss.mean_burst", mean_burst.to_string(), "must be 1 to 1000 packets"));
                }
            }
        }
        let l = &self.link;
        for (field, v) in
            [("link.delay_ms", l.delay_ms), ("link.jitter_ms", l.jitter_ms), ("link.reorder_ms", l.reorder_ms)]
        {
            if !(0.0..=60_000.0).contains(&v) {
                return Err(bad(field, v.to_string(), "must be 0 to 60000 ms"));
            }
        }
        prob("link.reorder", l.reorder, 1.0)?;
        prob("link.duplicate", l.duplicate, 1.0)?;
        if l.queue_bytes < 2048 {
            return Err(bad("link.queue_bytes", l.queue_bytes.to_string(), "must hold at least one packet (2048)"));
        }
        let w = &self.workload;
        if w.file_bytes == 0 && w.chats == 0 && w.files.is_empty() && w.rekeys == 0 {
            return Err(bad(
                "workload.file_bytes",
                "0".into(),
                "the workload sends nothing (set file_bytes, files, chats or rekeys)",
            ));
        }
        if w.files.len() > 1000 || w.files.iter().any(|&f| f == 0 || f > 1 << 40) {
            return Err(bad("workload.files", format!("{:?}", w.files), "at most 1000 files of 1 byte to 1 TiB"));
        }
        if w.rekeys > 100_000 || !(1..=65_000).contains(&w.rekey_bytes) {
            return Err(bad("workload.rekeys", w.rekeys.to_string(), "at most 100000 rekeys of 1 to 65000 bytes"));
        }
        if w.file_bytes > 1 << 40 {
            return Err(bad("workload.file_bytes", w.file_bytes.to_string(), "must be at most 1 TiB"));
        }
        if w.chat_bytes > 65_000 {
            return Err(bad("workload.chat_bytes", w.chat_bytes.to_string(), "must be at most 65000"));
        }
        if w.chats > 1_000_000 {
            return Err(bad("workload.chats", w.chats.to_string(), "must be at most 1000000"));
        }
        let s = &self.sender;
        // Every packet of a symbol must fit 1472 bytes.
        let max_t = lsim_transport::wire::symbol_size_for(1472, crate::seal::TAG_LEN);
        if let Some(t) = s.symbol_size
            && !(16..=max_t).contains(&t)
        {
            let why = format!("must be 16 to {max_t} (a packet must fit 1472 bytes)");
            return Err(bad("sender.symbol_size", t.to_string(), &why));
        }
        if let Some(k) = s.block_symbols
            && !(1..=lsim_transport::geometry::MAX_BLOCK_SYMBOLS).contains(&k)
        {
            return Err(bad("sender.block_symbols", k.to_string(), "must be 1 to 56403"));
        }
        if let Some(p) = s.proactive {
            prob("sender.proactive", p, 4.0)?;
        }
        if let Some(k) = s.backoff_k
            && !(0.0..=16.0).contains(&k)
        {
            return Err(bad("sender.backoff_k", k.to_string(), "must be 0 to 16"));
        }
        if let Some(g) = s.initial_grtt_ms
            && !(g > 0.0 && g <= 60_000.0)
        {
            return Err(bad("sender.initial_grtt_ms", g.to_string(), "must be above 0 and at most 60000"));
        }
        if let Some(r) = s.repair_share
            && !(r > 0.0 && r <= 1.0)
        {
            return Err(bad("sender.repair_share", r.to_string(), "must be above 0 and at most 1"));
        }
        if let Some(m) = s.cache_mib
            && m > 4096
        {
            return Err(bad("sender.cache_mib", m.to_string(), "must be at most 4096"));
        }
        if let Some(r) = s.rate_bps
            && r > 0
            && r < 8_000
        {
            return Err(bad("sender.rate_bps", r.to_string(), "must be 0 (unpaced) or at least 8000"));
        }
        if self.receiver.max_blocks == Some(0) {
            return Err(bad("receiver.max_blocks", "0".into(), "must be at least 1"));
        }
        if let Some(g) = self.receiver.group_size
            && !(1.0..=1e6).contains(&g)
        {
            return Err(bad("receiver.group_size", g.to_string(), "must be 1 to 1e6"));
        }
        if self.link.overhead_bytes > 10_000 {
            return Err(bad("link.overhead_bytes", self.link.overhead_bytes.to_string(), "must be at most 10000"));
        }
        for (field, v) in [
            ("workload.chat_interval_ms", self.workload.chat_interval_ms),
            ("workload.rekey_interval_ms", self.workload.rekey_interval_ms),
        ] {
            if !(0.0..=3.6e6).contains(&v) {
                return Err(bad(field, v.to_string(), "must be 0 to 3600000 ms"));
            }
        }
        if !(0.0..=1e6).contains(&self.attack.nack_flood_per_second) {
            let v = self.attack.nack_flood_per_second.to_string();
            return Err(bad("attack.nack_flood_per_second", v, "must be 0 to 1e6"));
        }
        if !(0.0..=1e6).contains(&self.attack.replayed_per_second) {
            let v = self.attack.replayed_per_second.to_string();
            return Err(bad("attack.replayed_per_second", v, "must be 0 to 1e6"));
        }
        if !(0.0..=1e6).contains(&self.attack.forged_per_second) {
            return Err(bad("attack.forged_per_second", self.attack.forged_per_second.to_string(), "must be 0 to 1e6"));
        }
        Ok(())
    }
}

/// The line (1-based) on which `field` of the `i`-th `[[array]]` table is set
/// (the field's last part; or the table's header line if not found).
pub(super) fn line_of_nth(text: &str, array: &str, i: usize, field: &str) -> Option<usize> {
    // `link.rate` is `rate` under `[array.link]`, or the line of an inline `link = {...}`.
    let (sub, key) = field.split_once('.').unwrap_or(("", field));
    let header = format!("[[{array}]]");
    let mut seen = 0;
    let mut start = None;
    let mut table = String::new();
    for (n, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.starts_with("[[") {
            if start.is_some() {
                break;
            }
            if l == header {
                if seen == i {
                    start = Some(n + 1);
                }
                seen += 1;
            }
            table.clear();
        } else if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            table = name.trim().strip_prefix(array).and_then(|t| t.strip_prefix('.')).unwrap_or("?").to_string();
        } else if start.is_some()
            && let Some((k, _)) = l.split_once('=')
        {
            let k = k.trim();
            let here = if sub.is_empty() {
                table.is_empty() && k == key
            } else {
                (table == sub && k == key) || (table.is_empty() && k == sub)
            };
            if here {
                return Some(n + 1);
            }
        }
    }
    start
}

/// The line (1-based) on which dotted `field` is assigned in `text`, found by
/// following `[table]` headers.
pub(super) fn line_of(text: &str, field: &str) -> Option<usize> {
    let (table, key) = field.rsplit_once('.').unwrap_or(("", field));
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            current = name.trim().to_string();
        } else if current == table
            && let Some((k, _)) = l.split_once('=')
            && k.trim() == key
        {
            return Some(i + 1);
        }
    }
    None
}
