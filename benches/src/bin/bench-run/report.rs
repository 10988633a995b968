//! Turns the raw results into tables of medians, ratios and target checks,
//! as Markdown for the terminal and for docs/BENCHMARKS.md.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::Path;

use serde_json::{json, Value};

use crate::scenarios::Tool;

/// Display unit of a metric.
#[derive(Debug, Clone, Copy)]
enum Unit {
    /// Nanoseconds shown as microseconds.
    Micros,
    /// Nanoseconds shown as milliseconds.
    Millis,
    Count,
    PerSecond,
    Percent,
    Bytes,
    /// KiB shown as MiB.
    MiB,
}

#[derive(Debug, Clone, Copy)]
struct Metric {
    label: &'static str,
    unit: Unit,
    get: fn(&Value) -> Option<f64>,
    /// Measured inside waitprocs only (registration): the peers show a dash.
    ours_only: bool,
}

impl Metric {
    /// Creates a metric that every tool able to run the scenario reports.
    const fn shared(label: &'static str, unit: Unit, get: fn(&Value) -> Option<f64>) -> Self {
        Self {
            label,
            unit,
            get,
            ours_only: false,
        }
    }

    /// Creates a metric measured inside waitprocs only.
    const fn ours(label: &'static str, unit: Unit, get: fn(&Value) -> Option<f64>) -> Self {
        Self {
            label,
            unit,
            get,
            ours_only: true,
        }
    }
}

fn field(data: &Value, name: &str) -> Option<f64> {
    data.get(name)?.as_f64()
}

/// Returns the `q` quantile (nearest rank) of the run's latencies in ns.
fn latency_quantile(data: &Value, q: f64) -> Option<f64> {
    let mut values: Vec<u64> = data
        .get("latencies_ns")?
        .as_array()?
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1] as f64)
}

fn p50(data: &Value) -> Option<f64> {
    latency_quantile(data, 0.50)
}
fn p99(data: &Value) -> Option<f64> {
    latency_quantile(data, 0.99)
}
fn max(data: &Value) -> Option<f64> {
    latency_quantile(data, 1.0)
}
fn exits(data: &Value) -> Option<f64> {
    field(data, "exits")
}
fn window_cpu(data: &Value) -> Option<f64> {
    field(data, "window_cpu_ns")
}
fn window_voluntary(data: &Value) -> Option<f64> {
    field(data, "window_voluntary")
}
fn idle_cpu_percent(data: &Value) -> Option<f64> {
    let wall = field(data, "idle_wall_ns")?;
    (wall > 0.0).then(|| field(data, "idle_cpu_ns").unwrap_or(0.0) / wall * 100.0)
}
fn exits_per_second(data: &Value) -> Option<f64> {
    let wall = field(data, "window_wall_ns")?;
    (wall > 0.0).then(|| exits(data).unwrap_or(0.0) / (wall / 1e9))
}
fn rss_end(data: &Value) -> Option<f64> {
    field(data, "rss_end_kib")
}
fn register_per_process(data: &Value) -> Option<f64> {
    Some(field(data, "register_ns")? / field(data, "n")?.max(1.0))
}
fn bytes_per_process(data: &Value) -> Option<f64> {
    let before = field(data, "registered_rss_before_kib")?;
    let after = field(data, "registered_rss_after_kib")?;
    Some((after - before) * 1024.0 / field(data, "n")?.max(1.0))
}

const LATENCY: &[Metric] = &[
    Metric::shared("latency p50", Unit::Micros, p50),
    Metric::shared("latency p99", Unit::Micros, p99),
    Metric::shared("latency max", Unit::Micros, max),
    Metric::shared("exits delivered", Unit::Count, exits),
    Metric::shared("waiter CPU, whole run", Unit::Millis, window_cpu),
];

const IDLE: &[Metric] = &[
    Metric::shared("waiter CPU, window", Unit::Millis, window_cpu),
    Metric::shared("voluntary switches, window", Unit::Count, window_voluntary),
    Metric::shared("exits delivered", Unit::Count, exits),
    Metric::shared(
        "CPU while idle (% of a core)",
        Unit::Percent,
        idle_cpu_percent,
    ),
];

