//! A thread that is not the leader calls exec: the process lives on under the
//! same PID, so that must not read as an exit.
#![cfg(target_os = "linux")]

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use waitprocs_core::{Engine, ExitStatus, WaitFor};
use waitprocs_tests::{wait_child_within, Processes, TempDir, PATIENCE};

/// A second thread replaces the whole process with a shell that sleeps
/// 0.4 s and exits with 5. The kernel kills the main thread and gives the
/// PID to the exec'ing thread (de_thread in fs/exec.c).
const EXEC_FROM_THREAD_C: &str = r#"
#include <pthread.h>
#include <unistd.h>

static void *replace(void *unused) {
    (void)unused;
    char *argv[] = {"sh", "-c", "sleep 0.4; exit 5", 0};
    execv("/bin/sh", argv);
    _exit(127);
}

int main(void) {
    pthread_t thread;
    pthread_create(&thread, 0, replace, 0);
    pause();
    return 0;
}
"#;

#[test]
fn thread_exec_not_an_exit() {
    let mut processes = Processes::new();
    let dir = TempDir::new("thread-exec");
    let source = dir.path().join("exec_from_thread.c");
    let program = dir.path().join("exec_from_thread");
    fs::write(&source, EXEC_FROM_THREAD_C).unwrap();
    let compiler = Command::new("cc")
        .arg("-pthread")
        .arg("-o")
        .arg(&program)
        .arg(&source)
        .stdin(Stdio::null())
        .spawn();
    let Ok(mut compiler) = compiler else {
        eprintln!("skipped: no C compiler (cc) to build the test program");
        return;
    };
    processes.track_other(compiler.id());
    assert!(
        wait_child_within(&mut compiler, PATIENCE * 3).success(),
        "compiling the test program failed"
    );

    let engine = Engine::<()>::new().unwrap();
    let started = Instant::now();
    let child = processes.spawn(&mut Command::new(&program));
    let pid = child.id();
    engine.register_child(child, ()).unwrap();

    let outcome = engine.wait(WaitFor::All, Some(PATIENCE)).unwrap();
    let took = started.elapsed();
    assert_eq!(outcome.gone.len(), 1, "not reported: {:?}", outcome.alive);
    let exit = &outcome.gone[0];
    assert_eq!(exit.pid, pid);
    assert_eq!(
        exit.status,
        ExitStatus::Exited(5),
        "the exec was read as an exit"
    );
    assert!(
        took >= Duration::from_millis(350),
        "reported after {took:?}, before the new program ended"
    );
}
