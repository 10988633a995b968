//! One shard: a poller, the table of its registered processes, and the turn
//! that turns readiness into exits.
//!
//! A shard has no callbacks or channels of its own: `turn` returns the exits
//! it found with their payloads, and the engine delivers them. That keeps the
//! shard usable on a thread whose descriptor table is private (an overflow
//! shard), where no caller code may run.

use std::io;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use slab::Slab;

use crate::budget::Budget;
use crate::dispatch::{self, Decision, Origin, Trigger};
use crate::event::Key;
use crate::fallback::{self, Lane, LaneEntry, RetryQueue};
use crate::status::{ExitStatus, ResourceUsage};
use crate::sys::{self, Bridge, Liveness, OpenError, Ready, Reap, Watch};

/// Poller key of a shard's bridge. `polling` reserves `usize::MAX`, and an
/// entry key would need slot 2^32 - 2 to take this value.
pub(crate) const BRIDGE_KEY: usize = usize::MAX - 1;

/// How often the lane sweeps its children even when no child is a zombie,
/// to notice children the kernel reaped by itself.
const LANE_FULL_SWEEP: Duration = Duration::from_secs(1);

/// How many zombies a lane tick reaps by the PID that a peek names before it
/// sweeps every lane child instead. Each peek walks the kernel's list of
/// children from its head, so with many zombies at once, one waitid(2) per
/// lane child is cheaper.
const MAX_PEEKED_PER_TICK: usize = 4;

/// The largest lane, in children, that is reaped by peeked PIDs. Above it a
/// tick with a zombie sweeps every lane child, as before peeking existed,
/// because each peek's walk of the list of children grows with it. In
/// bench-limits, with 3,000 children exiting one per millisecond, peeking cut
/// the forced lane's CPU from 1,134 to about 300 ms at the same latency.
// NOTE: this limit is a guess. With 20,000 children exiting 10 per
// millisecond, the median latency of one and the same build varied from
// 0.14 to 0.80 s between runs, which hides any effect of peeking there.
const MAX_PEEKED_LANE: usize = 4096;

/// An exit found by a turn, before the engine attaches the caller's data.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawExit {
    pub(crate) key: Key,
    pub(crate) pid: u32,
    pub(crate) status: ExitStatus,
    pub(crate) usage: Option<ResourceUsage>,
    pub(crate) registered_at: Instant,
    pub(crate) detected_at: Instant,
    pub(crate) was_child: bool,
}

/// A process ready to enter a shard: its watch (if any) and what it is.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) watch: Option<Watch>,
    pub(crate) origin: Origin,
    /// Without a watch: whether a later pidfd_open may succeed.
    pub(crate) transient: bool,
    /// The error that sent the process to the lane, for the caller to log.
    pub(crate) fallback: Option<io::Error>,
}

/// The reason `prepare` returned no process to insert.
#[derive(Debug)]
pub(crate) enum PrepareError {
    /// The descriptor table of this thread is full (`EMFILE`).
    TableFull,
    /// The input is wrong or the process does not exist.
    Rejected(io::Error),
}

/// Remembers, for the whole process, that pidfds cannot be had at all.
static PIDFD_UNAVAILABLE: AtomicU8 = AtomicU8::new(0);

/// Forgets a permanent pidfd_open failure, for fault-injection tests.
#[cfg(all(
    feature = "fault-injection",
    any(target_os = "linux", target_os = "android")
))]
pub(crate) fn reset_pidfd_unavailable() {
    PIDFD_UNAVAILABLE.store(0, Ordering::Relaxed);
}

/// Returns `true` once pidfd_open has failed in a way no retry can fix.
pub(crate) fn pidfd_unavailable() -> bool {
    PIDFD_UNAVAILABLE.load(Ordering::Relaxed) != 0
}

