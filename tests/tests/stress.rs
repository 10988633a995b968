//! Seeded random interleavings of spawns, registrations, exits,
//! deregistrations, signals, waits and callbacks, checked against a model of
//! what every process was made to do.
//!
//! Each test drives one engine configuration through a few cases. A case
//! starts a few hundred real processes with random lifetimes and endings and
//! applies a random sequence of operations to the engine. Then it checks that
//! every registration ended in exactly one exit event or one deregistration,
//! and that every status is exact. It also checks that the engine left no
//! zombie, reaped no child it was not given, and closed every descriptor and
//! thread it opened.
//!
//! The base seed is random per run and printed when a test fails. Setting
//! `WAITPROCS_STRESS_SEED` to it replays the same operation sequences, though
//! not the same thread timing.
#![cfg(target_os = "linux")]

use std::collections::{HashMap, HashSet};
use std::io::ErrorKind;
use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use fastrand::Rng;
use rustix::process::Signal;
use waitprocs_core::{
    Builder, Deregistered, Engine, ExitEvent, ExitStatus, Key, Registration, WaitFor,
};
use waitprocs_tests::{
    engine_status, forced_fallback, open_descriptor_count, open_pidfd, pidfd_child_state,
    threads_named, wait_child_within, ChildState, Processes, PATIENCE,
};

/// Environment variable that fixes the base seed of every test in this file.
const SEED_ENV: &str = "WAITPROCS_STRESS_SEED";

/// Registered processes without an exit event, past which a case waits for
/// exits before it starts more. Foreign and deregistered children, which all
/// end within `MAX_LIFETIME_MS` or when the test signals them, come on top.
const MAX_OUTSTANDING: usize = 120;

/// Maximum time a child runs before it ends by itself.
const MAX_LIFETIME_MS: u64 = 300;

/// How far past its deadline a wait may return. A caller-driven engine runs
/// the slow callbacks inside the wait, so this is a loose bound.
const DEADLINE_SLACK: Duration = Duration::from_secs(5);

/// Descriptor budget of the engines built to spill past their budget.
const TINY_BUDGET: usize = 8;

/// Serializes the cases of this binary. The descriptor and thread counts
/// checked after each case are those of the whole process.
static SERIAL: Mutex<()> = Mutex::new(());

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How a child ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// `exit CODE` after its lifetime.
    Code(i32),
    /// `kill -SIGNAL $$` after its lifetime.
    SelfSignal(i32),
    /// It sleeps until the test sends it a signal.
    ByTest,
}

/// What one child is made to do.
#[derive(Debug, Clone, Copy)]
struct Plan {
    lifetime_ms: u64,
    ending: Ending,
}

impl Plan {
    /// Draws a plan. `by_test` allows children that end only when signalled.
    fn random(rng: &mut Rng, by_test: bool) -> Self {
        let lifetime_ms = if rng.u8(..10) < 3 {
            0
        } else {
            rng.u64(1..=MAX_LIFETIME_MS)
        };
        let ending = match rng.u8(..20) {
            0..=11 => Ending::Code(rng.i32(0..=255)),
            12..=13 => Ending::SelfSignal(libc::SIGTERM),
            14..=15 => Ending::SelfSignal(libc::SIGKILL),
            _ if by_test => Ending::ByTest,
            _ => Ending::Code(rng.i32(0..=255)),
        };
        Self {
            lifetime_ms,
            ending,
        }
    }

    fn command(&self) -> Command {
        let pause = match self.lifetime_ms {
            0 => String::new(),
            ms => format!("sleep {}.{:03}; ", ms / 1000, ms % 1000),
        };
        let mut command = match self.ending {
            // Long enough to outlast any case; the test always signals it.
            Ending::ByTest => {
                let mut command = Command::new("sleep");
                command.arg("60");
                command
            }
            Ending::Code(code) => shell(&format!("{pause}exit {code}")),
            Ending::SelfSignal(signal) => {
                shell(&format!("{pause}kill -{} $$", signal_name(signal)))
            }
        };
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    }
}

fn shell(script: &str) -> Command {
    let mut command = Command::new("sh");
    command.arg("-c").arg(script);
    command
}

fn random_signal(rng: &mut Rng) -> i32 {
    if rng.bool() {
        libc::SIGTERM
    } else {
        libc::SIGKILL
    }
}

/// Returns the name that kill(1) takes for a signal the tests send.
fn signal_name(number: i32) -> &'static str {
    match number {
        libc::SIGTERM => "TERM",
        libc::SIGKILL => "KILL",
        other => panic!("signal {other} is not one the tests send"),
    }
}

fn signal_for(number: i32) -> Signal {
    match number {
        libc::SIGTERM => Signal::TERM,
        libc::SIGKILL => Signal::KILL,
        other => panic!("signal {other} is not one the tests send"),
    }
}

/// A registration to make: the process, how it is handed over, and its callback.
#[derive(Debug, Clone, Copy)]
struct Spec {
    plan: Plan,
    /// Registered with its `Child` handle, or else by bare PID.
    handle: bool,
    keep: bool,
    hook: Hook,
}

/// The per-registration callback.
#[derive(Debug, Clone, Copy)]
enum Hook {
    None,
    /// Sleeps this many milliseconds.
    Slow(u64),
    /// Spawns and registers another process from inside the callback.
    FollowUp(FollowUp),
}

/// The process a `Hook::FollowUp` starts. It never has a follow-up of its own
/// and never waits for the test's signal, so every chain ends by itself.
#[derive(Debug, Clone, Copy)]
struct FollowUp {
    plan: Plan,
    handle: bool,
    keep: bool,
    slow_ms: Option<u64>,
}

