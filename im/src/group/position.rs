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

/// A moving member's position goes out when it moved this far since the last one shared...
pub const MOVED_M: f64 = 25.0;
/// ...but not sooner than this after it...
pub const MIN_GAP: std::time::Duration = std::time::Duration::from_secs(5);
/// ...and again after this, moved or not, while fixes keep coming.
pub const MAX_GAP: std::time::Duration = std::time::Duration::from_secs(60);

/// When a member whose position comes from a receiver (gpsd, a fix every
/// second) shares it: the first fix at once, then when it moved `MOVED_M`
/// (at most every `MIN_GAP`), and every `MAX_GAP` regardless. Time is an
/// argument; it sends nothing.
#[derive(Debug, Default)]
pub struct Sharing {
    last: Option<(std::time::Instant, Position)>,
}

impl Sharing {
    /// A fix at `now`: whether to share it (and then it counts as shared).
    pub fn offer(&mut self, now: std::time::Instant, fix: &Position) -> bool {
        let share = match &self.last {
            None => true,
            Some((at, was)) => {
                let since = now.saturating_duration_since(*at);
                since >= MAX_GAP || (since >= MIN_GAP && metres_between(was, fix) >= MOVED_M)
            }
        };
        if share {
            self.last = Some((now, fix.clone()));
        }
        share
    }
}

/// The great-circle distance between two positions, in metres.
pub fn metres_between(a: &Position, b: &Position) -> f64 {
    const EARTH_M: f64 = 6_371_008.8;
    let (la, lb) = (a.lat.to_radians(), b.lat.to_radians());
    let (dlat, dlon) = (lb - la, (b.lon - a.lon).to_radians());
    let h = (dlat / 2.0).sin().powi(2) + la.cos() * lb.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_M * h.sqrt().min(1.0).asin()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_moving_receiver_shares_when_it_moved_and_every_minute_when_it_did_not() {
        let t0 = std::time::Instant::now();
        let s = std::time::Duration::from_secs;
        let at = |lat: f64| Position::new(lat, 151.2153, Some(5.0)).unwrap();
        // 0.0001 degree of latitude is about 11 m.
        assert!((metres_between(&at(-33.8568), &at(-33.8569)) - 11.1).abs() < 0.1);
        let mut g = Sharing::default();
        assert!(g.offer(t0, &at(-33.8568)), "the first fix");
        assert!(!g.offer(t0 + s(1), &at(-33.8578)), "moved 111 m, but 1 s after");
        assert!(g.offer(t0 + s(5), &at(-33.8578)), "moved, 5 s after");
        let shared = (6..64).filter(|k| g.offer(t0 + s(*k), &at(-33.8579))).count();
        assert_eq!(shared, 0, "11 m is standing still");
        assert!(g.offer(t0 + s(65), &at(-33.8579)), "a minute after the last one");
    }

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
