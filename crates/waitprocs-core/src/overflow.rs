//! Overflow shards: pidfds past the process's descriptor limit.
//!
//! RLIMIT_NOFILE bounds descriptor numbers per descriptor table, not per
//! process. An overflow shard's thread gives itself a private table
//! (unshare(2) with `CLONE_FILES`), so each one holds up to the soft limit in
//! pidfds of its own while the host program's table stays untouched.
//!
//! Descriptor numbers mean different things on that thread, so it runs
//! nothing but its shard: the caller's data, child handles and callbacks
//! never go there. Requests arrive as [`Command`]s over a channel, with a
//! bridge eventfd to wake the thread, and exits leave as [`RawExit`]s over
//! another channel, with the engine's own bridge to wake the delivering side.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use crate::budget::Budget;
use crate::event::Key;
use crate::shard::{self, PrepareError, RawExit, Shard, ShardConfig, Target};
use crate::sys::{self, Bridge};

/// A request to an overflow shard. Each carries its reply channel.
#[derive(Debug)]
pub(crate) enum Command {
    Register {
        target: Target,
        ticket: u64,
        reply: Sender<Result<Registered, PrepareError>>,
    },
    Deregister {
        key: Key,
        reply: Sender<io::Result<(u32, u64)>>,
    },
    Signal {
        key: Key,
        signal: i32,
        reply: Sender<io::Result<()>>,
    },
}

/// The reply to a registration.
#[derive(Debug)]
pub(crate) struct Registered {
    pub(crate) key: Key,
    pub(crate) fallback: Option<io::Error>,
}

/// The engine's side of one overflow shard.
///
/// All overflow shards watch one shared bridge, so they cost two descriptors
/// of the process's table in all (that bridge and the one back to shard 0),
/// however many there are. A command wakes every overflow thread, and those
/// with no command go back to sleep.
#[derive(Debug)]
pub(crate) struct Overflow {
    commands: Sender<Command>,
    wake: Arc<Bridge>,
    budget: Arc<Budget>,
    thread: Option<JoinHandle<()>>,
}

impl Overflow {
    /// Starts the thread of an overflow shard. `config.budget` is the capacity
    /// of its private table and `config.bridge` the shared bridge that wakes it.
    /// It sends exits to `exits` and wakes `notify` after each batch.
    pub(crate) fn spawn(
        config: ShardConfig,
        exits: Sender<(u64, RawExit)>,
        notify: Arc<Bridge>,
        shutdown: Arc<AtomicBool>,
    ) -> io::Result<Self> {
        let wake = config
            .bridge
            .clone()
            .ok_or_else(|| io::Error::other("an overflow shard needs a bridge"))?;
        let budget = Arc::clone(&config.budget);
        let (commands, receiver) = crossbeam_channel::unbounded();
        let (started, started_rx) = crossbeam_channel::bounded(1);
        let thread = std::thread::Builder::new()
            .name(format!("waitprocs-overflow-{}", config.index))
            .spawn(move || {
                let channels = Channels {
                    commands: receiver,
                    exits,
                    started,
                };
                run(config, notify, channels, shutdown);
            })?;
        let overflow = Self {
            commands,
            wake,
            budget,
            thread: Some(thread),
        };
        match started_rx.recv() {
            Ok(Ok(())) => Ok(overflow),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(io::Error::other(
                "the overflow thread ended before it started",
            )),
        }
    }

    /// Takes a slot for one more process; `false` if the shard is full.
    pub(crate) fn try_reserve(&self) -> bool {
        self.budget.try_acquire()
    }

    /// Sends a command and waits for the thread to handle it.
    pub(crate) fn call<R>(&self, make: impl FnOnce(Sender<R>) -> Command) -> io::Result<R> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.commands
            .send(make(reply))
            .map_err(|_| io::Error::other("the overflow thread has stopped"))?;
        self.wake.wake()?;
        answer
            .recv()
            .map_err(|_| io::Error::other("the overflow thread has stopped"))
    }

    /// Wakes the thread so that it reads the shutdown flag, and joins it.
    pub(crate) fn stop(&mut self) {
        // If the wake-up fails the thread stays blocked, so do not join it.
        if self.wake.wake().is_ok() {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// The channels of an overflow thread.
struct Channels {
    commands: Receiver<Command>,
    exits: Sender<(u64, RawExit)>,
    started: Sender<io::Result<()>>,
}

fn run(config: ShardConfig, notify: Arc<Bridge>, channels: Channels, shutdown: Arc<AtomicBool>) {
    let Channels {
        commands,
        exits,
        started,
    } = channels;
    let Some(wake) = config.bridge.clone() else {
        return;
    };
    // From here on this thread uses only descriptors it opens itself and the
    // two bridges, which keep their numbers in the private table.
    if let Err(error) = sys::private_descriptor_table(&[&wake, &notify]) {
        let _ = started.send(Err(error));
        return;
    }
    let shard = match Shard::<u64>::new(config) {
        Ok(shard) => shard,
        Err(error) => {
            let _ = started.send(Err(error));
            return;
        }
    };
    let _ = started.send(Ok(()));

    let mut found = Vec::new();
    while !shutdown.load(Ordering::Acquire) {
        for command in commands.try_iter() {
            handle(&shard, command);
        }
        // A failing epoll_wait here can only be a bug. This thread must not
        // log, so it only slows down to avoid spinning.
        if shard.turn(None, &mut found).is_err() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if !found.is_empty() {
            let mut sent = true;
            for (exit, ticket) in found.drain(..) {
                sent &= exits.send((ticket, exit)).is_ok();
            }
            if !sent || notify.wake().is_err() {
                // The engine is gone; nothing is left to report to.
                break;
            }
        }
    }
    // The shard, its poller and every pidfd close here, on this thread,
    // because their numbers are only valid in this thread's table.
    drop(shard);
}

fn handle(shard: &Shard<u64>, command: Command) {
    match command {
        Command::Register {
            target,
            ticket,
            reply,
        } => {
            let result = shard::prepare(target, true).map(|prepared| {
                let (key, fallback) = shard.insert(target.pid, prepared, true, ticket);
                Registered { key, fallback }
            });
            if result.is_err() {
                shard.budget().release();
            }
            let _ = reply.send(result);
        }
        Command::Deregister { key, reply } => {
            let _ = reply.send(shard.deregister(key));
        }
        Command::Signal { key, signal, reply } => {
            let _ = reply.send(shard.signal(key, signal));
        }
    }
}
