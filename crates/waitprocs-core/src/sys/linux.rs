//! Linux backend: one pidfd per process, all of a shard's pidfds in one epoll.
//!
//! - pidfd_open(2) gives a descriptor that becomes readable when the whole thread
//!   group has exited (zombie time, for children and non-children alike).
//! - epoll(7), through rustix, multiplexes the pidfds of one shard.
//! - waitid(2) with `P_PIDFD` reaps exactly the process behind the pidfd. The
//!   raw system call is used because its fifth argument, `struct rusage`, is not
//!   part of the POSIX signature that glibc and rustix expose.
//! - `ioctl(PIDFD_GET_INFO)` (pidfd_open(2), Linux 6.15 and later) returns the
//!   exit status of a process once its parent has reaped it.

use std::fs;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::event::epoll;
use rustix::process::{Pid, PidfdFlags};

use super::{Liveness, OpenError, Ready, Reap, EVENTS_PER_TURN};

#[cfg(feature = "fault-injection")]
use crate::faults as crate_faults;

/// Stands in for `crate::faults` when fault injection is compiled out.
#[cfg(not(feature = "fault-injection"))]
mod crate_faults {
    pub(super) enum Call {
        PidfdOpen,
        PollerAdd,
        Waitid,
    }
}

/// Returns the errno a test asked this call to fail with, if any.
#[inline]
#[allow(unused_variables)]
fn injected(call: crate_faults::Call) -> Option<rustix::io::Errno> {
    #[cfg(feature = "fault-injection")]
    {
        crate::faults::take(call).map(rustix::io::Errno::from_raw_os_error)
    }
    #[cfg(not(feature = "fault-injection"))]
    {
        None
    }
}
use crate::status::{ExitStatus, ResourceUsage};

/// A pidfd: the handle the poller waits on for one process.
#[derive(Debug)]
pub(crate) struct Watch(OwnedFd);

impl AsFd for Watch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Opens a pidfd for `pid` with pidfd_open(2).
pub(crate) fn open_watch(pid: u32) -> Result<Watch, OpenError> {
    let Some(raw) = to_pid(pid) else {
        return Err(OpenError::NotFound);
    };
    let opened = match injected(crate_faults::Call::PidfdOpen) {
        Some(errno) => Err(errno),
        None => rustix::process::pidfd_open(raw, PidfdFlags::empty()),
    };
    match opened {
        Ok(fd) => Ok(Watch(fd)),
        Err(rustix::io::Errno::SRCH) => Err(OpenError::NotFound),
        // Without PIDFD_THREAD, the PID is not a thread-group leader: a thread
        // id, or a leader that is being released. Linux 6.15 and later say so
        // with ENOENT, older kernels with EINVAL.
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOENT) => match thread_group(pid) {
            Some(tgid) if tgid != pid => Err(OpenError::Thread),
            _ => Err(OpenError::Exiting),
        },
        Err(rustix::io::Errno::MFILE) => Err(OpenError::TableFull),
        Err(errno) => Err(OpenError::Unavailable {
            permanent: matches!(
                errno,
                rustix::io::Errno::NOSYS | rustix::io::Errno::PERM | rustix::io::Errno::ACCESS
            ),
            error: errno.into(),
        }),
    }
}

/// The epoll instance of one shard, with an eventfd that `notify` writes.
///
/// epoll is driven directly through rustix rather than through `polling`:
/// `polling` 3.11 arms a timerfd and re-arms its notifier on every wait, four
/// system calls per turn that the benchmarks showed in every exit's cost.
#[derive(Debug)]
pub(crate) struct Poller {
    epoll: OwnedFd,
    notifier: Bridge,
}

/// Event data of the notifier; no entry or bridge key takes this value.
const NOTIFY_KEY: u64 = u64::MAX;

