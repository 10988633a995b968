//! pidfd_open blocked by a seccomp filter (EPERM, then ENOSYS): the engine
//! falls back to the lane and reports the same statuses as without it.
//!
//! The filter is process-wide, so each case re-runs this test binary as a
//! child process that installs the filter before it builds the engine.
#![cfg(target_os = "linux")]

use std::process::{Command, Stdio};
use std::time::Duration;

use waitprocs_core::{Engine, ExitStatus, WaitFor};

/// Names the errno the child run must install the filter with.
const ERRNO_ENV: &str = "WAITPROCS_TEST_SECCOMP_ERRNO";

/// Makes pidfd_open fail with `errno` in every thread of this process.
fn block_pidfd_open(errno: u32) {
    const LOAD_WORD: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JUMP_EQUAL: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RETURN: u16 = 0x06; // BPF_RET | BPF_K
    const RET_ERRNO: u32 = 0x0005_0000;
    const RET_ALLOW: u32 = 0x7fff_0000;
    let filter = [
        // Load seccomp_data.nr, the system call number.
        libc::sock_filter {
            code: LOAD_WORD,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: JUMP_EQUAL,
            jt: 0,
            jf: 1,
            k: libc::SYS_pidfd_open as u32,
        },
        libc::sock_filter {
            code: RETURN,
            jt: 0,
            jf: 0,
            k: RET_ERRNO | errno,
        },
        libc::sock_filter {
            code: RETURN,
            jt: 0,
            jf: 0,
            k: RET_ALLOW,
        },
    ];
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prctl and seccomp read the filter program, which outlives both
    // calls; TSYNC applies it to every thread of this process.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        let ret = libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_TSYNC,
            &program as *const libc::sock_fprog,
        );
        assert_eq!(
            ret,
            0,
            "installing the filter failed: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Runs 20 children with mixed endings and returns their statuses in order.
fn run_mixed_children(expect_lane: bool) -> Vec<ExitStatus> {
    let engine = Engine::<usize>::builder().build().unwrap();
    for i in 0..20 {
        let script = match i % 4 {
            0 => format!("exit {i}"),
            1 => "sleep 0.1; kill -TERM $$".to_owned(),
            2 => "kill -KILL $$".to_owned(),
            _ => format!("sleep 0.2; exit {}", 100 + i),
        };
        let child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        engine.register_child(child, i).unwrap();
    }
    let stats = engine.stats();
    if expect_lane {
        assert_eq!(
            stats.lane, 20,
            "the filter did not block pidfd_open: {stats:?}"
        );
    } else {
        assert_eq!(stats.lane, 0, "{stats:?}");
    }
    let outcome = engine
        .wait(WaitFor::All, Some(Duration::from_secs(20)))
        .unwrap();
    assert!(outcome.alive.is_empty());
    let mut statuses = vec![ExitStatus::Unknown; 20];
    for exit in outcome.gone {
        statuses[exit.data] = exit.status;
    }
    statuses
}

/// The child side: does nothing unless started by `pidfd_blocked_same_results`.
#[test]
fn seccomp_child_run() {
    let Ok(errno) = std::env::var(ERRNO_ENV) else {
        return;
    };
    block_pidfd_open(errno.parse().unwrap());
    let statuses = run_mixed_children(true);
    println!("STATUSES {statuses:?}");
}

#[test]
fn pidfd_blocked_same_results() {
    let unfiltered = run_mixed_children(false);
    assert!(unfiltered
        .iter()
        .all(|status| *status != ExitStatus::Unknown));

    for errno in [libc::EPERM, libc::ENOSYS] {
        let output = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "seccomp_child_run",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ERRNO_ENV, errno.to_string())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "child run with errno {errno} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        // libtest prints the test name on the same line, before the output.
        let line = stdout
            .lines()
            .find_map(|line| line.find("STATUSES ").map(|at| &line[at..]))
            .unwrap_or_else(|| panic!("no statuses from the child run:\n{stdout}"));
        assert_eq!(line, format!("STATUSES {unfiltered:?}"), "errno {errno}");
    }
}
