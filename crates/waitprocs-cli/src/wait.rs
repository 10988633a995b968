//! `waitprocs wait`: wait for processes by PID and report each exit.

use std::collections::HashSet;
use std::io;
use std::time::{Duration, Instant};

use serde::Serialize;
use waitprocs::{Engine, ExitEvent, ExitStatus, Registration};

use crate::app::output::{self, Failure, StatusFields};
use crate::app::{WaitArgs, EXIT_FAILURE, EXIT_OK, EXIT_TIMEOUT};

/// One line of `wait --json`.
#[derive(Debug, Serialize)]
struct WaitRecord {
    pid: u32,
    #[serde(flatten)]
    status: StatusFields,
    /// Time from the start of waitprocs to the detection of the exit (or to
    /// the end of the wait, for a process still alive).
    elapsed_ms: f64,
    /// Whether the process was a child of waitprocs; null if still alive or not found.
    was_child: Option<bool>,
    /// Whether the PID had no process when waitprocs started watching it.
    not_found: bool,
}

/// The state of a process that one report line describes.
enum Outcome {
    Ended { status: ExitStatus, was_child: bool },
    NotFound,
    Alive,
}

/// Waits for the processes in `args` and returns the exit status of the command.
///
/// # Errors
///
/// - `Usage`: `--count` is above the number of distinct PIDs, or the engine
///   rejects a PID (the PID of waitprocs itself, or a thread id).
/// - `Error`: the engine fails.
/// - `OutputClosed`: standard output is closed.
pub(crate) fn wait(args: WaitArgs, started: Instant) -> Result<u8, Failure> {
    let pids = distinct(&args.pids);
    let required_exits = match (args.any, args.count) {
        (true, _) => 1,
        (false, Some(count)) => {
            let count = usize::try_from(count).unwrap_or(usize::MAX);
            if count > pids.len() {
                let distinct_pids = pids.len();
                return Err(Failure::Usage(format!(
                    "--count {count} is more than the {distinct_pids} distinct PIDs given; use a count from 1 to {distinct_pids}"
                )));
            }
            count
        }
        (false, None) => pids.len(),
    };

    let engine = Engine::<usize>::builder()
        .raise_fd_limit(true)
        .force_fallback(args.fallback)
        .nonchild_status_grace(args.status_grace)
        .build()
        .map_err(|error| Failure::Error(format!("cannot start watching processes: {error}")))?;
    let not_found = register_all(&engine, &pids)?;

    let mut reported = vec![false; pids.len()];
    let mut reported_count = 0;
    for &index in &not_found {
        let pid = pids[index];
        output::warn(format_args!(
            "PID {pid}: no such process; it may have exited already"
        ));
        report(args.json, pid, Outcome::NotFound, started.elapsed())?;
        reported[index] = true;
        reported_count += 1;
    }

    // A deadline too far to represent is no deadline.
    let deadline = args
        .timeout
        .and_then(|timeout| started.checked_add(timeout));
    let events = engine.events();
    let mut timed_out = false;
    while reported_count < required_exits && !engine.is_empty() {
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        engine
            .poll(remaining)
            .map_err(|error| Failure::Error(format!("waiting for processes failed: {error}")))?;
        for event in events.try_iter() {
            report_exit(args.json, &event, started)?;
            reported[event.data] = true;
            reported_count += 1;
        }
        // The check comes after the poll so that a zero timeout still looks once.
        let expired = deadline.is_some_and(|d| Instant::now() >= d);
        if expired && reported_count < required_exits && !engine.is_empty() {
            timed_out = true;
            break;
        }
    }

    let stopped_after = started.elapsed();
    for (index, &pid) in pids.iter().enumerate() {
        if !reported[index] {
            report(args.json, pid, Outcome::Alive, stopped_after)?;
        }
    }

    Ok(if timed_out {
        EXIT_TIMEOUT
    } else if !not_found.is_empty() {
        EXIT_FAILURE
    } else {
        EXIT_OK
    })
}

/// Returns the PIDs without repeats, in the order first given.
fn distinct(pids: &[u32]) -> Vec<u32> {
    let mut seen = HashSet::new();
    pids.iter()
        .copied()
        .filter(|pid| seen.insert(*pid))
        .collect()
}

/// Registers every PID and returns the indices of those with no process.
///
/// Every PID is tried before an error is returned, so that all PIDs the
/// engine rejects are named at once.
fn register_all(engine: &Engine<usize>, pids: &[u32]) -> Result<Vec<usize>, Failure> {
    let mut not_found = Vec::new();
    let mut rejected = Vec::new();
    for (index, &pid) in pids.iter().enumerate() {
        match engine.register(Registration::pid(pid, index)) {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => not_found.push(index),
            Err(error) if error.kind() == io::ErrorKind::InvalidInput => {
                rejected.push(format!("cannot wait for PID {pid}: {error}"));
            }
            Err(error) => return Err(Failure::Error(format!("cannot watch PID {pid}: {error}"))),
        }
    }
    if rejected.is_empty() {
        return Ok(not_found);
    }
    let last = rejected.pop().unwrap_or_default();
    for message in rejected {
        output::warn(format_args!("{message}"));
    }
    Err(Failure::Usage(last))
}

fn report_exit(json: bool, event: &ExitEvent<usize>, started: Instant) -> Result<(), Failure> {
    let outcome = Outcome::Ended {
        status: event.status,
        was_child: event.was_child,
    };
    let elapsed = event.detected_at.saturating_duration_since(started);
    report(json, event.pid, outcome, elapsed)
}

fn report(json: bool, pid: u32, outcome: Outcome, elapsed: Duration) -> Result<(), Failure> {
    if json {
        let (status, was_child, not_found) = match outcome {
            Outcome::Ended { status, was_child } => {
                (StatusFields::ended(status), Some(was_child), false)
            }
            Outcome::NotFound => (StatusFields::ended(ExitStatus::Unknown), None, true),
            Outcome::Alive => (StatusFields::alive(), None, false),
        };
        return output::print_json(&WaitRecord {
            pid,
            status,
            elapsed_ms: output::millis(elapsed),
            was_child,
            not_found,
        });
    }
    let after = output::seconds(elapsed);
    let line = match outcome {
        Outcome::Ended {
            status: ExitStatus::Unknown,
            was_child: false,
        } => format!("pid {pid}: exited (status unknown: not a child of waitprocs) after {after}"),
        Outcome::Ended {
            status: ExitStatus::Unknown,
            was_child: true,
        } => format!("pid {pid}: exited (status unknown: reaped by another waiter) after {after}"),
        Outcome::Ended { status, .. } => format!("pid {pid}: {status} after {after}"),
        Outcome::NotFound => format!("pid {pid}: gone (status unknown: no such process)"),
        Outcome::Alive => format!("pid {pid}: alive after {after}"),
    };
    output::print_line(&line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_keeps_first_order() {
        assert_eq!(distinct(&[5, 3, 5, 1, 3]), vec![5, 3, 1]);
    }
}
