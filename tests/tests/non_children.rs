//! Processes registered by PID that are not children of the test: their exit
//! is seen at zombie time, and their status only where the kernel kept it.
#![cfg(target_os = "linux")]

use std::collections::HashSet;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use rustix::process::Signal;
use waitprocs_core::{Engine, ExitStatus, WaitFor};
use waitprocs_tests::{
    forced_fallback, kernel_keeps_exit_status, proc_state, sh, wait_child_within, Lines, Processes,
    PATIENCE,
};

/// Starts `script` with its standard output on a pipe and returns the child
/// with its lines.
fn spawn_reading(processes: &mut Processes, script: &str) -> (Child, Lines) {
    let mut child = processes.spawn(sh(script).stdout(Stdio::piped()));
    let lines = Lines::new(child.stdout.take().unwrap());
    (child, lines)
}

fn kill_and_reap(processes: &Processes, child: &mut Child) {
    processes.signal(child.id(), Signal::KILL);
    wait_child_within(child, PATIENCE);
}

#[test]
fn unreaped_non_child_reported_at_exit() {
    let mut processes = Processes::new();
    let engine = Engine::<()>::builder().build().unwrap();
    // The shell execs into `sleep 5`, which never waits, so the grandchild
    // stays a zombie until the intermediate itself ends.
    let spawned_at = Instant::now();
    let (mut intermediate, lines) =
        spawn_reading(&mut processes, "sleep 0.3 & echo $!; exec sleep 5");
    let grandchild = lines.next_pid_within(PATIENCE);
    processes.track_other(grandchild);
    engine.register_pid(grandchild, ()).unwrap();

    let outcome = engine.wait(WaitFor::All, Some(PATIENCE)).unwrap();

    assert_eq!(outcome.gone.len(), 1);
    let event = &outcome.gone[0];
    let after = event.detected_at - spawned_at;
    assert!(
        after >= Duration::from_millis(300),
        "reported {after:?} after spawn"
    );
    assert!(
        after < Duration::from_millis(2500),
        "reported {after:?} after spawn, not at exit"
    );
    assert_eq!(event.pid, grandchild);
    assert_eq!(event.status, ExitStatus::Unknown);
    assert!(!event.was_child);
    assert_eq!(event.usage, None);
    assert_eq!(
        proc_state(grandchild),
        Some('Z'),
        "the zombie must stay for its parent"
    );
    kill_and_reap(&processes, &mut intermediate);
}

/// The shell script of the reaped cases: three grandchildren that exit with
/// code 6 after 200 ms, a line per PID, and "reaped" once the shell has
/// reaped them all.
const REAPING_PARENT: &str =
    "for i in 1 2 3; do (sleep 0.2; exit 6) & echo $!; done; wait; echo reaped; exec sleep 5";

// Observed on Linux 6.18.44: once the parent has reaped a process,
// PIDFD_GET_INFO returns its exit code, and the engine reports Exited(6).
#[test]
fn reaped_non_child_status_kept() {
    let mut processes = Processes::new();
    let engine = Engine::<()>::builder().build().unwrap();
    let (mut intermediate, lines) = spawn_reading(&mut processes, REAPING_PARENT);
    let mut grandchildren = HashSet::new();
    for _ in 0..3 {
        let pid = lines.next_pid_within(PATIENCE);
        processes.track_other(pid);
        engine.register_pid(pid, ()).unwrap();
        grandchildren.insert(pid);
    }

    // The engine is not driven until the parent has reaped all three, so it
    // finds each status already kept by the kernel.
    assert_eq!(lines.next_within(PATIENCE), "reaped");
    let outcome = engine.wait(WaitFor::All, Some(PATIENCE)).unwrap();

    let expected = if kernel_keeps_exit_status() {
        ExitStatus::Exited(6)
    } else {
        ExitStatus::Unknown
    };
    assert_eq!(outcome.gone.len(), 3);
    let reported: HashSet<u32> = outcome.gone.iter().map(|event| event.pid).collect();
    assert_eq!(reported, grandchildren);
    for event in &outcome.gone {
        assert_eq!(event.status, expected, "PID {}", event.pid);
        assert!(!event.was_child);
        assert_eq!(event.usage, None);
    }
    kill_and_reap(&processes, &mut intermediate);
}

