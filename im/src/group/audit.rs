//! Checking secrecy on the wire: capture every datagram on a group, then
//! see what a given set of group keys can read out of them. This is how
//! the demo and the tests show that a member who left cannot read what
//! was sent after, and one who joined cannot read what came before.
//!
//! Owns the capture socket and the replay through a fresh transport
//! receiver. It must not be used to receive for real: it keeps every
//! datagram in memory.

use std::net::SocketAddrV4;
use std::sync::{Arc, Mutex};

use lsim_keymgmt::key::SecretKey;
use lsim_keymgmt::suite::{GroupSeal, SuiteId};
use lsim_transport::net::{MulticastConfig, MulticastSocket};
use lsim_transport::stats::DropReason;
use lsim_transport::{Receiver, ReceiverConfig, ReceiverEvent, Time};
use tokio::task::JoinHandle;

/// Records every datagram on a multicast group.
pub struct Capture {
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
    task: JoinHandle<()>,
}

impl Capture {
    /// Starts capturing `group` on the loopback interface.
    pub fn loopback(group: SocketAddrV4) -> std::io::Result<Capture> {
        Capture::start(&MulticastConfig::loopback(group))
    }

    /// Starts capturing with `mc`.
    pub fn start(mc: &MulticastConfig) -> std::io::Result<Capture> {
        let socket = MulticastSocket::open(mc)?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let out = seen.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, _)) = socket.socket().recv_from(&mut buf).await {
                if let Ok(mut v) = out.lock() {
                    v.push(buf[..n].to_vec());
                }
            }
        });
        Ok(Capture { seen, task })
    }

    /// How many datagrams so far (a mark for [`Capture::since`]).
    pub fn mark(&self) -> usize {
        self.seen.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// The datagrams captured from `mark` on.
    pub fn since(&self, mark: usize) -> Vec<Vec<u8>> {
        self.seen.lock().map(|v| v.get(mark..).unwrap_or_default().to_vec()).unwrap_or_default()
    }

    /// The datagrams captured before `mark`.
    pub fn before(&self, mark: usize) -> Vec<Vec<u8>> {
        self.seen.lock().map(|v| v[..mark.min(v.len())].to_vec()).unwrap_or_default()
    }
}

impl std::ops::Drop for Capture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a set of keys got out of captured datagrams.
#[derive(Debug, Clone, Default)]
pub struct Readout {
    /// Every object byte a receiver holding the keys could deliver.
    pub bytes: Vec<u8>,
    /// Datagrams it could not open for want of their epoch's key: sealed
    /// under an epoch it never held, or (wire format v3) short headers from a
    /// node none of whose long headers it could open, so their counter could
    /// not be rebuilt.
    pub unopenable: u64,
}

impl Readout {
    /// Whether `needle` appears in what was read.
    pub fn contains(&self, needle: &[u8]) -> bool {
        !needle.is_empty() && self.bytes.windows(needle.len()).any(|w| w == needle)
    }
}

/// Replays `packets` of group `session` through a fresh receiver that
/// holds exactly `keys` (epoch, group key) of `suite`.
pub fn read_with(session: u32, suite: SuiteId, keys: &[(u32, SecretKey)], packets: &[Vec<u8>]) -> Readout {
    let mut sorted: Vec<&(u32, SecretKey)> = keys.iter().collect();
    sorted.sort_by_key(|(e, _)| *e);
    sorted.dedup_by_key(|(e, _)| *e);
    let Some((first, rest)) = sorted.split_first() else {
        return Readout { bytes: Vec::new(), unopenable: packets.len() as u64 };
    };
    let mut seal = GroupSeal::with_past_epochs(suite, sorted.len(), first.0, &first.1);
    for (epoch, key) in rest {
        let _ = seal.install(*epoch, key);
    }
    let cfg = ReceiverConfig { session, node: 0x7fff_fffe, accept_backlog: true, ..ReceiverConfig::default() };
    let mut rx = Receiver::new(cfg, seal);
    let mut bytes = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        rx.handle_datagram(Time::from_micros(1_000 * i as u64), p);
        while let Some(ev) = rx.poll_event() {
            if let ReceiverEvent::ObjectData { data, .. } = ev {
                bytes.extend_from_slice(&data);
            }
        }
    }
    let s = rx.stats();
    Readout { bytes, unopenable: s.dropped(DropReason::UnknownEpoch) + s.dropped(DropReason::NoReference) }
}
