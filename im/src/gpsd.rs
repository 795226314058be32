//! Positions from gpsd, the GPS daemon of Linux laptops and handhelds.
//!
//! Owns gpsd's JSON protocol as a client needs it: the request that starts
//! its reports, and reading its newline-delimited reports into fixes (a
//! `TPV` report with a 2D or 3D fix), each line bounded. Sans-IO: bytes in,
//! events out; the driver connects and reconnects. It must not decide when
//! a position is shared (`group::position::Sharing`) nor send anything.
//!
//! ```text
//! → ?WATCH={"enable":true,"json":true};
//! ← {"class":"VERSION",...}\n{"class":"TPV","mode":3,"lat":47.6,"lon":-122.3,"eph":17.1,...}\n
//! ```

use serde_json::Value;

use crate::group::position::Position;

/// Where gpsd listens by default.
pub const DEFAULT_ADDR: &str = "127.0.0.1:2947";
/// What asks gpsd for its reports as JSON.
pub const WATCH: &[u8] = b"?WATCH={\"enable\":true,\"json\":true};\n";
/// The longest report line read (gpsd's longest, a SKY report with every
/// satellite, is a few KiB); a longer one is skipped to its end.
pub const MAX_LINE: usize = 32 * 1024;

/// What gpsd's reports say.
#[derive(Debug, Clone, PartialEq)]
pub enum GpsdEvent {
    /// gpsd answered: its release.
    Version(String),
    /// A fix: where the receiver is (accuracy from gpsd's error estimates).
    Fix(Position),
    /// The receiver reports no fix (no satellites in view, indoors).
    NoFix,
    /// A report that is not JSON, or a position off the globe.
    Malformed(String),
}

/// Reads gpsd's report stream (see the module doc).
#[derive(Debug, Default)]
pub struct GpsdReader {
    line: Vec<u8>,
    /// Inside a line longer than `MAX_LINE`: dropped to its end.
    skipping: bool,
    /// Lines refused (too long, not JSON, bad values).
    pub malformed: u64,
}

impl GpsdReader {
    /// A reader at the start of a connection.
    pub fn new() -> GpsdReader {
        GpsdReader::default()
    }

    /// Bytes from gpsd; the events of every line they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<GpsdEvent> {
        let mut out = Vec::new();
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            let (body, ends) = match chunk.strip_suffix(b"\n") {
                Some(b) => (b, true),
                None => (chunk, false),
            };
            if !self.skipping {
                if self.line.len() + body.len() > MAX_LINE {
                    self.skipping = true;
                    self.line.clear();
                    self.malformed += 1;
                    out.push(GpsdEvent::Malformed(format!("a report line over {MAX_LINE} bytes")));
                } else {
                    self.line.extend_from_slice(body);
                }
            }
            if ends {
                if !self.skipping
                    && let Some(e) = self.report()
                {
                    if matches!(e, GpsdEvent::Malformed(_)) {
                        self.malformed += 1;
                    }
                    out.push(e);
                }
                self.line.clear();
                self.skipping = false;
            }
        }
        out
    }

    /// The event of the line read (`None`: a report of no interest).
    fn report(&self) -> Option<GpsdEvent> {
        let line = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        let v: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => return Some(GpsdEvent::Malformed(format!("not JSON: {e}"))),
        };
        match v.get("class").and_then(Value::as_str) {
            Some("VERSION") => {
                let release: String =
                    v.get("release").and_then(Value::as_str).unwrap_or("?").chars().take(32).collect();
                Some(GpsdEvent::Version(release))
            }
            Some("TPV") => Some(tpv(&v)),
            _ => None,
        }
    }
}

