//! The public engine: registration, driving and waiting.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::budget::Budget;
use crate::delivery::{warn_fallback_once, Delivery, OnEveryExit, OnExit};
use crate::event::{Alive, ExitEvent, Key};
use crate::overflow::{Command, Overflow};
use crate::shard::{self, PrepareError, Prepared, RawExit, Shard, ShardConfig, Target};
use crate::status::ExitStatus;
use crate::sys::{self, Bridge};

/// Environment variable that forces the fallback lane in every engine built
/// while it is set to `fallback` (for tests and benchmarks).
pub const BACKEND_ENV: &str = "WAITPROCS_BACKEND";

/// A process removed by [`Engine::deregister`] before it exited.
#[derive(Debug)]
pub struct Deregistered<T> {
    /// The process id.
    pub pid: u32,
    /// The caller's data given at registration.
    pub data: T,
    /// The child handle, when the process was registered with one. Waiting for
    /// it is again the caller's job.
    pub child: Option<Child>,
}

/// The caller's part of a registration, kept apart from the watch.
struct Payload<T> {
    data: T,
    /// Kept so that the child's pipes stay open until it exits.
    child: Option<Child>,
    /// Whether the child stays waitable, so its handle goes back with the event.
    keep: bool,
    on_exit: Option<OnExit<T>>,
}

std::thread_local! {
    // Debian's clippy 1.96 requests a const initializer, which this already is.
    #[allow(clippy::missing_const_for_thread_local)]
    /// The engine whose exits this thread is delivering right now: set for
    /// good on dispatch threads, and during `poll` on a caller's thread.
    static DRIVING: std::cell::Cell<Option<u32>> = const { std::cell::Cell::new(None) };
}

/// Runs `run` with this thread marked as driving `engine`.
fn driving<R>(engine: u32, run: impl FnOnce() -> R) -> R {
    let previous = DRIVING.with(|cell| cell.replace(Some(engine)));
    let result = run();
    DRIVING.with(|cell| cell.set(previous));
    result
}

fn is_driving(engine: u32) -> bool {
    DRIVING.with(|cell| cell.get() == Some(engine))
}

/// How long [`Engine::terminate_all`] waits after SIGKILL.
pub const KILL_WAIT: Duration = Duration::from_secs(5);

/// Largest number of shards an engine can have (keys reserve 8 bits for it).
pub const MAX_SHARDS: usize = 256;

/// How many exits [`Engine::wait`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    /// Every registered process.
    All,
    /// The first exit.
    Any,
    /// This many exits (or every registered process, if fewer are registered).
    Count(usize),
}

/// The result of [`Engine::wait`].
#[derive(Debug)]
pub struct WaitOutcome<T> {
    /// Exits taken from the engine during this wait, in the order they were detected
    /// per shard.
    pub gone: Vec<ExitEvent<T>>,
    /// Processes still registered when the wait returned.
    pub alive: Vec<Alive>,
}

/// Counts of registered processes by the place that watches them, from
/// [`Engine::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Processes watched by a pidfd (or kevent) in the process's own table.
    pub watched: usize,
    /// Processes watched by overflow shards, in their private tables.
    pub overflow: usize,
    /// Overflow shards started so far.
    pub overflow_shards: usize,
    /// Processes waiting in the fallback lane.
    pub lane: usize,
    /// Descriptors the engine may take from the process's own table.
    pub fd_budget: usize,
}

/// A process to register, with its options.
pub struct Registration<T> {
    pid: u32,
    child: Option<Child>,
    keep: bool,
    start_time: Option<u64>,
    data: T,
    on_exit: Option<OnExit<T>>,
}

impl<T> fmt::Debug for Registration<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("pid", &self.pid)
            .field("child", &self.child.is_some())
            .field("keep", &self.keep)
            .finish_non_exhaustive()
    }
}

impl<T> Registration<T> {
    /// Registers a process by PID. It may be a child of the caller or any
    /// other process.
    ///
    /// A child registered this way is reaped by the engine when it exits, unless
    /// [`keep_status`](Self::keep_status) is set.
    pub fn pid(pid: u32, data: T) -> Self {
        Self {
            pid,
            child: None,
            keep: false,
            start_time: None,
            data,
            on_exit: None,
        }
    }

    /// Registers a child started with [`std::process::Command`]. The engine
    /// owns reaping it from now on, and keeps the handle (and so its pipes)
    /// until the child exits.
    pub fn child(child: Child, data: T) -> Self {
        Self {
            pid: child.id(),
            child: Some(child),
            keep: false,
            start_time: None,
            data,
            on_exit: None,
        }
    }

    /// Reads a child's exit status without reaping it, so its owner can still
    /// `waitpid` it (waitid(2) with `WNOWAIT`). The child stays a zombie until
    /// then. A child registered with its handle gets the handle back in
    /// [`ExitEvent::child`](crate::ExitEvent::child).
    pub fn keep_status(mut self) -> Self {
        self.keep = true;
        self
    }

