//! Runs the built `waitprocs` binary on real processes and checks its reports
//! and exit statuses.

#![cfg(unix)]

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_waitprocs");

/// Maximum time any process started by a test may take to end.
const DEADLINE: Duration = Duration::from_secs(30);

/// A PID that no process can have: Linux caps PIDs at 2^22 (`PID_MAX_LIMIT`).
const ABSENT_PID: &str = "2147483647";

/// What a run of the tool left behind.
#[derive(Debug)]
struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Output {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Returns the lines of standard output that are JSON objects, skipping
    /// whatever the jobs printed.
    fn records(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(Value::is_object)
            .collect()
    }

    fn record(&self) -> Value {
        let mut records = self.records();
        assert_eq!(records.len(), 1, "stdout: {}", self.stdout);
        records.remove(0)
    }
}

/// A run of the tool whose standard output and error go to files, so that a
/// job still holding them cannot block the test.
struct Tool {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

fn scratch_path(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("waitprocs-cli-{}-{n}-{name}", std::process::id()))
}

impl Tool {
    fn start(args: &[&str], stdin: Option<&str>) -> Self {
        Self::start_command(Command::new(BIN).args(args), stdin)
    }

    fn start_command(command: &mut Command, stdin: Option<&str>) -> Self {
        let stdout = scratch_path("stdout");
        let stderr = scratch_path("stderr");
        command
            .stdout(File::create(&stdout).unwrap())
            .stderr(File::create(&stderr).unwrap())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let mut child = command.spawn().expect("start waitprocs");
        if let Some(text) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            // The tool may reject its arguments without reading, closing the pipe.
            let _ = pipe.write_all(text.as_bytes());
        }
        Self {
            child,
            stdout,
            stderr,
        }
    }

    fn stdout_so_far(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    fn finish(mut self) -> Output {
        let status = wait_with_deadline(&mut self.child, DEADLINE);
        let output = Output {
            status,
            stdout: fs::read_to_string(&self.stdout).unwrap(),
            stderr: fs::read_to_string(&self.stderr).unwrap(),
        };
        let _ = fs::remove_file(&self.stdout);
        let _ = fs::remove_file(&self.stderr);
        output
    }
}

fn tool(args: &[&str]) -> Output {
    Tool::start(args, None).finish()
}

fn tool_with_stdin(args: &[&str], stdin: &str) -> Output {
    Tool::start(args, Some(stdin)).finish()
}

/// Waits for `child`, killing it and failing the test after `limit`.
fn wait_with_deadline(child: &mut Child, limit: Duration) -> ExitStatus {
    let end = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pid {} still running after {limit:?}", child.id());
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// A process the test starts and passes to `waitprocs wait` by PID. It is
/// killed and reaped on drop, so a failing test leaves nothing behind.
struct Target(Option<Child>);

impl Target {
    fn sleep(seconds: &str) -> Self {
        Self(Some(Command::new("sleep").arg(seconds).spawn().unwrap()))
    }

    fn pid(&self) -> String {
        self.0.as_ref().unwrap().id().to_string()
    }

    /// Reaps the process, which must end by itself.
    fn reap(mut self) -> ExitStatus {
        wait_with_deadline(self.0.as_mut().unwrap(), DEADLINE)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
                wait_with_deadline(child, DEADLINE);
            }
        }
    }
}

/// Returns the PIDs of processes in group `pgid` that are still running.
fn running_in_group(pgid: u64) -> Vec<u64> {
    let mut members = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u64>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The fields after the command name: state, ppid, pgrp.
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let zombie = matches!(fields.first(), Some(&"Z") | Some(&"X"));
        if !zombie && fields.get(2).and_then(|g| g.parse().ok()) == Some(pgid) {
            members.push(pid);
        }
    }
    members
}

