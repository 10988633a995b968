//! The `waitprocs` command-line tool: wait for processes by PID, or run a
//! batch of commands, and report each exit as it happens.
//!
//! The binary only calls [`main`]. The parsers of its input are public so that
//! fuzz targets and tests can reach them: [`args`] (durations, PIDs, `--halt`),
//! [`jobs`] (job files and argument lists) and [`template`] (command
//! templates and shell quoting). They build and run on every platform; the
//! command itself needs Unix.

pub mod args;
pub mod jobs;
pub mod template;

// The command waits on Unix processes and signals them, so it is built only
// there; elsewhere `main` explains that and exits.
#[cfg(unix)]
mod app;

/// Runs the `waitprocs` command with the process's arguments and returns its
/// exit status.
#[cfg(unix)]
pub fn main() -> std::process::ExitCode {
    app::main()
}

/// Explains that the command needs Unix, and fails.
#[cfg(not(unix))]
pub fn main() -> std::process::ExitCode {
    eprintln!("waitprocs: this command needs a Unix system (Linux, macOS or a BSD)");
    std::process::ExitCode::FAILURE
}