const THROUGHPUT: &[Metric] = &[
    Metric::shared("exits per second", Unit::PerSecond, exits_per_second),
    Metric::shared("waiter CPU", Unit::Millis, window_cpu),
    Metric::shared("exits delivered", Unit::Count, exits),
];

const SCALE: &[Metric] = &[
    Metric::shared("exits delivered", Unit::Count, exits),
    Metric::shared(
        "CPU while idle (% of a core)",
        Unit::Percent,
        idle_cpu_percent,
    ),
    Metric::shared("latency p50", Unit::Micros, p50),
    Metric::shared("latency p99", Unit::Micros, p99),
    Metric::shared("latency max", Unit::Micros, max),
    Metric::shared("waiter CPU, window", Unit::Millis, window_cpu),
    Metric::shared("waiter RSS at the end", Unit::MiB, rss_end),
    Metric::ours(
        "registration time per process",
        Unit::Micros,
        register_per_process,
    ),
];

const MEMORY: &[Metric] = &[
    Metric::ours(
        "registration time per process",
        Unit::Micros,
        register_per_process,
    ),
    Metric::ours(
        "waiter RSS per watched process",
        Unit::Bytes,
        bytes_per_process,
    ),
    Metric::shared("exits delivered", Unit::Count, exits),
];

fn metrics(group: &str) -> &'static [Metric] {
    match group {
        "Latency" | "NonChildren" => LATENCY,
        "Idle" => IDLE,
        "Throughput" => THROUGHPUT,
        "Scale" => SCALE,
        _ => MEMORY,
    }
}

fn format_value(value: f64, unit: Unit) -> String {
    match unit {
        Unit::Micros => format!("{} µs", significant(value / 1e3)),
        Unit::Millis => format!("{} ms", significant(value / 1e6)),
        Unit::Count => format!("{value:.0}"),
        Unit::PerSecond => format!("{value:.0}/s"),
        Unit::Percent => format!("{}%", significant(value)),
        Unit::Bytes => format!("{value:.0} B"),
        Unit::MiB => format!("{} MiB", significant(value / 1024.0)),
    }
}

/// Formats with about three significant digits.
fn significant(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude == 0.0 {
        "0".into()
    } else if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else if magnitude >= 0.001 {
        format!("{value:.3}")
    } else {
        format!("{value:.1e}")
    }
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    })
}

fn runs_of<'a>(scenario: &'a Value, tool: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    scenario["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |run| run["tool"] == tool)
}

/// Returns the median over repetitions of `metric` for `tool`.
fn median_of(scenario: &Value, tool: &str, get: fn(&Value) -> Option<f64>) -> Option<f64> {
    median(
        runs_of(scenario, tool)
            .filter_map(|run| get(&run["data"]))
            .collect(),
    )
}

fn find<'a>(document: &'a Value, id: &str) -> Option<&'a Value> {
    document["scenarios"]
        .as_array()?
        .iter()
        .find(|s| s["id"] == id)
}

/// Returns whether a waiter delivered every exit before its deadline.
pub(crate) fn run_is_complete(data: &Value) -> bool {
    let complete = field(data, "exits") == field(data, "n");
    complete && !data["timed_out"].as_bool().unwrap_or(true)
}

/// Summarizes one run for the progress output.
pub(crate) fn one_line(data: &Value) -> String {
    let mut line = format!(
        "exits {}/{}",
        field(data, "exits").unwrap_or(0.0),
        field(data, "n").unwrap_or(0.0)
    );
    if let Some(value) = p99(data) {
        let _ = write!(line, ", p99 {}", format_value(value, Unit::Micros));
    }
    if let Some(value) = window_cpu(data) {
        let _ = write!(line, ", CPU {}", format_value(value, Unit::Millis));
    }
    if let Some(value) = window_voluntary(data) {
        let _ = write!(line, ", vcsw {value}");
    }
    if let Some(value) = field(data, "window_wall_ns") {
        let _ = write!(line, ", wall {}", format_value(value, Unit::Millis));
    }
    line
}

