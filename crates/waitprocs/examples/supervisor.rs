//! Keeps a pool of workers running for a while, restarting each one that exits
//! after a per-slot exponential back-off, then stops them all.
//!
//! The engine runs on its own thread (`Builder::threads`): its `on_exit` callback
//! logs each exit as it is reaped, and `recv_timeout` on the events channel is
//! also the restart timer. `Engine::wait` would not do, because it returns at
//! once while nothing is registered, as when every slot is backing off.
//!
//! Run it with `cargo run -p waitprocs --example supervisor -- --workers 4 --seconds 3`.

use std::io;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use waitprocs::{signal_name, Engine, ExitEvent, Key, WaitFor};

// The numbers of these signals on Linux, macOS and the BSDs. `main` checks them
// with `signal_name`, because waitprocs exports no signal constants.
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

/// Delay before the first restart of a slot, and after a worker that stayed up.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Maximum delay between two starts of the same slot.
const MAX_BACKOFF: Duration = Duration::from_millis(1600);
/// A worker that ran at least this long resets its slot's back-off.
const STABLE_AFTER: Duration = Duration::from_secs(1);
/// Time the workers get to exit after SIGTERM, before SIGKILL.
const TERM_GRACE: Duration = Duration::from_millis(500);
/// Time allowed for the exits after SIGKILL before the supervisor gives up.
const KILL_DEADLINE: Duration = Duration::from_secs(2);

/// A worker that runs `sleep "$1"` and exits with code `"$2"`. A signal sent
/// through the engine reaches only the shell, so the shell forwards SIGTERM and
/// SIGINT to its `sleep` and reaps it, instead of leaving it behind as an orphan.
const FORWARDING_WORKER: &str = r#"trap 'kill $! 2>/dev/null; wait $! 2>/dev/null; exit 143' TERM
trap 'kill $! 2>/dev/null; wait $! 2>/dev/null; exit 130' INT
sleep "$1" &
wait $!
exit "$2""#;

const USAGE: &str = "\
usage: supervisor [--workers N] [--seconds S]

Keeps N workers (default 4, at most 64) running for S seconds (default 3),
restarting each exited worker after an exponential back-off, then stops them
with SIGTERM and, after 0.5 s, SIGKILL.";

/// Behavior of a slot's worker. It depends only on the slot number and on how
/// often the slot was started, so every run shows the same mix.
#[derive(Debug, Clone, Copy)]
enum Behavior {
    /// Exits with code 1 after 0.2 s every time, so its back-off keeps doubling.
    Crashes,
    /// Exits with code 0 after 1.2 s, which is long enough to reset its back-off.
    Periodic,
    /// Fails twice, then runs until it is stopped.
    Recovers,
    /// Runs until it is stopped and ignores SIGTERM, so it needs SIGKILL.
    IgnoresTerm,
}

impl Behavior {
    fn of_slot(slot: usize) -> Self {
        match slot % 4 {
            0 => Self::Crashes,
            1 => Self::Periodic,
            2 => Self::Recovers,
            _ => Self::IgnoresTerm,
        }
    }

    fn command(self, starts: u32) -> Command {
        let (seconds, code) = match self {
            Self::Crashes => ("0.2", "1"),
            Self::Periodic => ("1.2", "0"),
            Self::Recovers if starts < 2 => ("0.1", "2"),
            Self::Recovers => ("30", "0"),
            Self::IgnoresTerm => {
                // `exec` leaves a single process, which SIGKILL ends for good.
                let mut command = Command::new("sh");
                command.args(["-c", "trap '' TERM; exec sleep 30"]);
                command.stdin(Stdio::null());
                return command;
            }
        };
        let mut command = Command::new("sh");
        command.args(["-c", FORWARDING_WORKER, "worker", seconds, code]);
        command.stdin(Stdio::null());
        command
    }
}

#[derive(Debug)]
enum State {
    Running { key: Key },
    BackingOff { until: Instant },
}

#[derive(Debug)]
struct Slot {
    behavior: Behavior,
    starts: u32,
    backoff: Duration,
    state: State,
}

#[derive(Debug)]
struct Config {
    workers: usize,
    run_time: Duration,
}