    /// Accepts the process only if its start time is `start_time`, as read
    /// by [`process_start_time`](crate::process_start_time) when the caller
    /// first saw it. This tells a PID that was reused by a newer process
    /// apart from the one meant, as psutil does with the creation time.
    ///
    /// The check runs once the pidfd is open, when the PID can no longer move
    /// to another process. A mismatch makes [`Engine::register`] fail with
    /// `NotFound`.
    pub fn expect_start_time(mut self, start_time: u64) -> Self {
        self.start_time = Some(start_time);
        self
    }

    /// Sets a callback run once, when this process's exit is detected.
    pub fn on_exit(mut self, callback: impl FnOnce(&ExitEvent<T>) + Send + 'static) -> Self {
        self.on_exit = Some(Box::new(callback));
        self
    }
}

/// Settings for an [`Engine`].
pub struct Builder<T> {
    shards: usize,
    threads: bool,
    on_exit: Option<OnEveryExit<T>>,
    raise_fd_limit: bool,
    fd_headroom: Option<usize>,
    force_fallback: bool,
    overflow: bool,
    status_grace: Duration,
}

impl<T> fmt::Debug for Builder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("shards", &self.shards)
            .field("threads", &self.threads)
            .field("raise_fd_limit", &self.raise_fd_limit)
            .field("fd_headroom", &self.fd_headroom)
            .field("force_fallback", &self.force_fallback)
            .field("overflow", &self.overflow)
            .field("status_grace", &self.status_grace)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Builder<T> {
    /// Raises the soft RLIMIT_NOFILE to the hard limit when the engine is built
    /// (setrlimit(2)), as Go's runtime and systemd do. Off by default.
    ///
    /// The limit is process-wide and inherited by children started afterwards;
    /// a child that uses select(2) can break with descriptors above 1024.
    pub fn raise_fd_limit(mut self, raise: bool) -> Self {
        self.raise_fd_limit = raise;
        self
    }

    /// Sets how many descriptors of the process's soft limit the engine leaves
    /// to the host program. The default is a quarter of the soft limit, at
    /// least 32. Past its budget the engine uses overflow shards with their own
    /// descriptor tables, or the fallback lane, never the host's headroom.
    pub fn fd_headroom(mut self, headroom: usize) -> Self {
        self.fd_headroom = Some(headroom);
        self
    }

    /// Waits for every process with the fallback lane (no pidfds): children
    /// with waitid(2) `P_PID`, others through `/proc`, on one back-off timer.
    /// Also set when the environment variable [`BACKEND_ENV`] is `fallback`.
    pub fn force_fallback(mut self, force: bool) -> Self {
        self.force_fallback = force;
        self
    }

    /// Sets how long the exit of a non-child may wait for its parent to reap
    /// it, so that the kernel keeps its status for the pidfd (Linux 6.15 and
    /// later). Within this time the engine looks again with a back-off. After
    /// it, the exit is reported with [`ExitStatus::Unknown`](crate::ExitStatus::Unknown).
    /// The default is zero: non-children are reported at zombie time.
    pub fn nonchild_status_grace(mut self, grace: Duration) -> Self {
        self.status_grace = grace;
        self
    }

    /// Allows overflow shards: threads with private descriptor tables that hold
    /// pidfds past the process's budget. On by default; when off, processes
    /// past the budget go to the fallback lane.
    pub fn overflow(mut self, overflow: bool) -> Self {
        self.overflow = overflow;
        self
    }

    /// Sets the number of shards. Each shard has its own poller and, with
    /// [`threads`](Self::threads), its own dispatch thread.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards;
        self
    }

    /// Drives the engine with its own threads, one per shard, instead of the
    /// caller's calls to [`Engine::poll`] and [`Engine::wait`].
    pub fn threads(mut self, threads: bool) -> Self {
        self.threads = threads;
        self
    }

    /// Sets a callback run once for every process, when its exit is detected.
    ///
    /// It runs on the thread that drives the engine, before the event is
    /// sent on the channel. A panic in it is caught: see
    /// [`Engine::take_callback_panic`].
    pub fn on_exit(mut self, callback: impl Fn(&ExitEvent<T>) + Send + Sync + 'static) -> Self {
        self.on_exit = Some(Box::new(callback));
        self
    }

    /// Creates the engine.
    ///
    /// # Errors
    ///
    /// Returns `InvalidInput` if the shard count is 0, above [`MAX_SHARDS`], or
    /// above 1 without [`threads`](Self::threads) (a caller-driven engine has
    /// one poller so that it can expose one descriptor). Returns the OS error if
    /// a poller cannot be created (epoll_create1(2): `EMFILE`, `ENOMEM`) or a
    /// thread cannot be spawned.
    pub fn build(self) -> io::Result<Engine<T>> {
        if self.shards == 0 || self.shards > MAX_SHARDS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid shard count {}: use 1 to {MAX_SHARDS}", self.shards),
            ));
        }
        if self.shards > 1 && !self.threads {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "invalid shard count {} for a caller-driven engine: use 1 shard, or enable threads",
                    self.shards
                ),
            ));
        }
        if self.raise_fd_limit {
            sys::raise_descriptor_limit()?;
        }
        static NEXT_ENGINE: AtomicU32 = AtomicU32::new(0);
        let id = NEXT_ENGINE.fetch_add(1, Ordering::Relaxed);
        let budget = Arc::new(Budget::from_limits(self.fd_headroom));
        let to_base = Arc::new(Bridge::new()?);
        let to_overflow = Arc::new(Bridge::new()?);
        let mut shards = Vec::with_capacity(self.shards);
        for index in 0..self.shards {
            let bridge = (index == 0).then(|| Arc::clone(&to_base));
            shards.push(Shard::new(ShardConfig {
                engine: id,
                index,
                budget: Arc::clone(&budget),
                bridge,
                shared: false,
                status_grace: self.status_grace,
            })?);
        }
        let (sender, receiver) = crossbeam_channel::unbounded();
        let (handoff, handed) = crossbeam_channel::unbounded();
        let force_fallback = self.force_fallback
            || std::env::var(BACKEND_ENV).is_ok_and(|value| value == "fallback");
        let inner = Arc::new(Inner {
            id,
            shards,
            overflow: RwLock::new(Vec::new()),
            parked: Mutex::new(HashMap::new()),
            next_ticket: AtomicU64::new(0),
            handoff,
            handed,
            to_base,
            to_overflow,
            budget,
            delivery: Delivery::new(sender, self.on_exit),
            shutdown: Arc::new(AtomicBool::new(false)),
            threads: self.threads,
            force_fallback,
            overflow_enabled: self.overflow,
            status_grace: self.status_grace,
            driver: Mutex::new(()),
            followers: AtomicUsize::new(0),
            next_shard: AtomicUsize::new(0),
            own_pid: sys::current_pid(),
        });
        tracing::debug!(
            backend = if force_fallback {
                "fallback"
            } else {
                sys::BACKEND
            },
            shards = self.shards,
            threads = self.threads,
            fd_budget = inner.budget.limit(),
            "engine started"
        );

        let mut threads = Vec::new();
        if self.threads {
            for index in 0..inner.shards.len() {
                let shared = Arc::clone(&inner);
                let spawned = std::thread::Builder::new()
                    .name(format!("waitprocs-{index}"))
                    .spawn(move || shared.run_shard(index));
                match spawned {
                    Ok(handle) => threads.push(handle),
                    Err(error) => {
                        stop(&inner, &mut threads);
                        return Err(error);
                    }
                }
            }
        }
        Ok(Engine {
            inner,
            receiver,
            threads,
        })
    }
}