/// Returns whether every scenario has numbers from every tool that was not
/// skipped: what the smoke run checks.
pub(crate) fn every_scenario_has_numbers(document: &Value) -> bool {
    document["scenarios"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|scenario| {
            Tool::ALL.iter().all(|tool| {
                scenario["skipped"].get(tool.id()).is_some()
                    || runs_of(scenario, tool.id()).any(|run| run["ok"].as_bool() == Some(true))
            })
        })
}

/// Reads the median estimates (ns) of criterion's last run under `dir`.
pub(crate) fn read_criterion(dir: &Path) -> Value {
    let mut found = serde_json::Map::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(entries) = fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            let entry_path = entry.path();
            if entry_path.ends_with("new/estimates.json") {
                let estimate = fs::read_to_string(&entry_path)
                    .ok()
                    .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                    .and_then(|value| value["median"]["point_estimate"].as_f64());
                let name = entry_path
                    .parent()
                    .and_then(Path::parent)
                    .and_then(|bench| bench.strip_prefix(dir).ok())
                    .map(|name| name.display().to_string());
                if let (Some(name), Some(estimate)) = (name, estimate) {
                    found.insert(name, json!(estimate));
                }
            } else if entry_path.is_dir() && !entry_path.ends_with("report") {
                stack.push(entry_path);
            }
        }
    }
    Value::Object(found)
}

/// Renders the whole report as Markdown.
pub(crate) fn render(document: &Value, with_plots: bool) -> String {
    let mut text = String::new();
    render_header(document, &mut text);
    for scenario in document["scenarios"].as_array().into_iter().flatten() {
        render_scenario(scenario, &mut text);
    }
    render_criterion(document, &mut text);
    render_targets(document, &mut text);
    if with_plots {
        text.push_str("### Plots\n\n");
        text.push_str("![Latency CDF, children](bench/latency-cdf.png)\n\n");
        text.push_str("![Latency CDF, non-children](bench/nonchildren-cdf.png)\n\n");
        text.push_str("![Waiter CPU against N](bench/idle-cpu.png)\n\n");
        text.push_str("![Latency CDF, scale](bench/scale-cdf.png)\n\n");
    }
    text
}

fn render_header(document: &Value, text: &mut String) {
    let machine = &document["machine"];
    let _ = writeln!(
        text,
        "Mode: {}. Command: `{}`.\n",
        document["mode"].as_str().unwrap_or("?"),
        document["command"].as_str().unwrap_or("?")
    );
    let _ = writeln!(
        text,
        "Machine: {} CPUs ({}), Linux {}, {:.1} GiB of memory; pid_max {}, threads-max {}; \
         load average {} at the start and {} at the end; the run took {:.0} s.\n",
        machine["nproc"],
        machine["cpu_model"].as_str().unwrap_or("unknown"),
        machine["kernel"].as_str().unwrap_or("unknown"),
        machine["mem_total_kib"].as_f64().unwrap_or(0.0) / 1024.0 / 1024.0,
        machine["pid_max"],
        machine["threads_max"],
        machine["load_average_start"].as_str().unwrap_or("?"),
        machine["load_average_end"].as_str().unwrap_or("?"),
        document["elapsed_s"].as_f64().unwrap_or(0.0),
    );
    let _ = writeln!(
        text,
        "Engine measured: {}.\n",
        document["revision"].as_str().unwrap_or("unknown revision")
    );
    let waitpid = match machine["util_linux_waitpid"].as_str() {
        Some(path) => format!("found at {path}, but the harness does not drive it yet"),
        None => "not installed, so it is not measured".into(),
    };
    let _ = writeln!(text, "util-linux `waitpid`: {waitpid}.\n");
    text.push_str(
        "Each cell is the median over the repetitions; in brackets, the ratio \
         waitprocs / that tool (below 1 means waitprocs is lower: less time, \
         less CPU, fewer exits per second).\n\n",
    );
}

