//! The command on Unix: argument parsing and dispatch to `wait` and `run`.

#[path = "capture.rs"]
mod capture;
#[path = "console.rs"]
mod console;
#[path = "logging.rs"]
mod logging;
#[path = "output.rs"]
mod output;
#[path = "plan.rs"]
mod plan;
#[path = "report.rs"]
mod report;
#[path = "run.rs"]
mod run;
#[path = "signals.rs"]
mod signals;
#[path = "wait.rs"]
mod wait;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::args::{self, Halt};

use self::output::Failure;

/// Exit status: every process waited for is gone (and, for `run`, every job succeeded).
const EXIT_OK: u8 = 0;
/// Exit status: a job failed, a PID was not found, or an error occurred.
const EXIT_FAILURE: u8 = 1;
/// Exit status: invalid arguments or unusable input; `run` started no job.
const EXIT_USAGE: u8 = 2;
/// Exit status of `run`: `--halt` stopped the run before every job had run.
const EXIT_HALTED: u8 = 3;
/// Exit status of `wait`: the timeout passed while processes were still alive.
const EXIT_TIMEOUT: u8 = 124;
/// Exit status of `run`: a job's program exists but could not be started.
const EXIT_CANNOT_EXECUTE: u8 = 126;
/// Exit status of `run`: a job's program was not found.
const EXIT_NOT_FOUND: u8 = 127;

const MAIN_AFTER_HELP: &str = "\
Exit status:
  0    every process waited for is gone (run: and every job exited with code 0)
  1    a job failed or timed out, a PID was not found, standard output was
       closed, or another error occurred
  2    usage error: an invalid option, duration, PID or template, or an input
       file that cannot be read or holds a NUL byte
  3    run only: --halt stopped the run before every job had run
  124  wait only: the timeout passed while processes were still alive
  126  run only: a job's program exists but could not be started
  127  run only: a job's program was not found
  128+N  run only: waitprocs was killed by signal N (SIGINT, SIGTERM, SIGHUP or
       SIGQUIT), after passing it on to its jobs

Durations (DUR) are seconds as a decimal number (0.5) or a number with a unit:
ms, s, m or h (500ms, 2s, 1m, 1h).

Both subcommands raise their soft limit on open files (RLIMIT_NOFILE) to the
hard limit, so that they can watch many processes with one descriptor each;
the jobs of `run` inherit the raised limit.";

const WAIT_AFTER_HELP: &str = "\
Each exit is printed as soon as it is detected, with the time since waitprocs
started. The exit status of a process that is not a child of waitprocs (any
process given by PID) belongs to its parent. On Linux 6.15 and later the kernel
keeps it for others once the parent has reaped the process, so waitprocs waits
up to --status-grace for that before it reports the exit; the status is
unknown if the parent has not reaped the process by then, on older kernels, and
on other systems. A PID given more than once is waited for once. A PID with no
process is reported as gone with status unknown, and the exit status is then
1. When waitprocs stops early (--any, --count or --timeout), the processes
still running are printed with status alive.

The soft limit on open files (RLIMIT_NOFILE) is raised to the hard limit, since
each process is watched through a descriptor of its own (a pidfd on Linux).

Fields of --json: pid, status (exited, signaled, unknown or alive), code,
signal, signal_name, core_dumped, elapsed_ms (since waitprocs started),
was_child, not_found. Fields that do not apply are null.

Exit status:
  0    the processes waited for are gone (with --any or --count: enough of them)
  1    a PID had no process, standard output was closed, or an error occurred
  2    usage error: an invalid option, duration or PID, the PID of waitprocs
       itself, or a thread id
  124  the timeout passed while processes were still alive (this takes
       precedence over 1)";

const RUN_AFTER_HELP: &str = "\
Jobs come from one of three sources:
  --file FILE              one shell command per line, each run with `sh -c`
  -- CMD [ARG]...          one command, run without a shell; with --args-from
                           it is a template run once per item
  --template STRING        a shell command template, run once per item of
                           --args-from
