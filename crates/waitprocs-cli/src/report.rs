//! Reports of `run` on each attempt of a job (the text line, the JSON record,
//! the job log line) and the closing summary.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use waitprocs::{ExitStatus, ResourceUsage};

use crate::app::output::{self, StatusFields};
use crate::app::plan::Job;

/// Reason waitprocs stopped a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// It ran past `--timeout`.
    Timeout,
    /// `--halt now` stopped the run.
    Halt,
}

/// End of an attempt.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The process ran and ended.
    Ended {
        pid: u32,
        status: ExitStatus,
        usage: Option<ResourceUsage>,
        elapsed: Duration,
        stop: Option<Stop>,
        /// Time from the start to SIGTERM and to SIGKILL, if they were sent.
        term_after: Option<Duration>,
        kill_after: Option<Duration>,
    },
    /// The process could not be started.
    FailedToStart(io::Error),
}

/// One attempt of a job, ended.
#[derive(Debug)]
pub(crate) struct Attempt<'a> {
    /// Index of the job, from 0.
    pub(crate) index: usize,
    /// Attempt number, from 1.
    pub(crate) number: u32,
    pub(crate) job: &'a Job,
    pub(crate) started: Instant,
    pub(crate) started_wall: SystemTime,
    pub(crate) outcome: Outcome,
    /// Whether another attempt of the job follows.
    pub(crate) retrying: bool,
    /// Bytes the job wrote to its standard output, where waitprocs saw them.
    pub(crate) received: u64,
}

impl Attempt<'_> {
    /// Returns whether the attempt succeeded: exit code 0, and not stopped.
    pub(crate) fn succeeded(&self) -> bool {
        match &self.outcome {
            Outcome::Ended { status, stop, .. } => status.success() && stop.is_none(),
            Outcome::FailedToStart(_) => false,
        }
    }

    pub(crate) fn stop(&self) -> Option<Stop> {
        match &self.outcome {
            Outcome::Ended { stop, .. } => *stop,
            Outcome::FailedToStart(_) => None,
        }
    }

    pub(crate) fn elapsed(&self) -> Duration {
        match &self.outcome {
            Outcome::Ended { elapsed, .. } => *elapsed,
            Outcome::FailedToStart(_) => Duration::ZERO,
        }
    }

    /// Returns the words before the outcome in a text line: `job 3 [pid 42]`,
    /// with the attempt number from the second attempt on.
    fn heading(&self) -> String {
        let mut heading = format!("job {}", self.index + 1);
        if self.number > 1 {
            heading.push_str(&format!(" (attempt {})", self.number));
        }
        if let Outcome::Ended { pid, .. } = &self.outcome {
            heading.push_str(&format!(" [pid {pid}]"));
        }
        heading
    }
}

/// Returns the text report of an attempt, without a newline.
pub(crate) fn text_line(attempt: &Attempt<'_>) -> String {
    let mut line = format!(
        "{} `{}`: ",
        attempt.heading(),
        output::escape_controls_str(&attempt.job.display)
    );
    match &attempt.outcome {
        Outcome::FailedToStart(error) => {
            line.push_str(&format!("failed to start: {error}"));
            return line;
        }
        Outcome::Ended {
            status,
            usage,
            elapsed,
            stop,
            term_after,
            kill_after,
            ..
        } => {
            if let Some(term_after) = term_after {
                let reason = match stop {
                    Some(Stop::Halt) => "stopped by --halt",
                    _ => "timed out",
                };
                line.push_str(&format!(
                    "{reason} (SIGTERM after {}",
                    output::seconds(*term_after)
                ));
                if let Some(kill_after) = kill_after {
                    line.push_str(&format!(", SIGKILL after {}", output::seconds(*kill_after)));
                }
                line.push_str("); ");
            }
            match status {
                // NOTE: a child's status is unknown only if the kernel reaped it
                // first (waitprocs inherited SIGCHLD ignored) and, being older
                // than Linux 6.15, kept no status for the pidfd.
                ExitStatus::Unknown => {
                    line.push_str("exited (status unknown: reaped before waitprocs)")
                }
                status => line.push_str(&status.to_string()),
            }
            line.push_str(&format!(" after {}", output::seconds(*elapsed)));
            if let Some(usage) = usage {
                line.push_str(&format!(
                    " (cpu {}, max rss {})",
                    output::seconds(usage.user_time + usage.system_time),
                    kibibytes(usage.max_rss_bytes)
                ));
            }
        }
    }
    if attempt.retrying {
        line.push_str(&format!("; retrying (attempt {})", attempt.number + 1));
    }
    line
}