impl Spec {
    fn random(rng: &mut Rng) -> Self {
        let hook = match rng.u8(..10) {
            0..=5 => Hook::None,
            6..=7 => Hook::Slow(rng.u64(1..=5)),
            _ => Hook::FollowUp(FollowUp {
                plan: Plan::random(rng, false),
                handle: rng.bool(),
                keep: rng.u8(..5) == 0,
                slow_ms: rng.bool().then(|| rng.u64(1..=3)),
            }),
        };
        Self {
            plan: Plan::random(rng, true),
            handle: rng.bool(),
            keep: rng.u8(..5) == 0,
            hook,
        }
    }
}

impl FollowUp {
    fn spec(&self) -> Spec {
        Spec {
            plan: self.plan,
            handle: self.handle,
            keep: self.keep,
            hook: self.slow_ms.map_or(Hook::None, Hook::Slow),
        }
    }
}

/// The test's side of one registration.
#[derive(Debug)]
struct Reg {
    /// `None` until `register` returns, which for a follow-up happens on the
    /// callback's thread.
    key: Option<Key>,
    handle: bool,
    keep: bool,
    hooked: bool,
    deregistered: Option<Deregistered<usize>>,
    events: Vec<ExitEvent<usize>>,
}

/// One process the test started.
#[derive(Debug)]
struct Proc {
    pid: u32,
    /// Names this process even after the engine reaped it and the PID was reused.
    pidfd: OwnedFd,
    plan: Plan,
    /// The signal the test sent, for an `Ending::ByTest` child.
    sent: Option<i32>,
    /// The handle, when the engine was not given it.
    child: Option<Child>,
    /// `None` for a foreign child, which is never registered.
    reg: Option<Reg>,
}

impl Proc {
    fn expected(&self) -> Option<ExitStatus> {
        match self.plan.ending {
            Ending::Code(code) => Some(ExitStatus::Exited(code)),
            Ending::SelfSignal(signal) => Some(signaled(signal)),
            Ending::ByTest => self.sent.map(signaled),
        }
    }

    /// Returns the registration if it has a key, no event and no deregistration.
    fn outstanding(&self) -> Option<(Key, &Reg)> {
        let reg = self.reg.as_ref()?;
        let key = reg.key?;
        (reg.events.is_empty() && reg.deregistered.is_none()).then_some((key, reg))
    }

    fn awaits_signal(&self) -> bool {
        self.plan.ending == Ending::ByTest && self.sent.is_none()
    }
}

fn signaled(signal: i32) -> ExitStatus {
    ExitStatus::Signaled {
        signal,
        core_dumped: false,
    }
}

#[derive(Debug, Default)]
struct Model {
    processes: Processes,
    procs: Vec<Proc>,
}

impl Model {
    /// Spawns a process for `plan` and returns its id and handle.
    fn start(&mut self, plan: Plan) -> (usize, Child) {
        let child = self.processes.spawn(&mut plan.command());
        let id = self.procs.len();
        self.procs.push(Proc {
            pid: child.id(),
            pidfd: open_pidfd(child.id()),
            plan,
            sent: None,
            child: None,
            reg: None,
        });
        (id, child)
    }
}

/// State shared with the callbacks.
#[derive(Debug)]
struct Shared {
    model: Mutex<Model>,
    /// Calls of the engine-wide callback, by registration id.
    callbacks: Mutex<HashMap<usize, u32>>,
    /// Calls of the per-registration callbacks, by registration id.
    hooks: Mutex<HashMap<usize, u32>>,
    /// Callbacks that ran on a thread that does not drive the engine.
    misplaced: Mutex<Vec<String>>,
}

impl Shared {
    fn model(&self) -> MutexGuard<'_, Model> {
        lock(&self.model)
    }
}

/// Spawns the process of `spec` and builds its registration. Locks the model
/// only while spawning, so it can run inside a callback.
fn prepare(
    shared: &Arc<Shared>,
    engine: &Weak<Engine<usize>>,
    spec: Spec,
) -> (usize, Registration<usize>) {
    let (id, registration) = {
        let mut model = shared.model();
        let (id, child) = model.start(spec.plan);
        let registration = if spec.handle {
            Registration::child(child, id)
        } else {
            let registration = Registration::pid(child.id(), id);
            model.procs[id].child = Some(child);
            registration
        };
        model.procs[id].reg = Some(Reg {
            key: None,
            handle: spec.handle,
            keep: spec.keep,
            hooked: !matches!(spec.hook, Hook::None),
            deregistered: None,
            events: Vec::new(),
        });
        (id, registration)
    };
    let registration = if spec.keep {
        registration.keep_status()
    } else {
        registration
    };
    let registration = match spec.hook {
        Hook::None => registration,
        hook => {
            let shared = Arc::clone(shared);
            let engine = engine.clone();
            registration.on_exit(move |event| run_hook(&shared, &engine, hook, event))
        }
    };
    (id, registration)
}

fn run_hook(
    shared: &Arc<Shared>,
    engine: &Weak<Engine<usize>>,
    hook: Hook,
    event: &ExitEvent<usize>,
) {
    *lock(&shared.hooks).entry(event.data).or_default() += 1;
    match hook {
        Hook::None => {}
        Hook::Slow(ms) => thread::sleep(Duration::from_millis(ms)),
        Hook::FollowUp(next) => {
            let strong = engine
                .upgrade()
                .expect("the engine is dropped only after every callback ran");
            let (id, registration) = prepare(shared, engine, next.spec());
            register(shared, &strong, id, registration);
        }
    }
}

