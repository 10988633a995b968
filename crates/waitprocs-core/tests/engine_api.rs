//! Engine options on real processes: the non-child status grace, kept
//! children, and deregistration that wakes a waiter.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use waitprocs_core::{Engine, ExitStatus, WaitFor};

/// Returns true on Linux 6.15 and later, where PIDFD_GET_INFO keeps exit statuses.
fn kernel_keeps_exit_info() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (6, 15)
}

/// Starts a shell that runs `script` in the background, prints its PID and
/// then waits for it (so the parent reaps it), then sleeps.
fn spawn_reaping_parent(script: &str) -> (Child, u32) {
    let mut parent = Command::new("sh")
        .args(["-c", &format!("({script}) & echo $!; wait; sleep 5")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(parent.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (parent, line.trim().parse().unwrap())
}

#[test]
fn nonchild_grace_gets_parent_status() {
    let engine = Engine::<()>::builder()
        .nonchild_status_grace(Duration::from_millis(500))
        .build()
        .unwrap();
    let (mut parent, pid) = spawn_reaping_parent("sleep 0.2; exit 3");
    engine.register_pid(pid, ()).unwrap();
    let outcome = engine
        .wait(WaitFor::All, Some(Duration::from_secs(5)))
        .unwrap();
    parent.kill().unwrap();
    parent.wait().unwrap();

    assert_eq!(outcome.gone.len(), 1);
    let exit = &outcome.gone[0];
    assert!(!exit.was_child);
    if kernel_keeps_exit_info() {
        assert_eq!(exit.status, ExitStatus::Exited(3));
    } else {
        assert_eq!(exit.status, ExitStatus::Unknown);
    }
}

#[test]
fn kept_child_handle_comes_back() {
    let engine = Engine::<()>::new().unwrap();
    let child = Command::new("sh").args(["-c", "exit 7"]).spawn().unwrap();
    let pid = child.id();
    engine
        .register(waitprocs_core::Registration::child(child, ()).keep_status())
        .unwrap();
    let mut outcome = engine
        .wait(WaitFor::All, Some(Duration::from_secs(5)))
        .unwrap();
    let exit = outcome.gone.pop().unwrap();
    assert_eq!(exit.status, ExitStatus::Exited(7));

    let mut child = exit.child.expect("a kept child comes back with its handle");
    assert_eq!(child.id(), pid);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(7), "the status stayed for the owner");
}

#[test]
fn deregister_wakes_threaded_wait() {
    let engine = Arc::new(Engine::<()>::builder().threads(true).build().unwrap());
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let key = engine.register_pid(child.id(), ()).unwrap();

    let remover = {
        let engine = Arc::clone(&engine);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            engine.deregister(key).unwrap();
        })
    };
    let started = Instant::now();
    let outcome = engine
        .wait(WaitFor::All, Some(Duration::from_secs(10)))
        .unwrap();
    let waited = started.elapsed();
    remover.join().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();

    assert!(outcome.gone.is_empty());
    assert!(outcome.alive.is_empty());
    assert!(
        waited < Duration::from_secs(5),
        "wait slept through the deregistration: {waited:?}"
    );
}

#[test]
fn deregister_wakes_caller_driven_wait() {
    let engine = Arc::new(Engine::<()>::new().unwrap());
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let key = engine.register_pid(child.id(), ()).unwrap();

    let remover = {
        let engine = Arc::clone(&engine);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            engine.deregister(key).unwrap();
        })
    };
    let started = Instant::now();
    let outcome = engine
        .wait(WaitFor::All, Some(Duration::from_secs(10)))
        .unwrap();
    let waited = started.elapsed();
    remover.join().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();

    assert!(outcome.gone.is_empty());
    assert!(
        waited < Duration::from_secs(5),
        "wait slept through the deregistration: {waited:?}"
    );
}

