//! Running a core on a real socket.
//!
//! Owns the loop quinn's driver has: transmit what the core produced, hand
//! out its events, then wait for whichever comes first — a datagram, a command
//! from the application, or the core's next deadline. Also the real clock
//! (`Clock`) and the wall-clock start of packet counters. The loop makes no
//! protocol decision, but it keeps events in order: while datagrams are still
//! queued in the socket (a read filled its whole batch), the core's timers
//! wait until they are read, as they would in a simulator — a receiver that
//! fell behind would otherwise NACK again for repair that sits in its own
//! socket queue. Optionally (for a process that gives the driver its thread)
//! it reads in batches instead of waking per datagram, and sleeps the thread
//! for deadlines finer than tokio's 1 ms timer.

use std::io;
use std::ops::ControlFlow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::socket::MulticastSocket;
use crate::core::Core;
use crate::rng::Rng;
use crate::time::Time;
use crate::wire::MAX_DATAGRAM;

/// Datagrams read in one wake-up before the core gets to transmit again.
const RECV_BATCH: usize = 256;

/// A kernel stamp older than this (or in the future) is taken for a jump of
/// the wall clock, and the datagram for one that arrived just now.
const MAX_STAMP_AGE: Duration = Duration::from_secs(1);

/// The real clock, as `Time` since the driver started.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    /// A clock whose origin is now.
    pub fn new() -> Clock {
        Clock { origin: Instant::now() }
    }
    /// The time now.
    pub fn now(&self) -> Time {
        Time::from_micros(u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX))
    }
    fn instant(&self, t: Time) -> Instant {
        self.origin + Duration::from_micros(t.as_micros())
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

/// A packet-counter start that exceeds every counter an earlier run of this
/// node could have used: the wall clock in nanoseconds (a node sends far
/// fewer than one packet per nanosecond). See `SenderConfig::first_seq`.
pub fn wall_clock_seq() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Driver settings.
#[derive(Clone, Debug, Default)]
pub struct DriverConfig {
    /// Drop this share of received datagrams before the core sees them
    /// (simulated radio loss for tests and the demo; 0 in real use).
    pub simulated_loss: f64,
    /// Seed of the simulated loss.
    pub seed: u64,
    /// After a wake-up that found datagrams, pause this long (never past the
    /// core's next deadline) and read what queued meanwhile, instead of
    /// waiting on the socket again. While a busy receiver waits on its socket,
    /// every datagram wakes it: on a shared machine those wake-ups cost the
    /// sender (which delivers in its own system call) and the receiver more
    /// than the datagrams themselves. Zero: wait on the socket at once. The
    /// pause blocks the runtime's thread: only for a driver that has its
    /// thread to itself.
    pub rx_coalesce: Duration,
    /// Wait for deadlines closer than tokio's 1 ms timer tick by sleeping the
    /// thread (microsecond precision), then read the socket without waiting.
    /// A paced sender then keeps its rate with a small burst. Blocks the
    /// runtime's thread like `rx_coalesce`.
    pub precise_timer: bool,
}

/// Deadlines closer than this are waited for by `DriverConfig::precise_timer`.
const TIMER_TICK: Duration = Duration::from_millis(1);

/// How often, while datagrams arrive, the socket's drop counter is read for
/// the core (`Core::handle_overflow`).
const OVERFLOW_CHECK: Duration = Duration::from_millis(20);

/// What the driver counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// Datagrams received from the socket.
    pub datagrams_in: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Received datagrams dropped by the simulated loss.
    pub simulated_drops: u64,
    /// Sends the kernel refused (the datagram is lost; the protocol repairs it).
    pub send_errors: u64,
}

type Command<C> = Box<dyn FnOnce(&mut C) -> ControlFlow<()> + Send>;

/// Lets other tasks act on a running driver's core.
pub struct Handle<C> {
    tx: mpsc::UnboundedSender<Command<C>>,
}

