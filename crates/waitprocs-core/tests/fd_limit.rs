//! A soft RLIMIT_NOFILE of 64 and 2,000 children: every exit is reported
//! once and exactly, and the host can still open files.
//!
//! This file holds a single test because it lowers a process-wide limit.
#![cfg(target_os = "linux")]

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use waitprocs_core::{Engine, ExitStatus, WaitFor};

const CHILDREN: usize = 2_000;

/// The shell command for child `i` and the status it must end with.
fn job(i: usize) -> (String, ExitStatus) {
    let delay = if i % 2 == 0 { "0.2" } else { "0.6" };
    match i % 5 {
        0 => (format!("sleep {delay}"), ExitStatus::Exited(0)),
        1 => (
            format!("sleep {delay}; exit {}", i % 256),
            ExitStatus::Exited((i % 256) as i32),
        ),
        2 => (
            format!("sleep {delay}; kill -TERM $$"),
            ExitStatus::Signaled {
                signal: libc::SIGTERM,
                core_dumped: false,
            },
        ),
        3 => (
            format!("sleep {delay}; kill -KILL $$"),
            ExitStatus::Signaled {
                signal: libc::SIGKILL,
                core_dumped: false,
            },
        ),
        _ => (format!("sleep {delay}; exit 127"), ExitStatus::Exited(127)),
    }
}

fn set_soft_nofile(limit: u64) {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the rlimit struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut current), 0);
        current.rlim_cur = limit;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &current), 0);
    }
}

#[test]
fn low_descriptor_limit_loses_nothing() {
    set_soft_nofile(64);

    let calls: Arc<Mutex<HashMap<u32, usize>>> = Arc::default();
    let counter = Arc::clone(&calls);
    let engine = Engine::<usize>::builder()
        .threads(true)
        .on_exit(move |exit| *counter.lock().unwrap().entry(exit.pid).or_default() += 1)
        .build()
        .expect("engine");

    let mut expected = HashMap::new();
    for i in 0..CHILDREN {
        let (script, status) = job(i);
        let child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning child {i} failed: {e}"));
        expected.insert(child.id(), status);
        engine
            .register_child(child, i)
            .unwrap_or_else(|e| panic!("registering child {i} failed: {e}"));
    }

    let stats = engine.stats();
    assert!(
        stats.overflow_shards > 0,
        "no overflow shard was used: {stats:?}"
    );
    assert!(stats.watched <= stats.fd_budget, "{stats:?}");

    // The host program can still open a file while the engine is full.
    let opened = std::fs::File::open("/proc/self/status");
    assert!(opened.is_ok(), "opening a file failed: {:?}", opened.err());
    drop(opened);

    let outcome = engine
        .wait(WaitFor::All, Some(Duration::from_secs(60)))
        .expect("wait");
    assert!(
        outcome.alive.is_empty(),
        "{} children still alive",
        outcome.alive.len()
    );
    assert_eq!(outcome.gone.len(), CHILDREN);
    for exit in &outcome.gone {
        assert_eq!(
            Some(&exit.status),
            expected.get(&exit.pid),
            "child {} (pid {})",
            exit.data,
            exit.pid
        );
        assert!(exit.was_child);
    }
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), CHILDREN);
    assert!(
        calls.values().all(|&n| n == 1),
        "a callback ran more than once"
    );
}
