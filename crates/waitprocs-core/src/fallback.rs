//! The retry timer shared by every process a shard cannot watch with an
//! event, and the set of processes in the fallback lane.
//!
//! Two kinds of processes land here: those without a kernel watch (no pidfd:
//! the fallback lane) and those whose watch fired before the exit was
//! reapable. Each has its own back-off, and the shard sleeps only until the
//! earliest one is due, so the lane costs one timer, not one sleep per process.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
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

/// The facts the lane keeps about one of its entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LaneEntry {
    /// The PID, if the process is a child of this process.
    pub(crate) child: Option<u32>,
    /// Whether the entry may move to a pidfd when descriptors free up.
    pub(crate) promotable: bool,
}

/// The slots of a shard's processes that have no watch. The children among
/// them are also indexed by PID, so that the zombie a peek names is found
/// without a scan. The entries that need a look on every tick are counted,
/// so that a tick can skip the scan when there are none.
#[derive(Debug, Default)]
pub(crate) struct Lane {
    slots: HashSet<usize>,
    /// A child's PID cannot be reused before it is reaped, so it names one
    /// child, but the same child may be registered more than once.
    children: HashMap<u32, Vec<usize>>,
    /// Entries that are not children: their state is read on every tick.
    others: usize,
    promotable: usize,
}

impl Lane {
    /// Adds the entry in `slot`.
    pub(crate) fn insert(&mut self, slot: usize, entry: LaneEntry) {
        if !self.slots.insert(slot) {
            return;
        }
        match entry.child {
            Some(pid) => self.children.entry(pid).or_default().push(slot),
            None => self.others += 1,
        }
        self.promotable += usize::from(entry.promotable);
    }

    /// Removes the entry in `slot`, if it is in the lane. `entry` must be
    /// what [`Lane::insert`] was given for it.
    pub(crate) fn remove(&mut self, slot: usize, entry: LaneEntry) {
        if !self.slots.remove(&slot) {
            return;
        }
        self.promotable -= usize::from(entry.promotable);
        let Some(pid) = entry.child else {
            self.others -= 1;
            return;
        };
        if let Some(slots) = self.children.get_mut(&pid) {
            slots.retain(|&other| other != slot);
            if slots.is_empty() {
                self.children.remove(&pid);
            }
        }
    }

    /// Returns the slots of the lane children with process ID `pid`.
    pub(crate) fn children_with_pid(&self, pid: u32) -> &[usize] {
        self.children.get(&pid).map_or(&[], Vec::as_slice)
    }

    /// Returns the number of distinct children in the lane.
    pub(crate) fn child_count(&self) -> usize {
        self.children.len()
    }

    /// Returns whether some entries are not children.
    pub(crate) fn has_others(&self) -> bool {
        self.others > 0
    }

    /// Returns whether some entries may move to a pidfd.
    pub(crate) fn has_promotable(&self) -> bool {
        self.promotable > 0
    }

    pub(crate) fn slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.slots.iter().copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_indexes_children_by_pid() {
        let child = |pid| LaneEntry {
            child: Some(pid),
            promotable: false,
        };
        let mut lane = Lane::default();
        lane.insert(3, child(100));
        lane.insert(7, child(100));
        assert_eq!(lane.len(), 2);
        assert_eq!(lane.children_with_pid(100), &[3, 7]);
        assert_eq!(lane.child_count(), 1);
        assert!(lane.children_with_pid(101).is_empty());

        lane.remove(3, child(100));
        assert_eq!(lane.children_with_pid(100), &[7]);
        lane.remove(7, child(100));
        assert!(lane.children_with_pid(100).is_empty());
        assert!(lane.children.is_empty(), "no empty list is left behind");
        assert!(lane.is_empty());
    }

    #[test]
    fn lane_counts_others_and_promotable() {
        let other = LaneEntry {
            child: None,
            promotable: true,
        };
        let child = LaneEntry {
            child: Some(100),
            promotable: false,
        };
        let mut lane = Lane::default();
        lane.insert(1, other);
        lane.insert(2, child);
        assert!(lane.has_others());
        assert!(lane.has_promotable());

        // A second insert of the same slot, or a removal of a slot that is
        // not in the lane, leaves the counts alone.
        lane.insert(1, other);
        lane.remove(9, other);
        assert_eq!(lane.len(), 2);

        lane.remove(1, other);
        assert!(!lane.has_others());
        assert!(!lane.has_promotable());
        assert_eq!(lane.children_with_pid(100), &[2]);
    }

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
