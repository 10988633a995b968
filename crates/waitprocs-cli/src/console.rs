//! The terminal side of `run`: batched writes to standard output and error,
//! and the progress bar, which is cleared around every write so that neither
//! garbles the other.

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::app::capture::StreamKind;
use crate::app::output::Failure;

/// How often the bar redraws by itself, so that elapsed time, rate and ETA
/// move while no job ends.
const TICK: Duration = Duration::from_millis(250);

/// Writes of one turn of the run loop, and the progress bar if one is shown.
#[derive(Debug)]
pub(crate) struct Console {
    bar: Option<ProgressBar>,
    /// Whether standard output is the terminal the bar is drawn on, so that
    /// writes to it must clear the bar first.
    stdout_is_terminal: bool,
    started: Instant,
    /// Bytes for standard output: job output lines and reports, in order.
    pub(crate) out: Vec<u8>,
    /// Bytes for standard error: job error lines.
    pub(crate) err: Vec<u8>,
}

impl Console {
    /// Creates the console, with a bar for `total` jobs if `progress` is set
    /// and standard error is a terminal.
    pub(crate) fn new(total: usize, progress: bool) -> Self {
        let bar = (progress && io::stderr().is_terminal()).then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30.cyan/blue}] {pos}/{len} done, {msg}, ETA {eta}",
            )
            .expect("the progress template is valid")
            .progress_chars("=> ");
            bar.set_style(style);
            bar.enable_steady_tick(TICK);
            bar
        });
        crate::app::logging::set_progress_bar(bar.clone());
        Self {
            bar,
            stdout_is_terminal: io::stdout().is_terminal(),
            started: Instant::now(),
            out: Vec::new(),
            err: Vec::new(),
        }
    }

    /// Returns the buffer for a job's standard output or error.
    pub(crate) fn buffer(&mut self, kind: StreamKind) -> &mut Vec<u8> {
        match kind {
            StreamKind::Stdout => &mut self.out,
            StreamKind::Stderr => &mut self.err,
        }
    }

    /// Returns a handle to the bar for other threads, which pass it to [`warn`].
    pub(crate) fn bar(&self) -> Option<ProgressBar> {
        self.bar.clone()
    }

    /// Updates the bar: jobs done (their last attempt ended), running, failed.
    pub(crate) fn progress(&self, done: usize, running: usize, failed: usize) {
        let Some(bar) = &self.bar else {
            return;
        };
        let seconds = self.started.elapsed().as_secs_f64();
        let rate = if seconds > 0.0 {
            done as f64 / seconds
        } else {
            0.0
        };
        bar.set_position(done as u64);
        bar.set_message(format!(
            "{running} running, {failed} failed, {rate:.1} jobs/s"
        ));
    }

    /// Writes the batched bytes: standard error first, so that a job's error
    /// lines come before the report of its end.
    ///
    /// # Errors
    ///
    /// `OutputClosed` if standard output is closed, `Error` for another
    /// failure to write it. A failure to write standard error is ignored, as
    /// there is nowhere left to report it.
    pub(crate) fn flush(&mut self) -> Result<(), Failure> {
        if self.out.is_empty() && self.err.is_empty() {
            return Ok(());
        }
        let (out, err) = (std::mem::take(&mut self.out), std::mem::take(&mut self.err));
        let write = || {
            if !err.is_empty() {
                let _ = io::stderr().lock().write_all(&err);
            }
            if out.is_empty() {
                return Ok(());
            }
            let mut stdout = io::stdout().lock();
            stdout.write_all(&out).and_then(|()| stdout.flush())
        };
        let clear_bar = !err.is_empty() || self.stdout_is_terminal;
        let written = match &self.bar {
            Some(bar) if clear_bar => bar.suspend(write),
            _ => write(),
        };
        // The buffers keep their capacity for the next turn.
        self.out = out;
        self.out.clear();
        self.err = err;
        self.err.clear();
        written.map_err(|error| {
            if error.kind() == io::ErrorKind::BrokenPipe {
                Failure::OutputClosed
            } else {
                Failure::Error(format!("cannot write to standard output: {error}"))
            }
        })
    }

    /// Removes the bar from the terminal for good.
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            crate::app::logging::set_progress_bar(None);
            bar.finish_and_clear();
        }
    }
}

/// Writes a message to standard error, prefixed with the program name, with
/// the bar cleared around it. A failed write is ignored.
pub(crate) fn warn(bar: Option<&ProgressBar>, message: fmt::Arguments<'_>) {
    let write = || {
        let _ = writeln!(io::stderr().lock(), "waitprocs: {message}");
    };
    match bar {
        Some(bar) => bar.suspend(write),
        None => write(),
    }
}
