//! The engine's `tracing` events on standard error.
//!
//! Warnings and errors are shown by default (the engine warns once per kind
//! of fallback, and logs a callback panic or a failing poller). `-v` adds
//! info, `-vv` debug (backend choice, overflow shards, termination steps) and
//! `-vvv` trace (every registration and exit). `WAITPROCS_LOG` replaces the
//! level with a filter in `tracing-subscriber`'s `Targets` syntax.

use std::io::{self, Write};
use std::sync::{Mutex, PoisonError};

use indicatif::ProgressBar;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;

use crate::app::output::Failure;

/// The environment variable that sets the log filter: a level (`debug`) or
/// comma-separated `target=level` pairs (`waitprocs_core=trace`).
pub(crate) const LOG_ENV: &str = "WAITPROCS_LOG";

/// The progress bar to clear around each log line, while `run` shows one.
static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Installs the subscriber for the verbosity given by `-v` flags, or for
/// `WAITPROCS_LOG` when it is set and not empty.
///
/// # Errors
///
/// A usage failure naming the value when `WAITPROCS_LOG` is not a valid
/// filter or not UTF-8.
pub(crate) fn init(verbosity: u8) -> Result<(), Failure> {
    let filter = match std::env::var(LOG_ENV) {
        Ok(spec) if !spec.trim().is_empty() => parse_filter(&spec).map_err(|reason| {
            Failure::Usage(format!(
                "invalid {LOG_ENV} '{spec}': {reason}; set a level (off, error, warn, info, \
                 debug, trace) or target=level pairs separated by commas, such as \
                 waitprocs_core=trace"
            ))
        })?,
        Err(std::env::VarError::NotUnicode(spec)) => {
            return Err(Failure::Usage(format!(
                "invalid {LOG_ENV} {spec:?}: not UTF-8"
            )))
        }
        _ => Targets::new().with_default(level_for(verbosity)),
    };
    // The formatter's own maximum (INFO by default) is lifted, so that
    // `filter` alone decides what is shown.
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(LevelFilter::TRACE)
        .with_writer(Stderr)
        .with_ansi(false)
        .with_target(true)
        .finish();
    let subscriber = tracing_subscriber::layer::SubscriberExt::with(subscriber, filter);
    // Only `main` installs a subscriber, once; a second call would be a bug
    // in this file, and the first subscriber then stays.
    let _ = tracing::subscriber::set_global_default(subscriber);
    Ok(())
}

/// Parses a filter: comma-separated directives, each a level (the default
/// for every target) or `target=level`.
///
/// Stricter than `Targets`' own parser, which reads a misspelt level as the
/// name of a target and so silently shows nothing.
fn parse_filter(spec: &str) -> Result<Targets, String> {
    let mut filter = Targets::new();
    for directive in spec.split(',').map(str::trim) {
        if directive.is_empty() {
            return Err("a directive between commas is empty".into());
        }
        let Some((target, level)) = directive.split_once('=') else {
            let level = parse_level(directive)?;
            filter = filter.with_default(level);
            continue;
        };
        let target = target.trim();
        let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
        if target.is_empty() || !target.chars().all(valid) {
            return Err(format!(
                "'{target}' is not a target: targets are module paths such as \
                 waitprocs_core::engine (letters, digits, '_' and '::')"
            ));
        }
        filter = filter.with_target(target, parse_level(level.trim())?);
    }
    Ok(filter)
}

fn parse_level(text: &str) -> Result<LevelFilter, String> {
    text.parse::<LevelFilter>()
        .map_err(|_| format!("'{text}' is not a level"))
}

/// Maps the count of `-v` flags to the most detailed level shown.
fn level_for(verbosity: u8) -> LevelFilter {
    match verbosity {
        0 => LevelFilter::WARN,
        1 => LevelFilter::INFO,
        2 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

/// Makes log lines clear the progress bar of `run` while it is shown.
pub(crate) fn set_progress_bar(bar: Option<ProgressBar>) {
    *BAR.lock().unwrap_or_else(PoisonError::into_inner) = bar;
}

/// Standard error, with the progress bar cleared around each write.
#[derive(Debug, Clone, Copy)]
struct Stderr;

impl Write for Stderr {
    /// Writes a log line, or drops it if standard error is closed or full.
    /// The formatter would otherwise report the failure with `eprintln!`,
    /// which panics when standard error is gone, and a log line is never
    /// worth ending the run (and orphaning its jobs) for.
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        // The formatter hands over one whole line per call, so the bar is
        // cleared once per log line.
        let bar = BAR.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let write = || {
            let _ = io::stderr().lock().write_all(bytes);
        };
        match bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Stderr;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_accepts_levels_and_targets() {
        for spec in [
            "debug",
            "TRACE",
            "off",
            "waitprocs_core=trace",
            "warn, waitprocs_core::engine=debug",
        ] {
            assert!(parse_filter(spec).is_ok(), "{spec}");
        }
    }

    #[test]
    fn filter_rejects_typos() {
        let cases = [
            ("debg", "'debg' is not a level"),
            ("garbage", "'garbage' is not a level"),
            ("waitprocs_core=loud", "'loud' is not a level"),
            ("waitprocs-core=trace", "'waitprocs-core' is not a target"),
            ("=trace", "'' is not a target"),
            ("warn,,debug", "empty"),
            ("[", "'[' is not a level"),
        ];
        for (spec, reason) in cases {
            let error = parse_filter(spec).expect_err(spec);
            assert!(error.contains(reason), "{spec}: {error}");
        }
    }

    #[test]
    fn verbosity_maps_to_levels() {
        assert_eq!(level_for(0), LevelFilter::WARN);
        assert_eq!(level_for(1), LevelFilter::INFO);
        assert_eq!(level_for(2), LevelFilter::DEBUG);
        assert_eq!(level_for(3), LevelFilter::TRACE);
        assert_eq!(level_for(9), LevelFilter::TRACE);
    }
}
