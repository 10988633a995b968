//! `waitprocs run`: run jobs at most N at a time, pass their output on, and
//! report each exit.
//!
//! One thread drives everything: it starts jobs, reads their pipes, takes exit
//! events from the engine (whose descriptor sits in the same poll(2) set on
//! Linux) and sends the signals of timeouts and `--halt now`. A second thread
//! only passes received signals on to the running jobs.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{self, File};
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use indicatif::ProgressBar;
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::process::{Pid, Signal};
use signal_hook::iterator::{Handle, Signals};
use waitprocs::{Engine, ExitEvent, Key, Registration};

use crate::app::capture::{ReadOutcome, Stream, StreamKind, MAX_LINE};
use crate::app::console::{self, Console};
use crate::app::output::{self, Failure};
use crate::app::plan::{Job, Plan};
use crate::app::report::{self, Attempt, Joblog, Outcome, Slowest, Stop, Tally};
use crate::app::{
    signals, OutputMode, RunArgs, EXIT_CANNOT_EXECUTE, EXIT_FAILURE, EXIT_HALTED, EXIT_NOT_FOUND,
    EXIT_OK,
};
use crate::args::Halt;
use crate::template::Pattern;

/// Maximum sleep between looks at the engine while processes sit in its
/// fallback lane, whose retries do not wake the engine's descriptor.
const LANE_MAX_SLEEP: Duration = Duration::from_millis(100);

/// Reads of one pipe after its job has exited, before the job is reported.
/// A pipe still open after that is held by a process the job left behind,
/// and is read on later turns instead.
const DRAIN_READS: usize = 16;

/// A job whose process is running (or has exited and is not reported yet),
/// shared with the thread that passes signals on.
#[derive(Debug)]
struct Active {
    key: Key,
    pid: u32,
    started: Instant,
    stop: Option<Stop>,
    term_sent: Option<Instant>,
    kill_sent: Option<Instant>,
}

/// Running jobs by index.
type ActiveJobs = Mutex<BTreeMap<usize, Active>>;

/// State of a running attempt, kept by the driving thread.
#[derive(Debug)]
struct Running {
    job: Job,
    number: u32,
    started_wall: SystemTime,
    /// Bytes of standard output read from pipes already closed.
    received: u64,
}

/// Destination of jobs' output.
#[derive(Debug)]
enum Sink {
    /// Through pipes, as whole lines; each line starts with the tag, if any.
    Lines {
        tag: Option<Tag>,
    },
    Inherit,
    Discard,
    Files(PathBuf),
}

#[derive(Debug)]
enum Tag {
    /// The job's item or command, then a tab.
    Default,
    /// `--tag-string`, filled per job.
    Custom(Pattern),
}

/// A failed job waiting for its next attempt.
#[derive(Debug)]
struct Retry {
    index: usize,
    number: u32,
    /// The last attempt, counted if the retry never starts.
    timed_out: bool,
    elapsed: Duration,
    display: String,
}

