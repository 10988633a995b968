//! The fallback lane, forced with `Builder::force_fallback`: it waits without
//! pidfds, with waitid(2) `P_PID` for children and `/proc` for others, and
//! must report what the pidfd path reports.
#![cfg(target_os = "linux")]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::Signal;
use waitprocs_core::{Builder, Engine, ExitStatus, Registration, WaitFor};
use waitprocs_tests::{
    leader_exit_program, proc_state, sh, wait_child_within, wait_until, ChildState, Lines,
    Processes, TempDir, PATIENCE,
};

fn lane<T: Send + 'static>() -> Builder<T> {
    Engine::builder().force_fallback(true)
}

/// The pthread_exit program (see `leader_exit_program`), started.
struct LeaderExit {
    pid: u32,
    /// The handle, when the program is our child.
    child: Option<Child>,
    /// The shell whose child the program is, when it is not ours.
    intermediate: Option<Child>,
    started: Instant,
}

/// Starts the pthread_exit program as our child, or as the child of a shell
/// that execs into `sleep 5` and never waits. `None` if it cannot be built.
fn start_leader_exit(
    processes: &mut Processes,
    dir: &TempDir,
    as_child: bool,
) -> Option<LeaderExit> {
    let argv = leader_exit_program(processes, dir)?;
    let started = Instant::now();
    if as_child {
        let child = processes.spawn(Command::new(&argv[0]).args(&argv[1..]).stdin(Stdio::null()));
        return Some(LeaderExit {
            pid: child.id(),
            child: Some(child),
            intermediate: None,
            started,
        });
    }
    let mut intermediate = processes.spawn(
        sh("\"$@\" & echo $!; exec sleep 5")
            .arg("sh")
            .args(&argv)
            .stdout(Stdio::piped()),
    );
    let lines = Lines::new(intermediate.stdout.take().unwrap());
    let pid = lines.next_pid_within(PATIENCE);
    processes.track_other(pid);
    Some(LeaderExit {
        pid,
        child: None,
        intermediate: Some(intermediate),
        started,
    })
}

/// Checks that the lane reports a process whose main thread has exited only
/// once its last thread has ended.
fn check_lane_leader_exit(as_child: bool) {
    let mut processes = Processes::new();
    let dir = TempDir::new("lane-leader-exit");
    let Some(mut program) = start_leader_exit(&mut processes, &dir, as_child) else {
        eprintln!("skipped: neither `cc` nor `python3` can build the pthread_exit program");
        return;
    };
    let pid = program.pid;
    let engine = lane::<()>().build().unwrap();
    // Within 300 ms of the start, a 'Z' state can only be the main thread's
    // exit: the worker sleeps 500 ms before it ends the process.
    let leader_exited = wait_until(Duration::from_millis(300), || proc_state(pid) == Some('Z'));
    assert!(leader_exited, "the main thread of PID {pid} did not exit");
    match program.child.take() {
        Some(child) => engine.register_child(child, ()).unwrap(),
        None => engine.register_pid(pid, ()).unwrap(),
    };
    assert_eq!(engine.stats().lane, 1, "the process is not in the lane");

    let window =
        (program.started + Duration::from_millis(400)).saturating_duration_since(Instant::now());
    let early = engine.wait(WaitFor::Any, Some(window)).unwrap();
    let outcome = engine.wait(WaitFor::All, Some(PATIENCE)).unwrap();

    assert!(
        early.gone.is_empty(),
        "reported while a thread still runs: {:?}",
        early.gone
    );
    assert_eq!(outcome.gone.len(), 1);
    let expected = if as_child {
        ExitStatus::Exited(3)
    } else {
        ExitStatus::Unknown
    };
    assert_eq!(outcome.gone[0].status, expected);
    if let Some(mut intermediate) = program.intermediate {
        processes.signal(intermediate.id(), Signal::KILL);
        wait_child_within(&mut intermediate, PATIENCE);
    }
}

#[test]
fn lane_child_leader_exit() {
    check_lane_leader_exit(true);
}

#[test]
fn lane_non_child_leader_exit() {
    check_lane_leader_exit(false);
}

#[test]
fn lane_keep_status() {
    let mut processes = Processes::new();
    let engine = lane::<()>().build().unwrap();
    let mut child = processes.spawn(&mut sh("exit 7"));
    let pid = child.id();
    engine
        .register(Registration::pid(pid, ()).keep_status())
        .unwrap();

    let outcome = engine.wait(WaitFor::All, Some(PATIENCE)).unwrap();

    assert_eq!(outcome.gone.len(), 1);
    assert_eq!(outcome.gone[0].status, ExitStatus::Exited(7));
    assert_eq!(processes.child_state(pid), ChildState::Zombie);
    assert_eq!(wait_child_within(&mut child, PATIENCE).code(), Some(7));
}

#[test]
fn lane_unregistered_child_status_kept() {
    let mut processes = Processes::new();
    let engine = lane::<()>().build().unwrap();
    let mut unregistered = processes.spawn(&mut sh("exit 5"));
    let registered = processes.spawn(&mut sh("sleep 0.2; exit 6"));
    engine.register_child(registered, ()).unwrap();

    let outcome = engine.wait(WaitFor::All, Some(PATIENCE)).unwrap();

    assert_eq!(outcome.gone.len(), 1);
    assert_eq!(outcome.gone[0].status, ExitStatus::Exited(6));
    assert_eq!(
        wait_child_within(&mut unregistered, PATIENCE).code(),
        Some(5)
    );
    assert_eq!(processes.unreaped_children(), []);
}

#[test]
fn lane_stop_continue_not_exit() {
    let mut processes = Processes::new();
    let engine = lane::<()>().build().unwrap();
    let child = processes.spawn(Command::new("sleep").arg("30").stdin(Stdio::null()));
    let pid = child.id();
    let key = engine.register_child(child, ()).unwrap();

    processes.signal(pid, Signal::STOP);
    assert!(wait_until(PATIENCE, || proc_state(pid) == Some('T')));
    let stopped = engine
        .wait(WaitFor::Any, Some(Duration::from_millis(200)))
        .unwrap();
    processes.signal(pid, Signal::CONT);
    assert!(wait_until(PATIENCE, || proc_state(pid) != Some('T')));
    let continued = engine
        .wait(WaitFor::Any, Some(Duration::from_millis(200)))
        .unwrap();
    engine.signal(key, libc::SIGKILL).unwrap();
    let killed = engine.wait(WaitFor::All, Some(PATIENCE)).unwrap();

    assert!(
        stopped.gone.is_empty(),
        "a stop was reported: {:?}",
        stopped.gone
    );
    assert!(
        continued.gone.is_empty(),
        "a continue was reported: {:?}",
        continued.gone
    );
    assert_eq!(killed.gone.len(), 1);
    assert_eq!(killed.gone[0].status.signal(), Some(libc::SIGKILL));
    assert_eq!(processes.unreaped_children(), []);
}
