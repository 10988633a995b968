//! Runs every benchmark scenario with waitprocs and its peers, prints a table
//! of medians with the ratio waitprocs/peer, and optionally writes the
//! report section of docs/BENCHMARKS.md and its plots.
//!
//! `benches/run.sh` is the usual entry point: it builds this binary, sets up
//! the Python virtualenv with psutil and matplotlib, and passes the paths.
// The harness measures Linux mechanisms and Linux peers; elsewhere it builds
// to an empty program so that the workspace still type-checks.
#![cfg_attr(not(target_os = "linux"), no_main)]
#![cfg(target_os = "linux")]

mod machine;
mod report;
mod scenarios;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use scenarios::{not_applicable, Scenario, Sizes, Tool};

#[derive(Debug)]
struct Options {
    smoke: bool,
    reps: usize,
    out: PathBuf,
    doc: Option<PathBuf>,
    plots: Option<PathBuf>,
    python: Option<PathBuf>,
    only: Option<Vec<String>>,
    bin_dir: PathBuf,
    peers_dir: PathBuf,
    criterion: Option<PathBuf>,
    command: String,
}

const USAGE: &str = "usage: bench-run [--smoke] [--reps N] [--out DIR] [--doc FILE] [--plots DIR] \
[--python PATH] [--only ID,...] [--criterion DIR] [--command TEXT]";

