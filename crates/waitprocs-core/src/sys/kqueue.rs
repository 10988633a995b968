//! kqueue backend (macOS, FreeBSD, NetBSD, OpenBSD, DragonFly BSD): one kqueue
//! per shard, holding one `EVFILT_PROC` / `NOTE_EXIT` kevent per watched PID.
//!
//! The kevents go through rustix's `kqueue` module rather than polling's kqueue
//! extension (`PollerKqueueExt` with `Process`), for two reasons found in
//! polling 3.11's source:
//! - its `Events` keep only the udata and a readable flag, so the exit status
//!   that FreeBSD, NetBSD and OpenBSD put in the kevent's `data` is lost;
//! - `add_filter` records the PID in its table before the kernel accepts the
//!   kevent and keeps it there when the kernel rejects it (`ESRCH` for a process
//!   that has just exited), so adding that PID again fails with `AlreadyExists`.
//!
//! Other facts the code relies on:
//! - The kernel sets `EV_ONESHOT` on a `NOTE_EXIT` event itself, and a kqueue
//!   has one knote per (ident, filter), so a PID registered twice in one shard
//!   shares one kevent and the poller fans its exit out to every key.
//! - `NOTE_EXIT` can fire before the process is a zombie, so `reap` may answer
//!   `NotYet` and the shard then retries on its back-off timer.
//! - macOS fails `EV_ADD` with `ESRCH` for a process that has already exited;
//!   FreeBSD finds zombies too and reports `NOTE_EXIT` at once. `ESRCH` becomes
//!   an exit that the next `wait` reports, so a zombie child is still reaped with
//!   its exact status.
//!
//! NOTE: no test runs this module; it is only type-checked for FreeBSD and macOS.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use rustix::event::kqueue::{self, EventFilter, EventFlags, ProcessEvents};
use rustix::io::Errno;
use rustix::process::Pid;

use super::{Liveness, OpenError, Ready, Reap, EVENTS_PER_TURN};
use crate::status::{ExitStatus, ResourceUsage};

/// What the poller needs to know about one process. The kevent itself is keyed
/// by PID, so a watch has no descriptor.
#[derive(Debug)]
pub(crate) struct Watch {
    child: bool,
    /// The wait status that came with `NOTE_EXIT`, filled in by `Poller::wait`.
    status: Arc<OnceLock<i32>>,
}

/// Checks that `pid` names a process and notes whether it is our child.
///
/// A child is never `NotFound` here: until it is reaped its PID stays taken,
/// even on macOS where kill(2) may not find a zombie.
pub(crate) fn open_watch(pid: u32) -> Result<Watch, OpenError> {
    let raw = to_pid(pid).ok_or(OpenError::NotFound)?;
    let child = is_child(None, pid);
    if !child && rustix::process::test_kill_process(raw) == Err(Errno::SRCH) {
        return Err(OpenError::NotFound);
    }
    Ok(Watch {
        child,
        status: Arc::default(),
    })
}

#[derive(Debug)]
struct Registration {
    key: usize,
    status: Arc<OnceLock<i32>>,
}

/// An event taken from the kernel (or an exit found at registration) and not
/// yet returned by `wait`.
#[derive(Debug)]
struct Pending {
    ready: Ready,
    /// The watch's status slot, so that `delete` can withdraw the event; `None`
    /// for a bridge.
    owner: Option<Arc<OnceLock<i32>>>,
}