#[test]
fn signal_zero_and_realtime_accepted() {
    let engine = Engine::<()>::new().unwrap();
    let child = Command::new("sleep").arg("30").spawn().unwrap();
    let key = engine.register_child(child, ()).unwrap();
    engine.signal(key, 0).unwrap();
    assert_eq!(
        engine.signal(key, -1).unwrap_err().kind(),
        std::io::ErrorKind::InvalidInput
    );
    engine.signal(key, libc::SIGRTMIN()).unwrap();
    let outcome = engine
        .wait(WaitFor::All, Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(
        outcome.gone[0].status,
        ExitStatus::Signaled {
            signal: libc::SIGRTMIN(),
            core_dumped: false
        }
    );
}

#[test]
fn terminate_all_escalates_to_kill() {
    let engine = Engine::<&str>::builder().build().unwrap();
    let polite = Command::new("sleep").arg("30").spawn().unwrap();
    // `exec` keeps the ignored SIGTERM, so only SIGKILL ends this one.
    let stubborn = Command::new("sh")
        .args(["-c", "trap '' TERM; exec sleep 30"])
        .spawn()
        .unwrap();
    engine.register_child(polite, "polite").unwrap();
    engine.register_child(stubborn, "stubborn").unwrap();
    // Give the shell time to install its trap before the signal comes.
    std::thread::sleep(Duration::from_millis(200));

    let started = Instant::now();
    let outcome = engine.terminate_all(Duration::from_millis(300)).unwrap();
    let took = started.elapsed();

    assert!(outcome.alive.is_empty());
    assert_eq!(outcome.gone.len(), 2);
    for exit in &outcome.gone {
        let expected = match exit.data {
            "polite" => libc::SIGTERM,
            _ => libc::SIGKILL,
        };
        assert_eq!(exit.status.signal(), Some(expected), "{}", exit.data);
    }
    assert!(
        took >= Duration::from_millis(300),
        "SIGKILL came before the grace ended"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn start_time_identity_checked() {
    let engine = Engine::<()>::new().unwrap();
    let child = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = child.id();
    let started = waitprocs_core::process_start_time(pid).unwrap();

    let wrong = engine
        .register(waitprocs_core::Registration::pid(pid, ()).expect_start_time(started + 1))
        .unwrap_err();
    assert_eq!(wrong.kind(), std::io::ErrorKind::NotFound);
    assert!(wrong.to_string().contains(&pid.to_string()), "{wrong}");
    assert!(engine.is_empty());

    let key = engine
        .register(waitprocs_core::Registration::pid(pid, ()).expect_start_time(started))
        .unwrap();
    engine.signal(key, libc::SIGKILL).unwrap();
    let outcome = engine
        .wait(WaitFor::All, Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(outcome.gone.len(), 1);
    assert_eq!(outcome.gone[0].status.signal(), Some(libc::SIGKILL));
    // The engine reaped the child by PID; its handle has nothing left to do.
    drop(child);
}

#[test]
fn far_deadline_means_no_deadline() {
    let engine = Engine::<()>::new().unwrap();
    engine
        .register_child(
            Command::new("sh").args(["-c", "exit 2"]).spawn().unwrap(),
            (),
        )
        .unwrap();
    let outcome = engine.wait(WaitFor::All, Some(Duration::MAX)).unwrap();
    assert_eq!(outcome.gone.len(), 1);
    assert_eq!(outcome.gone[0].status, ExitStatus::Exited(2));
    let outcome = engine.terminate_all(Duration::MAX).unwrap();
    assert!(outcome.gone.is_empty());
}

#[test]
fn concurrent_waits_keep_deadlines() {
    let engine = Arc::new(Engine::<()>::new().unwrap());
    let child = Command::new("sleep").arg("30").spawn().unwrap();
    let key = engine.register_pid(child.id(), ()).unwrap();

    let long = {
        let engine = Arc::clone(&engine);
        std::thread::spawn(move || engine.wait(WaitFor::All, Some(Duration::from_secs(3))))
    };
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let short = engine
        .wait(WaitFor::Any, Some(Duration::from_millis(300)))
        .unwrap();
    let took = started.elapsed();
    assert!(short.gone.is_empty());
    assert!(
        took >= Duration::from_millis(300),
        "returned early: {took:?}"
    );
    assert!(
        took < Duration::from_secs(2),
        "missed its deadline: {took:?}"
    );

    // The short wait is done; the long one still drives and receives the exit.
    engine.signal(key, libc::SIGKILL).unwrap();
    let outcome = long.join().unwrap().unwrap();
    assert_eq!(outcome.gone.len(), 1);
    // The engine reaped the child by PID; its handle has nothing left to do.
    drop(child);
}

#[test]
fn foreign_key_rejected() {
    let first = Engine::<()>::new().unwrap();
    let second = Engine::<()>::new().unwrap();
    let mut a = Command::new("sleep").arg("30").spawn().unwrap();
    let mut b = Command::new("sleep").arg("30").spawn().unwrap();
    let key_a = first.register_pid(a.id(), ()).unwrap();
    let _key_b = second.register_pid(b.id(), ()).unwrap();

    let error = second.deregister(key_a).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
    assert_eq!(second.len(), 1, "the other engine's process was removed");
    let error = second.signal(key_a, libc::SIGKILL).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::NotFound);

    for child in [&mut a, &mut b] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

#[test]
fn engine_dropped_in_callback() {
    let slot: Arc<std::sync::Mutex<Option<Arc<Engine<()>>>>> = Arc::default();
    let holder = Arc::clone(&slot);
    let engine = Arc::new(
        Engine::<()>::builder()
            .threads(true)
            .on_exit(move |_| {
                // Drops the last reference on the dispatch thread.
                holder.lock().unwrap().take();
            })
            .build()
            .unwrap(),
    );
    let events = engine.events();
    // The slot must hold the engine before the child can exit.
    *slot.lock().unwrap() = Some(Arc::clone(&engine));
    // The child outlives the test's own reference, so the callback holds
    // the last one.
    engine
        .register_child(Command::new("sleep").arg("0.3").spawn().unwrap(), ())
        .unwrap();
    drop(engine);

    // The engine is gone after the callback, so its channel disconnects
    // once the event has been read; nothing panicked on the way.
    let event = events.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(event.status.success());
    let after = events.recv_timeout(Duration::from_secs(5));
    assert!(
        matches!(
            after,
            Err(waitprocs_core::channel::RecvTimeoutError::Disconnected)
        ),
        "{after:?}"
    );
}

#[test]
fn wait_in_threaded_callback_rejected() {
    let (result_tx, result_rx) = std::sync::mpsc::channel();
    let engine: Arc<Engine<()>> = Arc::new_cyclic(|weak: &std::sync::Weak<Engine<()>>| {
        let weak = weak.clone();
        Engine::<()>::builder()
            .threads(true)
            .on_exit(move |_| {
                if let Some(engine) = weak.upgrade() {
                    let kind = engine
                        .wait(WaitFor::All, Some(Duration::from_secs(1)))
                        .map(|_| ())
                        .map_err(|error| error.kind());
                    let _ = result_tx.send(kind);
                }
            })
            .build()
            .unwrap()
    });
    engine
        .register_child(Command::new("true").spawn().unwrap(), ())
        .unwrap();
    let result = result_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(result, Err(std::io::ErrorKind::Deadlock));
    let outcome = engine
        .wait(WaitFor::All, Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(outcome.gone.len(), 1);
}

#[test]
fn wait_in_caller_driven_callback_works() {
    let engine: Arc<Engine<u32>> = Arc::new_cyclic(|weak: &std::sync::Weak<Engine<u32>>| {
        let weak = weak.clone();
        Engine::<u32>::builder()
            .on_exit(move |exit| {
                if exit.data != 1 {
                    return;
                }
                // A follow-up process, waited for from inside the callback.
                let engine = weak.upgrade().unwrap();
                let child = Command::new("sh").args(["-c", "exit 4"]).spawn().unwrap();
                engine.register_child(child, 2).unwrap();
                let nested = engine
                    .wait(WaitFor::Any, Some(Duration::from_secs(5)))
                    .unwrap();
                assert!(!nested.gone.is_empty() || engine.is_empty());
            })
            .build()
            .unwrap()
    });
    engine
        .register_child(Command::new("true").spawn().unwrap(), 1)
        .unwrap();
    let outcome = engine
        .wait(WaitFor::All, Some(Duration::from_secs(10)))
        .unwrap();
    assert!(outcome.alive.is_empty());
    assert!(engine.take_callback_panic().is_none());
}

#[test]
fn next_due_covers_lane_timer() {
    let engine = Engine::<()>::builder()
        .force_fallback(true)
        .build()
        .unwrap();
    assert_eq!(engine.next_due(), None, "no timer without processes");
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let key = engine.register_pid(child.id(), ()).unwrap();
    let due = engine.next_due().expect("the lane has a timer");
    assert!(
        due <= Instant::now() + Duration::from_millis(200),
        "{due:?}"
    );
    engine.deregister(key).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
}