struct Inner<T> {
    /// This engine's id, carried in its keys.
    id: u32,
    /// Shards in the process's own descriptor table.
    shards: Vec<Shard<Payload<T>>>,
    /// Shards with private descriptor tables, numbered after `shards`.
    overflow: RwLock<Vec<Overflow>>,
    /// Payloads of processes on overflow shards, by ticket.
    parked: Mutex<HashMap<u64, Payload<T>>>,
    next_ticket: AtomicU64,
    /// Exits found by overflow shards, waiting to be delivered by shard 0.
    handoff: Sender<(u64, RawExit)>,
    handed: Receiver<(u64, RawExit)>,
    /// Wakes shard 0 when `handed` has exits.
    to_base: Arc<Bridge>,
    /// Wakes every overflow shard when one of them has a command.
    to_overflow: Arc<Bridge>,
    budget: Arc<Budget>,
    delivery: Delivery<T>,
    shutdown: Arc<AtomicBool>,
    threads: bool,
    force_fallback: bool,
    overflow_enabled: bool,
    status_grace: Duration,
    /// Held by the thread that runs shard 0's turn in a caller-driven engine.
    driver: Mutex<()>,
    /// Caller-driven waits blocked on the channel while another thread drives.
    followers: AtomicUsize,
    next_shard: AtomicUsize,
    own_pid: u32,
}

