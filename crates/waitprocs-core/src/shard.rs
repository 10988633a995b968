//! One shard: a poller, the table of its registered processes, and the turn
//! that turns readiness into exit events.

use std::io;
use std::process::Child;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use slab::Slab;

use crate::delivery::{Delivery, OnExit};
use crate::dispatch::{self, Decision, Origin, Trigger};
use crate::event::{Alive, ExitEvent, Key};
use crate::fallback::{self, RetryQueue};
use crate::status::ExitStatus;
use crate::sys::{self, Liveness, OpenError, Ready, Reap, Watch};

/// A process on its way into a shard.
pub(crate) struct NewEntry<T> {
    pub(crate) pid: u32,
    pub(crate) child: Option<Child>,
    pub(crate) keep: bool,
    pub(crate) data: T,
    pub(crate) on_exit: Option<OnExit<T>>,
}

/// A process removed by `deregister` before it exited.
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

struct Entry<T> {
    pid: u32,
    generation: u32,
    /// `None` puts the process in the fallback lane.
    watch: Option<Watch>,
    origin: Origin,
    /// Kept so that the child's pipes stay open until it exits.
    child: Option<Child>,
    data: T,
    on_exit: Option<OnExit<T>>,
    registered_at: Instant,
    backoff: Duration,
}

struct Table<T> {
    entries: Slab<Entry<T>>,
    generation: u32,
    retries: RetryQueue,
}

pub(crate) struct Shard<T> {
    index: usize,
    poller: sys::Poller,
    table: Mutex<Table<T>>,
    /// Scratch space of `turn`, which one thread at a time runs.
    scratch: Mutex<Scratch>,
}

#[derive(Default)]
struct Scratch {
    ready: Vec<Ready>,
    due: Vec<(usize, u32)>,
}

impl<T> std::fmt::Debug for Shard<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("index", &self.index)
            .field("poller", &self.poller)
            .finish_non_exhaustive()
    }
}

/// The poller key of an entry. On 64-bit targets it carries the generation,
/// so an event fetched just before its entry was deregistered cannot be
/// mistaken for the exit of a newer entry in the same slot.
fn poll_key(key: Key) -> usize {
    key.as_u64() as usize
}