/// The kqueue of one shard.
#[derive(Debug)]
pub(crate) struct Poller {
    kqueue: OwnedFd,
    wake: wake::Wake,
    /// Keys waiting for each PID whose kevent is armed.
    armed: Mutex<HashMap<u32, Vec<Registration>>>,
    /// Events beyond one turn's `EVENTS_PER_TURN`, or exits found by `add`.
    pending: Mutex<VecDeque<Pending>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Poller {
    pub(crate) fn new() -> io::Result<Self> {
        let kqueue = kqueue::kqueue()?;
        rustix::io::fcntl_setfd(&kqueue, rustix::io::FdFlags::CLOEXEC)?;
        let poller = Self {
            wake: wake::Wake::new()?,
            kqueue,
            armed: Mutex::default(),
            pending: Mutex::default(),
        };
        poller.submit(poller.wake.register())?;
        Ok(poller)
    }

    /// Applies one change to the kqueue without taking any event from it.
    fn submit(&self, change: kqueue::Event) -> rustix::io::Result<()> {
        let mut none: [kqueue::Event; 0] = [];
        // SAFETY: the change names a PID, a user event, or the wake pipe that
        // this poller owns and closes only after its kqueue (field order).
        unsafe { kqueue::kevent(&self.kqueue, &[change], &mut none, Some(Duration::ZERO)) }?;
        Ok(())
    }

    fn arm(&self, pid: Pid) -> rustix::io::Result<()> {
        let change = |flags: u32| {
            let filter = EventFilter::Proc {
                pid,
                flags: ProcessEvents::from_bits_retain(flags),
            };
            kqueue::Event::new(
                filter,
                EventFlags::ADD | EventFlags::ONESHOT,
                std::ptr::null_mut(),
            )
        };
        // macOS puts the wait status in `data` only when asked with
        // NOTE_EXITSTATUS, and refuses that with EACCES unless the caller is
        // the parent (newer XNU: or may send the process SIGKILL).
        #[cfg(target_os = "macos")]
        match self.submit(change(libc::NOTE_EXIT | libc::NOTE_EXITSTATUS)) {
            Err(Errno::ACCESS) => {}
            other => return other,
        }
        self.submit(change(libc::NOTE_EXIT))
    }

    pub(crate) fn add(&self, watch: &Watch, pid: u32, key: usize) -> io::Result<()> {
        let raw = to_pid(pid).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let registration = Registration {
            key,
            status: Arc::clone(&watch.status),
        };
        // The table is updated before the kevent is armed and stays locked
        // until then, so `wait` always finds the keys of an exit it takes.
        let mut armed = lock(&self.armed);
        if let Some(keys) = armed.get_mut(&pid) {
            keys.push(registration);
            return Ok(());
        }
        match self.arm(raw) {
            Ok(()) => {
                armed.insert(pid, vec![registration]);
                Ok(())
            }
            // The process exited before its kevent existed (see the module docs).
            Err(Errno::SRCH) => {
                lock(&self.pending).push_back(Pending {
                    ready: Ready { key },
                    owner: Some(registration.status),
                });
                drop(armed);
                self.notify()
            }
            Err(errno) => Err(errno.into()),
        }
    }

    pub(crate) fn delete(&self, watch: &Watch, pid: u32) -> io::Result<()> {
        let mut armed = lock(&self.armed);
        lock(&self.pending).retain(
            |pending| !matches!(&pending.owner, Some(owner) if Arc::ptr_eq(owner, &watch.status)),
        );
        let Some(keys) = armed.get_mut(&pid) else {
            return Err(io::ErrorKind::NotFound.into());
        };
        keys.retain(|registration| !Arc::ptr_eq(&registration.status, &watch.status));
        if keys.is_empty() {
            armed.remove(&pid);
            if let Some(raw) = to_pid(pid) {
                let filter = EventFilter::Proc {
                    pid: raw,
                    flags: ProcessEvents::EXIT,
                };
                let change = kqueue::Event::new(filter, EventFlags::DELETE, std::ptr::null_mut());
                // ENOENT: the one-shot kevent fired and is gone already.
                match self.submit(change) {
                    Ok(()) | Err(Errno::NOENT) | Err(Errno::SRCH) => {}
                    Err(errno) => return Err(errno.into()),
                }
            }
        }
        Ok(())
    }

    pub(crate) fn wait(&self, out: &mut Vec<Ready>, timeout: Option<Duration>) -> io::Result<()> {
        let timeout = if lock(&self.pending).is_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        let mut buffer = [MaybeUninit::<kqueue::Event>::uninit(); EVENTS_PER_TURN];
        // SAFETY: no change is submitted, and the buffer outlives the call.
        let events = match unsafe { kqueue::kevent(&self.kqueue, &[], &mut buffer, timeout) } {
            Ok((events, _)) => events,
            Err(Errno::INTR) => return Ok(()),
            Err(errno) => return Err(errno.into()),
        };

        let mut armed = lock(&self.armed);
        let mut pending = lock(&self.pending);
        for event in events.iter() {
            // Match on the filter as well as the ident: a wake event may carry
            // an ident equal to some PID.
            match event.filter() {
                EventFilter::Proc { pid, flags } if flags.contains(ProcessEvents::EXIT) => {
                    let pid = pid.as_raw_nonzero().get() as u32;
                    let wait_status = carried_status(flags, event.data());
                    for registration in armed.remove(&pid).into_iter().flatten() {
                        if let Some(raw) = wait_status {
                            let _ = registration.status.set(raw);
                        }
                        pending.push_back(Pending {
                            ready: Ready {
                                key: registration.key,
                            },
                            owner: Some(registration.status),
                        });
                    }
                }
                filter if self.wake.take(&filter) => {}
                // Any other read event is a bridge, and its udata is its key.
                EventFilter::Read(_) => pending.push_back(Pending {
                    ready: Ready {
                        key: event.udata() as usize,
                    },
                    owner: None,
                }),
                _ => {}
            }
        }
        drop(armed);

        let count = pending.len().min(EVENTS_PER_TURN);
        out.extend(pending.drain(..count).map(|pending| pending.ready));
        if !pending.is_empty() {
            // Keep the kqueue readable for a caller that nests it in its own loop.
            drop(pending);
            self.notify()?;
        }
        Ok(())
    }

    pub(crate) fn notify(&self) -> io::Result<()> {
        match self.wake.trigger() {
            Some(change) => Ok(self.submit(change)?),
            None => Ok(()),
        }
    }

    /// Watches `bridge` under `key`: one-shot, renewed by `rearm_bridge`, or
    /// with `shared` edge-triggered (`EV_CLEAR`) and never drained, so that one
    /// write wakes every kqueue that watches it. A shared pipe that nobody
    /// drains stops waking anyone once its buffer is full, but only Linux's
    /// overflow shards share a bridge.
    pub(crate) fn add_bridge(&self, bridge: &Bridge, key: usize, shared: bool) -> io::Result<()> {
        let filter = EventFilter::Read(bridge.read.as_raw_fd());
        let mode = if shared {
            EventFlags::CLEAR
        } else {
            EventFlags::ONESHOT
        };
        Ok(self.submit(kqueue::Event::new(
            filter,
            EventFlags::ADD | mode,
            key as *mut _,
        ))?)
    }

    pub(crate) fn rearm_bridge(&self, bridge: &Bridge, key: usize) -> io::Result<()> {
        self.add_bridge(bridge, key, false)
    }
}

impl AsFd for Poller {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.kqueue.as_fd()
    }
}