/// Runs the jobs of `args` and returns the exit status of the command.
///
/// # Errors
///
/// - `Usage`: the jobs cannot be read, or an option cannot be used.
/// - `Error`: signal handlers cannot be installed, or the engine fails.
/// - `OutputClosed`: standard output is closed.
pub(crate) fn run(args: RunArgs, started: Instant) -> Result<u8, Failure> {
    let plan = Plan::load(&args)?;
    let sink = sink(&args)?;
    if plan.len() == 0 {
        output::warn(format_args!("no jobs to run"));
        return Ok(EXIT_OK);
    }
    let joblog = match &args.joblog {
        Some(path) => Some(Joblog::create(path).map_err(|error| {
            Failure::Usage(format!(
                "cannot create job log '{}': {error}",
                path.display()
            ))
        })?),
        None => None,
    };
    let limit = match args.jobs {
        Some(limit) => limit as usize,
        None => thread::available_parallelism().map_or(1, NonZeroUsize::get),
    };
    let engine = Engine::<usize>::builder()
        .raise_fd_limit(true)
        .force_fallback(args.fallback)
        .build()
        .map_err(|error| Failure::Error(format!("cannot start watching processes: {error}")))?;
    // Handlers go in before the first job starts, so that no job can miss a signal.
    let mut catcher = Signals::new(signals::forwarded())
        .map_err(|error| Failure::Error(format!("cannot install signal handlers: {error}")))?;
    let interrupted = AtomicI32::new(0);
    let active: ActiveJobs = Mutex::new(BTreeMap::new());
    let console = Console::new(plan.len(), !args.no_progress);
    let bar = console.bar();

    let mut runner = Runner {
        plan: &plan,
        limit,
        timeout: args.timeout,
        kill_after: args.kill_after,
        retries: args.retries,
        halt: args.halt,
        json: args.json,
        started,
        engine: &engine,
        active: &active,
        interrupted: &interrupted,
        console,
        sink,
        joblog,
        joblog_failed: false,
        streams: Vec::new(),
        running: HashMap::new(),
        retry_queue: VecDeque::new(),
        next: 0,
        done: 0,
        failures: 0,
        halting: false,
        not_found: false,
        cannot_execute: false,
        tally: Tally::default(),
        slowest: Slowest::default(),
        scratch: vec![0; MAX_LINE],
        lane_sleep: Duration::ZERO,
    };
    let result = thread::scope(|scope| {
        let _closer = CloseOnDrop(catcher.handle());
        let (engine, active, interrupted) = (&engine, &active, &interrupted);
        let bar = bar.clone();
        scope.spawn(move || {
            for signal in catcher.forever() {
                pass_on(signal, engine, active, interrupted, bar.as_ref());
            }
        });
        runner.drive()
    });
    runner.console.finish();
    result?;

    let signal = interrupted.load(Ordering::SeqCst);
    runner.close_summary();
    if signal != 0 {
        return Ok(signals::end_by(signal));
    }
    Ok(runner.exit_status())
}

/// Returns where jobs' output goes, creating the output directory.
fn sink(args: &RunArgs) -> Result<Sink, Failure> {
    if let Some(dir) = &args.output_dir {
        // create_dir_all reports an existing file as "File exists", which
        // does not say what is wrong with it.
        if dir.exists() && !dir.is_dir() {
            return Err(Failure::Usage(format!(
                "invalid --output-dir '{}': it exists and is not a directory; name a \
                 directory, or a path that does not exist yet",
                dir.display()
            )));
        }
        fs::create_dir_all(dir).map_err(|error| {
            Failure::Usage(format!(
                "cannot create output directory '{}': {error}",
                dir.display()
            ))
        })?;
        return Ok(Sink::Files(dir.clone()));
    }
    let tagged = args.tag || args.tag_string.is_some();
    match args.output {
        OutputMode::Lines => {
            let tag = match (&args.tag_string, tagged) {
                (Some(text), _) => Some(Tag::Custom(Pattern::parse(text.as_encoded_bytes()))),
                (None, true) => Some(Tag::Default),
                (None, false) => None,
            };
            Ok(Sink::Lines { tag })
        }
        _ if tagged => Err(Failure::Usage(
            "--tag and --tag-string need the output passed on as lines: drop --output, or use --output lines".to_owned(),
        )),
        OutputMode::Inherit => Ok(Sink::Inherit),
        OutputMode::Discard => Ok(Sink::Discard),
    }
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
    plan: &'a Plan,
    limit: usize,
    timeout: Option<Duration>,
    kill_after: Duration,
    retries: u32,
    halt: Option<Halt>,
    json: bool,
    started: Instant,
    engine: &'a Engine<usize>,
    active: &'a ActiveJobs,
    interrupted: &'a AtomicI32,
    console: Console,
    sink: Sink,
    joblog: Option<Joblog>,
    joblog_failed: bool,
    /// Open pipes of running jobs, and of ended jobs whose pipes a process
    /// they left behind still holds.
    streams: Vec<Stream>,
    running: HashMap<usize, Running>,
    retry_queue: VecDeque<Retry>,
    /// Index of the next job that has never started.
    next: usize,
    /// Jobs whose last attempt has ended.
    done: usize,
    /// Jobs that failed, counted for `--halt`.
    failures: usize,
    halting: bool,
    not_found: bool,
    cannot_execute: bool,
    tally: Tally,
    slowest: Slowest,
    scratch: Vec<u8>,
    /// Current sleep between looks at the fallback lane (grows up to
    /// [`LANE_MAX_SLEEP`]).
    lane_sleep: Duration,
}

