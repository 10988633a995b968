//! One measured waiter: `bench-waiter TOOL SCENARIO KEY=VALUE...`.
//!
//! TOOL is `waitprocs`, `waitpid-loop` or `tokio`; SCENARIO is `children`,
//! `nonchildren`, `throughput` or `memory`. The keys are `n`, `idle_ms`,
//! `spread_ms`, `hold_ms`, `nofile`, `inflight`, `child` (the bench-child
//! binary) and `work` (a directory for record files). The waiter prints one
//! JSON object on stdout. `bench-run` starts one waiter process per run, so
//! the CPU time and memory it reports belong to that tool alone.
// The harness measures Linux mechanisms and Linux peers; elsewhere it builds
// to an empty program so that the workspace still type-checks.
#![cfg_attr(not(target_os = "linux"), no_main)]
#![cfg(target_os = "linux")]

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use waitprocs::{Engine, WaitFor};
use waitprocs_benches::{
    child_command, grace, latencies, monotonic_ns, prepare_sampling, read_records, set_nofile,
    Gate, Plan, Records, Sample, Sampler,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    Waitprocs,
    WaitpidLoop,
    Tokio,
}

#[derive(Debug)]
struct Args {
    tool: Tool,
    scenario: String,
    plan: Plan,
    hold_ms: u64,
    nofile: Option<u64>,
    inflight: usize,
    child: PathBuf,
    work: PathBuf,
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

fn parse_args() -> io::Result<Args> {
    let mut raw = std::env::args().skip(1);
    let tool = match raw.next().as_deref() {
        Some("waitprocs") => Tool::Waitprocs,
        Some("waitpid-loop") => Tool::WaitpidLoop,
        Some("tokio") => Tool::Tokio,
        other => {
            return Err(invalid(format!(
                "invalid tool {other:?}: use waitprocs, waitpid-loop or tokio"
            )))
        }
    };
    let scenario = raw.next().ok_or_else(|| {
        invalid("missing scenario: use children, nonchildren, throughput or memory".into())
    })?;
    let mut values = HashMap::new();
    for pair in raw {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| invalid(format!("invalid argument {pair:?}: expected KEY=VALUE")))?;
        values.insert(key.to_owned(), value.to_owned());
    }
    let number = |key: &str, default: u64| -> io::Result<u64> {
        match values.get(key) {
            None => Ok(default),
            Some(text) => text.parse().map_err(|_| {
                invalid(format!(
                    "invalid {key}={text:?}: expected a non-negative integer"
                ))
            }),
        }
    };
    let path = |key: &str| -> io::Result<PathBuf> {
        values
            .get(key)
            .map(PathBuf::from)
            .ok_or_else(|| invalid(format!("missing {key}=PATH")))
    };
    Ok(Args {
        tool,
        plan: Plan {
            n: number("n", 100)? as usize,
            idle_ms: number("idle_ms", 200)?,
            spread_ms: number("spread_ms", 2000)?,
        },
        hold_ms: number("hold_ms", 1000)?,
        nofile: values
            .get("nofile")
            .map(|_| number("nofile", 0))
            .transpose()?,
        inflight: number("inflight", 64)? as usize,
        child: path("child")?,
        work: path("work")?,
        scenario,
    })
}

