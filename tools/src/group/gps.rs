//! `lsim chat --position`: where the member's own position comes from — a
//! fixed post (`LAT,LON`), or gpsd (`gpsd`, `gpsd:HOST:PORT`) on a machine
//! with a GPS receiver.
//!
//! Owns the connection to gpsd (connect, ask for reports, reconnect every
//! 10 s while it is away) and the task that turns either source into the
//! positions to share. It must not read gpsd's reports itself
//! (`lsim_im::gpsd`) nor decide when a moving member shares
//! (`position::Sharing`); it never talks to the member.

use std::time::Duration;

use lsim_im::gpsd::{DEFAULT_ADDR, GpsdEvent, GpsdReader, WATCH};
use lsim_im::group::position::{Position, Sharing};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// How often a fixed position is shared again.
pub(super) const FIXED_EVERY: Duration = Duration::from_secs(60);
/// How long gpsd gets to answer a connection, and the wait between tries.
const RETRY: Duration = Duration::from_secs(10);

/// Where the member's own position comes from.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum PositionSource {
    /// A fixed post.
    Fixed(Position),
    /// gpsd at this address.
    Gpsd(String),
}

/// Reads `--position`: `LAT,LON`, `gpsd` or `gpsd:HOST:PORT`.
pub(super) fn parse_source(s: &str) -> Result<PositionSource, String> {
    match s.trim() {
        "gpsd" => Ok(PositionSource::Gpsd(DEFAULT_ADDR.into())),
        t => match t.strip_prefix("gpsd:") {
            Some(addr) if addr.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()) => {
                Ok(PositionSource::Gpsd(addr.into()))
            }
            Some(addr) => Err(format!("gpsd:{addr}: give gpsd:HOST:PORT, e.g. gpsd:{DEFAULT_ADDR}")),
            None => Position::typed(t).map(PositionSource::Fixed).map_err(|e| e.to_string()),
        },
    }
}

/// Starts the task that says when to share the member's own position:
/// each position to share comes out of the channel; what the user should
/// know (gpsd found, lost, a fix, none) it prints itself.
pub(super) fn start(source: PositionSource) -> mpsc::Receiver<Position> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        match source {
            PositionSource::Fixed(p) => {
                let mut tick = tokio::time::interval(FIXED_EVERY);
                loop {
                    tick.tick().await;
                    if tx.send(p.clone()).await.is_err() {
                        return;
                    }
                }
            }
            PositionSource::Gpsd(addr) => follow_gpsd(&addr, &tx).await,
        }
    });
    rx
}

/// Follows gpsd at `addr` until the receiver is dropped: each fix the
/// sharing rule lets through is sent; connection changes and fix changes
/// are said once each.
async fn follow_gpsd(addr: &str, tx: &mpsc::Sender<Position>) {
    let mut sharing = Sharing::default();
    let mut away_noted = false;
    while !tx.is_closed() {
        let why = match tokio::time::timeout(RETRY, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                away_noted = false;
                match read_reports(addr, stream, &mut sharing, tx).await {
                    Ok(()) => return,
                    Err(why) => why,
                }
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer".into(),
        };
        if !away_noted {
            away_noted = true;
            println!("!! gpsd at {addr}: {why}; trying again every {} s", RETRY.as_secs());
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// One connection: `Ok` when the member is gone, `Err` with why gpsd is.
async fn read_reports(
    addr: &str,
    mut stream: TcpStream,
    sharing: &mut Sharing,
    tx: &mpsc::Sender<Position>,
) -> Result<(), String> {
    stream.write_all(WATCH).await.map_err(|e| e.to_string())?;
    let mut reader = GpsdReader::new();
    let mut buf = vec![0u8; 8192];
    let mut fixed: Option<bool> = None;
    loop {
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("gpsd closed the connection".into());
        }
        for e in reader.push(&buf[..n]) {
            match e {
                GpsdEvent::Version(release) => println!("-- gpsd {release} at {addr}"),
                GpsdEvent::Fix(p) => {
                    if fixed != Some(true) {
                        println!("-- gpsd: a fix at {:.5}, {:.5}", p.lat, p.lon);
                    }
                    fixed = Some(true);
                    if sharing.offer(std::time::Instant::now(), &p) && tx.send(p).await.is_err() {
                        return Ok(());
                    }
                }
                GpsdEvent::NoFix => {
                    if fixed != Some(false) {
                        println!("-- gpsd: no fix (nothing shared until there is one)");
                    }
                    fixed = Some(false);
                }
                // Counted; the first few are worth a line.
                GpsdEvent::Malformed(why) if reader.malformed <= 3 => println!("!! gpsd: {why}"),
                GpsdEvent::Malformed(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_position_option_reads_a_post_or_gpsd() {
        assert_eq!(parse_source("gpsd"), Ok(PositionSource::Gpsd("127.0.0.1:2947".into())));
        assert_eq!(parse_source("gpsd:10.1.0.9:2948"), Ok(PositionSource::Gpsd("10.1.0.9:2948".into())));
        assert_eq!(parse_source("gpsd:gps.local:2947"), Ok(PositionSource::Gpsd("gps.local:2947".into())));
        assert!(parse_source("gpsd:nowhere").unwrap_err().contains("gpsd:HOST:PORT"));
        assert!(matches!(parse_source("47.6205,-122.3493"), Ok(PositionSource::Fixed(_))));
        assert!(parse_source("95,0").is_err());
    }
}