fn register(shared: &Shared, engine: &Engine<usize>, id: usize, registration: Registration<usize>) {
    let key = engine
        .register(registration)
        .unwrap_or_else(|error| panic!("registering process {id} failed: {error}"));
    let mut model = shared.model();
    let reg = model.procs[id].reg.as_mut().expect("a registered process");
    reg.key = Some(key);
}

/// One engine configuration and how much work to give it.
#[derive(Debug, Clone, Copy)]
struct Config {
    name: &'static str,
    threads: bool,
    shards: usize,
    force_fallback: bool,
    /// Shrinks the descriptor budget to `TINY_BUDGET` with `fd_headroom`.
    tiny_budget: bool,
    overflow: bool,
    cases: usize,
    /// Processes the test itself starts per case; follow-ups come on top.
    spawns_per_case: usize,
}

const CALLER_DRIVEN: Config = Config {
    name: "",
    threads: false,
    shards: 1,
    force_fallback: false,
    tiny_budget: false,
    overflow: true,
    cases: 3,
    spawns_per_case: 360,
};

/// Counts over all cases of one test.
#[derive(Debug, Default)]
struct Totals {
    processes: usize,
    events: usize,
    deregistered: usize,
    max_overflow: usize,
    max_overflow_shards: usize,
    max_lane: usize,
    max_watched: usize,
    waits: usize,
}

/// Prints the seed when the test fails, so the run can be replayed.
struct SeedReport {
    name: &'static str,
    seed: u64,
}

impl Drop for SeedReport {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "{} failed; rerun with {SEED_ENV}={} to replay its operation sequences",
                self.name, self.seed
            );
        }
    }
}

fn base_seed() -> u64 {
    match std::env::var(SEED_ENV) {
        Ok(value) => value.trim().parse().unwrap_or_else(|error| {
            panic!("invalid {SEED_ENV} {value:?}: {error}; use an unsigned 64-bit integer")
        }),
        Err(_) => fastrand::u64(..),
    }
}

/// Derives a test's seed from the base seed and its name, so that tests of
/// one run draw different sequences.
fn test_seed(base: u64, name: &str) -> u64 {
    // FNV-1a, which is stable across Rust versions, unlike `DefaultHasher`.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    base ^ hash
}

fn run(config: Config) {
    let _serial = lock(&SERIAL);
    let seed = base_seed();
    let _report = SeedReport {
        name: config.name,
        seed,
    };
    let mut rng = Rng::with_seed(test_seed(seed, config.name));
    let started = Instant::now();
    let mut totals = Totals::default();
    for _ in 0..config.cases {
        run_case(config, rng.u64(..), &mut totals);
    }
    eprintln!(
        "{}: {} processes, {} events, {} deregistered, {} waits in {:?} (seed {seed})",
        config.name,
        totals.processes,
        totals.events,
        totals.deregistered,
        totals.waits,
        started.elapsed()
    );
    check_placement(config, &totals);
}

/// Checks that the configuration put processes where it was meant to.
fn check_placement(config: Config, totals: &Totals) {
    if config.force_fallback || forced_fallback() {
        assert_eq!(totals.max_watched, 0, "a forced lane watched by pidfd");
        assert_eq!(totals.max_overflow_shards, 0, "a forced lane used overflow");
        assert!(totals.max_lane > 0, "the forced lane was never used");
        return;
    }
    if config.tiny_budget && config.overflow {
        assert!(totals.max_overflow_shards > 0, "no overflow shard started");
        assert!(
            totals.max_overflow > 0,
            "no process went to an overflow shard"
        );
    }
    if config.tiny_budget && !config.overflow {
        assert_eq!(totals.max_overflow_shards, 0, "overflow shards are off");
        assert!(totals.max_lane > 0, "no process went past the budget");
    }
}

/// Returns a headroom that leaves `budget` descriptors to the engine.
fn headroom_for_budget(budget: usize) -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .expect("RLIMIT_NOFILE has a soft limit");
    let soft = usize::try_from(soft).unwrap_or(usize::MAX);
    soft.saturating_sub(open_descriptor_count())
        .saturating_sub(budget)
}

fn build_engine(config: Config, shared: &Arc<Shared>) -> Engine<usize> {
    let driver: Option<ThreadId> = (!config.threads).then(|| thread::current().id());
    let counter = Arc::clone(shared);
    let mut builder: Builder<usize> = Engine::builder()
        .threads(config.threads)
        .shards(config.shards)
        .force_fallback(config.force_fallback)
        .overflow(config.overflow)
        .on_exit(move |event| {
            *lock(&counter.callbacks).entry(event.data).or_default() += 1;
            let current = thread::current();
            let right_thread = match driver {
                Some(driver) => current.id() == driver,
                None => current
                    .name()
                    .is_some_and(|name| name.starts_with("waitprocs-")),
            };
            if !right_thread {
                lock(&counter.misplaced).push(format!(
                    "registration {} on thread {:?}",
                    event.data,
                    current.name()
                ));
            }
        });
    if config.tiny_budget {
        builder = builder.fd_headroom(headroom_for_budget(TINY_BUDGET));
    }
    let engine = builder
        .build()
        .unwrap_or_else(|error| panic!("building the {} engine failed: {error}", config.name));
    if config.tiny_budget {
        let budget = engine.stats().fd_budget;
        assert!(
            (TINY_BUDGET / 2..=TINY_BUDGET * 2).contains(&budget),
            "descriptor budget {budget}, expected about {TINY_BUDGET}"
        );
    }
    engine
}

