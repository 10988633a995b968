//! Measures the engine under a low descriptor limit, and its shard count:
//! `bench-limits [--smoke] [--reps N] [--scale-reps N] [--only a,b,c] [--out FILE]`.
//!
//! Each measurement runs in a process of its own (`bench-limits run
//! KEY=VALUE...`), because RLIMIT_NOFILE is process-wide and the hard limit,
//! once lowered, cannot be raised again. That process sets its limits,
//! spawns gated `bench-child exit-after` children, registers them, opens the
//! gate and prints one JSON object. The parent runs the repetitions
//! interleaved across modes, prints Markdown tables of the medians and writes
//! every run to a JSON file.
//!
//! - **A**: children exit at offsets spread evenly over a few seconds. The
//!   soft and hard limit are either raised to the hard limit or lowered to
//!   1,024. At 1,024 the engine runs as built by default (budget and overflow
//!   shards), without overflow shards (the fallback lane), or with the lane
//!   forced for every process.
//! - **B**: many children sleep, then exit over two seconds. The waiter's CPU
//!   time is read over an idle window in which nothing exits.
//! - **C**: a threaded engine with 1, 2, 4 and `available_parallelism` shards,
//!   all children exit at once, and each exit callback busy-spins 20 µs.
//!
//! `--smoke` runs tiny sizes at a limit of 128, so that overflow shards and the
//! lane are still used. Like the full run, it checks nothing about speed, only
//! that every exit was delivered and that each mode routed as intended.
// The harness measures Linux mechanisms; elsewhere it builds to an empty
// program so that the workspace still type-checks.
#![cfg_attr(not(target_os = "linux"), no_main)]
#![cfg(target_os = "linux")]

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::process::{Resource, Rlimit};
use rustix::time::ClockId;
use serde_json::{json, Map, Value};
use waitprocs::{Engine, WaitFor};
use waitprocs_benches::{child_command, monotonic_ns, Gate, Records};

/// The JSON object that one run prints.
type Run = Map<String, Value>;

/// Free PIDs kept for the rest of the machine when a run starts its children.
const PID_MARGIN: u64 = 2000;
/// How long the parent waits for enough free PIDs before it gives up on a run.
const PID_WAIT: Duration = Duration::from_secs(900);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().map(String::as_str) == Some("run") {
        run_one(&args[1..])
    } else {
        orchestrate(&args)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench-limits: {error}");
            ExitCode::FAILURE
        }
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Descriptor setting and engine configuration of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Soft and hard limit at the machine's hard limit: one pidfd per process.
    Raised,
    /// The low limit with the default engine: budget, then overflow shards.
    Budgeted,
    /// The low limit with `overflow(false)`: budget, then the fallback lane.
    Lane,
    /// `force_fallback(true)`: the lane for every process.
    Fallback,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Raised => "raised",
            Mode::Budgeted => "budgeted",
            Mode::Lane => "lane",
            Mode::Fallback => "fallback",
        }
    }

    fn parse(text: &str) -> io::Result<Self> {
        [Mode::Raised, Mode::Budgeted, Mode::Lane, Mode::Fallback]
            .into_iter()
            .find(|mode| mode.name() == text)
            .ok_or_else(|| {
                invalid(format!(
                    "invalid mode {text:?}: use raised, budgeted, lane or fallback"
                ))
            })
    }
}

/// One measurement, passed to the run process as `KEY=VALUE` arguments.
#[derive(Debug, Clone)]
struct Spec {
    scenario: char,
    mode: Mode,
    n: usize,
    /// Time from the gate to the first exit, in milliseconds.
    idle_ms: u64,
    /// Interval over which the exits are spread evenly, in milliseconds.
    spread_ms: u64,
    /// Soft and hard RLIMIT_NOFILE of the run; `None`: the hard limit.
    nofile: Option<u64>,
    /// Shard count of a threaded engine; `None`: a caller-driven engine.
    shards: Option<usize>,
    /// Busy-spin in every exit callback, in microseconds.
    spin_us: u64,
    /// Idle window in milliseconds after the gate, over which CPU time is read.
    window_ms: Option<(u64, u64)>,
}

