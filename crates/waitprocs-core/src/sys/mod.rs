//! Platform backends, chosen once here at compile time.
//!
//! # What a backend provides
//!
//! Every backend module exports the same items, and the rest of the crate uses
//! nothing else from it. All `unsafe` code of the crate lives in these modules.
//!
//! - `Poller`: one readiness queue per shard.
//!   - `Poller::new() -> io::Result<Poller>`.
//!   - `add(&self, watch: &Watch, pid: u32, key: usize) -> io::Result<()>` arms a
//!     one-shot interest in the exit of `pid`. `key` comes back in [`Ready`].
//!   - `delete(&self, watch: &Watch, pid: u32) -> io::Result<()>` removes it. It is
//!     called before the `Watch` is dropped, and a `NotFound` from it is harmless.
//!   - `wait(&self, out: &mut Vec<Ready>, timeout: Option<Duration>) -> io::Result<()>`
//!     blocks until at least one armed process has exited, `notify` was called,
//!     or the timeout passed. It appends one [`Ready`] per exit and never more
//!     than [`EVENTS_PER_TURN`]. An interrupted wait (`EINTR`) returns `Ok`.
//!   - `notify(&self) -> io::Result<()>` wakes a concurrent `wait`.
//!   - `add_bridge(&self, bridge: &Bridge, key: usize, shared: bool)` watches a
//!     bridge: one-shot, renewed by `rearm_bridge(&self, bridge, key)`, or, when
//!     `shared`, edge-triggered and never drained, so that one wake-up reaches
//!     every poller watching it. A backend may reject `shared`.
//!   - On Unix it implements `AsFd`, and the descriptor becomes readable when
//!     `wait` would return an event, so a shard can nest in another event loop.
//! - `Bridge`: a wake-up object another thread can signal (an eventfd, a pipe,
//!   an event object) with `new`, `wake` and `drain`.
//! - `Watch`: what the poller waits on for one process (a pidfd on Linux; on
//!   kqueue nothing, because the kevent is keyed by PID).
//!   - `open_watch(pid: u32) -> Result<Watch, OpenError>`.
//! - `reap(watch: Option<&Watch>, pid: u32, keep: bool) -> io::Result<Reap>` collects
//!   the exit status of a child without blocking: `WEXITED | WNOHANG`, plus `WNOWAIT`
//!   when `keep` is set so the child stays waitable for its owner. It never waits
//!   on anything but that one process.
//! - `exit_info(watch: &Watch) -> Option<ExitStatus>` returns the status of a
//!   process that is not our child, where the kernel kept it.
//! - `is_child(watch: Option<&Watch>, pid: u32) -> bool`.
//! - `probe(pid: u32) -> Liveness`, used by the fallback lane for non-children.
//! - `send_signal(watch: Option<&Watch>, pid: u32, signal: i32) -> io::Result<()>`.
//! - `thread_group(pid: u32) -> Option<u32>`: the process a thread id belongs to.
//! - `current_pid() -> u32`.
//! - `peek_exited_child() -> Option<u32>`: some zombie child, without reaping it.
//! - Descriptor limits: `WATCH_USES_DESCRIPTOR`, `descriptor_limit()`,
//!   `raise_descriptor_limit()`, `open_descriptors()` and `EMFILE`.
//! - `private_descriptor_table(keep: &[&Bridge])` gives the calling thread its
//!   own descriptor table (Linux only; others return `Unsupported`).
//! - `BACKEND`: the backend's name, for logs.
//! - `DROP_REMOVES_WATCH`: whether dropping a `Watch` whose interest fired
//!   removes it from the poller, so `delete` can be skipped.
//!
//! A backend that cannot watch a process sends it to the fallback lane by
//! returning [`OpenError::Unavailable`]; the lane then polls it with `reap` and
//! `probe` on a timer.

use std::io;

use crate::status::{ExitStatus, ResourceUsage};

/// Maximum number of readiness events taken from the kernel in one turn.
pub(crate) const EVENTS_PER_TURN: usize = 256;

/// One exited (or possibly exited) process reported by `Poller::wait`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ready {
    /// The key given to `Poller::add`. A status that comes with the event
    /// itself (kqueue's `NOTE_EXIT` data) is kept in the `Watch` instead, where
    /// `exit_info` finds it.
    pub(crate) key: usize,
}

/// The reason `open_watch` returned no watch.
#[derive(Debug)]
// The kqueue and Windows backends never report the EINVAL race or a full
// descriptor table, so some variants go unused there.
#[cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))]
pub(crate) enum OpenError {
    /// No process has this PID (any more).
    NotFound,
    /// The PID names a thread that is not the leader of its thread group.
    Thread,
    /// The process is exiting or already exited (Linux's `EINVAL` race).
    Exiting,
    /// This thread's descriptor table is full (`EMFILE`): another table may
    /// still have room.
    TableFull,
    /// No watch can be had; the fallback lane waits for the process instead.
    Unavailable {
        /// The error, for the caller to log.
        error: io::Error,
        /// `true` if no later attempt in this process can succeed either
        /// (`ENOSYS`, or `EPERM`/`EACCES` from a seccomp filter).
        permanent: bool,
    },
}

/// Result of a non-blocking `reap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reap {
    /// The child has ended; with `keep` it is still waitable by its owner.
    Exited(ExitStatus, Option<ResourceUsage>),
    /// The child is still running, or its exit is not reapable yet.
    NotYet,
    /// The process is not our child, or it was already reaped by someone else
    /// or by the kernel (`ECHILD`).
    NotChild,
}

/// The state of a process as `probe` found it, without waiting on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// kill(2), which the kqueue backend probes with, cannot tell a zombie.
#[cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))]
pub(crate) enum Liveness {
    /// The process is running (or stopped).
    Running,
    /// The process has exited and waits to be reaped by its parent.
    Zombie,
    /// No process has this PID.
    Gone,
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod linux;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) use linux::*;

#[cfg(any(
    target_os = "macos",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
))]
mod kqueue;
#[cfg(any(
    target_os = "macos",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
))]
pub(crate) use kqueue::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::*;

#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly",
    windows
)))]
compile_error!(
    "waitprocs-core has no backend for this target: it supports Linux, macOS, FreeBSD, NetBSD, OpenBSD, DragonFly BSD and Windows"
);
