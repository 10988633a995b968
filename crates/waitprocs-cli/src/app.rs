//! The command on Unix: argument parsing and dispatch to `wait` and `run`.

#[path = "args.rs"]
mod args;
#[path = "jobs.rs"]
mod jobs;
#[path = "output.rs"]
mod output;
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

use clap::{Args, Parser, Subcommand};

use self::output::Failure;

/// Exit status: every process waited for is gone (and, for `run`, every job succeeded).
const EXIT_OK: u8 = 0;
/// Exit status: a job failed, a PID was not found, or an error occurred.
const EXIT_FAILURE: u8 = 1;
/// Exit status: invalid arguments.
const EXIT_USAGE: u8 = 2;
/// Exit status of `wait`: the timeout passed while processes were still alive.
const EXIT_TIMEOUT: u8 = 124;

const MAIN_AFTER_HELP: &str = "\
Exit status:
  0    every process waited for is gone (run: and every job exited with code 0)
  1    a job failed, timed out or could not be started, a PID was not found,
       standard output was closed, or another error occurred
  2    usage error: an invalid option, duration or PID
  124  wait only: the timeout passed while processes were still alive

Durations (DUR) are seconds as a decimal number (0.5) or a number with a unit:
ms, s, m or h (500ms, 2s, 1m, 1h).";

const WAIT_AFTER_HELP: &str = "\
Each exit is printed as soon as it is detected, with the time since waitprocs
started. A process that is not a child of waitprocs (any process given by PID)
usually has an unknown exit status: the status belongs to its parent, and the
kernel keeps it for others only after the parent has reaped the process
(Linux 6.15 and later). A PID given more than once is waited for once. A PID
with no process is reported as gone with status unknown, and the exit status
is then 1. When waitprocs stops early (--any, --count or --timeout), the
processes still running are printed with status alive.

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
Jobs run with standard input from /dev/null and share the standard output and
standard error of waitprocs, so their output mixes with the reports; with
--json, read only the lines that are JSON objects, or redirect the jobs'
output inside the commands. Each job runs in its own process group. If
standard output is closed (a reader such as `head -1` has gone), waitprocs
ends at once with status 1 and no message, as a program killed by SIGPIPE
would; jobs already started keep running.

With --timeout, a job still running after DUR is sent SIGTERM, and SIGKILL if
it is still running --kill-after later (5 s by default). Each signal goes to
the job's process through its pidfd and to the job's process group, so that
the commands a shell job started get it too. SIGKILL is sent only if the
job's own process is still running by then. A timed-out job counts as failed,
whatever its exit status. SIGINT, SIGTERM, SIGHUP and SIGQUIT received
by waitprocs are passed on the same way to the running jobs; waitprocs then
starts no new job, reports the running ones as they end, and ends itself by
the signal it received. A signal that waitprocs inherited as ignored (as from
nohup) stays ignored, for waitprocs and its jobs.

Fields of --json: job (from 1), line (in FILE), command, pid, status (exited,
signaled, unknown or failed_to_start), code, signal, signal_name, core_dumped,
elapsed_ms (since the job started), start_ms (since waitprocs started),
timed_out, sigkill_sent, user_ms, system_ms, max_rss_kib (resource usage of
the job and the children it waited for), error (why it failed to start).
Fields that do not apply are null.

Exit status:
  0    every job exited with code 0
  1    a job failed, timed out or could not be started, the job file could not
       be read, standard output was closed, or another error occurred
  2    usage error: an invalid option or duration
  (killed by the signal it received, after SIGINT, SIGTERM, SIGHUP or SIGQUIT)";

/// Wait for processes, or run commands, and report each exit as it happens.
#[derive(Debug, Parser)]
#[command(name = "waitprocs", version, after_help = MAIN_AFTER_HELP)]
struct Cli {
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
        override_usage = "waitprocs run [OPTIONS] --file FILE\n       waitprocs run [OPTIONS] -- CMD [ARG]..."
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
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,

    /// Print one JSON object per line instead of text.
    #[arg(long)]
    json: bool,

    /// Processes to wait for.
    #[arg(
        value_name = "PID",
        required = true,
        value_parser = args::parse_pid,
        allow_negative_numbers = true
    )]
    pids: Vec<u32>,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["file", "command"]))]
struct RunArgs {
    /// Run at most N jobs at a time [default: the number of CPUs].
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    jobs: Option<u32>,

    /// Stop each job still running DUR after it started (SIGTERM, then SIGKILL).
    #[arg(long, value_name = "DUR", value_parser = args::parse_duration, allow_negative_numbers = true)]
    timeout: Option<Duration>,

    /// Send SIGKILL to a timed-out job still running DUR after SIGTERM.
    #[arg(
        long,
        value_name = "DUR",
        default_value = "5s",
        value_parser = args::parse_duration,
        allow_negative_numbers = true,
        requires = "timeout"
    )]
    kill_after: Duration,

    /// Print one JSON object per line instead of text.
    #[arg(long)]
    json: bool,

    /// Read commands from FILE (`-` for standard input), one per line, each run with `sh -c`. Empty lines and lines starting with `#` are skipped.
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,

    /// Run this one command with its arguments, without a shell.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<OsString>,
}

pub(crate) fn main() -> ExitCode {
    let started = Instant::now();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Wait(args) => wait::wait(args, started),
        Command::Run(args) => run::run(args, started),
    };
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
