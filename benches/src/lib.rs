//! Shared pieces of the benchmark harness: the clock, samples of the waiter's
//! own CPU time and memory, the plan that sets when each child exits, and the
//! gate that starts every child's countdown at once.
//!
//! Every waiter, Rust or Python, follows the same protocol, so that the runner
//! can compare them. It spawns the children (or registers PIDs), takes a
//! [`Sample`] and opens the [`Gate`]. It records `CLOCK_MONOTONIC` as each exit
//! is delivered, then takes a second sample and prints one JSON object on
//! stdout.
#![cfg(target_os = "linux")]

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::Duration;

use rustix::process::{Resource, Rlimit};
use rustix::time::ClockId;

/// Reads `CLOCK_MONOTONIC` in nanoseconds, the clock that every child and
/// every waiter (Rust and Python) stamps events with.
pub fn monotonic_ns() -> u64 {
    to_ns(rustix::time::clock_gettime(ClockId::Monotonic))
}

fn to_ns(ts: rustix::time::Timespec) -> u64 {
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sleeps until `CLOCK_MONOTONIC` reaches `deadline_ns`.
pub fn sleep_until_ns(deadline_ns: u64) {
    let request = rustix::time::Timespec {
        tv_sec: (deadline_ns / 1_000_000_000) as i64,
        tv_nsec: (deadline_ns % 1_000_000_000) as _,
    };
    // EINTR only: the loop sleeps again toward the same absolute deadline.
    while rustix::thread::clock_nanosleep_absolute(ClockId::Monotonic, &request).is_err() {}
}

/// The waiter's own resource use at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// `CLOCK_MONOTONIC` when the sample was taken.
    pub at_ns: u64,
    /// CPU time of the whole process, user and system
    /// (`CLOCK_PROCESS_CPUTIME_ID`), read first thing in [`Sample::take`].
    pub cpu_ns: u64,
    /// The same clock read last thing in [`Sample::take`], so that a delta
    /// leaves out the cost of reading `/proc`.
    pub cpu_after_ns: u64,
    /// Voluntary context switches, summed over the live threads.
    pub voluntary: u64,
    /// Involuntary context switches, summed over the live threads.
    pub involuntary: u64,
    /// Resident set size (`VmRSS`) in KiB.
    pub rss_kib: u64,
}

fn process_cpu_ns() -> u64 {
    to_ns(rustix::time::clock_gettime(ClockId::ProcessCPUTime))
}

fn thread_cpu_ns() -> u64 {
    to_ns(rustix::time::clock_gettime(ClockId::ThreadCPUTime))
}

/// Thread id of the running [`Sampler`] thread, 0 when there is none.
static SAMPLER_TID: AtomicU32 = AtomicU32::new(0);
/// CPU time the sampler thread had used when it last went to sleep.
static SAMPLER_CPU_NS: AtomicU64 = AtomicU64::new(0);

/// Returns the CPU time the sampler thread has used so far: read live on the
/// sampler itself, else its last figure (it is asleep then).
fn sampler_cpu_ns(on_sampler: bool) -> u64 {
    if on_sampler {
        thread_cpu_ns()
    } else {
        SAMPLER_CPU_NS.load(Ordering::Acquire)
    }
}

impl Sample {
    /// Takes a sample of the calling process, leaving out the [`Sampler`]
    /// thread's own CPU time and context switches, so that a waiter blocked
    /// in the kernel measures close to zero.
    ///
    /// Context switches come from `/proc/self/task/*/status`, so a thread that
    /// ends between two samples takes its count with it: the waiters keep
    /// every thread alive until the last sample.
    pub fn take() -> Self {
        let sampler_tid = SAMPLER_TID.load(Ordering::Acquire);
        let on_sampler = sampler_tid != 0
            && sampler_tid == rustix::thread::gettid().as_raw_nonzero().get() as u32;
        let cpu_ns = process_cpu_ns().saturating_sub(sampler_cpu_ns(on_sampler));
        let at_ns = monotonic_ns();
        let (voluntary, involuntary, rss_kib) = prepared_counts(sampler_tid).unwrap_or_else(|| {
            let (voluntary, involuntary) = context_switches(sampler_tid);
            (voluntary, involuntary, rss_kib())
        });
        let cpu_after_ns = process_cpu_ns().saturating_sub(sampler_cpu_ns(on_sampler));
        Self {
            at_ns,
            cpu_ns,
            cpu_after_ns,
            voluntary,
            involuntary,
            rss_kib,
        }
    }