impl Spec {
    fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            format!("scenario={}", self.scenario),
            format!("mode={}", self.mode.name()),
            format!("n={}", self.n),
            format!("idle_ms={}", self.idle_ms),
            format!("spread_ms={}", self.spread_ms),
            format!("spin_us={}", self.spin_us),
        ];
        if let Some(nofile) = self.nofile {
            args.push(format!("nofile={nofile}"));
        }
        if let Some(shards) = self.shards {
            args.push(format!("shards={shards}"));
        }
        if let Some((start, end)) = self.window_ms {
            args.push(format!("window_ms={start}-{end}"));
        }
        args
    }

    fn from_args(args: &[String]) -> io::Result<Self> {
        let mut values = HashMap::new();
        for pair in args {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| invalid(format!("invalid argument {pair:?}: expected KEY=VALUE")))?;
            values.insert(key, value);
        }
        let number = |key: &str| -> io::Result<Option<u64>> {
            values
                .get(key)
                .map(|text| {
                    text.parse().map_err(|_| {
                        invalid(format!(
                            "invalid {key}={text:?}: expected a non-negative integer"
                        ))
                    })
                })
                .transpose()
        };
        let required = |key: &str| -> io::Result<u64> {
            number(key)?.ok_or_else(|| invalid(format!("missing {key}=NUMBER")))
        };
        let window_ms = match values.get("window_ms") {
            None => None,
            Some(text) => {
                let parsed = text
                    .split_once('-')
                    .and_then(|(start, end)| Some((start.parse().ok()?, end.parse().ok()?)));
                Some(parsed.ok_or_else(|| {
                    invalid(format!("invalid window_ms={text:?}: expected START-END"))
                })?)
            }
        };
        let scenario = values
            .get("scenario")
            .and_then(|text| text.chars().next())
            .ok_or_else(|| invalid("missing scenario=A|B|C".into()))?;
        let mode = Mode::parse(values.get("mode").copied().unwrap_or_default())?;
        Ok(Self {
            scenario,
            mode,
            n: required("n")? as usize,
            idle_ms: required("idle_ms")?,
            spread_ms: required("spread_ms")?,
            nofile: number("nofile")?,
            shards: number("shards")?.map(|shards| shards as usize),
            spin_us: number("spin_us")?.unwrap_or(0),
            window_ms,
        })
    }

    fn label(&self) -> String {
        match self.shards {
            Some(shards) => format!("{} shards={shards}", self.scenario),
            None => format!("{} {}", self.scenario, self.mode.name()),
        }
    }

    /// Returns how long the parent lets the run take before it kills it.
    fn deadline(&self) -> Duration {
        Duration::from_millis(self.idle_ms + self.spread_ms + self.n as u64 * 20)
            + exit_grace(self.n)
            + Duration::from_secs(60)
    }
}

/// Returns how long a run waits, past the last planned exit, for the rest.
fn exit_grace(n: usize) -> Duration {
    Duration::from_secs(30) + Duration::from_millis(n as u64 * 5)
}

fn process_cpu_ns() -> u64 {
    let time = rustix::time::clock_gettime(ClockId::ProcessCPUTime);
    time.tv_sec as u64 * 1_000_000_000 + time.tv_nsec as u64
}

/// Sets the soft and the hard RLIMIT_NOFILE to `limit`, or to the current hard
/// limit. Returns the limit now in force.
fn set_both_nofile(limit: Option<u64>) -> io::Result<u64> {
    let hard = rustix::process::getrlimit(Resource::Nofile).maximum;
    let requested = limit.or(hard);
    rustix::process::setrlimit(
        Resource::Nofile,
        Rlimit {
            current: requested,
            maximum: requested,
        },
    )
    .map_err(|error| {
        io::Error::new(
            io::Error::from(error).kind(),
            format!(
                "setrlimit(RLIMIT_NOFILE, {requested:?}) failed: {error}; the hard limit is {hard:?}"
            ),
        )
    })?;
    Ok(requested.unwrap_or(u64::MAX))
}

/// Returns the exit offset of every child in microseconds after the gate:
/// evenly spaced over the spread, in a shuffled order so that exits do not
/// follow spawn order.
fn exit_offsets_us(n: usize, idle_ms: u64, spread_ms: u64) -> Vec<u64> {
    let step = if n > 1 {
        spread_ms * 1000 / (n as u64 - 1)
    } else {
        0
    };
    let mut offsets: Vec<u64> = (0..n as u64).map(|i| idle_ms * 1000 + i * step).collect();
    let mut state = 0x5EED_u64;
    for i in (1..offsets.len()).rev() {
        state = splitmix64(state);
        offsets.swap(i, (state % (i as u64 + 1)) as usize);
    }
    offsets
}

fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Returns the nearest-rank percentile `q` (0 to 1) of sorted values.
fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Busy-spins for `micros` microseconds, as a callback doing real work would.
fn spin(micros: u64) {
    let until = Instant::now() + Duration::from_micros(micros);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// Clock ticks of all CPUs from the first line of `/proc/stat`.
#[derive(Debug, Clone, Copy, Default)]
struct MachineTicks {
    busy: u64,
    total: u64,
}

impl MachineTicks {
    /// Reads the counters, or zeros when `/proc/stat` cannot be read.
    fn read() -> Self {
        let text = fs::read_to_string("/proc/stat").unwrap_or_default();
        let ticks: Vec<u64> = text
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|field| field.parse().ok())
            .collect();
        // The fields are user, nice, system, idle, iowait, irq, softirq,
        // steal; guest time is already counted in user.
        let total: u64 = ticks.iter().take(8).sum();
        let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
        Self {
            busy: total.saturating_sub(idle),
            total,
        }
    }

    /// Returns the share of all CPUs that was busy since `earlier`, in
    /// percent, or `None` when no tick passed.
    fn busy_pct_since(&self, earlier: &Self) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total).filter(|&t| t > 0)?;
        Some(self.busy.saturating_sub(earlier.busy) as f64 * 100.0 / total as f64)
    }
}

/// Runs the caller-driven engine until `until_ns` (`CLOCK_MONOTONIC`).
/// `poll` is used rather than `wait`, which would also list every process
/// still registered.
fn poll_until(engine: &Engine<usize>, until_ns: u64) -> io::Result<()> {
    loop {
        let now = monotonic_ns();
        if now >= until_ns {
            return Ok(());
        }
        engine.poll(Some(Duration::from_nanos(until_ns - now)))?;
    }
}

/// Runs one measurement in this process and prints its JSON object on stdout.
fn run_one(args: &[String]) -> io::Result<()> {
    let spec = Spec::from_args(args)?;
    let child_bin = sibling("bench-child")?;
    let work = std::env::temp_dir().join("waitprocs-bench-limits");
    fs::create_dir_all(&work)?;
    let records = Records::create(&work.join(format!("records-{}.txt", std::process::id())))?;
    let result = measure(&spec, &child_bin, &records);
    let _ = fs::remove_file(records.path());
    let out = result?;
    println!("{}", Value::Object(out));
    Ok(())
}

fn measure(spec: &Spec, child_bin: &Path, records: &Records) -> io::Result<Run> {
    let nofile = set_both_nofile(spec.nofile)?;
    let gate = Gate::new()?;
    let offsets = exit_offsets_us(spec.n, spec.idle_ms, spec.spread_ms);

    // Every child is spawned before the engine exists, so that the spawns
    // never compete with the engine for descriptors.
    let spawn_started = Instant::now();
    let mut children = spawn_children(&offsets, child_bin, &gate, records)?;
    let spawn_ns = spawn_started.elapsed().as_nanos() as u64;
    let pids: Vec<u32> = children.iter().map(Child::id).collect();

    let stamps: Arc<Vec<AtomicU64>> = Arc::new((0..spec.n).map(|_| AtomicU64::new(0)).collect());
    let failures = Arc::new(AtomicUsize::new(0));
    let engine = build_engine(spec, Arc::clone(&stamps), Arc::clone(&failures))?;
    let register_started = Instant::now();
    for (index, child) in children.drain(..).enumerate() {
        engine.register_child(child, index)?;
    }
    let register_ns = register_started.elapsed().as_nanos() as u64;
    // Nothing exits before the gate opens, so every process is registered now.
    let stats = engine.stats();

    // The clock is read before the gate opens: `Gate::open` reads it after,
    // and by then the woken children may have held the CPU for milliseconds.
    let cpu_start = process_cpu_ns();
    let opened = monotonic_ns();
    gate.open();
    let mut idle = Map::new();
    let mut exits_from = MachineTicks::read();
    if let Some((start_ms, end_ms)) = spec.window_ms {
        poll_until(&engine, opened + start_ms * 1_000_000)?;
        let (cpu_from, at_from, ticks_from) =
            (process_cpu_ns(), monotonic_ns(), MachineTicks::read());
        poll_until(&engine, opened + end_ms * 1_000_000)?;
        let (cpu_to, at_to, ticks_to) = (process_cpu_ns(), monotonic_ns(), MachineTicks::read());
        idle.insert("idle_cpu_ns".into(), (cpu_to - cpu_from).into());
        idle.insert("idle_wall_ns".into(), (at_to - at_from).into());
        idle.insert(
            "machine_busy_idle_pct".into(),
            json!(ticks_to.busy_pct_since(&ticks_from)),
        );
        // The exit phase starts with the first planned exit.
        poll_until(&engine, opened + spec.idle_ms * 1_000_000)?;
        exits_from = MachineTicks::read();
    }
    let deadline = Duration::from_millis(spec.idle_ms + spec.spread_ms) + exit_grace(spec.n);
    let remaining = deadline.saturating_sub(Duration::from_nanos(monotonic_ns() - opened));
    let outcome = engine.wait(WaitFor::All, Some(remaining))?;
    let cpu_ns = process_cpu_ns() - cpu_start;
    let wall_ns = monotonic_ns() - opened;
    let exits_to = MachineTicks::read();
    drop(engine);

    let exits = records.read()?;
    let mut out = Map::new();
    out.insert("label".into(), spec.label().into());
    out.insert("scenario".into(), spec.scenario.to_string().into());
    out.insert("mode".into(), spec.mode.name().into());
    out.insert("shards".into(), json!(spec.shards));
    out.insert("n".into(), spec.n.into());
    out.insert("nofile".into(), nofile.into());
    out.insert("spawn_ns".into(), spawn_ns.into());
    out.insert("register_ns".into(), register_ns.into());
    out.insert("cpu_ns".into(), cpu_ns.into());
    out.insert("wall_ns".into(), wall_ns.into());
    out.extend(idle);
    out.insert(
        "machine_busy_exits_pct".into(),
        json!(exits_to.busy_pct_since(&exits_from)),
    );
    out.insert("alive_after_wait".into(), outcome.alive.len().into());
    out.insert(
        "failed_status".into(),
        failures.load(Ordering::Acquire).into(),
    );
    summarize_exits(&pids, &stamps, &exits, opened, &mut out);
    out.insert("watched".into(), stats.watched.into());
    out.insert("overflow".into(), stats.overflow.into());
    out.insert("overflow_shards".into(), stats.overflow_shards.into());
    out.insert("lane".into(), stats.lane.into());
    out.insert("fd_budget".into(), stats.fd_budget.into());
    Ok(out)
}