/// Returns the wait status that a `NOTE_EXIT` event carries in `data`, where
/// the kernel puts one there.
fn carried_status(flags: ProcessEvents, data: i64) -> Option<i32> {
    // XNU sets NOTE_EXITSTATUS in the returned flags when `data` contains it.
    #[cfg(target_os = "macos")]
    let carried = flags.bits() & libc::NOTE_EXITSTATUS != 0;
    // Their kernels store W_EXITCODE(code, signal) in `data` for every process.
    #[cfg(any(target_os = "freebsd", target_os = "netbsd", target_os = "openbsd"))]
    let carried = flags.contains(ProcessEvents::EXIT);
    // NOTE: DragonFly's `data` for NOTE_EXIT was not checked, so it is not used.
    #[cfg(target_os = "dragonfly")]
    let carried = {
        let _ = flags;
        false
    };
    carried.then_some(data as i32)
}

/// A non-blocking, close-on-exec pipe that wakes a poller from any thread
/// (pipe(2); macOS has no pipe2).
#[derive(Debug)]
pub(crate) struct Bridge {
    read: OwnedFd,
    write: OwnedFd,
}

impl Bridge {
    pub(crate) fn new() -> io::Result<Self> {
        let (read, write) = rustix::pipe::pipe()?;
        for fd in [&read, &write] {
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
            rustix::io::ioctl_fionbio(fd, true)?;
        }
        Ok(Self { read, write })
    }