impl Poller {
    /// Creates the epoll instance (epoll_create1(2)) and its notifier.
    pub(crate) fn new() -> io::Result<Self> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let notifier = Bridge::new()?;
        // Level-triggered: `wait` drains the notifier when it reports it.
        epoll::add(
            &epoll,
            &notifier.0,
            epoll::EventData::new_u64(NOTIFY_KEY),
            epoll::EventFlags::IN,
        )?;
        Ok(Self { epoll, notifier })
    }

    /// Arms a one-shot readable interest in the pidfd (epoll_ctl(2)).
    pub(crate) fn add(&self, watch: &Watch, _pid: u32, key: usize) -> io::Result<()> {
        if let Some(errno) = injected(crate_faults::Call::PollerAdd) {
            return Err(errno.into());
        }
        epoll::add(
            &self.epoll,
            &watch.0,
            epoll::EventData::new_u64(key as u64),
            epoll::EventFlags::IN | epoll::EventFlags::ONESHOT,
        )?;
        Ok(())
    }

    pub(crate) fn delete(&self, watch: &Watch, _pid: u32) -> io::Result<()> {
        epoll::delete(&self.epoll, &watch.0)?;
        Ok(())
    }

    /// Waits for events with epoll_wait(2), at most `EVENTS_PER_TURN`.
    pub(crate) fn wait(&self, out: &mut Vec<Ready>, timeout: Option<Duration>) -> io::Result<()> {
        let mut buffer = [MaybeUninit::<epoll::Event>::uninit(); EVENTS_PER_TURN];
        let timeout = timeout.map(|timeout| rustix::event::Timespec {
            // Far timeouts are capped at about 68 years, which epoll accepts.
            tv_sec: timeout.as_secs().min(i32::MAX as u64) as _,
            tv_nsec: timeout.subsec_nanos() as _,
        });
        let events = match epoll::wait(&self.epoll, &mut buffer, timeout.as_ref()) {
            Ok((events, _)) => events,
            Err(rustix::io::Errno::INTR) => return Ok(()),
            Err(errno) => return Err(errno.into()),
        };
        for event in events.iter() {
            let key = event.data.u64();
            if key == NOTIFY_KEY {
                self.notifier.drain();
            } else {
                out.push(Ready { key: key as usize });
            }
        }
        Ok(())
    }

    pub(crate) fn notify(&self) -> io::Result<()> {
        self.notifier.wake()
    }
}

impl AsFd for Poller {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
    }
}

const P_PID: libc::idtype_t = libc::P_PID;
const P_PIDFD: libc::idtype_t = 3;

/// Reaps the child behind `watch` (or `pid` when there is no pidfd) without blocking.
///
/// Uses waitid(2) with `P_PIDFD` or `P_PID`, never `P_ALL`, so no other child's
/// status can be taken.
pub(crate) fn reap(watch: Option<&Watch>, pid: u32, keep: bool) -> io::Result<Reap> {
    let (idtype, id) = match watch {
        Some(watch) => (P_PIDFD, watch.0.as_raw_fd() as libc::id_t),
        None => (P_PID, pid as libc::id_t),
    };
    let mut options = libc::WEXITED | libc::WNOHANG;
    if keep {
        options |= libc::WNOWAIT;
    }
    match waitid_with_usage(idtype, id, options) {
        Ok((info, usage)) => Ok(decode_exit(&info, &usage)),
        Err(err) => match err.raw_os_error() {
            Some(libc::ECHILD) => Ok(Reap::NotChild),
            // Linux 5.3 has pidfd_open but not P_PIDFD (added in 5.4). A
            // child's PID cannot be reused before it is reaped, so waiting by
            // PID names the same process.
            Some(libc::EINVAL) if watch.is_some() => reap(None, pid, keep),
            _ => Err(err),
        },
    }
}

