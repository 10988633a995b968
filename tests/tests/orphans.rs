//! Reaping adopted orphans is an explicit opt-in: a child subreaper calls
//! `Engine::reap_orphans`, which takes only children it was not given.
//! `PR_SET_CHILD_SUBREAPER` is process-wide, so this file contains one test.
#![cfg(target_os = "linux")]

use std::process::Stdio;

use waitprocs_core::{Engine, ExitStatus, WaitFor};
use waitprocs_tests::{proc_parent, sh, wait_until, Lines, Processes, PATIENCE};

#[test]
fn reap_orphans_takes_only_unregistered() {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).unwrap();
    let mut processes = Processes::new();
    let engine = Engine::<()>::builder().build().unwrap();

    // The shell leaves an orphan that exits with 6 and is adopted by us.
    let mut parent =
        processes.spawn(sh("(sleep 0.2; exit 6) & echo $!; exit 4").stdout(Stdio::piped()));
    let lines = Lines::new(parent.stdout.take().unwrap());
    engine.register_child(parent, ()).unwrap();
    let orphan = lines.next_pid_within(PATIENCE);
    processes.track_other(orphan);

    // A registered child that is still running must not be touched.
    let registered = processes.spawn(&mut sh("sleep 1; exit 7"));
    let registered_pid = registered.id();
    engine.register_child(registered, ()).unwrap();

    let first = engine.wait(WaitFor::Any, Some(PATIENCE)).unwrap();
    assert_eq!(first.gone[0].status, ExitStatus::Exited(4));
    let own_pid = std::process::id();
    assert!(
        wait_until(PATIENCE, || proc_parent(orphan) == Some(own_pid)),
        "PID {orphan} was not reparented to this process"
    );

    // Before the orphan exits, nothing is reaped.
    assert_eq!(engine.reap_orphans().unwrap(), []);
    let mut reaped = Vec::new();
    assert!(
        wait_until(PATIENCE, || {
            reaped.extend(engine.reap_orphans().unwrap());
            !reaped.is_empty()
        }),
        "the orphan was never reaped"
    );
    assert_eq!(reaped, [(orphan, ExitStatus::Exited(6))]);

    // The registered child is still the engine's, with its exact status.
    let rest = engine.wait(WaitFor::All, Some(PATIENCE)).unwrap();
    assert_eq!(rest.gone.len(), 1);
    assert_eq!(rest.gone[0].pid, registered_pid);
    assert_eq!(rest.gone[0].status, ExitStatus::Exited(7));
}