impl Runner<'_> {
    /// Starts jobs while there is room, and reports exits until none is left.
    fn drive(&mut self) -> Result<(), Failure> {
        let events = self.engine.events();
        loop {
            self.start_while_room()?;
            if lock(self.active).is_empty() && !self.can_start() {
                break;
            }
            self.turn()?;
            for event in events.try_iter() {
                self.finish_attempt(event)?;
            }
            self.enforce_stops(Instant::now());
            self.console.flush()?;
        }
        self.drop_retries();
        self.tally.not_started = self.plan.len() - self.next;
        // Pipes still open belong to processes that jobs left behind.
        for mut stream in std::mem::take(&mut self.streams) {
            while stream.read_once(&mut self.scratch, self.console.buffer(stream.kind))
                == ReadOutcome::Data
            {}
            let kind = stream.kind;
            stream.close(self.console.buffer(kind));
        }
        self.console.flush()
    }

    /// Returns whether a job or a retry may start now, room aside.
    fn can_start(&self) -> bool {
        let pending = !self.retry_queue.is_empty() || self.next < self.plan.len();
        pending && !self.halting && !self.is_interrupted()
    }

    fn start_while_room(&mut self) -> Result<(), Failure> {
        while self.can_start() && lock(self.active).len() < self.limit {
            let (index, number) = match self.retry_queue.pop_front() {
                Some(retry) => (retry.index, retry.number),
                None => {
                    self.next += 1;
                    (self.next - 1, 1)
                }
            };
            self.start(index, number)?;
        }
        self.update_progress();
        Ok(())
    }

    fn is_interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst) != 0
    }

    /// Starts attempt `number` of job `index` and hands its process to the
    /// engine, or reports why it could not start.
    fn start(&mut self, index: usize, number: u32) -> Result<(), Failure> {
        let job = self.plan.job(index);
        let mut command = job.command();
        // Its own process group lets a timeout or a forwarded signal reach
        // the commands a shell job started, not only the shell.
        command.stdin(Stdio::null()).process_group(0);
        let started = Instant::now();
        let started_wall = SystemTime::now();
        let spawned = self
            .set_output(&mut command, index)
            .and_then(|()| command.spawn());
        let mut child = match spawned {
            Ok(child) => child,
            Err(error) => {
                let attempt = Attempt {
                    index,
                    number,
                    job: &job,
                    started,
                    started_wall,
                    outcome: Outcome::FailedToStart(error),
                    retrying: false,
                    received: 0,
                };
                return self.conclude(attempt);
            }
        };
        let pid = child.id();
        let pipes = take_pipes(&mut child);
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
        if let Sink::Lines { tag } = &self.sink {
            let tag: Rc<[u8]> = match tag {
                None => Rc::from(&b""[..]),
                Some(Tag::Default) => {
                    let mut text = output::escape_controls(job.tag_text());
                    text.push(b'\t');
                    Rc::from(text)
                }
                Some(Tag::Custom(pattern)) => Rc::from(output::escape_controls(
                    &pattern.fill_plain(job.tag_text(), index + 1),
                )),
            };
            for (kind, pipe) in pipes {
                let stream =
                    Stream::new(index, number, kind, pipe, Rc::clone(&tag)).map_err(|error| {
                        Failure::Error(format!(
                            "cannot read the output of job {}: {error}",
                            index + 1
                        ))
                    })?;
                self.streams.push(stream);
            }
        }
        self.running.insert(
            index,
            Running {
                job,
                number,
                started_wall,
                received: 0,
            },
        );
        self.lane_sleep = Duration::ZERO;

        let mut active = lock(self.active);
        active.insert(
            index,
            Active {
                key,
                pid,
                started,
                stop: None,
                term_sent: None,
                kill_sent: None,
            },
        );
        // A signal caught between the check in `can_start` and the insert
        // above was passed on to the other jobs only, so pass it on here.
        let signal = self.interrupted.load(Ordering::SeqCst);
        if let Some(signal) = Signal::from_named_raw(signal) {
            if let Err(error) = signal_job(self.engine, key, pid, signal) {
                warn_signal(self.console.bar().as_ref(), index, pid, signal, &error);
            }
        }
        Ok(())
    }

    /// Points the job's standard output and error to the sink.
    fn set_output(&self, command: &mut std::process::Command, index: usize) -> io::Result<()> {
        match &self.sink {
            Sink::Lines { .. } => {
                command.stdout(Stdio::piped()).stderr(Stdio::piped());
            }
            Sink::Inherit => {}
            Sink::Discard => {
                command.stdout(Stdio::null()).stderr(Stdio::null());
            }
            Sink::Files(dir) => {
                command
                    .stdout(create_output(&output_path(dir, index, "out"))?)
                    .stderr(create_output(&output_path(dir, index, "err"))?);
            }
        }
        Ok(())
    }

    /// Waits for the next pipe data, exit, or deadline, and reads the pipes
    /// that have data.
    fn turn(&mut self) -> Result<(), Failure> {
        let mut timeout = self
            .next_deadline()
            .map(|at| at.saturating_duration_since(Instant::now()));
        // The engine's timers (the fallback lane, retries) do not wake its
        // descriptor, so the loop also wakes when `Engine::next_due` is reached.
        // Systems other than Linux look at the engine on a back-off of their
        // own, because their engine descriptor is not polled.
        if ENGINE_FD_POLLED {
            if let Some(due) = self.engine.next_due() {
                let until = due.saturating_duration_since(Instant::now());
                timeout = Some(timeout.map_or(until, |t| t.min(until)));
            }
        } else {
            self.lane_sleep = (self.lane_sleep * 2).clamp(Duration::from_millis(1), LANE_MAX_SLEEP);
            timeout = Some(timeout.map_or(self.lane_sleep, |t| t.min(self.lane_sleep)));
        }

        let ready = self.poll_fds(timeout)?;
        let mut closed = Vec::new();
        for (position, stream) in self.streams.iter_mut().enumerate() {
            if !ready[position] {
                continue;
            }
            let out = self.console.buffer(stream.kind);
            if stream.read_once(&mut self.scratch, out) == ReadOutcome::Closed {
                closed.push(position);
            }
        }
        for position in closed.into_iter().rev() {
            let stream = self.streams.swap_remove(position);
            self.account_closed(stream);
        }

        self.engine
            .poll(Some(Duration::ZERO))
            .map_err(|error| Failure::Error(format!("waiting for jobs failed: {error}")))?;
        Ok(())
    }

    /// Polls the engine's descriptor and every pipe, and returns for each pipe
    /// whether it can be read.
    fn poll_fds(&self, timeout: Option<Duration>) -> Result<Vec<bool>, Failure> {
        let input = PollFlags::IN;
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(self.streams.len() + 1);
        if ENGINE_FD_POLLED {
            fds.push(PollFd::from_borrowed_fd(self.engine.as_fd(), input));
        }
        let first_stream = fds.len();
        for stream in &self.streams {
            fds.push(PollFd::new(stream, input));
        }
        let timespec = timeout.map(|t| {
            Timespec::try_from(t).unwrap_or(Timespec {
                tv_sec: i64::MAX,
                tv_nsec: 0,
            })
        });
        match rustix::event::poll(&mut fds, timespec.as_ref()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(errno) => {
                return Err(Failure::Error(format!(
                    "waiting for jobs and their output failed: {}",
                    io::Error::from(errno)
                )))
            }
        }
        Ok(fds[first_stream..]
            .iter()
            .map(|fd| !fd.revents().is_empty())
            .collect())
    }

    /// Adds a closed stdout pipe's byte count to its job, if the job still runs.
    fn account_closed(&mut self, stream: Stream) {
        if stream.kind != StreamKind::Stdout {
            return;
        }
        if let Some(running) = self.running.get_mut(&stream.job) {
            if running.number == stream.attempt {
                running.received += stream.received;
            }
        }
    }

    /// Reads what the job's pipes hold, then reports the attempt.
    fn finish_attempt(&mut self, event: ExitEvent<usize>) -> Result<(), Failure> {
        let index = event.data;
        let Some(active) = lock(self.active).remove(&index) else {
            return Ok(());
        };
        let Some(running) = self.running.remove(&index) else {
            return Ok(());
        };
        let mut received = running.received;
        let mut position = 0;
        while position < self.streams.len() {
            let stream = &mut self.streams[position];
            if stream.job != index || stream.attempt != running.number {
                position += 1;
                continue;
            }
            let out = self.console.buffer(stream.kind);
            let mut outcome = ReadOutcome::Data;
            for _ in 0..DRAIN_READS {
                outcome = stream.read_once(&mut self.scratch, out);
                if outcome != ReadOutcome::Data {
                    break;
                }
            }
            if stream.kind == StreamKind::Stdout {
                received += stream.received;
            }
            if outcome == ReadOutcome::Closed {
                self.streams.swap_remove(position);
            } else {
                // A process that the job started still has the pipe open.
                position += 1;
            }
        }
        if let Sink::Files(dir) = &self.sink {
            received = fs::metadata(output_path(dir, index, "out")).map_or(0, |meta| meta.len());
        }

        let since_start = |at: Instant| at.saturating_duration_since(active.started);
        let attempt = Attempt {
            index,
            number: running.number,
            job: &running.job,
            started: active.started,
            started_wall: running.started_wall,
            outcome: Outcome::Ended {
                pid: event.pid,
                status: event.status,
                usage: event.usage,
                elapsed: since_start(event.detected_at),
                stop: active.stop,
                term_after: active.term_sent.map(since_start),
                kill_after: active.kill_sent.map(since_start),
            },
            retrying: false,
            received,
        };
        self.conclude(attempt)
    }

    /// Reports an ended attempt, then retries the job or counts it as done.
    fn conclude(&mut self, mut attempt: Attempt<'_>) -> Result<(), Failure> {
        let failed = !attempt.succeeded();
        let stopped_by_halt = attempt.stop() == Some(Stop::Halt);
        let could_start = !matches!(attempt.outcome, Outcome::FailedToStart(_));
        attempt.retrying = failed
            && could_start
            && !stopped_by_halt
            && attempt.number <= self.retries
            && !self.halting
            && !self.is_interrupted();
        self.report(&attempt)?;

        if attempt.retrying {
            self.tally.retries += 1;
            self.retry_queue.push_back(Retry {
                index: attempt.index,
                number: attempt.number + 1,
                timed_out: attempt.stop() == Some(Stop::Timeout),
                elapsed: attempt.elapsed(),
                display: attempt.job.display.clone(),
            });
            return Ok(());
        }
        self.done += 1;
        self.tally.count(&attempt);
        self.slowest.offer(&attempt);
        if let Outcome::FailedToStart(error) = &attempt.outcome {
            match report::failed_start_code(error) {
                EXIT_NOT_FOUND => self.not_found = true,
                _ => self.cannot_execute = true,
            }
        }
        if failed && !stopped_by_halt {
            self.failures += 1;
            self.check_halt();
        }
        self.update_progress();
        Ok(())
    }

    /// Writes the report of an attempt: its line or JSON record, and its job
    /// log line.
    fn report(&mut self, attempt: &Attempt<'_>) -> Result<(), Failure> {
        if self.json {
            let record = report::json_record(attempt, self.started);
            let line = serde_json::to_string(&record)
                .map_err(|error| Failure::Error(format!("cannot encode a JSON record: {error}")))?;
            self.console.out.extend_from_slice(line.as_bytes());
        } else {
            self.console
                .out
                .extend_from_slice(report::text_line(attempt).as_bytes());
        }
        self.console.out.push(b'\n');

        if let Some(joblog) = &mut self.joblog {
            if let Err(error) = joblog.write(attempt) {
                console::warn(
                    self.console.bar().as_ref(),
                    format_args!("cannot write the job log, so it stops here: {error}"),
                );
                self.joblog = None;
                self.joblog_failed = true;
            }
        }
        Ok(())
    }

    /// Starts the halt once `--halt` has seen enough failed jobs.
    fn check_halt(&mut self) {
        let Some(halt) = self.halt else {
            return;
        };
        if self.halting || self.failures < halt.failures as usize {
            return;
        }
        self.halting = true;
        let mut active = lock(self.active);
        let running = active.len();
        let next = match (halt.now, running) {
            (_, 0) => String::new(),
            (true, _) => format!(
                "; stopping {} still running",
                plural(running, "job", "jobs")
            ),
            (false, _) => format!(
                "; waiting for {} still running",
                plural(running, "job", "jobs")
            ),
        };
        console::warn(
            self.console.bar().as_ref(),
            format_args!(
                "{} failed, so no new job starts (--halt){next}",
                plural(self.failures, "job", "jobs")
            ),
        );
        if !halt.now {
            return;
        }
        let now = Instant::now();
        for (&index, job) in active.iter_mut() {
            if job.term_sent.is_some() {
                continue;
            }
            job.stop = Some(Stop::Halt);
            job.term_sent = Some(now);
            if let Err(error) = signal_job(self.engine, job.key, job.pid, Signal::TERM) {
                warn_signal(
                    self.console.bar().as_ref(),
                    index,
                    job.pid,
                    Signal::TERM,
                    &error,
                );
            }
        }
    }

    /// Counts the retries that will not start (after a halt or a signal) as
    /// failed jobs, by the attempt before.
    fn drop_retries(&mut self) {
        for retry in std::mem::take(&mut self.retry_queue) {
            self.done += 1;
            self.tally.failed += 1;
            if retry.timed_out {
                self.tally.timed_out += 1;
            }
            self.slowest
                .offer_raw(retry.elapsed, retry.index, retry.display);
        }
    }

    /// Returns the earliest time a running job is due for SIGTERM or SIGKILL.
    fn next_deadline(&self) -> Option<Instant> {
        lock(self.active)
            .values()
            .filter_map(|active| match (active.term_sent, active.kill_sent) {
                // A time too far to represent is never reached.
                (None, _) => self
                    .timeout
                    .and_then(|timeout| active.started.checked_add(timeout)),
                (Some(term_sent), None) => term_sent.checked_add(self.kill_after),
                (Some(_), Some(_)) => None,
            })
            .min()
    }

    /// Sends SIGTERM to jobs past their timeout, and SIGKILL to jobs still
    /// running `kill_after` after SIGTERM.
    fn enforce_stops(&self, now: Instant) {
        let mut active = lock(self.active);
        for (&index, job) in active.iter_mut() {
            let signal = match job.term_sent {
                None if self.timeout.is_some_and(|timeout| {
                    job.started
                        .checked_add(timeout)
                        .is_some_and(|due| now >= due)
                }) =>
                {
                    job.stop = Some(Stop::Timeout);
                    job.term_sent = Some(now);
                    Signal::TERM
                }
                Some(term_sent)
                    if job.kill_sent.is_none()
                        && term_sent
                            .checked_add(self.kill_after)
                            .is_some_and(|due| now >= due) =>
                {
                    job.kill_sent = Some(now);
                    Signal::KILL
                }
                _ => continue,
            };
            if let Err(error) = signal_job(self.engine, job.key, job.pid, signal) {
                warn_signal(self.console.bar().as_ref(), index, job.pid, signal, &error);
            }
        }
    }

    fn update_progress(&self) {
        let running = lock(self.active).len();
        self.console.progress(self.done, running, self.tally.failed);
    }

    /// Prints the summary and the slowest jobs on standard error.
    fn close_summary(&self) {
        output::warn(format_args!(
            "{}",
            report::summary(self.plan.len(), &self.tally)
        ));
        let lines = self.slowest.lines();
        if self.plan.len() > 1 && !lines.is_empty() {
            output::warn(format_args!("slowest jobs:"));
            for line in lines {
                output::warn(format_args!("{line}"));
            }
        }
    }

    /// Returns the exit status of a run that no signal ended.
    fn exit_status(&self) -> u8 {
        let skipped = self.tally.not_started > 0 || self.tally.halted > 0;
        if self.not_found {
            EXIT_NOT_FOUND
        } else if self.cannot_execute {
            EXIT_CANNOT_EXECUTE
        } else if self.halting && skipped {
            EXIT_HALTED
        } else if self.tally.failed > 0 || self.joblog_failed {
            EXIT_FAILURE
        } else {
            EXIT_OK
        }
    }
}

