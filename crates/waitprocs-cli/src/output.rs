//! Reports on standard output, messages on standard error, and the fields
//! shared by both subcommands' JSON records.

use std::fmt;
use std::io::{self, Write};
use std::time::Duration;

use serde::Serialize;
use waitprocs::{signal_name, ExitStatus};

/// The reason a subcommand stopped without an exit status of its own.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Input that clap accepted but that turned out invalid: exit status 2.
    Usage(String),
    /// A runtime error: exit status 1.
    Error(String),
    /// Standard output was closed (EPIPE): exit status 1 without a message,
    /// as a reader such as `head -1` closes the pipe on purpose.
    OutputClosed,
}

/// Writes one report line to standard output and flushes it.
///
/// # Errors
///
/// `OutputClosed` if the reader has gone away, `Error` for any other write
/// failure (a full disk, for example).
pub(crate) fn print_line(line: &str) -> Result<(), Failure> {
    let mut stdout = io::stdout().lock();
    let written = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
    written.map_err(|error| {
        if error.kind() == io::ErrorKind::BrokenPipe {
            Failure::OutputClosed
        } else {
            Failure::Error(format!("cannot write to standard output: {error}"))
        }
    })
}

/// Writes one record as a line of JSON.
///
/// # Errors
///
/// As for [`print_line`].
pub(crate) fn print_json(record: &impl Serialize) -> Result<(), Failure> {
    let line = serde_json::to_string(record)
        .map_err(|error| Failure::Error(format!("cannot encode a JSON record: {error}")))?;
    print_line(&line)
}

/// Writes a message to standard error, prefixed with the program name.
/// A failed write is ignored, because there is nowhere left to report it.
pub(crate) fn warn(message: fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "waitprocs: {message}");
}

/// Writes tabs, newlines and carriage returns as `\t`, `\n` and `\r`, so
/// that a command or item shown in a report line or a `--tag` prefix keeps
/// the line whole. Other bytes, backslashes included, stay as they are.
pub(crate) fn escape_controls(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for &byte in bytes {
        match byte {
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(byte),
        }
    }
    out
}

/// Escapes text as [`escape_controls`] escapes bytes.
pub(crate) fn escape_controls_str(text: &str) -> String {
    // Only ASCII bytes are replaced, by ASCII, so the text stays UTF-8.
    String::from_utf8(escape_controls(text.as_bytes())).unwrap_or_else(|_| text.to_owned())
}

/// Formats a duration as seconds with two decimals, `1.52s`.
pub(crate) fn seconds(duration: Duration) -> String {
    format!("{:.2}s", duration.as_secs_f64())
}

/// Converts a duration to milliseconds with microsecond resolution.
pub(crate) fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// The status fields of a JSON record. `code`, `signal`, `signal_name` and
/// `core_dumped` are null where they do not apply.
#[derive(Debug, Serialize)]
pub(crate) struct StatusFields {
    /// `exited`, `signaled`, `unknown` or `alive`; `run` adds `failed_to_start`.
    pub(crate) status: &'static str,
    pub(crate) code: Option<i32>,
    pub(crate) signal: Option<i32>,
    pub(crate) signal_name: Option<&'static str>,
    pub(crate) core_dumped: Option<bool>,
}

impl StatusFields {
    /// Fields for a process that has ended.
    pub(crate) fn ended(status: ExitStatus) -> Self {
        match status {
            ExitStatus::Exited(code) => Self::named("exited", Some(code), None, None),
            ExitStatus::Signaled {
                signal,
                core_dumped,
            } => Self::named("signaled", None, Some(signal), Some(core_dumped)),
            ExitStatus::Unknown => Self::named("unknown", None, None, None),
        }
    }

    /// Fields for a process that was still running.
    pub(crate) fn alive() -> Self {
        Self::named("alive", None, None, None)
    }

    /// Fields for a job whose process could not be started.
    pub(crate) fn failed_to_start() -> Self {
        Self::named("failed_to_start", None, None, None)
    }

    fn named(
        status: &'static str,
        code: Option<i32>,
        signal: Option<i32>,
        core_dumped: Option<bool>,
    ) -> Self {
        Self {
            status,
            code,
            signal,
            signal_name: signal.and_then(signal_name),
            core_dumped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_controls_keeps_one_line() {
        assert_eq!(escape_controls(b"a\tb\nc\rd"), b"a\\tb\\nc\\rd");
        assert_eq!(escape_controls(b"printf 'x\\n'"), b"printf 'x\\n'");
        assert_eq!(escape_controls_str("t\u{e9}st\n"), "t\u{e9}st\\n");
    }

    #[test]
    fn millis_keeps_microseconds() {
        assert_eq!(millis(Duration::from_micros(1_234_567)), 1234.567);
        assert_eq!(millis(Duration::ZERO), 0.0);
    }

    #[test]
    fn seconds_has_two_decimals() {
        assert_eq!(seconds(Duration::from_millis(1520)), "1.52s");
        assert_eq!(seconds(Duration::from_millis(4)), "0.00s");
    }

    #[test]
    fn signaled_fields_name_signal() {
        let fields = StatusFields::ended(ExitStatus::Signaled {
            signal: 9,
            core_dumped: false,
        });
        assert_eq!(fields.status, "signaled");
        assert_eq!(fields.signal, Some(9));
        assert_eq!(fields.signal_name, Some("SIGKILL"));
        assert_eq!(fields.core_dumped, Some(false));
        assert_eq!(fields.code, None);
    }
}