    /// Inserts what was used from `earlier` to `self` into `out`, as JSON
    /// fields with the given prefix (`window_cpu_ns`, `window_voluntary`, ...).
    pub fn since(
        &self,
        earlier: &Sample,
        prefix: &str,
        out: &mut serde_json::Map<String, serde_json::Value>,
    ) {
        let fields = [
            ("wall_ns", self.at_ns.saturating_sub(earlier.at_ns)),
            ("cpu_ns", self.cpu_ns.saturating_sub(earlier.cpu_after_ns)),
            (
                "voluntary",
                self.voluntary.saturating_sub(earlier.voluntary),
            ),
            (
                "involuntary",
                self.involuntary.saturating_sub(earlier.involuntary),
            ),
        ];
        for (name, value) in fields {
            out.insert(format!("{prefix}_{name}"), value.into());
        }
    }
}

fn status_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
        .and_then(|value| value.parse().ok())
}

/// Status files of the threads that existed at [`prepare_sampling`], kept
/// open so that samples need no new descriptor.
static STATUS_FILES: OnceLock<Vec<(u32, File)>> = OnceLock::new();

/// Opens the status file of every current thread and keeps it, so that
/// [`Sample::take`] still works when the process has no descriptor left (the
/// scale scenario runs at the descriptor limit). Threads started later, such as
/// the [`Sampler`], are left out of the samples.
///
/// # Errors
///
/// Returns the error of listing `/proc/self/task` or of opening the status
/// file of a thread that still exists.
pub fn prepare_sampling() -> io::Result<()> {
    let mut files = Vec::new();
    for task in fs::read_dir("/proc/self/task")? {
        let task = task?;
        let tid = task.file_name().to_string_lossy().parse().unwrap_or(0);
        match File::open(task.path().join("status")) {
            Ok(file) => files.push((tid, file)),
            // The thread ended between the listing and the open; a test
            // harness ends its threads at any time.
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        }
    }
    let _ = STATUS_FILES.set(files);
    Ok(())
}

/// Reads a whole file from offset 0; a proc file is generated afresh then.
fn read_whole(file: &File) -> io::Result<String> {
    let mut bytes = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let read = file.read_at(&mut chunk, bytes.len() as u64)?;
        if read == 0 {
            break;
        }
        bytes.extend_from_slice(&chunk[..read]);
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Returns the voluntary and involuntary context switches and the RSS (KiB)
/// from the kept status files, if [`prepare_sampling`] ran.
fn prepared_counts(skip_tid: u32) -> Option<(u64, u64, u64)> {
    let files = STATUS_FILES.get()?;
    let mut totals = (0, 0, 0);
    for (tid, file) in files {
        if *tid == skip_tid {
            continue;
        }
        let Ok(text) = read_whole(file) else {
            continue;
        };
        totals.0 += status_field(&text, "voluntary_ctxt_switches").unwrap_or(0);
        totals.1 += status_field(&text, "nonvoluntary_ctxt_switches").unwrap_or(0);
        totals.2 = totals.2.max(status_field(&text, "VmRSS").unwrap_or(0));
    }
    Some(totals)
}

fn context_switches(skip_tid: u32) -> (u64, u64) {
    let mut totals = (0, 0);
    let Ok(tasks) = fs::read_dir("/proc/self/task") else {
        return totals;
    };
    let skip = skip_tid.to_string();
    for task in tasks.flatten() {
        if task.file_name().to_str() == Some(skip.as_str()) {
            continue;
        }
        if let Ok(text) = fs::read_to_string(task.path().join("status")) {
            totals.0 += status_field(&text, "voluntary_ctxt_switches").unwrap_or(0);
            totals.1 += status_field(&text, "nonvoluntary_ctxt_switches").unwrap_or(0);
        }
    }
    totals
}

fn rss_kib() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|text| status_field(&text, "VmRSS"))
        .unwrap_or(0)
}

