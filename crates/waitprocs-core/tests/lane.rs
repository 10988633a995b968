//! The fallback lane, forced: the same statuses as with pidfds.
#![cfg(target_os = "linux")]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use waitprocs_core::{Engine, ExitStatus, WaitFor};

fn spawn(script: &str) -> std::process::Child {
    Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sh")
}

#[test]
fn forced_lane_reports_exact_statuses() {
    let engine = Engine::<ExitStatus>::builder()
        .force_fallback(true)
        .build()
        .unwrap();
    let cases = [
        ("exit 0", ExitStatus::Exited(0)),
        ("exit 127", ExitStatus::Exited(127)),
        ("sleep 0.1; exit 255", ExitStatus::Exited(255)),
        (
            "kill -TERM $$",
            ExitStatus::Signaled {
                signal: libc::SIGTERM,
                core_dumped: false,
            },
        ),
        (
            "sleep 0.2; kill -KILL $$",
            ExitStatus::Signaled {
                signal: libc::SIGKILL,
                core_dumped: false,
            },
        ),
    ];
    for (script, status) in cases {
        engine.register_child(spawn(script), status).unwrap();
    }
    assert_eq!(engine.stats().lane, cases.len());

    let outcome = engine
        .wait(WaitFor::All, Some(Duration::from_secs(10)))
        .unwrap();
    assert!(outcome.alive.is_empty());
    assert_eq!(outcome.gone.len(), cases.len());
    for exit in &outcome.gone {
        assert_eq!(exit.status, exit.data, "pid {}", exit.pid);
        assert!(exit.usage.is_some(), "a reaped child has resource usage");
    }
}

#[test]
fn forced_lane_sees_non_child_exit() {
    // The shell starts a background sleep, prints its PID, and then never
    // waits for it, so the sleep becomes a zombie that is not our child.
    let mut parent = Command::new("sh")
        .args(["-c", "sleep 0.3 & echo $!; exec sleep 5"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(parent.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let grandchild: u32 = line.trim().parse().unwrap();

    let engine = Engine::<()>::builder()
        .force_fallback(true)
        .build()
        .unwrap();
    let started = Instant::now();
    engine.register_pid(grandchild, ()).unwrap();
    let outcome = engine
        .wait(WaitFor::All, Some(Duration::from_secs(5)))
        .unwrap();

    parent.kill().unwrap();
    parent.wait().unwrap();

    assert_eq!(outcome.gone.len(), 1);
    let exit = &outcome.gone[0];
    assert_eq!(exit.pid, grandchild);
    assert!(!exit.was_child);
    assert_eq!(exit.status, ExitStatus::Unknown);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "reported at zombie time, not when the parent ended"
    );
}

#[test]
fn forced_lane_idle_children_stay_alive() {
    let engine = Engine::<()>::builder()
        .force_fallback(true)
        .build()
        .unwrap();
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = child.id();
    engine.register_pid(pid, ()).unwrap();

    let outcome = engine
        .wait(WaitFor::All, Some(Duration::from_millis(300)))
        .unwrap();
    assert!(outcome.gone.is_empty());
    assert_eq!(outcome.alive.len(), 1);

    let key = outcome.alive[0].key;
    let removed = engine.deregister(key).unwrap();
    assert_eq!(removed.pid, pid);
    child.kill().unwrap();
    child.wait().unwrap();
}
