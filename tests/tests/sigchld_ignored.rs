//! The kernel reaps the children of a process that ignores `SIGCHLD` as they
//! exit. The engine must still report each one, with its status only where
//! the kernel kept it.
//!
//! The disposition is process-wide, so this file contains a single test. It
//! runs its checks in a copy of this binary that bash starts with
//! `trap '' CHLD`, because a signal ignored before execve(2) stays ignored
//! after it. That way the tests need no `unsafe` call to sigaction(2).
#![cfg(target_os = "linux")]

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use waitprocs_core::{Engine, ExitStatus, WaitFor};
use waitprocs_tests::{
    kernel_keeps_exit_status, runs_successfully, sh, wait_child_within, Processes, PATIENCE,
};

const TEST_NAME: &str = "ignored_sigchld_still_reported";
/// Set in the environment of the copy, so that a copy that still handles
/// `SIGCHLD` fails instead of starting yet another copy.
const RERUN_ENV: &str = "WAITPROCS_TESTS_SIGCHLD_RERUN";

/// Returns whether this process ignores `SIGCHLD`, from the `SigIgn` mask in
/// `/proc/self/status`, where bit N-1 is signal N.
fn sigchld_ignored() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .map(|hex| u64::from_str_radix(hex.trim(), 16).unwrap())
        .expect("a SigIgn line");
    mask & (1 << (libc::SIGCHLD - 1)) != 0
}

#[test]
fn ignored_sigchld_still_reported() {
    if sigchld_ignored() {
        check_reports();
    } else {
        assert!(
            std::env::var_os(RERUN_ENV).is_none(),
            "`trap '' CHLD` in bash did not leave SIGCHLD ignored"
        );
        rerun_with_sigchld_ignored();
    }
}

fn rerun_with_sigchld_ignored() {
    if !runs_successfully(Command::new("bash").args(["-c", "true"])) {
        eprintln!("skipped: bash is needed to start this test with SIGCHLD ignored");
        return;
    }
    let mut processes = Processes::new();
    let mut rerun = processes.spawn(
        Command::new("bash")
            .arg("-c")
            .arg("trap '' CHLD; exec \"$0\" \"$@\"")
            .arg(std::env::current_exe().unwrap())
            .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(RERUN_ENV, "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped()),
    );
    let mut stdout = rerun.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        let mut output = String::new();
        let _ = stdout.read_to_string(&mut output);
        output
    });

    let status = wait_child_within(&mut rerun, PATIENCE * 2);
    let output = reader.join().unwrap();

    eprintln!("{output}");
    assert!(
        status.success(),
        "the copy with SIGCHLD ignored failed: {status}"
    );
    assert!(
        output.contains("1 passed"),
        "the copy with SIGCHLD ignored ran no test"
    );
}

fn check_reports() {
    let mut processes = Processes::new();
    let engine = Engine::<&str>::builder().build().unwrap();
    // `slow` is registered before it exits, so its pidfd reports the exit.
    // The kernel may reap `fast` before it is registered.
    let slow = processes.spawn(&mut sh("sleep 0.2; exit 3"));
    engine.register_child(slow, "slow").unwrap();
    let fast = processes.spawn(&mut sh("exit 3"));
    engine.register_child(fast, "fast").unwrap();

    let started = Instant::now();
    let outcome = engine
        .wait(WaitFor::All, Some(Duration::from_secs(2)))
        .unwrap();

    assert!(
        outcome.alive.is_empty(),
        "not reported within 2 s: {:?}",
        outcome.alive
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(outcome.gone.len(), 2);
    let kernel_keeps = kernel_keeps_exit_status();
    for event in &outcome.gone {
        let truthful = match (event.data, event.status) {
            (_, ExitStatus::Unknown) => event.data == "fast" || !kernel_keeps,
            (_, ExitStatus::Exited(3)) => kernel_keeps,
            _ => false,
        };
        assert!(
            truthful,
            "`{}` child reported {:?}",
            event.data, event.status
        );
        assert!(event.was_child, "`{}` child", event.data);
        assert_eq!(event.usage, None, "the kernel reaped `{}`", event.data);
    }
    eprintln!(
        "statuses seen: {:?}",
        outcome
            .gone
            .iter()
            .map(|event| (event.data, event.status))
            .collect::<Vec<_>>()
    );
}
