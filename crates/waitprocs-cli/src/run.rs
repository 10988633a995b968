//! `waitprocs run`: run jobs at most N at a time and report each exit.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::num::NonZeroUsize;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use serde::Serialize;
use signal_hook::iterator::{Handle, Signals};
use waitprocs::{Engine, ExitEvent, ExitStatus, Key, Registration};

use crate::app::jobs::{self, Job};
use crate::app::output::{self, Failure, StatusFields};
use crate::app::{signals, RunArgs, EXIT_FAILURE, EXIT_OK};

/// One line of `run --json`.
#[derive(Debug, Serialize)]
struct JobRecord<'a> {
    /// Position of the job among all jobs, from 1.
    job: usize,
    /// Line of the job file, from 1; null for a command given after `--`.
    line: Option<usize>,
    command: &'a str,
    pid: Option<u32>,
    #[serde(flatten)]
    status: StatusFields,
    /// Time from the start of the job to the detection of its exit.
    elapsed_ms: Option<f64>,
    /// Time from the start of waitprocs to the start of the job.
    start_ms: f64,
    timed_out: bool,
    sigkill_sent: bool,
    user_ms: Option<f64>,
    system_ms: Option<f64>,
    max_rss_kib: Option<u64>,
    /// The reason the job could not be started.
    error: Option<String>,
}

/// A job whose process is running (or has exited and is not reported yet).
#[derive(Debug)]
struct Active {
    key: Key,
    pid: u32,
    started: Instant,
    term_sent: Option<Instant>,
    kill_sent: Option<Instant>,
}

/// Running jobs by index, shared with the thread that passes signals on.
type ActiveJobs = Mutex<BTreeMap<usize, Active>>;

/// Counts for the closing summary.
#[derive(Debug, Default)]
struct Tally {
    succeeded: usize,
    failed: usize,
    timed_out: usize,
    failed_to_start: usize,
    not_started: usize,
}

/// Runs the jobs of `args` and returns the exit status of the command.
///
/// # Errors
///
/// `Error` if the job file cannot be read, signal handlers cannot be
/// installed or the engine fails; `OutputClosed` if standard output is closed.
pub(crate) fn run(args: RunArgs, started: Instant) -> Result<u8, Failure> {
    let jobs = load_jobs(&args)?;
    if jobs.is_empty() {
        output::warn(format_args!("no jobs to run"));
        return Ok(EXIT_OK);
    }
    let limit = match args.jobs {
        Some(limit) => limit as usize,
        None => thread::available_parallelism().map_or(1, NonZeroUsize::get),
    };
    let engine = Engine::<usize>::builder()
        .build()
        .map_err(|error| Failure::Error(format!("cannot start watching processes: {error}")))?;
    // Handlers go in before the first job starts, so that no job can miss a signal.
    let mut catcher = Signals::new(signals::forwarded())
        .map_err(|error| Failure::Error(format!("cannot install signal handlers: {error}")))?;
    let interrupted = AtomicI32::new(0);
    let active: ActiveJobs = Mutex::new(BTreeMap::new());

    let mut runner = Runner {
        jobs: &jobs,
        limit,
        timeout: args.timeout,
        kill_after: args.kill_after,
        json: args.json,
        started,
        engine: &engine,
        active: &active,
        interrupted: &interrupted,
        tally: Tally::default(),
    };
    let result = thread::scope(|scope| {
        let _closer = CloseOnDrop(catcher.handle());
        let (engine, active, interrupted) = (&engine, &active, &interrupted);
        scope.spawn(move || {
            for signal in catcher.forever() {
                pass_on(signal, engine, active, interrupted);
            }
        });
        runner.drive()
    });
    result?;

    let tally = runner.tally;
    output::warn(format_args!("{}", summary(jobs.len(), &tally)));
    let signal = interrupted.load(Ordering::SeqCst);
    if signal != 0 {
        return Ok(signals::end_by(signal));
    }
    Ok(if tally.failed == 0 {
        EXIT_OK
    } else {
        EXIT_FAILURE
    })
}