    /// Makes the read end readable. A full pipe (`EAGAIN`) is readable already.
    pub(crate) fn wake(&self) -> io::Result<()> {
        match rustix::io::write(&self.write, &[1]) {
            Ok(_) | Err(Errno::AGAIN) => Ok(()),
            Err(errno) => Err(errno.into()),
        }
    }

    /// Empties the pipe after a wake-up was seen.
    pub(crate) fn drain(&self) {
        let mut buffer = [0u8; 64];
        while matches!(rustix::io::read(&self.read, &mut buffer), Ok(n) if n > 0) {}
    }
}

/// Wakes a blocked `kevent` with an `EVFILT_USER` event.
#[cfg(not(any(target_os = "netbsd", target_os = "openbsd")))]
mod wake {
    use rustix::event::kqueue::{Event, EventFilter, EventFlags, UserDefinedFlags, UserFlags};

    /// Ident of the user event. `wait` tells events apart by filter first, so
    /// it may equal a PID.
    const IDENT: isize = 0;

    #[derive(Debug)]
    pub(super) struct Wake;

    fn user(flags: UserFlags, action: EventFlags) -> Event {
        let filter = EventFilter::User {
            ident: IDENT as _,
            flags,
            user_flags: UserDefinedFlags::new(0),
        };
        Event::new(filter, action, std::ptr::null_mut())
    }

    impl Wake {
        pub(super) fn new() -> std::io::Result<Self> {
            Ok(Self)
        }

        /// Returns the change that adds the user event. `EV_CLEAR` resets the
        /// event once it is reported.
        pub(super) fn register(&self) -> Event {
            user(UserFlags::empty(), EventFlags::ADD | EventFlags::CLEAR)
        }

        /// Returns the change that fires the user event.
        pub(super) fn trigger(&self) -> Option<Event> {
            Some(user(UserFlags::TRIGGER, EventFlags::ADD))
        }

        /// Tells whether `filter` is this wake-up.
        pub(super) fn take(&self, filter: &EventFilter) -> bool {
            matches!(filter, EventFilter::User { ident, .. } if *ident == IDENT as _)
        }
    }
}

/// Wakes a blocked `kevent` through a pipe, because rustix offers no
/// `EVFILT_USER` on these systems.
#[cfg(any(target_os = "netbsd", target_os = "openbsd"))]
mod wake {
    use std::os::fd::AsRawFd;

    use rustix::event::kqueue::{Event, EventFilter, EventFlags};

    use super::Bridge;

    #[derive(Debug)]
    pub(super) struct Wake(Bridge);

    impl Wake {
        pub(super) fn new() -> std::io::Result<Self> {
            Ok(Self(Bridge::new()?))
        }

        /// Returns the change that adds a level-triggered read event on the pipe.
        pub(super) fn register(&self) -> Event {
            let filter = EventFilter::Read(self.0.read.as_raw_fd());
            Event::new(filter, EventFlags::ADD, std::ptr::null_mut())
        }

        /// Writes to the pipe; no kqueue change is needed.
        pub(super) fn trigger(&self) -> Option<Event> {
            let _ = self.0.wake();
            None
        }

        /// Tells whether `filter` is this wake-up, and empties the pipe if so.
        pub(super) fn take(&self, filter: &EventFilter) -> bool {
            let own = matches!(filter, EventFilter::Read(fd) if *fd == self.0.read.as_raw_fd());
            if own {
                self.0.drain();
            }
            own
        }
    }
}