fn run_case(config: Config, seed: u64, totals: &mut Totals) {
    let descriptors = open_descriptor_count();
    let shared = Arc::new(Shared {
        model: Mutex::new(Model::default()),
        callbacks: Mutex::new(HashMap::new()),
        hooks: Mutex::new(HashMap::new()),
        misplaced: Mutex::new(Vec::new()),
    });
    let engine = Arc::new(build_engine(config, &shared));
    let mut case = Case {
        config,
        rng: Rng::with_seed(seed),
        weak: Arc::downgrade(&engine),
        engine,
        shared,
        totals,
    };
    case.drive();
    let model = case.finish();
    check_and_reap(model);

    // A joined thread can stay listed in /proc/self/task for a moment: join
    // returns when the thread clears its tid, before the kernel removes it.
    waitprocs_tests::wait_until(Duration::from_secs(2), || {
        threads_named("waitprocs").is_empty()
    });
    assert_eq!(
        threads_named("waitprocs"),
        Vec::<String>::new(),
        "engine threads left after the engine was dropped"
    );
    assert_eq!(
        open_descriptor_count(),
        descriptors,
        "descriptors open after the case, against before it"
    );
}

struct Case<'a> {
    config: Config,
    rng: Rng,
    engine: Arc<Engine<usize>>,
    weak: Weak<Engine<usize>>,
    shared: Arc<Shared>,
    totals: &'a mut Totals,
}

