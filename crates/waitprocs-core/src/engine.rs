//! The public engine: registration, driving and waiting.

use std::any::Any;
use std::fmt;
use std::io;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::delivery::{Delivery, OnEveryExit, OnExit};
use crate::event::{Alive, ExitEvent, Key};
use crate::shard::{Deregistered, NewEntry, Shard};
use crate::sys;

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

/// What [`Engine::wait`] returns.
#[derive(Debug)]
pub struct WaitOutcome<T> {
    /// Exits taken from the engine during this wait, in the order they were detected
    /// per shard.
    pub gone: Vec<ExitEvent<T>>,
    /// Processes still registered when the wait returned.
    pub alive: Vec<Alive>,
}

/// A process to register, with its options.
pub struct Registration<T> {
    pid: u32,
    child: Option<Child>,
    keep: bool,
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
            data,
            on_exit: None,
        }
    }

    /// Reads a child's exit status without reaping it, so its owner can still
    /// `waitpid` it (waitid(2) with `WNOWAIT`). The child stays a zombie until then.
    pub fn keep_status(mut self) -> Self {
        self.keep = true;
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
}

impl<T> fmt::Debug for Builder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("shards", &self.shards)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Builder<T> {
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
        let shards = (0..self.shards)
            .map(Shard::new)
            .collect::<io::Result<Vec<_>>>()?;
        let (sender, receiver) = crossbeam_channel::unbounded();
        let inner = Arc::new(Inner {
            shards,
            delivery: Delivery::new(sender, self.on_exit),
            shutdown: AtomicBool::new(false),
            threads: self.threads,
            next_shard: AtomicUsize::new(0),
            own_pid: sys::current_pid(),
        });
        tracing::debug!(
            backend = sys::BACKEND,
            shards = self.shards,
            threads = self.threads,
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
    shards: Vec<Shard<T>>,
    delivery: Delivery<T>,
    shutdown: AtomicBool,
    threads: bool,
    next_shard: AtomicUsize,
    own_pid: u32,
}

impl<T> Inner<T> {
    fn run_shard(&self, index: usize) {
        let shard = &self.shards[index];
        while !self.shutdown.load(Ordering::Acquire) {
            if let Err(error) = shard.turn(None, &self.delivery) {
                // epoll_wait(2) fails only for a bad descriptor or buffer, which
                // would be a bug here; log it and slow down rather than spin.
                tracing::error!(%error, shard = index, "waiting on the poller failed");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn stop<T>(inner: &Inner<T>, threads: &mut Vec<JoinHandle<()>>) {
    inner.shutdown.store(true, Ordering::Release);
    for shard in &inner.shards {
        // A failed notify leaves that thread asleep until its next exit event;
        // join would then block, so only join threads we could wake.
        let _ = shard.poller().notify();
    }
    for handle in threads.drain(..) {
        let _ = handle.join();
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
    /// - Other kinds only if the poller cannot be woken (eventfd write failure).
    ///
    /// Running out of descriptors is not an error: such a process is waited for
    /// by the fallback lane.
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
        let shard = self.pick_shard();
        self.inner.delivery.expect_one();
        let result = self.inner.shards[shard].register(NewEntry {
            pid,
            child: registration.child,
            keep: registration.keep,
            data: registration.data,
            on_exit: registration.on_exit,
        });
        if result.is_err() {
            self.inner.delivery.cancel_one();
        }
        result
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
        let shard = self.shard_of(key)?;
        let removed = shard.deregister(key)?;
        self.inner.delivery.cancel_one();
        Ok(removed)
    }

    /// Sends `signal` to a registered process.
    ///
    /// On Linux this goes through the process's pidfd (pidfd_send_signal(2)),
    /// so a recycled PID can never receive it. A process in the fallback lane
    /// is signalled with kill(2).
    ///
    /// # Errors
    ///
    /// `NotFound` if the key is not registered; `InvalidInput` for an invalid
    /// signal number; the OS error otherwise (`ESRCH` if the process exited
    /// and its exit is not yet detected, `EPERM` without permission).
    pub fn signal(&self, key: Key, signal: i32) -> io::Result<()> {
        self.shard_of(key)?.signal(key, signal)
    }

    fn shard_of(&self, key: Key) -> io::Result<&Shard<T>> {
        self.inner.shards.get(key.shard()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("key {key} does not belong to this engine"),
            )
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
        self.inner.shards[0].turn(timeout, &self.inner.delivery)
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
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        let wanted = match until {
            WaitFor::All => usize::MAX,
            WaitFor::Any => 1,
            WaitFor::Count(count) => count,
        };
        let mut gone = Vec::new();
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
                    if now >= deadline {
                        break;
                    }
                    Some(deadline - now)
                }
                None => None,
            };
            if self.inner.threads {
                let received = match remaining {
                    Some(remaining) => self.receiver.recv_timeout(remaining),
                    None => self
                        .receiver
                        .recv()
                        .map_err(|_| RecvTimeoutError::Disconnected),
                };
                if let Ok(event) = received {
                    gone.push(event);
                }
            } else {
                self.poll(remaining)?;
            }
        }
        Ok(WaitOutcome {
            gone,
            alive: self.alive(),
        })
    }

    /// Returns the processes registered and not yet reported.
    pub fn alive(&self) -> Vec<Alive> {
        let mut alive = Vec::new();
        for shard in &self.inner.shards {
            shard.alive(&mut alive);
        }
        alive
    }

    /// Returns how many processes are registered and not yet reported.
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(Shard::len).sum()
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
    /// can sit inside another event loop. Retries of the fallback lane do not
    /// make it readable: call `poll` at least every 100 ms while
    /// processes are in the lane.
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.inner.shards[0].poller().as_fd()
    }
}

impl<T> Drop for Engine<T> {
    fn drop(&mut self) {
        stop(&self.inner, &mut self.threads);
    }
}