fn load_jobs(args: &RunArgs) -> Result<Vec<Job>, Failure> {
    let Some(path) = &args.file else {
        return Ok(vec![Job::direct(args.command.clone())]);
    };
    let contents = if path == Path::new("-") {
        let mut contents = Vec::new();
        io::stdin()
            .lock()
            .read_to_end(&mut contents)
            .map(|_| contents)
    } else {
        fs::read(path)
    };
    let contents = contents.map_err(|error| {
        Failure::Error(format!(
            "cannot read job file '{}': {error}",
            path.display()
        ))
    })?;
    Ok(jobs::parse_job_file(&contents))
}

/// Closes the signal iterator when the scope ends, even by a panic, so that
/// the forwarding thread returns and the scope can join it.
struct CloseOnDrop(Handle);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

struct Runner<'a> {
    jobs: &'a [Job],
    limit: usize,
    timeout: Option<Duration>,
    kill_after: Duration,
    json: bool,
    started: Instant,
    engine: &'a Engine<usize>,
    active: &'a ActiveJobs,
    interrupted: &'a AtomicI32,
    tally: Tally,
}

impl Runner<'_> {
    /// Starts jobs while there is room, and reports exits until none is left.
    fn drive(&mut self) -> Result<(), Failure> {
        let events = self.engine.events();
        let mut next = 0;
        loop {
            while next < self.jobs.len() && self.has_room() && !self.is_interrupted() {
                self.start(next)?;
                next += 1;
            }
            if lock(self.active).is_empty() {
                break;
            }

            let wake_at = self.next_deadline();
            let timeout = wake_at.map(|at| at.saturating_duration_since(Instant::now()));
            self.engine
                .poll(timeout)
                .map_err(|error| Failure::Error(format!("waiting for jobs failed: {error}")))?;
            for event in events.try_iter() {
                let removed = lock(self.active).remove(&event.data);
                if let Some(active) = removed {
                    self.report_exit(&event, &active)?;
                }
            }
            self.enforce_timeouts(Instant::now());
        }
        self.tally.not_started = self.jobs.len() - next;
        Ok(())
    }

    fn has_room(&self) -> bool {
        lock(self.active).len() < self.limit
    }

    fn is_interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst) != 0
    }

    /// Starts job `index` and hands its process to the engine, or reports why
    /// it could not start.
    fn start(&mut self, index: usize) -> Result<(), Failure> {
        let job = &self.jobs[index];
        let mut command = job.command();
        // Its own process group lets a timeout or a forwarded signal reach
        // the commands a shell job started, not only the shell.
        command.stdin(Stdio::null()).process_group(0);
        let job_started = Instant::now();
        let child = match command.spawn() {
            Ok(child) => child,
            Err(error) => return self.report_failed_start(index, job_started, &error),
        };
        let pid = child.id();
        let key = self
            .engine
            .register(Registration::child(child, index))
            .map_err(|error| {
                // NOTE: a failed registration drops the Child, which leaves
                // this job running unreaped. The engine documents such a
                // failure for a fresh child only as an internal fault.
                Failure::Error(format!(
                    "cannot watch job {} [pid {pid}]: {error}",
                    index + 1
                ))
            })?;

        let mut active = lock(self.active);
        active.insert(
            index,
            Active {
                key,
                pid,
                started: job_started,
                term_sent: None,
                kill_sent: None,
            },
        );
        // A signal caught between the check in `drive` and the insert above
        // was passed on to the other jobs only, so pass it on here.
        let signal = self.interrupted.load(Ordering::SeqCst);
        if let Some(signal) = Signal::from_named_raw(signal) {
            if let Err(error) = signal_job(self.engine, key, pid, signal) {
                warn_signal(index, pid, signal, &error);
            }
        }
        Ok(())
    }

    /// Returns the earliest time a running job is due for SIGTERM or SIGKILL.
    fn next_deadline(&self) -> Option<Instant> {
        let timeout = self.timeout?;
        lock(self.active)
            .values()
            .filter_map(|active| match (active.term_sent, active.kill_sent) {
                (None, _) => Some(active.started + timeout),
                (Some(term_sent), None) => Some(term_sent + self.kill_after),
                (Some(_), Some(_)) => None,
            })
            .min()
    }

    /// Sends SIGTERM to jobs past their timeout, and SIGKILL to those still
    /// running `kill_after` later.
    fn enforce_timeouts(&self, now: Instant) {
        let Some(timeout) = self.timeout else {
            return;
        };
        let mut active = lock(self.active);
        for (&index, job) in active.iter_mut() {
            let signal = match job.term_sent {
                None if now >= job.started + timeout => {
                    job.term_sent = Some(now);
                    Signal::TERM
                }
                Some(term_sent)
                    if job.kill_sent.is_none() && now >= term_sent + self.kill_after =>
                {
                    job.kill_sent = Some(now);
                    Signal::KILL
                }
                _ => continue,
            };
            if let Err(error) = signal_job(self.engine, job.key, job.pid, signal) {
                warn_signal(index, job.pid, signal, &error);
            }
        }
    }

    fn report_exit(&mut self, event: &ExitEvent<usize>, active: &Active) -> Result<(), Failure> {
        let index = event.data;
        let job = &self.jobs[index];
        let timed_out = active.term_sent.is_some();
        let elapsed = event.detected_at.saturating_duration_since(active.started);
        let succeeded = event.status.success() && !timed_out;
        if succeeded {
            self.tally.succeeded += 1;
        } else {
            self.tally.failed += 1;
        }
        if timed_out {
            self.tally.timed_out += 1;
        }

        if self.json {
            let usage = event.usage.as_ref();
            return output::print_json(&JobRecord {
                job: index + 1,
                line: job.line,
                command: &job.display,
                pid: Some(event.pid),
                status: StatusFields::ended(event.status),
                elapsed_ms: Some(output::millis(elapsed)),
                start_ms: output::millis(active.started.saturating_duration_since(self.started)),
                timed_out,
                sigkill_sent: active.kill_sent.is_some(),
                user_ms: usage.map(|usage| output::millis(usage.user_time)),
                system_ms: usage.map(|usage| output::millis(usage.system_time)),
                max_rss_kib: usage.map(|usage| usage.max_rss_bytes / 1024),
                error: None,
            });
        }

        let mut line = format!("job {} [pid {}] `{}`: ", index + 1, event.pid, job.display);
        if let Some(term_sent) = active.term_sent {
            let since_start =
                |at: Instant| output::seconds(at.saturating_duration_since(active.started));
            line.push_str(&format!(
                "timed out (SIGTERM after {}",
                since_start(term_sent)
            ));
            if let Some(kill_sent) = active.kill_sent {
                line.push_str(&format!(", SIGKILL after {}", since_start(kill_sent)));
            }
            line.push_str("); ");
        }
        match event.status {
            // NOTE: a child's status is unknown only if the kernel reaped it
            // first (waitprocs inherited SIGCHLD ignored) and, being older
            // than Linux 6.15, kept no status for the pidfd.
            ExitStatus::Unknown => {
                line.push_str("exited (status unknown: reaped before waitprocs)")
            }
            status => line.push_str(&status.to_string()),
        }
        line.push_str(&format!(" after {}", output::seconds(elapsed)));
        output::print_line(&line)
    }

    fn report_failed_start(
        &mut self,
        index: usize,
        started: Instant,
        error: &io::Error,
    ) -> Result<(), Failure> {
        self.tally.failed += 1;
        self.tally.failed_to_start += 1;
        let job = &self.jobs[index];
        if self.json {
            return output::print_json(&JobRecord {
                job: index + 1,
                line: job.line,
                command: &job.display,
                pid: None,
                status: StatusFields::failed_to_start(),
                elapsed_ms: None,
                start_ms: output::millis(started.saturating_duration_since(self.started)),
                timed_out: false,
                sigkill_sent: false,
                user_ms: None,
                system_ms: None,
                max_rss_kib: None,
                error: Some(error.to_string()),
            });
        }
        output::print_line(&format!(
            "job {} `{}`: failed to start: {error}",
            index + 1,
            job.display
        ))
    }
}