fn main() -> ExitCode {
    assert_eq!(signal_name(SIGTERM), Some("SIGTERM"));
    assert_eq!(signal_name(SIGKILL), Some("SIGKILL"));

    let config = match parse_args(std::env::args().skip(1)) {
        Ok(Some(config)) => config,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("supervisor: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("supervisor: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Parses the arguments. Returns `None` when help was requested.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Config>, String> {
    let mut config = Config {
        workers: 4,
        run_time: Duration::from_secs(3),
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--workers" => {
                let value = args.next().ok_or("missing value for --workers")?;
                config.workers = match value.parse() {
                    Ok(workers @ 1..=64) => workers,
                    _ => {
                        return Err(format!(
                            "invalid value '{value}' for --workers: use a whole number from 1 to 64"
                        ))
                    }
                };
            }
            "--seconds" => {
                let value = args.next().ok_or("missing value for --seconds")?;
                config.run_time = match value.parse::<f64>() {
                    Ok(seconds) if seconds > 0.0 && seconds <= 3600.0 => {
                        Duration::from_secs_f64(seconds)
                    }
                    _ => {
                        return Err(format!(
                            "invalid value '{value}' for --seconds: use a number above 0 and at most 3600"
                        ))
                    }
                };
            }
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(Some(config))
}

fn run(config: &Config) -> io::Result<()> {
    let started = Instant::now();
    let engine = Engine::<usize>::builder()
        .threads(true)
        .on_exit(move |exit: &ExitEvent<usize>| {
            println!(
                "{} slot {} pid {} {} after {:.2} s",
                stamp(started),
                exit.data,
                exit.pid,
                exit.status,
                exit.waited().as_secs_f64()
            );
        })
        .build()?;

    let mut slots: Vec<Slot> = (0..config.workers)
        .map(|index| Slot {
            behavior: Behavior::of_slot(index),
            starts: 0,
            backoff: Duration::ZERO,
            state: State::BackingOff { until: started },
        })
        .collect();

    // Stop the workers even when supervising failed, so that none is left behind.
    let supervised = supervise(&engine, &mut slots, started + config.run_time, started);
    let stopped = stop_all(&engine, &slots, started);
    supervised.and(stopped)
}

/// Starts due slots and handles exits until `stop_at`.
fn supervise(
    engine: &Engine<usize>,
    slots: &mut [Slot],
    stop_at: Instant,
    started: Instant,
) -> io::Result<()> {
    let events = engine.events();
    loop {
        let now = Instant::now();
        if now >= stop_at {
            return Ok(());
        }
        for (index, slot) in slots.iter_mut().enumerate() {
            if matches!(slot.state, State::BackingOff { until } if until <= now) {
                start(engine, index, slot, started)?;
            }
        }

        let next_start = slots.iter().filter_map(|slot| match slot.state {
            State::BackingOff { until } => Some(until),
            State::Running { .. } => None,
        });
        let wake_at = next_start.fold(stop_at, Instant::min);
        let exit = match events.recv_timeout(wake_at.saturating_duration_since(now)) {
            Ok(exit) => exit,
            Err(error) if error.is_timeout() => continue,
            Err(error) => return Err(io::Error::other(error)),
        };

        // The callback has already logged the exit, so this only schedules the restart.
        let slot = &mut slots[exit.data];
        let uptime = exit.waited();
        slot.backoff = if uptime >= STABLE_AFTER || slot.backoff.is_zero() {
            FIRST_BACKOFF
        } else {
            (slot.backoff * 2).min(MAX_BACKOFF)
        };
        slot.state = State::BackingOff {
            until: exit.detected_at + slot.backoff,
        };
        println!(
            "{} slot {} restarts in {:.1} s",
            stamp(started),
            exit.data,
            slot.backoff.as_secs_f64()
        );
    }
}

fn start(
    engine: &Engine<usize>,
    index: usize,
    slot: &mut Slot,
    started: Instant,
) -> io::Result<()> {
    let mut command = slot.behavior.command(slot.starts);
    slot.starts += 1;
    let child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            // A failed start counts as a crash, so it backs off like one.
            slot.backoff = (slot.backoff * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF);
            slot.state = State::BackingOff {
                until: Instant::now() + slot.backoff,
            };
            eprintln!(
                "{} slot {index}: starting sh failed: {error}; retrying in {:.1} s",
                stamp(started),
                slot.backoff.as_secs_f64()
            );
            return Ok(());
        }
    };
    let pid = child.id();
    let key = engine.register_child(child, index)?;
    slot.state = State::Running { key };
    println!(
        "{} slot {index} started pid {pid} ({:?}, start {})",
        stamp(started),
        slot.behavior,
        slot.starts
    );
    Ok(())
}

/// Sends SIGTERM to every running worker, then SIGKILL to those still running
/// after `TERM_GRACE`, and waits for all of them.
///
/// # Errors
///
/// Returns `TimedOut` if a worker is still registered `KILL_DEADLINE` after SIGKILL.
fn stop_all(engine: &Engine<usize>, slots: &[Slot], started: Instant) -> io::Result<()> {
    let running: Vec<(usize, Key)> = slots
        .iter()
        .enumerate()
        .filter_map(|(index, slot)| match slot.state {
            State::Running { key } => Some((index, key)),
            State::BackingOff { .. } => None,
        })
        .collect();
    println!(
        "{} stopping: SIGTERM to {}",
        stamp(started),
        count_workers(running.len())
    );
    for &(index, key) in &running {
        send(engine, index, key, SIGTERM);
    }

    // The callback logs the exits, so this only waits for them.
    let outcome = engine.wait(WaitFor::All, Some(TERM_GRACE))?;
    if outcome.alive.is_empty() {
        println!("{} all workers stopped", stamp(started));
        return Ok(());
    }
    println!(
        "{} still running after {:.1} s: {}; sending SIGKILL",
        stamp(started),
        TERM_GRACE.as_secs_f64(),
        count_workers(outcome.alive.len())
    );
    for alive in &outcome.alive {
        if let Some(&(index, key)) = running.iter().find(|(_, key)| *key == alive.key) {
            send(engine, index, key, SIGKILL);
        }
    }

    let outcome = engine.wait(WaitFor::All, Some(KILL_DEADLINE))?;
    if !outcome.alive.is_empty() {
        let pids: Vec<u32> = outcome.alive.iter().map(|alive| alive.pid).collect();
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "workers {pids:?} still running {:.1} s after SIGKILL; check them with ps",
                KILL_DEADLINE.as_secs_f64()
            ),
        ));
    }
    println!("{} all workers stopped", stamp(started));
    Ok(())
}

fn send(engine: &Engine<usize>, index: usize, key: Key, signal: i32) {
    match engine.signal(key, signal) {
        Ok(()) => {}
        // The worker has exited on its own in the meantime, and the engine reports it.
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => eprintln!(
            "slot {index}: sending {} failed: {error}",
            signal_name(signal).unwrap_or("a signal")
        ),
    }
}

fn count_workers(count: usize) -> String {
    match count {
        1 => "1 worker".to_owned(),
        count => format!("{count} workers"),
    }
}

/// Formats the time since the start, for log lines.
fn stamp(started: Instant) -> String {
    format!("{:6.2}s", started.elapsed().as_secs_f64())
}