impl<C> Clone for Handle<C> {
    fn clone(&self) -> Self {
        Handle { tx: self.tx.clone() }
    }
}

impl<C> Handle<C> {
    /// Runs `f` on the core inside the driver's loop (e.g. to queue an
    /// object). False if the driver is gone.
    pub fn with(&self, f: impl FnOnce(&mut C) + Send + 'static) -> bool {
        self.tx
            .send(Box::new(move |c| {
                f(c);
                ControlFlow::Continue(())
            }))
            .is_ok()
    }

    /// Makes the driver's `run` return `Ok(None)`. False if the driver is gone.
    pub fn stop(&self) -> bool {
        self.tx.send(Box::new(|_| ControlFlow::Break(()))).is_ok()
    }
}

/// A core on a socket.
pub struct Driver<C> {
    core: C,
    socket: MulticastSocket,
    clock: Clock,
    loss: Option<(f64, Rng)>,
    stats: DriverStats,
    commands: mpsc::UnboundedReceiver<Command<C>>,
    handle: Handle<C>,
    tx_buf: Vec<u8>,
    rx_buf: Vec<u8>,
    rx_coalesce: Duration,
    precise_timer: bool,
    /// When the socket's drop counter is next read, and what it said last.
    overflow_check: Time,
    drops: Option<u64>,
    /// When the socket next looks whether others on this host joined the group.
    loopback_check: Time,
}

impl<C: Core> Driver<C> {
    /// A driver for `core` on `socket`.
    pub fn new(core: C, socket: MulticastSocket, cfg: DriverConfig) -> Driver<C> {
        let (tx, commands) = mpsc::unbounded_channel();
        let loss = (cfg.simulated_loss > 0.0).then(|| (cfg.simulated_loss, Rng::new(cfg.seed)));
        Driver {
            core,
            socket,
            clock: Clock::new(),
            loss,
            stats: DriverStats::default(),
            commands,
            handle: Handle { tx },
            tx_buf: Vec::with_capacity(MAX_DATAGRAM),
            rx_buf: vec![0u8; MAX_DATAGRAM],
            rx_coalesce: cfg.rx_coalesce,
            precise_timer: cfg.precise_timer,
            overflow_check: Time::ZERO,
            drops: None,
            loopback_check: Time::ZERO + super::socket::LOOPBACK_CHECK,
        }
    }

    /// A handle for other tasks.
    pub fn handle(&self) -> Handle<C> {
        self.handle.clone()
    }

    /// The core.
    pub fn core(&self) -> &C {
        &self.core
    }

    /// The core, to queue objects before running.
    pub fn core_mut(&mut self) -> &mut C {
        &mut self.core
    }

    /// The driver's clock (the core's `Time` origin).
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// What the driver counted.
    pub fn stats(&self) -> &DriverStats {
        &self.stats
    }

    /// The socket.
    pub fn socket(&self) -> &MulticastSocket {
        &self.socket
    }