/// A thread that samples the process at fixed offsets from a base instant
/// while the waiter waits, for waiters that block in a system call and cannot
/// look at the clock themselves. It stays alive until [`Sampler::finish`], so
/// that its context switches stay counted.
#[derive(Debug)]
pub struct Sampler {
    base: mpsc::Sender<u64>,
    handle: JoinHandle<Vec<Sample>>,
}

impl Sampler {
    /// Starts the thread. Once [`arm`](Self::arm) gives it a base instant, it
    /// takes one sample at each of `offsets_ns` (sorted) after that base.
    ///
    /// # Errors
    ///
    /// Returns the error of `std::thread::Builder::spawn`.
    pub fn start(offsets_ns: Vec<u64>) -> io::Result<Self> {
        let (base, on_base) = mpsc::channel::<u64>();
        let (ready, on_ready) = mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("sampler".into())
            .spawn(move || {
                let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
                SAMPLER_TID.store(tid, Ordering::Release);
                let store_own_cpu = || SAMPLER_CPU_NS.store(thread_cpu_ns(), Ordering::Release);
                let mut samples = Vec::with_capacity(offsets_ns.len());
                store_own_cpu();
                let _ = ready.send(());
                let Ok(base_ns) = on_base.recv() else {
                    return samples;
                };
                for offset in offsets_ns {
                    let target = base_ns + offset;
                    loop {
                        let now = monotonic_ns();
                        if now >= target {
                            break;
                        }
                        let left = Duration::from_nanos(target - now);
                        store_own_cpu();
                        if let Err(mpsc::RecvTimeoutError::Disconnected) =
                            on_base.recv_timeout(left)
                        {
                            return samples;
                        }
                    }
                    samples.push(Sample::take());
                }
                store_own_cpu();
                // Blocks until `finish` drops the sender.
                let _ = on_base.recv();
                samples
            })?;
        // Samples taken from now on must know which thread to leave out.
        let _ = on_ready.recv();
        Ok(Self { base, handle })
    }

    /// Starts the countdown to the samples from `base_ns` (`CLOCK_MONOTONIC`).
    pub fn arm(&self, base_ns: u64) {
        let _ = self.base.send(base_ns);
    }

    /// Stops the thread and returns its samples. An offset not yet reached,
    /// or a sampler never armed, has no sample.
    pub fn finish(self) -> Vec<Sample> {
        drop(self.base);
        let samples = self.handle.join().unwrap_or_default();
        SAMPLER_TID.store(0, Ordering::Release);
        samples
    }
}

/// When each child exits, counted from the moment the gate opens.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Number of children.
    pub n: usize,
    /// Time before the first exit can happen, in milliseconds.
    pub idle_ms: u64,
    /// Length of the interval over which exits are spread, in milliseconds.
    pub spread_ms: u64,
}

impl Plan {
    /// Returns the exit offset of child `index` in microseconds after the gate
    /// opens: `idle_ms` plus a pseudo-random point of the spread, so that exit
    /// order does not follow spawn order.
    pub fn offset_us(&self, index: usize) -> u64 {
        let spread_us = self.spread_ms * 1000;
        let jitter = if spread_us == 0 {
            0
        } else {
            splitmix64(index as u64) % (spread_us + 1)
        };
        self.idle_ms * 1000 + jitter
    }

