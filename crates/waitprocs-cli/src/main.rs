//! The `waitprocs` command: wait for processes by PID, or run a batch of
//! commands, and report each exit as it happens.

fn main() -> std::process::ExitCode {
    waitprocs_cli::main()
}
