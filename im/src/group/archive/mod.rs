//! The group's archive at the command post: store and forward.
//!
//! Owns the archive's tasks on the key server's host: a holder on the
//! group's multicast (the transport's `Repairer`, opening the group's
//! packets with the key server's current epoch) that keeps every object it
//! receives, block by block, in a store on disk (`store`), bounded by age
//! and bytes; after a restart it offers what the store holds. A member back
//! in range after its sender went silent (switched off, out of range)
//! learns from the archive's summaries what it missed and gets it repaired
//! from the store, paced behind live traffic. It must not decide what a
//! block is worth (every decoded block is kept, until the bounds drop it)
//! nor touch the key server's state (it follows its epochs).
//!
//! The archive holds the group's plaintext at rest only sealed under its
//! own key (kept in the key server's store); it re-seals what it repairs
//! under the group's current epoch, as every holder does.

pub mod store;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use lsim_keymgmt::key::SecretKey;
use lsim_keymgmt::suite::{GroupSeal, SuiteId};
use lsim_transport::net::driver::wall_clock_seq;
use lsim_transport::net::{Driver, DriverConfig, Handle, MulticastConfig, MulticastSocket};
use lsim_transport::wire::ObjectKind;
use lsim_transport::{HeldObject, ReceiverConfig, ReceiverEvent, Repairer, RepairerConfig};

use crate::group::member::RECEIVER_NODE_BIT;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use store::{ArchiveStore, BlockKey, Limits, Put, StoreError};

/// The archive's transport node: a receiver's (top bit set), below the key
/// server's senders, far above any member id.
pub const ARCHIVE_NODE: u32 = 0xfffe_0000;

/// Repair symbols of the archive: the last of the 64 ranges of 2^13 that
/// members holding what they received use (they take the first 63), below
/// the wire's limit of 2^20 (`wire::MAX_REPAIR_SYMBOLS`).
const FIRST_REPAIR: u32 = (1 << 19) + 63 * (1 << 13);
const REPAIR_RANGE: u32 = 1 << 13;
const _: () = assert!(FIRST_REPAIR + REPAIR_RANGE <= lsim_transport::wire::MAX_REPAIR_SYMBOLS);

/// Bytes of decoded blocks the archive keeps in memory (the store has the rest).
const CACHE_BYTES: usize = 16 << 20;

/// What the archive repairs at when nothing has arrived since it started:
/// half an 11 Mbit/s radio cell, in bytes per second.
const RESTART_RATE: u64 = 11_000_000 / 8 / 2;

/// Blocks written in one transaction at most.
const BATCH: usize = 64;

/// How often the bounds are looked at.
const ENFORCE_EVERY: Duration = Duration::from_secs(30);

/// How the archive runs.
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    /// The store's file.
    pub path: PathBuf,
    /// Its bounds.
    pub limits: Limits,
    /// The group's multicast.
    pub multicast: MulticastConfig,
    /// The group's transport session.
    pub session: u32,
    /// The group's suite.
    pub suite: SuiteId,
    /// The history policy `shared:N`: the last N objects it holds (chat and
    /// files, not rekeys) are served to every member and re-sealed under
    /// the current epoch. `None`: the policy `joined`.
    pub shared: Option<u32>,
}

/// The last N objects the archive took (the history policy `shared`), in
/// the order they came.
struct Recent {
    n: usize,
    objects: VecDeque<(u32, u32)>,
}

impl Recent {
    fn add(&mut self, key: (u32, u32)) {
        if self.n == 0 || self.objects.contains(&key) {
            return;
        }
        self.objects.push_back(key);
        while self.objects.len() > self.n {
            self.objects.pop_front();
        }
    }
}

/// What the archive reports (one line each in the server's log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveEvent {
    /// Opened: objects and bytes found in the store.
    Opened {
        /// Objects held.
        objects: usize,
        /// Sealed bytes held.
        bytes: u64,
    },
    /// A file was received whole and handed to the store.
    Kept {
        /// The sending node.
        sender: u32,
        /// Its bytes.
        len: u64,
    },
    /// The bounds dropped objects.
    Dropped {
        /// How many.
        objects: usize,
        /// Sealed bytes now held.
        bytes: u64,
    },
    /// The store failed (the archive goes on without it).
    Failed(String),
}