/// A time-position-velocity report: mode 2 (2D) or 3 (3D) with lat and lon is a fix.
fn tpv(v: &Value) -> GpsdEvent {
    let mode = v.get("mode").and_then(Value::as_u64).unwrap_or(0);
    let (lat, lon) = (v.get("lat").and_then(Value::as_f64), v.get("lon").and_then(Value::as_f64));
    let (Some(lat), Some(lon), 2..=3) = (lat, lon, mode) else { return GpsdEvent::NoFix };
    // The horizontal error: gpsd's eph, else the larger of its per-axis estimates.
    let axis = |k: &str| v.get(k).and_then(Value::as_f64);
    let accuracy = axis("eph").or_else(|| match (axis("epx"), axis("epy")) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    });
    let accuracy = accuracy.filter(|a| a.is_finite() && *a >= 0.0);
    match Position::new(lat, lon, accuracy) {
        Ok(p) => GpsdEvent::Fix(p),
        Err(e) => GpsdEvent::Malformed(e.to_string()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What gpsd 3.22 sent for an NMEA receiver on a UDP source (recorded
    /// on this machine, cut to the fields read).
    const SESSION: &str = concat!(
        "{\"class\":\"VERSION\",\"release\":\"3.22\",\"rev\":\"3.22\",\"proto_major\":3,\"proto_minor\":14}\n",
        "{\"class\":\"DEVICES\",\"devices\":[{\"class\":\"DEVICE\",\"path\":\"udp://127.0.0.1:15000\"}]}\n",
        "{\"class\":\"WATCH\",\"enable\":true,\"json\":true}\n",
        "{\"class\":\"TPV\",\"device\":\"udp://127.0.0.1:15000\",\"mode\":1}\n",
        "{\"class\":\"TPV\",\"device\":\"udp://127.0.0.1:15000\",\"mode\":3,\"time\":\"2026-12-07T23:19:59.000Z\",",
        "\"lat\":47.602050000,\"lon\":-122.349300000,\"altMSL\":56.0000,\"eph\":17.100}\n",
    );

    #[test]
    fn a_gpsd_session_gives_its_version_then_no_fix_then_a_fix() {
        let mut r = GpsdReader::new();
        let got = r.push(SESSION.as_bytes());
        let fix = Position::new(47.60205, -122.3493, Some(17.1)).unwrap();
        assert_eq!(got, vec![GpsdEvent::Version("3.22".into()), GpsdEvent::NoFix, GpsdEvent::Fix(fix.clone())]);
        // The same bytes split anywhere read the same.
        for cut in [1, 7, 80, 200, SESSION.len() - 1] {
            let mut r = GpsdReader::new();
            let mut got = r.push(&SESSION.as_bytes()[..cut]);
            got.extend(r.push(&SESSION.as_bytes()[cut..]));
            assert_eq!(got.last(), Some(&GpsdEvent::Fix(fix.clone())), "cut at {cut}");
            assert_eq!(got.len(), 3);
        }
    }

    #[test]
    fn accuracy_from_the_axes_when_there_is_no_eph() {
        let mut r = GpsdReader::new();
        let got = r.push(b"{\"class\":\"TPV\",\"mode\":2,\"lat\":1.5,\"lon\":2.5,\"epx\":4.0,\"epy\":9.0}\r\n");
        assert_eq!(got, vec![GpsdEvent::Fix(Position::new(1.5, 2.5, Some(9.0)).unwrap())]);
        let got = r.push(b"{\"class\":\"TPV\",\"mode\":3,\"lat\":1.5,\"lon\":2.5}\n");
        assert_eq!(got, vec![GpsdEvent::Fix(Position::new(1.5, 2.5, None).unwrap())]);
    }

    #[test]
    fn bad_reports_are_counted_and_the_stream_goes_on() {
        let mut r = GpsdReader::new();
        let mut long = vec![b'{'; MAX_LINE + 10];
        long.push(b'\n');
        let mut input = long;
        input.extend_from_slice(b"not json\n{\"class\":\"TPV\",\"mode\":3,\"lat\":95.0,\"lon\":0.0}\n");
        input.extend_from_slice(b"{\"class\":\"TPV\",\"mode\":3,\"lat\":-33.8568,\"lon\":151.2153}\n");
        let got = r.push(&input);
        assert_eq!(r.malformed, 3, "{got:?}");
        assert_eq!(got.last(), Some(&GpsdEvent::Fix(Position::new(-33.8568, 151.2153, None).unwrap())));
        // A long line split across pushes is skipped to its end, once.
        let mut r = GpsdReader::new();
        assert_eq!(r.push(&vec![b'x'; MAX_LINE]).len(), 0);
        assert_eq!(r.push(b"xx").len(), 1);
        assert_eq!(r.push(b"xx\n{\"class\":\"TPV\",\"mode\":0}\n"), vec![GpsdEvent::NoFix]);
        assert_eq!(r.malformed, 1);
    }

    proptest! {
        #[test]
        fn any_bytes_are_read_without_a_panic_and_lines_stay_bounded(
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 0..20)
        ) {
            let mut r = GpsdReader::new();
            for c in &chunks {
                for e in r.push(c) {
                    if let GpsdEvent::Fix(p) = e {
                        prop_assert!((-90.0..=90.0).contains(&p.lat) && (-180.0..=180.0).contains(&p.lon));
                    }
                }
                prop_assert!(r.line.len() <= MAX_LINE);
            }
        }
    }
}