/// Spawns one gated `bench-child exit-after` per offset.
fn spawn_children(
    offsets: &[u64],
    child_bin: &Path,
    gate: &Gate,
    records: &Records,
) -> io::Result<Vec<Child>> {
    let mut children = Vec::with_capacity(offsets.len());
    for offset in offsets {
        let spawned = child_command(child_bin, *offset, gate, records)?.spawn();
        children.push(spawned.map_err(|error| {
            io::Error::new(
                error.kind(),
                format!(
                    "spawning child {} of {} failed: {error}",
                    children.len() + 1,
                    offsets.len()
                ),
            )
        })?);
    }
    Ok(children)
}

/// Inserts the delivered count and the exit-to-callback latencies into `out`.
/// `stamps` contains the callback's `CLOCK_MONOTONIC` per child (0: never
/// delivered) and `exits` the child's own stamp by PID.
fn summarize_exits(
    pids: &[u32],
    stamps: &[AtomicU64],
    exits: &HashMap<u32, u64>,
    opened: u64,
    out: &mut Run,
) {
    let mut latencies = Vec::with_capacity(pids.len());
    let mut delivered = 0;
    for (pid, stamp) in pids.iter().zip(stamps) {
        let detected = stamp.load(Ordering::Acquire);
        if detected == 0 {
            continue;
        }
        delivered += 1;
        if let Some(exited) = exits.get(pid) {
            latencies.push(detected.saturating_sub(*exited));
        }
    }
    latencies.sort_unstable();
    // A child that exits before the gate opens would make the gate useless.
    let first_exit = exits.values().min().map(|at| *at as i64 - opened as i64);
    let last_exit = exits.values().max().map(|at| *at as i64 - opened as i64);

    out.insert("delivered".into(), delivered.into());
    out.insert("stamped".into(), exits.len().into());
    out.insert("p50_ns".into(), percentile(&latencies, 0.50).into());
    out.insert("p99_ns".into(), percentile(&latencies, 0.99).into());
    out.insert(
        "max_ns".into(),
        latencies.last().copied().unwrap_or(0).into(),
    );
    out.insert("first_exit_after_gate_ns".into(), json!(first_exit));
    out.insert("last_exit_after_gate_ns".into(), json!(last_exit));
}

fn build_engine(
    spec: &Spec,
    stamps: Arc<Vec<AtomicU64>>,
    failures: Arc<AtomicUsize>,
) -> io::Result<Engine<usize>> {
    let spin_us = spec.spin_us;
    let mut builder = Engine::<usize>::builder().on_exit(move |exit| {
        stamps[exit.data].store(monotonic_ns(), Ordering::Release);
        if !exit.status.success() {
            failures.fetch_add(1, Ordering::Relaxed);
        }
        if spin_us > 0 {
            spin(spin_us);
        }
    });
    if let Some(shards) = spec.shards {
        builder = builder.threads(true).shards(shards);
    }
    match spec.mode {
        Mode::Raised | Mode::Budgeted => {}
        Mode::Lane => builder = builder.overflow(false),
        Mode::Fallback => builder = builder.force_fallback(true),
    }
    builder.build()
}