/// Passes a caught signal on to every running job; `drive` then starts no new job.
fn pass_on(signal: i32, engine: &Engine<usize>, active: &ActiveJobs, interrupted: &AtomicI32) {
    let _ = interrupted.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
    let Some(signal) = Signal::from_named_raw(signal) else {
        return;
    };
    let active = lock(active);
    output::warn(format_args!(
        "received {}: passing it on to {} running jobs, starting no new ones",
        signal_name(signal),
        active.len()
    ));
    for (&index, job) in active.iter() {
        if let Err(error) = signal_job(engine, job.key, job.pid, signal) {
            warn_signal(index, job.pid, signal, &error);
        }
    }
}

/// Sends `signal` to a job's process through its pidfd, then to the job's
/// process group.
///
/// The job must not have been reported yet: until then its process is not
/// reaped, so its PID, which is also the group id, cannot name anything else.
fn signal_job(engine: &Engine<usize>, key: Key, pid: u32, signal: Signal) -> io::Result<()> {
    match engine.signal(key, signal.as_raw()) {
        Ok(()) => {}
        // Already reported: the process is reaped, and its group id may be reused.
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        // Exited but not yet reported: the group may still have members.
        Err(error) if error.raw_os_error() == Some(rustix::io::Errno::SRCH.raw_os_error()) => {}
        Err(error) => return Err(error),
    }
    // NOTE: a signal caught on the forwarding thread can reach this line just
    // after `drive` reaped the job. The group id could then name a new group,
    // but only if the PID was reused within that instant.
    let Some(group) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return Ok(());
    };
    match rustix::process::kill_process_group(group, signal) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(errno) => Err(errno.into()),
    }
}