/// Calls waitid(2) through the raw system call, whose fifth argument returns
/// the child's rusage (the libc wrapper has no such argument). Retries on
/// `EINTR`.
fn waitid_with_usage(
    idtype: libc::idtype_t,
    id: libc::id_t,
    options: libc::c_int,
) -> io::Result<(libc::siginfo_t, libc::rusage)> {
    let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
    let mut usage = MaybeUninit::<libc::rusage>::zeroed();
    loop {
        // An injected fault stands for the call itself, so nothing is reaped.
        let err = if let Some(errno) = injected(crate_faults::Call::Waitid) {
            io::Error::from_raw_os_error(errno.raw_os_error())
        } else {
            // SAFETY: `info` and `usage` point to writable, properly sized and
            // aligned buffers that outlive the call. `id` names a pidfd we own
            // (or a PID), and the kernel only writes through the two pointers.
            let ret = unsafe {
                libc::syscall(
                    libc::SYS_waitid,
                    idtype,
                    id,
                    info.as_mut_ptr(),
                    options,
                    usage.as_mut_ptr(),
                )
            };
            if ret == 0 {
                break;
            }
            io::Error::last_os_error()
        };
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
    // SAFETY: the kernel filled `info` (or left it zeroed under WNOHANG), and
    // both buffers were zero-initialised, which is a valid bit pattern for them.
    Ok(unsafe { (info.assume_init(), usage.assume_init()) })
}

/// Turns what waitid(2) returned under `WEXITED | WNOHANG` into a [`Reap`].
fn decode_exit(info: &libc::siginfo_t, usage: &libc::rusage) -> Reap {
    // SAFETY: for SIGCHLD-style siginfo from waitid, `si_pid` and `si_status`
    // are the fields the kernel fills.
    let (child, status) = unsafe { (info.si_pid(), info.si_status()) };
    if child == 0 {
        return Reap::NotYet;
    }
    let status = match info.si_code {
        libc::CLD_EXITED => ExitStatus::Exited(status),
        libc::CLD_KILLED => ExitStatus::Signaled {
            signal: status,
            core_dumped: false,
        },
        libc::CLD_DUMPED => ExitStatus::Signaled {
            signal: status,
            core_dumped: true,
        },
        // Only WEXITED was requested, so stop and continue reports cannot
        // appear; treat anything else as "not an exit".
        _ => return Reap::NotYet,
    };
    Reap::Exited(status, Some(resource_usage(usage)))
}

fn resource_usage(usage: &libc::rusage) -> ResourceUsage {
    let time = |tv: libc::timeval| {
        Duration::new(
            tv.tv_sec.max(0) as u64,
            (tv.tv_usec.clamp(0, 999_999) as u32) * 1000,
        )
    };
    ResourceUsage {
        user_time: time(usage.ru_utime),
        system_time: time(usage.ru_stime),
        // Linux reports ru_maxrss in kibibytes.
        max_rss_bytes: (usage.ru_maxrss.max(0) as u64) * 1024,
    }
}

/// The first 64 bytes of `struct pidfd_info` (`PIDFD_INFO_SIZE_VER0`), the
/// version the kernel's uapi header encodes in `PIDFD_GET_INFO`.
#[repr(C)]
#[derive(Default)]
struct PidfdInfo {
    mask: u64,
    cgroupid: u64,
    pid: u32,
    tgid: u32,
    ppid: u32,
    ruid: u32,
    rgid: u32,
    euid: u32,
    egid: u32,
    suid: u32,
    sgid: u32,
    fsuid: u32,
    fsgid: u32,
    exit_code: i32,
}

const _: () = assert!(std::mem::size_of::<PidfdInfo>() == 64);

/// Returns the exit status the kernel kept for the process behind `watch`.
///
/// `PIDFD_GET_INFO` with `PIDFD_INFO_EXIT` returns it once the process has been
/// reaped (by its parent, or by the kernel when the parent ignores `SIGCHLD`),
/// on Linux 6.15 and later. Older kernels reject the ioctl, and a process that
/// is still a zombie has no exit info yet; both give `None`.
pub(crate) fn exit_info(watch: &Watch) -> Option<ExitStatus> {
    let mut info = PidfdInfo {
        mask: libc::PIDFD_INFO_EXIT as u64,
        ..PidfdInfo::default()
    };
    // SAFETY: `PIDFD_GET_INFO` encodes a 64-byte argument, and `info` is a
    // 64-byte `repr(C)` buffer matching `struct pidfd_info` version 0 that lives
    // across the call. The descriptor is a pidfd we own.
    let ret = unsafe {
        libc::ioctl(
            watch.0.as_raw_fd(),
            libc::PIDFD_GET_INFO as _,
            &mut info as *mut PidfdInfo,
        )
    };
    if ret != 0 || info.mask & libc::PIDFD_INFO_EXIT as u64 == 0 {
        return None;
    }
    ExitStatus::from_wait_status(info.exit_code)
}

/// Tells whether `pid` is a child of this process, without reaping anything.
pub(crate) fn is_child(watch: Option<&Watch>, pid: u32) -> bool {
    !matches!(reap(watch, pid, true), Ok(Reap::NotChild) | Err(_))
}

/// Reads the state of a process from `/proc/PID/stat` (proc(5)).
pub(crate) fn probe(pid: u32) -> Liveness {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may
        // itself contain spaces and parentheses, so search from the last ')'.
        Ok(stat) => match stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
        {
            // The state is that of the main thread, which can be a zombie
            // while other threads of the process still run.
            Some("Z") if thread_count(pid).is_some_and(|threads| threads > 1) => Liveness::Running,
            Some("Z") | Some("X") | Some("x") => Liveness::Zombie,
            Some(_) => Liveness::Running,
            None => Liveness::Gone,
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Liveness::Gone,
        // /proc unreadable (hidepid, not mounted): ask the kernel directly.
        Err(_) => match to_pid(pid).map(rustix::process::test_kill_process) {
            Some(Err(rustix::io::Errno::SRCH)) | None => Liveness::Gone,
            Some(_) => Liveness::Running,
        },
    }
}

/// Returns the thread-group id (the process) that thread `tid` belongs to.
pub(crate) fn thread_group(tid: u32) -> Option<u32> {
    status_field(tid, "Tgid:")
}

/// Returns how many threads process `pid` has, from `/proc/PID/status`.
fn thread_count(pid: u32) -> Option<u32> {
    status_field(pid, "Threads:")
}

fn status_field(pid: u32, name: &str) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|value| value.trim().parse().ok())
}

