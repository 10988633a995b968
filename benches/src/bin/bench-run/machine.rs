//! Facts about the machine a run was made on, and whether it can hold a
//! scenario's processes at all.

use std::fs;
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::scenarios::{Scenario, Tool};

fn read(path: &str) -> String {
    fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn read_number(path: &str) -> Option<u64> {
    read(path).parse().ok()
}

/// Returns the `MemAvailable` line of /proc/meminfo in KiB.
fn mem_available_kib() -> Option<u64> {
    let text = read("/proc/meminfo");
    text.lines()
        .find_map(|line| line.strip_prefix("MemAvailable:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
}

/// Returns the number of threads on the machine (the second number of the
/// fourth field of /proc/loadavg). Each thread uses up one PID.
fn threads_now() -> Option<u64> {
    read("/proc/loadavg")
        .split_whitespace()
        .nth(3)
        .and_then(|field| field.split('/').nth(1))
        .and_then(|value| value.parse().ok())
}

pub(crate) fn load_average() -> String {
    read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Returns the path of a program on `PATH`, if any.
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}

/// Collects what the report states about the machine.
pub(crate) fn describe() -> Value {
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown".into());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let nproc_limit = rustix::process::getrlimit(rustix::process::Resource::Nproc);
    let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    json!({
        "nproc": nproc,
        "kernel": read("/proc/sys/kernel/osrelease"),
        "cpu_model": model,
        "mem_total_kib": read("/proc/meminfo").lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<u64>().ok()),
        "mem_available_kib": mem_available_kib(),
        "pid_max": read_number("/proc/sys/kernel/pid_max"),
        "threads_max": read_number("/proc/sys/kernel/threads-max"),
        "rlimit_nproc_soft": nproc_limit.current,
        "rlimit_nofile_soft": nofile.current,
        "rlimit_nofile_hard": nofile.maximum,
        "util_linux_waitpid": which("waitpid").map(|p| p.display().to_string()),
        "load_average_start": load_average(),
    })
}

/// Returns why the machine cannot run `tool` in `scenario`, if it cannot: too
/// few free PIDs (each child and each thread uses one) or too little memory.
pub(crate) fn cannot_hold(scenario: &Scenario, tool: Tool) -> Option<String> {
    let n = scenario.plan.n as u64;
    // psutil's thread-per-process waiter uses a second PID per process.
    let per_process = if tool == Tool::PsutilThreads { 2 } else { 1 };
    let needed = n * per_process;
    let pid_max = read_number("/proc/sys/kernel/pid_max")?;
    let threads_max = read_number("/proc/sys/kernel/threads-max").unwrap_or(u64::MAX);
    let in_use = threads_now().unwrap_or(0);
    // Keep a margin for the rest of the machine.
    let margin = 1000;
    let free = pid_max.min(threads_max).saturating_sub(in_use + margin);
    if needed > free {
        return Some(format!(
            "needs {needed} PIDs ({per_process} per process) but pid_max is {pid_max} and {in_use} are in use"
        ));
    }
    // A sleeping bench-child uses about 200 KiB (its private pages, page
    // tables and kernel stack); 256 KiB leaves a margin.
    let memory = n * 256
        + if tool == Tool::PsutilThreads {
            n * 64
        } else {
            0
        };
    match mem_available_kib() {
        Some(available) if memory > available => Some(format!(
            "needs about {} MiB for the processes but {} MiB are available",
            memory / 1024,
            available / 1024
        )),
        _ => None,
    }
}
