//! Helpers for the integration tests in `tests/tests/`: starting real
//! processes, holding each one by a pidfd so that none outlives its test, and
//! reading process state from `/proc`.
//!
//! Every helper that blocks takes a timeout and panics when it passes, so a
//! broken engine fails a test instead of hanging it.
#![cfg(target_os = "linux")]

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::pipe::PipeFlags;
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions, WaitOptions, WaitStatus};

/// Timeout for waits that are expected to end. Reaching it means that the
/// awaited event was lost, so it is not a measure of speed.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Returns a command that runs `script` with `sh -c`, with standard input
/// from `/dev/null`.
pub fn sh(script: &str) -> Command {
    let mut command = Command::new("sh");
    command.arg("-c").arg(script).stdin(Stdio::null());
    command
}

/// The state of one of our children, read with waitid(2) and `WNOWAIT` so
/// that reading it reaps nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildState {
    /// Still running (or stopped).
    Running,
    /// Exited and not yet reaped.
    Zombie,
    /// Reaped: no longer waitable.
    Reaped,
}

#[derive(Debug)]
struct Tracked {
    pid: u32,
    pidfd: OwnedFd,
    is_child: bool,
}

/// The processes one test started, each held by a pidfd.
///
/// On drop, every tracked process still running gets `SIGKILL` through its
/// pidfd, so a recycled PID is never hit. Then every tracked process that is
/// our child (or has become one) and is not yet reaped is reaped, with a
/// timeout of [`PATIENCE`].
#[derive(Debug, Default)]
pub struct Processes {
    tracked: Vec<Tracked>,
}

impl Processes {
    /// Creates an empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns `command` and tracks the child.
    ///
    /// # Panics
    ///
    /// If the spawn or pidfd_open(2) fails.
    pub fn spawn(&mut self, command: &mut Command) -> Child {
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("failed to spawn {command:?}: {error}"));
        let pid = to_pid(child.id());
        match rustix::process::pidfd_open(pid, PidfdFlags::empty()) {
            Ok(pidfd) => self.tracked.push(Tracked {
                pid: child.id(),
                pidfd,
                is_child: true,
            }),
            // A child can be gone this early only if the kernel reaped it
            // because SIGCHLD is ignored. Nothing is left to clean up then.
            Err(Errno::SRCH) => {}
            Err(error) => panic!("pidfd_open({}) failed: {error}", child.id()),
        }
        child
    }

    /// Tracks a process that is not our child, such as a grandchild, so that
    /// it is killed at the end of the test.
    ///
    /// # Panics
    ///
    /// If pidfd_open(2) fails, for example because the process is already reaped.
    pub fn track_other(&mut self, pid: u32) {
        let pidfd = rustix::process::pidfd_open(to_pid(pid), PidfdFlags::empty())
            .unwrap_or_else(|error| panic!("pidfd_open({pid}) failed: {error}"));
        self.tracked.push(Tracked {
            pid,
            pidfd,
            is_child: false,
        });
    }

    /// Returns the most recent tracked process with this PID. A PID can come
    /// back within one test once its earlier owner is reaped.
    fn latest(&self, pid: u32) -> &Tracked {
        self.tracked
            .iter()
            .rev()
            .find(|tracked| tracked.pid == pid)
            .unwrap_or_else(|| panic!("PID {pid} is not tracked"))
    }

    /// Sends `signal` to the tracked process `pid` through its pidfd.
    ///
    /// # Panics
    ///
    /// If the PID is not tracked or pidfd_send_signal(2) fails.
    pub fn signal(&self, pid: u32, signal: Signal) {
        let tracked = self.latest(pid);
        rustix::process::pidfd_send_signal(&tracked.pidfd, signal)
            .unwrap_or_else(|error| panic!("sending {signal:?} to PID {pid} failed: {error}"));
    }

    /// Returns the state of the tracked child `pid`, without reaping it.
    ///
    /// # Panics
    ///
    /// If `pid` is not a tracked child.
    pub fn child_state(&self, pid: u32) -> ChildState {
        let tracked = self.latest(pid);
        assert!(
            tracked.is_child,
            "PID {pid} is not our child, so waitid(2) cannot tell its state"
        );
        probe_child(tracked)
    }

    /// Returns the tracked children that are not reaped, with their state.
    pub fn unreaped_children(&self) -> Vec<(u32, ChildState)> {
        self.tracked
            .iter()
            .filter(|tracked| tracked.is_child)
            .map(|tracked| (tracked.pid, probe_child(tracked)))
            .filter(|(_, state)| *state != ChildState::Reaped)
            .collect()
    }
}