/// Formats a size in bytes as KiB or MiB with one decimal.
fn kibibytes(bytes: u64) -> String {
    let kib = bytes as f64 / 1024.0;
    if kib >= 1024.0 {
        format!("{:.1} MiB", kib / 1024.0)
    } else {
        format!("{kib:.0} KiB")
    }
}

/// One line of `run --json`.
#[derive(Debug, Serialize)]
pub(crate) struct JobRecord<'a> {
    /// Position of the job among all jobs, from 1.
    job: usize,
    /// Attempt of the job, from 1.
    attempt: u32,
    /// Whether another attempt follows this one.
    retrying: bool,
    /// Line of the job file or argument list, from 1; null for a command given after `--`.
    line: Option<usize>,
    /// The item of the argument list that filled the template.
    item: Option<String>,
    command: &'a str,
    pid: Option<u32>,
    #[serde(flatten)]
    status: StatusFields,
    /// Time from the start of the attempt to the detection of its exit.
    elapsed_ms: Option<f64>,
    /// Time from the start of waitprocs to the start of the attempt.
    start_ms: f64,
    timed_out: bool,
    halted: bool,
    sigkill_sent: bool,
    user_ms: Option<f64>,
    system_ms: Option<f64>,
    max_rss_kib: Option<u64>,
    /// The reason the job could not be started.
    error: Option<String>,
}

/// Returns the JSON record of an attempt.
pub(crate) fn json_record<'a>(attempt: &'a Attempt<'_>, run_started: Instant) -> JobRecord<'a> {
    let mut record = JobRecord {
        job: attempt.index + 1,
        attempt: attempt.number,
        retrying: attempt.retrying,
        line: attempt.job.line,
        item: attempt
            .job
            .item
            .as_ref()
            .map(|item| String::from_utf8_lossy(item).into_owned()),
        command: &attempt.job.display,
        pid: None,
        status: StatusFields::failed_to_start(),
        elapsed_ms: None,
        start_ms: output::millis(attempt.started.saturating_duration_since(run_started)),
        timed_out: false,
        halted: false,
        sigkill_sent: false,
        user_ms: None,
        system_ms: None,
        max_rss_kib: None,
        error: None,
    };
    match &attempt.outcome {
        Outcome::FailedToStart(error) => record.error = Some(error.to_string()),
        Outcome::Ended {
            pid,
            status,
            usage,
            elapsed,
            stop,
            kill_after,
            ..
        } => {
            record.pid = Some(*pid);
            record.status = StatusFields::ended(*status);
            record.elapsed_ms = Some(output::millis(*elapsed));
            record.timed_out = *stop == Some(Stop::Timeout);
            record.halted = *stop == Some(Stop::Halt);
            record.sigkill_sent = kill_after.is_some();
            record.user_ms = usage.map(|usage| output::millis(usage.user_time));
            record.system_ms = usage.map(|usage| output::millis(usage.system_time));
            record.max_rss_kib = usage.map(|usage| usage.max_rss_bytes / 1024);
        }
    }
    record
}

/// A job log in GNU parallel's format.
#[derive(Debug)]
pub(crate) struct Joblog {
    file: BufWriter<File>,
}

impl Joblog {
    /// Creates (or truncates) the log and writes its header.
    ///
    /// # Errors
    ///
    /// The OS error if the file cannot be created or written.
    pub(crate) fn create(path: &Path) -> io::Result<Self> {
        let mut file = BufWriter::new(File::create(path)?);
        file.write_all(
            b"Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n",
        )?;
        file.flush()?;
        Ok(Self { file })
    }

    /// Appends the line of one attempt and flushes it, so that the log can be
    /// read while the run goes on.
    ///
    /// # Errors
    ///
    /// The OS error if the line cannot be written.
    pub(crate) fn write(&mut self, attempt: &Attempt<'_>) -> io::Result<()> {
        writeln!(self.file, "{}", joblog_line(attempt))?;
        self.file.flush()
    }
}

