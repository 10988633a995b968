//! The descriptor budget: how many pidfds the engine may hold in the
//! process's own descriptor table.
//!
//! The budget is the soft RLIMIT_NOFILE minus the descriptors already open
//! when the engine starts, minus a headroom left to the host program. Every
//! shard that uses the process's table draws from this one pool, so no share
//! is stranded on a quiet shard. Past the budget, processes go to overflow
//! shards, whose threads have descriptor tables of their own.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::sys;

/// Headroom used when the builder sets none: a quarter of the soft limit, at
/// least 32 descriptors.
pub(crate) fn default_headroom(soft_limit: usize) -> usize {
    (soft_limit / 4).max(32)
}

/// Descriptors an overflow table keeps for itself: stdin, stdout, stderr,
/// two bridges, the epoll instance and its notifier, and a margin.
pub(crate) const OVERFLOW_RESERVED: usize = 16;

#[derive(Debug)]
pub(crate) struct Budget {
    limit: usize,
    used: AtomicUsize,
    /// Soft RLIMIT_NOFILE when the engine started (`usize::MAX` if unlimited).
    soft_limit: usize,
}

impl Budget {
    /// Derives the budget from the current soft limit. `headroom` overrides the default.
    pub(crate) fn from_limits(headroom: Option<usize>) -> Self {
        let soft_limit = sys::descriptor_limit().0.map_or(usize::MAX, |soft| {
            usize::try_from(soft).unwrap_or(usize::MAX)
        });
        let open = sys::open_descriptors().unwrap_or(0);
        let headroom = headroom.unwrap_or_else(|| default_headroom(soft_limit.min(1 << 20)));
        let limit = if sys::WATCH_USES_DESCRIPTOR {
            soft_limit.saturating_sub(open).saturating_sub(headroom)
        } else {
            usize::MAX
        };
        Self::with_limit(limit, soft_limit)
    }

    pub(crate) fn with_limit(limit: usize, soft_limit: usize) -> Self {
        Self {
            limit,
            used: AtomicUsize::new(0),
            soft_limit,
        }
    }

    /// Takes one descriptor from the budget; `false` if it is spent.
    pub(crate) fn try_acquire(&self) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < self.limit).then_some(used + 1)
            })
            .is_ok()
    }

    /// Returns whether [`Budget::try_acquire`] would succeed now.
    pub(crate) fn has_room(&self) -> bool {
        self.used.load(Ordering::Acquire) < self.limit
    }

    /// Returns one descriptor to the budget.
    pub(crate) fn release(&self) {
        self.used.fetch_sub(1, Ordering::AcqRel);
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Returns how many pidfds one overflow table can take, or 0 if the soft
    /// limit is too small for overflow tables to help.
    pub(crate) fn overflow_capacity(&self) -> usize {
        if !sys::WATCH_USES_DESCRIPTOR {
            return 0;
        }
        self.soft_limit
            .min(1 << 20)
            .saturating_sub(OVERFLOW_RESERVED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_stops_at_limit() {
        let budget = Budget::with_limit(2, 64);
        assert!(budget.try_acquire());
        assert!(budget.try_acquire());
        assert!(!budget.try_acquire());
        budget.release();
        assert!(budget.try_acquire());
    }

    #[test]
    fn headroom_default_has_floor() {
        assert_eq!(default_headroom(64), 32);
        assert_eq!(default_headroom(1024), 256);
    }
}