fn probe_child(tracked: &Tracked) -> ChildState {
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    match rustix::process::waitid(WaitId::PidFd(tracked.pidfd.as_fd()), options) {
        Ok(Some(_)) => ChildState::Zombie,
        Ok(None) => ChildState::Running,
        Err(Errno::CHILD) => ChildState::Reaped,
        Err(error) => panic!("waitid on the pidfd of PID {} failed: {error}", tracked.pid),
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for tracked in &self.tracked {
            // ESRCH only means the process has already exited.
            let _ = rustix::process::pidfd_send_signal(&tracked.pidfd, Signal::KILL);
        }
        // A process tracked as another's may have been adopted by this
        // subreaper since, so every process gets a reap attempt. For those
        // that are not our children, waitid(2) fails at once with ECHILD.
        let deadline = Instant::now() + PATIENCE;
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG;
        for tracked in &self.tracked {
            while let Ok(None) =
                rustix::process::waitid(WaitId::PidFd(tracked.pidfd.as_fd()), options)
            {
                if Instant::now() >= deadline {
                    break;
                }
                thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// A directory under the system temporary directory, removed with its
/// contents on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a new, empty directory whose name contains `label`.
    ///
    /// # Panics
    ///
    /// If the directory cannot be created.
    pub fn new(label: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "waitprocs-tests-{}-{}-{label}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        fs::create_dir_all(&path)
            .unwrap_or_else(|error| panic!("failed to create {}: {error}", path.display()));
        Self { path }
    }

    /// Returns the path of the directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// The lines a process writes to a pipe, read on a helper thread so that each
/// read can have a timeout.
#[derive(Debug)]
pub struct Lines {
    receiver: mpsc::Receiver<String>,
}

impl Lines {
    /// Starts reading `reader` on a helper thread, which ends at end of file.
    pub fn new(reader: impl Read + Send + 'static) -> Self {
        let (sender, receiver) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self { receiver }
    }

    /// Returns the next line.
    ///
    /// # Panics
    ///
    /// If no line comes within `timeout`, or the writer closed the pipe.
    pub fn next_within(&self, timeout: Duration) -> String {
        self.receiver
            .recv_timeout(timeout)
            .unwrap_or_else(|error| panic!("no line from the process within {timeout:?}: {error}"))
    }

    /// Returns the next line parsed as a PID.
    ///
    /// # Panics
    ///
    /// As [`next_within`](Self::next_within), or if the line is not a number.
    pub fn next_pid_within(&self, timeout: Duration) -> u32 {
        let line = self.next_within(timeout);
        line.trim()
            .parse()
            .unwrap_or_else(|error| panic!("expected a PID, got {line:?}: {error}"))
    }
}

/// Polls `condition` every millisecond until it holds or `timeout` passes.
/// Returns whether it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// Waits for `child` to exit and reaps it, polling with `try_wait`.
///
/// # Panics
///
/// If it has not exited within `timeout`, or waiting fails.
pub fn wait_child_within(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(1)),
            Ok(None) => panic!("PID {} did not exit within {timeout:?}", child.id()),
            Err(error) => panic!("waiting for PID {} failed: {error}", child.id()),
        }
    }
}

/// Reaps our child `pid` with waitpid(2), polling with `WNOHANG`.
///
/// # Panics
///
/// If it has not exited within `timeout`, or waitpid fails (`ECHILD`: it is
/// not our child, or someone else reaped it).
pub fn waitpid_within(pid: u32, timeout: Duration) -> WaitStatus {
    let raw = to_pid(pid);
    let deadline = Instant::now() + timeout;
    loop {
        match rustix::process::waitpid(Some(raw), WaitOptions::NOHANG) {
            Ok(Some((_, status))) => return status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(1)),
            Ok(None) => panic!("PID {pid} did not exit within {timeout:?}"),
            Err(error) => panic!("waitpid({pid}) failed: {error}"),
        }
    }
}

