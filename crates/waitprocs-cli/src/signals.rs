//! The signals `run` passes on to its jobs, and ending by one of them.

use std::fs;

use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};

/// Signals that end waitprocs by default and that `run` passes on to its jobs.
const FORWARDED: [i32; 4] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT];

/// Returns the signals to catch and pass on: those of [`FORWARDED`] that
/// this process does not ignore.
///
/// An ignored signal stays ignored, so `nohup waitprocs run` keeps ignoring
/// SIGHUP, and the jobs inherit that as they would without waitprocs.
pub(crate) fn forwarded() -> Vec<i32> {
    let ignored = ignored_mask().unwrap_or(0);
    FORWARDED
        .into_iter()
        .filter(|&signal| ignored & (1 << (signal - 1)) == 0)
        .collect()
}

/// Reads the mask of ignored signals (`SigIgn`, bit `n - 1` for signal `n`)
/// from `/proc/self/status`, see proc_pid_status(5).
fn ignored_mask() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    parse_ignored_mask(&status)
}

fn parse_ignored_mask(status: &str) -> Option<u64> {
    let value = status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))?;
    u64::from_str_radix(value.trim(), 16).ok()
}

/// Ends this process by `signal`, as its default action would, so the parent
/// gets the same status as without waitprocs. Returns the shell's conventional
/// exit status, 128 + signal, if the signal did not end the process.
pub(crate) fn end_by(signal: i32) -> u8 {
    let _ = signal_hook::low_level::emulate_default_handler(signal);
    u8::try_from(128 + signal).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignored_mask_parses_hex() {
        let status = "Name:\tsh\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000006\n";
        assert_eq!(parse_ignored_mask(status), Some(0b110));
    }

    #[test]
    fn ignored_mask_missing_is_none() {
        assert_eq!(parse_ignored_mask("Name:\tsh\n"), None);
    }
}