/// Returns the job log line of an attempt, without a newline.
///
/// Exitval is -1 when waitprocs stopped the job (a timeout or `--halt now`), as
/// GNU parallel writes for a timeout, and 127 or 126 for a job that could not
/// be started, as a shell would exit. Tabs and newlines in the command are
/// written as `\t` and `\n`, so that each attempt stays one line of fields.
pub(crate) fn joblog_line(attempt: &Attempt<'_>) -> String {
    let start = attempt
        .started_wall
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let (exit_value, signal) = match &attempt.outcome {
        Outcome::FailedToStart(error) => (i64::from(failed_start_code(error)), 0),
        Outcome::Ended { status, stop, .. } => {
            let signal = status.signal().unwrap_or(0);
            match (stop, status) {
                (Some(_), _) => (-1, signal),
                (None, ExitStatus::Exited(code)) => (i64::from(*code), 0),
                (None, ExitStatus::Signaled { .. }) => (0, signal),
                (None, ExitStatus::Unknown) => (-1, 0),
            }
        }
    };
    // Backslashes are doubled first, so that the escapes stay unambiguous.
    let command = output::escape_controls_str(&attempt.job.display.replace('\\', "\\\\"));
    format!(
        "{}\t:\t{start:.3}\t{:>10.3}\t0\t{}\t{exit_value}\t{signal}\t{command}",
        attempt.index + 1,
        attempt.elapsed().as_secs_f64(),
        attempt.received,
    )
}

/// Returns the exit status of a shell for a command it could not start: 127
/// if the program was not found, 126 otherwise.
pub(crate) fn failed_start_code(error: &io::Error) -> u8 {
    if error.kind() == io::ErrorKind::NotFound {
        crate::app::EXIT_NOT_FOUND
    } else {
        crate::app::EXIT_CANNOT_EXECUTE
    }
}

/// Counts for the closing summary, by each job's last attempt.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) succeeded: usize,
    pub(crate) failed: usize,
    pub(crate) timed_out: usize,
    pub(crate) failed_to_start: usize,
    /// Jobs stopped by `--halt now`; they are not counted as failed.
    pub(crate) halted: usize,
    pub(crate) not_started: usize,
    /// Attempts after the first.
    pub(crate) retries: usize,
}

impl Tally {
    /// Counts the last attempt of a job.
    pub(crate) fn count(&mut self, attempt: &Attempt<'_>) {
        if attempt.succeeded() {
            self.succeeded += 1;
            return;
        }
        match (&attempt.outcome, attempt.stop()) {
            (_, Some(Stop::Halt)) => self.halted += 1,
            (Outcome::FailedToStart(_), _) => {
                self.failed += 1;
                self.failed_to_start += 1;
            }
            (_, Some(Stop::Timeout)) => {
                self.failed += 1;
                self.timed_out += 1;
            }
            _ => self.failed += 1,
        }
    }
}

/// Returns the summary line.
pub(crate) fn summary(total: usize, tally: &Tally) -> String {
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
    if tally.halted > 0 {
        text.push_str(&format!(", {} stopped by --halt", tally.halted));
    }
    if tally.not_started > 0 {
        text.push_str(&format!(", {} not started", tally.not_started));
    }
    if tally.retries > 0 {
        let noun = if tally.retries == 1 {
            "retry"
        } else {
            "retries"
        };
        text.push_str(&format!(", {} {noun}", tally.retries));
    }
    text
}

/// How many of the slowest jobs the summary lists.
pub(crate) const SLOWEST_SHOWN: usize = 5;

/// The slowest jobs so far, by the run time of their last attempt.
#[derive(Debug, Default)]
pub(crate) struct Slowest {
    /// Run time, job index and command, slowest first; at most [`SLOWEST_SHOWN`].
    jobs: Vec<(Duration, usize, String)>,
}

impl Slowest {
    /// Considers a job's last attempt.
    pub(crate) fn offer(&mut self, attempt: &Attempt<'_>) {
        if self.is_faster_than_all(attempt.elapsed()) {
            return;
        }
        self.offer_raw(
            attempt.elapsed(),
            attempt.index,
            attempt.job.display.clone(),
        );
    }

    /// Considers a job by its run time, index and command.
    pub(crate) fn offer_raw(&mut self, elapsed: Duration, index: usize, display: String) {
        if self.is_faster_than_all(elapsed) {
            return;
        }
        let position = self
            .jobs
            .iter()
            .position(|(other, ..)| elapsed > *other)
            .unwrap_or(self.jobs.len());
        self.jobs.insert(position, (elapsed, index, display));
        self.jobs.truncate(SLOWEST_SHOWN);
    }

    fn is_faster_than_all(&self, elapsed: Duration) -> bool {
        self.jobs.len() == SLOWEST_SHOWN
            && self
                .jobs
                .last()
                .is_some_and(|(slowest, ..)| elapsed <= *slowest)
    }

