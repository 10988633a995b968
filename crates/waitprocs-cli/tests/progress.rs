//! The progress bar of `waitprocs run` on a real terminal: `script` gives the
//! tool a pseudo-terminal, and the test checks that the bar was drawn and that
//! every line a job printed arrived whole, never mixed with the bar.

#![cfg(target_os = "linux")]

use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_waitprocs");
const DEADLINE: Duration = Duration::from_secs(60);

/// Removes ANSI escape sequences (CSI `ESC [ ... letter`, and other
/// two-byte escapes) from terminal output.
fn strip_escapes(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.next() == Some('[') {
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
        }
    }
    out
}

#[test]
fn bar_and_lines_do_not_mix() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let jobs = dir.join(format!("progress-jobs-{}", std::process::id()));
    let typescript = dir.join(format!("progress-out-{}", std::process::id()));
    let lines: String = (1..=8)
        .map(|n| format!("sleep 0.{n}; echo job-line-{n}; echo job-error-{n} >&2\n"))
        .collect();
    fs::write(&jobs, lines).unwrap();

    let command = format!("{BIN} run --jobs 2 --file {}", jobs.display());
    let mut script = Command::new("script")
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .stdin(Stdio::null())
        .stdout(File::create(&typescript).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("start script(1) from util-linux");
    let end = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = script.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= end {
            let _ = script.kill();
            let _ = script.wait();
            panic!("script still running after {DEADLINE:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let raw = fs::read_to_string(&typescript).unwrap();
    let _ = fs::remove_file(&typescript);
    let _ = fs::remove_file(&jobs);
    assert_eq!(status.code(), Some(0), "{raw}");

    let text = strip_escapes(&raw);
    assert!(text.contains("done, "), "no bar drawn: {text:?}");
    assert!(text.contains("ETA"), "no bar drawn: {text:?}");
    let pieces: Vec<&str> = text
        .split(['\r', '\n'])
        .map(str::trim_end)
        .filter(|piece| !piece.is_empty())
        .collect();
    for n in 1..=8 {
        for expected in [format!("job-line-{n}"), format!("job-error-{n}")] {
            assert!(
                pieces.contains(&expected.as_str()),
                "{expected} not on a line of its own: {pieces:#?}"
            );
        }
    }
    // Each job's report line is whole as well.
    for n in 1..=8 {
        let start = format!("job {n} [pid ");
        let report = pieces.iter().find(|piece| piece.starts_with(&start));
        assert!(
            report.is_some_and(|line| line.contains("exited with code 0 after ")),
            "report of job {n}: {pieces:#?}"
        );
    }
}