fn lock<U>(mutex: &Mutex<U>) -> MutexGuard<'_, U> {
    // A panic while the lock was held cannot leave the table half-updated in a
    // way that matters more than losing the engine, so poisoning is ignored.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T> Shard<T> {
    pub(crate) fn new(index: usize) -> io::Result<Self> {
        Ok(Self {
            index,
            poller: sys::Poller::new()?,
            table: Mutex::new(Table {
                entries: Slab::new(),
                generation: 0,
                retries: RetryQueue::default(),
            }),
            scratch: Mutex::new(Scratch::default()),
        })
    }

    pub(crate) fn poller(&self) -> &sys::Poller {
        &self.poller
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.table).entries.len()
    }

    /// Adds a process to this shard and arms its watch.
    pub(crate) fn register(&self, new: NewEntry<T>) -> io::Result<Key> {
        let NewEntry {
            pid,
            child,
            keep,
            data,
            on_exit,
        } = new;
        let known_child = child.is_some();

        let watch = match sys::open_watch(pid) {
            Ok(watch) => Some(watch),
            // Our own child cannot vanish without being reaped, so someone
            // else reaped it (or the kernel did): report it as gone.
            Err(OpenError::NotFound) if known_child => None,
            Err(OpenError::NotFound) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no process with PID {pid}: it never existed or has already exited and been reaped"),
                ));
            }
            Err(OpenError::Thread) => {
                let process = sys::thread_group(pid)
                    .map(|tgid| format!("process {tgid}"))
                    .unwrap_or_else(|| "another process".to_owned());
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("PID {pid} is a thread of {process}, not a process; register the process instead"),
                ));
            }
            Err(OpenError::Exiting) => None,
            Err(OpenError::Unavailable(error)) => {
                crate::delivery::warn_fallback_once(&error);
                None
            }
        };

        let origin = if known_child || sys::is_child(watch.as_ref(), pid) {
            Origin::Child { keep }
        } else {
            Origin::Other
        };

        let mut table = lock(&self.table);
        table.generation = table.generation.wrapping_add(1) & ((1 << 24) - 1);
        let generation = table.generation;
        let entry = table.entries.vacant_entry();
        let key = Key::new(self.index, entry.key(), generation);
        let in_lane = watch.is_none();
        entry.insert(Entry {
            pid,
            generation,
            watch,
            origin,
            child,
            data,
            on_exit,
            registered_at: Instant::now(),
            backoff: Duration::ZERO,
        });

        let mut schedule_now = in_lane;
        if let Some(watch) = table.entries[key.slot()].watch.as_ref() {
            if let Err(error) = self.poller.add(watch, pid, poll_key(key)) {
                // The poller is full (ENOSPC from epoll's max_user_watches) or
                // out of memory: drop the watch and let the lane wait instead.
                crate::delivery::warn_fallback_once(&error);
                table.entries[key.slot()].watch = None;
                schedule_now = true;
            }
        }
        if schedule_now {
            table.retries.push(Instant::now(), key.slot(), generation);
            drop(table);
            // Wake a turn that sleeps without a timeout, so it sees the new deadline.
            self.poller.notify()?;
        }
        tracing::trace!(pid, key = %key, shard = self.index, lane = in_lane, child = matches!(origin, Origin::Child { .. }), "registered");
        Ok(key)
    }

    /// Removes a process before its exit was reported.
    pub(crate) fn deregister(&self, key: Key) -> io::Result<Deregistered<T>> {
        let mut table = lock(&self.table);
        match table.entries.get(key.slot()) {
            Some(entry) if entry.generation == key.generation() => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "key {key} is not registered: its process has exited or was deregistered"
                    ),
                ))
            }
        }
        let entry = table.entries.remove(key.slot());
        drop(table);
        if let Some(watch) = &entry.watch {
            // NotFound means the one-shot watch had fired already: nothing to undo.
            let _ = self.poller.delete(watch, entry.pid);
        }
        tracing::trace!(pid = entry.pid, key = %key, "deregistered");
        Ok(Deregistered {
            pid: entry.pid,
            data: entry.data,
            child: entry.child,
        })
    }

    /// Sends a signal to a registered process through its watch.
    pub(crate) fn signal(&self, key: Key, signal: i32) -> io::Result<()> {
        let table = lock(&self.table);
        match table.entries.get(key.slot()) {
            Some(entry) if entry.generation == key.generation() => {
                sys::send_signal(entry.watch.as_ref(), entry.pid, signal)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("key {key} is not registered: its process has exited or was deregistered"),
            )),
        }
    }

    pub(crate) fn alive(&self, out: &mut Vec<Alive>) {
        let table = lock(&self.table);
        out.extend(table.entries.iter().map(|(slot, entry)| Alive {
            key: Key::new(self.index, slot, entry.generation),
            pid: entry.pid,
        }));
    }

    /// Waits up to `timeout` for exits and delivers each one. Returns how many
    /// exits were delivered.
    pub(crate) fn turn(
        &self,
        timeout: Option<Duration>,
        delivery: &Delivery<T>,
    ) -> io::Result<usize> {
        let mut scratch = lock(&self.scratch);
        let Scratch { ready, due } = &mut *scratch;
        ready.clear();
        due.clear();

        let next_retry = lock(&self.table).retries.next_due();
        let timeout = match next_retry {
            Some(at) => {
                let until_retry = at.saturating_duration_since(Instant::now());
                Some(timeout.map_or(until_retry, |t| t.min(until_retry)))
            }
            None => timeout,
        };
        self.poller.wait(ready, timeout)?;

        let now = Instant::now();
        let mut exits = Vec::new();
        {
            let mut table = lock(&self.table);
            for ready in ready.iter() {
                let key = Key(ready.key as u64);
                let slot = key.slot();
                let current = table.entries.get(slot).map(|entry| entry.generation);
                if current.is_none() || (usize::BITS >= 64 && current != Some(key.generation())) {
                    continue;
                }
                if let Some(exit) = self.examine(&mut table, slot, Trigger::Exited, now) {
                    exits.push(exit);
                }
            }
            table.retries.pop_due(now, due);
            for &(slot, generation) in due.iter() {
                let trigger = match table.entries.get(slot) {
                    Some(entry) if entry.generation == generation => {
                        if entry.watch.is_some() {
                            Trigger::Exited
                        } else {
                            Trigger::Timer
                        }
                    }
                    _ => continue,
                };
                if let Some(exit) = self.examine(&mut table, slot, trigger, now) {
                    exits.push(exit);
                }
            }
        }

        let delivered = exits.len();
        for (event, on_exit) in exits {
            delivery.deliver(event, on_exit);
        }
        Ok(delivered)
    }

    /// Runs the dispatch decision for one entry, with the table locked.
    fn examine(
        &self,
        table: &mut Table<T>,
        slot: usize,
        trigger: Trigger,
        now: Instant,
    ) -> Option<(ExitEvent<T>, Option<OnExit<T>>)> {
        let entry = &mut table.entries[slot];
        let mut probe = SysProbe {
            watch: entry.watch.as_ref(),
            pid: entry.pid,
        };
        match dispatch::decide(entry.origin, trigger, &mut probe) {
            Decision::Retry => {
                entry.backoff = fallback::next_backoff(entry.backoff);
                let (due, generation) = (now + entry.backoff, entry.generation);
                table.retries.push(due, slot, generation);
                None
            }
            Decision::Report(status, usage) => {
                let entry = table.entries.remove(slot);
                if let Some(watch) = &entry.watch {
                    // The one-shot interest has fired, so NotFound is not expected
                    // and nothing else can be undone here.
                    let _ = self.poller.delete(watch, entry.pid);
                }
                let key = Key::new(self.index, slot, entry.generation);
                tracing::trace!(pid = entry.pid, key = %key, %status, "exited");
                let event = ExitEvent {
                    key,
                    pid: entry.pid,
                    status,
                    usage,
                    registered_at: entry.registered_at,
                    detected_at: now,
                    was_child: matches!(entry.origin, Origin::Child { .. }),
                    data: entry.data,
                };
                drop(entry.child);
                Some((event, entry.on_exit))
            }
        }
    }
}

/// The real system behind the dispatch decision.
struct SysProbe<'a> {
    watch: Option<&'a Watch>,
    pid: u32,
}

impl dispatch::Probe for SysProbe<'_> {
    fn reap(&mut self, keep: bool) -> io::Result<Reap> {
        sys::reap(self.watch, self.pid, keep)
    }

    fn exit_info(&mut self) -> Option<ExitStatus> {
        self.watch.and_then(sys::exit_info)
    }

    fn liveness(&mut self) -> Liveness {
        sys::probe(self.pid)
    }
}