impl Case<'_> {
    fn drive(&mut self) {
        let mut spawned = 0;
        while spawned < self.config.spawns_per_case {
            if self.outstanding().len() >= MAX_OUTSTANDING {
                self.relieve();
                continue;
            }
            match self.rng.u8(..100) {
                0..=49 => {
                    self.spawn_registered();
                    spawned += 1;
                }
                50..=53 => {
                    self.spawn_foreign();
                    spawned += 1;
                }
                54..=58 => self.deregister_one(),
                59..=63 => self.signal_registered(),
                64..=65 => self.signal_unwatched(),
                66..=85 => self.random_wait(),
                86..=95 => self.poll_or_drain(),
                96..=97 => self.use_stale_key(),
                _ => thread::sleep(Duration::from_millis(self.rng.u64(1..=5))),
            }
        }
    }

    /// Returns (id, key, waits for the test's signal) of every registration
    /// without an event or deregistration.
    fn outstanding(&self) -> Vec<(usize, Key, bool)> {
        let model = self.shared.model();
        model
            .procs
            .iter()
            .enumerate()
            .filter_map(|(id, proc)| {
                let (key, _) = proc.outstanding()?;
                Some((id, key, proc.awaits_signal()))
            })
            .collect()
    }

    fn spawn_registered(&mut self) {
        let spec = Spec::random(&mut self.rng);
        let (id, registration) = prepare(&self.shared, &self.weak, spec);
        register(&self.shared, &self.engine, id, registration);
    }

    fn spawn_foreign(&mut self) {
        let plan = Plan::random(&mut self.rng, true);
        let mut model = self.shared.model();
        let (id, child) = model.start(plan);
        model.procs[id].child = Some(child);
    }

    fn deregister_one(&mut self) {
        let outstanding = self.outstanding();
        if outstanding.is_empty() {
            return;
        }
        let (id, key, awaits_signal) = outstanding[self.rng.usize(..outstanding.len())];
        match self.engine.deregister(key) {
            Ok(deregistered) => {
                let mut model = self.shared.model();
                let proc = &mut model.procs[id];
                assert_eq!(deregistered.pid, proc.pid, "PID of deregistered {id}");
                assert_eq!(deregistered.data, id, "data of deregistered {id}");
                let reg = proc.reg.as_mut().expect("a registered process");
                assert_eq!(
                    deregistered.child.is_some(),
                    reg.handle,
                    "child handle of deregistered {id}"
                );
                reg.deregistered = Some(deregistered);
                self.totals.deregistered += 1;
            }
            Err(error) => {
                assert_eq!(
                    error.kind(),
                    ErrorKind::NotFound,
                    "deregistering {id}: {error}"
                );
                assert!(
                    !awaits_signal,
                    "deregistering {id}, which cannot have exited, failed: {error}"
                );
            }
        }
    }

    fn signal_registered(&mut self) {
        let waiting: Vec<(usize, Key)> = self
            .outstanding()
            .into_iter()
            .filter(|&(_, _, awaits_signal)| awaits_signal)
            .map(|(id, key, _)| (id, key))
            .collect();
        if waiting.is_empty() {
            return;
        }
        let (id, key) = waiting[self.rng.usize(..waiting.len())];
        let signal = random_signal(&mut self.rng);
        self.engine
            .signal(key, signal)
            .unwrap_or_else(|error| panic!("signal {signal} to registration {id} failed: {error}"));
        self.shared.model().procs[id].sent = Some(signal);
    }

    /// Signals a child that waits for the test and that the engine does not
    /// watch (foreign or deregistered) through the test's own pidfd.
    fn signal_unwatched(&mut self) {
        let signal = random_signal(&mut self.rng);
        let mut model = self.shared.model();
        let waiting: Vec<usize> = model
            .procs
            .iter()
            .enumerate()
            .filter(|(_, proc)| proc.awaits_signal() && unwatched(proc))
            .map(|(id, _)| id)
            .collect();
        if waiting.is_empty() {
            return;
        }
        let id = waiting[self.rng.usize(..waiting.len())];
        send_signal(&mut model.procs[id], signal);
    }

    /// Checks that the key of a reported or deregistered process addresses
    /// nothing, even after its slot was reused.
    fn use_stale_key(&mut self) {
        let stale: Vec<(usize, Key)> = {
            let model = self.shared.model();
            model
                .procs
                .iter()
                .enumerate()
                .filter_map(|(id, proc)| {
                    let reg = proc.reg.as_ref()?;
                    let ended = !reg.events.is_empty() || reg.deregistered.is_some();
                    Some((id, reg.key?)).filter(|_| ended)
                })
                .collect()
        };
        if stale.is_empty() {
            return;
        }
        let (id, key) = stale[self.rng.usize(..stale.len())];
        let signal = self
            .engine
            .signal(key, libc::SIGKILL)
            .expect_err("signal through a stale key");
        assert_eq!(
            signal.kind(),
            ErrorKind::NotFound,
            "signal to {id}: {signal}"
        );
        let deregister = self
            .engine
            .deregister(key)
            .expect_err("deregistration through a stale key");
        assert_eq!(
            deregister.kind(),
            ErrorKind::NotFound,
            "deregistering {id}: {deregister}"
        );
    }

    fn random_wait(&mut self) {
        let until = match self.rng.u8(..10) {
            0..=3 => WaitFor::Any,
            4..=7 => WaitFor::Count(self.rng.usize(0..=8)),
            _ => WaitFor::All,
        };
        let timeout = if self.rng.u8(..10) < 4 {
            Duration::ZERO
        } else {
            Duration::from_millis(self.rng.u64(1..=10))
        };
        self.timed_wait(until, timeout);
    }

    /// Waits, checks the deadline rules, and takes the events.
    fn timed_wait(&mut self, until: WaitFor, timeout: Duration) -> usize {
        let started = Instant::now();
        let outcome = self
            .engine
            .wait(until, Some(timeout))
            .unwrap_or_else(|error| panic!("wait({until:?}, {timeout:?}) failed: {error}"));
        let elapsed = started.elapsed();
        self.totals.waits += 1;

        let met = match until {
            WaitFor::Any => !outcome.gone.is_empty(),
            WaitFor::Count(count) => outcome.gone.len() >= count,
            WaitFor::All => outcome.alive.is_empty(),
        };
        // The wait's own deadline is at least `timeout` after `started`.
        if elapsed < timeout {
            assert!(
                met || outcome.alive.is_empty(),
                "wait({until:?}, {timeout:?}) returned after {elapsed:?} with {} exits and {} alive",
                outcome.gone.len(),
                outcome.alive.len()
            );
        }
        assert!(
            elapsed <= timeout + DEADLINE_SLACK,
            "wait({until:?}, {timeout:?}) took {elapsed:?}"
        );

        let exits = outcome.gone.len();
        self.take(outcome.gone);
        if !self.config.threads {
            self.check_caller_driven(&outcome.alive);
        }
        self.sample_stats();
        exits
    }

    /// In a caller-driven engine, nothing changes between calls, so the
    /// engine's view must equal the model's exactly.
    fn check_caller_driven(&self, alive: &[waitprocs_core::Alive]) {
        let expected: HashSet<(Key, u32)> = {
            let model = self.shared.model();
            model
                .procs
                .iter()
                .filter_map(|proc| Some((proc.outstanding()?.0, proc.pid)))
                .collect()
        };
        let reported: HashSet<(Key, u32)> =
            alive.iter().map(|alive| (alive.key, alive.pid)).collect();
        assert_eq!(reported, expected, "alive processes, against the model");
        assert_eq!(
            self.engine.len(),
            expected.len(),
            "engine.len(), against the model"
        );
        let stats = self.engine.stats();
        assert_eq!(
            stats.watched + stats.overflow + stats.lane,
            expected.len(),
            "stats {stats:?}, against the model"
        );
    }

    fn sample_stats(&mut self) {
        let stats = self.engine.stats();
        let totals = &mut *self.totals;
        totals.max_overflow = totals.max_overflow.max(stats.overflow);
        totals.max_overflow_shards = totals.max_overflow_shards.max(stats.overflow_shards);
        totals.max_lane = totals.max_lane.max(stats.lane);
        totals.max_watched = totals.max_watched.max(stats.watched);
    }

    fn poll_or_drain(&mut self) {
        if self.config.threads {
            let error = self
                .engine
                .poll(Some(Duration::ZERO))
                .expect_err("poll on a threaded engine");
            assert_eq!(error.kind(), ErrorKind::Unsupported, "{error}");
            let events: Vec<_> = self.engine.events().try_iter().collect();
            self.take(events);
            return;
        }
        let timeout = Duration::from_millis(self.rng.u64(0..=3));
        let delivered = self
            .engine
            .poll(Some(timeout))
            .unwrap_or_else(|error| panic!("poll({timeout:?}) failed: {error}"));
        // Every earlier call left the channel empty, so it contains exactly
        // the exits of this turn.
        let events: Vec<_> = self.engine.events().try_iter().collect();
        assert_eq!(events.len(), delivered, "events queued by one poll");
        self.take(events);
    }

    /// Waits for at least one exit, signalling a child first if it helps.
    fn relieve(&mut self) {
        if let Some(&(id, key, _)) = self.outstanding().iter().find(|(_, _, waits)| *waits) {
            let signal = random_signal(&mut self.rng);
            self.engine.signal(key, signal).unwrap_or_else(|error| {
                panic!("signal {signal} to registration {id} failed: {error}")
            });
            self.shared.model().procs[id].sent = Some(signal);
        }
        let exits = self.timed_wait(WaitFor::Any, PATIENCE);
        assert!(exits > 0, "no exit within {PATIENCE:?}");
    }

    fn take(&mut self, events: Vec<ExitEvent<usize>>) {
        self.totals.events += events.len();
        let mut model = self.shared.model();
        for event in events {
            let id = event.data;
            let proc = model
                .procs
                .get_mut(id)
                .unwrap_or_else(|| panic!("event for unknown registration {id}"));
            let reg = proc
                .reg
                .as_mut()
                .unwrap_or_else(|| panic!("event for foreign child {id} (PID {})", event.pid));
            reg.events.push(event);
        }
    }

    /// Ends every process, waits for every exit, and drops the engine.
    /// Returns the model for the final checks.
    fn finish(mut self) -> Model {
        let to_engine: Vec<(usize, Key)> = self
            .outstanding()
            .into_iter()
            .filter(|&(_, _, awaits_signal)| awaits_signal)
            .map(|(id, key, _)| (id, key))
            .collect();
        for (id, key) in to_engine {
            let signal = random_signal(&mut self.rng);
            self.engine.signal(key, signal).unwrap_or_else(|error| {
                panic!("signal {signal} to registration {id} failed: {error}")
            });
            self.shared.model().procs[id].sent = Some(signal);
        }
        {
            let mut model = self.shared.model();
            for proc in &mut model.procs {
                if proc.awaits_signal() && unwatched(proc) {
                    let signal = random_signal(&mut self.rng);
                    send_signal(proc, signal);
                }
            }
        }

        let outcome = self
            .engine
            .wait(WaitFor::All, Some(PATIENCE))
            .unwrap_or_else(|error| panic!("wait(All) failed: {error}"));
        assert_eq!(
            outcome.alive,
            [],
            "registered processes left after {PATIENCE:?}"
        );
        self.take(outcome.gone);
        assert!(
            self.engine.is_empty(),
            "engine.len() is {}",
            self.engine.len()
        );
        assert_eq!(
            self.engine.events().try_iter().count(),
            0,
            "events left in the channel after wait(All)"
        );
        if let Some(payload) = self.engine.take_callback_panic() {
            panic!(
                "a callback panicked: {}",
                waitprocs_core::panic_message(&*payload)
            );
        }
        assert_eq!(
            *lock(&self.shared.misplaced),
            Vec::<String>::new(),
            "callbacks on a thread that does not drive the engine"
        );

        let engine = Arc::try_unwrap(self.engine).expect("only the test holds the engine");
        drop(engine);
        let shared = Arc::try_unwrap(self.shared).expect("the engine's callbacks are dropped");
        let callbacks = shared
            .callbacks
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let hooks = shared
            .hooks
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let model = shared
            .model
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        check_callbacks(&model, &callbacks, &hooks);
        self.totals.processes += model.procs.len();
        model
    }
}