/// Returns the path of another binary of this package, built next to this one.
fn sibling(name: &str) -> io::Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{} not found: build it with `cargo build --release -p waitprocs-benches --bins`",
                path.display()
            ),
        ))
    }
}

#[derive(Debug)]
struct Options {
    smoke: bool,
    reps: usize,
    /// Repetitions of scenario B, the longest one.
    scale_reps: Option<usize>,
    only: BTreeSet<char>,
    out: PathBuf,
}

const USAGE: &str =
    "usage: bench-limits [--smoke] [--reps N] [--scale-reps N] [--only a,b,c] [--out FILE]";

fn parse_options(args: &[String]) -> io::Result<Options> {
    let mut options = Options {
        smoke: false,
        reps: 3,
        scale_reps: None,
        only: ['A', 'B', 'C'].into(),
        out: PathBuf::from("target/bench-results/limits.json"),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .cloned()
                .ok_or_else(|| invalid(format!("missing value after {name}; {USAGE}")))
        };
        let count = |name: &str, text: String| {
            text.parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| {
                    invalid(format!(
                        "invalid {name} {text:?}: expected a positive integer"
                    ))
                })
        };
        match arg.as_str() {
            "--smoke" => options.smoke = true,
            "--reps" => options.reps = count("--reps", value("--reps")?)?,
            "--scale-reps" => {
                options.scale_reps = Some(count("--scale-reps", value("--scale-reps")?)?)
            }
            "--only" => {
                options.only = value("--only")?
                    .split(',')
                    .filter_map(|part| part.trim().chars().next())
                    .map(|c| c.to_ascii_uppercase())
                    .collect();
            }
            "--out" => options.out = PathBuf::from(value("--out")?),
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(invalid(format!("invalid argument {other:?}; {USAGE}"))),
        }
    }
    if options.smoke {
        options.reps = 1;
        options.scale_reps = Some(1);
    }
    Ok(options)
}

/// Returns the measurements of each scenario, by scenario letter.
fn plan(smoke: bool) -> Vec<(char, Vec<Spec>)> {
    let pick = |full: u64, small: u64| if smoke { small } else { full };
    let low = Some(pick(1024, 128));
    let base = Spec {
        scenario: 'A',
        mode: Mode::Raised,
        n: pick(3000, 200) as usize,
        idle_ms: 200,
        spread_ms: pick(3000, 500),
        nofile: None,
        shards: None,
        spin_us: 0,
        window_ms: None,
    };
    let a = [
        (Mode::Raised, None),
        (Mode::Budgeted, low),
        (Mode::Lane, low),
        (Mode::Fallback, low),
    ]
    .map(|(mode, nofile)| Spec {
        mode,
        nofile,
        ..base.clone()
    })
    .to_vec();

    let b = [
        (Mode::Raised, None),
        (Mode::Budgeted, low),
        (Mode::Fallback, low),
    ]
    .map(|(mode, nofile)| Spec {
        scenario: 'B',
        mode,
        nofile,
        n: pick(20_000, 500) as usize,
        idle_ms: pick(6000, 1500),
        spread_ms: pick(2000, 500),
        window_ms: Some((pick(500, 300), pick(5000, 1200))),
        ..base.clone()
    })
    .to_vec();

    let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shard_counts: BTreeSet<usize> = [1, 2, 4, parallelism].into();
    let c = shard_counts
        .into_iter()
        .map(|shards| Spec {
            scenario: 'C',
            n: pick(5000, 500) as usize,
            idle_ms: 0,
            spread_ms: 0,
            shards: Some(shards),
            spin_us: 20,
            ..base.clone()
        })
        .collect();
    vec![('A', a), ('C', c), ('B', b)]
}