// Observed on Linux 6.18.44 over 8 runs of 3 processes: mostly Exited(6),
// because the parent usually reaps first, and Unknown when the engine looks
// at the zombie before the parent has reaped it.
#[test]
fn racing_non_child_status_truthful() {
    let mut processes = Processes::new();
    let engine = Engine::<()>::builder().threads(true).build().unwrap();
    let (mut intermediate, lines) = spawn_reading(&mut processes, REAPING_PARENT);
    for _ in 0..3 {
        let pid = lines.next_pid_within(PATIENCE);
        processes.track_other(pid);
        engine.register_pid(pid, ()).unwrap();
    }

    let outcome = engine.wait(WaitFor::All, Some(PATIENCE)).unwrap();

    assert_eq!(outcome.gone.len(), 3);
    for event in &outcome.gone {
        let truthful = match event.status {
            ExitStatus::Unknown => true,
            ExitStatus::Exited(6) => kernel_keeps_exit_status(),
            _ => false,
        };
        assert!(truthful, "PID {} reported {:?}", event.pid, event.status);
        assert!(!event.was_child);
    }
    eprintln!(
        "statuses seen: {:?}",
        outcome
            .gone
            .iter()
            .map(|event| event.status)
            .collect::<Vec<_>>()
    );
    kill_and_reap(&processes, &mut intermediate);
}

#[test]
fn grace_settles_racing_status() {
    let mut processes = Processes::new();
    let engine = Engine::<()>::builder()
        .threads(true)
        .nonchild_status_grace(Duration::from_millis(500))
        .build()
        .unwrap();
    let (mut intermediate, lines) = spawn_reading(&mut processes, REAPING_PARENT);
    for _ in 0..3 {
        let pid = lines.next_pid_within(PATIENCE);
        processes.track_other(pid);
        engine.register_pid(pid, ()).unwrap();
    }

    let outcome = engine.wait(WaitFor::All, Some(PATIENCE)).unwrap();

    // The parent reaps within milliseconds, well inside the grace.
    let expected = if kernel_keeps_exit_status() {
        ExitStatus::Exited(6)
    } else {
        ExitStatus::Unknown
    };
    assert_eq!(outcome.gone.len(), 3);
    for event in &outcome.gone {
        assert_eq!(event.status, expected, "PID {}", event.pid);
    }
    kill_and_reap(&processes, &mut intermediate);
}

#[test]
fn grace_ends_for_unreaped_non_child() {
    if forced_fallback() {
        eprintln!("skipped: the status grace needs a pidfd, and the lane has none");
        return;
    }
    let mut processes = Processes::new();
    let grace = Duration::from_millis(300);
    let engine = Engine::<()>::builder()
        .nonchild_status_grace(grace)
        .build()
        .unwrap();
    let spawned_at = Instant::now();
    let (mut intermediate, lines) =
        spawn_reading(&mut processes, "sleep 0.3 & echo $!; exec sleep 5");
    let grandchild = lines.next_pid_within(PATIENCE);
    processes.track_other(grandchild);
    engine.register_pid(grandchild, ()).unwrap();

    let outcome = engine.wait(WaitFor::All, Some(PATIENCE)).unwrap();

    assert_eq!(outcome.gone.len(), 1);
    let event = &outcome.gone[0];
    let after = event.detected_at - spawned_at;
    assert_eq!(event.status, ExitStatus::Unknown);
    // The exit came at 300 ms at the earliest, and the grace adds 300 ms.
    assert!(
        after >= Duration::from_millis(300) + grace,
        "reported {after:?} after spawn, inside the grace"
    );
    assert!(
        after < Duration::from_millis(2500),
        "reported {after:?} after spawn, not after the grace"
    );
    kill_and_reap(&processes, &mut intermediate);
}
