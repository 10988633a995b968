//! How the engine reports the end of real children: exit codes, deaths by
//! signal, core dumps, stops, resource usage, and a main thread that exits
//! before the others.
#![cfg(target_os = "linux")]

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Resource, Signal};
use waitprocs_core::{Engine, ExitStatus, WaitFor};
use waitprocs_tests::{
    leader_exit_program, proc_state, sh, wait_child_within, wait_until, Processes, TempDir,
    PATIENCE,
};

#[test]
fn exit_codes_exact() {
    let mut processes = Processes::new();
    let engine = Engine::<i32>::builder().build().unwrap();
    let codes = [0, 1, 2, 126, 127, 128, 254, 255];
    for code in codes {
        let child = processes.spawn(&mut sh(&format!("exit {code}")));
        engine.register_child(child, code).unwrap();
    }

    let outcome = engine.wait(WaitFor::All, Some(PATIENCE)).unwrap();

    assert!(outcome.alive.is_empty(), "still alive: {:?}", outcome.alive);
    let mut reported: Vec<i32> = outcome.gone.iter().map(|event| event.data).collect();
    reported.sort_unstable();
    assert_eq!(reported, codes, "each code is reported exactly once");
    for event in &outcome.gone {
        // The wait status of `exit 127` is 0x7f00, and its low byte 0x7f must
        // not be decoded as "stopped".
        assert_eq!(
            event.status,
            ExitStatus::Exited(event.data),
            "PID {} ran `exit {}`",
            event.pid,
            event.data
        );
        assert!(event.was_child, "PID {} is our child", event.pid);
    }
    assert_eq!(processes.unreaped_children(), []);
}

/// Runs `script` with `sh` in `dir`, unregistered, and returns the status
/// that waitpid(2) gives for it.
fn reference_status(processes: &mut Processes, script: &str, dir: &Path) -> ExitStatus {
    let mut child = processes.spawn(sh(script).current_dir(dir));
    let raw = wait_child_within(&mut child, PATIENCE).into_raw();
    ExitStatus::from_wait_status(raw).expect("an exit, not a stop")
}

fn core_pattern() -> String {
    fs::read_to_string("/proc/sys/kernel/core_pattern")
        .map(|pattern| pattern.trim().to_owned())
        .unwrap_or_default()
}

#[test]
fn signal_deaths_reported() {
    let mut processes = Processes::new();
    let engine = Engine::<(&str, i32)>::builder().build().unwrap();
    let dir = TempDir::new("signals");
    let cases = [
        ("ulimit -c 0; kill -SEGV $$", libc::SIGSEGV),
        ("kill -KILL $$", libc::SIGKILL),
        ("kill -TERM $$", libc::SIGTERM),
    ];
    for (script, signal) in cases {
        let child = processes.spawn(sh(script).current_dir(dir.path()));
        engine.register_child(child, (script, signal)).unwrap();
    }

    let outcome = engine.wait(WaitFor::All, Some(PATIENCE)).unwrap();

    assert_eq!(outcome.gone.len(), cases.len());
    for event in &outcome.gone {
        let (script, signal) = event.data;
        assert_eq!(
            event.status.signal(),
            Some(signal),
            "`{script}` gave {:?}",
            event.status
        );
        assert_ne!(event.status, ExitStatus::Exited(0), "`{script}`");
    }
    // With a pipe pattern the kernel hands the dump to a helper regardless of
    // RLIMIT_CORE, so only a file pattern lets `ulimit -c 0` prevent it.
    let segv = outcome
        .gone
        .iter()
        .find(|event| event.data.1 == libc::SIGSEGV);
    let segv = segv.expect("the SIGSEGV child is reported");
    let expected_core = if core_pattern().starts_with('|') {
        reference_status(&mut processes, cases[0].0, dir.path()).core_dumped()
    } else {
        false
    };
    assert_eq!(segv.status.core_dumped(), expected_core);
    assert_eq!(processes.unreaped_children(), []);
}

#[test]
fn core_dump_flag_honest() {
    let mut processes = Processes::new();
    let engine = Engine::<()>::builder().build().unwrap();
    let dump_dir = TempDir::new("core-engine");
    let reference_dir = TempDir::new("core-reference");
    let script = "ulimit -c unlimited 2>/dev/null; kill -SEGV $$";

    let child = processes.spawn(sh(script).current_dir(dump_dir.path()));
    engine.register_child(child, ()).unwrap();
    let outcome = engine.wait(WaitFor::All, Some(PATIENCE)).unwrap();
    let reference = reference_status(&mut processes, script, reference_dir.path());

    assert_eq!(outcome.gone.len(), 1);
    let status = outcome.gone[0].status;
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "got {status:?}");
    assert_eq!(
        status, reference,
        "the engine and waitpid(2) disagree on an identical child"
    );
    // A plain file name as the pattern puts the dump in the working directory,
    // which the test owns, so there the dump must exist and be flagged.
    let pattern = core_pattern();
    let plain_file = !pattern.is_empty() && !pattern.contains('|') && !pattern.contains('/');
    let unlimited = rustix::process::getrlimit(Resource::Core).maximum.is_none();
    if plain_file && unlimited {
        assert!(
            status.core_dumped(),
            "core pattern {pattern:?}, got {status:?}"
        );
        let files = fs::read_dir(dump_dir.path()).unwrap().count();
        assert!(files > 0, "no core file in {}", dump_dir.path().display());
    } else {
        eprintln!("core pattern {pattern:?}: compared with waitpid(2) only");
    }
    assert_eq!(processes.unreaped_children(), []);
}

