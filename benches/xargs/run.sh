#!/usr/bin/env bash
# Runs N trivial jobs (`true ITEM`, one per line of `seq N`) through
# `waitprocs run`, `xargs -P` and GNU parallel at the same concurrency, and
# prints the median wall time and CPU time of 3 runs of each as a table.
#
# Usage: benches/xargs/run.sh [--smoke]
#   --smoke   200 jobs instead of 10,000 (a quick check that every runner works)
#
# CPU is user + system time of the runner and every process it waited for
# (the jobs), as GNU time reports it. "runner CPU" is the time of the runner
# process alone, which is what the runner adds to the jobs. It comes from
# `perf stat --no-inherit -e task-clock` and reads n/a where perf does not work.
# "per job" divides by the number of jobs.
# The numbers depend on the machine and on whatever else runs on it; the
# script prints the machine it ran on.
set -euo pipefail

cd "$(dirname "$0")/../.."
JOBS=10000
if [ "${1:-}" = "--smoke" ]; then
  JOBS=200
elif [ -n "${1:-}" ]; then
  echo "usage: $0 [--smoke]" >&2
  exit 2
fi
RUNS=3
CONCURRENCY="8 64"

# GNU parallel and GNU time come from Debian's packages.
need=""
command -v parallel >/dev/null || need="$need parallel"
[ -x /usr/bin/time ] || need="$need time"
if [ -n "$need" ]; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $need
fi

TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p waitprocs-cli
WAITPROCS="$TARGET_DIR/release/waitprocs"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
seq "$JOBS" > "$work/items"

PERF=""
if command -v perf >/dev/null && perf stat -e task-clock true >/dev/null 2>&1; then
  PERF="perf stat -x , --no-inherit -e task-clock -o $work/perf"
fi

# Runs one runner once; prints "wall user system runner" in seconds, with
# "nan" for the runner's own time if perf is not available.
measure() {
  # shellcheck disable=SC2086 # PERF is a command prefix, split on purpose.
  /usr/bin/time -f '%e %U %S' -o "$work/time" $PERF "$@" < "$work/items" > /dev/null 2> "$work/stderr" || {
    echo "failed: $*" >&2
    cat "$work/stderr" >&2
    exit 1
  }
  local own=nan
  if [ -n "$PERF" ]; then
    own=$(awk -F , '$3 == "task-clock" { print $1 / 1000 }' "$work/perf")
  fi
  echo "$(cat "$work/time") $own"
}

# Prints the median of the numbers on standard input.
median() {
  sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

run_case() {
  local name=$1 jobs=$2
  shift 2
  local walls="" cpus="" owns=""
  for _ in $(seq "$RUNS"); do
    read -r wall user system own < <(measure "$@")
    walls="$walls$wall"$'\n'
    cpus="$cpus$(awk -v u="$user" -v s="$system" 'BEGIN { print u + s }')"$'\n'
    owns="$owns$own"$'\n'
  done
  local wall cpu own
  wall=$(printf '%s' "$walls" | median)
  cpu=$(printf '%s' "$cpus" | median)
  own=$(printf '%s' "$owns" | median)
  awk -v name="$name" -v p="$jobs" -v n="$JOBS" -v wall="$wall" -v cpu="$cpu" -v own="$own" 'BEGIN {
    runner = (own == "nan") ? sprintf("%19s", "n/a") : sprintf("%19.3f", own * 1000 / n)
    printf "| %-30s | %3d | %8.2f | %13.3f | %7.2f | %12.3f | %s |\n", name, p, wall, wall * 1000 / n, cpu, cpu * 1000 / n, runner
  }'
}

echo "machine: $(nproc) CPUs, $(awk '/model name/ { sub(/.*: /, ""); print; exit }' /proc/cpuinfo), Linux $(uname -r)"
echo "versions: $("$WAITPROCS" --version), $(xargs --version | head -1), $(parallel --version | head -1)"
echo "$JOBS jobs of \`true ITEM\`, median of $RUNS runs"
echo "load average before the runs: $(cut -d ' ' -f 1-3 /proc/loadavg)"
echo
echo "| runner                         |   P | wall (s) | wall/job (ms) | CPU (s) | CPU/job (ms) | runner CPU/job (ms) |"
echo "|--------------------------------|----:|---------:|--------------:|--------:|-------------:|--------------------:|"
for p in $CONCURRENCY; do
  run_case "waitprocs run" "$p" "$WAITPROCS" run --jobs "$p" --no-progress --args-from - -- true
  run_case "waitprocs run --output inherit" "$p" "$WAITPROCS" run --jobs "$p" --no-progress --output inherit --args-from - -- true
  run_case "xargs -P" "$p" xargs -P "$p" -n 1 true
  run_case "parallel" "$p" parallel --will-cite -j "$p" true
done