fn read_text(path: &str) -> String {
    fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn load_average() -> String {
    read_text("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn machine() -> Map<String, Value> {
    let cpu = read_text("/proc/cpuinfo")
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let nofile = rustix::process::getrlimit(Resource::Nofile);
    let nproc = rustix::process::getrlimit(Resource::Nproc);
    let mut out = Map::new();
    out.insert(
        "nproc".into(),
        std::thread::available_parallelism()
            .map_or(0, |n| n.get())
            .into(),
    );
    out.insert(
        "kernel".into(),
        read_text("/proc/sys/kernel/osrelease").into(),
    );
    out.insert("cpu".into(), cpu.into());
    out.insert("nofile_soft".into(), json!(nofile.current));
    out.insert("nofile_hard".into(), json!(nofile.maximum));
    out.insert("nproc_limit".into(), json!(nproc.current));
    out.insert(
        "pid_max".into(),
        json!(read_text("/proc/sys/kernel/pid_max").parse::<u64>().ok()),
    );
    out
}

/// Returns how many PIDs are free: `pid_max` minus every task on the machine.
fn free_pids() -> Option<u64> {
    let pid_max: u64 = read_text("/proc/sys/kernel/pid_max").parse().ok()?;
    let loadavg = read_text("/proc/loadavg");
    let tasks: u64 = loadavg
        .split_whitespace()
        .nth(3)?
        .split('/')
        .nth(1)?
        .parse()
        .ok()?;
    Some(pid_max.saturating_sub(tasks))
}

/// Waits until the machine has PIDs for `n` more children and a margin, so
/// that a run does not take the last PIDs from other work on the machine.
fn wait_for_pids(n: usize) -> io::Result<()> {
    let needed = n as u64 + PID_MARGIN;
    let started = Instant::now();
    let mut reported = false;
    while let Some(free) = free_pids() {
        if free >= needed {
            return Ok(());
        }
        if started.elapsed() > PID_WAIT {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "timed out after {} s waiting for {needed} free PIDs ({free} free); \
                     run again when other work on the machine has fewer processes",
                    PID_WAIT.as_secs()
                ),
            ));
        }
        if !reported {
            eprintln!("bench-limits: {free} PIDs free, waiting for {needed}");
            reported = true;
        }
        std::thread::sleep(Duration::from_secs(5));
    }
    Ok(())
}

/// Runs one measurement in a new process and returns its JSON object.
fn run_child(spec: &Spec) -> io::Result<Run> {
    wait_for_pids(spec.n)?;
    let mut child = Command::new(std::env::current_exe()?)
        .arg("run")
        .args(spec.to_args())
        .env_remove("WAITPROCS_BACKEND")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    let deadline = Instant::now() + spec.deadline();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            // The run's children exit by themselves once its gate closes.
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("run {} timed out after {:?}", spec.label(), spec.deadline()),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = reader
        .join()
        .map_err(|_| io::Error::other("the thread reading the run's output panicked"))??;
    if !status.success() {
        return Err(io::Error::other(format!(
            "run {} failed with {status}",
            spec.label()
        )));
    }
    match serde_json::from_str(text.trim()) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("run {} printed no JSON object: {text:?}", spec.label()),
        )),
    }
}