/// Sends `signal` through the pidfd with pidfd_send_signal(2), or with kill(2)
/// when the process has no pidfd. Signal 0 checks that the process exists.
pub(crate) fn send_signal(watch: Option<&Watch>, pid: u32, signal: i32) -> io::Result<()> {
    if !(0..=libc::SIGRTMAX()).contains(&signal) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "invalid signal number {signal}: use 0 to {}",
                libc::SIGRTMAX()
            ),
        ));
    }
    let ret = match watch {
        // SAFETY: the pidfd is owned by `watch` and open for the call; a null
        // siginfo and zero flags make the kernel build the siginfo itself.
        Some(watch) => unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                watch.0.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0u32,
            )
        },
        None => {
            let pid = libc::pid_t::try_from(pid)
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            // SAFETY: kill(2) takes plain integers; `pid` is positive, so it
            // never addresses a process group or every process.
            i64::from(unsafe { libc::kill(pid, signal) })
        }
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Returns the PID of the calling process.
pub(crate) fn current_pid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

fn to_pid(pid: u32) -> Option<Pid> {
    Pid::from_raw(i32::try_from(pid).ok()?)
}

/// Name of this backend, for logs.
pub(crate) const BACKEND: &str = "pidfd+epoll";

/// Whether each `Watch` uses a descriptor (and so counts against RLIMIT_NOFILE).
pub(crate) const WATCH_USES_DESCRIPTOR: bool = true;

/// Returns the soft and hard RLIMIT_NOFILE (getrlimit(2)); `None` means unlimited.
pub(crate) fn descriptor_limit() -> (Option<u64>, Option<u64>) {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    (limit.current, limit.maximum)
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (setrlimit(2)) and returns
/// the new soft limit. The change is process-wide and inherited by children.
pub(crate) fn raise_descriptor_limit() -> io::Result<Option<u64>> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    if limit.current == limit.maximum {
        return Ok(limit.current);
    }
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    )?;
    Ok(limit.maximum)
}

/// Counts the descriptors open in this process's table (`/proc/self/fd`).
pub(crate) fn open_descriptors() -> Option<usize> {
    // The directory handle itself is one of the entries.
    fs::read_dir("/proc/self/fd")
        .ok()
        .map(|dir| dir.count().saturating_sub(1))
}

/// Returns the PID of one child that has exited and is not yet reaped, without
/// reaping it (waitid(2) with `P_ALL | WNOWAIT`). `None` when no child is a
/// zombie. This only peeks, so the status stays with the child's owner.
pub(crate) fn peek_exited_child() -> Option<u32> {
    let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
    // SAFETY: `info` is a writable siginfo_t that outlives the call; the
    // rusage pointer is null, which waitid accepts.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_waitid,
            libc::P_ALL,
            0,
            info.as_mut_ptr(),
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            std::ptr::null_mut::<libc::rusage>(),
        )
    };
    if ret != 0 {
        return None;
    }
    // SAFETY: zero-initialised, then filled by the kernel; si_pid is the field
    // waitid sets (0 when no child changed state).
    let pid = unsafe { info.assume_init().si_pid() };
    (pid > 0).then_some(pid as u32)
}

/// An eventfd used to wake a thread whose descriptor table is private.
#[derive(Debug)]
pub(crate) struct Bridge(OwnedFd);

impl Bridge {
    pub(crate) fn new() -> io::Result<Self> {
        use rustix::event::{eventfd, EventfdFlags};
        Ok(Self(eventfd(
            0,
            EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC,
        )?))
    }

    /// Wakes the poller that watches this bridge.
    pub(crate) fn wake(&self) -> io::Result<()> {
        match rustix::io::write(&self.0, &1u64.to_ne_bytes()) {
            // EAGAIN: the counter is full, so a wake-up is already pending.
            Ok(_) | Err(rustix::io::Errno::AGAIN) => Ok(()),
            Err(errno) => Err(errno.into()),
        }
    }

