//! Keys and exit events.

use std::fmt;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::status::{ExitStatus, ResourceUsage};

/// Identifies one registration in an [`Engine`](crate::Engine).
///
/// A key carries the id of its engine, so another engine rejects it, and a
/// generation number, so a key is not handed out again until 2^24
/// (16,777,216) later registrations have been made on the same shard. A
/// stale key therefore does not address a newer process.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    engine: u32,
    raw: u64,
}

impl Key {
    const SLOT_BITS: u32 = 32;
    const SHARD_BITS: u32 = 8;

    pub(crate) fn new(engine: u32, shard: usize, slot: usize, generation: u32) -> Self {
        debug_assert!(shard < 1 << Self::SHARD_BITS);
        debug_assert!(slot <= u32::MAX as usize);
        let generation = u64::from(generation & ((1 << 24) - 1));
        let raw = (generation << (Self::SLOT_BITS + Self::SHARD_BITS))
            | ((shard as u64) << Self::SLOT_BITS)
            | slot as u64;
        Key { engine, raw }
    }

    /// Rebuilds a key of `engine` from the number `as_u64` returned.
    pub(crate) fn from_raw(engine: u32, raw: u64) -> Self {
        Key { engine, raw }
    }

    pub(crate) fn engine(self) -> u32 {
        self.engine
    }

    pub(crate) fn shard(self) -> usize {
        ((self.raw >> Self::SLOT_BITS) & ((1 << Self::SHARD_BITS) - 1)) as usize
    }

    pub(crate) fn slot(self) -> usize {
        (self.raw & u64::from(u32::MAX)) as usize
    }

    pub(crate) fn generation(self) -> u32 {
        (self.raw >> (Self::SLOT_BITS + Self::SHARD_BITS)) as u32
    }

    /// Returns the key as a number, unique within its engine, for logs and
    /// serialization.
    pub fn as_u64(self) -> u64 {
        self.raw
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Key({}:{}:{}:{})",
            self.engine,
            self.shard(),
            self.slot(),
            self.generation()
        )
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.raw)
    }
}

/// The report of one process's exit. Each registered process yields exactly
/// one, unless it is deregistered first.
#[derive(Debug)]
pub struct ExitEvent<T = ()> {
    /// The key returned at registration.
    pub key: Key,
    /// The process id.
    pub pid: u32,
    /// The way the process ended.
    pub status: ExitStatus,
    /// Resource usage, for children the engine reaped; `None` otherwise.
    pub usage: Option<ResourceUsage>,
    /// When the process was registered.
    pub registered_at: Instant,
    /// When the engine detected the exit.
    pub detected_at: Instant,
    /// Whether the process was a child of the caller (and so its status exact).
    pub was_child: bool,
    /// The caller's data given at registration.
    pub data: T,
    /// The child handle of a child registered with
    /// [`keep_status`](crate::Registration::keep_status), so that its owner
    /// can reap it (`Child::wait` returns at once). `None` otherwise.
    pub child: Option<Child>,
}

impl<T> ExitEvent<T> {
    /// Returns the time from registration to the detection of the exit.
    pub fn waited(&self) -> Duration {
        self.detected_at
            .saturating_duration_since(self.registered_at)
    }
}

/// A registered process that had not exited when a wait returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Alive {
    /// The key returned at registration.
    pub key: Key,
    /// The process id.
    pub pid: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trip() {
        let key = Key::new(3, 7, 123_456, 0xABCDEF);
        assert_eq!(key.engine(), 3);
        assert_eq!(key.shard(), 7);
        assert_eq!(key.slot(), 123_456);
        assert_eq!(key.generation(), 0xABCDEF);
    }
}
