//! Registering, rejecting, deregistering and signalling processes.
#![cfg(target_os = "linux")]

use std::io::ErrorKind;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use waitprocs::{wait_procs, Proc};
use waitprocs_core::{Engine, ExitStatus, WaitFor};
use waitprocs_tests::{current_thread_id, proc_state, sh, wait_child_within, Processes, PATIENCE};

fn sleep_command(seconds: &str) -> Command {
    let mut command = Command::new("sleep");
    command.arg(seconds).stdin(Stdio::null());
    command
}

#[test]
fn zombie_registered_reported_promptly() {
    let mut processes = Processes::new();
    let engine = Engine::<()>::builder().build().unwrap();
    let child = processes.spawn(&mut Command::new("true"));
    let pid = child.id();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(proc_state(pid), Some('Z'), "PID {pid} has not exited yet");

    let started = Instant::now();
    engine.register_child(child, ()).unwrap();
    let outcome = engine.wait(WaitFor::All, Some(PATIENCE)).unwrap();

    assert_eq!(outcome.gone.len(), 1);
    assert_eq!(outcome.gone[0].status, ExitStatus::Exited(0));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(processes.unreaped_children(), []);
}

#[test]
fn invalid_pids_rejected() {
    let engine = Engine::<()>::builder().build().unwrap();
    for pid in [0, 1 << 31, u32::MAX, std::process::id()] {
        let error = engine.register_pid(pid, ()).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "PID {pid}: {error}");
        assert!(
            error.to_string().contains(&pid.to_string()),
            "the message does not name PID {pid}: {error}"
        );
    }
    assert!(engine.is_empty());
}

#[test]
fn thread_id_rejected() {
    let engine = Engine::<()>::builder().build().unwrap();
    let (tid_sender, tid_receiver) = mpsc::channel();
    let (stop_sender, stop_receiver) = mpsc::channel::<()>();
    let thread = thread::spawn(move || {
        tid_sender.send(current_thread_id()).unwrap();
        let _ = stop_receiver.recv_timeout(PATIENCE);
    });
    let tid = tid_receiver.recv_timeout(PATIENCE).unwrap();
    assert_ne!(tid, std::process::id(), "a spawned thread has its own id");

    let result = engine.register_pid(tid, ());
    // The thread ends before the wait, so a wrongly accepted thread id would
    // show up as a false exit.
    stop_sender.send(()).unwrap();
    thread.join().unwrap();
    let outcome = engine
        .wait(WaitFor::All, Some(Duration::from_millis(300)))
        .unwrap();

    let error = result.expect_err("a thread id was registered");
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
    assert!(error.to_string().contains(&tid.to_string()), "{error}");
    assert!(outcome.gone.is_empty(), "false exit: {:?}", outcome.gone);
    assert!(engine.is_empty());
}

#[test]
fn missing_pid_not_found() {
    let mut processes = Processes::new();
    let engine = Engine::<()>::builder().build().unwrap();

    // No process can have this PID: PID_MAX_LIMIT in the kernel's
    // include/linux/threads.h is 4 * 1024 * 1024 on 64-bit Linux.
    let error = engine.register_pid(i32::MAX as u32, ()).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
    assert!(error.to_string().contains(&i32::MAX.to_string()), "{error}");

    // A reaped child's PID, retried in the rare case that it was reused.
    let mut checked = false;
    for _ in 0..5 {
        let mut child = processes.spawn(&mut Command::new("true"));
        wait_child_within(&mut child, PATIENCE);
        let pid = child.id();
        match engine.register_pid(pid, ()) {
            Err(error) => {
                assert_eq!(error.kind(), ErrorKind::NotFound, "PID {pid}: {error}");
                assert!(error.to_string().contains(&pid.to_string()), "{error}");
                checked = true;
                break;
            }
            Ok(key) => {
                assert!(
                    proc_state(pid).is_some(),
                    "reaped PID {pid} was registered, and no process has it"
                );
                engine.deregister(key).unwrap();
            }
        }
    }
    assert!(checked, "every reaped PID was reused at once");
    assert!(engine.is_empty());
}

#[test]
fn pid_one_stays_alive() {
    let engine = Engine::<()>::builder().build().unwrap();
    let key = engine.register_pid(1, ()).unwrap();

    let outcome = engine
        .wait(WaitFor::All, Some(Duration::from_millis(200)))
        .unwrap();

    assert!(
        outcome.gone.is_empty(),
        "PID 1 reported: {:?}",
        outcome.gone
    );
    assert_eq!(outcome.alive.len(), 1);
    assert_eq!(outcome.alive[0].key, key);
    assert_eq!(outcome.alive[0].pid, 1);
    assert!(proc_state(1).is_some(), "PID 1 is gone");
    engine.deregister(key).unwrap();
    assert!(proc_state(1).is_some(), "PID 1 is gone");
}

#[test]
fn bad_shard_counts_rejected() {
    for (shards, threads) in [(0, true), (300, true), (2, false)] {
        let error = Engine::<()>::builder()
            .shards(shards)
            .threads(threads)
            .build()
            .unwrap_err();
        assert_eq!(
            error.kind(),
            ErrorKind::InvalidInput,
            "{shards} shards: {error}"
        );
        assert!(error.to_string().contains(&shards.to_string()), "{error}");
    }
}

#[test]
fn threaded_engine_rejects_poll() {
    let engine = Engine::<()>::builder().threads(true).build().unwrap();

    let error = engine.poll(Some(Duration::ZERO)).unwrap_err();

    assert_eq!(error.kind(), ErrorKind::Unsupported, "{error}");
}

