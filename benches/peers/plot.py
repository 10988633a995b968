#!/usr/bin/env python3
"""Draw the benchmark plots from bench-run's results.json.

Usage: plot.py RESULTS_JSON OUTPUT_DIR

Writes latency-cdf.png, nonchildren-cdf.png and scale-cdf.png (the latency
distribution of each tool, every repetition pooled) and idle-cpu.png (median
waiter CPU over the idle window against the number of children).
"""

import json
import os
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TITLES = {
    "waitprocs": "waitprocs",
    "waitpid-loop": "waitpid(-1) loop",
    "tokio": "tokio Child::wait()",
    "wait_procs": "psutil wait_procs()",
    "threads": "psutil Process.wait() threads",
}
STYLES = {
    "waitprocs": dict(color="#1f77b4", linewidth=2.4),
    "waitpid-loop": dict(color="#2ca02c", linestyle="--"),
    "tokio": dict(color="#9467bd", linestyle="-."),
    "wait_procs": dict(color="#d62728"),
    "threads": dict(color="#ff7f0e", linestyle=":"),
}


def runs_by_tool(scenario):
    by_tool = {}
    for run in scenario["runs"]:
        if "data" in run:
            by_tool.setdefault(run["tool"], []).append(run["data"])
    return by_tool


def latency_cdf(scenario, machine, path):
    figure, axes = plt.subplots(figsize=(8, 5), dpi=120)
    for tool, runs in runs_by_tool(scenario).items():
        values = sorted(v / 1000 for data in runs for v in data.get("latencies_ns", []))
        if not values:
            continue
        fractions = [(i + 1) / len(values) for i in range(len(values))]
        axes.step(values, fractions, where="post", label=TITLES.get(tool, tool), **STYLES.get(tool, {}))
    axes.set_xscale("log")
    axes.set_xlabel("exit to delivery (µs, log scale)")
    axes.set_ylabel("fraction of exits")
    axes.set_ylim(0, 1.02)
    axes.grid(True, which="both", alpha=0.3)
    axes.set_title(scenario["title"], fontsize=10)
    axes.legend(loc="lower right", fontsize=9)
    figure.text(0.01, 0.01, machine_line(machine), fontsize=7, color="#555555")
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    figure.savefig(path)
    plt.close(figure)


def idle_cpu(scenarios, machine, path):
    idle = [s for s in scenarios if s["group"] == "Idle"]
    if not idle:
        return

    figure, axes = plt.subplots(figsize=(8, 5), dpi=120)
    tools = [tool for tool in TITLES if any(runs_by_tool(s).get(tool) for s in idle)]
    for tool in tools:
        points = []
        for scenario in sorted(idle, key=lambda s: s["n"]):
            runs = runs_by_tool(scenario).get(tool, [])
            cpu = [data["window_cpu_ns"] / 1e6 for data in runs if "window_cpu_ns" in data]
            if cpu:
                points.append((scenario["n"], max(statistics.median(cpu), 1e-3)))
        if points:
            xs, ys = zip(*points)
            axes.plot(xs, ys, marker="o", label=TITLES[tool], **STYLES.get(tool, {}))

    axes.set_xscale("log")
    axes.set_yscale("log")
    sizes = sorted(s["n"] for s in idle)
    axes.set_xticks(sizes)
    axes.set_xticklabels([f"{n:,}" for n in sizes])
    axes.minorticks_off()
    axes.set_xlabel("children waited for (log scale)")
    axes.set_ylabel("waiter CPU over the window (ms, log scale)")
    window = idle[0]["idle_ms"] / 1000
    axes.set_title(f"Waiter CPU while N children sleep {window:g} s, then exit (median)", fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=9)

    figure.text(0.01, 0.01, machine_line(machine), fontsize=7, color="#555555")
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    figure.savefig(path)
    plt.close(figure)


def machine_line(machine):
    return (
        f"{machine.get('nproc')} CPUs ({machine.get('cpu_model')}), Linux {machine.get('kernel')}, "
        f"load {machine.get('load_average_start')} at start"
    )


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1]) as results:
        document = json.load(results)
    out = argv[2]
    os.makedirs(out, exist_ok=True)
    machine = document["machine"]
    scenarios = {s["id"]: s for s in document["scenarios"]}
    if "latency" in scenarios:
        latency_cdf(scenarios["latency"], machine, os.path.join(out, "latency-cdf.png"))
    if "nonchildren" in scenarios:
        latency_cdf(scenarios["nonchildren"], machine, os.path.join(out, "nonchildren-cdf.png"))
    if "scale" in scenarios:
        latency_cdf(scenarios["scale"], machine, os.path.join(out, "scale-cdf.png"))
    idle_cpu(document["scenarios"], machine, os.path.join(out, "idle-cpu.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