/// Rejects `pid` unless its start time is `expected`.
fn check_identity(pid: u32, expected: u64) -> Result<(), PrepareError> {
    let reject = |detail: String| {
        PrepareError::Rejected(io::Error::new(
            io::ErrorKind::NotFound,
            format!("PID {pid} is not the process meant: {detail}"),
        ))
    };
    match sys::start_time(pid) {
        Ok(actual) if actual == expected => Ok(()),
        Ok(actual) => Err(reject(format!(
            "it started at {actual}, not {expected}, so the PID was reused"
        ))),
        Err(error) if error.kind() == io::ErrorKind::Unsupported => {
            Err(PrepareError::Rejected(error))
        }
        Err(error) => Err(reject(format!("its start time cannot be read ({error})"))),
    }
}

/// Checks `pid` as pidfd_open would, for a process that gets no watch: it
/// must exist and must not be a thread id.
fn check_without_watch(pid: u32, known_child: bool) -> Result<(), OpenError> {
    if !known_child && sys::probe(pid) == Liveness::Gone {
        return Err(OpenError::NotFound);
    }
    match sys::thread_group(pid) {
        Some(tgid) if tgid != pid => Err(OpenError::Thread),
        _ => Ok(()),
    }
}

/// The process a registration names, and how to treat it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target {
    pub(crate) pid: u32,
    /// Registered with its `Child` handle, so certainly our child.
    pub(crate) known_child: bool,
    /// Read a child's status without reaping it.
    pub(crate) keep: bool,
    /// The start time the caller expects, to tell a reused PID apart.
    pub(crate) start_time: Option<u64>,
}

/// Opens a watch for a process and finds out whether it is our child.
///
/// `watch: false` skips pidfd_open (forced fallback, or no descriptor left).
pub(crate) fn prepare(target: Target, watch: bool) -> Result<Prepared, PrepareError> {
    let Target {
        pid,
        known_child,
        keep,
        start_time,
    } = target;
    let mut transient = true;
    let mut fallback = None;
    let outcome = if !watch || pidfd_unavailable() {
        transient = false;
        check_without_watch(pid, known_child).map(|()| None)
    } else {
        sys::open_watch(pid).map(Some)
    };
    let opened = match outcome {
        Ok(opened) => opened,
        // Our own child cannot vanish without being reaped, so someone else
        // (or the kernel) reaped it: the lane reports it as gone.
        Err(OpenError::NotFound) if known_child => None,
        Err(OpenError::NotFound) => {
            return Err(PrepareError::Rejected(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "no process with PID {pid}: it never existed or has already exited and been reaped"
                ),
            )));
        }
        Err(OpenError::Thread) => {
            let process = sys::thread_group(pid)
                .map(|tgid| format!("process {tgid}"))
                .unwrap_or_else(|| "another process".to_owned());
            return Err(PrepareError::Rejected(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "PID {pid} is a thread of {process}, not a process; register the process instead"
                ),
            )));
        }
        Err(OpenError::Exiting) => None,
        Err(OpenError::TableFull) => return Err(PrepareError::TableFull),
        // A permanent error (no pidfd_open before Linux 5.3, or a seccomp
        // profile that forbids it) is remembered, so later registrations
        // skip the call.
        Err(OpenError::Unavailable { error, permanent }) => {
            if permanent {
                PIDFD_UNAVAILABLE.store(1, Ordering::Relaxed);
            }
            transient = !permanent;
            fallback = Some(error);
            None
        }
    };
    // With the pidfd open, the PID cannot move to another process, so the
    // start time read now belongs to the process the pidfd follows.
    if let Some(expected) = start_time {
        check_identity(pid, expected)?;
    }
    let origin = if known_child || sys::is_child(opened.as_ref(), pid) {
        Origin::Child { keep }
    } else {
        Origin::Other
    };
    Ok(Prepared {
        watch: opened,
        origin,
        transient,
        fallback,
    })
}

struct Entry<P> {
    pid: u32,
    generation: u32,
    /// `None` puts the process in the fallback lane.
    watch: Option<Watch>,
    /// Whether the watch uses a descriptor taken from the shard's budget.
    charged: bool,
    /// In the lane: whether pidfd_open may succeed later (promotion).
    transient: bool,
    origin: Origin,
    registered_at: Instant,
    backoff: Duration,
    /// When the watch of a non-child first fired, for the status grace.
    exit_seen: Option<Instant>,
    payload: P,
}