    /// Returns the summary lines, `  1.20s  job 3 `cmd``, slowest first.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.jobs
            .iter()
            .map(|(elapsed, index, display)| {
                format!(
                    "{:>8}  job {} `{}`",
                    output::seconds(*elapsed),
                    index + 1,
                    output::escape_controls_str(display)
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::plan::Program;

    fn job(display: &str) -> Job {
        Job {
            line: Some(1),
            item: None,
            program: Program::Shell(display.as_bytes().to_vec()),
            display: display.to_owned(),
        }
    }

    fn ended(job: &Job, status: ExitStatus, stop: Option<Stop>, elapsed_ms: u64) -> Attempt<'_> {
        Attempt {
            index: 2,
            number: 1,
            job,
            started: Instant::now(),
            started_wall: UNIX_EPOCH + Duration::from_millis(1_700_000_000_250),
            outcome: Outcome::Ended {
                pid: 42,
                status,
                usage: None,
                elapsed: Duration::from_millis(elapsed_ms),
                stop,
                term_after: stop.map(|_| Duration::from_millis(100)),
                kill_after: None,
            },
            retrying: false,
            received: 12,
        }
    }

    #[test]
    fn joblog_line_fields() {
        let job = job("exit 3");
        let attempt = ended(&job, ExitStatus::Exited(3), None, 1500);
        assert_eq!(
            joblog_line(&attempt),
            "3\t:\t1700000000.250\t     1.500\t0\t12\t3\t0\texit 3"
        );
    }

    #[test]
    fn joblog_line_signal_and_stop() {
        let job = job("sleep 9");
        let killed = ExitStatus::Signaled {
            signal: 15,
            core_dumped: false,
        };
        let signaled = ended(&job, killed, None, 10);
        assert!(joblog_line(&signaled).ends_with("\t0\t15\tsleep 9"));
        let timed_out = ended(&job, killed, Some(Stop::Timeout), 10);
        assert!(joblog_line(&timed_out).ends_with("\t-1\t15\tsleep 9"));
    }

    #[test]
    fn joblog_line_escapes_command() {
        let job = job("printf 'a\tb\nc'");
        let attempt = ended(&job, ExitStatus::Exited(0), None, 0);
        assert!(joblog_line(&attempt).ends_with("\tprintf 'a\\tb\\nc'"));
    }

    #[test]
    fn joblog_line_failed_start() {
        let job = job("nosuch");
        let mut attempt = ended(&job, ExitStatus::Exited(0), None, 0);
        attempt.outcome = Outcome::FailedToStart(io::Error::from(io::ErrorKind::NotFound));
        assert!(joblog_line(&attempt).ends_with("\t127\t0\tnosuch"));
    }

    #[test]
    fn text_line_retrying() {
        let job = job("false");
        let mut attempt = ended(&job, ExitStatus::Exited(1), None, 20);
        attempt.number = 2;
        attempt.retrying = true;
        assert_eq!(
            text_line(&attempt),
            "job 3 (attempt 2) [pid 42] `false`: exited with code 1 after 0.02s; retrying (attempt 3)"
        );
    }

    #[test]
    fn summary_lists_details() {
        let tally = Tally {
            succeeded: 3,
            failed: 2,
            timed_out: 1,
            failed_to_start: 1,
            halted: 1,
            not_started: 4,
            retries: 2,
        };
        assert_eq!(
            summary(10, &tally),
            "10 jobs: 3 succeeded, 2 failed (1 timed out, 1 failed to start), \
             1 stopped by --halt, 4 not started, 2 retries"
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

    #[test]
    fn slowest_keeps_top_five() {
        let jobs: Vec<Job> = (0..8).map(|n| job(&format!("sleep {n}"))).collect();
        let mut slowest = Slowest::default();
        for (n, job) in jobs.iter().enumerate() {
            let mut attempt = ended(
                job,
                ExitStatus::Exited(0),
                None,
                [5, 1, 7, 3, 8, 2, 6, 4][n],
            );
            attempt.index = n;
            slowest.offer(&attempt);
        }
        let lines = slowest.lines();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[0], "   0.01s  job 5 `sleep 4`");
        let order: Vec<&str> = lines
            .iter()
            .map(|l| l.rsplit('`').nth(1).unwrap())
            .collect();
        assert_eq!(
            order,
            ["sleep 4", "sleep 2", "sleep 6", "sleep 0", "sleep 7"]
        );
    }
}
