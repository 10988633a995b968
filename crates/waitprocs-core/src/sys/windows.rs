//! Windows backend: one process handle per process, registered as a waitable on
//! the shard's I/O completion port through `polling`'s `PollerIocpExt`.
//!
//! - OpenProcess gives a handle that becomes signaled when the process ends.
//!   `polling` waits on it with RegisterWaitForSingleObject and posts a
//!   completion packet to the port.
//! - Windows has no reaping: any process's exit code can be read with
//!   GetExitCodeProcess while a handle is open, and the process object lives on
//!   until the last handle closes. So `is_child` is always false, a process
//!   registered by PID still gets its exact exit code (through `exit_info`), and
//!   one registered with a `Child` handle gets it through `reap`.
//! - An exit code is a `u32`, often an NTSTATUS such as 0xC0000005 (access
//!   violation). It is reported as `ExitStatus::Exited(code as i32)`, the same
//!   bits that `std::process::ExitStatus::code` returns.
//!
//! NOTE: no test runs this module; it is only type-checked for
//! x86_64-pc-windows-gnu.

use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle, RawHandle};
use std::sync::Mutex;
use std::time::Duration;

use polling::os::iocp::PollerIocpExt;
use windows_sys::Win32::Foundation::{
    ERROR_ACCESS_DENIED, ERROR_INVALID_PARAMETER, ERROR_TOO_MANY_OPEN_FILES, WAIT_OBJECT_0,
    WAIT_TIMEOUT,
};
use windows_sys::Win32::System::Threading::{
    CreateEventW, GetExitCodeProcess, OpenProcess, ResetEvent, SetEvent, TerminateProcess,
    WaitForSingleObject, PROCESS_ACCESS_RIGHTS, PROCESS_QUERY_LIMITED_INFORMATION,
    PROCESS_SYNCHRONIZE, PROCESS_TERMINATE,
};

use super::{Liveness, OpenError, Ready, Reap, EVENTS_PER_TURN};
use crate::status::ExitStatus;

/// Rights every watch needs: waiting on the handle and reading the exit code.
const WATCH_ACCESS: PROCESS_ACCESS_RIGHTS = PROCESS_SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION;

/// The one signal number `send_signal` accepts (SIGKILL on every Unix).
const SIGKILL: i32 = 9;

/// Exit code given to TerminateProcess, as `std::process::Child::kill` does.
const KILLED_EXIT_CODE: u32 = 1;

/// A process handle: the waitable the poller waits on for one process.
#[derive(Debug)]
pub(crate) struct Watch(OwnedHandle);

fn open(pid: u32, access: PROCESS_ACCESS_RIGHTS) -> io::Result<OwnedHandle> {
    // SAFETY: OpenProcess takes no pointers and returns a new handle or null.
    let raw = unsafe { OpenProcess(access, 0, pid) };
    if raw.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a valid handle that nothing else owns.
    Ok(unsafe { OwnedHandle::from_raw_handle(raw) })
}

fn is_error(error: &io::Error, code: u32) -> bool {
    error.raw_os_error() == Some(code as i32)
}

/// Opens `pid` with the rights to wait, read the exit code and, where the
/// caller has it, terminate. `ERROR_INVALID_PARAMETER` means no such process.
pub(crate) fn open_watch(pid: u32) -> Result<Watch, OpenError> {
    let handle = open(pid, WATCH_ACCESS | PROCESS_TERMINATE).or_else(|error| {
        if is_error(&error, ERROR_ACCESS_DENIED) {
            open(pid, WATCH_ACCESS)
        } else {
            Err(error)
        }
    });
    match handle {
        Ok(handle) => Ok(Watch(handle)),
        Err(error) if is_error(&error, ERROR_INVALID_PARAMETER) => Err(OpenError::NotFound),
        // Access denied (a protected process): later attempts fail the same way
        // for this process only, so the lane takes it.
        Err(error) => Err(OpenError::Unavailable {
            error,
            permanent: false,
        }),
    }
}

/// The completion port of one shard.
#[derive(Debug)]
pub(crate) struct Poller {
    inner: polling::Poller,
    events: Mutex<polling::Events>,
}

impl Poller {
    pub(crate) fn new() -> io::Result<Self> {
        let capacity = std::num::NonZeroUsize::new(EVENTS_PER_TURN).expect("nonzero");
        Ok(Self {
            inner: polling::Poller::new()?,
            events: Mutex::new(polling::Events::with_capacity(capacity)),
        })
    }