fn number(run: &Run, key: &str) -> u64 {
    run.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn float(run: &Run, key: &str) -> f64 {
    run.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

/// Returns the median over the runs of `value` (the upper one of an even count).
fn median_by(runs: &[Run], value: impl Fn(&Run) -> f64) -> f64 {
    let mut values: Vec<f64> = runs.iter().map(value).collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Returns the median of a nanosecond field in milliseconds.
fn median_ms(runs: &[Run], key: &str) -> f64 {
    median_by(runs, |run| float(run, key) / 1e6)
}

/// Returns the median time from the last child's exit stamp to the end of
/// the wait, in milliseconds: what the waiter adds after the last exit.
fn median_drain_ms(runs: &[Run]) -> f64 {
    median_by(runs, |run| {
        (float(run, "wall_ns") - float(run, "last_exit_after_gate_ns")) / 1e6
    })
}

fn fewest_delivered(runs: &[Run]) -> u64 {
    runs.iter()
        .map(|run| number(run, "delivered"))
        .min()
        .unwrap_or(0)
}

/// Returns what is wrong with a run: lost exits, failed children, or a
/// routing that does not match its mode.
fn check(spec: &Spec, run: &Run) -> Vec<String> {
    let n = spec.n as u64;
    let mut problems = Vec::new();
    let mut expect = |ok: bool, what: &str| {
        if !ok {
            problems.push(format!("{}: {what}", spec.label()));
        }
    };

    expect(
        number(run, "delivered") == n,
        &format!("{} of {n} exits delivered", number(run, "delivered")),
    );
    expect(
        number(run, "stamped") == n,
        &format!("{} of {n} children wrote a stamp", number(run, "stamped")),
    );
    expect(
        number(run, "alive_after_wait") == 0,
        "processes left after the wait",
    );
    let first_exit = run.get("first_exit_after_gate_ns").and_then(Value::as_i64);
    expect(
        first_exit.is_some_and(|at| at >= 0),
        &format!("the first child exited {first_exit:?} ns after the gate opened"),
    );
    expect(
        number(run, "failed_status") == 0,
        "a child exited with a failure status",
    );

    let lane = number(run, "lane");
    let overflow_shards = number(run, "overflow_shards");
    match spec.mode {
        Mode::Raised => expect(lane == 0, "processes in the lane"),
        Mode::Budgeted => {
            expect(lane == 0, "processes in the lane");
            expect(overflow_shards > 0, "no overflow shard started");
        }
        Mode::Lane => {
            expect(lane > 0, "no process in the lane");
            expect(overflow_shards == 0, "an overflow shard started");
        }
        Mode::Fallback => expect(lane == n, "not every process in the lane"),
    }
    problems
}

fn routing(runs: &[Run]) -> String {
    let first = &runs[0];
    format!(
        "{} / {} in {} / {}",
        number(first, "watched"),
        number(first, "overflow"),
        number(first, "overflow_shards"),
        number(first, "lane")
    )
}

fn table_a(results: &[(Spec, Vec<Run>)]) -> String {
    let raised_cpu = results
        .iter()
        .find(|(spec, _)| spec.mode == Mode::Raised)
        .map(|(_, runs)| median_ms(runs, "cpu_ns"))
        .unwrap_or(0.0);
    let mut text = String::from(
        "| mode | CPU ms | vs raised | wall s | p50 ms | p99 ms | max ms | machine busy % | delivered | pidfd / overflow in shards / lane |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for (spec, runs) in results {
        let cpu = median_ms(runs, "cpu_ns");
        let ratio = if raised_cpu > 0.0 {
            format!("{:.2}x", cpu / raised_cpu)
        } else {
            "-".into()
        };
        text += &format!(
            "| {} | {cpu:.1} | {ratio} | {:.2} | {:.1} | {:.1} | {:.1} | {:.0} | {}/{} | {} |\n",
            spec.mode.name(),
            median_ms(runs, "wall_ns") / 1e3,
            median_ms(runs, "p50_ns"),
            median_ms(runs, "p99_ns"),
            median_ms(runs, "max_ns"),
            median_by(runs, |run| float(run, "machine_busy_exits_pct")),
            fewest_delivered(runs),
            spec.n,
            routing(runs),
        );
    }
    text
}

fn table_b(results: &[(Spec, Vec<Run>)]) -> String {
    let mut text = String::from(
        "| mode | idle CPU, % of a core | machine busy % (idle) | exit-phase CPU ms | machine busy % (exits) | p50 ms | p99 ms | max ms | last delivery after last exit ms | delivered | spawn s | register s | pidfd / overflow in shards / lane |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for (spec, runs) in results {
        let idle = median_by(runs, |run| {
            float(run, "idle_cpu_ns") * 100.0 / float(run, "idle_wall_ns").max(1.0)
        });
        let exit_cpu = median_by(runs, |run| {
            (float(run, "cpu_ns") - float(run, "idle_cpu_ns")) / 1e6
        });
        text += &format!(
            "| {} | {idle:.3} | {:.0} | {exit_cpu:.1} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {}/{} | {:.1} | {:.2} | {} |\n",
            spec.mode.name(),
            median_by(runs, |run| float(run, "machine_busy_idle_pct")),
            median_by(runs, |run| float(run, "machine_busy_exits_pct")),
            median_ms(runs, "p50_ns"),
            median_ms(runs, "p99_ns"),
            median_ms(runs, "max_ns"),
            median_drain_ms(runs),
            fewest_delivered(runs),
            spec.n,
            median_ms(runs, "spawn_ns") / 1e3,
            median_ms(runs, "register_ns") / 1e3,
            routing(runs),
        );
    }
    text
}

fn table_c(results: &[(Spec, Vec<Run>)]) -> String {
    let mut text = String::from(
        "| shards | wall ms | last child exit ms | last delivery after last exit ms | p50 ms | p99 ms | max ms | CPU ms | machine busy % | delivered |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (spec, runs) in results {
        text += &format!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {}/{} |\n",
            spec.shards.unwrap_or(1),
            median_ms(runs, "wall_ns"),
            median_ms(runs, "last_exit_after_gate_ns"),
            median_drain_ms(runs),
            median_ms(runs, "p50_ns"),
            median_ms(runs, "p99_ns"),
            median_ms(runs, "max_ns"),
            median_ms(runs, "cpu_ns"),
            median_by(runs, |run| float(run, "machine_busy_exits_pct")),
            fewest_delivered(runs),
            spec.n,
        );
    }
    text
}

fn orchestrate(args: &[String]) -> io::Result<()> {
    let options = parse_options(args)?;
    sibling("bench-child")?;
    let load_start = load_average();
    let started = Instant::now();
    let mut report = Map::new();
    report.insert("machine".into(), Value::Object(machine()));
    report.insert("smoke".into(), options.smoke.into());
    report.insert("load_start".into(), load_start.clone().into());
    eprintln!("bench-limits: load average at start {load_start}");

    let mut problems = Vec::new();
    let mut tables = Vec::new();
    let mut all_runs = Vec::new();
    for (scenario, specs) in plan(options.smoke) {
        if !options.only.contains(&scenario) {
            continue;
        }
        let reps = match scenario {
            'B' => options.scale_reps.unwrap_or(options.reps),
            _ => options.reps,
        };
        let mut results: Vec<(Spec, Vec<Run>)> =
            specs.into_iter().map(|spec| (spec, Vec::new())).collect();
        // Repetitions are interleaved across modes, so that a change in the
        // machine's load during the run falls on every mode alike.
        for rep in 0..reps {
            for (spec, runs) in &mut results {
                eprintln!("bench-limits: {} rep {}/{reps}", spec.label(), rep + 1);
                match run_child(spec) {
                    Ok(mut run) => {
                        problems.extend(check(spec, &run));
                        run.insert("rep".into(), rep.into());
                        all_runs.push(Value::Object(run.clone()));
                        runs.push(run);
                    }
                    Err(error) => problems.push(format!("{}: {error}", spec.label())),
                }
            }
        }
        results.retain(|(_, runs)| !runs.is_empty());
        if results.is_empty() {
            continue;
        }
        let table = match scenario {
            'A' => table_a(&results),
            'B' => table_b(&results),
            _ => table_c(&results),
        };
        let title = match scenario {
            'A' => format!(
                "A: {} children exit over {:.1} s",
                results[0].0.n,
                results[0].0.spread_ms as f64 / 1000.0
            ),
            'B' => format!(
                "B: {} children sleep {:.1} s, then exit over {:.1} s",
                results[0].0.n,
                results[0].0.idle_ms as f64 / 1000.0,
                results[0].0.spread_ms as f64 / 1000.0
            ),
            _ => format!(
                "C: threaded engine, {} children exit at once, callback spins {} µs",
                results[0].0.n, results[0].0.spin_us
            ),
        };
        tables.push(format!("### {title} (median of {reps})\n\n{table}"));
    }

    let load_end = load_average();
    report.insert("load_end".into(), load_end.clone().into());
    report.insert("elapsed_s".into(), started.elapsed().as_secs().into());
    report.insert("runs".into(), Value::Array(all_runs));
    report.insert("problems".into(), json!(problems));
    if let Some(parent) = options.out.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(
        &options.out,
        serde_json::to_string_pretty(&Value::Object(report))?,
    )?;

    for table in &tables {
        println!("{table}");
    }
    println!(
        "load average {load_start} at start, {load_end} at end; {} s; JSON in {}",
        started.elapsed().as_secs(),
        options.out.display()
    );
    if problems.is_empty() {
        Ok(())
    } else {
        for problem in &problems {
            eprintln!("bench-limits: {problem}");
        }
        Err(io::Error::other(format!(
            "{} problems, listed above",
            problems.len()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_spread_evenly_shuffled() {
        let offsets = exit_offsets_us(1000, 200, 3000);
        let mut sorted = offsets.clone();
        sorted.sort_unstable();
        assert_eq!(sorted[0], 200_000);
        assert_eq!(sorted[999], 200_000 + 999 * 3003);
        assert!(sorted.windows(2).all(|pair| pair[1] - pair[0] == 3003));
        assert_ne!(offsets, sorted, "exits follow spawn order");
    }

    #[test]
    fn offsets_without_spread_coincide() {
        assert_eq!(exit_offsets_us(3, 0, 0), vec![0, 0, 0]);
        assert_eq!(exit_offsets_us(1, 50, 1000), vec![50_000]);
    }

    #[test]
    fn percentile_uses_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 0.50), 50);
        assert_eq!(percentile(&values, 0.99), 99);
        assert_eq!(percentile(&values, 1.0), 100);
        assert_eq!(percentile(&[], 0.5), 0);
    }

    #[test]
    fn spec_survives_arguments() {
        let spec = Spec {
            scenario: 'B',
            mode: Mode::Lane,
            n: 20,
            idle_ms: 6000,
            spread_ms: 2000,
            nofile: Some(1024),
            shards: Some(4),
            spin_us: 20,
            window_ms: Some((500, 5000)),
        };
        let parsed = Spec::from_args(&spec.to_args()).expect("own arguments parse");
        assert_eq!(parsed.to_args(), spec.to_args());
    }

    #[test]
    fn machine_busy_needs_ticks() {
        let ticks = MachineTicks {
            busy: 50,
            total: 200,
        };
        let later = MachineTicks {
            busy: 125,
            total: 300,
        };
        assert_eq!(later.busy_pct_since(&ticks), Some(75.0));
        assert_eq!(ticks.busy_pct_since(&ticks), None);
    }
}