#[test]
fn deregistered_process_not_reported() {
    let mut processes = Processes::new();
    let engine = Engine::<&str>::builder().build().unwrap();
    let child = processes.spawn(&mut sleep_command("0.1"));
    let pid = child.id();
    let key = engine.register_child(child, "short").unwrap();

    let removed = engine.deregister(key).unwrap();
    let outcome = engine
        .wait(WaitFor::All, Some(Duration::from_millis(400)))
        .unwrap();

    assert_eq!(removed.pid, pid);
    assert_eq!(removed.data, "short");
    assert!(outcome.gone.is_empty(), "reported: {:?}", outcome.gone);
    assert!(outcome.alive.is_empty());
    // The child handle came back, and with it the duty to reap.
    let mut child = removed.child.expect("the child handle comes back");
    assert!(wait_child_within(&mut child, PATIENCE).success());
    let again = engine.deregister(key).unwrap_err();
    assert_eq!(again.kind(), ErrorKind::NotFound, "{again}");
    assert!(again.to_string().contains(&key.to_string()), "{again}");
}

#[test]
fn stale_key_not_found() {
    let mut processes = Processes::new();
    let engine = Engine::<u32>::builder().build().unwrap();
    let first = engine
        .register_child(processes.spawn(&mut Command::new("true")), 1)
        .unwrap();
    let outcome = engine.wait(WaitFor::All, Some(PATIENCE)).unwrap();
    assert_eq!(outcome.gone.len(), 1);

    // A new process takes the freed slot, and the old key must not reach it.
    let second = engine
        .register_child(processes.spawn(&mut sleep_command("30")), 2)
        .unwrap();
    assert_ne!(first, second);
    let deregister = engine.deregister(first).unwrap_err();
    let signal = engine.signal(first, libc::SIGKILL).unwrap_err();

    assert_eq!(deregister.kind(), ErrorKind::NotFound, "{deregister}");
    assert_eq!(signal.kind(), ErrorKind::NotFound, "{signal}");
    assert_eq!(engine.len(), 1);
    let alive = engine
        .wait(WaitFor::All, Some(Duration::from_millis(100)))
        .unwrap();
    assert!(
        alive.gone.is_empty(),
        "the new process was hit: {:?}",
        alive.gone
    );

    // A key from another engine's third shard does not belong to this one.
    let sharded = Engine::<u32>::builder()
        .shards(4)
        .threads(true)
        .build()
        .unwrap();
    let foreign: Vec<_> = (0..4)
        .map(|index| {
            let child = processes.spawn(&mut sleep_command("30"));
            sharded.register_child(child, index).unwrap()
        })
        .collect();
    let error = engine.deregister(foreign[2]).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
    assert_eq!(engine.len(), 1);
}

#[test]
fn signal_reaches_right_process() {
    let mut processes = Processes::new();
    let engine = Engine::<char>::builder().build().unwrap();
    let first = processes.spawn(&mut sleep_command("30"));
    let second = processes.spawn(&mut sleep_command("30"));
    let (first_pid, second_pid) = (first.id(), second.id());
    let first_key = engine.register_child(first, 'a').unwrap();
    let second_key = engine.register_child(second, 'b').unwrap();

    engine.signal(first_key, libc::SIGTERM).unwrap();
    let terminated = engine.wait(WaitFor::Any, Some(PATIENCE)).unwrap();

    assert_eq!(terminated.gone.len(), 1);
    assert_eq!(terminated.gone[0].pid, first_pid);
    assert_eq!(
        terminated.gone[0].status,
        ExitStatus::Signaled {
            signal: libc::SIGTERM,
            core_dumped: false
        }
    );
    assert_eq!(terminated.alive.len(), 1);
    assert_eq!(terminated.alive[0].pid, second_pid);
    assert_eq!(proc_state(second_pid).map(|state| state != 'Z'), Some(true));

    engine.signal(second_key, libc::SIGKILL).unwrap();
    let killed = engine.wait(WaitFor::All, Some(PATIENCE)).unwrap();
    assert_eq!(killed.gone.len(), 1);
    assert_eq!(killed.gone[0].status.signal(), Some(libc::SIGKILL));
    let invalid = engine.signal(second_key, libc::SIGKILL).unwrap_err();
    assert_eq!(invalid.kind(), ErrorKind::NotFound, "{invalid}");
    assert_eq!(processes.unreaped_children(), []);
}

#[test]
fn invalid_signal_rejected() {
    let mut processes = Processes::new();
    let engine = Engine::<()>::builder().build().unwrap();
    let key = engine
        .register_child(processes.spawn(&mut sh("sleep 30")), ())
        .unwrap();

    let error = engine.signal(key, 0x7777).unwrap_err();

    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
    assert!(error.to_string().contains(&0x7777.to_string()), "{error}");
    assert_eq!(engine.len(), 1);
}

#[test]
fn facade_missing_pid_reported_gone() {
    let mut processes = Processes::new();
    let child = processes.spawn(&mut sh("exit 2"));
    let procs = vec![Proc::Pid(i32::MAX as u32), Proc::Child(child)];

    let (gone, alive) = wait_procs(procs, Some(PATIENCE), |_| {}).unwrap();

    assert!(alive.is_empty());
    assert_eq!(gone.len(), 2);
    let missing = gone.iter().find(|exit| exit.index == 0).unwrap();
    assert_eq!(missing.status, ExitStatus::Unknown);
    let exited = gone.iter().find(|exit| exit.index == 1).unwrap();
    assert_eq!(exited.status, ExitStatus::Exited(2));
}