fn to_pid(pid: u32) -> Pid {
    i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .unwrap_or_else(|| panic!("invalid PID {pid}"))
}

/// Returns the fields of `/proc/PID/stat` (proc(5)) that follow the command
/// name, starting with the state, or `None` if no such process exists.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces and
    // parentheses, so the fields start after the last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    Some(after_name.split_whitespace().map(str::to_owned).collect())
}

/// Returns the state letter of `pid` (`R`, `S`, `T`, `Z`, ...), or `None` if
/// no such process exists.
pub fn proc_state(pid: u32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// Returns the parent PID of `pid`, or `None` if no such process exists.
pub fn proc_parent(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// Returns whether the running kernel keeps the exit status of a reaped
/// process for `PIDFD_GET_INFO` (`PIDFD_INFO_EXIT`), which Linux 6.15 added.
///
/// # Panics
///
/// If `/proc/sys/kernel/osrelease` cannot be read.
pub fn kernel_keeps_exit_status() -> bool {
    // The lane has no pidfd to ask, so it never sees a kept status.
    if forced_fallback() {
        return false;
    }
    let release = fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_else(|error| panic!("failed to read the kernel release: {error}"));
    let mut numbers = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|part| part.parse::<u32>().unwrap_or(0));
    let major = numbers.next().unwrap_or(0);
    let minor = numbers.next().unwrap_or(0);
    (major, minor) >= (6, 15)
}

/// Returns true when the environment forces every engine into the fallback
/// lane, as CI's second pass over this suite does.
pub fn forced_fallback() -> bool {
    std::env::var(waitprocs_core::BACKEND_ENV).is_ok_and(|value| value == "fallback")
}

/// Runs `command` with standard streams on `/dev/null` and returns whether it
/// exited with code 0 within [`PATIENCE`]. A command that cannot be started,
/// or that runs longer, counts as a failure and is killed.
pub fn runs_successfully(command: &mut Command) -> bool {
    let started = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = started else {
        return false;
    };
    let deadline = Instant::now() + PATIENCE;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(1)),
            _ => {
                // The child has not been reaped, so its PID cannot be reused yet.
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// Creates a pipe whose two ends are close-on-exec, so that only the children
/// given an end explicitly hold it. Returns (read end, write end).
///
/// # Panics
///
/// If pipe2(2) fails.
pub fn cloexec_pipe() -> (OwnedFd, OwnedFd) {
    rustix::pipe::pipe_with(PipeFlags::CLOEXEC)
        .unwrap_or_else(|error| panic!("pipe2 failed: {error}"))
}

/// Returns the kernel thread id of the calling thread, read from the
/// `/proc/thread-self` link (`PID/task/TID`).
///
/// # Panics
///
/// If the link cannot be read.
pub fn current_thread_id() -> u32 {
    let link = fs::read_link("/proc/thread-self")
        .unwrap_or_else(|error| panic!("failed to read /proc/thread-self: {error}"));
    link.file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.parse().ok())
        .unwrap_or_else(|| panic!("unexpected /proc/thread-self link {}", link.display()))
}

const LEADER_EXIT_C: &str = r#"#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

static void *worker(void *unused) {
    (void)unused;
    usleep(500000);
    exit(3);
}

int main(void) {
    pthread_t thread;
    if (pthread_create(&thread, NULL, worker, NULL) != 0) return 1;
    pthread_exit(NULL);
}
"#;

const LEADER_EXIT_PY: &str = "import ctypes, os, threading, time
def worker():
    time.sleep(0.5)
    os._exit(3)
threading.Thread(target=worker).start()
ctypes.CDLL(None).pthread_exit(None)
";

/// Returns the command line of a program whose main thread calls
/// pthread_exit(3) while a worker thread sleeps 500 ms and then exits the
/// process with code 3. It is a C program compiled with `cc` into `dir`, else
/// a `python3` script, or `None` if neither tool works.
///
/// # Panics
///
/// If the source cannot be written to `dir`, or the compiler runs longer
/// than 30 s.
pub fn leader_exit_program(processes: &mut Processes, dir: &TempDir) -> Option<Vec<String>> {
    let source = dir.path().join("leader_exit.c");
    let program = dir.path().join("leader_exit");
    fs::write(&source, LEADER_EXIT_C)
        .unwrap_or_else(|error| panic!("failed to write {}: {error}", source.display()));
    let compile = Command::new("cc")
        .arg("-pthread")
        .arg("-o")
        .arg(&program)
        .arg(&source)
        .stdin(Stdio::null())
        .spawn();
    if let Ok(mut compiler) = compile {
        // Tracked only so that a hung compiler is killed.
        processes.track_other(compiler.id());
        if wait_child_within(&mut compiler, PATIENCE * 3).success() {
            return Some(vec![program.to_string_lossy().into_owned()]);
        }
    }
    if runs_successfully(Command::new("python3").args(["-c", "pass"])) {
        return Some(vec![
            "python3".to_owned(),
            "-c".to_owned(),
            LEADER_EXIT_PY.to_owned(),
        ]);
    }
    None
}

/// Counts the descriptors open in this process's table, from `/proc/self/fd`,
/// without the descriptor of the directory listing itself.
///
/// Threads that gave themselves a private table (the engine's overflow
/// shards) are not counted, because `/proc/self` shows the main thread's table.
///
/// # Panics
///
/// If `/proc/self/fd` cannot be read.
pub fn open_descriptor_count() -> usize {
    let entries = fs::read_dir("/proc/self/fd")
        .unwrap_or_else(|error| panic!("failed to read /proc/self/fd: {error}"));
    entries.count().saturating_sub(1)
}

/// Returns the names of this process's threads that start with `prefix`,
/// from `/proc/self/task/TID/comm`. The kernel keeps 15 bytes of a name.
///
/// # Panics
///
/// If `/proc/self/task` cannot be read.
pub fn threads_named(prefix: &str) -> Vec<String> {
    let tasks = fs::read_dir("/proc/self/task")
        .unwrap_or_else(|error| panic!("failed to read /proc/self/task: {error}"));
    tasks
        .filter_map(|task| fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .filter(|name| name.starts_with(prefix))
        .collect()
}

/// Opens a pidfd for process `pid`, which must exist. Unlike the PID, the
/// pidfd never names a later process that reuses the number.
///
/// # Panics
///
/// If pidfd_open(2) fails.
pub fn open_pidfd(pid: u32) -> OwnedFd {
    rustix::process::pidfd_open(to_pid(pid), PidfdFlags::empty())
        .unwrap_or_else(|error| panic!("pidfd_open({pid}) failed: {error}"))
}

/// Returns the state of our child behind `pidfd`, without reaping it.
///
/// # Panics
///
/// If waitid(2) fails with anything but `ECHILD`.
pub fn pidfd_child_state(pidfd: &OwnedFd) -> ChildState {
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    match rustix::process::waitid(WaitId::PidFd(pidfd.as_fd()), options) {
        Ok(Some(_)) => ChildState::Zombie,
        Ok(None) => ChildState::Running,
        Err(Errno::CHILD) => ChildState::Reaped,
        Err(error) => panic!("waitid on a pidfd failed: {error}"),
    }
}

/// Converts a status from `std::process` into the engine's type, so the two
/// compare exactly (exit code, or signal and core-dump flag).
///
/// # Panics
///
/// If the status describes a stopped or continued process.
pub fn engine_status(status: std::process::ExitStatus) -> waitprocs_core::ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    waitprocs_core::ExitStatus::from_wait_status(status.into_raw())
        .unwrap_or_else(|| panic!("{status:?} is not the status of an ended process"))
}
