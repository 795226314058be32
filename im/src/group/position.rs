//! Positions shared with the group: where a member is (typed with `/pos`,
//! given with `--position` for a fixed post), or where a unit a bridge
//! relays is (a TAK client's position report, `subject` naming it).
//!
//! Owns the position's text form, carried as the text of a signed chat
//! message (so it is signed, revocation-checked, ordered and deduplicated
//! as chat is), marked by a control character no one types. It must not
//! send or show anything: the member and the clients do.
//!
//! ```text
//! "\u{1}POS1 " lat " " lon " " accuracy_m|"-" [" " subject]
//! ```

/// What starts a position's text.
const MARK: &str = "\u{1}POS1 ";
/// The longest subject kept.
pub const MAX_SUBJECT: usize = 128;

/// Why text marked as a position is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PositionError {
    /// A field missing or not a number.
    #[error("position: {0}")]
    Malformed(&'static str),
    /// Latitude or longitude off the globe, accuracy negative.
    #[error("position off the globe: {0}")]
    OutOfRange(String),
}

/// A position.
#[derive(Debug, Clone, PartialEq)]
pub struct Position {
    /// Degrees north, -90 to 90.
    pub lat: f64,
    /// Degrees east, -180 to 180.
    pub lon: f64,
    /// Radius of the error, metres, if known.
    pub accuracy_m: Option<f64>,
    /// Whose position, when it is not the signer's (a unit a bridge relays).
    pub subject: Option<String>,
}

impl Position {
    /// Checks the ranges.
    pub fn new(lat: f64, lon: f64, accuracy_m: Option<f64>) -> Result<Position, PositionError> {
        let p = Position { lat, lon, accuracy_m, subject: None };
        p.check()?;
        Ok(p)
    }

    fn check(&self) -> Result<(), PositionError> {
        let ok = self.lat.is_finite()
            && self.lon.is_finite()
            && (-90.0..=90.0).contains(&self.lat)
            && (-180.0..=180.0).contains(&self.lon)
            && self.accuracy_m.is_none_or(|a| a.is_finite() && a >= 0.0);
        if ok { Ok(()) } else { Err(PositionError::OutOfRange(format!("{}, {}", self.lat, self.lon))) }
    }

    /// The text a chat message carries.
    pub fn encode(&self) -> String {
        let acc = self.accuracy_m.map_or_else(|| "-".to_string(), |a| format!("{a:.1}"));
        let mut s = format!("{MARK}{:.7} {:.7} {acc}", self.lat, self.lon);
        if let Some(subject) = &self.subject {
            s.push(' ');
            s.extend(subject.chars().filter(|c| !c.is_control()).take(MAX_SUBJECT));
        }
        s
    }

    /// `None` if `text` is not a position; the position, or why it is not one.
    pub fn decode(text: &str) -> Option<Result<Position, PositionError>> {
        let rest = text.strip_prefix(MARK)?;
        Some(Position::fields(rest))
    }

    fn fields(rest: &str) -> Result<Position, PositionError> {
        let mut it = rest.splitn(4, ' ');
        let num = |s: Option<&str>, what| s.and_then(|s| s.parse::<f64>().ok()).ok_or(PositionError::Malformed(what));
        let lat = num(it.next(), "latitude")?;
        let lon = num(it.next(), "longitude")?;
        let accuracy_m = match it.next() {
            Some("-") => None,
            a => Some(num(a, "accuracy")?),
        };
        let subject = it.next().map(|s| s.chars().filter(|c| !c.is_control()).take(MAX_SUBJECT).collect());
        let p = Position { lat, lon, accuracy_m, subject };
        p.check()?;
        Ok(p)
    }

    /// Reads what a user types: `LAT,LON` in decimal degrees (spaces allowed).
    pub fn typed(s: &str) -> Result<Position, PositionError> {
        let (lat, lon) = s.split_once(',').ok_or(PositionError::Malformed("give LAT,LON in decimal degrees"))?;
        let n = |v: &str, what| v.trim().parse::<f64>().map_err(|_| PositionError::Malformed(what));
        Position::new(n(lat, "latitude")?, n(lon, "longitude")?, None)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn typed_positions_read_and_round_trip() {
        let p = Position::typed(" 47.6205, -122.3493 ").unwrap();
        assert_eq!(Position::decode(&p.encode()), Some(Ok(p)));
        let mut relayed = Position::new(-33.5, 151.25, Some(9.9)).unwrap();
        relayed.subject = Some("ENGINE 7 (TAK)".into());
        assert_eq!(Position::decode(&relayed.encode()).unwrap().unwrap(), relayed);
        assert_eq!(Position::decode("hello"), None, "ordinary chat");
        assert_eq!(Position::decode("POS1 1 2 -"), None, "typed text is chat");
        for bad in ["91,0", "0,181", "x,1", "1", "NaN,1", "inf,0"] {
            assert!(Position::typed(bad).is_err(), "{bad}");
        }
        assert!(matches!(Position::decode("\u{1}POS1 1 2"), Some(Err(PositionError::Malformed(_)))));
        assert!(matches!(Position::decode("\u{1}POS1 1 2 -5"), Some(Err(PositionError::OutOfRange(_)))));
    }

    proptest! {
        #[test]
        fn positions_round_trip(lat in -90.0f64..=90.0, lon in -180.0f64..=180.0, acc in proptest::option::of(0.0f64..1e5), subject in proptest::option::of("[a-zA-Z0-9 ()]{1,40}")) {
            let p = Position { lat, lon, accuracy_m: acc, subject };
            let back = Position::decode(&p.encode()).unwrap().unwrap();
            prop_assert!((back.lat - lat).abs() < 1e-6 && (back.lon - lon).abs() < 1e-6);
            prop_assert_eq!(back.subject, p.subject);
        }

        #[test]
        fn any_text_never_panics(s in any::<String>()) {
            let _ = Position::decode(&format!("{MARK}{s}"));
        }
    }
}
