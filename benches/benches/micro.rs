//! Micro costs of the engine: registering one process, and one turn that
//! delivers one exit.
//!
//! Run with `cargo bench -p waitprocs-benches --bench micro`.
// The harness measures Linux mechanisms and Linux peers; elsewhere it builds
// to an empty program so that the workspace still type-checks.
#![cfg_attr(not(target_os = "linux"), no_main)]
#![cfg(target_os = "linux")]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use waitprocs::Engine;

/// Spawns a child that lives until its standard input closes, so that every
/// registration in the loop finds a running process.
fn sleeper() -> Child {
    Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawning cat failed; the benchmark needs coreutils")
}

fn stop(mut child: Child) {
    drop(child.stdin.take());
    child.wait().expect("waiting for cat failed");
}

fn registration(c: &mut Criterion) {
    let engine = Engine::<()>::new().expect("creating the engine failed");
    let child = sleeper();
    let pid = child.id();

    // Each registration is timed alone; the deregistration that undoes it
    // (epoll_ctl(2) DEL and close(2) of the pidfd) is not.
    c.bench_function("register_pid", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let started = Instant::now();
                let key = engine.register_pid(pid, ()).expect("registering failed");
                total += started.elapsed();
                engine.deregister(key).expect("deregistering failed");
            }
            total
        })
    });

    c.bench_function("register_and_deregister", |b| {
        b.iter(|| {
            let key = engine.register_pid(pid, ()).expect("registering failed");
            engine.deregister(key).expect("deregistering failed");
        })
    });
    stop(child);
}

fn dispatch(c: &mut Criterion) {
    let engine = Engine::<()>::new().expect("creating the engine failed");
    let mut group = c.benchmark_group("dispatch");
    // Each iteration spawns a process, so keep the sample small.
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));

    // Times one poll that reaps an exited child and delivers its event. The
    // spawn and the wait for the child to become a zombie are not timed.
    group.bench_function("one_child_exit", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let child = Command::new("/bin/true")
                    .spawn()
                    .expect("spawning /bin/true failed");
                let pid = child.id();
                engine
                    .register_child(child, ())
                    .expect("registering failed");
                wait_zombie(pid);
                let started = Instant::now();
                let delivered = engine
                    .poll(Some(Duration::from_secs(5)))
                    .expect("poll failed");
                total += started.elapsed();
                assert_eq!(delivered, 1, "one poll should deliver the one exit");
                engine
                    .events()
                    .try_recv()
                    .expect("the exit event is queued");
            }
            total
        })
    });
    group.finish();
}

/// Waits until `pid` has exited without reaping it (waitid(2) with `WNOWAIT`).
fn wait_zombie(pid: u32) {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("PID is positive");
    rustix::process::waitid(
        rustix::process::WaitId::Pid(pid),
        rustix::process::WaitIdOptions::EXITED | rustix::process::WaitIdOptions::NOWAIT,
    )
    .expect("waitid failed");
}

criterion_group!(micro, registration, dispatch);
criterion_main!(micro);