    /// Resets the counter after a wake-up was seen.
    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 8];
        // EAGAIN means another drain already reset it; nothing else can fail
        // on an eventfd we own with an 8-byte buffer.
        let _ = rustix::io::read(&self.0, &mut buf);
    }
}

impl Poller {
    /// Watches `bridge` under `key`. A one-shot interest is renewed with
    /// `rearm_bridge` after each wake-up. A shared bridge uses an edge-triggered
    /// interest instead and is never drained, so one write wakes every poller
    /// that watches it.
    pub(crate) fn add_bridge(&self, bridge: &Bridge, key: usize, shared: bool) -> io::Result<()> {
        let mode = if shared {
            epoll::EventFlags::ET
        } else {
            epoll::EventFlags::ONESHOT
        };
        epoll::add(
            &self.epoll,
            &bridge.0,
            epoll::EventData::new_u64(key as u64),
            epoll::EventFlags::IN | mode,
        )?;
        Ok(())
    }

    pub(crate) fn rearm_bridge(&self, bridge: &Bridge, key: usize) -> io::Result<()> {
        epoll::modify(
            &self.epoll,
            &bridge.0,
            epoll::EventData::new_u64(key as u64),
            epoll::EventFlags::IN | epoll::EventFlags::ONESHOT,
        )?;
        Ok(())
    }
}

/// Gives the calling thread a descriptor table of its own, holding only
/// stdin, stdout, stderr and the descriptors in `keep` (unshare(2) with
/// `CLONE_FILES`, then close_range(2)). RLIMIT_NOFILE then applies to this
/// table separately, which is how overflow shards hold more pidfds than the
/// process's own table has room for.
pub(crate) fn private_descriptor_table(keep: &[&Bridge]) -> io::Result<()> {
    // SAFETY: the caller is a dedicated engine thread that, from here on, only
    // uses descriptors it opens itself and the bridges in `keep`, which stay
    // valid at the same numbers in the copied table. It runs no caller code
    // and no logging, so no other descriptor number is ever used on it.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FILES)? };

    // Close everything but 0..=2 and the kept bridges, as ranges between them.
    let mut kept: Vec<u32> = keep.iter().map(|b| b.0.as_raw_fd() as u32).collect();
    kept.sort_unstable();
    let mut first = 3u32;
    for fd in kept.into_iter().chain(std::iter::once(u32::MAX)) {
        if fd > first {
            let last = if fd == u32::MAX { u32::MAX } else { fd - 1 };
            // SAFETY: close_range only closes descriptors of this thread's new,
            // private table; no Rust object on this thread owns any of them.
            let ret = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
            if ret != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        first = fd.saturating_add(1);
    }
    Ok(())
}

/// The errno for a full descriptor table.
pub(crate) const EMFILE: i32 = libc::EMFILE;

/// The signal that asks a process to end, and the one that cannot be caught.
pub(crate) const SIGNALS_TERMINATE_KILL: (i32, i32) = (libc::SIGTERM, libc::SIGKILL);

/// Returns the start time of process `pid`: field 22 of `/proc/PID/stat`
/// (proc(5)), in clock ticks since boot. It is fixed for the life of a
/// process, so it tells a reused PID apart.
pub(crate) fn start_time(pid: u32) -> io::Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may contain
    // spaces: the state is field 3, so the start time is the 20th of these.
    stat.rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().nth(19))
        .and_then(|field| field.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected format of /proc/{pid}/stat"),
            )
        })
}

/// Lists the children of this process, from `/proc/self/task/*/children`
/// (proc(5); needs a kernel built with `CONFIG_PROC_CHILDREN`, as the common
/// distributions are).
pub(crate) fn children() -> io::Result<Vec<u32>> {
    let mut children = Vec::new();
    for task in fs::read_dir("/proc/self/task")? {
        let list = match fs::read_to_string(task?.path().join("children")) {
            Ok(list) => list,
            // The thread ended between the listing and the read.
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        children.extend(
            list.split_whitespace()
                .filter_map(|pid| pid.parse::<u32>().ok()),
        );
    }
    Ok(children)
}

/// Whether dropping a `Watch` also removes it from the poller. Closing a pidfd, which is never duplicated, removes it from the epoll set.
pub(crate) const DROP_REMOVES_WATCH: bool = true;
