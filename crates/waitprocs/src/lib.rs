//! Wait on many processes at once, event-driven.
//!
//! [`wait_procs`] has the meaning of psutil's `wait_procs()`: wait until the
//! given processes end or a timeout passes, call a function for each one as it
//! ends, and return those gone and those still alive. Unlike psutil it does not
//! poll: every process is watched by the kernel (a pidfd in an epoll on Linux),
//! so the call sleeps until something ends and returns at the deadline.
//!
//! For long-running supervisors, use the [`Engine`] (re-exported from
//! `waitprocs-core`), which keeps watching while processes come and go.
//!
//! | platform | mechanism |
//! |---|---|
//! | Linux 5.4+ | pidfd_open(2) per process, epoll(7), waitid(2) with `P_PIDFD` |
//! | no pidfd available | waitid(2) with `P_PID` or `/proc`, on one back-off timer |
//!
//! ```
//! use std::process::Command;
//! use std::time::Duration;
//! use waitprocs::{wait_procs, ExitStatus};
//!
//! # fn main() -> std::io::Result<()> {
//! let quick = Command::new("sh").args(["-c", "exit 7"]).spawn()?;
//! let slow = Command::new("sleep").arg("30").spawn()?;
//!
//! let (gone, alive) = wait_procs([quick, slow], Some(Duration::from_millis(500)), |exit| {
//!     println!("{} {}", exit.pid, exit.status);
//! })?;
//! assert_eq!(gone[0].status, ExitStatus::Exited(7));
//! assert_eq!(alive.len(), 1);
//!
//! // Processes still alive come back with their child handle.
//! for mut process in alive {
//!     if let Some(child) = process.child.as_mut() {
//!         child.kill()?;
//!         child.wait()?;
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Caveats
//!
//! - **Non-children** are reported when they exit, but their exit status
//!   belongs to their parent: it is [`ExitStatus::Unknown`] unless the parent
//!   reaped them already and the kernel kept the status (Linux 6.15+).
//! - **PID reuse.** A PID is resolved to a process once, when `wait_procs`
//!   starts; after that the kernel follows the process itself. A PID that was
//!   reused before the call cannot be told apart from the one meant.
//! - **Already gone.** A PID with no process behind it is reported in `gone`
//!   with status `Unknown`, as psutil does for a process that vanished.
//! - **Limits.** Each watched process holds one descriptor while the call runs.
//!   Past the descriptor limit, or where pidfds are blocked, processes are
//!   polled on a back-off timer instead of failing.
//!
//! See the `waitprocs-core` documentation for the full contract.

#![warn(missing_docs)]

use std::io;
use std::process::Child;
use std::time::Duration;

pub use waitprocs_core::{
    panic_message, signal_name, Alive, Builder, Deregistered, Engine, ExitEvent, ExitStatus, Key,
    Registration, ResourceUsage, WaitFor, WaitOutcome, MAX_SHARDS,
};

/// A process given to [`wait_procs`]: a PID, or a child handle.
#[derive(Debug)]
pub enum Proc {
    /// Any process, child or not, by PID.
    Pid(u32),
    /// A child started with [`std::process::Command`]; `wait_procs` reaps it.
    Child(Child),
}

impl From<u32> for Proc {
    fn from(pid: u32) -> Self {
        Self::Pid(pid)
    }
}

impl From<Child> for Proc {
    fn from(child: Child) -> Self {
        Self::Child(child)
    }
}

/// A process that ended during [`wait_procs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gone {
    /// Position of the process in the input.
    pub index: usize,
    /// The process id.
    pub pid: u32,
    /// How it ended.
    pub status: ExitStatus,
    /// Resource usage, for children that were reaped.
    pub usage: Option<ResourceUsage>,
    /// Time from the start of the call to the detection of the exit.
    pub waited: Duration,
}

/// A process still running when [`wait_procs`] returned.
#[derive(Debug)]
pub struct StillAlive {
    /// Position of the process in the input.
    pub index: usize,
    /// The process id.
    pub pid: u32,
    /// The child handle, when the process was given as one.
    pub child: Option<Child>,
}

/// Waits for `procs` to end, for at most `timeout` (`None`: until all end).
///
/// `on_terminate` runs once for each process, on the calling thread, as soon as
/// its end is detected. Returns the processes gone, in the order they ended,
/// and those still alive, in input order. With a zero timeout it checks once
/// without blocking.
///
/// # Errors
///
/// `InvalidInput` for a PID that is 0, above `i32::MAX` or the caller's own
/// PID, found before anything is registered. `InvalidInput` for a thread id,
/// found when it is registered: children given before it are then dropped,
/// neither killed nor reaped. An error from the poller (epoll_create1(2),
/// epoll_wait(2)) is returned as is.
///
/// # Panics
///
/// If `on_terminate` panics, the panic propagates. The processes still
/// watched are then dropped: children are neither killed nor reaped.
pub fn wait_procs<P>(
    procs: impl IntoIterator<Item = P>,
    timeout: Option<Duration>,
    mut on_terminate: impl FnMut(&Gone),
) -> io::Result<(Vec<Gone>, Vec<StillAlive>)>
where
    P: Into<Proc>,
{
    let procs: Vec<Proc> = procs.into_iter().map(Into::into).collect();
    // Check what can be checked before anything is registered, so a bad PID
    // does not leave earlier children registered and then dropped.
    let own_pid = std::process::id();
    for proc in &procs {
        if let Proc::Pid(pid) = *proc {
            if pid == 0 || pid > i32::MAX as u32 || pid == own_pid {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "invalid PID {pid}: use the PID of another process, 1 to {}",
                        i32::MAX
                    ),
                ));
            }
        }
    }

    let engine = Engine::<usize>::builder().build()?;
    let started = std::time::Instant::now();
    let mut gone = Vec::new();

    for (index, proc) in procs.into_iter().enumerate() {
        let (pid, registration) = match proc {
            Proc::Pid(pid) => (pid, Registration::pid(pid, index)),
            Proc::Child(child) => (child.id(), Registration::child(child, index)),
        };
        match engine.register(registration) {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                let exit = Gone {
                    index,
                    pid,
                    status: ExitStatus::Unknown,
                    usage: None,
                    waited: started.elapsed(),
                };
                on_terminate(&exit);
                gone.push(exit);
            }
            Err(error) => return Err(error),
        }
    }

    // A deadline too far to represent is no deadline.
    let deadline = timeout.and_then(|timeout| started.checked_add(timeout));
    loop {
        let remaining = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
        let outcome = engine.wait(WaitFor::Any, remaining)?;
        for event in outcome.gone {
            let exit = Gone {
                index: event.data,
                pid: event.pid,
                status: event.status,
                usage: event.usage,
                waited: event.detected_at.saturating_duration_since(started),
            };
            on_terminate(&exit);
            gone.push(exit);
        }
        let expired = deadline.is_some_and(|d| std::time::Instant::now() >= d);
        if outcome.alive.is_empty() || expired {
            break;
        }
    }

    let mut alive: Vec<StillAlive> = engine
        .alive()
        .into_iter()
        .filter_map(|entry| engine.deregister(entry.key).ok())
        .map(|removed| StillAlive {
            index: removed.data,
            pid: removed.pid,
            child: removed.child,
        })
        .collect();
    alive.sort_by_key(|process| process.index);
    Ok((gone, alive))
}