    /// Runs the core until `on_event` breaks (returns `Some(value)`) or a
    /// handle calls `stop` (returns `None`). Cancel-safe: dropping the future
    /// loses no state, so it can run under `tokio::time::timeout`.
    pub async fn run<B>(
        &mut self,
        mut on_event: impl FnMut(&mut C, C::Event) -> ControlFlow<B>,
    ) -> io::Result<Option<B>> {
        // True while datagrams keep arriving: then `rx_coalesce` applies.
        let mut busy = false;
        // True while the last read filled its batch: datagrams that arrived
        // before now are still queued in the socket.
        let mut backlog = false;
        loop {
            let now = self.clock.now();
            if now >= self.loopback_check {
                self.loopback_check = now + super::socket::LOOPBACK_CHECK;
                if self.socket.refresh_loopback().is_err() {
                    self.stats.send_errors += 1;
                }
            }
            // Datagrams that arrived before a timer's deadline go in before the
            // timer fires: a receiver that fell behind must not decide its repair
            // is late while that repair waits in its own socket queue.
            if !backlog {
                self.core.handle_timeout(now);
            }
            self.transmit(now).await;
            while let Some(e) = self.core.poll_event() {
                if let ControlFlow::Break(b) = on_event(&mut self.core, e) {
                    return Ok(Some(b));
                }
            }
            let due = self.core.poll_timeout();
            let until = due.map(|t| t.saturating_since(self.clock.now()));
            let pause = if backlog {
                Some(Duration::ZERO)
            } else if busy && !self.rx_coalesce.is_zero() {
                Some(until.map_or(self.rx_coalesce, |u| u.min(self.rx_coalesce)))
            } else if self.precise_timer {
                until.filter(|u| *u < TIMER_TICK)
            } else {
                None
            };
            if let Some(pause) = pause {
                if !pause.is_zero() {
                    std::thread::sleep(pause);
                }
                let n = self.drain(RECV_BATCH)?;
                (busy, backlog) = (n > 0, n == RECV_BATCH);
                // Commands must not wait for the traffic to stop.
                while let Ok(cmd) = self.commands.try_recv() {
                    if cmd(&mut self.core).is_break() {
                        return Ok(None);
                    }
                }
                continue;
            }
            let deadline = due.map(|t| self.clock.instant(t));
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            busy = false;
            tokio::select! {
                r = self.socket.recv(&mut self.rx_buf) => {
                    let (n, at) = r?;
                    self.receive(n, at);
                    // Drain what else is queued before transmitting again.
                    backlog = self.drain(RECV_BATCH - 1)? == RECV_BATCH - 1;
                    busy = true;
                }
                Some(cmd) = self.commands.recv() => {
                    if cmd(&mut self.core).is_break() {
                        return Ok(None);
                    }
                }
                () = sleep => {}
            }
        }
    }

    /// Reads up to `max` queued datagrams without waiting; returns how many.
    fn drain(&mut self, max: usize) -> io::Result<usize> {
        for i in 0..max {
            match self.socket.try_recv(&mut self.rx_buf) {
                Ok((n, at)) => self.receive(n, at),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(i),
                Err(e) => return Err(e),
            }
        }
        Ok(max)
    }

    /// A datagram of `n` bytes in `rx_buf`, which arrived at `at` by the
    /// kernel's clock if it said: the core gets that time (on the driver's
    /// clock), so a probe's hold and an echo's round trip leave out how late
    /// this process read them.
    fn receive(&mut self, n: usize, at: Option<SystemTime>) {
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += n as u64;
        if let Some((p, rng)) = &mut self.loss
            && rng.chance(*p)
        {
            self.stats.simulated_drops += 1;
            return;
        }
        let now = self.clock.now();
        let waited = at.and_then(|at| SystemTime::now().duration_since(at).ok()).filter(|w| *w < MAX_STAMP_AGE);
        let arrived = waited.map_or(now, |w| Time::from_micros(now.as_micros().saturating_sub(w.as_micros() as u64)));
        self.core.handle_datagram(arrived, &self.rx_buf[..n]);
        if now >= self.overflow_check {
            self.overflow_check = now + OVERFLOW_CHECK;
            if let Some(d) = self.socket.drops()
                && self.drops != Some(d)
            {
                self.drops = Some(d);
                self.core.handle_overflow(now, d);
            }
        }
    }

    async fn transmit(&mut self, now: Time) {
        let group = self.socket.group();
        while let Some(t) = self.core.poll_transmit(now, &mut self.tx_buf) {
            if self.socket.set_scope(t.scope).is_err() {
                self.stats.send_errors += 1;
                continue;
            }
            match self.socket.socket().send_to(&self.tx_buf[..t.len], group).await {
                Ok(_) => {
                    self.stats.datagrams_out += 1;
                    self.stats.bytes_out += t.len as u64;
                }
                Err(_) => self.stats.send_errors += 1,
            }
        }
    }
}
