//! Injected system-call failures: every errno branch of pidfd_open,
//! epoll_ctl and waitid leads to an exact report or a clear error, never a
//! lost exit.
//!
//! Faults are process-wide, so the tests in this file take one lock and
//! clear the faults before and after each.
#![cfg(target_os = "linux")]

use std::io::ErrorKind;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use waitprocs_core::faults::{self, Call};
use waitprocs_core::{Engine, ExitStatus, WaitFor};
use waitprocs_tests::{forced_fallback, waitpid_within, PATIENCE};

static SERIAL: Mutex<()> = Mutex::new(());

/// Runs one test alone, with no fault pending before or after it.
fn serial() -> Guard {
    let lock = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    faults::clear();
    Guard(lock)
}

struct Guard(#[allow(dead_code)] MutexGuard<'static, ()>);

impl Drop for Guard {
    fn drop(&mut self) {
        faults::clear();
    }
}

fn spawn(script: &str) -> Child {
    Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sh")
}

fn wait_one(engine: &Engine<()>) -> ExitStatus {
    let outcome = engine.wait(WaitFor::All, Some(PATIENCE)).unwrap();
    assert!(
        outcome.alive.is_empty(),
        "not reported: {:?}",
        outcome.alive
    );
    assert_eq!(outcome.gone.len(), 1);
    outcome.gone[0].status
}

#[test]
fn pidfd_emfile_uses_overflow_shard() {
    let _guard = serial();
    if forced_fallback() {
        return;
    }
    let engine = Engine::<()>::new().unwrap();
    faults::fail_next(Call::PidfdOpen, libc::EMFILE, 1);
    engine
        .register_child(spawn("sleep 0.1; exit 4"), ())
        .unwrap();
    let stats = engine.stats();
    assert_eq!(stats.overflow, 1, "{stats:?}");
    assert_eq!(stats.overflow_shards, 1, "{stats:?}");
    assert_eq!(wait_one(&engine), ExitStatus::Exited(4));
}

#[test]
fn pidfd_permanent_errors_use_lane() {
    let _guard = serial();
    for errno in [libc::ENOSYS, libc::EPERM, libc::EACCES] {
        faults::clear();
        let engine = Engine::<()>::new().unwrap();
        faults::fail_next(Call::PidfdOpen, errno, 1);
        engine
            .register_child(spawn("sleep 0.1; exit 5"), ())
            .unwrap();
        // The failure is remembered: the next process skips pidfd_open.
        engine.register_child(spawn("exit 6"), ()).unwrap();
        let stats = engine.stats();
        assert_eq!(stats.lane, 2, "errno {errno}: {stats:?}");

        let outcome = engine.wait(WaitFor::All, Some(PATIENCE)).unwrap();
        let mut statuses: Vec<_> = outcome.gone.iter().map(|exit| exit.status).collect();
        statuses.sort_by_key(|status| status.code());
        assert_eq!(
            statuses,
            [ExitStatus::Exited(5), ExitStatus::Exited(6)],
            "errno {errno}"
        );
    }
}

#[test]
fn pidfd_transient_errors_promote_later() {
    let _guard = serial();
    if forced_fallback() {
        return;
    }
    for errno in [libc::ENFILE, libc::ENOMEM] {
        let engine = Engine::<()>::new().unwrap();
        faults::fail_next(Call::PidfdOpen, errno, 1);
        engine
            .register_child(spawn("sleep 0.5; exit 7"), ())
            .unwrap();
        assert_eq!(engine.stats().lane, 1, "errno {errno}");

        // The lane's next tick finds a descriptor and moves the process to a pidfd.
        let deadline = Instant::now() + PATIENCE;
        while engine.stats().lane > 0 && Instant::now() < deadline {
            engine.poll(Some(Duration::from_millis(10))).unwrap();
        }
        let stats = engine.stats();
        assert_eq!(stats.lane, 0, "errno {errno}: not promoted: {stats:?}");
        assert_eq!(stats.watched, 1, "errno {errno}: {stats:?}");
        assert_eq!(wait_one(&engine), ExitStatus::Exited(7), "errno {errno}");
    }
}

#[test]
fn pidfd_einval_exiting_uses_lane() {
    let _guard = serial();
    let engine = Engine::<()>::new().unwrap();
    faults::fail_next(Call::PidfdOpen, libc::EINVAL, 1);
    engine.register_child(spawn("exit 8"), ()).unwrap();
    assert_eq!(engine.stats().lane, 1);
    assert_eq!(wait_one(&engine), ExitStatus::Exited(8));
}

#[test]
fn pidfd_esrch_rejects_bare_pid() {
    let _guard = serial();
    if forced_fallback() {
        return;
    }
    let engine = Engine::<()>::new().unwrap();
    let mut child = spawn("sleep 30");
    faults::fail_next(Call::PidfdOpen, libc::ESRCH, 1);
    let error = engine.register_pid(child.id(), ()).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound);
    assert!(engine.is_empty());
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn pidfd_esrch_child_still_reported() {
    let _guard = serial();
    let engine = Engine::<()>::new().unwrap();
    faults::fail_next(Call::PidfdOpen, libc::ESRCH, 1);
    // A child handle is ours, so ESRCH cannot mean "no such process": the
    // lane finds out what happened to it.
    engine.register_child(spawn("exit 9"), ()).unwrap();
    assert_eq!(wait_one(&engine), ExitStatus::Exited(9));
}

#[test]
fn poller_add_failure_uses_lane() {
    let _guard = serial();
    if forced_fallback() {
        return;
    }
    for errno in [libc::ENOSPC, libc::ENOMEM] {
        let engine = Engine::<()>::new().unwrap();
        faults::fail_next(Call::PollerAdd, errno, 1);
        engine
            .register_child(spawn("sleep 0.1; exit 10"), ())
            .unwrap();
        assert_eq!(engine.stats().lane, 1, "errno {errno}");
        assert_eq!(wait_one(&engine), ExitStatus::Exited(10), "errno {errno}");
    }
}

#[test]
fn waitid_eintr_is_retried() {
    let _guard = serial();
    let engine = Engine::<()>::new().unwrap();
    engine.register_child(spawn("exit 11"), ()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    faults::fail_next(Call::Waitid, libc::EINTR, 3);
    assert_eq!(wait_one(&engine), ExitStatus::Exited(11));
}

#[test]
fn waitid_einval_falls_back_to_pid() {
    let _guard = serial();
    if forced_fallback() {
        return;
    }
    let engine = Engine::<()>::new().unwrap();
    engine
        .register_child(spawn("sleep 0.1; exit 12"), ())
        .unwrap();
    // Linux 5.3 rejects P_PIDFD with EINVAL, so the engine then waits by PID.
    faults::fail_next(Call::Waitid, libc::EINVAL, 1);
    assert_eq!(wait_one(&engine), ExitStatus::Exited(12));
}

#[test]
fn waitid_echild_reports_unknown() {
    let _guard = serial();
    let engine = Engine::<()>::new().unwrap();
    let child = spawn("sleep 0.1; exit 13");
    let pid = child.id();
    engine.register_child(child, ()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // ECHILD means another waiter took the status: the engine reports the
    // exit without one and leaves the process alone.
    faults::fail_next(Call::Waitid, libc::ECHILD, 8);
    assert_eq!(wait_one(&engine), ExitStatus::Unknown);
    // The child was never really reaped, so the test reaps it.
    assert_eq!(waitpid_within(pid, PATIENCE).exit_status(), Some(13));
}

#[test]
fn waitid_other_error_reports_unknown() {
    let _guard = serial();
    let engine = Engine::<()>::new().unwrap();
    let child = spawn("sleep 0.1; exit 14");
    let pid = child.id();
    engine.register_child(child, ()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // An unexpected errno is not retried forever: the exit is reported.
    faults::fail_next(Call::Waitid, libc::EFAULT, 8);
    assert_eq!(wait_one(&engine), ExitStatus::Unknown);
    assert_eq!(waitpid_within(pid, PATIENCE).exit_status(), Some(14));
}