    pub(crate) fn add(&self, watch: &Watch, _pid: u32, key: usize) -> io::Result<()> {
        let interest = polling::Event::readable(key);
        // SAFETY: `polling` requires the handle to stay open until it is
        // removed. The shard calls `delete` before it drops the `Watch`.
        unsafe {
            self.inner
                .add_waitable(&watch.0, interest, polling::PollMode::Oneshot)
        }
    }

    pub(crate) fn delete(&self, watch: &Watch, _pid: u32) -> io::Result<()> {
        self.inner.remove_waitable(&watch.0)
    }

    pub(crate) fn wait(&self, out: &mut Vec<Ready>, timeout: Option<Duration>) -> io::Result<()> {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        events.clear();
        match self.inner.wait(&mut events, timeout) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        out.extend(events.iter().map(|event| Ready { key: event.key }));
        Ok(())
    }

    pub(crate) fn notify(&self) -> io::Result<()> {
        self.inner.notify()
    }

    /// Watches `bridge` under `key` with a one-shot wait, renewed by
    /// `rearm_bridge`. A `shared` bridge is rejected: `polling` has no
    /// edge-triggered waitables, and only Linux's overflow shards share one.
    ///
    /// NOTE: `polling` drops every event whose key is `usize::MAX` (its own
    /// notify key), so `key` must be another value.
    pub(crate) fn add_bridge(&self, bridge: &Bridge, key: usize, shared: bool) -> io::Result<()> {
        if shared {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a shared bridge needs edge-triggered waits, which Windows waitables lack",
            ));
        }
        let interest = polling::Event::readable(key);
        // SAFETY: a bridge outlives the pollers it is added to: the engine
        // drops every shard (and its poller) before the bridges it holds.
        unsafe {
            self.inner
                .add_waitable(&bridge.0, interest, polling::PollMode::Oneshot)
        }
    }

    pub(crate) fn rearm_bridge(&self, bridge: &Bridge, key: usize) -> io::Result<()> {
        let interest = polling::Event::readable(key);
        self.inner
            .modify_waitable(&bridge.0, interest, polling::PollMode::Oneshot)
    }
}

/// A manual-reset event object that wakes a poller from any thread.
#[derive(Debug)]
pub(crate) struct Bridge(OwnedHandle);

impl Bridge {
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: null security attributes and name are allowed; the call
        // returns a new handle or null.
        let raw = unsafe { CreateEventW(std::ptr::null(), 1, 0, std::ptr::null()) };
        if raw.is_null() {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a valid handle that nothing else owns.
        Ok(Self(unsafe { OwnedHandle::from_raw_handle(raw) }))
    }