impl<P> Entry<P> {
    /// Returns what the lane keeps about this entry.
    fn lane_entry(&self) -> LaneEntry {
        LaneEntry {
            child: matches!(self.origin, Origin::Child { .. }).then_some(self.pid),
            promotable: self.transient,
        }
    }
}

struct Table<P> {
    entries: Slab<Entry<P>>,
    generation: u32,
    /// Entries whose watch fired before they were reapable.
    retries: RetryQueue,
    /// The entries without a watch.
    lane: Lane,
    lane_due: Option<Instant>,
    lane_interval: Duration,
    lane_full_sweep: Instant,
}

/// The settings a shard is built from.
pub(crate) struct ShardConfig {
    /// The id of the engine, carried in every key.
    pub(crate) engine: u32,
    pub(crate) index: usize,
    /// The pool its watches take descriptors from.
    pub(crate) budget: Arc<Budget>,
    /// A bridge that wakes its turn, if any.
    pub(crate) bridge: Option<Arc<Bridge>>,
    /// Whether other shards watch the bridge too.
    pub(crate) shared: bool,
    /// How long a non-child's exit may wait for its parent to reap it.
    pub(crate) status_grace: Duration,
}

pub(crate) struct Shard<P> {
    engine: u32,
    index: usize,
    poller: sys::Poller,
    table: Mutex<Table<P>>,
    budget: Arc<Budget>,
    /// How long a non-child's exit may wait for its parent to reap it.
    status_grace: Duration,
    bridge: Option<Arc<Bridge>>,
    /// Whether `bridge` is shared by several shards (edge-triggered, never drained).
    bridge_shared: bool,
    /// Scratch space of `turn`, which one thread at a time runs.
    scratch: Mutex<Scratch>,
}

#[derive(Default)]
struct Scratch {
    ready: Vec<Ready>,
    due: Vec<(usize, u32)>,
    lane: Vec<usize>,
}

impl<P> std::fmt::Debug for Shard<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("index", &self.index)
            .field("poller", &self.poller)
            .finish_non_exhaustive()
    }
}

/// Returns the poller key of an entry. On 64-bit targets it carries the generation,
/// so an event fetched just before its entry was deregistered cannot be
/// mistaken for the exit of a newer entry in the same slot.
// NOTE: on 32-bit targets the key keeps only the slot, so a stale event can
// still reach a newer entry; for a non-child that reads as an exit.
fn poll_key(key: Key) -> usize {
    key.as_u64() as usize
}