fn render_scenario(scenario: &Value, text: &mut String) {
    let group = scenario["group"].as_str().unwrap_or("");
    let _ = writeln!(
        text,
        "### {}\n\n{} repetition(s).\n",
        scenario["title"].as_str().unwrap_or("?"),
        scenario["reps"]
    );
    text.push_str("| metric |");
    for tool in Tool::ALL {
        let _ = write!(text, " {} |", tool.title());
    }
    text.push_str("\n|---|");
    for _ in Tool::ALL {
        text.push_str("---|");
    }
    text.push('\n');

    let mut notes: Vec<Note> = Vec::new();
    for metric in metrics(group) {
        let _ = write!(text, "| {} |", metric.label);
        let base = median_of(scenario, "waitprocs", metric.get);
        for tool in Tool::ALL {
            let cell = cell(scenario, tool, metric, base, &mut notes);
            let _ = write!(text, " {cell} |");
        }
        text.push('\n');
    }
    text.push('\n');
    for (index, (reason, tools)) in notes.iter().enumerate() {
        let _ = writeln!(text, "{}. {}: {reason}.", index + 1, tools.join(", "));
    }
    let incomplete: Vec<String> = scenario["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|run| run["ok"].as_bool() != Some(true))
        .map(|run| match run["error"].as_str() {
            Some(error) => format!(
                "{} rep {}: {error}",
                run["tool"].as_str().unwrap_or("?"),
                run["rep"]
            ),
            None => format!(
                "{} rep {}: {}",
                run["tool"].as_str().unwrap_or("?"),
                run["rep"],
                one_line(&run["data"])
            ),
        })
        .collect();
    if !incomplete.is_empty() {
        text.push_str(
            "\nIncomplete runs (their numbers are in the medians where they have any):\n\n",
        );
        for line in incomplete {
            let _ = writeln!(text, "- {line}");
        }
    }
    text.push('\n');
}

/// A reason why tools were not run, with the tools it applies to.
type Note = (String, Vec<&'static str>);

fn cell(
    scenario: &Value,
    tool: Tool,
    metric: &Metric,
    base: Option<f64>,
    notes: &mut Vec<Note>,
) -> String {
    if let Some(reason) = scenario["skipped"][tool.id()].as_str() {
        let index = notes
            .iter()
            .position(|(r, _)| r == reason)
            .unwrap_or_else(|| {
                notes.push((reason.to_owned(), Vec::new()));
                notes.len() - 1
            });
        if !notes[index].1.contains(&tool.title()) {
            notes[index].1.push(tool.title());
        }
        return format!("n/a ({})", index + 1);
    }
    if metric.ours_only && tool != Tool::Waitprocs {
        return "—".into();
    }
    let Some(value) = median_of(scenario, tool.id(), metric.get) else {
        return if runs_of(scenario, tool.id()).next().is_some() {
            "no data".into()
        } else {
            "—".into()
        };
    };
    let shown = format_value(value, metric.unit);
    match (tool, base) {
        (Tool::Waitprocs, _) | (_, None) => shown,
        (_, Some(base)) => format!("{shown} ({})", ratio(base, value)),
    }
}

fn ratio(base: f64, value: f64) -> String {
    if value == 0.0 {
        if base == 0.0 {
            "=".into()
        } else {
            "∞".into()
        }
    } else {
        format!("{}x", significant(base / value))
    }
}

fn render_criterion(document: &Value, text: &mut String) {
    let Some(estimates) = document["criterion"]
        .as_object()
        .filter(|map| !map.is_empty())
    else {
        return;
    };
    text.push_str("### Micro benchmarks (criterion, median)\n\n| benchmark | time |\n|---|---|\n");
    for (name, value) in estimates {
        let _ = writeln!(
            text,
            "| {name} | {} |",
            format_value(value.as_f64().unwrap_or(0.0), Unit::Micros)
        );
    }
    text.push('\n');
}

/// One target: its statement and, when measured, whether it was met and the figures.
struct Check {
    statement: String,
    outcome: Option<(bool, String)>,
}

fn render_targets(document: &Value, text: &mut String) {
    text.push_str("### Targets\n\n");
    if document["mode"] == "smoke" {
        text.push_str("Not evaluated in smoke mode: the sizes are too small to mean anything.\n\n");
        return;
    }
    for check in checks(document) {
        match check.outcome {
            Some((met, figures)) => {
                let _ = writeln!(
                    text,
                    "- **{}**: {} — {figures}",
                    if met { "met" } else { "missed" },
                    check.statement
                );
            }
            None => {
                let _ = writeln!(text, "- **not measured**: {}", check.statement);
            }
        }
    }
    text.push('\n');
}

fn micros(ns: f64) -> String {
    format_value(ns, Unit::Micros)
}
fn millis(ns: f64) -> String {
    format_value(ns, Unit::Millis)
}

fn checks(document: &Value) -> Vec<Check> {
    let get = |id: &str, tool: Tool, metric: fn(&Value) -> Option<f64>| {
        find(document, id).and_then(|scenario| median_of(scenario, tool.id(), metric))
    };
    let mut list = Vec::new();
    let mut push = |statement: &str, outcome: Option<(bool, String)>| {
        list.push(Check {
            statement: statement.to_owned(),
            outcome,
        })
    };

    let ours = get("latency", Tool::Waitprocs, p99);
    let floor = get("latency", Tool::WaitpidLoop, p99);
    let psutil = get("latency", Tool::PsutilWaitProcs, p99);
    push(
        "latency p99 within 1.2x of the waitpid(-1) loop",
        ours.zip(floor).map(|(a, b)| {
            (
                a <= 1.2 * b,
                format!("{} against {} ({:.2}x)", micros(a), micros(b), a / b),
            )
        }),
    );
    push(
        "latency p99 at least 100x below psutil wait_procs()",
        ours.zip(psutil).map(|(a, b)| {
            (
                b >= 100.0 * a,
                format!("{} against {} ({:.0}x below)", micros(a), micros(b), b / a),
            )
        }),
    );

    let ours = get("idle-1000", Tool::Waitprocs, window_cpu);
    let floor = get("idle-1000", Tool::WaitpidLoop, window_cpu);
    let psutil = get("idle-1000", Tool::PsutilWaitProcs, window_cpu);
    push(
        "CPU over the idle window at N=1,000 at most 0.85x the waitpid(-1) loop's",
        ours.zip(floor).map(|(a, b)| {
            (
                a <= 0.85 * b,
                format!("{} against {} ({:.2}x)", millis(a), millis(b), a / b),
            )
        }),
    );
    push(
        "CPU over the idle window at N=1,000 at most 1/10 of psutil wait_procs()'s",
        ours.zip(psutil).map(|(a, b)| {
            (
                a <= 0.1 * b,
                format!("{} against {} ({:.4}x)", millis(a), millis(b), a / b),
            )
        }),
    );
    let switches = get("idle-1000", Tool::Waitprocs, window_voluntary);
    let delivered = get("idle-1000", Tool::Waitprocs, exits);
    push(
        "voluntary context switches over the idle window at N=1,000 at most exits + 10",
        switches
            .zip(delivered)
            .map(|(s, e)| (s <= e + 10.0, format!("{s:.0} switches for {e:.0} exits"))),
    );

    let ours = get("idle-3000", Tool::Waitprocs, window_cpu);
    let floor = get("idle-3000", Tool::WaitpidLoop, window_cpu);
    push(
        "CPU with 3,000 concurrent children at most 0.3x the waitpid(-1) loop's",
        ours.zip(floor).map(|(a, b)| {
            (
                a <= 0.3 * b,
                format!("{} against {} ({:.2}x)", millis(a), millis(b), a / b),
            )
        }),
    );

    let ours = get("throughput", Tool::Waitprocs, exits_per_second);
    let floor = get("throughput", Tool::WaitpidLoop, exits_per_second);
    let tokio = get("throughput", Tool::Tokio, exits_per_second);
    push(
        "throughput at least 0.95x the waitpid(-1) loop's",
        ours.zip(floor).map(|(a, b)| {
            (
                a >= 0.95 * b,
                format!("{a:.0}/s against {b:.0}/s ({:.2}x)", a / b),
            )
        }),
    );
    push(
        "throughput at least tokio's",
        ours.zip(tokio)
            .map(|(a, b)| (a >= b, format!("{a:.0}/s against {b:.0}/s ({:.2}x)", a / b))),
    );

    let register = get("memory", Tool::Waitprocs, register_per_process);
    let criterion = document["criterion"]["register_pid"].as_f64();
    push(
        "registration under 5 µs per process",
        register.map(|ns| {
            let micro = criterion
                .map(|c| format!("; criterion register_pid {}", micros(c)))
                .unwrap_or_default();
            (
                ns < 5000.0 && criterion.is_none_or(|c| c < 5000.0),
                format!("{} per process over the memory scenario{micro}", micros(ns)),
            )
        }),
    );
    let bytes = get("memory", Tool::Waitprocs, bytes_per_process);
    push(
        "under 300 bytes of waiter memory per watched process",
        bytes.map(|b| {
            (
                b < 300.0,
                format!("{b:.0} bytes (RSS delta over the registrations / N)"),
            )
        }),
    );

    let scale = find(document, "scale");
    let n = scale.and_then(|s| s["n"].as_f64());
    let delivered = get("scale", Tool::Waitprocs, exits);
    push(
        "scale: every exit delivered",
        delivered
            .zip(n)
            .map(|(d, n)| (d == n, format!("{d:.0} of {n:.0}"))),
    );
    let idle = get("scale", Tool::Waitprocs, idle_cpu_percent);
    push(
        "scale: idle CPU under 1% of one core",
        idle.map(|p| (p < 1.0, format!("{}% of a core", significant(p)))),
    );
    list
}

const BEGIN: &str = "<!-- bench-run:begin -->";
const END: &str = "<!-- bench-run:end -->";

/// Replaces the generated part of the report file, between its markers, and
/// keeps the rest. Creates the file with the markers if it does not exist.
pub(crate) fn write_doc(path: &Path, generated: &str) -> io::Result<()> {
    let existing = fs::read_to_string(path).unwrap_or_default();
    let block = format!("{BEGIN}\n{generated}\n{END}");
    let updated = match (existing.find(BEGIN), existing.find(END)) {
        (Some(start), Some(end)) if start < end => {
            format!(
                "{}{block}{}",
                &existing[..start],
                &existing[end + END.len()..]
            )
        }
        _ => format!("# Benchmarks\n\n{block}\n{existing}"),
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(path, updated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let data = json!({ "latencies_ns": (1..=100).collect::<Vec<u64>>() });
        assert_eq!(p50(&data), Some(50.0));
        assert_eq!(p99(&data), Some(99.0));
        assert_eq!(max(&data), Some(100.0));
        assert_eq!(p50(&json!({ "latencies_ns": [] })), None);
    }

    #[test]
    fn median_of_even_count_averages() {
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(vec![5.0]), Some(5.0));
        assert_eq!(median(Vec::new()), None);
    }

    #[test]
    fn ratio_handles_zero() {
        assert_eq!(ratio(0.0, 0.0), "=");
        assert_eq!(ratio(1.0, 0.0), "∞");
        assert_eq!(ratio(1.0, 2.0), "0.500x");
    }

    #[test]
    fn doc_keeps_text_outside_markers() {
        let dir = std::env::temp_dir().join(format!("bench-run-doc-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("creating a temporary folder");
        let path = dir.join("BENCHMARKS.md");
        fs::write(&path, format!("intro\n{BEGIN}\nold\n{END}\nanalysis\n"))
            .expect("writing the file");

        write_doc(&path, "new").expect("rewriting the file");
        let text = fs::read_to_string(&path).expect("reading the file");
        assert_eq!(text, format!("intro\n{BEGIN}\nnew\n{END}\nanalysis\n"));
        fs::remove_dir_all(&dir).expect("removing the temporary folder");
    }
}
