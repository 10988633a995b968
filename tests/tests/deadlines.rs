//! Timeouts of `Engine::wait` and `wait_procs`: kept when processes are still
//! running, cut short when all have ended, and non-blocking when zero.
#![cfg(target_os = "linux")]

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use waitprocs::{wait_procs, Builder, Engine, ExitStatus, Key, WaitFor};
use waitprocs_tests::{wait_until, ChildState, Processes, PATIENCE};

const TIMEOUT: Duration = Duration::from_secs(1);
/// How late a wait may return after its deadline on a loaded machine.
const SLACK: Duration = Duration::from_millis(500);

fn sleeper(processes: &mut Processes, seconds: &str) -> Child {
    processes.spawn(Command::new("sleep").arg(seconds).stdin(Stdio::null()))
}

/// Builds an engine whose callback counts the exits it reports.
fn counting_engine(builder: Builder<&'static str>) -> (Engine<&'static str>, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let engine = builder
        .on_exit(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    (engine, calls)
}

fn caller_driven() -> Builder<&'static str> {
    Engine::builder()
}

fn threaded() -> Builder<&'static str> {
    Engine::builder().threads(true).shards(4)
}

/// Registers three `sleep 0.05` and two `sleep 30`, waits for all of them with
/// a 1 s timeout, and checks that the wait kept the deadline.
fn check_deadline_kept(builder: Builder<&'static str>) {
    let mut processes = Processes::new();
    let (engine, calls) = counting_engine(builder);
    for seconds in ["0.05", "0.05", "0.05", "30", "30"] {
        let child = sleeper(&mut processes, seconds);
        engine.register_child(child, seconds).unwrap();
    }

    let started = Instant::now();
    let outcome = engine.wait(WaitFor::All, Some(TIMEOUT)).unwrap();
    let elapsed = started.elapsed();

    assert!(elapsed >= TIMEOUT, "returned after {elapsed:?}");
    assert!(elapsed <= TIMEOUT + SLACK, "returned after {elapsed:?}");
    assert_eq!(outcome.gone.len(), 3);
    for event in &outcome.gone {
        assert_eq!(event.data, "0.05");
        assert_eq!(event.status, ExitStatus::Exited(0));
    }
    assert_eq!(outcome.alive.len(), 2);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn caller_driven_deadline_kept() {
    check_deadline_kept(caller_driven());
}

#[test]
fn threaded_deadline_kept() {
    check_deadline_kept(threaded());
}

#[test]
fn facade_deadline_kept() {
    let mut processes = Processes::new();
    let children: Vec<Child> = ["0.05", "0.05", "0.05", "30", "30"]
        .into_iter()
        .map(|seconds| sleeper(&mut processes, seconds))
        .collect();
    let mut calls = 0;

    let started = Instant::now();
    let (gone, alive) = wait_procs(children, Some(TIMEOUT), |_| calls += 1).unwrap();
    let elapsed = started.elapsed();

    assert!(elapsed >= TIMEOUT, "returned after {elapsed:?}");
    assert!(elapsed <= TIMEOUT + SLACK, "returned after {elapsed:?}");
    let mut indexes: Vec<usize> = gone.iter().map(|exit| exit.index).collect();
    indexes.sort_unstable();
    assert_eq!(indexes, [0, 1, 2]);
    for exit in &gone {
        assert_eq!(exit.status, ExitStatus::Exited(0));
    }
    let alive_indexes: Vec<usize> = alive.iter().map(|process| process.index).collect();
    assert_eq!(alive_indexes, [3, 4]);
    assert!(alive.iter().all(|process| process.child.is_some()));
    assert_eq!(calls, 3);
}

/// Registers five processes that all end within about 0.2 s and checks that
/// a 1 s wait returns once they have.
fn check_early_return(builder: Builder<&'static str>) {
    let mut processes = Processes::new();
    let (engine, calls) = counting_engine(builder);
    for seconds in ["0.05", "0.05", "0.05", "0.2", "0.2"] {
        let child = sleeper(&mut processes, seconds);
        engine.register_child(child, seconds).unwrap();
    }

    let started = Instant::now();
    let outcome = engine.wait(WaitFor::All, Some(TIMEOUT)).unwrap();
    let elapsed = started.elapsed();

    assert!(
        elapsed < Duration::from_millis(900),
        "returned after {elapsed:?}"
    );
    assert_eq!(outcome.gone.len(), 5);
    assert!(outcome.alive.is_empty());
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}

#[test]
fn caller_driven_returns_early() {
    check_early_return(caller_driven());
}

#[test]
fn threaded_returns_early() {
    check_early_return(threaded());
}

#[test]
fn facade_returns_early() {
    let mut processes = Processes::new();
    let children: Vec<Child> = ["0.05", "0.05", "0.05", "0.2", "0.2"]
        .into_iter()
        .map(|seconds| sleeper(&mut processes, seconds))
        .collect();

    let started = Instant::now();
    let (gone, alive) = wait_procs(children, Some(TIMEOUT), |_| {}).unwrap();
    let elapsed = started.elapsed();

    assert!(
        elapsed < Duration::from_millis(900),
        "returned after {elapsed:?}"
    );
    assert_eq!(gone.len(), 5);
    assert!(alive.is_empty());
}

/// Checks that a zero timeout returns at once and that a later wait still
/// gets every exit, each once.
fn check_zero_timeout_loses_nothing(builder: Builder<&'static str>) {
    let mut processes = Processes::new();
    let (engine, calls) = counting_engine(builder);
    let mut keys = HashSet::new();
    for seconds in ["0", "1", "1"] {
        let child = sleeper(&mut processes, seconds);
        keys.insert(engine.register_child(child, seconds).unwrap());
    }

    let started = Instant::now();
    let first = engine.wait(WaitFor::All, Some(Duration::ZERO)).unwrap();
    let elapsed = started.elapsed();
    let rest = engine.wait(WaitFor::All, Some(PATIENCE)).unwrap();

    assert!(
        elapsed < Duration::from_millis(500),
        "returned after {elapsed:?}"
    );
    assert_eq!(first.gone.len() + first.alive.len(), 3);
    let reported: Vec<Key> = first.gone.iter().chain(&rest.gone).map(|e| e.key).collect();
    assert_eq!(reported.len(), 3, "an exit was lost or came twice");
    assert_eq!(reported.into_iter().collect::<HashSet<_>>(), keys);
    assert!(rest.alive.is_empty());
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn caller_driven_zero_timeout_loses_nothing() {
    check_zero_timeout_loses_nothing(caller_driven());
}

#[test]
fn threaded_zero_timeout_loses_nothing() {
    check_zero_timeout_loses_nothing(threaded());
}

/// Checks that a zero-timeout wait reports a child that has already exited,
/// as a non-blocking check should.
fn check_zero_timeout_sees_exit(builder: Builder<&'static str>) {
    let mut processes = Processes::new();
    let (engine, _) = counting_engine(builder);
    let child = sleeper(&mut processes, "0");
    let pid = child.id();
    engine.register_child(child, "0").unwrap();
    let exited = wait_until(PATIENCE, || {
        processes.child_state(pid) != ChildState::Running
    });
    assert!(exited, "PID {pid} did not exit");

    // Repeated checks, as a caller polling without blocking would make them.
    let mut gone = Vec::new();
    wait_until(Duration::from_secs(2), || {
        gone.extend(
            engine
                .wait(WaitFor::Any, Some(Duration::ZERO))
                .unwrap()
                .gone,
        );
        !gone.is_empty()
    });

    assert_eq!(gone.len(), 1, "the exit of PID {pid} was not seen");
    assert_eq!(gone[0].status, ExitStatus::Exited(0));
}

#[test]
fn caller_driven_zero_timeout_sees_exit() {
    check_zero_timeout_sees_exit(caller_driven());
}

#[test]
fn threaded_zero_timeout_sees_exit() {
    check_zero_timeout_sees_exit(threaded());
}

#[test]
fn facade_zero_timeout_returns_at_once() {
    let mut processes = Processes::new();
    let children = vec![sleeper(&mut processes, "30"), sleeper(&mut processes, "30")];

    let started = Instant::now();
    let (gone, alive) = wait_procs(children, Some(Duration::ZERO), |_| {}).unwrap();
    let elapsed = started.elapsed();

    assert!(
        elapsed < Duration::from_millis(500),
        "returned after {elapsed:?}"
    );
    assert!(gone.is_empty());
    assert_eq!(alive.len(), 2);
}

#[test]
fn facade_zero_timeout_sees_exit() {
    let mut processes = Processes::new();
    let child = sleeper(&mut processes, "0");
    let pid = child.id();
    let exited = wait_until(PATIENCE, || {
        processes.child_state(pid) != ChildState::Running
    });
    assert!(exited, "PID {pid} did not exit");

    let (gone, alive) = wait_procs([child], Some(Duration::ZERO), |_| {}).unwrap();

    assert_eq!(gone.len(), 1, "an exited child came back as alive");
    assert_eq!(gone[0].status, ExitStatus::Exited(0));
    assert!(alive.is_empty());
}