/// Returns whether the engine does not watch `proc`, because it is foreign
/// or deregistered.
fn unwatched(proc: &Proc) -> bool {
    proc.reg
        .as_ref()
        .is_none_or(|reg| reg.deregistered.is_some())
}

fn send_signal(proc: &mut Proc, signal: i32) {
    rustix::process::pidfd_send_signal(&proc.pidfd, signal_for(signal))
        .unwrap_or_else(|error| panic!("signal {signal} to PID {} failed: {error}", proc.pid));
    proc.sent = Some(signal);
}

fn check_callbacks(model: &Model, callbacks: &HashMap<usize, u32>, hooks: &HashMap<usize, u32>) {
    let mut wrong_callbacks = Vec::new();
    let mut wrong_hooks = Vec::new();
    for (id, proc) in model.procs.iter().enumerate() {
        let events = proc.reg.as_ref().map_or(0, |reg| reg.events.len()) as u32;
        let called = callbacks.get(&id).copied().unwrap_or(0);
        if called != events {
            wrong_callbacks.push((id, events, called));
        }
        let hooked = proc.reg.as_ref().is_some_and(|reg| reg.hooked);
        let hook_calls = hooks.get(&id).copied().unwrap_or(0);
        if hook_calls != if hooked { events } else { 0 } {
            wrong_hooks.push((id, events, hook_calls));
        }
    }
    assert_eq!(
        wrong_callbacks,
        [],
        "(id, events, engine-wide callback calls)"
    );
    assert_eq!(
        wrong_hooks,
        [],
        "(id, events, per-registration callback calls)"
    );
}