    /// Returns the latest exit offset in milliseconds.
    pub fn last_exit_ms(&self) -> u64 {
        self.idle_ms + self.spread_ms
    }

    /// Returns the idle interval, in nanoseconds after the gate opens, over
    /// which nothing exits: from 200 ms after the gate (when every child has
    /// woken and gone to sleep) to 100 ms before the first exit. `None` when
    /// that interval would be shorter than 200 ms.
    pub fn idle_window_ns(&self) -> Option<(u64, u64)> {
        let start = 200;
        let end = self.idle_ms.checked_sub(100)?;
        (end >= start + 200).then_some((start * 1_000_000, end * 1_000_000))
    }
}

fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A pipe whose read end is every child's standard input. Children block on
/// it until every write end is closed, so that all of their countdowns start
/// together, after the last one was spawned and registered.
#[derive(Debug)]
pub struct Gate {
    read: OwnedFd,
    write: OwnedFd,
}

impl Gate {
    /// Creates the pipe, close-on-exec on both ends.
    ///
    /// # Errors
    ///
    /// Returns the error of pipe2(2), `EMFILE` for one.
    pub fn new() -> io::Result<Self> {
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        Ok(Self { read, write })
    }

    /// Returns a standard input for one more child.
    ///
    /// # Errors
    ///
    /// Returns the error of dup(2).
    pub fn child_stdin(&self) -> io::Result<Stdio> {
        Ok(Stdio::from(self.read.try_clone()?))
    }

    /// Opens the gate: every child reads end-of-file and starts its countdown.
    /// Returns `CLOCK_MONOTONIC` at that moment.
    pub fn open(self) -> u64 {
        drop(self.write);
        drop(self.read);
        monotonic_ns()
    }
}

/// The file where each child appends `PID EXIT_NS` just before it exits.
#[derive(Debug)]
pub struct Records {
    path: PathBuf,
    file: File,
    /// Opened up front, so that reading needs no new descriptor.
    reader: File,
}

impl Records {
    /// Creates (or truncates) the record file at `path`.
    ///
    /// # Errors
    ///
    /// Returns the error of open(2) on `path`.
    pub fn create(path: &Path) -> io::Result<Self> {
        File::create(path)?;
        let file = OpenOptions::new().append(true).open(path)?;
        let reader = File::open(path)?;
        Ok(Self {
            path: path.to_owned(),
            file,
            reader,
        })
    }

    /// Returns a standard output for one more child: the record file in
    /// append mode, so that lines of different children never interleave.
    ///
    /// # Errors
    ///
    /// Returns the error of dup(2).
    pub fn child_stdout(&self) -> io::Result<Stdio> {
        Ok(Stdio::from(self.file.try_clone()?))
    }

    /// Returns the path of the record file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the exit stamps written so far, by PID.
    ///
    /// # Errors
    ///
    /// Returns the error of reading the file.
    pub fn read(&self) -> io::Result<HashMap<u32, u64>> {
        Ok(parse_records(&read_whole(&self.reader)?))
    }
}

/// Reads a record file: one `PID EXIT_NS` line per child that exited.
///
/// # Errors
///
/// Returns the error of reading `path`.
pub fn read_records(path: &Path) -> io::Result<HashMap<u32, u64>> {
    Ok(parse_records(&fs::read_to_string(path)?))
}

fn parse_records(text: &str) -> HashMap<u32, u64> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let pid = words.next()?.parse().ok()?;
            let at = words.next()?.parse().ok()?;
            Some((pid, at))
        })
        .collect()
}

/// Returns a command that starts one child of `plan`: it waits for the gate,
/// sleeps `offset_us`, appends its stamp to the record file and exits.
///
/// # Errors
///
/// Returns the error of duplicating the gate or the record file.
pub fn child_command(
    child_bin: &Path,
    offset_us: u64,
    gate: &Gate,
    records: &Records,
) -> io::Result<Command> {
    let mut command = Command::new(child_bin);
    command
        .arg("exit-after")
        .arg(offset_us.to_string())
        .stdin(gate.child_stdin()?)
        .stdout(records.child_stdout()?);
    Ok(command)
}

