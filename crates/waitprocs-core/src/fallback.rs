//! The retry timer shared by every process a shard cannot watch with an event.
//!
//! Two kinds of processes land here: those without a kernel watch (no pidfd:
//! the fallback lane) and those whose watch fired before the exit was
//! reapable. Each has its own back-off, and the shard sleeps only until the
//! earliest one is due, so the lane costs one timer, not one sleep per process.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// First delay before a process is looked at again.
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(1);
/// Longest delay between two looks at the same process.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_millis(100);

/// Returns the delay after `previous`: doubled, within the bounds above.
pub(crate) fn next_backoff(previous: Duration) -> Duration {
    (previous * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF)
}

/// Processes waiting for their next look, earliest first.
#[derive(Debug, Default)]
pub(crate) struct RetryQueue {
    heap: BinaryHeap<Reverse<(Instant, usize, u32)>>,
}

impl RetryQueue {
    /// Schedules the entry in `slot` (of `generation`) to be looked at at `due`.
    pub(crate) fn push(&mut self, due: Instant, slot: usize, generation: u32) {
        self.heap.push(Reverse((due, slot, generation)));
    }

    /// Returns when the earliest entry is due.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((due, _, _))| *due)
    }

    /// Moves every entry due at or before `now` into `out`.
    pub(crate) fn pop_due(&mut self, now: Instant, out: &mut Vec<(usize, u32)>) {
        while let Some(Reverse((due, slot, generation))) = self.heap.peek().copied() {
            if due > now {
                break;
            }
            self.heap.pop();
            out.push((slot, generation));
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(next_backoff(Duration::ZERO), FIRST_BACKOFF);
        assert_eq!(next_backoff(FIRST_BACKOFF), Duration::from_millis(2));
        assert_eq!(next_backoff(Duration::from_millis(80)), MAX_BACKOFF);
    }

    #[test]
    fn queue_pops_in_due_order() {
        let start = Instant::now();
        let mut queue = RetryQueue::default();
        queue.push(start + Duration::from_millis(30), 3, 0);
        queue.push(start + Duration::from_millis(10), 1, 0);
        queue.push(start + Duration::from_millis(20), 2, 0);
        assert_eq!(queue.next_due(), Some(start + Duration::from_millis(10)));

        let mut out = Vec::new();
        queue.pop_due(start + Duration::from_millis(20), &mut out);
        assert_eq!(out, vec![(1, 0), (2, 0)]);
        assert_eq!(queue.len(), 1);
    }
}