/// Whether the engine's descriptor is in the poll(2) set. On Linux it is an
/// epoll descriptor, which poll(2) reports readable when an exit is pending.
/// Elsewhere it is a kqueue, which the run loop looks at on a short back-off
/// instead.
const ENGINE_FD_POLLED: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// Takes the pipes of a child started with piped output.
fn take_pipes(child: &mut Child) -> Vec<(StreamKind, OwnedFd)> {
    let mut pipes = Vec::with_capacity(2);
    if let Some(stdout) = child.stdout.take() {
        pipes.push((StreamKind::Stdout, OwnedFd::from(stdout)));
    }
    if let Some(stderr) = child.stderr.take() {
        pipes.push((StreamKind::Stderr, OwnedFd::from(stderr)));
    }
    pipes
}

fn output_path(dir: &Path, index: usize, extension: &str) -> PathBuf {
    dir.join(format!("{}.{extension}", index + 1))
}

/// Creates (or truncates) an output file, naming it in the error. The error
/// has kind `Other`, so that a missing directory is not taken for a missing
/// program when the exit status is chosen.
fn create_output(path: &Path) -> io::Result<File> {
    File::create(path).map_err(|error| {
        io::Error::other(format!(
            "cannot create output file '{}': {error}",
            path.display()
        ))
    })
}

