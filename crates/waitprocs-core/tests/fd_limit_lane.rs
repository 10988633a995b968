//! A soft RLIMIT_NOFILE of 64 without overflow shards: the fallback lane and
//! promotion carry every process past the budget.
//!
//! This file holds a single test because it lowers a process-wide limit.
#![cfg(target_os = "linux")]

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use waitprocs_core::{Engine, ExitStatus, WaitFor};

#[test]
fn lane_takes_processes_past_budget() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the rlimit struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = 64;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }

    let engine = Engine::<u32>::builder().overflow(false).build().unwrap();
    let mut pids = HashSet::new();
    for i in 0..300u32 {
        let script = format!("sleep 0.{}; exit {}", 1 + i % 5, i % 7);
        let child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        pids.insert(child.id());
        engine.register_child(child, i % 7).unwrap();
    }
    let stats = engine.stats();
    assert!(stats.lane > 0, "nothing went to the lane: {stats:?}");
    assert_eq!(stats.overflow_shards, 0);

    let outcome = engine
        .wait(WaitFor::All, Some(Duration::from_secs(30)))
        .unwrap();
    assert!(outcome.alive.is_empty());
    assert_eq!(outcome.gone.len(), 300);
    for exit in &outcome.gone {
        assert_eq!(exit.status, ExitStatus::Exited(exit.data as i32));
        assert!(pids.remove(&exit.pid), "pid {} reported twice", exit.pid);
    }
}