fn warn_signal(index: usize, pid: u32, signal: Signal, error: &io::Error) {
    output::warn(format_args!(
        "job {} [pid {pid}]: cannot send {}: {error}",
        index + 1,
        signal_name(signal)
    ));
}

fn signal_name(signal: Signal) -> String {
    waitprocs::signal_name(signal.as_raw())
        .map_or_else(|| format!("signal {}", signal.as_raw()), str::to_owned)
}

fn summary(total: usize, tally: &Tally) -> String {
    let noun = if total == 1 { "job" } else { "jobs" };
    let mut text = format!(
        "{total} {noun}: {} succeeded, {} failed",
        tally.succeeded, tally.failed
    );
    let mut details = Vec::new();
    if tally.timed_out > 0 {
        details.push(format!("{} timed out", tally.timed_out));
    }
    if tally.failed_to_start > 0 {
        details.push(format!("{} failed to start", tally.failed_to_start));
    }
    if !details.is_empty() {
        text.push_str(&format!(" ({})", details.join(", ")));
    }
    if tally.not_started > 0 {
        text.push_str(&format!(", {} not started", tally.not_started));
    }
    text
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The map stays consistent if a holder panicked, so poisoning is ignored.
    mutex.lock().unwrap_or_else(|error| error.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lists_details() {
        let tally = Tally {
            succeeded: 3,
            failed: 2,
            timed_out: 1,
            failed_to_start: 1,
            not_started: 4,
        };
        assert_eq!(
            summary(9, &tally),
            "9 jobs: 3 succeeded, 2 failed (1 timed out, 1 failed to start), 4 not started"
        );
    }

    #[test]
    fn summary_plain_when_all_succeed() {
        let tally = Tally {
            succeeded: 2,
            ..Tally::default()
        };
        assert_eq!(summary(2, &tally), "2 jobs: 2 succeeded, 0 failed");
    }

    #[test]
    fn summary_singular_job() {
        let tally = Tally {
            failed: 1,
            ..Tally::default()
        };
        assert_eq!(summary(1, &tally), "1 job: 0 succeeded, 1 failed");
    }
}