fn assert_group_ends(pgid: u64) {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let members = running_in_group(pgid);
        if members.is_empty() {
            return;
        }
        assert!(
            Instant::now() < end,
            "processes of group {pgid} still running: {members:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

fn jobs_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/jobs.txt")
}

fn number(value: &Value, field: &str) -> f64 {
    value[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} is not a number in {value}"))
}

// ---- wait --------------------------------------------------------------

#[test]
fn wait_non_child_human() {
    // This test reaps the target only after the tool ends, so the status
    // grace passes with the status still held by its parent.
    let target = Target::sleep("0.3");
    let pid = target.pid();
    let out = tool(&["wait", "--timeout", "20", &pid]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let line = out.stdout.trim_end();
    let unknown = format!("pid {pid}: exited (status unknown: not a child of waitprocs) after ");
    assert!(line.starts_with(&unknown), "{line}");
    assert!(line.ends_with('s'), "{line}");
    assert_eq!(out.stdout.lines().count(), 1);
    assert!(target.reap().success());
}

#[test]
fn wait_non_child_json() {
    let target = Target::sleep("0.3");
    let pid = target.pid();
    let out = tool(&["wait", "--json", "--timeout", "20", &pid]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let record = out.record();
    assert_eq!(record["pid"].to_string(), pid);
    assert_eq!(record["status"], "unknown", "{record}");
    assert!(record["code"].is_null(), "{record}");
    assert!(record["signal"].is_null(), "{record}");
    assert!(record["signal_name"].is_null(), "{record}");
    assert!(record["core_dumped"].is_null(), "{record}");
    assert_eq!(record["was_child"], false, "{record}");
    assert_eq!(record["not_found"], false, "{record}");
    let elapsed = number(&record, "elapsed_ms");
    assert!((0.0..20_000.0).contains(&elapsed), "{record}");
    assert!(target.reap().success());
}

#[test]
fn wait_timeout_exits_124() {
    let target = Target::sleep("30");
    let pid = target.pid();
    let out = tool(&["wait", "--json", "--timeout", "0.2", &pid]);
    assert_eq!(out.code(), Some(124), "{out:?}");
    let record = out.record();
    assert_eq!(record["pid"].to_string(), pid);
    assert_eq!(record["status"], "alive");
    assert!(record["code"].is_null(), "{record}");
    assert!(record["was_child"].is_null(), "{record}");
    let elapsed = number(&record, "elapsed_ms");
    assert!(elapsed >= 200.0, "stopped before the timeout: {record}");
    assert!(elapsed < 10_000.0, "{record}");
}

#[test]
fn wait_timeout_human_alive() {
    let target = Target::sleep("30");
    let pid = target.pid();
    let out = tool(&["wait", "--timeout", "100ms", &pid]);
    assert_eq!(out.code(), Some(124), "{out:?}");
    let expected = format!("pid {pid}: alive after ");
    assert!(out.stdout.starts_with(&expected), "{}", out.stdout);
}

#[test]
fn wait_zero_timeout_checks_once() {
    let target = Target::sleep("30");
    let out = tool(&["wait", "--timeout", "0", &target.pid()]);
    assert_eq!(out.code(), Some(124), "{out:?}");
}

#[test]
fn wait_any_stops_at_first() {
    let quick = Target::sleep("0.1");
    let slow = Target::sleep("30");
    let out = tool(&["wait", "--any", "--json", &slow.pid(), &quick.pid()]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let records = out.records();
    assert_eq!(records.len(), 2, "{}", out.stdout);
    assert_eq!(records[0]["pid"].to_string(), quick.pid());
    assert_ne!(records[0]["status"], "alive");
    assert_eq!(records[1]["pid"].to_string(), slow.pid());
    assert_eq!(records[1]["status"], "alive");
    assert!(quick.reap().success());
}

#[test]
fn wait_count_stops_after_n() {
    let first = Target::sleep("0.1");
    let second = Target::sleep("0.2");
    let slow = Target::sleep("30");
    let args = [
        "wait",
        "--count",
        "2",
        "--json",
        &slow.pid(),
        &first.pid(),
        &second.pid(),
    ];
    let out = tool(&args);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let records = out.records();
    assert_eq!(records.len(), 3, "{}", out.stdout);
    let exited: BTreeSet<String> = records[..2].iter().map(|r| r["pid"].to_string()).collect();
    assert_eq!(exited, BTreeSet::from([first.pid(), second.pid()]));
    assert_ne!(records[0]["status"], "alive");
    assert_ne!(records[1]["status"], "alive");
    assert_eq!(records[2]["pid"].to_string(), slow.pid());
    assert_eq!(records[2]["status"], "alive");
    assert!(first.reap().success());
    assert!(second.reap().success());
}

#[test]
fn wait_all_in_detection_order() {
    let later = Target::sleep("0.4");
    let sooner = Target::sleep("0.1");
    let out = tool(&["wait", "--json", &later.pid(), &sooner.pid()]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let records = out.records();
    assert_eq!(records.len(), 2, "{}", out.stdout);
    assert_eq!(records[0]["pid"].to_string(), sooner.pid());
    assert_eq!(records[1]["pid"].to_string(), later.pid());
    assert!(number(&records[0], "elapsed_ms") <= number(&records[1], "elapsed_ms"));
    assert!(later.reap().success());
    assert!(sooner.reap().success());
}

#[test]
fn wait_count_above_pids_rejected() {
    let own = std::process::id().to_string();
    let out = tool(&["wait", "--count", "2", &own, &own]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("--count 2"), "{}", out.stderr);
    assert!(out.stderr.contains("1 distinct PIDs"), "{}", out.stderr);
}

#[test]
fn wait_bad_count_rejected() {
    let own = std::process::id().to_string();
    for args in [
        vec!["wait", "--count", "0", &own],
        vec!["wait", "--count", "-1", &own],
        vec!["wait", "--count", "two", &own],
        vec!["wait", "--any", "--count", "1", &own],
        vec!["wait"],
    ] {
        let out = tool(&args);
        assert_eq!(out.code(), Some(2), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
    }
}

#[test]
fn wait_duplicate_pids_once() {
    let target = Target::sleep("0.1");
    let pid = target.pid();
    let out = tool(&["wait", "--json", &pid, &pid, &pid]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.records().len(), 1, "{}", out.stdout);
    assert!(target.reap().success());
}

#[test]
fn wait_missing_pid_warns() {
    let out = tool(&["wait", "--json", ABSENT_PID]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("PID 2147483647: no such process; it may have exited already"),
        "{}",
        out.stderr
    );
    let record = out.record();
    assert_eq!(record["pid"], 2_147_483_647_u64);
    assert_eq!(record["status"], "unknown");
    assert_eq!(record["not_found"], true);
    assert!(record["code"].is_null(), "{record}");
}

#[test]
fn wait_missing_pid_human() {
    let target = Target::sleep("0.1");
    let out = tool(&["wait", ABSENT_PID, &target.pid()]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    assert_eq!(
        lines[0],
        "pid 2147483647: gone (status unknown: no such process)"
    );
    assert!(lines[1].starts_with(&format!("pid {}: exited", target.pid())));
    assert!(target.reap().success());
}

#[test]
fn wait_bad_pids_exit_2() {
    let cases = [
        ("abc", "not a whole number"),
        ("12abc", "not a whole number"),
        ("1.5", "not a whole number"),
        ("+5", "not a whole number"),
        ("0x10", "not a whole number"),
        ("", "empty"),
        ("0", "0 is not a process"),
        ("-5", "cannot be negative"),
        ("-1", "cannot be negative"),
        ("2147483648", "out of range"),
        ("4294967295", "out of range"),
        ("4294967296", "out of range"),
        ("4294967297", "out of range"),
        ("18446744073709551615", "out of range"),
        ("99999999999999999999999", "out of range"),
    ];
    for (value, reason) in cases {
        let out = tool(&["wait", "--timeout", "5", value]);
        assert_eq!(out.code(), Some(2), "{value}: {out:?}");
        assert!(out.stdout.is_empty(), "{value}: {out:?}");
        assert!(
            out.stderr.contains(&format!("'{value}'")),
            "{value}: {}",
            out.stderr
        );
        assert!(out.stderr.contains(reason), "{value}: {}", out.stderr);
        assert!(
            out.stderr.contains("1 to 2147483647"),
            "{value}: {}",
            out.stderr
        );
    }
}

#[test]
fn wait_own_pid_exit_2() {
    // exec keeps the PID of sh, which the shell passes as $$.
    let mut command = Command::new("sh");
    command.args(["-c", r#"exec "$0" wait --timeout 5 "$$""#, BIN]);
    let out = Tool::start_command(&mut command, None).finish();
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("itself"), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn wait_thread_id_exit_2() {
    let (tid_sender, tid_receiver) = mpsc::channel();
    let (stop_sender, stop_receiver) = mpsc::channel::<()>();
    let thread = thread::spawn(move || {
        // The link reads "PID/task/TID".
        let link = fs::read_link("/proc/thread-self").unwrap();
        let tid = link.file_name().unwrap().to_string_lossy().into_owned();
        tid_sender.send(tid).unwrap();
        let _ = stop_receiver.recv_timeout(DEADLINE);
    });
    let tid = tid_receiver.recv_timeout(DEADLINE).unwrap();
    assert_ne!(tid, std::process::id().to_string());

    let out = tool(&["wait", "--timeout", "5", &tid]);
    stop_sender.send(()).unwrap();
    thread.join().unwrap();
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains(&tid), "{}", out.stderr);
    assert!(out.stderr.contains("thread"), "{}", out.stderr);
}

// ---- durations ---------------------------------------------------------

#[test]
fn bad_durations_exit_2() {
    let own = std::process::id().to_string();
    let values = [
        "", "-1", "-0.5", "-1s", "nan", "NaN", "inf", "-inf", "infinity", "5x", "1d", "2 s",
        "1.2.3", "1e3", "s", ".", "0x10",
    ];
    for value in values {
        for subcommand in ["wait", "run"] {
            let option = format!("--timeout={value}");
            let args = match subcommand {
                "wait" => vec!["wait", option.as_str(), own.as_str()],
                _ => vec!["run", option.as_str(), "--", "true"],
            };
            let out = tool(&args);
            assert_eq!(out.code(), Some(2), "{args:?}: {out:?}");
            assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
            assert!(
                out.stderr.contains(&format!("'{value}'")),
                "{args:?}: {}",
                out.stderr
            );
            assert!(
                out.stderr.contains("500ms, 2s, 1m, 1h"),
                "{args:?}: {}",
                out.stderr
            );
        }
    }
}

#[test]
fn negative_duration_separate_argument() {
    let out = tool(&["run", "--timeout", "-1", "--", "true"]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("'-1'"), "{}", out.stderr);
    assert!(out.stderr.contains("cannot be negative"), "{}", out.stderr);
}

#[test]
fn kill_after_rejects_bad_duration() {
    let out = tool(&[
        "run",
        "--timeout",
        "1",
        "--kill-after",
        "soon",
        "--",
        "true",
    ]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("'soon'"), "{}", out.stderr);
}

#[test]
fn durations_accept_units() {
    for value in ["0.5", "500ms", "2s", "1m", "1h", "3"] {
        let out = tool(&["run", "--timeout", value, "--", "true"]);
        assert_eq!(out.code(), Some(0), "{value}: {out:?}");
    }
}

// ---- run ---------------------------------------------------------------

#[test]
fn run_success_exits_0() {
    let out = tool(&["run", "--", "true"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let line = out.stdout.trim_end();
    assert!(line.starts_with("job 1 [pid "), "{line}");
    assert!(
        line.contains("] `true`: exited with code 0 after "),
        "{line}"
    );
    assert!(
        out.stderr.contains("1 job: 1 succeeded, 0 failed"),
        "{}",
        out.stderr
    );
}

#[test]
fn run_failure_json_fields() {
    let out = tool(&["run", "--json", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    let record = out.record();
    assert_eq!(record["job"], 1);
    assert!(record["line"].is_null(), "{record}");
    assert_eq!(record["command"], "sh -c 'exit 3'");
    assert!(
        record["pid"].as_u64().is_some_and(|pid| pid > 0),
        "{record}"
    );
    assert_eq!(record["status"], "exited");
    assert_eq!(record["code"], 3);
    assert!(record["signal"].is_null(), "{record}");
    assert!(record["signal_name"].is_null(), "{record}");
    assert!(record["core_dumped"].is_null(), "{record}");
    assert_eq!(record["timed_out"], false);
    assert_eq!(record["sigkill_sent"], false);
    assert!(record["error"].is_null(), "{record}");
    assert!(number(&record, "elapsed_ms") >= 0.0, "{record}");
    assert!(number(&record, "start_ms") >= 0.0, "{record}");
    assert!(number(&record, "user_ms") >= 0.0, "{record}");
    assert!(number(&record, "system_ms") >= 0.0, "{record}");
    assert!(number(&record, "max_rss_kib") > 0.0, "{record}");
}

#[test]
fn run_signaled_json_fields() {
    let out = tool(&["run", "--json", "--", "sh", "-c", "kill -KILL $$"]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    let record = out.record();
    assert_eq!(record["status"], "signaled");
    assert_eq!(record["signal"], 9);
    assert_eq!(record["signal_name"], "SIGKILL");
    assert_eq!(record["core_dumped"], false);
    assert!(record["code"].is_null(), "{record}");
}

#[test]
fn run_direct_uses_no_shell() {
    let out = tool(&["run", "--json", "--", "exit 3"]);
    assert_eq!(out.code(), Some(127), "{out:?}");
    let record = out.record();
    assert_eq!(record["status"], "failed_to_start");
    assert_eq!(record["command"], "'exit 3'");
    assert!(record["pid"].is_null(), "{record}");
    assert!(record["elapsed_ms"].is_null(), "{record}");
    assert!(record["user_ms"].is_null(), "{record}");
    let error = record["error"].as_str().unwrap();
    assert!(error.contains("No such file or directory"), "{error}");
}

#[test]
fn run_spawn_failure_human() {
    let out = tool(&["run", "--", "/nonexistent/program", "arg"]);
    assert_eq!(out.code(), Some(127), "{out:?}");
    assert_eq!(
        out.stdout.trim_end(),
        "job 1 `/nonexistent/program arg`: failed to start: No such file or directory (os error 2)"
    );
    assert!(out.stderr.contains("1 failed to start"), "{}", out.stderr);
}

#[test]
fn run_spawn_failures_do_not_stop() {
    // Without a PATH that contains sh, no job can start, and each is reported.
    let mut command = Command::new(BIN);
    command
        .args(["run", "--json", "--file", "-"])
        .env("PATH", "/nonexistent");
    let out = Tool::start_command(&mut command, Some("true\nfalse\nexit 3\n")).finish();
    assert_eq!(out.code(), Some(127), "{out:?}");
    let records = out.records();
    assert_eq!(records.len(), 3, "{}", out.stdout);
    for (index, record) in records.iter().enumerate() {
        assert_eq!(record["job"], index + 1);
        assert_eq!(record["status"], "failed_to_start");
        assert!(
            record["error"].as_str().unwrap().contains("os error 2"),
            "{record}"
        );
    }
}

#[test]
fn run_timeout_sends_sigterm() {
    let out = tool(&["run", "--json", "--timeout", "0.3", "--", "sleep", "30"]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    let record = out.record();
    assert_eq!(record["status"], "signaled");
    assert_eq!(record["signal_name"], "SIGTERM");
    assert_eq!(record["timed_out"], true);
    assert_eq!(record["sigkill_sent"], false);
    let elapsed = number(&record, "elapsed_ms");
    assert!(elapsed >= 300.0, "ended before the timeout: {record}");
    assert!(elapsed < 5_000.0, "{record}");
    assert!(out.stderr.contains("(1 timed out)"), "{}", out.stderr);
}

#[test]
fn run_timeout_human_line() {
    let out = tool(&["run", "--timeout", "0.1", "--", "sleep", "30"]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    let line = out.stdout.trim_end();
    assert!(
        line.contains("`sleep 30`: timed out (SIGTERM after 0.1"),
        "{line}"
    );
    assert!(
        line.contains("); killed by signal 15 (SIGTERM) after "),
        "{line}"
    );
}

#[test]
fn run_timeout_escalates_to_sigkill() {
    let out = tool_with_stdin(
        &[
            "run",
            "--json",
            "--timeout",
            "0.2",
            "--kill-after",
            "0.3",
            "--file",
            "-",
        ],
        "trap '' TERM; sleep 30\n",
    );
    assert_eq!(out.code(), Some(1), "{out:?}");
    let record = out.record();
    assert_eq!(record["status"], "signaled");
    assert_eq!(record["signal_name"], "SIGKILL");
    assert_eq!(record["timed_out"], true);
    assert_eq!(record["sigkill_sent"], true);
    let elapsed = number(&record, "elapsed_ms");
    assert!(elapsed >= 500.0, "killed before the grace ended: {record}");
    assert!(elapsed < 10_000.0, "{record}");
    // The shell's own `sleep 30` is in the job's group and got SIGKILL too.
    assert_group_ends(record["pid"].as_u64().unwrap());
}

#[test]
fn run_timeout_spares_quick_jobs() {
    let out = tool(&["run", "--json", "--timeout", "5", "--", "sleep", "0.1"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let record = out.record();
    assert_eq!(record["status"], "exited");
    assert_eq!(record["timed_out"], false);
}

#[test]
fn run_stdin_job_list() {
    let out = tool_with_stdin(
        &["run", "--json", "--file", "-"],
        "# comment\n\ntrue\n  # indented comment\nexit 4\n",
    );
    assert_eq!(out.code(), Some(1), "{out:?}");
    let mut records = out.records();
    records.sort_by_key(|record| record["job"].as_u64());
    assert_eq!(records.len(), 2, "{}", out.stdout);
    assert_eq!(records[0]["line"], 3);
    assert_eq!(records[0]["command"], "true");
    assert_eq!(records[0]["code"], 0);
    assert_eq!(records[1]["line"], 5);
    assert_eq!(records[1]["command"], "exit 4");
    assert_eq!(records[1]["code"], 4);
}

#[test]
fn run_all_succeed_exits_0() {
    let out = tool_with_stdin(&["run", "--file", "-"], "true\nexit 0\nsleep 0.1\n");
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout.lines().count(), 3, "{}", out.stdout);
    assert!(
        out.stderr.contains("3 jobs: 3 succeeded, 0 failed"),
        "{}",
        out.stderr
    );
}

#[test]
fn run_empty_file_exits_0() {
    let out = tool_with_stdin(&["run", "--file", "-"], "# nothing\n\n");
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(out.stderr.contains("no jobs"), "{}", out.stderr);
}

#[test]
fn run_missing_file_exits_2() {
    let out = tool(&["run", "--file", "/nonexistent/jobs.txt"]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(
        out.stderr.contains("'/nonexistent/jobs.txt'"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("No such file or directory"),
        "{}",
        out.stderr
    );
}

#[test]
fn run_jobs_limit_respected() {
    let out = tool_with_stdin(
        &["run", "--jobs", "2", "--json", "--file", "-"],
        &"sleep 0.2\n".repeat(5),
    );
    assert_eq!(out.code(), Some(0), "{out:?}");
    let spans: Vec<(f64, f64)> = out
        .records()
        .iter()
        .map(|r| {
            let start = number(r, "start_ms");
            (start, start + number(r, "elapsed_ms"))
        })
        .collect();
    assert_eq!(spans.len(), 5);
    // A job starts only after the exit of the one it replaces is detected.
    let max_concurrent = spans
        .iter()
        .map(|&(start, _)| {
            spans
                .iter()
                .filter(|&&(s, e)| s <= start && start < e)
                .count()
        })
        .max()
        .unwrap();
    assert_eq!(max_concurrent, 2, "{spans:?}");
}

#[test]
fn run_bad_arguments_exit_2() {
    let cases: [&[&str]; 14] = [
        &["run"],
        &["run", "--"],
        &["run", "--args-from", "-"],
        &["run", "--null", "--", "true"],
        &["run", "--retries", "-1", "--", "true"],
        &["run", "--retries", "many", "--", "true"],
        &["run", "--jobs", "4294967296", "--", "true"],
        &["run", "--file", "-", "--", "true"],
        &["run", "--kill-after", "1", "--", "true"],
        &["run", "--jobs", "0", "--", "true"],
        &["run", "--jobs", "-1", "--", "true"],
        &["run", "--jobs", "many", "--", "true"],
        &["run", "--no-such-option", "--", "true"],
        &["frobnicate"],
    ];
    for args in cases {
        let out = tool(args);
        assert_eq!(out.code(), Some(2), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
    }
}

#[test]
fn run_closed_stdout_ends_quietly() {
    let stderr = scratch_path("stderr");
    let mut child = Command::new(BIN)
        .args(["run", "--jobs", "4", "--file", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all("true\n".repeat(20).as_bytes()).unwrap();
    drop(stdin);
    let status = wait_with_deadline(&mut child, DEADLINE);
    let messages = fs::read_to_string(&stderr).unwrap();
    let _ = fs::remove_file(&stderr);
    assert_eq!(status.code(), Some(1), "{messages}");
    assert!(!messages.contains("panicked"), "{messages}");
    assert!(!messages.contains("Broken pipe"), "{messages}");
}

#[test]
fn wait_closed_stdout_ends_quietly() {
    let stderr = scratch_path("stderr");
    let mut child = Command::new(BIN)
        .args(["wait", ABSENT_PID])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let status = wait_with_deadline(&mut child, DEADLINE);
    let messages = fs::read_to_string(&stderr).unwrap();
    let _ = fs::remove_file(&stderr);
    assert_eq!(status.code(), Some(1), "{messages}");
    assert!(!messages.contains("panicked"), "{messages}");
}

#[test]
fn run_forwards_sigterm_to_jobs() {
    let tool = Tool::start(
        &["run", "--json", "--jobs", "2", "--file", "-"],
        Some("echo ready; sleep 30\nsleep 30\nsleep 30\n"),
    );
    let end = Instant::now() + DEADLINE;
    while !tool.stdout_so_far().contains("ready") {
        assert!(Instant::now() < end, "the first job never started");
        thread::sleep(Duration::from_millis(10));
    }
    let sent = Command::new("kill")
        .args(["-TERM", &tool.child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());

    let out = tool.finish();
    assert_eq!(out.status.signal(), Some(15), "{out:?}");
    assert!(out.stderr.contains("received SIGTERM"), "{}", out.stderr);
    assert!(out.stderr.contains("1 not started"), "{}", out.stderr);
    let records = out.records();
    assert_eq!(records.len(), 2, "{}", out.stdout);
    for record in &records {
        assert_eq!(record["signal_name"], "SIGTERM", "{record}");
        assert_eq!(record["timed_out"], false, "{record}");
        assert_group_ends(record["pid"].as_u64().unwrap());
    }
}

// ---- the example job file ----------------------------------------------

/// How a job of examples/jobs.txt must end, from its `# expect:` comment.
#[derive(Debug, Clone, PartialEq)]
enum Expected {
    Exit(i64),
    Signal(String),
}

/// Returns each job of the example file by line number, with its command
/// and expected end.
fn expected_jobs() -> Vec<(usize, String, Expected)> {
    let text = fs::read_to_string(jobs_file()).unwrap();
    let mut current = None;
    let mut jobs = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(rule) = line.strip_prefix("# expect:") {
            current = Some(match rule.trim().split_once(' ') {
                Some(("exit", code)) => Expected::Exit(code.parse().unwrap()),
                Some(("signal", name)) => Expected::Signal(name.to_owned()),
                _ => panic!("line {}: bad expectation {rule:?}", index + 1),
            });
        } else if !line.is_empty() && !line.starts_with('#') {
            let expected = current.clone().expect("a job before any `# expect:`");
            jobs.push((index + 1, line.to_owned(), expected));
        }
    }
    jobs
}

#[test]
fn example_file_has_fifty_jobs() {
    let jobs = expected_jobs();
    assert!(jobs.len() >= 50, "{} jobs", jobs.len());
    let codes: BTreeSet<i64> = jobs
        .iter()
        .filter_map(|(_, _, expected)| match expected {
            Expected::Exit(code) => Some(*code),
            Expected::Signal(_) => None,
        })
        .collect();
    for code in [0, 1, 2, 126, 127, 255] {
        assert!(codes.contains(&code), "no job exits with {code}");
    }
}

#[test]
fn example_file_json_matches() {
    let path = jobs_file();
    let out = tool(&[
        "run",
        "--jobs",
        "8",
        "--json",
        "--file",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    let expected = expected_jobs();
    let records = out.records();
    assert_eq!(records.len(), expected.len(), "{}", out.stdout);

    let by_line: HashMap<u64, &Value> = records
        .iter()
        .map(|record| (record["line"].as_u64().unwrap(), record))
        .collect();
    assert_eq!(by_line.len(), expected.len(), "a line was reported twice");
    for (number, (line, command, expected)) in expected.iter().enumerate() {
        let record = by_line[&(*line as u64)];
        assert_eq!(record["job"], number + 1, "{record}");
        assert_eq!(record["command"], command.as_str(), "{record}");
        assert_eq!(record["timed_out"], false, "{record}");
        match expected {
            Expected::Exit(code) => {
                assert_eq!(record["status"], "exited", "{record}");
                assert_eq!(record["code"], *code, "{record}");
            }
            Expected::Signal(name) => {
                assert_eq!(record["status"], "signaled", "{record}");
                assert_eq!(record["signal_name"], name.as_str(), "{record}");
                assert_eq!(record["core_dumped"], false, "{record}");
            }
        }
    }
    let succeeded = expected
        .iter()
        .filter(|(_, _, e)| *e == Expected::Exit(0))
        .count();
    let summary = format!(
        "{} jobs: {succeeded} succeeded, {} failed",
        expected.len(),
        expected.len() - succeeded
    );
    assert!(out.stderr.contains(&summary), "{}", out.stderr);
}

#[test]
fn example_file_human_matches() {
    let path = jobs_file();
    let out = tool(&["run", "--jobs", "8", "--file", path.to_str().unwrap()]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    let reports: HashMap<usize, &str> = out
        .stdout
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("job ")?;
            let (number, _) = rest.split_once(' ')?;
            Some((number.parse().ok()?, line))
        })
        .collect();
    let expected = expected_jobs();
    assert_eq!(reports.len(), expected.len(), "{}", out.stdout);
    for (index, (_, command, expected)) in expected.iter().enumerate() {
        let line = reports[&(index + 1)];
        assert!(line.contains(&format!("] `{command}`: ")), "{line}");
        let outcome = match expected {
            Expected::Exit(code) => format!("`: exited with code {code} after "),
            Expected::Signal(name) => format!(" ({name}) after "),
        };
        assert!(line.contains(&outcome), "{line}");
    }
}

// ---- help --------------------------------------------------------------

#[test]
fn help_documents_exit_codes() {
    let out = tool(&["--help"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    for text in ["Exit status:", "124", "500ms, 2s, 1m, 1h"] {
        assert!(out.stdout.contains(text), "missing {text:?}");
    }
    let run = tool(&["run", "--help"]);
    for text in ["--kill-after", "SIGKILL", "process group", "Exit status:"] {
        assert!(run.stdout.contains(text), "missing {text:?}");
    }
    let wait = tool(&["wait", "--help"]);
    for text in ["not a child of waitprocs", "more than once", "124"] {
        assert!(wait.stdout.contains(text), "missing {text:?}");
    }
}

/// A scratch path that a test may fill with a file or a directory, removed
/// when the test ends.
struct TempPath(PathBuf);

impl std::ops::Deref for TempPath {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempPath {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
        let _ = fs::remove_file(&self.0);
    }
}

fn temp_path(name: &str) -> TempPath {
    TempPath(scratch_path(name))
}

// ---- engine settings ---------------------------------------------------

/// Returns whether the running kernel keeps the exit status of a reaped
/// process for its pidfd (`PIDFD_GET_INFO`, Linux 6.15 and later).
fn kernel_keeps_status() -> bool {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|part| part.parse::<u32>().ok());
    let major = numbers.next().unwrap_or(0);
    let minor = numbers.next().unwrap_or(0);
    (major, minor) >= (6, 15)
}

/// Returns whether the engine is forced into its fallback lane, where a
/// non-child has no pidfd and so no status, and the status grace does not apply.
fn fallback_forced() -> bool {
    std::env::var("WAITPROCS_BACKEND").is_ok_and(|value| value == "fallback")
}

#[test]
fn wait_reaped_non_child_status() {
    let mut child = Command::new("sh")
        .args(["-c", "sleep 0.3; exit 3"])
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    // The parent reaps its child as soon as it exits, well within the grace.
    let reaper = thread::spawn(move || child.wait().unwrap());
    let out = tool(&["wait", "--json", "--timeout", "20", &pid]);
    let status = reaper.join().unwrap();
    assert_eq!(status.code(), Some(3));
    assert_eq!(out.code(), Some(0), "{out:?}");
    let record = out.record();
    assert_eq!(record["was_child"], false, "{record}");
    if kernel_keeps_status() && !fallback_forced() {
        assert_eq!(record["status"], "exited", "{record}");
        assert_eq!(record["code"], 3, "{record}");
    } else {
        assert_eq!(record["status"], "unknown", "{record}");
    }
}

#[test]
fn wait_zero_grace_reports_at_once() {
    let target = Target::sleep("0.2");
    let out = tool(&["wait", "--json", "--status-grace", "0", &target.pid()]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let record = out.record();
    assert_eq!(record["status"], "unknown", "{record}");
    assert!(target.reap().success());
}

#[test]
fn wait_grace_waits_for_parent() {
    let target = Target::sleep("0.2");
    let started = Instant::now();
    let out = tool(&["wait", "--json", "--status-grace", "1s", &target.pid()]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    if !fallback_forced() {
        // The target stays unreaped while the tool runs, so the tool waits the whole grace.
        assert!(started.elapsed() >= Duration::from_millis(1200), "{out:?}");
    }
    assert_eq!(out.record()["status"], "unknown");
    assert!(target.reap().success());
}

#[test]
fn wait_bad_status_grace_exit_2() {
    let own = std::process::id().to_string();
    for value in ["-1", "soon", ""] {
        let option = format!("--status-grace={value}");
        let out = tool(&["wait", &option, &own]);
        assert_eq!(out.code(), Some(2), "{value}: {out:?}");
        assert!(out.stderr.contains(&format!("'{value}'")), "{}", out.stderr);
    }
}

#[test]
fn wait_fallback_lane_reports() {
    let first = Target::sleep("0.1");
    let second = Target::sleep("0.3");
    let out = tool(&[
        "wait",
        "--fallback",
        "--json",
        "--status-grace",
        "0",
        &first.pid(),
        &second.pid(),
    ]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let records = out.records();
    assert_eq!(records.len(), 2, "{}", out.stdout);
    assert_eq!(records[0]["pid"].to_string(), first.pid());
    assert_eq!(records[1]["pid"].to_string(), second.pid());
    assert!(first.reap().success());
    assert!(second.reap().success());
}

#[test]
fn wait_mixed_bad_pid_exit_2() {
    let target = Target::sleep("30");
    for bad in ["abc", "0", "-3", "2147483648"] {
        let out = tool(&["wait", "--timeout", "5", &target.pid(), bad]);
        assert_eq!(out.code(), Some(2), "{bad}: {out:?}");
        assert!(out.stdout.is_empty(), "{bad}: {out:?}");
    }
}

#[test]
fn run_fallback_lane_reports() {
    let out = tool_with_stdin(
        &["run", "--fallback", "--json", "--jobs", "3", "--file", "-"],
        "true\nexit 5\nsleep 0.2\nkill -TERM $$\n",
    );
    assert_eq!(out.code(), Some(1), "{out:?}");
    let mut records = out.records();
    records.sort_by_key(|record| record["job"].as_u64());
    assert_eq!(records.len(), 4, "{}", out.stdout);
    assert_eq!(records[0]["code"], 0);
    assert_eq!(records[1]["code"], 5);
    assert_eq!(records[2]["code"], 0);
    assert_eq!(records[3]["signal_name"], "SIGTERM");
}

#[test]
fn run_raises_fd_limit() {
    // The job prints the soft limit it inherited; ulimit -n without -S or -H
    // prints the soft limit in POSIX shells.
    let out = tool(&["run", "--", "sh", "-c", "ulimit -n; ulimit -Hn"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let numbers: Vec<&str> = out.stdout.lines().take(2).collect();
    assert_eq!(numbers.len(), 2, "{}", out.stdout);
    assert_eq!(
        numbers[0], numbers[1],
        "soft limit not raised: {}",
        out.stdout
    );
}

// ---- job sources and templates ------------------------------------------

/// Writes `contents` to a new scratch file and returns its path.
fn scratch_file(name: &str, contents: &[u8]) -> TempPath {
    let path = temp_path(name);
    fs::write(&path, contents).unwrap();
    path
}

/// An input line that a shell would split, expand and run if it were not quoted.
const HOSTILE_ITEM: &str =
    "a  b 'q' \"d\" $(echo INJECTED) `echo X`; echo INJECTED2 | cat & $HOME *";

#[test]
fn template_argv_item_one_argument() {
    let list = scratch_file("items", format!("{HOSTILE_ITEM}\n").as_bytes());
    let out = tool(&[
        "run",
        "--args-from",
        list.to_str().unwrap(),
        "--",
        "printf",
        "<%s>\\n",
    ]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], format!("<{HOSTILE_ITEM}>"));
    assert!(lines[1].starts_with("job 1 [pid "), "{}", out.stdout);
    assert_eq!(lines.len(), 2, "{}", out.stdout);
}

#[test]
fn template_shell_item_quoted() {
    let list = scratch_file("items", format!("{HOSTILE_ITEM}\nit's\n").as_bytes());
    let dir = temp_path("out");
    let out = tool(&[
        "run",
        "--jobs",
        "1",
        "--output-dir",
        dir.to_str().unwrap(),
        "--json",
        "--args-from",
        list.to_str().unwrap(),
        "--template",
        "printf '<%s>\\n' {} {}",
    ]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let records = out.records();
    assert_eq!(records.len(), 2, "{}", out.stdout);
    assert_eq!(records[0]["item"], HOSTILE_ITEM);

    let first = fs::read_to_string(dir.join("1.out")).unwrap();
    assert_eq!(first, format!("<{HOSTILE_ITEM}>\n<{HOSTILE_ITEM}>\n"));
    let second = fs::read_to_string(dir.join("2.out")).unwrap();
    assert_eq!(second, "<it's>\n<it's>\n");
}

#[test]
fn template_shell_runs_nothing_extra() {
    let marker = temp_path("marker");
    let item = format!("x; touch {0}; $(touch {0})", marker.display());
    let list = scratch_file("items", format!("{item}\n").as_bytes());
    let out = tool(&[
        "run",
        "--args-from",
        list.to_str().unwrap(),
        "--template",
        "echo {}",
    ]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout.lines().next(), Some(item.as_str()));
    assert!(!marker.exists(), "the item ran as shell code");
}

#[test]
fn template_placeholders_filled() {
    let list = scratch_file("items", b"dir/a.tar.gz\nb\n");
    let out = tool(&[
        "run",
        "--jobs",
        "1",
        "--args-from",
        list.to_str().unwrap(),
        "--",
        "echo",
        "{#}",
        "{}",
        "{.}",
        "{/}",
        "{//}",
        "{/.}",
    ]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let echoed: Vec<&str> = out
        .stdout
        .lines()
        .filter(|line| !line.starts_with("job "))
        .collect();
    assert_eq!(
        echoed,
        ["1 dir/a.tar.gz dir/a.tar a.tar.gz dir a.tar", "2 b b b . b"]
    );
}

#[test]
fn template_stdin_items_json() {
    let out = tool_with_stdin(
        &[
            "run",
            "--json",
            "--jobs",
            "2",
            "--args-from",
            "-",
            "--",
            "sh",
            "-c",
            "exit $0",
        ],
        "0\n\n3\r\n",
    );
    assert_eq!(out.code(), Some(1), "{out:?}");
    let mut records = out.records();
    records.sort_by_key(|record| record["job"].as_u64());
    assert_eq!(records.len(), 2, "{}", out.stdout);
    assert_eq!(records[0]["item"], "0");
    assert_eq!(records[0]["line"], 1);
    assert_eq!(records[1]["item"], "3");
    assert_eq!(records[1]["line"], 3);
    assert_eq!(records[1]["code"], 3);
    assert_eq!(records[1]["command"], "sh -c 'exit $0' 3");
}

#[test]
fn template_null_separated_items() {
    let list = scratch_file("items", b"one\ntwo\0three\0");
    let out = tool(&[
        "run",
        "--json",
        "--jobs",
        "1",
        "--null",
        "--args-from",
        list.to_str().unwrap(),
        "--",
        "true",
    ]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let items: Vec<Value> = out.records().iter().map(|r| r["item"].clone()).collect();
    assert_eq!(items, ["one\ntwo", "three"]);
}

#[test]
fn template_invalid_utf8_passed_as_bytes() {
    let item = b"caf\xe9 \xff";
    let mut contents = item.to_vec();
    contents.push(b'\n');
    let list = scratch_file("items", &contents);
    let dir = temp_path("out");
    let out = tool(&[
        "run",
        "--output-dir",
        dir.to_str().unwrap(),
        "--args-from",
        list.to_str().unwrap(),
        "--",
        "printf",
        "%s",
    ]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(fs::read(dir.join("1.out")).unwrap(), item);
}

#[test]
fn template_needs_args_from() {
    let out = tool(&["run", "--template", "echo {}"]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("--args-from"), "{}", out.stderr);
}

#[test]
fn args_from_conflicts_with_file() {
    let out = tool(&["run", "--file", "-", "--args-from", "-"]);
    assert_eq!(out.code(), Some(2), "{out:?}");
}

#[test]
fn empty_args_from_exits_0() {
    let out = tool_with_stdin(&["run", "--args-from", "-", "--", "echo"], "\n\n");
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(out.stderr.contains("no jobs"), "{}", out.stderr);
}

#[test]
fn job_file_nul_byte_rejected() {
    let file = scratch_file("jobs", b"true\n# fine\necho a\0b\ntrue\n");
    let out = tool(&["run", "--file", file.to_str().unwrap()]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "a job ran: {out:?}");
    let message = &out.stderr;
    assert!(
        message.contains(&format!("'{}'", file.display())),
        "{message}"
    );
    assert!(message.contains("line 3, byte 7"), "{message}");
    assert!(message.contains("NUL byte"), "{message}");
}

#[test]
fn args_from_nul_byte_rejected() {
    let out = tool_with_stdin(&["run", "--args-from", "-", "--", "echo"], "ok\nb\0ad\n");
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "a job ran: {out:?}");
    assert!(
        out.stderr.contains("standard input, line 2"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--null"), "{}", out.stderr);
}

#[test]
fn job_file_invalid_utf8_runs() {
    let file = scratch_file("jobs", b"echo \xff\xfe >/dev/null\n");
    let out = tool(&["run", "--json", "--file", file.to_str().unwrap()]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let record = out.record();
    assert_eq!(record["command"], "echo \u{fffd}\u{fffd} >/dev/null");
    assert_eq!(record["code"], 0);
}

#[test]
fn job_file_binary_garbage_rejected() {
    let garbage: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let file = scratch_file("jobs", &garbage);
    let out = tool(&["run", "--file", file.to_str().unwrap()]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "a job ran: {out:?}");
    assert!(out.stderr.contains("line 1, byte 1"), "{}", out.stderr);
}

#[test]
fn run_not_executable_exits_126() {
    let script = scratch_file("script", b"#!/bin/sh\nexit 0\n");
    let directory = env!("CARGO_TARGET_TMPDIR");
    for program in [script.to_str().unwrap(), directory] {
        let out = tool(&["run", "--json", "--", program]);
        assert_eq!(out.code(), Some(126), "{program}: {out:?}");
        let record = out.record();
        assert_eq!(record["status"], "failed_to_start");
        assert!(
            record["error"]
                .as_str()
                .unwrap()
                .contains("Permission denied"),
            "{record}"
        );
    }
}

#[test]
fn run_missing_program_loses_nothing() {
    let out = tool_with_stdin(
        &[
            "run",
            "--json",
            "--jobs",
            "2",
            "--args-from",
            "-",
            "--",
            "{}",
        ],
        "true\n/nonexistent/program\nfalse\ntrue\n",
    );
    assert_eq!(out.code(), Some(127), "{out:?}");
    let mut records = out.records();
    records.sort_by_key(|record| record["job"].as_u64());
    assert_eq!(records.len(), 4, "{}", out.stdout);
    assert_eq!(records[0]["code"], 0);
    assert_eq!(records[1]["status"], "failed_to_start");
    assert_eq!(records[2]["code"], 1);
    assert_eq!(records[3]["code"], 0);
    assert!(
        out.stderr
            .contains("4 jobs: 2 succeeded, 2 failed (1 failed to start)"),
        "{}",
        out.stderr
    );
}

// ---- retries and halt ----------------------------------------------------

#[test]
fn retries_until_success() {
    let counter = temp_path("counter");
    let script = format!(
        "n=$(cat {0} 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {0}; [ $n -ge 3 ]",
        counter.display()
    );
    let out = tool(&["run", "--json", "--retries", "5", "--", "sh", "-c", &script]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let records = out.records();
    assert_eq!(records.len(), 3, "{}", out.stdout);
    for (index, record) in records.iter().enumerate() {
        assert_eq!(record["job"], 1, "{record}");
        assert_eq!(record["attempt"], index + 1, "{record}");
        assert_eq!(record["retrying"], index < 2, "{record}");
    }
    assert_eq!(records[2]["code"], 0);
    assert!(
        out.stderr
            .contains("1 job: 1 succeeded, 0 failed, 2 retries"),
        "{}",
        out.stderr
    );
}

#[test]
fn retries_exhausted_fail() {
    let out = tool(&["run", "--retries", "2", "--", "false"]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    assert!(lines[0].ends_with("; retrying (attempt 2)"), "{}", lines[0]);
    assert!(
        lines[1].starts_with("job 1 (attempt 2) [pid "),
        "{}",
        lines[1]
    );
    assert!(!lines[2].contains("retrying"), "{}", lines[2]);
    assert!(
        out.stderr
            .contains("1 job: 0 succeeded, 1 failed, 2 retries"),
        "{}",
        out.stderr
    );
}

#[test]
fn retries_timed_out_job() {
    let out = tool(&[
        "run",
        "--json",
        "--retries",
        "1",
        "--timeout",
        "0.2",
        "--",
        "sleep",
        "30",
    ]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    let records = out.records();
    assert_eq!(records.len(), 2, "{}", out.stdout);
    for record in &records {
        assert_eq!(record["timed_out"], true, "{record}");
        assert_eq!(record["signal_name"], "SIGTERM", "{record}");
    }
    assert!(out.stderr.contains("(1 timed out)"), "{}", out.stderr);
}

#[test]
fn retries_skip_failed_start() {
    let out = tool(&["run", "--retries", "3", "--", "/nonexistent/program"]);
    assert_eq!(out.code(), Some(127), "{out:?}");
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
}

#[test]
fn halt_soon_starts_no_more() {
    let out = tool_with_stdin(
        &[
            "run",
            "--json",
            "--jobs",
            "1",
            "--halt",
            "soon,fail=2",
            "--file",
            "-",
        ],
        "exit 1\ntrue\nexit 2\ntrue\ntrue\n",
    );
    assert_eq!(out.code(), Some(3), "{out:?}");
    let records = out.records();
    assert_eq!(records.len(), 3, "{}", out.stdout);
    assert_eq!(records[2]["code"], 2);
    assert!(out.stderr.contains("2 jobs failed"), "{}", out.stderr);
    assert!(out.stderr.contains("2 not started"), "{}", out.stderr);
}

#[test]
fn halt_soon_lets_running_finish() {
    let out = tool_with_stdin(
        &[
            "run",
            "--json",
            "--jobs",
            "2",
            "--halt",
            "soon,fail=1",
            "--file",
            "-",
        ],
        "sleep 0.5; exit 0\nsleep 0.1; exit 1\ntrue\n",
    );
    assert_eq!(out.code(), Some(3), "{out:?}");
    let records = out.records();
    assert_eq!(records.len(), 2, "{}", out.stdout);
    assert_eq!(records[0]["code"], 1, "{}", out.stdout);
    assert_eq!(records[1]["code"], 0, "{}", out.stdout);
    assert_eq!(records[1]["halted"], false, "{}", out.stdout);
}

#[test]
fn halt_now_stops_running() {
    let out = tool_with_stdin(
        &[
            "run",
            "--json",
            "--jobs",
            "2",
            "--halt",
            "now,fail=1",
            "--kill-after",
            "0.3",
            "--file",
            "-",
        ],
        "trap '' TERM; sleep 30\nsleep 0.2; exit 4\ntrue\n",
    );
    assert_eq!(out.code(), Some(3), "{out:?}");

    let records = out.records();
    assert_eq!(records.len(), 2, "{}", out.stdout);
    assert_eq!(records[0]["code"], 4);

    let stopped = &records[1];
    assert_eq!(stopped["halted"], true, "{stopped}");
    assert_eq!(stopped["timed_out"], false, "{stopped}");
    assert_eq!(stopped["sigkill_sent"], true, "{stopped}");
    assert_eq!(stopped["signal_name"], "SIGKILL", "{stopped}");
    assert_group_ends(stopped["pid"].as_u64().unwrap());

    assert!(
        out.stderr.contains("stopping 1 job still running"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("1 stopped by --halt"), "{}", out.stderr);
    assert!(out.stderr.contains("1 not started"), "{}", out.stderr);
}

#[test]
fn halt_stops_retries() {
    let out = tool_with_stdin(
        &[
            "run",
            "--json",
            "--jobs",
            "2",
            "--retries",
            "1",
            "--halt",
            "soon,fail=1",
            "--file",
            "-",
        ],
        "exit 1\nsleep 0.5; exit 2\ntrue\n",
    );
    assert_eq!(out.code(), Some(3), "{out:?}");
    let records = out.records();
    let summary: Vec<(u64, u64, bool)> = records
        .iter()
        .map(|r| {
            let job = r["job"].as_u64().unwrap();
            (job, r["attempt"].as_u64().unwrap(), r["retrying"] == true)
        })
        .collect();
    // Job 1 fails twice and halts the run; job 2 then fails, with no retry.
    assert_eq!(summary, [(1, 1, true), (1, 2, false), (2, 1, false)]);
    assert!(out.stderr.contains("2 failed"), "{}", out.stderr);
    assert!(out.stderr.contains("1 not started"), "{}", out.stderr);
}

#[test]
fn halt_rejects_invalid() {
    for value in ["now", "now,fail=0", "later,fail=1", "now,fail=x"] {
        let out = tool(&["run", "--halt", value, "--", "true"]);
        assert_eq!(out.code(), Some(2), "{value}: {out:?}");
        assert!(out.stderr.contains(&format!("'{value}'")), "{}", out.stderr);
    }
}

#[test]
fn kill_after_allowed_with_halt() {
    let out = tool(&[
        "run",
        "--halt",
        "now,fail=1",
        "--kill-after",
        "1",
        "--",
        "true",
    ]);
    assert_eq!(out.code(), Some(0), "{out:?}");
}

// ---- output of jobs ------------------------------------------------------

#[test]
fn output_lines_never_mix() {
    const LINES: usize = 2000;
    const WIDTH: usize = 3000;
    let job = |letter: char| format!("yes {} | head -n {LINES}", letter.to_string().repeat(WIDTH));
    let jobs = format!("{}\n{}\n", job('A'), job('B'));
    let out = tool_with_stdin(&["run", "--json", "--jobs", "2", "--file", "-"], &jobs);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let (mut a_lines, mut b_lines, mut records) = (0, 0, 0);
    let a_line = "A".repeat(WIDTH);
    let b_line = "B".repeat(WIDTH);
    for line in out.stdout.lines() {
        if line == a_line {
            a_lines += 1;
        } else if line == b_line {
            b_lines += 1;
        } else if line.starts_with('{') {
            records += 1;
        } else {
            panic!(
                "a mixed line of {} bytes: {}...",
                line.len(),
                &line[..80.min(line.len())]
            );
        }
    }
    assert_eq!(a_lines, LINES);
    assert_eq!(b_lines, LINES);
    assert_eq!(records, 2);
}

#[test]
fn output_long_line_split() {
    let out = tool(&[
        "run",
        "--",
        "sh",
        "-c",
        "head -c 150000 /dev/zero | tr '\\0' x",
    ]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let lengths: Vec<usize> = out.stdout.lines().take(3).map(str::len).collect();
    assert_eq!(lengths, [65536, 65536, 150000 - 2 * 65536]);
}

#[test]
fn output_last_line_completed() {
    let out = tool(&["run", "--", "printf", "no newline"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(
        out.stdout.starts_with("no newline\njob 1 [pid "),
        "{}",
        out.stdout
    );
}

#[test]
fn output_before_report() {
    let out = tool_with_stdin(
        &["run", "--jobs", "1", "--file", "-"],
        "echo first\necho second\n",
    );
    assert_eq!(out.code(), Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", out.stdout);
    assert_eq!(lines[0], "first");
    assert!(lines[1].starts_with("job 1 "), "{}", lines[1]);
    assert_eq!(lines[2], "second");
    assert!(lines[3].starts_with("job 2 "), "{}", lines[3]);
}

#[test]
fn output_stderr_to_stderr() {
    let out = tool(&["run", "--tag", "--", "sh", "-c", "echo out; echo err >&2"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let command = "sh -c 'echo out; echo err >&2'";
    assert!(
        out.stdout.starts_with(&format!("{command}\tout\n")),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains(&format!("{command}\terr\n")),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("\terr\n"), "{}", out.stdout);
}

#[test]
fn output_tag_string_filled() {
    let out = tool_with_stdin(
        &[
            "run",
            "--jobs",
            "1",
            "--tag-string",
            "[{#} {/}] ",
            "--args-from",
            "-",
            "--",
            "echo",
        ],
        "x/one\ny/two\n",
    );
    assert_eq!(out.code(), Some(0), "{out:?}");
    let tagged: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(tagged, ["[1 one] x/one", "[2 two] y/two"]);
}

#[test]
fn output_tag_needs_lines() {
    for mode in ["inherit", "discard"] {
        let out = tool(&["run", "--tag", "--output", mode, "--", "true"]);
        assert_eq!(out.code(), Some(2), "{mode}: {out:?}");
        assert!(out.stderr.contains("--output lines"), "{}", out.stderr);
    }
    let out = tool(&["run", "--tag", "--output-dir", "/tmp", "--", "true"]);
    assert_eq!(out.code(), Some(2), "{out:?}");
}

#[test]
fn output_dir_files_per_job() {
    let dir = temp_path("out");
    let out = tool_with_stdin(
        &[
            "run",
            "--jobs",
            "2",
            "--output-dir",
            dir.to_str().unwrap(),
            "--file",
            "-",
        ],
        "echo one; echo oops >&2\nprintf 'two\\nlines\\n'\n",
    );
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(fs::read_to_string(dir.join("1.out")).unwrap(), "one\n");
    assert_eq!(fs::read_to_string(dir.join("1.err")).unwrap(), "oops\n");
    assert_eq!(
        fs::read_to_string(dir.join("2.out")).unwrap(),
        "two\nlines\n"
    );
    assert_eq!(fs::read_to_string(dir.join("2.err")).unwrap(), "");
    assert!(
        !out.stdout.lines().any(|line| line == "one"),
        "{}",
        out.stdout
    );
}

#[test]
fn output_dir_keeps_last_attempt() {
    let dir = temp_path("out");
    let counter = temp_path("counter");
    let script = format!(
        "n=$(cat {0} 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {0}; echo attempt $n; [ $n -ge 2 ]",
        counter.display()
    );
    let out = tool(&[
        "run",
        "--retries",
        "1",
        "--output-dir",
        dir.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(
        fs::read_to_string(dir.join("1.out")).unwrap(),
        "attempt 2\n"
    );
}

#[test]
fn output_dir_unusable_exits_2() {
    let file = scratch_file("not-a-dir", b"");
    let out = tool(&["run", "--output-dir", file.to_str().unwrap(), "--", "true"]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(
        out.stderr.contains("exists and is not a directory"),
        "{}",
        out.stderr
    );
}

#[test]
fn output_discard_and_inherit() {
    let out = tool(&["run", "--output", "discard", "--", "echo", "hidden"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(!out.stdout.contains("hidden\n"), "{}", out.stdout);
    let out = tool(&["run", "--output", "inherit", "--", "echo", "shown"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(out.stdout.starts_with("shown\n"), "{}", out.stdout);
}

#[test]
fn output_background_process_not_waited() {
    // The job exits at once but leaves a process holding its pipes; the run
    // still ends, long before that process would.
    let started = Instant::now();
    let out = tool(&["run", "--json", "--", "sh", "-c", "sleep 3 & echo started"]);
    assert!(started.elapsed() < Duration::from_secs(3), "{out:?}");
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(out.stdout.starts_with("started\n"), "{}", out.stdout);
    assert_group_ends(out.record()["pid"].as_u64().unwrap());
}

#[test]
fn stdin_of_jobs_is_null() {
    let out = tool_with_stdin(&["run", "--", "sh", "-c", "cat; echo end"], "");
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(out.stdout.starts_with("end\n"), "{}", out.stdout);
}

// ---- job log and summary -------------------------------------------------

#[test]
fn joblog_matches_parallel_format() {
    let log = temp_path("joblog");
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let out = tool_with_stdin(
        &[
            "run",
            "--jobs",
            "2",
            "--joblog",
            log.to_str().unwrap(),
            "--file",
            "-",
        ],
        "echo hello\nexit 3\nkill -TERM $$\n",
    );
    assert_eq!(out.code(), Some(1), "{out:?}");

    let text = fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand"
    );
    assert_eq!(lines.len(), 4, "{text}");

    let mut rows: Vec<Vec<&str>> = lines[1..].iter().map(|l| l.split('\t').collect()).collect();
    rows.sort_by_key(|row| row[0].parse::<u32>().unwrap());
    for row in &rows {
        assert_eq!(row.len(), 9, "{row:?}");
        assert_eq!(row[1], ":", "{row:?}");
        let start: f64 = row[2].parse().unwrap();
        assert!(start >= before.floor(), "started before the run: {row:?}");
        assert!(start < before + 60.0, "{row:?}");
        assert_eq!(row[2].split('.').nth(1).map(str::len), Some(3), "{row:?}");
        assert_eq!(row[3].len(), 10, "runtime is %10.3f: {row:?}");
        assert!(row[3].trim_start().parse::<f64>().is_ok(), "{row:?}");
        assert_eq!(row[4], "0", "{row:?}");
    }

    assert_eq!(&rows[0][5..], ["6", "0", "0", "echo hello"]);
    assert_eq!(&rows[1][5..], ["0", "3", "0", "exit 3"]);
    assert_eq!(&rows[2][5..], ["0", "0", "15", "kill -TERM $$"]);
}

#[test]
fn joblog_line_per_attempt() {
    let log = temp_path("joblog");
    let out = tool(&[
        "run",
        "--retries",
        "2",
        "--joblog",
        log.to_str().unwrap(),
        "--timeout",
        "5",
        "--",
        "false",
    ]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    let text = fs::read_to_string(&log).unwrap();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{text}");
    for row in rows {
        assert!(row.starts_with("1\t:\t"), "{row}");
        assert!(row.ends_with("\t0\t1\t0\tfalse"), "{row}");
    }
}

#[test]
fn joblog_timeout_exitval_minus_one() {
    let log = temp_path("joblog");
    let out = tool(&[
        "run",
        "--joblog",
        log.to_str().unwrap(),
        "--timeout",
        "0.1",
        "--",
        "sleep",
        "30",
    ]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    let text = fs::read_to_string(&log).unwrap();
    let row = text.lines().nth(1).unwrap();
    assert!(row.ends_with("\t-1\t15\tsleep 30"), "{row}");
}

#[test]
fn joblog_unwritable_exits_2() {
    let out = tool(&["run", "--joblog", "/nonexistent/dir/log", "--", "true"]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "a job ran: {out:?}");
    assert!(
        out.stderr.contains("'/nonexistent/dir/log'"),
        "{}",
        out.stderr
    );
}

#[test]
fn summary_lists_slowest() {
    let out = tool_with_stdin(
        &["run", "--jobs", "7", "--file", "-"],
        "sleep 0.6\nsleep 0.1\ntrue\nsleep 0.4\nsleep 0.3\nsleep 0.5\nsleep 0.2\n",
    );
    assert_eq!(out.code(), Some(0), "{out:?}");

    let after: Vec<&str> = out
        .stderr
        .lines()
        .skip_while(|line| !line.ends_with("slowest jobs:"))
        .skip(1)
        .collect();
    assert_eq!(after.len(), 5, "{}", out.stderr);

    // Detection can lag an exit by up to 100 ms in the fallback lane and more
    // on a loaded machine, so check the set and the order of the reported
    // times, not the order of the sleeps.
    let mut commands: Vec<&str> = after.iter().map(|l| l.split('`').nth(1).unwrap()).collect();
    let times: Vec<f64> = after
        .iter()
        .map(|line| {
            let text = line.trim_start_matches("waitprocs:").trim_start();
            text.split('s').next().unwrap().parse::<f64>().unwrap()
        })
        .collect();
    assert!(
        times.windows(2).all(|pair| pair[0] >= pair[1]),
        "not sorted by time: {}",
        out.stderr
    );

    commands.sort_unstable();
    assert!(commands.contains(&"sleep 0.6"), "{}", out.stderr);
    assert!(!commands.contains(&"true"), "{}", out.stderr);
    assert!(!commands.contains(&"sleep 0.1"), "{}", out.stderr);
}

#[test]
fn human_report_has_usage() {
    let out = tool(&["run", "--", "true"]);
    let line = out.stdout.trim_end();
    assert!(line.contains(" (cpu "), "{line}");
    assert!(line.contains(", max rss "), "{line}");
    assert!(line.ends_with("iB)"), "{line}");
}

#[test]
fn progress_hidden_without_terminal() {
    let out = tool_with_stdin(&["run", "--jobs", "2", "--file", "-"], "sleep 0.3\ntrue\n");
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(!out.stderr.contains("ETA"), "{}", out.stderr);
    assert!(!out.stderr.contains('\u{1b}'), "{}", out.stderr);
}

#[test]
fn help_documents_run_options() {
    let run = tool(&["run", "--help"]);
    for text in [
        "--args-from",
        "--template",
        "--retries",
        "--halt",
        "--joblog",
        "--output-dir",
        "--tag",
        "--no-progress",
        "--fallback",
        "testing and benchmarking aid",
        "RLIMIT_NOFILE",
        "{/.}",
        "single quotes",
        "126",
        "127",
        "Exitval",
    ] {
        assert!(run.stdout.contains(text), "run --help lacks {text:?}");
    }
    let wait = tool(&["wait", "--help"]);
    for text in [
        "--status-grace",
        "100ms",
        "6.15",
        "RLIMIT_NOFILE",
        "--fallback",
    ] {
        assert!(wait.stdout.contains(text), "wait --help lacks {text:?}");
    }
}

#[test]
fn huge_durations_mean_no_limit() {
    // 10^19 s does not fit an Instant; it must mean "no limit", not a panic.
    let out = tool(&[
        "wait",
        "--timeout",
        "10000000000000000000",
        "--any",
        "--json",
        "1",
        "99999999",
    ]);
    assert_ne!(out.code(), Some(101), "panicked: {out:?}");
    let out = tool(&[
        "run",
        "--timeout",
        "0.1",
        "--kill-after",
        "10000000000000000000",
        "--",
        "sleep",
        "1",
    ]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("timed out"), "{}", out.stderr);
}

#[test]
fn log_silent_by_default() {
    let out = tool(&["run", "--", "true"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(!out.stderr.contains("engine started"), "{}", out.stderr);
    assert!(!out.stderr.contains("registered"), "{}", out.stderr);
}

#[test]
fn verbose_flags_raise_log_level() {
    let debug = tool(&["-vv", "run", "--", "true"]);
    assert_eq!(debug.code(), Some(0), "{}", debug.stderr);
    assert!(debug.stderr.contains("engine started"), "{}", debug.stderr);
    assert!(!debug.stderr.contains("registered"), "{}", debug.stderr);

    // The flag is global, so it may follow the subcommand too.
    let trace = tool(&["run", "-vvv", "--", "true"]);
    assert_eq!(trace.code(), Some(0), "{}", trace.stderr);
    assert!(trace.stderr.contains("registered"), "{}", trace.stderr);
    assert!(trace.stderr.contains("exited"), "{}", trace.stderr);
}

#[test]
fn log_env_sets_filter() {
    let out = Tool::start_command(
        Command::new(BIN)
            .env("WAITPROCS_LOG", "waitprocs_core=trace")
            .args(["run", "--", "true"]),
        None,
    )
    .finish();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(out.stderr.contains("registered"), "{}", out.stderr);
}

#[test]
fn log_env_invalid_is_usage_error() {
    let out = Tool::start_command(
        Command::new(BIN)
            .env("WAITPROCS_LOG", "waitprocs_core=loud")
            .args(["run", "--", "true"]),
        None,
    )
    .finish();
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("WAITPROCS_LOG"), "{}", out.stderr);
    assert!(
        out.stderr.contains("'waitprocs_core=loud'"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "no job ran: {}", out.stdout);
}

#[test]
fn log_to_closed_stderr_keeps_running() {
    // Standard error is a pipe whose reader is gone, so every log line fails
    // with EPIPE; the run must go on and report its job.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let stdout = scratch_path("stdout");
    let mut child = Command::new(BIN)
        .args(["-vvv", "run", "--", "sh", "-c", "exit 3"])
        .stdin(Stdio::null())
        .stdout(File::create(&stdout).unwrap())
        .stderr(writer)
        .spawn()
        .unwrap();
    let status = wait_with_deadline(&mut child, DEADLINE);
    let report = fs::read_to_string(&stdout).unwrap();
    let _ = fs::remove_file(&stdout);
    assert_eq!(status.code(), Some(1), "{report}");
    assert!(report.contains("exited with code 3"), "{report}");
}

#[test]
fn log_env_typo_is_usage_error() {
    let out = Tool::start_command(
        Command::new(BIN)
            .env("WAITPROCS_LOG", "debg")
            .args(["run", "--", "true"]),
        None,
    )
    .finish();
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("'debg' is not a level"),
        "{}",
        out.stderr
    );
}

#[test]
fn empty_template_is_usage_error() {
    for template in ["", "  "] {
        let out = tool_with_stdin(
            &["run", "--args-from", "-", "--template", template],
            "date\n",
        );
        assert_eq!(out.code(), Some(2), "{template:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("the template is empty"),
            "{template:?}: {}",
            out.stderr
        );
        assert!(out.stdout.is_empty(), "no job ran: {}", out.stdout);
    }
}

#[test]
fn tag_escapes_item_newline() {
    let out = tool_with_stdin(
        &[
            "run",
            "--tag",
            "-0",
            "--args-from",
            "-",
            "--",
            "printf",
            "out1\nout2\n",
        ],
        "two\nlines\0",
    );
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines.contains(&"two\\nlines\tout1"), "{}", out.stdout);
    assert!(lines.contains(&"two\\nlines\tout2"), "{}", out.stdout);
    let reports: Vec<&&str> = lines.iter().filter(|l| l.starts_with("job 1")).collect();
    assert_eq!(reports.len(), 1, "{}", out.stdout);
    assert!(reports[0].contains("two\\nlines"), "{}", out.stdout);
    assert_eq!(lines.len(), 3, "{}", out.stdout);
}

#[test]
fn count_options_reject_bad_numbers() {
    let cases: [&[&str]; 5] = [
        &["run", "--jobs", "-1", "--", "true"],
        &["run", "--jobs", "abc", "--", "true"],
        &["run", "--jobs", "99999999999999999999", "--", "true"],
        &["run", "--retries", "-1", "--", "true"],
        &["wait", "--count", "0", "1"],
    ];
    for args in cases {
        let out = tool(args);
        assert_eq!(out.code(), Some(2), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("use a whole number from"),
            "{args:?}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("tip:"), "{args:?}: {}", out.stderr);
    }
}
