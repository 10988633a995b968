//! `SA_NOCLDWAIT` on SIGCHLD makes the kernel reap children by itself. A
//! registered child is still reported promptly: with its status where the
//! kernel keeps it for the pidfd (Linux 6.15 and later), `Unknown` otherwise,
//! never an invented `Exited(0)` and never a hang.
//!
//! The flag is process-wide, so this file contains a single test.
#![cfg(target_os = "linux")]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use waitprocs_core::{Engine, ExitStatus, WaitFor};

#[test]
fn nocldwait_child_still_reported() {
    // SAFETY: sigaction reads the zero-initialised struct we own; SIG_DFL
    // with SA_NOCLDWAIT installs no handler code.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = libc::SIG_DFL;
        action.sa_flags = libc::SA_NOCLDWAIT;
        assert_eq!(
            libc::sigaction(libc::SIGCHLD, &action, std::ptr::null_mut()),
            0
        );
    }

    let engine = Engine::<()>::new().unwrap();
    let child = Command::new("sh")
        .args(["-c", "sleep 0.2; exit 3"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    engine.register_child(child, ()).unwrap();

    let started = Instant::now();
    let outcome = engine
        .wait(WaitFor::All, Some(Duration::from_secs(10)))
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "not reported promptly"
    );
    assert_eq!(outcome.gone.len(), 1);
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut numbers = release
        .split(['.', '-'])
        .map(|part| part.parse::<u32>().unwrap_or(0));
    let kept = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0)) >= (6, 15);
    let expected = if kept {
        ExitStatus::Exited(3)
    } else {
        ExitStatus::Unknown
    };
    assert_eq!(outcome.gone[0].status, expected);
    assert_eq!(
        outcome.gone[0].usage, None,
        "the kernel reaped it, not the engine"
    );
}