/// Reads a child's state with waitid(2) and `WNOWAIT`, leaving it waitable.
///
/// Returns `NotChild` for `ECHILD`, and `NotYet` while it runs or is stopped
/// (macOS's waitid can report a stopped child even without `WSTOPPED`).
fn peek(pid: u32) -> io::Result<Reap> {
    let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
    let options = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
    loop {
        // SAFETY: `info` is a writable, zeroed siginfo_t that outlives the call.
        let ret =
            unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, info.as_mut_ptr(), options) };
        if ret == 0 {
            break;
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ECHILD) => return Ok(Reap::NotChild),
            _ => return Err(err),
        }
    }
    // SAFETY: a zeroed siginfo_t is a valid value, and waitid filled it or left it zeroed.
    let info = unsafe { info.assume_init() };
    // SAFETY: waitid fills the SIGCHLD fields `si_pid` and `si_status`.
    let (child, value) = unsafe { (info.si_pid(), info.si_status()) };
    let status = match info.si_code {
        _ if child == 0 => return Ok(Reap::NotYet),
        libc::CLD_EXITED => ExitStatus::Exited(value),
        // macOS's waitid leaves the signal of a killed child out (the .NET
        // runtime met this); 0 is no signal, so report the status as unknown.
        libc::CLD_KILLED | libc::CLD_DUMPED if value == 0 => ExitStatus::Unknown,
        libc::CLD_KILLED | libc::CLD_DUMPED => ExitStatus::Signaled {
            signal: value,
            core_dumped: info.si_code == libc::CLD_DUMPED,
        },
        _ => return Ok(Reap::NotYet),
    };
    Ok(Reap::Exited(status, None))
}

/// Collects the exit status of child `pid` without blocking.
///
/// With `keep` the child is only read (waitid(2) with `WNOWAIT`, no resource
/// usage), and the status from the `NOTE_EXIT` event is preferred when there is
/// one. Otherwise wait4(2) reaps exactly `pid` and returns its resource usage.
pub(crate) fn reap(watch: Option<&Watch>, pid: u32, keep: bool) -> io::Result<Reap> {
    if keep {
        return Ok(match (peek(pid)?, watch.and_then(exit_info)) {
            (Reap::Exited(_, _), Some(status)) => Reap::Exited(status, None),
            (peeked, _) => peeked,
        });
    }
    let mut status = 0;
    let mut usage = MaybeUninit::<libc::rusage>::zeroed();
    let reaped = loop {
        // SAFETY: both pointers are writable and outlive the call; wait4 waits
        // only for `pid` and, with WNOHANG, never blocks.
        let ret = unsafe {
            libc::wait4(
                pid as libc::pid_t,
                &mut status,
                libc::WNOHANG,
                usage.as_mut_ptr(),
            )
        };
        if ret >= 0 {
            break ret;
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ECHILD) => return Ok(Reap::NotChild),
            _ => return Err(err),
        }
    };
    if reaped == 0 {
        return Ok(Reap::NotYet);
    }
    // SAFETY: zeroed is a valid rusage, and wait4 filled it for the reaped child.
    let usage = unsafe { usage.assume_init() };
    Ok(match ExitStatus::from_wait_status(status) {
        Some(status) => Reap::Exited(status, Some(resource_usage(&usage))),
        None => Reap::NotYet,
    })
}

fn resource_usage(usage: &libc::rusage) -> ResourceUsage {
    let time = |tv: libc::timeval| {
        Duration::new(
            tv.tv_sec.max(0) as u64,
            (tv.tv_usec.clamp(0, 999_999) as u32) * 1000,
        )
    };
    // XNU's getrusage(2) gives ru_maxrss in bytes, the BSDs in kilobytes.
    let unit = if cfg!(target_os = "macos") { 1 } else { 1024 };
    ResourceUsage {
        user_time: time(usage.ru_utime),
        system_time: time(usage.ru_stime),
        max_rss_bytes: (usage.ru_maxrss.max(0) as u64) * unit,
    }
}

/// Returns the wait status that came with the process's `NOTE_EXIT` event:
/// for every process on FreeBSD, NetBSD and OpenBSD, and on macOS for those
/// that accepted `NOTE_EXITSTATUS`.
pub(crate) fn exit_info(watch: &Watch) -> Option<ExitStatus> {
    watch
        .status
        .get()
        .copied()
        .and_then(ExitStatus::from_wait_status)
}

/// Tells whether `pid` is our child: waitid(2) with `WNOWAIT` gives `ECHILD` otherwise.
pub(crate) fn is_child(watch: Option<&Watch>, pid: u32) -> bool {
    match watch {
        Some(watch) => watch.child,
        None => !matches!(peek(pid), Ok(Reap::NotChild) | Err(_)),
    }
}

