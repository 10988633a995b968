//! The engine reaps only what it was given: other children's statuses stay
//! with their owner.
#![cfg(target_os = "linux")]

use std::collections::HashSet;
use std::thread;

use waitprocs_core::{Engine, ExitStatus, Registration, WaitFor};
use waitprocs_tests::{sh, wait_child_within, waitpid_within, ChildState, Processes, PATIENCE};

#[test]
fn unregistered_child_status_kept() {
    let mut processes = Processes::new();
    let engine = Engine::<()>::builder().build().unwrap();
    let mut unregistered = processes.spawn(&mut sh("exit 5"));
    let registered = processes.spawn(&mut sh("sleep 0.2"));
    engine.register_child(registered, ()).unwrap();

    let outcome = engine.wait(WaitFor::All, Some(PATIENCE)).unwrap();

    assert_eq!(outcome.gone.len(), 1);
    assert_eq!(outcome.gone[0].status, ExitStatus::Exited(0));
    let status = wait_child_within(&mut unregistered, PATIENCE);
    assert_eq!(status.code(), Some(5));
    assert_eq!(processes.unreaped_children(), []);
}

#[test]
fn two_engines_see_own_children() {
    let mut processes = Processes::new();
    let caller_driven = Engine::<(u8, usize)>::builder().build().unwrap();
    let threaded = Engine::<(u8, usize)>::builder()
        .threads(true)
        .shards(2)
        .build()
        .unwrap();
    for index in 0..50 {
        let child = processes.spawn(&mut sh("exit 1"));
        caller_driven.register_child(child, (1, index)).unwrap();
        let child = processes.spawn(&mut sh("exit 2"));
        threaded.register_child(child, (2, index)).unwrap();
    }

    let waiters: Vec<_> = [caller_driven, threaded]
        .into_iter()
        .map(|engine| thread::spawn(move || engine.wait(WaitFor::All, Some(PATIENCE)).unwrap()))
        .collect();
    let outcomes: Vec<_> = waiters
        .into_iter()
        .map(|waiter| waiter.join().unwrap())
        .collect();

    for (outcome, engine_id) in outcomes.iter().zip([1u8, 2]) {
        assert!(
            outcome.alive.is_empty(),
            "engine {engine_id}: {:?}",
            outcome.alive
        );
        assert_eq!(outcome.gone.len(), 50, "engine {engine_id}");
        let indexes: HashSet<usize> = outcome.gone.iter().map(|event| event.data.1).collect();
        assert_eq!(indexes.len(), 50, "engine {engine_id}: an index came twice");
        for event in &outcome.gone {
            assert_eq!(
                event.data.0, engine_id,
                "another engine's child was reported"
            );
            assert_eq!(event.status, ExitStatus::Exited(i32::from(engine_id)));
        }
    }
    assert_eq!(processes.unreaped_children(), []);
}

#[test]
fn keep_status_by_pid() {
    let mut processes = Processes::new();
    let engine = Engine::<()>::builder().build().unwrap();
    let mut child = processes.spawn(&mut sh("exit 7"));
    let pid = child.id();
    engine
        .register(Registration::pid(pid, ()).keep_status())
        .unwrap();

    let outcome = engine.wait(WaitFor::All, Some(PATIENCE)).unwrap();

    assert_eq!(outcome.gone.len(), 1);
    assert_eq!(outcome.gone[0].status, ExitStatus::Exited(7));
    assert!(outcome.gone[0].was_child);
    assert!(outcome.gone[0].child.is_none(), "no handle was given");
    assert_eq!(processes.child_state(pid), ChildState::Zombie);
    assert_eq!(wait_child_within(&mut child, PATIENCE).code(), Some(7));
}

#[test]
fn keep_status_with_child_handle() {
    let mut processes = Processes::new();
    let engine = Engine::<()>::builder().threads(true).build().unwrap();
    let child = processes.spawn(&mut sh("exit 7"));
    let pid = child.id();
    engine
        .register(Registration::child(child, ()).keep_status())
        .unwrap();

    let mut outcome = engine.wait(WaitFor::All, Some(PATIENCE)).unwrap();

    assert_eq!(outcome.gone.len(), 1);
    let event = outcome.gone.remove(0);
    assert_eq!(event.status, ExitStatus::Exited(7));
    assert_eq!(processes.child_state(pid), ChildState::Zombie);
    let mut child = event.child.expect("a kept child's handle comes back");
    assert_eq!(wait_child_within(&mut child, PATIENCE).code(), Some(7));
}

/// Registers a child that exits after 200 ms, drops the engine at once, and
/// checks that the child is still ours to reap.
fn check_drop_leaves_child(threads: bool) {
    let mut processes = Processes::new();
    let engine = Engine::<()>::builder().threads(threads).build().unwrap();
    let child = processes.spawn(&mut sh("sleep 0.2; exit 9"));
    let pid = child.id();
    engine.register_child(child, ()).unwrap();

    drop(engine);

    assert_eq!(waitpid_within(pid, PATIENCE).exit_status(), Some(9));
}

#[test]
fn dropped_engine_leaves_child() {
    check_drop_leaves_child(false);
}

#[test]
fn dropped_threaded_engine_leaves_child() {
    check_drop_leaves_child(true);
}
