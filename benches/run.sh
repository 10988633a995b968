#!/usr/bin/env bash
# Runs the whole benchmark: waitprocs against psutil, tokio and a waitpid(-1)
# loop, in one command.
#
#   benches/run.sh            full run (about 15 minutes on 2 cores); writes
#                             docs/BENCHMARKS.md and docs/bench/*.png
#   benches/run.sh --smoke    tiny sizes, no report file, no plots; checks only
#                             that every scenario ran and produced numbers
#
# Extra arguments go to bench-run (see `bench-run --help`), for example
# `--reps 5` or `--only latency,throughput`. The psutil peer runs in a
# virtualenv at $WAITPROCS_BENCH_VENV (default: a folder in the target dir).
set -euo pipefail

PSUTIL_VERSION=7.2.2
MATPLOTLIB_VERSION=3.11.2

root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
venv="${WAITPROCS_BENCH_VENV:-$target/bench-venv}"

smoke=false
for arg in "$@"; do
    [ "$arg" = "--smoke" ] && smoke=true
done

packages=("psutil==$PSUTIL_VERSION")
$smoke || packages+=("matplotlib==$MATPLOTLIB_VERSION")
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" - "${packages[@]}" <<'PY'
import importlib.metadata as metadata
import sys
for spec in sys.argv[1:]:
    name, version = spec.split("==")
    if metadata.version(name) != version:
        sys.exit(1)
PY
then
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${packages[@]}"
fi

cargo build --release --manifest-path "$root/benches/Cargo.toml" --bins

args=(--python "$venv/bin/python" --out "$target/bench-results" --command "benches/run.sh${*:+ $*}")
if ! $smoke; then
    # Criterion first, so that bench-run can put its medians in the report.
    cargo bench --manifest-path "$root/benches/Cargo.toml" --bench micro -- \
        --warm-up-time 1 --measurement-time 3
    args+=(--criterion "$target/criterion" --doc "$root/docs/BENCHMARKS.md" --plots "$root/docs/bench")
fi
exec "$target/release/bench-run" "${args[@]}" "$@"
