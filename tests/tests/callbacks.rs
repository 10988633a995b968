//! A panicking exit callback costs neither the other callbacks nor any event.
#![cfg(target_os = "linux")]

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use waitprocs_core::{panic_message, Engine, ExitStatus, Registration, WaitFor};
use waitprocs_tests::{Processes, PATIENCE};

const PANICKING: usize = 3;

#[test]
fn registration_callback_panic_caught() {
    let mut processes = Processes::new();
    let engine = Engine::<usize>::builder().build().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    for index in 0..10 {
        let child = processes.spawn(&mut Command::new("true"));
        let counter = Arc::clone(&calls);
        let registration = Registration::child(child, index).on_exit(move |event| {
            if event.data == PANICKING {
                panic!("callback of child {PANICKING} failed");
            }
            counter.fetch_add(1, Ordering::SeqCst);
        });
        engine.register(registration).unwrap();
    }

    let outcome = engine.wait(WaitFor::All, Some(PATIENCE)).unwrap();

    assert_eq!(outcome.gone.len(), 10);
    assert!(outcome
        .gone
        .iter()
        .all(|event| event.status == ExitStatus::Exited(0)));
    assert_eq!(calls.load(Ordering::SeqCst), 9);
    let payload = engine.take_callback_panic().expect("the panic is kept");
    assert_eq!(panic_message(&*payload), "callback of child 3 failed");
    assert!(
        engine.take_callback_panic().is_none(),
        "a panic is returned once"
    );
    assert_eq!(processes.unreaped_children(), []);
}

#[test]
fn builder_callback_panic_caught() {
    let mut processes = Processes::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let engine = Engine::<usize>::builder()
        .threads(true)
        .shards(2)
        .on_exit(move |event| {
            if event.data == PANICKING {
                panic!("callback of child {PANICKING} failed");
            }
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    for index in 0..10 {
        let child = processes.spawn(&mut Command::new("true"));
        engine.register_child(child, index).unwrap();
    }

    let outcome = engine.wait(WaitFor::All, Some(PATIENCE)).unwrap();

    assert_eq!(outcome.gone.len(), 10);
    assert!(outcome
        .gone
        .iter()
        .all(|event| event.status == ExitStatus::Exited(0)));
    assert_eq!(calls.load(Ordering::SeqCst), 9);
    let payload = engine.take_callback_panic().expect("the panic is kept");
    assert_eq!(panic_message(&*payload), "callback of child 3 failed");
    assert!(
        engine.take_callback_panic().is_none(),
        "a panic is returned once"
    );
    assert_eq!(processes.unreaped_children(), []);
}
