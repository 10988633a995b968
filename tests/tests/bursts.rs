//! Many processes at once: each exit is reported exactly once, and no child
//! is left a zombie after its event.
#![cfg(target_os = "linux")]

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use waitprocs_core::{Builder, Engine, ExitStatus, WaitFor};
use waitprocs_tests::{cloexec_pipe, sh, ChildState, Processes, PATIENCE};

/// Timeout for waits on a thousand processes, which take a few seconds to
/// start on a small machine.
const BURST_PATIENCE: Duration = Duration::from_secs(60);

// NOTE: `Processes` keeps a pidfd open per process and the engine another,
// so the tests of 1,000 processes need a soft RLIMIT_NOFILE above about 2,100.

/// Builds an engine whose callback counts calls per registration index.
fn counting_engine(builder: Builder<usize>, count: usize) -> (Engine<usize>, Arc<Mutex<Vec<u32>>>) {
    let calls = Arc::new(Mutex::new(vec![0u32; count]));
    let counter = Arc::clone(&calls);
    let engine = builder
        .on_exit(move |event| counter.lock().unwrap()[event.data] += 1)
        .build()
        .unwrap();
    (engine, calls)
}

/// Asserts that the exits and callbacks cover every index exactly once, each
/// with status `Exited(0)`.
fn assert_each_once(
    events: &[waitprocs_core::ExitEvent<usize>],
    calls: &Mutex<Vec<u32>>,
    count: usize,
) {
    let mut seen = vec![0u32; count];
    for event in events {
        seen[event.data] += 1;
        assert_eq!(event.status, ExitStatus::Exited(0), "PID {}", event.pid);
    }
    let wrong: Vec<(usize, u32)> = seen
        .iter()
        .copied()
        .enumerate()
        .filter(|&(_, times)| times != 1)
        .collect();
    assert_eq!(wrong, [], "(index, events) not reported exactly once");
    let calls = calls.lock().unwrap();
    let wrong_calls: Vec<(usize, u32)> = calls
        .iter()
        .copied()
        .enumerate()
        .filter(|&(_, times)| times != 1)
        .collect();
    assert_eq!(
        wrong_calls,
        [],
        "(index, callbacks) not called exactly once"
    );
}

/// Starts `count` children that block reading one pipe, closes its write
/// end, and checks that every exit is reported once.
fn check_pipe_burst(builder: Builder<usize>, count: usize) {
    let mut processes = Processes::new();
    let (engine, calls) = counting_engine(builder, count);
    let (reader, writer) = cloexec_pipe();
    for index in 0..count {
        let input = reader.try_clone().unwrap();
        let child = processes.spawn(
            Command::new("head")
                .arg("-c1")
                .stdin(Stdio::from(input))
                .stdout(Stdio::null()),
        );
        engine.register_child(child, index).unwrap();
    }
    drop(reader);
    let before = engine
        .wait(WaitFor::Any, Some(Duration::from_millis(50)))
        .unwrap();
    assert!(
        before.gone.is_empty(),
        "exited before the pipe closed: {:?}",
        before.gone
    );

    drop(writer);
    let outcome = engine.wait(WaitFor::All, Some(BURST_PATIENCE)).unwrap();

    assert!(
        outcome.alive.is_empty(),
        "{} still alive",
        outcome.alive.len()
    );
    assert_eq!(outcome.gone.len(), count);
    assert_each_once(&outcome.gone, &calls, count);
    assert_eq!(processes.unreaped_children(), []);
}

#[test]
fn pipe_burst_of_64() {
    check_pipe_burst(Engine::builder(), 64);
}

#[test]
fn pipe_burst_of_1000() {
    check_pipe_burst(Engine::builder(), 1000);
}

#[test]
fn pipe_burst_of_1000_threaded() {
    check_pipe_burst(Engine::builder().threads(true).shards(4), 1000);
}

#[test]
fn register_right_after_spawn() {
    let count = 1000;
    let mut processes = Processes::new();
    let (engine, calls) = counting_engine(Engine::builder(), count);
    for index in 0..count {
        let child = processes.spawn(&mut Command::new("true"));
        engine.register_child(child, index).unwrap();
    }

    let outcome = engine.wait(WaitFor::All, Some(BURST_PATIENCE)).unwrap();

    assert!(
        outcome.alive.is_empty(),
        "{} still alive",
        outcome.alive.len()
    );
    assert_eq!(outcome.gone.len(), count);
    assert_each_once(&outcome.gone, &calls, count);
    assert_eq!(processes.unreaped_children(), []);
}

#[test]
fn each_event_leaves_no_zombie() {
    let mut processes = Processes::new();
    let engine = Engine::<usize>::builder().build().unwrap();
    let scripts = [
        "exit 0",
        "exit 3",
        "kill -TERM $$",
        "sleep 0.05",
        "kill -KILL $$",
    ];
    let mut count = 0;
    for _ in 0..10 {
        for script in scripts {
            let child = processes.spawn(&mut sh(script));
            engine.register_child(child, count).unwrap();
            count += 1;
        }
    }

    // Checked one event at a time, right after each is taken, and before any
    // later wait could reap the process by other means.
    let mut reported = 0;
    while reported < count {
        let outcome = engine.wait(WaitFor::Any, Some(PATIENCE)).unwrap();
        assert!(!outcome.gone.is_empty(), "no exit within {PATIENCE:?}");
        for event in &outcome.gone {
            let state = processes.child_state(event.pid);
            assert_eq!(
                state,
                ChildState::Reaped,
                "PID {} after its event",
                event.pid
            );
        }
        reported += outcome.gone.len();
    }
    assert_eq!(reported, count);
    assert!(engine.is_empty());
}