/// Checks every process against its plan, then reaps what the test owns and
/// checks those statuses too.
fn check_and_reap(mut model: Model) {
    let mut unreported = Vec::new();
    let mut doubled = Vec::new();
    let mut wrong_event = Vec::new();
    let mut wrong_status = Vec::new();
    let mut zombies = Vec::new();
    let mut not_kept = Vec::new();
    let mut foreign_reaped = Vec::new();

    for (id, proc) in model.procs.iter_mut().enumerate() {
        let state = pidfd_child_state(&proc.pidfd);
        let expected = proc.expected();
        let pid = proc.pid;
        let Some(reg) = proc.reg.as_mut() else {
            if state == ChildState::Reaped {
                foreign_reaped.push((id, pid));
            }
            let child = proc
                .child
                .as_mut()
                .expect("the test keeps a foreign child's handle");
            reap_and_compare(id, child, expected, &mut wrong_status);
            continue;
        };
        match (reg.events.len(), &mut reg.deregistered) {
            (0, None) => unreported.push((id, pid)),
            (0, Some(deregistered)) => {
                if state == ChildState::Reaped {
                    foreign_reaped.push((id, pid));
                }
                let child = deregistered
                    .child
                    .as_mut()
                    .or(proc.child.as_mut())
                    .expect("a deregistered child's handle");
                reap_and_compare(id, child, expected, &mut wrong_status);
            }
            (1, None) => {
                let event = &mut reg.events[0];
                if Some(event.key) != reg.key || event.pid != pid {
                    wrong_event.push((id, format!("{event:?}, registered as {:?}", reg.key)));
                }
                if !event.was_child || event.usage.is_none() {
                    wrong_event.push((id, format!("{event:?} is not a reaped child's")));
                }
                if Some(event.status) != expected {
                    wrong_status.push((id, pid, expected, Some(event.status)));
                }
                if event.child.is_some() != (reg.keep && reg.handle) {
                    wrong_event.push((
                        id,
                        format!("{event:?}, keep {} handle {}", reg.keep, reg.handle),
                    ));
                }
                if reg.keep {
                    if state != ChildState::Zombie {
                        not_kept.push((id, pid, state));
                    } else {
                        let child = event
                            .child
                            .as_mut()
                            .or(proc.child.as_mut())
                            .expect("a kept child's handle");
                        reap_and_compare(id, child, expected, &mut wrong_status);
                    }
                } else if state != ChildState::Reaped {
                    zombies.push((id, pid, state));
                }
            }
            (events, deregistered) => doubled.push((id, pid, events, deregistered.is_some())),
        }
    }

    assert_eq!(
        unreported,
        [],
        "(id, PID) with neither an event nor a deregistration"
    );
    assert_eq!(
        doubled,
        [],
        "(id, PID, events, deregistered) reported more than once"
    );
    assert_eq!(wrong_event, [], "(id, event) with a wrong field");
    assert_eq!(wrong_status, [], "(id, PID, expected, reported) statuses");
    assert_eq!(
        zombies,
        [],
        "(id, PID, state) of reported children the engine did not reap"
    );
    assert_eq!(
        not_kept,
        [],
        "(id, PID, state) of keep_status children not left waitable"
    );
    assert_eq!(
        foreign_reaped,
        [],
        "(id, PID) reaped although the engine did not own them"
    );
}

fn reap_and_compare(
    id: usize,
    child: &mut Child,
    expected: Option<ExitStatus>,
    wrong: &mut Vec<(usize, u32, Option<ExitStatus>, Option<ExitStatus>)>,
) {
    let status = engine_status(wait_child_within(child, PATIENCE));
    if Some(status) != expected {
        wrong.push((id, child.id(), expected, Some(status)));
    }
}

#[test]
fn caller_driven_interleavings() {
    run(Config {
        name: "caller_driven_interleavings",
        ..CALLER_DRIVEN
    });
}

#[test]
fn threaded_one_shard_interleavings() {
    run(Config {
        name: "threaded_one_shard_interleavings",
        threads: true,
        ..CALLER_DRIVEN
    });
}

#[test]
fn threaded_four_shards_interleavings() {
    run(Config {
        name: "threaded_four_shards_interleavings",
        threads: true,
        shards: 4,
        ..CALLER_DRIVEN
    });
}

#[test]
fn forced_lane_interleavings() {
    run(Config {
        name: "forced_lane_interleavings",
        force_fallback: true,
        ..CALLER_DRIVEN
    });
}

#[test]
fn forced_lane_threaded_interleavings() {
    run(Config {
        name: "forced_lane_threaded_interleavings",
        threads: true,
        shards: 2,
        force_fallback: true,
        ..CALLER_DRIVEN
    });
}

#[test]
fn tiny_budget_overflow_interleavings() {
    run(Config {
        name: "tiny_budget_overflow_interleavings",
        tiny_budget: true,
        ..CALLER_DRIVEN
    });
}

#[test]
fn tiny_budget_overflow_threaded_interleavings() {
    run(Config {
        name: "tiny_budget_overflow_threaded_interleavings",
        threads: true,
        shards: 2,
        tiny_budget: true,
        ..CALLER_DRIVEN
    });
}

#[test]
fn tiny_budget_lane_interleavings() {
    run(Config {
        name: "tiny_budget_lane_interleavings",
        tiny_budget: true,
        overflow: false,
        ..CALLER_DRIVEN
    });
}

#[test]
fn tiny_budget_lane_threaded_interleavings() {
    run(Config {
        name: "tiny_budget_lane_threaded_interleavings",
        threads: true,
        shards: 2,
        tiny_budget: true,
        overflow: false,
        ..CALLER_DRIVEN
    });
}

