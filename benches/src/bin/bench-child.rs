//! The processes the benchmarks wait for.
//!
//! `bench-child exit-after OFFSET_US` reads its standard input to end-of-file
//! (the gate), sleeps `OFFSET_US` microseconds, writes `PID EXIT_NS` to its
//! standard output, where `EXIT_NS` is `CLOCK_MONOTONIC` read just before the
//! exit, and exits with status 0.
//!
//! `bench-child hold N IDLE_MS SPREAD_MS HOLD_MS RECORDS` is the parent of the
//! non-child scenario. It spawns N `exit-after` children behind its own gate
//! (their stamps go to RECORDS), prints their PIDs and `ready`, and opens the
//! gate when it reads `go`. It reaps none of them until its standard input
//! closes or HOLD_MS have passed since the last planned exit.
// The harness measures Linux mechanisms and Linux peers; elsewhere it builds
// to an empty program so that the workspace still type-checks.
#![cfg_attr(not(target_os = "linux"), no_main)]
#![cfg(target_os = "linux")]

use std::io::{self, BufRead, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use waitprocs_benches::{child_command, monotonic_ns, sleep_until_ns, Gate, Plan, Records};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("exit-after") if args.len() == 2 => exit_after(&args[1]),
        Some("hold") if args.len() == 6 => hold(&args[1..]),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "usage: bench-child exit-after OFFSET_US | bench-child hold N IDLE_MS SPREAD_MS HOLD_MS RECORDS",
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench-child: {error}");
            ExitCode::FAILURE
        }
    }
}

fn number(text: &str) -> io::Result<u64> {
    text.parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid number {text:?}: expected a non-negative integer"),
        )
    })
}

fn exit_after(offset: &str) -> io::Result<()> {
    let offset_us = number(offset)?;
    // The gate: the waiter closes its end once every child is spawned.
    let mut sink = [0u8; 64];
    let mut stdin = io::stdin().lock();
    while stdin.read(&mut sink)? > 0 {}
    drop(stdin);

    sleep_until_ns(monotonic_ns() + offset_us * 1000);
    let line = format!("{} {}\n", std::process::id(), monotonic_ns());
    // One write(2) on an O_APPEND file, so that stamps of different children
    // never interleave.
    io::stdout().lock().write_all(line.as_bytes())?;
    std::process::exit(0)
}

fn hold(args: &[String]) -> io::Result<()> {
    let plan = Plan {
        n: number(&args[0])? as usize,
        idle_ms: number(&args[1])?,
        spread_ms: number(&args[2])?,
    };
    let hold_ms = number(&args[3])?;
    let records = Records::create(Path::new(&args[4]))?;
    let child_bin = std::env::current_exe()?;

    let gate = Gate::new()?;
    let mut children = Vec::with_capacity(plan.n);
    let mut stdout = io::stdout().lock();
    for index in 0..plan.n {
        let child = child_command(&child_bin, plan.offset_us(index), &gate, &records)?.spawn()?;
        writeln!(stdout, "{}", child.id())?;
        children.push(child);
    }
    writeln!(stdout, "ready")?;
    stdout.flush()?;
    drop(stdout);

    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    if line.trim() != "go" {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected \"go\" on standard input, got {line:?}"),
        ));
    }
    let opened = gate.open();

    // Keep the children as zombies until the waiter is done with them or the
    // hold time has passed, whichever comes first.
    let (closed, on_close) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = io::stdin().lock().read_to_end(&mut sink);
        let _ = closed.send(());
    });
    let release_at = opened + (plan.last_exit_ms() + hold_ms) * 1_000_000;
    let remaining = release_at.saturating_sub(monotonic_ns());
    let _ = on_close.recv_timeout(Duration::from_nanos(remaining));

    for mut child in children {
        child.wait()?;
    }
    Ok(())
}
