//! Waits on many processes at once and reports, per process, the moment it
//! ends and how.
//!
//! | platform | mechanism |
//! |---|---|
//! | Linux 5.4+ | one pidfd per process (pidfd_open(2)), one epoll(7) per shard, waitid(2) with `P_PIDFD` |
//! | anywhere a pidfd cannot be had | the fallback lane: waitid(2) with `P_PID` for children, `/proc` for others, on one back-off timer |
//!
//! An [`Engine`] takes processes, children of the caller or not, and reports
//! each exit exactly once: to an optional callback, then as an [`ExitEvent`]
//! on a channel that [`Engine::wait`] and [`Engine::events`] read. It never
//! reaps a process it was not given: no `waitpid(-1)`, and `P_ALL` only with
//! `WNOWAIT`, which leaves every status in place.
//!
//! ```
//! use std::process::Command;
//! use std::time::Duration;
//! use waitprocs_core::{Engine, ExitStatus, WaitFor};
//!
//! # fn main() -> std::io::Result<()> {
//! let engine = Engine::<&str>::builder().build()?;
//! engine.register_child(Command::new("sh").args(["-c", "exit 3"]).spawn()?, "three")?;
//! engine.register_child(Command::new("true").spawn()?, "true")?;
//!
//! let outcome = engine.wait(WaitFor::All, Some(Duration::from_secs(10)))?;
//! assert!(outcome.alive.is_empty());
//! for exit in &outcome.gone {
//!     match exit.data {
//!         "three" => assert_eq!(exit.status, ExitStatus::Exited(3)),
//!         _ => assert!(exit.status.success()),
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Driving the engine
//!
//! By default the caller drives the engine: [`Engine::poll`] and
//! [`Engine::wait`] run the dispatch on the calling thread, and the engine's
//! descriptor (`AsFd`) can be added to another event loop. With
//! [`Builder::threads`] each shard has its own dispatch thread instead, and
//! callbacks run there.
//!
//! # Caveats
//!
//! - **Non-children.** A process that is not a child of the caller is reported
//!   when it exits (when it becomes a zombie), but its exit status belongs to
//!   its parent. The status is [`ExitStatus::Unknown`] unless the parent has
//!   already reaped it and the kernel kept the status for the pidfd
//!   (`PIDFD_GET_INFO`, Linux 6.15 and later). Resource usage is never known
//!   for non-children.
//! - **Children reaped elsewhere.** A child that someone else reaps first, or
//!   that the kernel reaps because `SIGCHLD` is ignored, is still reported;
//!   its status is known only where the kernel kept it (as above).
//! - **PID reuse.** A process registered by PID is identified by that PID only
//!   at registration; from then on the pidfd follows the process itself. A PID
//!   that was reused just before registration cannot be told apart. Processes
//!   in the fallback lane are followed by PID and share that risk for
//!   non-children; a child's PID cannot be reused until it is reaped.
//! - **Threads.** A thread id that is not a thread-group leader is rejected.
//!   A process is reported only when all its threads have ended.
//! - **Limits.** Each watched process holds one descriptor. When descriptors run
//!   out (`EMFILE`, `ENFILE`) or pidfds are unavailable (`ENOSYS`, or `EPERM`
//!   from a seccomp filter), the process goes to the fallback lane instead of
//!   failing. A seccomp filter that kills the process on `pidfd_open` cannot
//!   be survived.
//! - **Dropping the engine** stops watching: registered children are neither
//!   killed nor reaped.

#![warn(missing_docs)]

mod budget;
mod delivery;
mod dispatch;
mod engine;
mod event;
mod fallback;
#[cfg(all(
    feature = "fault-injection",
    any(target_os = "linux", target_os = "android")
))]
pub mod faults;
mod overflow;
mod shard;
mod status;
mod sys;

pub use delivery::panic_message;

/// Returns the start time of process `pid`, an opaque number that stays the
/// same for the life of the process and differs for a later process that
/// reuses the PID. On Linux it is the start time in clock ticks since boot
/// (`/proc/PID/stat`, field 22). Pass it to
/// [`Registration::expect_start_time`].
///
/// # Errors
///
/// `NotFound` if no process has this PID; `Unsupported` on platforms other
/// than Linux.
pub fn process_start_time(pid: u32) -> std::io::Result<u64> {
    sys::start_time(pid)
}

/// The channel types of [`Engine::events`], from `crossbeam-channel`.
pub mod channel {
    pub use crossbeam_channel::{Receiver, RecvError, RecvTimeoutError, TryRecvError};
}
pub use engine::{
    Builder, Deregistered, Engine, Registration, Stats, WaitFor, WaitOutcome, BACKEND_ENV,
    KILL_WAIT, MAX_SHARDS,
};
pub use event::{Alive, ExitEvent, Key};
pub use status::{signal_name, ExitStatus, ResourceUsage};