Templates: {} is the item, {.} the item without its extension, {/} its last
path component, {//} its directory, {/.} the last component without its
extension, {#} the job number. A template without a placeholder gets the item
as its last argument. Without a shell (-- CMD), each replacement is part of one
argument whatever it contains. With --template, each replacement is put in
single quotes, so the shell reads it as one word with no expansion: do not
quote placeholders yourself. Items are lines (a carriage return before the
newline is dropped, empty lines are skipped, spaces are kept) or, with --null,
NUL-separated. Bytes that are not UTF-8 are passed as they are; a NUL byte in
a command or a line is an error that names the file and line.

Each job runs in its own process group, with standard input from /dev/null.
Its standard output and standard error are read through pipes and passed on
as whole lines to the standard output and standard error of waitprocs, so the
lines of two jobs never mix; a line longer than 64 KiB is split into pieces,
each ended with a newline, as is a last line without one. With --tag each line
starts with the job's item (or command) and a tab; tabs, newlines and carriage
returns in the tag are written as \t, \n and \r. --output-dir DIR writes
them to DIR/N.out and DIR/N.err instead (N: the job number; a retry replaces
the files), --output inherit lets jobs write to the standard output and error
of waitprocs directly (fastest, but lines may mix), and --output discard
drops them. Output that a job's background processes write after waitprocs
has reported the last job is not read.

A report line (or a --json record) is printed on standard output when each
attempt of a job ends, after the output it wrote. The summary (counts and the
five slowest jobs) goes to standard error, as does a progress bar (done,
running, failed, rate, ETA) while standard error is a terminal, unless
--no-progress.

With --timeout, a job still running after DUR is sent SIGTERM, and SIGKILL if
it is still running --kill-after later (5 s by default). Each signal goes to
the job's process through its pidfd and to the job's process group, so that
the commands a shell job started get it too. SIGKILL is sent only if the
job's own process is still running by then. A timed-out job counts as failed,
whatever its exit status. --retries N starts a failed job (an exit code other
than 0, a signal, or a timeout) again, up to N more times; each attempt is
reported, and the job counts by its last attempt. A job that could not be
started is not retried. --halt soon,fail=N starts no new job (nor retry) once
N jobs have failed; --halt now,fail=N also stops the running jobs, as a
timeout would.

SIGINT, SIGTERM, SIGHUP and SIGQUIT received by waitprocs are passed on the
same way to the running jobs; waitprocs then starts no new job, reports the
running ones as they end, and ends itself by the signal it received. A signal
that waitprocs inherited as ignored (as from nohup) stays ignored, for
waitprocs and its jobs. If standard output is closed (a reader such as
`head -1` has gone), waitprocs ends at once with status 1 and no message;
jobs already started keep running, and get SIGPIPE if they write to the pipes
that waitprocs read. The soft limit on open files (RLIMIT_NOFILE) is raised
to the hard limit, and the jobs inherit the raised limit.

Fields of --json: job (from 1), attempt (from 1), retrying (another attempt
is queued, unless a halt or a received signal stops the run first), line (of FILE or of the --args-from input), item, command, pid,
status (exited, signaled, unknown or failed_to_start), code, signal,
signal_name, core_dumped, elapsed_ms (since the attempt started), start_ms
(since waitprocs started), timed_out, halted (stopped by --halt now),
sigkill_sent, user_ms, system_ms, max_rss_kib (resource usage of the job and
the children it waited for), error (why it failed to start). Fields that do
not apply are null.

--joblog FILE writes GNU parallel's job log: a header, then one tab-separated
line per attempt: Seq (job number), Host (: for this machine), Starttime
(seconds since the epoch), JobRuntime (seconds), Send (0), Receive (bytes of
standard output), Exitval (-1 if waitprocs stopped the job), Signal, Command.

Exit status:
  0    every job exited with code 0
  1    a job failed or timed out, standard output was closed, or another
       error occurred
  2    usage error: an invalid option, duration or template, or a job file,
       argument list, job log or output directory that cannot be used; no job
       was started
  3    --halt stopped the run before every job had run
  126  a job's program exists but could not be started (takes precedence
       over 3 and 1)
  127  a job's program was not found (takes precedence over 126, 3 and 1)
  (killed by the signal it received, after SIGINT, SIGTERM, SIGHUP or SIGQUIT)
A job run with a shell reports a missing command as its own exit code 127,
which counts as a failed job (1).";

/// Wait for processes, or run commands, and report each exit as it happens.
#[derive(Debug, Parser)]
#[command(name = "waitprocs", version, after_help = MAIN_AFTER_HELP)]
struct Cli {
    /// Show more of the engine's log on standard error: -v info, -vv debug (backend choice, overflow shards), -vvv trace (every registration and exit). Warnings and errors are always shown; WAITPROCS_LOG (a level, or target=level pairs) overrides this.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Wait for processes by PID, children or not, and report each exit.
    #[command(after_help = WAIT_AFTER_HELP)]
    Wait(WaitArgs),
    /// Run commands, at most N at a time, and report each exit.
    #[command(
        after_help = RUN_AFTER_HELP,
        override_usage = "waitprocs run [OPTIONS] --file FILE\n       \
            waitprocs run [OPTIONS] -- CMD [ARG]...\n       \
            waitprocs run [OPTIONS] --args-from FILE -- CMD [ARG]...\n       \
            waitprocs run [OPTIONS] --args-from FILE --template STRING"
    )]
    Run(RunArgs),
}