impl<T> Inner<T> {
    fn run_shard(&self, index: usize) {
        DRIVING.with(|cell| cell.set(Some(self.id)));
        while !self.shutdown.load(Ordering::Acquire) {
            if let Err(error) = self.turn(index, None) {
                // epoll_wait(2) fails only for a bad descriptor or buffer, which
                // would be a bug here; log it and slow down rather than spin.
                tracing::error!(%error, shard = index, "waiting on the poller failed");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Runs one turn of base shard `index` and delivers what it found. Shard 0
    /// also delivers the exits handed over by overflow shards.
    fn turn(&self, index: usize, timeout: Option<Duration>) -> io::Result<usize> {
        let mut found = Vec::new();
        self.shards[index].turn(timeout, &mut found)?;
        let mut delivered = found.len();
        for (exit, payload) in found {
            self.deliver(exit, payload);
        }
        if index == 0 {
            for (ticket, exit) in self.handed.try_iter() {
                let payload = self
                    .parked
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&ticket);
                // No payload: the process was deregistered while its exit was
                // on the way, so it must not be reported.
                if let Some(payload) = payload {
                    self.deliver(exit, payload);
                    delivered += 1;
                }
            }
        }
        Ok(delivered)
    }

    fn deliver(&self, exit: RawExit, payload: Payload<T>) {
        let Payload {
            data,
            child,
            keep,
            on_exit,
        } = payload;
        // A reaped child's handle is dropped, which closes its pipes. A kept
        // child goes back to its owner, who still has to reap it.
        let child = if keep { child } else { None };
        let event = ExitEvent {
            key: exit.key,
            pid: exit.pid,
            status: exit.status,
            usage: exit.usage,
            registered_at: exit.registered_at,
            detected_at: exit.detected_at,
            was_child: exit.was_child,
            data,
            child,
        };
        tracing::trace!(pid = event.pid, key = %event.key, status = %event.status, "exited");
        self.delivery.deliver(event, on_exit);
    }
}

fn stop<T>(inner: &Inner<T>, threads: &mut Vec<JoinHandle<()>>) {
    inner.shutdown.store(true, Ordering::Release);
    for overflow in inner
        .overflow
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .iter_mut()
    {
        overflow.stop();
    }
    for shard in &inner.shards {
        // A failed notify leaves that thread asleep until its next exit event;
        // join would then block, so only join threads we could wake.
        let _ = shard.poller().notify();
    }
    let current = std::thread::current().id();
    for handle in threads.drain(..) {
        // The last reference can be dropped by a callback on a dispatch
        // thread, which cannot join itself: it ends when its loop reads the
        // shutdown flag after the callback returns.
        if handle.thread().id() != current {
            let _ = handle.join();
        }
    }
}

/// Waits on many processes at once and reports each exit exactly once.
///
/// See the [crate documentation](crate) for an overview and an example.
pub struct Engine<T = ()> {
    inner: Arc<Inner<T>>,
    receiver: Receiver<ExitEvent<T>>,
    threads: Vec<JoinHandle<()>>,
}

impl<T> fmt::Debug for Engine<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("shards", &self.inner.shards.len())
            .field("threads", &self.inner.threads)
            .field("outstanding", &self.inner.delivery.outstanding())
            .finish()
    }
}

impl Engine<()> {
    /// Creates a caller-driven engine with one shard and no per-process data.
    ///
    /// # Errors
    ///
    /// Returns the OS error if the poller cannot be created.
    pub fn new() -> io::Result<Self> {
        Self::builder().build()
    }
}