/// Passes a caught signal on to every running job; `drive` then starts no new job.
fn pass_on(
    signal: i32,
    engine: &Engine<usize>,
    active: &ActiveJobs,
    interrupted: &AtomicI32,
    bar: Option<&ProgressBar>,
) {
    let _ = interrupted.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
    let Some(signal) = Signal::from_named_raw(signal) else {
        return;
    };
    let active = lock(active);
    console::warn(
        bar,
        format_args!(
            "received {}: passing it on to {} running jobs, starting no new ones",
            signal_name(signal),
            active.len()
        ),
    );
    for (&index, job) in active.iter() {
        if let Err(error) = signal_job(engine, job.key, job.pid, signal) {
            warn_signal(bar, index, job.pid, signal, &error);
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

fn warn_signal(
    bar: Option<&ProgressBar>,
    index: usize,
    pid: u32,
    signal: Signal,
    error: &io::Error,
) {
    console::warn(
        bar,
        format_args!(
            "job {} [pid {pid}]: cannot send {}: {error}",
            index + 1,
            signal_name(signal)
        ),
    );
}

fn signal_name(signal: Signal) -> String {
    waitprocs::signal_name(signal.as_raw())
        .map_or_else(|| format!("signal {}", signal.as_raw()), str::to_owned)
}

fn plural(count: usize, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The map stays consistent if a holder panicked, so poisoning is ignored.
    mutex.lock().unwrap_or_else(|error| error.into_inner())
}