#[test]
fn stop_continue_not_exit() {
    let mut processes = Processes::new();
    let engine = Engine::<()>::builder().build().unwrap();
    let child = processes.spawn(Command::new("sleep").arg("30").stdin(Stdio::null()));
    let pid = child.id();
    let key = engine.register_child(child, ()).unwrap();

    processes.signal(pid, Signal::STOP);
    assert!(
        wait_until(PATIENCE, || proc_state(pid) == Some('T')),
        "PID {pid} did not stop"
    );
    let stopped = engine
        .wait(WaitFor::Any, Some(Duration::from_millis(150)))
        .unwrap();
    assert!(
        stopped.gone.is_empty(),
        "a stop was reported: {:?}",
        stopped.gone
    );

    processes.signal(pid, Signal::CONT);
    assert!(
        wait_until(PATIENCE, || proc_state(pid) != Some('T')),
        "PID {pid} did not continue"
    );
    let continued = engine
        .wait(WaitFor::Any, Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        continued.gone.is_empty(),
        "a continue was reported: {:?}",
        continued.gone
    );
    assert_eq!(continued.alive.len(), 1);
    assert_eq!(continued.alive[0].pid, pid);

    engine.signal(key, libc::SIGKILL).unwrap();
    let killed = engine.wait(WaitFor::All, Some(PATIENCE)).unwrap();
    assert_eq!(killed.gone.len(), 1);
    assert_eq!(
        killed.gone[0].status,
        ExitStatus::Signaled {
            signal: libc::SIGKILL,
            core_dumped: false
        }
    );
    assert_eq!(processes.unreaped_children(), []);
}

#[test]
fn resource_usage_of_busy_child() {
    let mut processes = Processes::new();
    let engine = Engine::<()>::builder().build().unwrap();
    let started = Instant::now();
    let child = processes.spawn(&mut sh("i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"));
    engine.register_child(child, ()).unwrap();

    let outcome = engine.wait(WaitFor::All, Some(PATIENCE * 3)).unwrap();
    let elapsed = started.elapsed();

    assert_eq!(outcome.gone.len(), 1);
    let event = &outcome.gone[0];
    assert_eq!(event.status, ExitStatus::Exited(0));
    let usage = event.usage.expect("a child the engine reaped has usage");
    let cpu = usage.user_time + usage.system_time;
    assert!(cpu > Duration::ZERO, "no CPU time: {usage:?}");
    // One single-threaded shell cannot use more CPU than the wall time it ran,
    // so a larger figure means a unit conversion went wrong.
    assert!(
        cpu <= elapsed + Duration::from_millis(50),
        "{cpu:?} of CPU in {elapsed:?}"
    );
    // A shell's resident set is several hundred KiB, so a figure below
    // 64 KiB means that kibibytes were taken for bytes.
    assert!(usage.max_rss_bytes >= 64 * 1024, "{usage:?}");
}

/// Checks that a process whose main thread has exited is reported only when
/// its last thread ends. With `register_late`, the process is registered only
/// once its main thread is a zombie.
fn check_leader_exit(register_late: bool) {
    let mut processes = Processes::new();
    let dir = TempDir::new("leader-exit");
    let Some(argv) = leader_exit_program(&mut processes, &dir) else {
        eprintln!("skipped: neither `cc` nor `python3` can build the pthread_exit program");
        return;
    };
    let mut command = Command::new(&argv[0]);
    command.args(&argv[1..]).stdin(Stdio::null());
    let engine = Engine::<()>::builder().build().unwrap();
    let spawned_at = Instant::now();
    let mut child = Some(processes.spawn(&mut command));
    let pid = child.as_ref().map_or(0, |child| child.id());
    if !register_late {
        engine.register_child(child.take().unwrap(), ()).unwrap();
    }

    // The worker sleeps 500 ms, so within the first 300 ms a 'Z' state can only
    // be the main thread's own exit, not the end of the process.
    let leader_exited = wait_until(Duration::from_millis(300), || proc_state(pid) == Some('Z'));
    assert!(leader_exited, "the main thread of PID {pid} did not exit");
    if let Some(child) = child {
        engine.register_child(child, ()).unwrap();
    }
    let window =
        (spawned_at + Duration::from_millis(400)).saturating_duration_since(Instant::now());
    let early = engine.wait(WaitFor::Any, Some(window)).unwrap();
    assert!(
        early.gone.is_empty(),
        "reported while a thread still runs: {:?}",
        early.gone
    );

    let outcome = engine.wait(WaitFor::All, Some(PATIENCE)).unwrap();
    assert_eq!(outcome.gone.len(), 1);
    let event = &outcome.gone[0];
    assert_eq!(event.status, ExitStatus::Exited(3));
    assert!(
        event.detected_at >= spawned_at + Duration::from_millis(500),
        "detected {:?} after spawn",
        event.detected_at - spawned_at
    );
    assert_eq!(processes.unreaped_children(), []);
}

#[test]
fn leader_exit_waits_for_threads() {
    check_leader_exit(false);
}

#[test]
fn zombie_leader_registered_late() {
    check_leader_exit(true);
}
