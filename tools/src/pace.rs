//! How fast this process sends: `--rate` and `--max-rate`, shared by every
//! command that sends.
//!
//! Owns the parsing of the rate flags and what they resolve to. The default
//! adapts (`lsim_transport::rate`): it finds what the path carries, from an
//! 11 Mbit/s radio to a LAN, up to a 1 Gbit/s ceiling. A number fixes it.
//! It decides nothing about the protocol.

use lsim_transport::core::DEFAULT_CEILING;

/// `--rate`: a fixed rate in Mbit/s, or `auto`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rate {
    /// This many Mbit/s, whatever the path.
    Fixed(f64),
    /// Adapt to the path, up to `--max-rate`.
    Auto,
}

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Rate, String> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(Rate::Auto);
        }
        match s.parse::<f64>() {
            Ok(r) if r > 0.0 && r <= 100_000.0 => Ok(Rate::Fixed(r)),
            _ => Err("give a rate in Mbit/s (above 0, at most 100000) or `auto`".to_string()),
        }
    }
}

/// The rate flags of a sending command.
#[derive(clap::Args, Clone, Debug)]
pub struct PaceArgs {
    /// Sending rate: `auto` (the default) finds and holds what the path
    /// carries, from probe round trips' queueing delay and the rate the
    /// receivers report getting (never from loss, which on radio is mostly
    /// not congestion), up to --max-rate; a number in Mbit/s fixes it.
    #[arg(long, default_value = "auto")]
    pub rate: Rate,
    /// The ceiling of `--rate auto`, in Mbit/s.
    #[arg(long, default_value_t = DEFAULT_CEILING as f64 * 8e-6)]
    pub max_rate: f64,
    /// The same as `--rate auto` (kept for old scripts).
    #[arg(long, hide = true)]
    pub adaptive_rate: bool,
}

impl PaceArgs {
    /// (bytes per second, adaptive): the fixed rate, or the ceiling of an adaptive one.
    pub fn resolve(&self) -> Result<(u64, bool), String> {
        if !(self.max_rate > 0.0 && self.max_rate <= 100_000.0) {
            return Err(format!("--max-rate {}: give Mbit/s above 0, at most 100000", self.max_rate));
        }
        let (mbit, auto) = match self.rate {
            Rate::Auto => (self.max_rate, true),
            Rate::Fixed(r) => (r, self.adaptive_rate),
        };
        Ok(((mbit * 125_000.0) as u64, auto))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pace(rate: &str, max: f64) -> PaceArgs {
        PaceArgs { rate: rate.parse().unwrap(), max_rate: max, adaptive_rate: false }
    }

    #[test]
    fn auto_is_the_ceiling_adaptive_and_a_number_is_fixed() {
        assert_eq!(pace("auto", 1000.0).resolve(), Ok((125_000_000, true)));
        assert_eq!(pace("11", 1000.0).resolve(), Ok((1_375_000, false)));
        assert!("0".parse::<Rate>().is_err() && "fast".parse::<Rate>().is_err());
        assert!(pace("auto", 0.0).resolve().unwrap_err().contains("--max-rate"));
    }
}
