//! A child subreaper adopts its orphaned descendants. The engine reaps only
//! the processes registered with it, so an adopted orphan stays for the
//! caller to reap. `PR_SET_CHILD_SUBREAPER` is process-wide, so this file
//! contains a single test.
#![cfg(target_os = "linux")]

use std::process::Stdio;
use std::time::Duration;

use waitprocs_core::{Engine, ExitStatus, WaitFor};
use waitprocs_tests::{proc_parent, sh, wait_until, waitpid_within, Lines, Processes, PATIENCE};

#[test]
fn subreaper_orphan_left_alone() {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).unwrap();
    let mut processes = Processes::new();
    let engine = Engine::<()>::builder().build().unwrap();
    let mut child = processes.spawn(sh("sleep 0.1 & echo $!; exit 4").stdout(Stdio::piped()));
    let lines = Lines::new(child.stdout.take().unwrap());
    let pid = child.id();
    engine.register_child(child, ()).unwrap();
    let orphan = lines.next_pid_within(PATIENCE);
    processes.track_other(orphan);

    let outcome = engine.wait(WaitFor::All, Some(PATIENCE)).unwrap();

    assert_eq!(outcome.gone.len(), 1);
    assert_eq!(outcome.gone[0].pid, pid);
    assert_eq!(outcome.gone[0].status, ExitStatus::Exited(4));
    let own_pid = std::process::id();
    let adopted = wait_until(PATIENCE, || proc_parent(orphan) == Some(own_pid));
    assert!(adopted, "PID {orphan} was not reparented to this process");

    // The engine turns for 500 ms, long enough for the orphan to exit.
    let delivered = engine.poll(Some(Duration::from_millis(500))).unwrap();
    assert_eq!(delivered, 0);
    assert!(engine.events().try_recv().is_err(), "an extra event came");
    assert_eq!(waitpid_within(orphan, PATIENCE).exit_status(), Some(0));
}