fn main() -> ExitCode {
    let outcome = parse_args().and_then(|args| {
        let soft = set_nofile(args.nofile)?;
        prepare_sampling()?;
        let mut out = Map::new();
        out.insert("nofile".into(), soft.into());
        match (args.scenario.as_str(), args.tool) {
            ("children", _) => children(&args, &mut out)?,
            ("memory", Tool::Waitprocs) => children(&args, &mut out)?,
            ("nonchildren", Tool::Waitprocs) => nonchildren(&args, &mut out)?,
            ("throughput", _) => throughput(&args, &mut out)?,
            (scenario, tool) => {
                return Err(invalid(format!(
                    "scenario {scenario} is not supported by {tool:?}"
                )))
            }
        }
        Ok(out)
    });
    match outcome {
        Ok(out) => {
            println!("{}", Value::Object(out));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("bench-waiter: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Result of a tool's wait loop: `(PID, CLOCK_MONOTONIC)` per delivered exit,
/// and whether the deadline passed first.
struct Waited {
    detected: Vec<(u32, u64)>,
    timed_out: bool,
}

/// Runs one gated batch of children: spawn (and register) them all, sample,
/// open the gate, wait for every exit, sample again.
fn children(args: &Args, out: &mut Map<String, Value>) -> io::Result<()> {
    let plan = args.plan;
    let records = Records::create(
        &args
            .work
            .join(format!("records-{}.txt", std::process::id())),
    )?;
    let gate = Gate::new()?;
    let idle = plan.idle_window_ns();
    let offsets = idle
        .map(|(start, end)| vec![start, end])
        .unwrap_or_default();

    let spawn_started = monotonic_ns();
    let waited = match args.tool {
        Tool::Waitprocs => {
            let detected = Arc::new(Mutex::new(Vec::with_capacity(plan.n)));
            let sink = Arc::clone(&detected);
            let engine = Engine::<()>::builder()
                .on_exit(move |exit| {
                    let at = monotonic_ns();
                    sink.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((exit.pid, at));
                })
                .build()?;
            // Every child is spawned before any is registered: the RSS delta
            // and the registration time are then the engine's alone, and the
            // spawns never compete with the engine for descriptors.
            let rss_before_spawn = Sample::take().rss_kib;
            let mut spawned = Vec::with_capacity(plan.n);
            for index in 0..plan.n {
                spawned.push(
                    child_command(&args.child, plan.offset_us(index), &gate, &records)?.spawn()?,
                );
            }
            out.insert("spawn_ns".into(), (monotonic_ns() - spawn_started).into());
            let before = Sample::take().rss_kib;
            let started = Instant::now();
            for child in spawned.drain(..) {
                engine.register_child(child, ())?;
            }
            let register_ns = started.elapsed().as_nanos() as u64;
            let after = Sample::take().rss_kib;
            out.insert("rss_before_spawn_kib".into(), rss_before_spawn.into());
            out.insert("registered_rss_before_kib".into(), before.into());
            out.insert("registered_rss_after_kib".into(), after.into());
            out.insert("register_ns".into(), register_ns.into());
            let measured = measure(gate, &offsets, plan, out, |deadline| {
                let remaining = Duration::from_nanos(deadline.saturating_sub(monotonic_ns()));
                let outcome = engine.wait(WaitFor::All, Some(remaining))?;
                Ok(!outcome.alive.is_empty())
            })?;
            let detected = std::mem::take(&mut *detected.lock().unwrap_or_else(|e| e.into_inner()));
            Waited {
                detected,
                timed_out: measured,
            }
        }
        Tool::WaitpidLoop => {
            for index in 0..plan.n {
                // Dropping a std Child neither waits nor kills: the loop reaps it.
                child_command(&args.child, plan.offset_us(index), &gate, &records)?.spawn()?;
            }
            out.insert("spawn_ns".into(), (monotonic_ns() - spawn_started).into());
            let mut detected = Vec::with_capacity(plan.n);
            measure(gate, &offsets, plan, out, |_deadline| {
                // Blocking: the runner's timeout ends a waiter that hangs here.
                while detected.len() < plan.n {
                    match rustix::process::wait(rustix::process::WaitOptions::empty()) {
                        Ok(Some((pid, _status))) => {
                            detected.push((pid.as_raw_nonzero().get() as u32, monotonic_ns()))
                        }
                        Ok(None) => {}
                        Err(rustix::io::Errno::CHILD) => break,
                        Err(rustix::io::Errno::INTR) => {}
                        Err(error) => return Err(error.into()),
                    }
                }
                Ok(false)
            })?;
            Waited {
                detected,
                timed_out: false,
            }
        }
        Tool::Tokio => tokio_children(args, gate, &records, &offsets, out, spawn_started)?,
    };
    finish(plan, waited, records.read()?, records.path(), out)
}

/// Samples around `wait`, which gets the deadline (`CLOCK_MONOTONIC` ns) and
/// returns whether it gave up. Returns that flag.
fn measure(
    gate: Gate,
    offsets: &[u64],
    plan: Plan,
    out: &mut Map<String, Value>,
    wait: impl FnOnce(u64) -> io::Result<bool>,
) -> io::Result<bool> {
    let sampler = Sampler::start(offsets.to_vec())?;
    let start = Sample::take();
    let opened = gate.open();
    sampler.arm(opened);
    let deadline = opened + plan.last_exit_ms() * 1_000_000 + grace(plan.n).as_nanos() as u64;
    let timed_out = wait(deadline)?;
    let end = Sample::take();
    let samples = sampler.finish();
    record_samples(&start, &end, &samples, out);
    Ok(timed_out)
}

fn record_samples(start: &Sample, end: &Sample, idle: &[Sample], out: &mut Map<String, Value>) {
    end.since(start, "window", out);
    out.insert("rss_start_kib".into(), start.rss_kib.into());
    out.insert("rss_end_kib".into(), end.rss_kib.into());
    if let [from, to] = idle {
        to.since(from, "idle", out);
    }
}

fn finish(
    plan: Plan,
    waited: Waited,
    exits: HashMap<u32, u64>,
    records: &Path,
    out: &mut Map<String, Value>,
) -> io::Result<()> {
    let (latency, missing) = latencies(&waited.detected, &exits);
    out.insert("n".into(), plan.n.into());
    out.insert("exits".into(), waited.detected.len().into());
    out.insert("stamped".into(), exits.len().into());
    out.insert("missing_stamps".into(), missing.into());
    out.insert("timed_out".into(), waited.timed_out.into());
    out.insert("latencies_ns".into(), json!(latency));
    let _ = std::fs::remove_file(records);
    Ok(())
}

fn tokio_children(
    args: &Args,
    gate: Gate,
    records: &Records,
    offsets: &[u64],
    out: &mut Map<String, Value>,
    spawn_started: u64,
) -> io::Result<Waited> {
    let plan = args.plan;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for index in 0..plan.n {
            let command = child_command(&args.child, plan.offset_us(index), &gate, records)?;
            let mut child = tokio::process::Command::from(command).spawn()?;
            let pid = child.id().unwrap_or(0);
            set.spawn(async move {
                let _ = child.wait().await;
                (pid, monotonic_ns())
            });
        }
        out.insert("spawn_ns".into(), (monotonic_ns() - spawn_started).into());
        // Let every task run its first poll before the window opens, as the
        // other waiters finish their setup before it.
        tokio::time::sleep(Duration::from_millis(20)).await;

        let sampler = Sampler::start(offsets.to_vec())?;
        let start = Sample::take();
        let opened = gate.open();
        sampler.arm(opened);
        let deadline = opened + plan.last_exit_ms() * 1_000_000 + grace(plan.n).as_nanos() as u64;
        let deadline =
            tokio::time::Instant::now() + Duration::from_nanos(deadline - monotonic_ns());
        let mut detected = Vec::with_capacity(plan.n);
        let mut timed_out = false;
        while !set.is_empty() {
            match tokio::time::timeout_at(deadline, set.join_next()).await {
                Ok(Some(Ok(done))) => detected.push(done),
                Ok(Some(Err(error))) => return Err(io::Error::other(error)),
                Ok(None) => break,
                Err(_) => {
                    timed_out = true;
                    break;
                }
            }
        }
        let end = Sample::take();
        let samples = sampler.finish();
        record_samples(&start, &end, &samples, out);
        Ok(Waited {
            detected,
            timed_out,
        })
    })
}

/// Registers by PID the children of a `bench-child hold` process, which
/// reaps them only later, and waits for their exits.
fn nonchildren(args: &Args, out: &mut Map<String, Value>) -> io::Result<()> {
    let plan = args.plan;
    let records_path = args
        .work
        .join(format!("records-{}.txt", std::process::id()));
    let mut holder = Command::new(&args.child)
        .arg("hold")
        .args(
            [
                plan.n,
                plan.idle_ms as usize,
                plan.spread_ms as usize,
                args.hold_ms as usize,
            ]
            .map(|v| v.to_string()),
        )
        .arg(&records_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let pids = read_pids(&mut holder)?;

    let detected = Arc::new(Mutex::new(Vec::with_capacity(plan.n)));
    let sink = Arc::clone(&detected);
    let engine = Engine::<()>::builder()
        .on_exit(move |exit| {
            let at = monotonic_ns();
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((exit.pid, at));
        })
        .build()?;
    let started = Instant::now();
    for pid in &pids {
        engine.register_pid(*pid, ())?;
    }
    out.insert(
        "register_ns".into(),
        (started.elapsed().as_nanos() as u64).into(),
    );

    let mut go = holder.stdin.take().expect("stdin is piped");
    let offsets = plan
        .idle_window_ns()
        .map(|(a, b)| vec![a, b])
        .unwrap_or_default();
    let sampler = Sampler::start(offsets)?;
    let start = Sample::take();
    go.write_all(b"go\n")?;
    go.flush()?;
    let opened = monotonic_ns();
    sampler.arm(opened);
    let deadline = Duration::from_millis(plan.last_exit_ms()) + grace(plan.n);
    let outcome = engine.wait(WaitFor::All, Some(deadline))?;
    let end = Sample::take();
    drop(go);
    let samples = sampler.finish();
    record_samples(&start, &end, &samples, out);
    holder.wait()?;

    let detected = std::mem::take(&mut *detected.lock().unwrap_or_else(|e| e.into_inner()));
    let waited = Waited {
        detected,
        timed_out: !outcome.alive.is_empty(),
    };
    finish(
        plan,
        waited,
        read_records(&records_path)?,
        &records_path,
        out,
    )
}

/// Reads the PIDs a `bench-child hold` process prints, up to its `ready`.
fn read_pids(holder: &mut Child) -> io::Result<Vec<u32>> {
    let stdout = holder.stdout.take().expect("stdout is piped");
    let mut pids = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if line == "ready" {
            return Ok(pids);
        }
        pids.push(
            line.parse()
                .map_err(|_| invalid(format!("invalid PID line {line:?} from bench-child hold")))?,
        );
    }
    Err(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "bench-child hold exited before printing ready",
    ))
}

/// Spawns and reaps `n` `/bin/true` children, at most `inflight` at a time.
fn throughput(args: &Args, out: &mut Map<String, Value>) -> io::Result<()> {
    let total = args.plan.n;
    let inflight = args.inflight.max(1);
    let spawn_true = || Command::new("/bin/true").spawn();
    let start = Sample::take();
    let done = match args.tool {
        Tool::Waitprocs => {
            let engine = Engine::<()>::new()?;
            let events = engine.events();
            let mut spawned = 0;
            let mut done = 0;
            while spawned < inflight.min(total) {
                engine.register_child(spawn_true()?, ())?;
                spawned += 1;
            }
            while done < total {
                engine.poll(Some(Duration::from_secs(30)))?;
                for _exit in events.try_iter() {
                    done += 1;
                    if spawned < total {
                        engine.register_child(spawn_true()?, ())?;
                        spawned += 1;
                    }
                }
            }
            done
        }
        Tool::WaitpidLoop => {
            let mut spawned = 0;
            let mut done = 0;
            while spawned < inflight.min(total) {
                spawn_true()?;
                spawned += 1;
            }
            while done < total {
                match rustix::process::wait(rustix::process::WaitOptions::empty()) {
                    Ok(Some(_)) => {
                        done += 1;
                        if spawned < total {
                            spawn_true()?;
                            spawned += 1;
                        }
                    }
                    Ok(None) | Err(rustix::io::Errno::INTR) => {}
                    Err(error) => return Err(error.into()),
                }
            }
            done
        }
        Tool::Tokio => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut set = tokio::task::JoinSet::new();
                let mut spawned = 0;
                let mut done = 0;
                let spawn = |set: &mut tokio::task::JoinSet<
                    io::Result<std::process::ExitStatus>,
                >|
                 -> io::Result<()> {
                    let mut child = tokio::process::Command::new("/bin/true").spawn()?;
                    set.spawn(async move { child.wait().await });
                    Ok(())
                };
                while spawned < inflight.min(total) {
                    spawn(&mut set)?;
                    spawned += 1;
                }
                while let Some(joined) = set.join_next().await {
                    joined.map_err(io::Error::other)??;
                    done += 1;
                    if spawned < total {
                        spawn(&mut set)?;
                        spawned += 1;
                    }
                }
                Ok::<_, io::Error>(done)
            })?
        }
    };
    let end = Sample::take();
    end.since(&start, "window", out);
    out.insert("n".into(), total.into());
    out.insert("exits".into(), done.into());
    out.insert("timed_out".into(), false.into());
    Ok(())
}