/// Tells whether `pid` still exists, with kill(2) and signal 0. A zombie is
/// `Running` where kill(2) still finds it, so the lane reports it only once
/// its parent has reaped it.
pub(crate) fn probe(pid: u32) -> Liveness {
    match to_pid(pid).map(rustix::process::test_kill_process) {
        Some(Err(Errno::SRCH)) | None => Liveness::Gone,
        Some(_) => Liveness::Running,
    }
}

/// Returns `pid` itself; `open_watch` here never reports a PID as a thread.
pub(crate) fn thread_group(pid: u32) -> Option<u32> {
    Some(pid)
}

/// Sends `signal` with kill(2).
///
/// NOTE: kqueue gives no process handle, so a non-child that exits and whose
/// PID is reused before this call would get the signal.
pub(crate) fn send_signal(_watch: Option<&Watch>, pid: u32, signal: i32) -> io::Result<()> {
    let signal = rustix::process::Signal::from_named_raw(signal).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid signal number {signal}"),
        )
    })?;
    let pid = to_pid(pid).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    Ok(rustix::process::kill_process(pid, signal)?)
}

/// Returns the PID of the calling process.
pub(crate) fn current_pid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

fn to_pid(pid: u32) -> Option<Pid> {
    Pid::from_raw(i32::try_from(pid).ok()?)
}

/// Name of this backend, for logs.
pub(crate) const BACKEND: &str = "kqueue";

/// A kevent uses no descriptor, so watches never count against RLIMIT_NOFILE.
pub(crate) const WATCH_USES_DESCRIPTOR: bool = false;

/// Returns the soft and hard RLIMIT_NOFILE (getrlimit(2)); `None` means unlimited.
pub(crate) fn descriptor_limit() -> (Option<u64>, Option<u64>) {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    (limit.current, limit.maximum)
}

/// Leaves RLIMIT_NOFILE as it is, because watches use no descriptors, and
/// returns the soft limit.
pub(crate) fn raise_descriptor_limit() -> io::Result<Option<u64>> {
    Ok(descriptor_limit().0)
}

/// Not counted here; the budget ignores it when watches use no descriptors.
pub(crate) fn open_descriptors() -> Option<usize> {
    None
}

/// Returns the PID of one child that has exited and is not yet reaped, without
/// reaping it (waitid(2) with `P_ALL | WNOWAIT`).
pub(crate) fn peek_exited_child() -> Option<u32> {
    let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
    let options = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
    // SAFETY: `info` is a writable, zeroed siginfo_t that outlives the call.
    let ret = unsafe { libc::waitid(libc::P_ALL, 0, info.as_mut_ptr(), options) };
    if ret != 0 {
        return None;
    }
    // SAFETY: zeroed, then filled by waitid, which sets `si_pid` (0: no child).
    let pid = unsafe { info.assume_init().si_pid() };
    (pid > 0).then_some(pid as u32)
}

/// Fails: only Linux can give a thread a descriptor table of its own, and
/// kqueue watches need none.
pub(crate) fn private_descriptor_table(_keep: &[&Bridge]) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "a private descriptor table needs Linux's unshare(CLONE_FILES)",
    ))
}

/// The errno for a full descriptor table.
pub(crate) const EMFILE: i32 = libc::EMFILE;

/// The signal that asks a process to end, and the one that cannot be caught.
pub(crate) const SIGNALS_TERMINATE_KILL: (i32, i32) = (libc::SIGTERM, libc::SIGKILL);

/// Returns the start time of a process; not implemented on this platform yet.
// NOTE: start-time identity checks are only implemented on Linux.
pub(crate) fn start_time(pid: u32) -> io::Result<u64> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!("cannot check the start time of PID {pid}: supported on Linux only"),
    ))
}

/// Lists the children of this process; not implemented on this platform yet.
pub(crate) fn children() -> io::Result<Vec<u32>> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "listing the children of this process is supported on Linux only",
    ))
}

/// Whether dropping a `Watch` also removes it from the poller. A watch has no descriptor, so the poller must delete its kevent explicitly.
pub(crate) const DROP_REMOVES_WATCH: bool = false;