#[derive(Debug, Args)]
struct WaitArgs {
    /// Stop waiting DUR after waitprocs started; exit with 124 if processes are still alive.
    #[arg(long, value_name = "DUR", value_parser = args::parse_duration, allow_negative_numbers = true)]
    timeout: Option<Duration>,

    /// Stop at the first exit.
    #[arg(long, conflicts_with = "count")]
    any: bool,

    /// Stop after N exits (exits detected together are all printed).
    #[arg(long, value_name = "N", value_parser = args::parse_exit_count, allow_negative_numbers = true)]
    count: Option<u64>,

    /// Wait up to DUR after a non-child exits for its parent to reap it, so that the kernel keeps its exit status (Linux 6.15 and later); 0 reports the exit at once, with status unknown.
    #[arg(
        long,
        value_name = "DUR",
        default_value = "100ms",
        value_parser = args::parse_duration,
        allow_negative_numbers = true
    )]
    status_grace: Duration,

    /// Print one JSON object per line instead of text.
    #[arg(long)]
    json: bool,

    /// Watch every process through the fallback lane (waitid or /proc on a back-off timer, no pidfds): a testing and benchmarking aid.
    #[arg(long)]
    fallback: bool,

    /// Processes to wait for.
    #[arg(
        value_name = "PID",
        required = true,
        value_parser = args::parse_pid,
        allow_negative_numbers = true
    )]
    pids: Vec<u32>,
}

/// Destination of the jobs' output, unless `--output-dir` is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutputMode {
    /// Read through pipes and passed on as whole lines.
    Lines,
    /// Written by the jobs straight to the standard output and error of waitprocs.
    Inherit,
    /// Sent to /dev/null.
    Discard,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["file", "template", "command"]))]
#[command(group = clap::ArgGroup::new("stopping").multiple(true).args(["timeout", "halt"]))]
struct RunArgs {
    /// Run at most N jobs at a time [default: the number of CPUs].
    #[arg(long, short = 'j', value_name = "N", value_parser = args::parse_jobs, allow_negative_numbers = true)]
    jobs: Option<u32>,