fn parse_options() -> io::Result<Options> {
    let exe = std::env::current_exe()?;
    let bin_dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut options = Options {
        smoke: false,
        reps: 3,
        out: bin_dir.join("bench-results"),
        doc: None,
        plots: None,
        python: None,
        only: None,
        bin_dir,
        peers_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers"),
        criterion: None,
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let mut args = std::env::args().skip(1);
    let invalid = |message: String| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{message}\n{USAGE}"))
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| invalid(format!("missing value after {name}")))
        };
        match arg.as_str() {
            "--smoke" => options.smoke = true,
            "--reps" => {
                let text = value("--reps")?;
                options.reps = text.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                    invalid(format!(
                        "invalid --reps {text:?}: expected a positive integer"
                    ))
                })?;
            }
            "--out" => options.out = value("--out")?.into(),
            "--doc" => options.doc = Some(value("--doc")?.into()),
            "--plots" => options.plots = Some(value("--plots")?.into()),
            "--python" => options.python = Some(value("--python")?.into()),
            "--only" => {
                options.only = Some(value("--only")?.split(',').map(str::to_owned).collect())
            }
            "--criterion" => options.criterion = Some(value("--criterion")?.into()),
            "--command" => options.command = value("--command")?,
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(invalid(format!("unknown option {other:?}"))),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    match parse_options().and_then(|options| run(&options)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("bench-run: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Checks that the interpreter can import psutil; returns why not otherwise.
fn python_problem(options: &Options) -> Option<String> {
    let Some(python) = &options.python else {
        return Some(
            "no Python given (--python); benches/run.sh sets up a virtualenv with psutil".into(),
        );
    };
    let status = Command::new(python)
        .args(["-c", "import psutil"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match status {
        Ok(status) if status.success() => None,
        Ok(_) => Some(format!("{} cannot import psutil", python.display())),
        Err(error) => Some(format!("cannot run {}: {error}", python.display())),
    }
}

/// Runs every selected scenario and writes the reports. Returns whether every
/// run that was attempted produced numbers.
fn run(options: &Options) -> io::Result<bool> {
    let work = options.out.join("work");
    fs::create_dir_all(&work)?;
    let started = Instant::now();
    let mut machine = machine::describe();
    let python_problem = python_problem(options);
    let mut list = scenarios::scenarios(Sizes {
        smoke: options.smoke,
        reps: if options.smoke { 1 } else { options.reps },
    });
    if let Some(only) = &options.only {
        list.retain(|scenario| {
            only.iter()
                .any(|id| scenario.id == *id || scenario.id.starts_with(&format!("{id}-")))
        });
    }

    let mut all_ok = true;
    let mut results = Vec::new();
    for scenario in &list {
        eprintln!("== {} ({})", scenario.title, scenario.id);
        let mut runs = Vec::new();
        let mut skipped = serde_json::Map::new();
        for tool in Tool::ALL {
            let reason = if !scenario.tools.contains(&tool) {
                Some("not run in this scenario".to_owned())
            } else if let Some(reason) = not_applicable(tool, scenario.kind) {
                Some(reason.to_owned())
            } else if tool.is_python() && python_problem.is_some() {
                python_problem.clone()
            } else {
                machine::cannot_hold(scenario, tool)
            };
            if let Some(reason) = reason {
                skipped.insert(tool.id().into(), reason.into());
            }
        }
        // Repetitions are the outer loop, so that a change in machine load
        // during the scenario falls on every tool alike.
        for rep in 0..scenario.reps {
            for tool in Tool::ALL {
                if skipped.contains_key(tool.id()) {
                    continue;
                }
                let record = run_waiter(options, scenario, tool, rep, &work);
                if !record["ok"].as_bool().unwrap_or(false) {
                    all_ok = false;
                }
                runs.push(record);
            }
        }
        results.push(json!({
            "id": scenario.id,
            "title": scenario.title,
            "group": format!("{:?}", scenario.group),
            "n": scenario.plan.n,
            "idle_ms": scenario.plan.idle_ms,
            "spread_ms": scenario.plan.spread_ms,
            "hold_ms": scenario.hold_ms,
            "inflight": scenario.inflight,
            "nofile": scenario.nofile,
            "reps": scenario.reps,
            "skipped": skipped,
            "runs": runs,
        }));
    }
    machine["load_average_end"] = machine::load_average().into();
    let criterion = options
        .criterion
        .as_deref()
        .map(report::read_criterion)
        .unwrap_or(Value::Null);
    let document = json!({
        "mode": if options.smoke { "smoke" } else { "full" },
        "revision": revision(),
        "command": options.command,
        "elapsed_s": started.elapsed().as_secs_f64(),
        "machine": machine,
        "criterion": criterion,
        "scenarios": results,
    });
    let results_path = options.out.join("results.json");
    fs::write(&results_path, serde_json::to_string_pretty(&document)?)?;
    eprintln!("results: {}", results_path.display());

    let text = report::render(&document, options.plots.is_some());
    println!("{text}");
    if let Some(plots) = &options.plots {
        plot(options, &results_path, plots);
    }
    if let Some(doc) = &options.doc {
        report::write_doc(doc, &text)?;
        eprintln!("report: {}", doc.display());
    }
    let produced = report::every_scenario_has_numbers(&document);
    if !produced {
        eprintln!("bench-run: some scenario produced no numbers; see the table");
    }
    Ok(all_ok && produced)
}

/// Starts one waiter and waits for its JSON, stopping it at the scenario's timeout.
fn run_waiter(
    options: &Options,
    scenario: &Scenario,
    tool: Tool,
    rep: usize,
    work: &Path,
) -> Value {
    // Let the previous run's children and their parent finish leaving.
    std::thread::sleep(Duration::from_millis(200));

    let command = waiter_command(options, scenario, tool, work);
    let label = format!("{}-{}-{rep}", scenario.id, tool.id());
    let stdout_path = work.join(format!("{label}.json"));
    let stderr_path = work.join(format!("{label}.err"));
    let outcome = execute(command, scenario.timeout(), &stdout_path, &stderr_path);
    let _ = fs::remove_file(&stdout_path);

    match outcome {
        Ok(data) => {
            let ok = report::run_is_complete(&data);
            eprintln!("  {:<14} rep {rep}: {}", tool.id(), report::one_line(&data));
            json!({"tool": tool.id(), "rep": rep, "ok": ok, "data": data})
        }
        Err(error) => {
            eprintln!("  {:<14} rep {rep}: FAILED: {error}", tool.id());
            json!({"tool": tool.id(), "rep": rep, "ok": false, "error": error.to_string()})
        }
    }
}

/// Builds the command line of one waiter: the Rust `bench-waiter` or the
/// psutil script, with the scenario's sizes as `KEY=VALUE` arguments.
fn waiter_command(options: &Options, scenario: &Scenario, tool: Tool, work: &Path) -> Command {
    let mut command = if tool.is_python() {
        let mut command = Command::new(options.python.as_deref().unwrap_or(Path::new("python3")));
        command.arg(options.peers_dir.join("psutil_waiter.py"));
        command
    } else {
        Command::new(options.bin_dir.join("bench-waiter"))
    };
    let plan = scenario.plan;
    command
        .arg(tool.id())
        .arg(scenario.kind.arg())
        .arg(format!("n={}", plan.n))
        .arg(format!("idle_ms={}", plan.idle_ms))
        .arg(format!("spread_ms={}", plan.spread_ms))
        .arg(format!("hold_ms={}", scenario.hold_ms))
        .arg(format!("inflight={}", scenario.inflight))
        .arg(format!(
            "child={}",
            options.bin_dir.join("bench-child").display()
        ))
        .arg(format!("work={}", work.display()));
    if let Some(nofile) = scenario.nofile {
        command.arg(format!("nofile={nofile}"));
    }
    command
}

/// Runs a waiter with its output in files (a pipe could fill up while the
/// runner only polls), kills it past `timeout`, and parses its JSON.
fn execute(
    mut command: Command,
    timeout: Duration,
    stdout_path: &Path,
    stderr_path: &Path,
) -> io::Result<Value> {
    command
        .stdin(Stdio::null())
        .stdout(File::create(stdout_path)?)
        .stderr(File::create(stderr_path)?);
    let started = Instant::now();
    let mut child = command.spawn()?;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > timeout {
            child.kill()?;
            child.wait()?;
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("timed out after {} s and was killed", timeout.as_secs()),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };

    if !status.success() {
        let stderr = fs::read_to_string(stderr_path).unwrap_or_default();
        return Err(io::Error::other(format!(
            "exited with {status}: {}",
            stderr.trim()
        )));
    }
    let text = fs::read_to_string(stdout_path)?;
    serde_json::from_str(text.trim())
        .map_err(|error| io::Error::other(format!("invalid JSON from the waiter: {error}")))
}

/// Draws the plots with the Python interpreter; a failure is reported and the
/// run goes on, since the table is the result.
fn plot(options: &Options, results: &Path, plots: &Path) {
    let Some(python) = &options.python else {
        eprintln!("plots skipped: no Python given (--python)");
        return;
    };
    let status = Command::new(python)
        .arg(options.peers_dir.join("plot.py"))
        .arg(results)
        .arg(plots)
        .status();
    match status {
        Ok(status) if status.success() => eprintln!("plots: {}", plots.display()),
        Ok(status) => eprintln!("plots failed: plot.py exited with {status}"),
        Err(error) => eprintln!("plots failed: cannot run {}: {error}", python.display()),
    }
}

/// Describes the source of the engine that was built: the commit, and whether
/// waitprocs-core or waitprocs had uncommitted changes.
fn revision() -> String {
    let manifest = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(manifest)
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let Some(commit) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown revision (not a git checkout)".into();
    };
    let paths = [
        "status",
        "--porcelain",
        "--",
        "../crates/waitprocs-core",
        "../crates/waitprocs",
    ];
    let dirty = git(&paths).is_some_and(|text| !text.is_empty());
    if dirty {
        format!("commit {commit} with uncommitted changes in the library crates")
    } else {
        format!("commit {commit}")
    }
}