fn lock<U>(mutex: &Mutex<U>) -> MutexGuard<'_, U> {
    // Only this module locks these mutexes, and no code that can panic runs
    // while they are held, so a poisoned lock still guards consistent data.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl<P> Shard<P> {
    /// Creates a shard whose watches draw from `budget`. `bridge`, if given, is
    /// watched too and wakes `turn`, and `shared` means other shards watch it as well.
    pub(crate) fn new(config: ShardConfig) -> io::Result<Self> {
        let ShardConfig {
            engine,
            index,
            budget,
            bridge,
            shared,
            status_grace,
        } = config;
        let poller = sys::Poller::new()?;
        if let Some(bridge) = &bridge {
            poller.add_bridge(bridge, BRIDGE_KEY, shared)?;
        }
        Ok(Self {
            engine,
            index,
            poller,
            table: Mutex::new(Table {
                entries: Slab::new(),
                generation: 0,
                retries: RetryQueue::default(),
                lane: Lane::default(),
                lane_due: None,
                lane_interval: fallback::FIRST_BACKOFF,
                lane_full_sweep: Instant::now(),
            }),
            budget,
            status_grace,
            bridge,
            bridge_shared: shared,
            scratch: Mutex::new(Scratch::default()),
        })
    }

    pub(crate) fn poller(&self) -> &sys::Poller {
        &self.poller
    }

    pub(crate) fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    /// Returns how many processes are registered and how many of them wait in
    /// the fallback lane.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let table = lock(&self.table);
        (table.entries.len(), table.lane.len())
    }

    /// Returns when the next timer of this shard is due: a retry of a process
    /// that is not reapable yet, or a look at the fallback lane.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        let table = lock(&self.table);
        match (table.retries.next_due(), table.lane_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Adds a prepared process and arms its watch. `charged` is set when the
    /// caller took a descriptor from this shard's budget for it. Returns the
    /// key, and the error that sent the process to the lane, if any, for the
    /// caller to log.
    pub(crate) fn insert(
        &self,
        pid: u32,
        prepared: Prepared,
        charged: bool,
        payload: P,
    ) -> (Key, Option<io::Error>) {
        let Prepared {
            watch,
            origin,
            transient,
            mut fallback,
        } = prepared;
        if charged && watch.is_none() {
            self.budget.release();
        }
        let mut table = lock(&self.table);
        table.generation = table.generation.wrapping_add(1) & ((1 << 24) - 1);
        let generation = table.generation;
        let slot = table.entries.vacant_key();
        let key = Key::new(self.engine, self.index, slot, generation);
        let mut entry = Entry {
            pid,
            generation,
            charged: charged && watch.is_some(),
            watch,
            transient,
            origin,
            registered_at: Instant::now(),
            backoff: Duration::ZERO,
            exit_seen: None,
            payload,
        };
        if let Some(watch) = &entry.watch {
            if let Err(error) = self.poller.add(watch, pid, poll_key(key)) {
                // The poller cannot take more (ENOSPC from epoll's
                // max_user_watches, or ENOMEM): the lane waits instead.
                fallback = Some(error);
                entry.watch = None;
                if entry.charged {
                    self.budget.release();
                    entry.charged = false;
                }
            }
        }
        let in_lane = entry.watch.is_none();
        let lane_entry = entry.lane_entry();
        table.entries.insert(entry);
        if in_lane {
            table.lane.insert(slot, lane_entry);
            table.lane_interval = fallback::FIRST_BACKOFF;
            table.lane_due = Some(Instant::now());
            drop(table);
            // A turn sleeping without a timeout must see the lane's deadline.
            // A failed notify only delays the first look by one turn.
            let _ = self.poller.notify();
        }
        (key, fallback)
    }

    /// Removes a process before its exit was reported.
    pub(crate) fn deregister(&self, key: Key) -> io::Result<(u32, P)> {
        let mut table = lock(&self.table);
        match table.entries.get(key.slot()) {
            Some(entry) if entry.generation == key.generation() && key.engine() == self.engine => {}
            _ => return Err(not_registered(key)),
        }
        let entry = table.entries.remove(key.slot());
        table.lane.remove(key.slot(), entry.lane_entry());
        drop(table);
        self.release(&entry, false);
        Ok((entry.pid, entry.payload))
    }

    /// Sends a signal to a registered process through its watch.
    pub(crate) fn signal(&self, key: Key, signal: i32) -> io::Result<()> {
        let table = lock(&self.table);
        match table.entries.get(key.slot()) {
            Some(entry) if entry.generation == key.generation() && key.engine() == self.engine => {
                sys::send_signal(entry.watch.as_ref(), entry.pid, signal)
            }
            _ => Err(not_registered(key)),
        }
    }

    /// Undoes an entry's watch and budget charge. `fired` is set when its
    /// one-shot interest has already fired.
    fn release(&self, entry: &Entry<P>, fired: bool) {
        if let Some(watch) = &entry.watch {
            // A fired one-shot interest is disabled, and where dropping the
            // watch removes it (closing a pidfd), nothing is left to delete.
            if !(fired && sys::DROP_REMOVES_WATCH) {
                // NotFound means the one-shot interest had fired: nothing to undo.
                let _ = self.poller.delete(watch, entry.pid);
            }
        }
        if entry.charged {
            self.budget.release();
        }
    }

    /// Waits up to `timeout` for exits and appends each one, with its payload,
    /// to `out`. Returns `true` if the shard's bridge was signalled.
    pub(crate) fn turn(
        &self,
        timeout: Option<Duration>,
        out: &mut Vec<(RawExit, P)>,
    ) -> io::Result<bool> {
        let mut scratch = lock(&self.scratch);
        let Scratch { ready, due, lane } = &mut *scratch;
        ready.clear();
        due.clear();
        lane.clear();

        let next = self.next_due();
        let timeout = match next {
            Some(at) => {
                let until = at.saturating_duration_since(Instant::now());
                Some(timeout.map_or(until, |t| t.min(until)))
            }
            None => timeout,
        };
        self.poller.wait(ready, timeout)?;

        let now = Instant::now();
        let mut bridged = false;
        let mut table = lock(&self.table);
        for ready in ready.iter() {
            if ready.key == BRIDGE_KEY {
                bridged = true;
                continue;
            }
            let key = Key::from_raw(self.engine, ready.key as u64);
            let slot = key.slot();
            let current = table.entries.get(slot).map(|entry| entry.generation);
            if current.is_none() || (usize::BITS >= 64 && current != Some(key.generation())) {
                continue;
            }
            self.examine(&mut table, slot, Trigger::Exited, now, out);
        }

        table.retries.pop_due(now, due);
        for &(slot, generation) in due.iter() {
            match table.entries.get(slot) {
                Some(entry) if entry.generation == generation && entry.watch.is_some() => {}
                _ => continue,
            }
            self.examine(&mut table, slot, Trigger::Exited, now, out);
        }

        if table.lane_due.is_some_and(|at| at <= now) {
            self.sweep_lane(&mut table, lane, now, out);
        }
        drop(table);

        if bridged && !self.bridge_shared {
            if let Some(bridge) = &self.bridge {
                bridge.drain();
                self.poller.rearm_bridge(bridge, BRIDGE_KEY)?;
            }
        }
        Ok(bridged)
    }

    /// Looks at every process in the fallback lane once.
    ///
    /// Children are waited on one by one only once per `LANE_FULL_SWEEP`, or
    /// when a zombie hides the others from the peek of [`Self::reap_peeked`].
    /// An idle lane of children costs one system call per tick, and each exit
    /// about two, rather than one per lane child. The lane is scanned only
    /// when some entry needs it: a non-child, whose state is read on every
    /// tick, or a promotion that the budget has room for.
    fn sweep_lane(
        &self,
        table: &mut Table<P>,
        slots: &mut Vec<usize>,
        now: Instant,
        out: &mut Vec<(RawExit, P)>,
    ) {
        let full = now.duration_since(table.lane_full_sweep) >= LANE_FULL_SWEEP;
        let before = out.len();
        // `slots` is empty here, so it lends its buffer to the peeks.
        let any_child_exited = full || self.reap_peeked(table, slots, now, out);
        if full {
            table.lane_full_sweep = now;
        }
        let scan = any_child_exited
            || table.lane.has_others()
            || (table.lane.has_promotable() && !pidfd_unavailable() && self.budget.has_room());
        if scan {
            // A copy, because examining an entry changes the lane.
            slots.extend(table.lane.slots());
        }
        for &slot in slots.iter() {
            if self.promote(table, slot) {
                continue;
            }
            let Some(entry) = table.entries.get(slot) else {
                continue;
            };
            if matches!(entry.origin, Origin::Child { .. }) && !any_child_exited {
                continue;
            }
            self.examine(table, slot, Trigger::Timer, now, out);
        }
        // Adaptive back-off: look again soon after an exit, less often while
        // nothing happens.
        table.lane_interval = if out.len() > before {
            fallback::FIRST_BACKOFF
        } else {
            fallback::next_backoff(table.lane_interval)
        };
        table.lane_due = (!table.lane.is_empty()).then(|| now + table.lane_interval);
    }

    /// Examines the lane children that the peek of waitid(2) with
    /// `P_ALL | WNOWAIT` names, one after another, until it names none.
    ///
    /// Returns `true` when every lane child must be examined after all. One
    /// case is a zombie that is not a lane child of this shard: a child of
    /// another shard or engine, or one the caller never registered. Another
    /// is a zombie still there after it was examined, such as a child
    /// registered to be left unreaped. Such a zombie comes first in the
    /// kernel's list of children, so it hides the ones behind it. The others
    /// are a lane above `MAX_PEEKED_LANE` and a tick with more than
    /// `MAX_PEEKED_PER_TICK` zombies. `named` is a scratch buffer, left empty.
    fn reap_peeked(
        &self,
        table: &mut Table<P>,
        named: &mut Vec<usize>,
        now: Instant,
        out: &mut Vec<(RawExit, P)>,
    ) -> bool {
        let Some(mut pid) = sys::peek_exited_child() else {
            return false;
        };
        if table.lane.child_count() > MAX_PEEKED_LANE {
            return true;
        }
        let mut examined = [0u32; MAX_PEEKED_PER_TICK];
        let mut count = 0;
        loop {
            // A copy, because examining an entry changes the lane.
            named.clear();
            named.extend_from_slice(table.lane.children_with_pid(pid));
            if named.is_empty() || examined[..count].contains(&pid) || count == MAX_PEEKED_PER_TICK
            {
                named.clear();
                return true;
            }
            examined[count] = pid;
            count += 1;
            for &slot in named.iter() {
                self.examine(table, slot, Trigger::Timer, now, out);
            }
            match sys::peek_exited_child() {
                Some(next) => pid = next,
                None => {
                    named.clear();
                    return false;
                }
            }
        }
    }

    /// Moves a lane entry to a pidfd when a descriptor has become available.
    /// Returns `true` if it did; the poller then reports the exit, even one
    /// that happened before.
    fn promote(&self, table: &mut Table<P>, slot: usize) -> bool {
        let Some(entry) = table.entries.get_mut(slot) else {
            return false;
        };
        if !entry.transient
            || PIDFD_UNAVAILABLE.load(Ordering::Relaxed) != 0
            || !self.budget.try_acquire()
        {
            return false;
        }
        let Ok(watch) = sys::open_watch(entry.pid) else {
            self.budget.release();
            return false;
        };
        let key = Key::new(self.engine, self.index, slot, entry.generation);
        if self.poller.add(&watch, entry.pid, poll_key(key)).is_err() {
            self.budget.release();
            return false;
        }
        entry.watch = Some(watch);
        entry.charged = true;
        let lane_entry = entry.lane_entry();
        table.lane.remove(slot, lane_entry);
        true
    }

    /// Runs the dispatch decision for one entry, with the table locked.
    fn examine(
        &self,
        table: &mut Table<P>,
        slot: usize,
        trigger: Trigger,
        now: Instant,
        out: &mut Vec<(RawExit, P)>,
    ) {
        let entry = &mut table.entries[slot];
        let status_pending = entry.origin == Origin::Other
            && trigger == Trigger::Exited
            && !self.status_grace.is_zero()
            && now < *entry.exit_seen.get_or_insert(now) + self.status_grace;
        let mut probe = SysProbe {
            watch: entry.watch.as_ref(),
            pid: entry.pid,
        };
        match dispatch::decide(entry.origin, trigger, status_pending, &mut probe) {
            Decision::Retry => {
                // Lane entries are looked at by the lane sweep; watched ones
                // that fired early get a timer of their own.
                if entry.watch.is_some() {
                    entry.backoff = fallback::next_backoff(entry.backoff);
                    let (due, generation) = (now + entry.backoff, entry.generation);
                    table.retries.push(due, slot, generation);
                }
            }
            Decision::Report(status, usage) => {
                let entry = table.entries.remove(slot);
                table.lane.remove(slot, entry.lane_entry());
                self.release(&entry, true);
                let exit = RawExit {
                    key: Key::new(self.engine, self.index, slot, entry.generation),
                    pid: entry.pid,
                    status,
                    usage,
                    registered_at: entry.registered_at,
                    detected_at: now,
                    was_child: matches!(entry.origin, Origin::Child { .. }),
                };
                out.push((exit, entry.payload));
            }
        }
    }
}

fn not_registered(key: Key) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("key {key} is not registered: its process has exited or was deregistered"),
    )
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
