//! Handing exit events to the caller: callbacks, then the channel.

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use crossbeam_channel::{Receiver, Sender};

use crate::event::{Alive, ExitEvent, Key};

/// Most nudges pending at once; a waiter woken for nothing just looks again.
const NUDGES: usize = 64;

/// A callback run once for one process.
pub(crate) type OnExit<T> = Box<dyn FnOnce(&ExitEvent<T>) + Send>;
/// A callback run for every process of an engine.
pub(crate) type OnEveryExit<T> = Box<dyn Fn(&ExitEvent<T>) + Send + Sync>;

pub(crate) struct Delivery<T> {
    on_every_exit: Option<OnEveryExit<T>>,
    sender: Sender<ExitEvent<T>>,
    /// Registered processes whose event is not yet in the channel.
    outstanding: AtomicUsize,
    /// Held while an event is sent and counted, so that a waiter that reads
    /// `outstanding` or the registered set under it finds every sent event
    /// already in the channel.
    sending: Mutex<Registered>,
    /// Wakes a waiter blocked on the channel when `outstanding` drops without
    /// an event (a deregistration).
    nudge: (Sender<()>, Receiver<()>),
    panics: Mutex<Vec<Box<dyn Any + Send>>>,
}

impl<T> Delivery<T> {
    pub(crate) fn new(sender: Sender<ExitEvent<T>>, on_every_exit: Option<OnEveryExit<T>>) -> Self {
        Self {
            on_every_exit,
            sender,
            outstanding: AtomicUsize::new(0),
            sending: Mutex::new(Registered::default()),
            nudge: crossbeam_channel::bounded(NUDGES),
            panics: Mutex::new(Vec::new()),
        }
    }

    /// Counts a registration that will yield one event (or one deregistration).
    pub(crate) fn expect_one(&self) {
        self.outstanding.fetch_add(1, Ordering::SeqCst);
    }

    /// Records the key of a registration counted by `expect_one`. Its event
    /// may have been sent already, and then it is not recorded.
    pub(crate) fn registered(&self, key: Key, pid: u32) {
        let mut registered = self.lock();
        if !registered.sent_early.remove(&key) {
            registered.keys.insert(key, pid);
        }
    }

    /// Takes back `expect_one` for a registration that failed, or that was
    /// deregistered (`key`).
    pub(crate) fn cancel_one(&self, key: Option<Key>) {
        let mut registered = self.lock();
        self.outstanding.fetch_sub(1, Ordering::SeqCst);
        if let Some(key) = key {
            registered.keys.remove(&key);
        }
        drop(registered);
        // Full means a nudge is already pending, which is enough.
        let _ = self.nudge.0.try_send(());
    }

    /// Wakes up to `count` waiters blocked on the channel, so they look again.
    pub(crate) fn nudge(&self, count: usize) {
        for _ in 0..count.min(NUDGES) {
            // Full means enough nudges are pending already.
            let _ = self.nudge.0.try_send(());
        }
    }

    /// Returns the receiver that `cancel_one` and `nudge` signal.
    pub(crate) fn nudged(&self) -> &Receiver<()> {
        &self.nudge.1
    }

    /// Returns how many registered processes have no event in the channel yet.
    /// Every event sent before this returns is in the channel.
    pub(crate) fn outstanding(&self) -> usize {
        let _guard = self.lock();
        self.outstanding.load(Ordering::SeqCst)
    }

    /// Returns the processes registered whose event is not in the channel.
    pub(crate) fn alive(&self) -> Vec<Alive> {
        let registered = self.lock();
        registered
            .keys
            .iter()
            .map(|(&key, &pid)| Alive { key, pid })
            .collect()
    }

    /// Moves every event in `receiver` to `gone` and returns the processes
    /// still registered, with no event sent in between: each process is in
    /// exactly one of the two.
    pub(crate) fn settle(
        &self,
        receiver: &Receiver<ExitEvent<T>>,
        gone: &mut Vec<ExitEvent<T>>,
    ) -> Vec<Alive> {
        let registered = self.lock();
        gone.extend(receiver.try_iter());
        registered
            .keys
            .iter()
            .map(|(&key, &pid)| Alive { key, pid })
            .collect()
    }

    /// Returns the PIDs of the registered processes not yet reported.
    pub(crate) fn registered_pids(&self) -> HashSet<u32> {
        self.lock().keys.values().copied().collect()
    }

    /// Returns how many registered processes have not been reported.
    pub(crate) fn len(&self) -> usize {
        self.lock().keys.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registered> {
        self.sending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs the callbacks for `event`, then sends it.
    ///
    /// A panicking callback is caught and stored for `take_panic`; the event is
    /// still sent and the other callback still runs.
    pub(crate) fn deliver(&self, event: ExitEvent<T>, own: Option<OnExit<T>>) {
        if let Some(callback) = own {
            self.guard(|| callback(&event));
        }
        if let Some(callback) = &self.on_every_exit {
            self.guard(|| callback(&event));
        }
        let mut registered = self.lock();
        let key = event.key;
        // The engine keeps a receiver for as long as it exists, so the channel
        // cannot be disconnected here.
        let _ = self.sender.send(event);
        self.outstanding.fetch_sub(1, Ordering::SeqCst);
        if registered.keys.remove(&key).is_none() {
            registered.sent_early.insert(key);
        }
    }

    fn guard(&self, callback: impl FnOnce()) {
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(callback)) {
            tracing::error!(
                message = panic_message(&*payload),
                "an exit callback panicked; the engine goes on"
            );
            self.panics
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(payload);
        }
    }

    pub(crate) fn take_panic(&self) -> Option<Box<dyn Any + Send>> {
        let mut panics = self.panics.lock().unwrap_or_else(|e| e.into_inner());
        if panics.is_empty() {
            None
        } else {
            Some(panics.remove(0))
        }
    }
}

/// The registered processes whose event is not in the channel yet.
#[derive(Debug, Default)]
pub(crate) struct Registered {
    keys: HashMap<Key, u32>,
    /// Keys whose event was sent before `registered` recorded them (a process
    /// that exited while its registration was returning).
    sent_early: HashSet<Key>,
}

/// Returns the text of a panic payload, when it has one.
pub fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "a panic without a message"
    }
}

/// Logs a warning the first time the engine falls back for a given errno.
pub(crate) fn warn_fallback_once(error: &io::Error) {
    static SEEN: OnceLock<Mutex<HashSet<i32>>> = OnceLock::new();
    let code = error.raw_os_error().unwrap_or(-1);
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if seen.insert(code) {
        tracing::warn!(%error, errno = code, "cannot watch a process with a descriptor; polling it on a timer instead");
    }
}
