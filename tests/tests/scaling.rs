//! 500 and then 4,000 children with lifetimes spread over 0 to 2 s: every
//! exit is reported once, with its exact status. All children start their
//! lifetime together, when a pipe they read closes, so the exits overlap the
//! wait. The waiter's CPU time is printed for reference; the benchmarks hold
//! the speed targets.
#![cfg(target_os = "linux")]

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use waitprocs_core::{Engine, ExitStatus, WaitFor};
use waitprocs_tests::{sh, Processes};

/// Returns the CPU time this process has used, in clock ticks (user plus
/// system, fields 14 and 15 of `/proc/self/stat`).
fn own_cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn run_children(count: usize) {
    let mut processes = Processes::new();
    let engine = Engine::<usize>::builder().threads(true).build().unwrap();
    let mut expected = HashMap::new();
    let (start_reader, start_writer) = std::io::pipe().unwrap();
    for i in 0..count {
        // A fixed spread replaces random lifetimes, so runs repeat.
        let lifetime_ms = (i * 7919) % 2000;
        let code = i % 256;
        let script = format!(
            "sleep {}.{:03}; exit {code}",
            lifetime_ms / 1000,
            lifetime_ms % 1000
        );
        let child = processes.spawn(sh(&script).stdin(Stdio::null()));
        expected.insert(child.id(), ExitStatus::Exited(code as i32));
        engine.register_child(child, i).unwrap();
    }

    drop(start_reader);
    // End of file on the pipe starts every child's lifetime at once.
    drop(start_writer);
    let cpu_before = own_cpu_ticks();
    let outcome = engine
        .wait(WaitFor::All, Some(Duration::from_secs(60)))
        .unwrap();
    let cpu = own_cpu_ticks().saturating_sub(cpu_before);
    eprintln!("{count} children: the waiter used {cpu} clock ticks of CPU while they exited");

    assert!(
        outcome.alive.is_empty(),
        "{} not reported",
        outcome.alive.len()
    );
    assert_eq!(outcome.gone.len(), count);
    for exit in &outcome.gone {
        let status = expected.remove(&exit.pid);
        assert_eq!(
            status,
            Some(exit.status),
            "pid {} reported twice or wrong",
            exit.pid
        );
    }
    assert!(expected.is_empty());
}

#[test]
fn scaling_500_children() {
    run_children(500);
}

#[test]
fn scaling_4000_children() {
    run_children(4000);
}