    /// Signals the event.
    pub(crate) fn wake(&self) -> io::Result<()> {
        // SAFETY: the handle is an event object that this bridge owns.
        if unsafe { SetEvent(self.0.as_raw_handle()) } == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Resets the event after a wake-up was seen.
    pub(crate) fn drain(&self) {
        // SAFETY: as in `wake`. The result is ignored because the handle stays
        // valid for the bridge's lifetime.
        unsafe { ResetEvent(self.0.as_raw_handle()) };
    }
}

/// Tells whether the process behind `handle` has ended (its handle is signaled).
fn is_signaled(handle: RawHandle) -> io::Result<bool> {
    // SAFETY: `handle` is an open process handle with SYNCHRONIZE, borrowed
    // for the call; a zero timeout never blocks.
    match unsafe { WaitForSingleObject(handle, 0) } {
        WAIT_OBJECT_0 => Ok(true),
        WAIT_TIMEOUT => Ok(false),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Returns the exit code of the process behind `handle`, or `None` while it runs.
///
/// The signaled state decides, not the code: a process may exit with 259,
/// which GetExitCodeProcess also returns (`STILL_ACTIVE`) for a running one.
fn exit_code(handle: RawHandle) -> io::Result<Option<u32>> {
    if !is_signaled(handle)? {
        return Ok(None);
    }
    let mut code = 0;
    // SAFETY: the handle has PROCESS_QUERY_LIMITED_INFORMATION, and `code` is
    // a writable u32 that outlives the call.
    if unsafe { GetExitCodeProcess(handle, &mut code) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Some(code))
}

fn status(code: u32) -> ExitStatus {
    ExitStatus::Exited(code as i32)
}

/// Reads the exit code of a process registered with a `Child` handle. Nothing
/// is reaped on Windows, so `keep` changes nothing.
pub(crate) fn reap(watch: Option<&Watch>, pid: u32, _keep: bool) -> io::Result<Reap> {
    let opened;
    let handle = match watch {
        Some(watch) => watch.0.as_raw_handle(),
        None => match open(pid, WATCH_ACCESS) {
            Ok(handle) => {
                opened = handle;
                opened.as_raw_handle()
            }
            Err(error) if is_error(&error, ERROR_INVALID_PARAMETER) => return Ok(Reap::NotChild),
            Err(error) => return Err(error),
        },
    };
    Ok(match exit_code(handle)? {
        Some(code) => Reap::Exited(status(code), None),
        None => Reap::NotYet,
    })
}

/// Returns the exit code of any process whose handle we hold, once it has ended.
pub(crate) fn exit_info(watch: &Watch) -> Option<ExitStatus> {
    exit_code(watch.0.as_raw_handle())
        .ok()
        .flatten()
        .map(status)
}

/// Windows has no parent that reaps, so no process counts as a child here.
pub(crate) fn is_child(_watch: Option<&Watch>, _pid: u32) -> bool {
    false
}

/// Opens `pid` to tell whether it runs. An ended process whose object is still
/// held open somewhere is the Windows counterpart of a zombie.
pub(crate) fn probe(pid: u32) -> Liveness {
    match open(pid, PROCESS_SYNCHRONIZE) {
        Ok(handle) => match is_signaled(handle.as_raw_handle()) {
            Ok(true) => Liveness::Zombie,
            _ => Liveness::Running,
        },
        Err(error) if is_error(&error, ERROR_INVALID_PARAMETER) => Liveness::Gone,
        // Access denied: the process exists, but this caller may not wait on it.
        Err(_) => Liveness::Running,
    }
}

/// Thread ids are not process ids on Windows, and `open_watch` never reports a
/// thread, so there is no process to name.
pub(crate) fn thread_group(_tid: u32) -> Option<u32> {
    None
}

/// Ends the process with TerminateProcess for signal 9 (SIGKILL); no other
/// signal exists on Windows.
pub(crate) fn send_signal(watch: Option<&Watch>, pid: u32, signal: i32) -> io::Result<()> {
    if signal != SIGKILL {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("signal {signal} is not supported on Windows: only {SIGKILL} (SIGKILL), which calls TerminateProcess"),
        ));
    }
    let opened;
    let handle = match watch {
        Some(watch) => watch.0.as_raw_handle(),
        None => {
            opened = open(pid, PROCESS_TERMINATE | PROCESS_SYNCHRONIZE)?;
            opened.as_raw_handle()
        }
    };
    // SAFETY: `handle` is an open process handle for the duration of the call.
    if unsafe { TerminateProcess(handle, KILLED_EXIT_CODE) } != 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    // TerminateProcess answers ERROR_ACCESS_DENIED for a process that has ended.
    if is_error(&error, ERROR_ACCESS_DENIED) && matches!(exit_code(handle), Ok(Some(_))) {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("process {pid} has already exited"),
        ));
    }
    Err(error)
}

/// Returns the PID of the calling process.
pub(crate) fn current_pid() -> u32 {
    std::process::id()
}

/// Name of this backend, for logs.
pub(crate) const BACKEND: &str = "iocp-waitable";

/// A process handle is no descriptor, and Windows has no RLIMIT_NOFILE.
pub(crate) const WATCH_USES_DESCRIPTOR: bool = false;

/// Windows has no descriptor limit to report.
pub(crate) fn descriptor_limit() -> (Option<u64>, Option<u64>) {
    (None, None)
}

/// Does nothing: Windows has no descriptor limit to raise.
pub(crate) fn raise_descriptor_limit() -> io::Result<Option<u64>> {
    Ok(None)
}

/// Not counted; the budget ignores it when watches use no descriptors.
pub(crate) fn open_descriptors() -> Option<usize> {
    None
}

/// Always `None`: Windows keeps no exited children for a parent to collect.
pub(crate) fn peek_exited_child() -> Option<u32> {
    None
}

/// Fails: a private descriptor table is a Linux feature, and Windows watches
/// need none.
pub(crate) fn private_descriptor_table(_keep: &[&Bridge]) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "a private descriptor table needs Linux's unshare(CLONE_FILES)",
    ))
}

/// The error code closest to `EMFILE`, for messages about a full handle table.
pub(crate) const EMFILE: i32 = ERROR_TOO_MANY_OPEN_FILES as i32;

/// Windows has no request to end: both steps of a shutdown use TerminateProcess.
pub(crate) const SIGNALS_TERMINATE_KILL: (i32, i32) = (SIGKILL, SIGKILL);

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

/// Whether dropping a `Watch` also removes it from the poller. polling keeps its own registration of the handle until it is deleted.
pub(crate) const DROP_REMOVES_WATCH: bool = false;