    /// Stop each job still running DUR after it started (SIGTERM, then SIGKILL).
    #[arg(long, value_name = "DUR", value_parser = args::parse_duration, allow_negative_numbers = true)]
    timeout: Option<Duration>,

    /// Send SIGKILL to a job still running DUR after SIGTERM; needs --timeout or --halt, which send the SIGTERM.
    #[arg(
        long,
        value_name = "DUR",
        default_value = "5s",
        value_parser = args::parse_duration,
        allow_negative_numbers = true,
        requires = "stopping"
    )]
    kill_after: Duration,

    /// Stop early once N jobs have failed: soon,fail=N starts no new job, now,fail=N also stops the running ones.
    #[arg(long, value_name = "WHEN", value_parser = args::parse_halt)]
    halt: Option<Halt>,

    /// Start a failed job again, up to N more times.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = args::parse_retries, allow_negative_numbers = true)]
    retries: u32,

    /// Print one JSON object per line instead of text.
    #[arg(long)]
    json: bool,

    /// Write a job log in GNU parallel's format to FILE (replacing it).
    #[arg(long, value_name = "FILE")]
    joblog: Option<PathBuf>,

    /// Read commands from FILE (`-` for standard input), one per line, each run with `sh -c`. Empty lines and lines starting with `#` are skipped.
    #[arg(long, value_name = "FILE", conflicts_with = "args_from")]
    file: Option<PathBuf>,

    /// Run this shell command template once per item of --args-from; each replacement is shell-quoted.
    #[arg(long, value_name = "STRING", requires = "args_from")]
    template: Option<OsString>,

    /// Read items for the template (--template, or the command after --) from FILE (`-` for standard input), one per line.
    #[arg(long, short = 'a', value_name = "FILE")]
    args_from: Option<PathBuf>,

    /// Split the items of --args-from at NUL bytes instead of newlines (as from `find -print0`).
    #[arg(long, short = '0', requires = "args_from")]
    null: bool,

    /// Pass jobs' standard output and error on as whole lines (lines), let jobs write to those of waitprocs directly (inherit), or drop them (discard).
    #[arg(
        long,
        value_name = "MODE",
        value_enum,
        default_value_t = OutputMode::Lines,
        conflicts_with = "output_dir"
    )]
    output: OutputMode,

    /// Write each job's standard output and error to DIR/N.out and DIR/N.err (N: the job number), creating DIR if needed.
    #[arg(long, value_name = "DIR")]
    output_dir: Option<PathBuf>,

    /// Start each output line with the job's item (or its command) and a tab.
    #[arg(long, conflicts_with = "output_dir")]
    tag: bool,

    /// Start each output line with STRING, its placeholders filled as in templates (no quoting); implies --tag.
    #[arg(long, value_name = "STRING", conflicts_with = "output_dir")]
    tag_string: Option<OsString>,

    /// Do not show the progress bar (shown only while standard error is a terminal).
    #[arg(long)]
    no_progress: bool,

    /// Watch every job through the fallback lane (waitid on a back-off timer, no pidfds): a testing and benchmarking aid.
    #[arg(long)]
    fallback: bool,

    /// The command to run, without a shell; with --args-from, a template.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// Parses the arguments, runs the subcommand and returns its exit status.
pub(crate) fn main() -> ExitCode {
    let started = Instant::now();
    let cli = Cli::parse();
    let result = logging::init(cli.verbose).and_then(|()| match cli.command {
        Command::Wait(args) => wait::wait(args, started),
        Command::Run(args) => run::run(args, started),
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Failure::Usage(message)) => {
            output::warn(format_args!("{message}"));
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Error(message)) => {
            output::warn(format_args!("{message}"));
            ExitCode::from(EXIT_FAILURE)
        }
        Err(Failure::OutputClosed) => ExitCode::from(EXIT_FAILURE),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn clap_definition_is_valid() {
        Cli::command().debug_assert();
    }
}