impl std::fmt::Display for ArchiveEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArchiveEvent::Opened { objects, bytes } => {
                write!(f, "archive: {objects} objects, {:.1} MiB kept", *bytes as f64 / 1048576.0)
            }
            ArchiveEvent::Kept { sender, len } => {
                write!(f, "archive: kept a file of {:.1} MiB from node {sender}", *len as f64 / 1048576.0)
            }
            ArchiveEvent::Dropped { objects, bytes } => {
                write!(f, "archive: {objects} objects dropped by its bounds, {:.1} MiB kept", *bytes as f64 / 1048576.0)
            }
            ArchiveEvent::Failed(why) => write!(f, "archive: {why}"),
        }
    }
}

/// Asked of the store's thread.
enum Job {
    Put(Put),
    Get((u32, u32, u32)),
    Forget(u32),
    Enforce,
}

/// The running archive.
pub struct Archive {
    handle: Handle<Repairer<GroupSeal>>,
    tasks: Vec<JoinHandle<()>>,
    /// What it reports.
    pub events: mpsc::UnboundedReceiver<ArchiveEvent>,
}

impl Archive {
    /// Opens the store, offers what it holds, and starts receiving the
    /// group's packets under the epochs `epochs` gives (the key server's).
    pub fn start(
        cfg: ArchiveConfig,
        at_rest: &[u8],
        mut epochs: watch::Receiver<(u32, SecretKey)>,
        past: &[(u32, SecretKey)],
    ) -> Result<Archive, ArchiveError> {
        let store = ArchiveStore::open(&cfg.path, at_rest, cfg.limits)?;
        let (epoch, key) = epochs.borrow_and_update().clone();
        let mut seal = GroupSeal::new(cfg.suite, epoch, &key);
        // What it stored goes out under the epoch it was sent in.
        for (e, k) in past {
            seal.remember(*e, k);
        }
        let rcfg = RepairerConfig {
            receiver: ReceiverConfig {
                session: cfg.session,
                node: ARCHIVE_NODE,
                seed: u64::from(ARCHIVE_NODE),
                accept_backlog: false,
                first_seq: wall_clock_seq(),
                ..ReceiverConfig::default()
            },
            first_repair: FIRST_REPAIR,
            range: REPAIR_RANGE,
            cache_bytes: CACHE_BYTES,
            keep_declined: true,
            hold_for: cfg.limits.max_age,
            hold_pace: Some(0.5),
            rate: RESTART_RATE,
            ..RepairerConfig::default()
        };
        let mut core = Repairer::new(rcfg, seal);
        let held = store.objects()?;
        for &((origin, object), m) in &held {
            core.archived(origin, object, HeldObject { kind: m.kind, geometry: m.geometry, epoch: m.epoch });
        }
        let mut recent = Recent { n: cfg.shared.map_or(0, |n| n as usize), objects: VecDeque::new() };
        let mut by_arrival: Vec<_> = held.iter().filter(|(_, m)| m.kind != ObjectKind::Rekey).collect();
        by_arrival.sort_by_key(|(key, m)| (m.arrived, *key));
        for (key, _) in by_arrival {
            recent.add(*key);
        }
        if cfg.shared.is_some() {
            core.set_shared(recent.objects.iter().copied());
        }
        for (origin, counter) in store.counters()? {
            core.recall_sender(origin, counter);
        }
        let (etx, events) = mpsc::unbounded_channel();
        let _ = etx.send(ArchiveEvent::Opened { objects: held.len(), bytes: store.bytes() });
        let socket = MulticastSocket::open(&cfg.multicast).map_err(|e| ArchiveError::Multicast(e.to_string()))?;
        let mut driver = Driver::new(core, socket, DriverConfig::default());
        let handle = driver.handle();
        let clock = driver.clock();

        // The store's own thread: redb writes block and fsync.
        let (jobs, job_rx) = std_mpsc::channel::<Job>();
        let (read_tx, mut reads) = mpsc::unbounded_channel::<(BlockKey, Option<Vec<u8>>)>();
        let (gone_tx, mut gone) = mpsc::unbounded_channel::<Vec<(u32, u32)>>();
        let store_events = etx.clone();
        std::thread::Builder::new()
            .name("lsim-archive".into())
            .spawn(move || keep(store, &job_rx, &read_tx, &gone_tx, &store_events))
            .map_err(|e| ArchiveError::Multicast(e.to_string()))?;

        let mut tasks = Vec::new();
        let put_jobs = jobs.clone();
        let kept = etx.clone();
        tasks.push(tokio::spawn(async move {
            let _ = driver
                .run(|core: &mut Repairer<GroupSeal>, e| {
                    match e {
                        ReceiverEvent::ObjectData { sender, object, offset, data } => {
                            if let Some(held) = core.object_info(sender, object) {
                                let g = held.geometry;
                                let full = u64::from(g.symbol_size()) * u64::from(g.block_symbols());
                                let block = u32::try_from(offset / full.max(1)).unwrap_or(u32::MAX);
                                let counter = core.sender_counter(sender);
                                let put = Put {
                                    key: (sender, object, block),
                                    kind: held.kind,
                                    geometry: g,
                                    epoch: held.epoch,
                                    bytes: data,
                                    counter,
                                };
                                if put_jobs.send(Job::Put(put)).is_ok() {
                                    core.archived(sender, object, held);
                                }
                            }
                        }
                        ReceiverEvent::ObjectComplete { sender, object } => {
                            let held = core.object_info(sender, object);
                            if let Some(HeldObject { kind: ObjectKind::File, geometry: g, .. }) = held {
                                let _ = kept.send(ArchiveEvent::Kept { sender, len: g.len() });
                            }
                            if recent.n > 0 && held.is_some_and(|h| h.kind != ObjectKind::Rekey) {
                                recent.add((sender, object));
                                core.set_shared(recent.objects.iter().copied());
                            }
                        }
                        ReceiverEvent::SenderRestarted { sender } => {
                            let _ = put_jobs.send(Job::Forget(sender));
                            if recent.n > 0 {
                                recent.objects.retain(|k| k.0 != sender);
                                core.set_shared(recent.objects.iter().copied());
                            }
                        }
                        _ => {}
                    }
                    std::ops::ControlFlow::<()>::Continue(())
                })
                .await;
        }));
        // Blocks the repairer wants from the store, and those read back.
        let (want_handle, want_jobs) = (handle.clone(), jobs.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut enforce = tokio::time::interval(ENFORCE_EVERY);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let jobs = want_jobs.clone();
                        let alive = want_handle.with(move |core| {
                            while let Some(key) = core.poll_wanted() {
                                let _ = jobs.send(Job::Get(key));
                            }
                        });
                        if !alive {
                            return;
                        }
                    }
                    _ = enforce.tick() => {
                        let _ = want_jobs.send(Job::Enforce);
                    }
                    Some((key, bytes)) = reads.recv() => {
                        want_handle.with(move |core| match bytes {
                            Some(b) => core.restore(clock.now(), key.0, key.1, key.2, &b),
                            None => core.unarchived(key.0, key.1),
                        });
                    }
                    Some(dropped) = gone.recv() => {
                        want_handle.with(move |core| {
                            for (origin, object) in dropped {
                                core.unarchived(origin, object);
                            }
                        });
                    }
                }
            }
        }));
        // The key server's epochs: installed at once; the one before is
        // retired after the members' grace, as a member does.
        let epoch_handle = handle.clone();
        tasks.push(tokio::spawn(async move {
            while epochs.changed().await.is_ok() {
                let (epoch, key) = epochs.borrow_and_update().clone();
                epoch_handle.with(move |core| {
                    let _ = core.seal_mut().install(epoch, &key);
                });
                let retire = epoch_handle.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(crate::group::member::EPOCH_GRACE).await;
                    retire.with(move |core| core.seal_mut().retire_before(epoch));
                });
            }
        }));
        Ok(Archive { handle, tasks, events })
    }

    /// The group's members, each by its transport node id with the epoch
    /// its membership began at (the key server's `joined_epochs`): from
    /// now on the archive serves a member only what was sent since, and
    /// nobody else (the history policy `joined`).
    pub fn set_members(&self, members: Vec<(u32, u32)>) {
        (self.members())(members);
    }

    /// `set_members`, as a function a task can keep.
    pub fn members(&self) -> impl Fn(Vec<(u32, u32)>) + Send + 'static {
        let handle = self.handle.clone();
        move |members: Vec<(u32, u32)>| {
            // Members ask from their receiver's node.
            let table = members.into_iter().map(|(node, since)| (node | RECEIVER_NODE_BIT, since)).collect();
            handle.with(move |core| core.set_members(table));
        }
    }

    /// Keeps `task` (one that follows the key server) and ends it with the archive.
    pub fn follow(&mut self, task: JoinHandle<()>) {
        self.tasks.push(task);
    }

    /// The archive's transport counters (`None` if it has stopped): what
    /// it repaired, and what it refused (`repair_refused_policy`).
    pub async fn stats(&self) -> Option<lsim_transport::stats::Stats> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.handle.with(move |core| {
            let _ = tx.send(core.stats().clone());
        });
        rx.await.ok()
    }

    /// Objects the archive offers (`None` if it has stopped).
    pub async fn objects(&self) -> Option<usize> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.handle.with(move |core| {
            let _ = tx.send(core.archived_objects());
        });
        rx.await.ok()
    }

    /// Stops the archive (what is committed stays).
    pub fn stop(&self) {
        self.handle.stop();
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Archive {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The next event of `archive`, if there is one; never, without one.
pub async fn next_event(archive: &mut Option<Archive>) -> Option<ArchiveEvent> {
    match archive {
        Some(a) => a.events.recv().await,
        None => std::future::pending().await,
    }
}

/// Why the archive could not start.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Its store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Its socket or thread.
    #[error("archive: {0}")]
    Multicast(String),
}

/// The store's thread: writes in batches (one transaction each), reads
/// what the repairer wants, keeps the bounds. Ends when every sender of
/// jobs is gone.
fn keep(
    mut store: ArchiveStore,
    jobs: &std_mpsc::Receiver<Job>,
    reads: &mpsc::UnboundedSender<(BlockKey, Option<Vec<u8>>)>,
    gone: &mpsc::UnboundedSender<Vec<(u32, u32)>>,
    events: &mpsc::UnboundedSender<ArchiveEvent>,
) {
    let fail = |e: StoreError| {
        let _ = events.send(ArchiveEvent::Failed(e.to_string()));
    };
    let enforce = |store: &mut ArchiveStore| match store.enforce(store::unix_now()) {
        Ok(dropped) if !dropped.is_empty() => {
            let _ = events.send(ArchiveEvent::Dropped { objects: dropped.len(), bytes: store.bytes() });
            let _ = gone.send(dropped);
        }
        Ok(_) => {}
        Err(e) => fail(e),
    };
    while let Ok(first) = jobs.recv() {
        let mut puts = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Put(p) => puts.push(p),
                Job::Get(key) => {
                    let bytes = store.block(key).unwrap_or_else(|e| {
                        fail(e);
                        None
                    });
                    let _ = reads.send((key, bytes));
                }
                Job::Forget(origin) => match store.forget_origin(origin) {
                    Ok(dropped) => {
                        let _ = gone.send(dropped);
                    }
                    Err(e) => fail(e),
                },
                Job::Enforce => enforce(&mut store),
            }
            if puts.len() < BATCH {
                next = jobs.try_recv().ok();
            }
        }
        if !puts.is_empty() {
            if let Err(e) = store.put(&puts) {
                fail(e);
            }
            if store.bytes() > store.limits().max_bytes {
                enforce(&mut store);
            }
        }
    }
}
