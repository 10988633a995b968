//! Runs a list of shell commands with at most `--jobs` of them at once, reports
//! each exit with its status, wall time and CPU time, and exits with code 1 if
//! any command failed.
//!
//! The caller drives the engine: `wait(WaitFor::Any, None)` runs the dispatch on
//! this thread and returns as soon as a command ends, which is when the next one
//! may start. A batch has nothing else to do meanwhile, so it needs no thread.
//!
//! Run it with `cargo run -p waitprocs --example batch -- --jobs 4 'sleep 1' 'exit 3'`,
//! or without commands to run the built-in list.

use std::io;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use waitprocs::{Engine, ExitEvent, WaitFor};

/// Commands run when none are given: quick and slow, succeeding, failing with
/// a code, killed by a signal, and some that use CPU time.
const DEFAULT_COMMANDS: &[&str] = &[
    "true",
    "false",
    "exit 3",
    "sleep 0.5",
    "sleep 1",
    "sleep 0.2; exit 4",
    "sleep 0.3 && false",
    "kill -TERM $$",
    "kill -KILL $$",
    "ls / >/dev/null",
    "ls /no-such-directory 2>/dev/null",
    "grep -q root /etc/passwd",
    "grep -q no-such-user-here /etc/passwd",
    "i=0; while [ $i -lt 200000 ]; do i=$((i + 1)); done",
    "head -c 30000000 /dev/zero | cksum >/dev/null",
    "seq 200000 | sort -r >/dev/null",
    "no-such-command-here 2>/dev/null",
    "sh -c 'exit 5'",
    "test -d /tmp",
    "uname -a >/dev/null",
];

const USAGE: &str = "\
usage: batch [-j|--jobs N] [--] [COMMAND...]

Runs each COMMAND with `sh -c`, at most N at once (default 4, at most 256),
and reports its exit status, wall time and CPU time (user + system, including
the children it waited for). Without COMMANDs it runs a built-in list of 20.
Exits with code 1 if any command did not exit with code 0.";

/// Width of the command column in the report.
const COMMAND_WIDTH: usize = 44;

#[derive(Debug)]
struct Config {
    jobs: usize,
    commands: Vec<String>,
}

#[derive(Debug, Default)]
struct Summary {
    succeeded: usize,
    failed: usize,
    cpu_time: Duration,
}

fn main() -> ExitCode {
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(Some(config)) => config,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("batch: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&config) {
        Ok(summary) if summary.failed == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("batch: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Parses the arguments. Returns `None` when help was requested.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Config>, String> {
    let mut config = Config {
        jobs: 4,
        commands: Vec::new(),
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--jobs" | "-j" => {
                let value = args.next().ok_or("missing value for --jobs")?;
                config.jobs = match value.parse() {
                    Ok(jobs @ 1..=256) => jobs,
                    _ => {
                        return Err(format!(
                            "invalid value '{value}' for --jobs: use a whole number from 1 to 256"
                        ))
                    }
                };
            }
            "--" => {
                config.commands.extend(args.by_ref());
            }
            other if other.starts_with('-') => {
                return Err(format!(
                    "unknown option '{other}'; put `--` before a command that starts with '-'"
                ))
            }
            _ => config.commands.push(arg),
        }
    }
    if config.commands.is_empty() {
        config.commands = DEFAULT_COMMANDS
            .iter()
            .map(|&command| command.to_owned())
            .collect();
    }
    Ok(Some(config))
}

fn run(config: &Config) -> io::Result<Summary> {
    let started = Instant::now();
    let total = config.commands.len();
    // The data of each process is the index of its command.
    let engine = Engine::<usize>::builder().build()?;
    let mut summary = Summary::default();
    let mut next = 0;

    while next < total || !engine.is_empty() {
        while next < total && engine.len() < config.jobs {
            let command = &config.commands[next];
            let spawned = Command::new("sh")
                .args(["-c", command])
                .stdin(Stdio::null())
                .spawn();
            match spawned {
                Ok(child) => {
                    engine.register_child(child, next)?;
                }
                Err(error) => {
                    summary.failed += 1;
                    println!(
                        "{:>3}/{total} {:<COMMAND_WIDTH$} FAILED  sh could not be started: {error}",
                        next + 1,
                        shorten(command),
                    );
                }
            }
            next += 1;
        }
        if engine.is_empty() {
            continue;
        }

        // Without a timeout this returns only when a command has ended.
        let outcome = engine.wait(WaitFor::Any, None)?;
        for exit in &outcome.gone {
            report(exit, &config.commands, &mut summary);
        }
    }

    println!(
        "{total} commands: {} succeeded, {} failed, in {:.2} s wall time and {:.2} s CPU time",
        summary.succeeded,
        summary.failed,
        started.elapsed().as_secs_f64(),
        summary.cpu_time.as_secs_f64()
    );
    Ok(summary)
}

fn report(exit: &ExitEvent<usize>, commands: &[String], summary: &mut Summary) {
    let verdict = if exit.status.success() {
        summary.succeeded += 1;
        "ok"
    } else {
        summary.failed += 1;
        "FAILED"
    };
    // Usage is `None` when the engine did not reap the child itself, for
    // example because someone else reaped it first.
    let cpu = match exit.usage {
        Some(usage) => {
            let cpu_time = usage.user_time + usage.system_time;
            summary.cpu_time += cpu_time;
            format!("{:6.3} s", cpu_time.as_secs_f64())
        }
        None => "unknown".to_owned(),
    };
    println!(
        "{:>3}/{} {:<COMMAND_WIDTH$} {verdict:<7} {:<30} wall {:6.3} s  cpu {cpu}",
        exit.data + 1,
        commands.len(),
        shorten(&commands[exit.data]),
        exit.status.to_string(),
        exit.waited().as_secs_f64(),
    );
}

/// Cuts a command to the report's column width, on a character boundary.
fn shorten(command: &str) -> String {
    if command.chars().count() <= COMMAND_WIDTH {
        return command.to_owned();
    }
    let mut short: String = command.chars().take(COMMAND_WIDTH - 3).collect();
    short.push_str("...");
    short
}
