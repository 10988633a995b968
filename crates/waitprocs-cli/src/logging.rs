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
        Ok(spec) if !spec.trim().is_empty() => spec.parse::<Targets>().map_err(|error| {
            Failure::Usage(format!(
                "invalid {LOG_ENV} '{spec}': {error}; set a level such as warn or debug, \
                 or target=level pairs separated by commas"
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
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        // The formatter hands over one whole line per call, so the bar is
        // cleared once per log line.
        let bar = BAR.lock().unwrap_or_else(PoisonError::into_inner).clone();
        match bar {
            Some(bar) => bar.suspend(|| io::stderr().lock().write(bytes)),
            None => io::stderr().lock().write(bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
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
    fn verbosity_maps_to_levels() {
        assert_eq!(level_for(0), LevelFilter::WARN);
        assert_eq!(level_for(1), LevelFilter::INFO);
        assert_eq!(level_for(2), LevelFilter::DEBUG);
        assert_eq!(level_for(3), LevelFilter::TRACE);
        assert_eq!(level_for(9), LevelFilter::TRACE);
    }
}