/// Processes past a full budget wait in the lane without overflow shards, and
/// take a pidfd once exits give descriptors back.
#[test]
fn lane_promotes_when_budget_frees() {
    const BUDGET: usize = 4;
    const PAST_BUDGET: usize = 3;
    let _serial = lock(&SERIAL);
    let descriptors = open_descriptor_count();
    {
        let mut processes = Processes::new();
        let engine = Engine::<usize>::builder()
            .overflow(false)
            .fd_headroom(headroom_for_budget(BUDGET))
            .build()
            .unwrap();
        assert_eq!(engine.stats().fd_budget, BUDGET, "budget from the headroom");
        let mut keys = Vec::new();
        for index in 0..BUDGET + PAST_BUDGET {
            let child = processes.spawn(
                Command::new("sleep")
                    .arg("60")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null()),
            );
            keys.push(engine.register_child(child, index).unwrap());
        }
        let forced = forced_fallback();
        let stats = engine.stats();
        if forced {
            assert_eq!(stats.lane, BUDGET + PAST_BUDGET, "forced lane: {stats:?}");
        } else {
            assert_eq!(stats.watched, BUDGET, "within the budget: {stats:?}");
            assert_eq!(stats.lane, PAST_BUDGET, "past the budget: {stats:?}");
        }

        // Ending the watched processes returns their descriptors to the budget.
        for &key in &keys[..BUDGET] {
            engine.signal(key, libc::SIGTERM).unwrap();
        }
        let first = engine.wait(WaitFor::Count(BUDGET), Some(PATIENCE)).unwrap();
        assert_eq!(first.gone.len(), BUDGET, "exits of the signalled processes");
        for event in &first.gone {
            assert!(
                event.data < BUDGET,
                "registration {} exited unsignalled",
                event.data
            );
            assert_eq!(event.status, signaled(libc::SIGTERM), "PID {}", event.pid);
        }

        // A lane sweep runs at least every 100 ms and promotes what fits.
        let deadline = Instant::now() + PATIENCE;
        let mut stats = engine.stats();
        while !forced && stats.lane > 0 && Instant::now() < deadline {
            assert_eq!(engine.poll(Some(Duration::from_millis(10))).unwrap(), 0);
            stats = engine.stats();
        }
        if forced {
            assert_eq!(stats.lane, PAST_BUDGET, "forced lane: {stats:?}");
        } else {
            assert_eq!(stats.lane, 0, "left in the lane: {stats:?}");
            assert_eq!(stats.watched, PAST_BUDGET, "promoted: {stats:?}");
        }

        for &key in &keys[BUDGET..] {
            engine.signal(key, libc::SIGKILL).unwrap();
        }
        let rest = engine.wait(WaitFor::All, Some(PATIENCE)).unwrap();
        assert_eq!(rest.alive, [], "still registered");
        assert_eq!(
            rest.gone.len(),
            PAST_BUDGET,
            "exits of the promoted processes"
        );
        for event in &rest.gone {
            assert!(
                event.data >= BUDGET,
                "registration {} reported twice",
                event.data
            );
            assert_eq!(event.status, signaled(libc::SIGKILL), "PID {}", event.pid);
        }
        assert_eq!(processes.unreaped_children(), []);
    }
    assert_eq!(
        open_descriptor_count(),
        descriptors,
        "descriptors open after the test, against before it"
    );
}

/// An exit that an overflow shard found but shard 0 has not delivered yet
/// belongs to a process that is still registered and not yet reported.
#[test]
fn alive_lists_handed_over_exit() {
    // A forced lane starts no overflow shard, and reaps only inside `poll`.
    if forced_fallback() {
        return;
    }
    let _serial = lock(&SERIAL);
    let mut processes = Processes::new();
    // A budget of zero sends every process to an overflow shard.
    let engine = Engine::<()>::builder()
        .fd_headroom(usize::MAX)
        .build()
        .unwrap();
    let child = processes.spawn(Command::new("true").stdin(Stdio::null()));
    let pid = child.id();
    let key = engine.register_child(child, ()).unwrap();
    // The overflow thread reaps the child and hands the exit to shard 0,
    // which delivers it only inside the next poll.
    assert!(
        waitprocs_tests::wait_until(PATIENCE, || processes.child_state(pid)
            == ChildState::Reaped),
        "PID {pid} was not reaped within {PATIENCE:?}"
    );

    assert_eq!(engine.len(), 1, "registered and not yet reported");
    let alive: Vec<_> = engine.alive().into_iter().map(|alive| alive.key).collect();
    assert_eq!(alive, [key], "engine.alive() before the exit is delivered");

    let outcome = engine.wait(WaitFor::All, Some(PATIENCE)).unwrap();
    assert_eq!(outcome.gone.len(), 1, "exits delivered");
    assert_eq!(outcome.gone[0].status, ExitStatus::Exited(0));
}

/// A process whose exit callback is still running has not been reported, so
/// a wait that times out meanwhile lists it as alive.
#[test]
fn alive_lists_exit_in_callback() {
    let _serial = lock(&SERIAL);
    let mut processes = Processes::new();
    let engine = Engine::<()>::builder().threads(true).build().unwrap();
    let child = processes.spawn(Command::new("true").stdin(Stdio::null()));
    let (started_sender, started) = std::sync::mpsc::channel();
    let registration = Registration::child(child, ()).on_exit(move |_| {
        let _ = started_sender.send(());
        thread::sleep(Duration::from_millis(500));
    });
    let key = engine.register(registration).unwrap();
    started
        .recv_timeout(PATIENCE)
        .expect("the callback did not start");

    let outcome = engine
        .wait(WaitFor::All, Some(Duration::from_millis(50)))
        .unwrap();
    let alive: Vec<Key> = outcome.alive.iter().map(|alive| alive.key).collect();

    assert_eq!(outcome.gone.len(), 0, "exits before the callback returned");
    assert_eq!(alive, [key], "alive while the callback runs");
    assert_eq!(engine.len(), 1, "registered while the callback runs");
    let rest = engine.wait(WaitFor::All, Some(PATIENCE)).unwrap();
    assert_eq!(rest.gone.len(), 1, "exits after the callback returned");
}
