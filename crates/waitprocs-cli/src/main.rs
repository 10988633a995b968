//! The `waitprocs` command: wait for processes by PID, or run a batch of
//! commands, and report each exit as it happens.

// The command waits on Unix processes and signals them, so it is built only
// there; elsewhere the binary explains that and exits.
#[cfg(unix)]
mod app;

#[cfg(unix)]
fn main() -> std::process::ExitCode {
    app::main()
}

#[cfg(not(unix))]
fn main() -> std::process::ExitCode {
    eprintln!("waitprocs: this command needs a Unix system (Linux, macOS or a BSD)");
    std::process::ExitCode::FAILURE
}
