//! `waitprocs wait` on 5,000 processes at once: every PID is reported exactly
//! once. It has a file of its own because it starts thousands of processes,
//! which would slow the other tests down if they ran beside it.

#![cfg(unix)]

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_waitprocs");
const PROCESSES: usize = 5000;
const BATCH: usize = 500;
const DEADLINE: Duration = Duration::from_secs(120);

/// Kills and reaps every child still held, so that a failing test leaves no
/// process behind.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn wait_reports_each_pid_once() {
    let mut children = Children(Vec::with_capacity(PROCESSES));
    // Batches of short sleeps, so that the first ones have exited (and are
    // zombies of this test) while the last ones are still being started.
    for _ in 0..PROCESSES / BATCH {
        for _ in 0..BATCH {
            let child = Command::new("sleep")
                .arg("1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start sleep");
            children.0.push(child);
        }
    }
    let pids: Vec<String> = children.0.iter().map(|c| c.id().to_string()).collect();
    // The first hundred PIDs again: each must still be reported once.
    let mut args = vec!["wait".to_owned(), "--json".to_owned()];
    args.extend(pids.iter().cloned());
    args.extend(pids[..100].iter().cloned());

    let stdout_path = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("many-pids-{}.json", std::process::id()));
    let mut tool = Command::new(BIN)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_path).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start waitprocs");
    let end = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = tool.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= end {
            let _ = tool.kill();
            let _ = tool.wait();
            panic!("waitprocs still running after {DEADLINE:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stdout = fs::read_to_string(&stdout_path).unwrap();
    let _ = fs::remove_file(&stdout_path);
    assert_eq!(status.code(), Some(0), "{status:?}");

    let mut seen: HashMap<String, usize> = HashMap::new();
    for line in stdout.lines() {
        let record: Value = serde_json::from_str(line).expect("a JSON line");
        assert_ne!(record["status"], "alive", "{record}");
        assert_eq!(record["not_found"], false, "{record}");
        assert_eq!(record["was_child"], false, "{record}");
        *seen.entry(record["pid"].to_string()).or_default() += 1;
    }
    assert_eq!(seen.len(), PROCESSES, "distinct PIDs reported");
    for pid in &pids {
        assert_eq!(seen.get(pid), Some(&1), "PID {pid}");
    }

    for child in &mut children.0 {
        assert!(child.wait().unwrap().success());
    }
    children.0.clear();
}