/// Sets the soft limit on open descriptors to `soft`, or without it to the
/// hard limit. A low default soft limit (1,024 on many systems) would
/// otherwise push processes into the engine's fallback lane by accident.
/// Returns the soft limit now in force.
///
/// # Errors
///
/// Returns the error of setrlimit(2), `EINVAL` when `soft` is above the hard
/// limit.
pub fn set_nofile(soft: Option<u64>) -> io::Result<u64> {
    let current = rustix::process::getrlimit(Resource::Nofile);
    let wanted = soft.or(current.maximum);
    rustix::process::setrlimit(
        Resource::Nofile,
        Rlimit {
            current: wanted,
            maximum: current.maximum,
        },
    )?;
    Ok(wanted.unwrap_or(u64::MAX))
}

/// Joins latencies from the waiter's detection stamps and the children's exit
/// stamps: `(latencies_ns, missing)`, where `missing` counts detections with
/// no exit stamp.
pub fn latencies(detected: &[(u32, u64)], exits: &HashMap<u32, u64>) -> (Vec<u64>, usize) {
    let mut missing = 0;
    let mut out = Vec::with_capacity(detected.len());
    for (pid, at) in detected {
        match exits.get(pid) {
            Some(exit) => out.push(at.saturating_sub(*exit)),
            None => missing += 1,
        }
    }
    (out, missing)
}

/// Returns how long to wait, past the last planned exit, before a waiter
/// gives up on the children that have not been reported.
pub fn grace(n: usize) -> Duration {
    Duration::from_secs(30) + Duration::from_millis(n as u64 * 5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_offsets_stay_in_spread() {
        let plan = Plan {
            n: 1000,
            idle_ms: 300,
            spread_ms: 2000,
        };
        for index in 0..plan.n {
            let offset = plan.offset_us(index);
            assert!(offset >= 300_000, "offset {offset} before the idle time");
            assert!(offset <= 2_300_000, "offset {offset} after the spread");
        }
    }

    #[test]
    fn plan_without_spread_exits_together() {
        let plan = Plan {
            n: 3,
            idle_ms: 10_000,
            spread_ms: 0,
        };
        assert_eq!(plan.offset_us(0), 10_000_000);
        assert_eq!(plan.offset_us(2), 10_000_000);
        assert_eq!(plan.idle_window_ns(), Some((200_000_000, 9_900_000_000)));
    }

    #[test]
    fn short_idle_has_no_window() {
        let plan = Plan {
            n: 1,
            idle_ms: 300,
            spread_ms: 100,
        };
        assert_eq!(plan.idle_window_ns(), None);
    }

    #[test]
    fn records_parse_and_join() {
        let exits = parse_records("10 1000\n11 2000\ngarbage\n12\n");
        assert_eq!(exits.len(), 2);
        assert_eq!(exits[&11], 2000);

        let (latency, missing) = latencies(&[(10, 1500), (11, 2600), (99, 5)], &exits);
        assert_eq!(latency, vec![500, 600]);
        assert_eq!(missing, 1);
    }

    #[test]
    fn status_field_reads_numbers() {
        let text = "Name:\tx\nVmRSS:\t  2036 kB\nvoluntary_ctxt_switches:\t7\n";
        assert_eq!(status_field(text, "VmRSS"), Some(2036));
        assert_eq!(status_field(text, "voluntary_ctxt_switches"), Some(7));
        assert_eq!(status_field(text, "nonvoluntary_ctxt_switches"), None);
    }

    #[test]
    fn sample_sees_own_process() {
        prepare_sampling().expect("reading /proc/self/task");
        let sample = Sample::take();
        assert!(sample.rss_kib > 0, "RSS of a running process is not zero");
        assert!(sample.cpu_after_ns >= sample.cpu_ns);
    }
}
