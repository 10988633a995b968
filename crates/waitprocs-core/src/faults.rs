//! Fault injection for tests: makes the next calls of a chosen system call
//! fail with a chosen errno, as if the kernel had returned it.
//!
//! Enabled by the `fault-injection` feature only, and consulted by the Linux
//! backend only. The state is process-wide, so tests that use it must not run
//! concurrently with other engine tests in the same process.

use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

/// A system call the engine makes that a fault can replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// pidfd_open(2), when a process is registered or promoted.
    PidfdOpen,
    /// epoll_ctl(2) with `EPOLL_CTL_ADD` (kevent(2) on kqueue), when a watch is armed.
    PollerAdd,
    /// waitid(2), when a child is reaped or its status read.
    Waitid,
}

const CALLS: usize = 3;

struct Slot {
    errno: AtomicI32,
    remaining: AtomicUsize,
}

static SLOTS: [Slot; CALLS] = [
    Slot {
        errno: AtomicI32::new(0),
        remaining: AtomicUsize::new(0),
    },
    Slot {
        errno: AtomicI32::new(0),
        remaining: AtomicUsize::new(0),
    },
    Slot {
        errno: AtomicI32::new(0),
        remaining: AtomicUsize::new(0),
    },
];

fn slot(call: Call) -> &'static Slot {
    &SLOTS[call as usize]
}

/// Makes the next `times` calls of `call` fail with `errno`.
pub fn fail_next(call: Call, errno: i32, times: usize) {
    let slot = slot(call);
    slot.errno.store(errno, Ordering::SeqCst);
    slot.remaining.store(times, Ordering::SeqCst);
}

/// Removes every pending fault and clears the record that pidfds were
/// unavailable, so the next test starts from a clean process.
pub fn clear() {
    for slot in &SLOTS {
        slot.remaining.store(0, Ordering::SeqCst);
    }
    crate::shard::reset_pidfd_unavailable();
}

/// Returns the errno to fail this call with, if a fault is pending for it.
pub(crate) fn take(call: Call) -> Option<i32> {
    let slot = slot(call);
    slot.remaining
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
            left.checked_sub(1)
        })
        .ok()
        .map(|_| slot.errno.load(Ordering::SeqCst))
}