impl<T: Send + 'static> Engine<T> {
    /// Returns a builder with one shard, driven by the caller.
    pub fn builder() -> Builder<T> {
        Builder {
            shards: 1,
            threads: false,
            on_exit: None,
            raise_fd_limit: false,
            fd_headroom: None,
            force_fallback: false,
            overflow: true,
            status_grace: Duration::ZERO,
        }
    }

    /// Registers a process by PID, child or not. Shorthand for
    /// [`register`](Self::register) with [`Registration::pid`].
    ///
    /// # Errors
    ///
    /// As for [`register`](Self::register).
    pub fn register_pid(&self, pid: u32, data: T) -> io::Result<Key> {
        self.register(Registration::pid(pid, data))
    }

    /// Registers a child the caller started, handing its reaping to the engine.
    ///
    /// # Errors
    ///
    /// As for [`register`](Self::register).
    pub fn register_child(&self, child: Child, data: T) -> io::Result<Key> {
        self.register(Registration::child(child, data))
    }

    /// Registers a process. Its exit will be reported exactly once, unless it
    /// is deregistered first. A process that has already exited (a zombie, or
    /// a child of ours reaped by someone else) is reported at the next turn.
    ///
    /// # Errors
    ///
    /// - `InvalidInput`: the PID is 0, above `i32::MAX` (outside `pid_t`), the
    ///   caller's own PID, or a thread id that is not a process.
    /// - `NotFound`: no process has this PID (it never existed, or it exited
    ///   and its parent reaped it already).
    /// - Other kinds only if an overflow shard fails after it registered the
    ///   process, which would be a bug.
    ///
    /// Running out of descriptors is not an error: past the budget a process
    /// goes to an overflow shard, and past those to the fallback lane.
    pub fn register(&self, registration: Registration<T>) -> io::Result<Key> {
        let pid = registration.pid;
        if pid == 0 || pid > i32::MAX as u32 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "invalid PID {pid}: a process id is between 1 and {}",
                    i32::MAX
                ),
            ));
        }
        if pid == self.inner.own_pid {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid PID {pid}: it is this process itself, which cannot wait for its own exit"),
            ));
        }
        let target = Target {
            pid,
            known_child: registration.child.is_some(),
            keep: registration.keep,
            start_time: registration.start_time,
        };
        let keep = registration.keep;
        let payload = Payload {
            data: registration.data,
            child: registration.child,
            keep,
            on_exit: registration.on_exit,
        };
        self.inner.delivery.expect_one();
        let result = self.route(target, payload);
        match &result {
            Ok(key) => {
                self.inner.delivery.registered(*key, pid);
                tracing::trace!(pid, key = %key, "registered");
            }
            Err(_) => self.inner.delivery.cancel_one(None),
        }
        result
    }

    /// Places a process: a pidfd in a base shard while the budget lasts, then
    /// an overflow shard, then the fallback lane.
    fn route(&self, target: Target, payload: Payload<T>) -> io::Result<Key> {
        let pid = target.pid;
        let base = &self.inner.shards[self.pick_shard()];
        if self.inner.force_fallback {
            let prepared = rejected(shard::prepare(target, false))?;
            return Ok(self.insert_base(base, pid, prepared, false, payload));
        }
        if self.inner.budget.try_acquire() {
            match shard::prepare(target, true) {
                Ok(prepared) => return Ok(self.insert_base(base, pid, prepared, true, payload)),
                Err(PrepareError::Rejected(error)) => {
                    self.inner.budget.release();
                    return Err(error);
                }
                // The host opened more descriptors than the budget allowed for.
                Err(PrepareError::TableFull) => self.inner.budget.release(),
            }
        }
        let payload = match self.register_overflow(target, payload) {
            Ok(key) => return Ok(key),
            Err(Overflowed::Rejected(error)) => return Err(error),
            Err(Overflowed::NoRoom(payload)) => payload,
        };
        // No table has room: the lane waits, and promotes the process to a
        // pidfd when the budget frees up.
        let mut prepared = rejected(shard::prepare(target, false))?;
        prepared.transient = !shard::pidfd_unavailable();
        warn_fallback_once(&io::Error::from_raw_os_error(sys::EMFILE));
        Ok(self.insert_base(base, pid, prepared, false, payload))
    }

    /// Inserts into a base shard and logs what sent the process to the lane.
    fn insert_base(
        &self,
        base: &Shard<Payload<T>>,
        pid: u32,
        prepared: Prepared,
        charged: bool,
        payload: Payload<T>,
    ) -> Key {
        let (key, fallback) = base.insert(pid, prepared, charged, payload);
        if let Some(error) = fallback {
            warn_fallback_once(&error);
        }
        key
    }

    /// Registers a process on an overflow shard with room, starting one if needed.
    fn register_overflow(&self, target: Target, payload: Payload<T>) -> Result<Key, Overflowed<T>> {
        if !self.inner.overflow_enabled {
            return Err(Overflowed::NoRoom(payload));
        }
        let base_count = self.inner.shards.len();
        let mut chosen = self.overflows().iter().position(Overflow::try_reserve);
        if chosen.is_none() {
            let mut overflows = self
                .inner
                .overflow
                .write()
                .unwrap_or_else(|e| e.into_inner());
            // Another thread may have started one while this one waited.
            chosen = overflows.iter().position(Overflow::try_reserve);
            let capacity = self.inner.budget.overflow_capacity();
            // `stop` sets the flag before it takes this lock, so a shard
            // started after it stopped the others would never be joined.
            let stopping = self.inner.shutdown.load(Ordering::Acquire);
            if chosen.is_none()
                && !stopping
                && capacity > 0
                && base_count + overflows.len() < MAX_SHARDS
            {
                let index = base_count + overflows.len();
                let config = ShardConfig {
                    engine: self.inner.id,
                    index,
                    budget: Arc::new(Budget::with_limit(capacity, capacity)),
                    bridge: Some(Arc::clone(&self.inner.to_overflow)),
                    shared: true,
                    status_grace: self.inner.status_grace,
                };
                match Overflow::spawn(
                    config,
                    self.inner.handoff.clone(),
                    Arc::clone(&self.inner.to_base),
                    Arc::clone(&self.inner.shutdown),
                ) {
                    Ok(overflow) => {
                        tracing::debug!(shard = index, capacity, "started an overflow shard");
                        if overflow.try_reserve() {
                            chosen = Some(overflows.len());
                        }
                        overflows.push(overflow);
                    }
                    Err(error) => warn_fallback_once(&error),
                }
            }
        }
        let Some(position) = chosen else {
            return Err(Overflowed::NoRoom(payload));
        };

        let ticket = self.inner.next_ticket.fetch_add(1, Ordering::Relaxed);
        // NOTE: each registration here is one command and one wake-up of every
        // overflow thread, about 30 µs against 2 µs below the budget.
        // Park the payload first: the exit may be handed over before the reply.
        self.parked().insert(ticket, payload);
        let reply = self.overflows()[position].call(|reply| Command::Register {
            target,
            ticket,
            reply,
        });
        match reply {
            Ok(Ok(registered)) => {
                if let Some(error) = registered.fallback {
                    warn_fallback_once(&error);
                }
                Ok(registered.key)
            }
            Ok(Err(PrepareError::Rejected(error))) => {
                self.parked().remove(&ticket);
                Err(Overflowed::Rejected(error))
            }
            Ok(Err(PrepareError::TableFull)) | Err(_) => match self.parked().remove(&ticket) {
                Some(payload) => Err(Overflowed::NoRoom(payload)),
                // The exit was handed over already, so the process is registered.
                None => Err(Overflowed::Rejected(io::Error::other(
                    "an overflow shard failed after registering the process",
                ))),
            },
        }
    }

    fn check_engine(&self, key: Key) -> io::Result<()> {
        if key.engine() == self.inner.id {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("key {key} belongs to another engine"),
            ))
        }
    }

    fn parked(&self) -> MutexGuard<'_, HashMap<u64, Payload<T>>> {
        self.inner.parked.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn overflows(&self) -> RwLockReadGuard<'_, Vec<Overflow>> {
        self.inner
            .overflow
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Returns the overflow shard of `key`, which is not a base shard key.
    fn overflow_call<R>(&self, key: Key, make: impl FnOnce(Sender<R>) -> Command) -> io::Result<R> {
        let overflows = self.overflows();
        match overflows.get(key.shard() - self.inner.shards.len()) {
            Some(overflow) => overflow.call(make),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("key {key} does not belong to this engine"),
            )),
        }
    }

    fn pick_shard(&self) -> usize {
        let count = self.inner.shards.len();
        if count == 1 {
            return 0;
        }
        self.inner.next_shard.fetch_add(1, Ordering::Relaxed) % count
    }

    /// Stops watching a process. No exit event will be delivered for it.
    ///
    /// # Errors
    ///
    /// Returns `NotFound` if the key is not registered: its exit was already
    /// detected, or it was deregistered before.
    pub fn deregister(&self, key: Key) -> io::Result<Deregistered<T>> {
        self.check_engine(key)?;
        let (pid, payload) = if key.shard() < self.inner.shards.len() {
            self.inner.shards[key.shard()].deregister(key)?
        } else {
            let (pid, ticket) =
                self.overflow_call(key, |reply| Command::Deregister { key, reply })??;
            let payload = self.parked().remove(&ticket).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("key {key} is not registered: its process has exited"),
                )
            })?;
            (pid, payload)
        };
        self.inner.delivery.cancel_one(Some(key));
        // A caller-driven wait on another thread sleeps in shard 0's poller.
        let _ = self.inner.shards[0].poller().notify();
        tracing::trace!(pid, key = %key, "deregistered");
        Ok(Deregistered {
            pid,
            data: payload.data,
            child: payload.child,
        })
    }

    /// Sends `signal` to a registered process.
    ///
    /// On Linux this goes through the process's pidfd (pidfd_send_signal(2)),
    /// so a recycled PID can never receive it. A process in the fallback lane
    /// is signalled with kill(2).
    ///
    /// # Errors
    ///
    /// - `NotFound`: the key is not registered.
    /// - `InvalidInput`: the signal number is invalid.
    /// - The OS error otherwise: `ESRCH` if the process exited and its exit is
    ///   not detected yet, `EPERM` without permission.
    pub fn signal(&self, key: Key, signal: i32) -> io::Result<()> {
        self.check_engine(key)?;
        if key.shard() < self.inner.shards.len() {
            return self.inner.shards[key.shard()].signal(key, signal);
        }
        self.overflow_call(key, |reply| Command::Signal { key, signal, reply })?
    }

    /// Ends every registered process: sends SIGTERM, waits up to `grace` for
    /// them to exit, sends SIGKILL to those left, and waits up to
    /// [`KILL_WAIT`] more. Returns every exit taken during the call and the
    /// processes that outlived SIGKILL (a process in uninterruptible sleep, or
    /// one this process may not signal).
    ///
    /// Signals go through each process's pidfd, so a recycled PID is never
    /// hit. On Windows both steps terminate the process. Exits are taken from
    /// the same queue as [`wait`](Self::wait), so do not call both at once.
    ///
    /// # Errors
    ///
    /// The OS error if waiting on the poller fails (epoll_wait(2)). Failures to
    /// signal one process (it exited meanwhile, or `EPERM`) are not errors:
    /// such a process shows up in `gone` or `alive`.
    pub fn terminate_all(&self, grace: Duration) -> io::Result<WaitOutcome<T>> {
        let (terminate, kill) = sys::SIGNALS_TERMINATE_KILL;
        let mut gone = Vec::new();
        for (step, (signal, limit)) in [(terminate, grace), (kill, KILL_WAIT)]
            .into_iter()
            .enumerate()
        {
            let alive = self.alive();
            if alive.is_empty() {
                break;
            }
            for process in &alive {
                // ESRCH: it exited after `alive` was read; the wait reports it.
                let _ = self.signal(process.key, signal);
            }
            tracing::debug!(step, signal, processes = alive.len(), "terminating");
            gone.extend(self.wait(WaitFor::All, Some(limit))?.gone);
        }
        Ok(WaitOutcome {
            gone,
            alive: self.alive(),
        })
    }

    /// Runs one turn on the caller's thread: waits up to `timeout` (`None`:
    /// without limit) for exits, runs their callbacks and queues their events.
    /// Returns how many exits were delivered, which may be 0.
    ///
    /// # Errors
    ///
    /// `Unsupported` if the engine is driven by its own threads; the OS error if
    /// waiting on the poller fails (epoll_wait(2)).
    pub fn poll(&self, timeout: Option<Duration>) -> io::Result<usize> {
        if self.inner.threads {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this engine is driven by its own threads; use wait() or the events() channel",
            ));
        }
        // A callback of this engine, inside a turn on this thread, runs a
        // nested turn. It must not wait for the lock its own thread has.
        if is_driving(self.inner.id) {
            return self.inner.turn(0, timeout);
        }
        let guard = self.inner.driver.lock().unwrap_or_else(|e| e.into_inner());
        let result = driving(self.inner.id, || self.inner.turn(0, timeout));
        drop(guard);
        self.inner
            .delivery
            .nudge(self.inner.followers.load(Ordering::SeqCst));
        result
    }

    /// Runs one turn if no other thread is driving the engine, and returns
    /// `false` without waiting if one is.
    fn try_poll(&self, timeout: Option<Duration>) -> io::Result<bool> {
        if is_driving(self.inner.id) {
            self.inner.turn(0, timeout)?;
            return Ok(true);
        }
        let Ok(guard) = self.inner.driver.try_lock() else {
            return Ok(false);
        };
        let result = driving(self.inner.id, || self.inner.turn(0, timeout));
        drop(guard);
        self.inner
            .delivery
            .nudge(self.inner.followers.load(Ordering::SeqCst));
        result.map(|_| true)
    }

    /// Blocks until an event, a nudge or the timeout, and takes the event.
    fn wait_on_channel(&self, remaining: Option<Duration>, gone: &mut Vec<ExitEvent<T>>) {
        let nudged = self.inner.delivery.nudged();
        match remaining {
            Some(remaining) => crossbeam_channel::select! {
                recv(self.receiver) -> event => gone.extend(event.ok()),
                recv(nudged) -> _ => {}
                default(remaining) => {}
            },
            None => crossbeam_channel::select! {
                recv(self.receiver) -> event => gone.extend(event.ok()),
                recv(nudged) -> _ => {}
            },
        }
    }

    /// Returns when [`poll`](Self::poll) must run next even if the engine's
    /// descriptor stays quiet: a process in the fallback lane or one whose
    /// exit is not reapable yet is looked at on a timer, which the descriptor
    /// does not report. `None` when no timer is pending. A caller that nests
    /// the engine in its own event loop uses this as its timeout.
    pub fn next_due(&self) -> Option<Instant> {
        self.inner.shards.iter().filter_map(Shard::next_due).min()
    }

    /// Reaps every child of this process that has exited and is not
    /// registered with this engine, and returns each one's PID and status.
    ///
    /// A process that is PID 1 of a container, or a child subreaper
    /// (`PR_SET_CHILD_SUBREAPER`), adopts orphaned descendants and must reap
    /// them. The engine never does that by itself, and never reports them as
    /// registered processes: this call is the explicit opt-in. Call it when
    /// `SIGCHLD` arrives, or on a timer.
    ///
    /// It takes the status of any unregistered child, including one that
    /// other code in this process (or another engine) waits for, so use it
    /// only in a process that owns all its children. A child registered while
    /// this call runs can be reaped by it; its event then reports `Unknown`.
    ///
    /// # Errors
    ///
    /// `Unsupported` on platforms other than Linux; the OS error if
    /// `/proc/self/task/*/children` cannot be read.
    pub fn reap_orphans(&self) -> io::Result<Vec<(u32, ExitStatus)>> {
        let registered = self.inner.delivery.registered_pids();
        let mut reaped = Vec::new();
        for pid in sys::children()? {
            if registered.contains(&pid) {
                continue;
            }
            // Reaps by PID with WNOHANG: a running child is left alone.
            if let Ok(sys::Reap::Exited(status, _)) = sys::reap(None, pid, false) {
                tracing::trace!(pid, %status, "reaped an orphan");
                reaped.push((pid, status));
            }
        }
        Ok(reaped)
    }

    /// Returns a receiver of exit events. Every clone, and [`wait`](Self::wait),
    /// take events from the same queue: each event is received once.
    pub fn events(&self) -> Receiver<ExitEvent<T>> {
        self.receiver.clone()
    }

    /// Waits until `until` is met or `timeout` passes, and returns the exits
    /// taken and the processes still registered.
    ///
    /// It never returns before the deadline unless `until` is met (or nothing
    /// is registered any more). A zero timeout checks without blocking.
    ///
    /// # Errors
    ///
    /// The OS error if waiting on the poller fails (epoll_wait(2)).
    pub fn wait(&self, until: WaitFor, timeout: Option<Duration>) -> io::Result<WaitOutcome<T>> {
        if self.inner.threads && is_driving(self.inner.id) {
            return Err(io::Error::new(
                io::ErrorKind::Deadlock,
                "wait() from an exit callback of this engine would block the thread that \
                 delivers its exits; hand the work to another thread",
            ));
        }
        // A deadline too far to represent is no deadline.
        let deadline = timeout.and_then(|timeout| Instant::now().checked_add(timeout));
        let wanted = match until {
            WaitFor::All => usize::MAX,
            WaitFor::Any => 1,
            WaitFor::Count(count) => count,
        };
        let mut gone = Vec::new();
        // A caller-driven engine must look at its poller at least once per
        // call, or a zero timeout would never see an exit.
        let mut polled = self.inner.threads;
        loop {
            gone.extend(self.receiver.try_iter());
            if gone.len() >= wanted {
                break;
            }
            // Read after draining: every event sent before this read is drained
            // by the next pass, so a zero here ends the wait with nothing lost.
            if self.inner.delivery.outstanding() == 0 {
                gone.extend(self.receiver.try_iter());
                break;
            }
            let remaining = match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline && polled {
                        break;
                    }
                    Some(deadline.saturating_duration_since(now))
                }
                None => None,
            };
            if self.inner.threads {
                // A nudge means a deregistration: loop to re-check `outstanding`.
                self.wait_on_channel(remaining, &mut gone);
            } else if !self.try_poll(remaining)? {
                // Another thread drives: take events as it delivers them, and
                // look again when it stops (it nudges its followers).
                self.inner.followers.fetch_add(1, Ordering::SeqCst);
                self.wait_on_channel(remaining, &mut gone);
                self.inner.followers.fetch_sub(1, Ordering::SeqCst);
            }
            polled = true;
        }
        let alive = self.inner.delivery.settle(&self.receiver, &mut gone);
        Ok(WaitOutcome { gone, alive })
    }

    /// Returns the processes registered and not yet reported.
    pub fn alive(&self) -> Vec<Alive> {
        self.inner.delivery.alive()
    }

    /// Returns how many processes are registered and not yet reported. A
    /// process counts until its event is in the channel, so one whose exit
    /// callback is still running is included.
    pub fn len(&self) -> usize {
        self.inner.delivery.len()
    }

    /// Returns where the registered processes are watched.
    pub fn stats(&self) -> Stats {
        let mut stats = Stats {
            overflow: self.parked().len(),
            overflow_shards: self.overflows().len(),
            fd_budget: self.inner.budget.limit(),
            ..Stats::default()
        };
        for shard in &self.inner.shards {
            let (registered, lane) = shard.counts();
            stats.watched += registered - lane;
            stats.lane += lane;
        }
        stats
    }

    /// Returns `true` if no process is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns the first panic caught in an exit callback since the last call,
    /// so the caller can resume it ([`std::panic::resume_unwind`]) or report it.
    /// Each panic is returned once.
    pub fn take_callback_panic(&self) -> Option<Box<dyn Any + Send>> {
        self.inner.delivery.take_panic()
    }
}

#[cfg(unix)]
impl<T> std::os::fd::AsFd for Engine<T> {
    /// Returns the descriptor of the first shard's poller. It becomes readable
    /// when [`Engine::poll`] has exits to deliver, so a caller-driven engine
    /// can sit inside another event loop. Timers (the fallback lane, and
    /// exits not reapable yet) do not make it readable: also call `poll` by
    /// [`Engine::next_due`].
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.inner.shards[0].poller().as_fd()
    }
}

impl<T> Drop for Engine<T> {
    fn drop(&mut self) {
        stop(&self.inner, &mut self.threads);
    }
}

/// The reason a registration did not land on an overflow shard.
enum Overflowed<T> {
    /// No overflow shard could take it; the payload comes back for the lane.
    NoRoom(Payload<T>),
    /// The process was rejected (bad PID, not found).
    Rejected(io::Error),
}

fn rejected(result: Result<Prepared, PrepareError>) -> io::Result<Prepared> {
    match result {
        Ok(prepared) => Ok(prepared),
        Err(PrepareError::Rejected(error)) => Err(error),
        // Only an attempted pidfd_open can hit a full table.
        Err(PrepareError::TableFull) => Err(io::Error::from_raw_os_error(sys::EMFILE)),
    }
}
