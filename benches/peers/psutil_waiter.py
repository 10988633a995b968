#!/usr/bin/env python3
"""One measured psutil waiter: ``psutil_waiter.py TOOL SCENARIO KEY=VALUE...``.

TOOL is ``wait_procs`` (psutil.wait_procs() over every process) or
``threads`` (one thread per process, each in psutil.Process.wait()).
SCENARIO is ``children``, ``nonchildren`` or ``throughput``. The keys and the
JSON object printed on stdout are those of the Rust ``bench-waiter``, so
``bench-run`` treats both alike. Both use the same children, the same gate and
the same clock (CLOCK_MONOTONIC). Both sample the waiter's own CPU time and
context switches the same way, leaving out the sampler thread's own.
"""

import json
import os
import resource
import subprocess
import sys
import threading
import time

import psutil

MASK64 = (1 << 64) - 1


def monotonic_ns():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


# The sampler thread's own CPU time and context switches when it last went to
# sleep, so that samples can leave them out.
_sampler = {"ident": None, "cpu_ns": 0, "voluntary": 0, "involuntary": 0}


def _sampler_usage(on_sampler):
    if on_sampler:
        usage = resource.getrusage(resource.RUSAGE_THREAD)
        cpu = time.clock_gettime_ns(time.CLOCK_THREAD_CPUTIME_ID)
        return cpu, usage.ru_nvcsw, usage.ru_nivcsw
    return _sampler["cpu_ns"], _sampler["voluntary"], _sampler["involuntary"]


def _sampler_rest():
    cpu, voluntary, involuntary = _sampler_usage(True)
    _sampler.update(cpu_ns=cpu, voluntary=voluntary, involuntary=involuntary)


# Opened before the waiter can run out of descriptors (the scale scenario runs
# at the limit, and waiting threads hold one pidfd each).
_status_fd = os.open("/proc/self/status", os.O_RDONLY)


def rss_kib():
    text = os.pread(_status_fd, 16384, 0).decode()
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def take_sample():
    """Sample the process, leaving out the sampler thread (see the Rust Sample)."""
    on_sampler = threading.get_ident() == _sampler["ident"]
    own_cpu, own_voluntary, own_involuntary = _sampler_usage(on_sampler)
    cpu_ns = time.clock_gettime_ns(time.CLOCK_PROCESS_CPUTIME_ID) - own_cpu
    at_ns = monotonic_ns()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    rss = rss_kib()
    own_cpu_after = _sampler_usage(on_sampler)[0]
    cpu_after_ns = time.clock_gettime_ns(time.CLOCK_PROCESS_CPUTIME_ID) - own_cpu_after
    return {
        "at_ns": at_ns,
        "cpu_ns": cpu_ns,
        "cpu_after_ns": cpu_after_ns,
        "voluntary": usage.ru_nvcsw - own_voluntary,
        "involuntary": usage.ru_nivcsw - own_involuntary,
        "rss_kib": rss,
    }


def since(later, earlier, prefix, out):
    out[prefix + "_wall_ns"] = max(0, later["at_ns"] - earlier["at_ns"])
    out[prefix + "_cpu_ns"] = max(0, later["cpu_ns"] - earlier["cpu_after_ns"])
    out[prefix + "_voluntary"] = max(0, later["voluntary"] - earlier["voluntary"])
    out[prefix + "_involuntary"] = max(0, later["involuntary"] - earlier["involuntary"])


class Sampler:
    """A thread that samples at offsets from a base instant given by arm()."""

    def __init__(self, offsets_ns):
        self.offsets_ns = offsets_ns
        self.samples = []
        self.base_ns = None
        self.armed = threading.Event()
        self.stop = threading.Event()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), name="sampler", daemon=True)
        self.thread.start()
        ready.wait()

    def _run(self, ready):
        _sampler["ident"] = threading.get_ident()
        _sampler_rest()
        ready.set()
        self.armed.wait()
        for offset in self.offsets_ns:
            if self.base_ns is None:
                break
            target = self.base_ns + offset
            while True:
                now = monotonic_ns()
                if now >= target:
                    break
                _sampler_rest()
                if self.stop.wait((target - now) / 1e9):
                    return
            self.samples.append(take_sample())
        _sampler_rest()
        self.stop.wait()

    def arm(self, base_ns):
        self.base_ns = base_ns
        self.armed.set()

    def finish(self):
        self.stop.set()
        self.armed.set()
        self.thread.join()
        _sampler["ident"] = None
        return self.samples


def splitmix64(seed):
    z = (seed + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


class Plan:
    """Exit offsets after the gate opens; the same schedule as the Rust Plan."""

    def __init__(self, n, idle_ms, spread_ms):
        self.n, self.idle_ms, self.spread_ms = n, idle_ms, spread_ms

    def offset_us(self, index):
        spread_us = self.spread_ms * 1000
        jitter = 0 if spread_us == 0 else splitmix64(index) % (spread_us + 1)
        return self.idle_ms * 1000 + jitter

    def last_exit_ms(self):
        return self.idle_ms + self.spread_ms

    def idle_offsets_ns(self):
        start, end = 200, self.idle_ms - 100
        if end < start + 200:
            return []
        return [start * 1_000_000, end * 1_000_000]


def grace_s(n):
    return 30 + n * 0.005


def read_records(fd):
    chunks, offset = [], 0
    while True:
        chunk = os.pread(fd, 1 << 20, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    exits = {}
    for line in b"".join(chunks).decode().splitlines():
        words = line.split()
        if len(words) == 2:
            exits[int(words[0])] = int(words[1])
    return exits


def set_nofile(soft):
    current_soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if soft is None else soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted if wanted != resource.RLIM_INFINITY else 2**64 - 1


def finish(plan, detected, timed_out, records_path, records_fd, out):
    exits = read_records(records_fd)
    os.close(records_fd)
    latencies, missing = [], 0
    for pid, at in detected:
        if pid in exits:
            latencies.append(max(0, at - exits[pid]))
        else:
            missing += 1
    out.update(
        n=plan.n,
        exits=len(detected),
        stamped=len(exits),
        missing_stamps=missing,
        timed_out=timed_out,
        latencies_ns=latencies,
    )
    os.remove(records_path)


def record_samples(start, end, idle, out):
    since(end, start, "window", out)
    out["rss_start_kib"] = start["rss_kib"]
    out["rss_end_kib"] = end["rss_kib"]
    if len(idle) == 2:
        since(idle[1], idle[0], "idle", out)


def wait_all(tool, procs, deadline_s, detected):
    """Wait for procs with the given tool; return whether the deadline passed."""
    if tool == "wait_procs":

        def on_terminate(proc):
            detected.append((proc.pid, monotonic_ns()))

        _gone, alive = psutil.wait_procs(procs, timeout=deadline_s, callback=on_terminate)
        return bool(alive)
    for thread in procs:
        thread.join(max(0.0, deadline_s))
    return len(detected) < len(procs)


def start_threads(procs, detected):
    """Start one thread per process, blocked in Process.wait()."""

    def wait_one(proc):
        proc.wait()
        detected.append((proc.pid, monotonic_ns()))

    threads = [threading.Thread(target=wait_one, args=(proc,), daemon=True) for proc in procs]
    for thread in threads:
        thread.start()
    # Let every thread reach its blocking call before the window opens.
    time.sleep(0.05 + len(threads) * 20e-6)
    return threads


def children(tool, plan, args, out):
    records_path = os.path.join(args["work"], f"records-{os.getpid()}.txt")
    open(records_path, "w").close()
    records = open(records_path, "ab")
    records_fd = os.open(records_path, os.O_RDONLY)
    gate_read, gate_write = os.pipe()
    started = monotonic_ns()
    procs = []
    for index in range(plan.n):
        command = [args["child"], "exit-after", str(plan.offset_us(index))]
        procs.append(psutil.Popen(command, stdin=gate_read, stdout=records))
    out["spawn_ns"] = monotonic_ns() - started
    records.close()

    detected = []
    waiting = start_threads(procs, detected) if tool == "threads" else procs
    sampler = Sampler(plan.idle_offsets_ns())
    start = take_sample()
    os.close(gate_write)
    os.close(gate_read)
    opened = monotonic_ns()
    sampler.arm(opened)
    deadline_s = plan.last_exit_ms() / 1000 + grace_s(plan.n)
    timed_out = wait_all(tool, waiting, deadline_s, detected)
    end = take_sample()
    record_samples(start, end, sampler.finish(), out)
    finish(plan, list(detected), timed_out, records_path, records_fd, out)


def nonchildren(tool, plan, args, out):
    records_path = os.path.join(args["work"], f"records-{os.getpid()}.txt")
    command = [args["child"], "hold", str(plan.n), str(plan.idle_ms), str(plan.spread_ms)]
    command += [str(args.get("hold_ms", 1000)), records_path]
    holder = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    pids = []
    for line in holder.stdout:
        line = line.strip()
        if line == b"ready":
            break
        pids.append(int(line))
    procs = [psutil.Process(pid) for pid in pids]

    detected = []
    waiting = start_threads(procs, detected) if tool == "threads" else procs
    sampler = Sampler(plan.idle_offsets_ns())
    start = take_sample()
    holder.stdin.write(b"go\n")
    holder.stdin.flush()
    sampler.arm(monotonic_ns())
    deadline_s = plan.last_exit_ms() / 1000 + grace_s(plan.n)
    timed_out = wait_all(tool, waiting, deadline_s, detected)
    end = take_sample()
    holder.stdin.close()
    record_samples(start, end, sampler.finish(), out)
    holder.wait()
    finish(plan, list(detected), timed_out, records_path, os.open(records_path, os.O_RDONLY), out)


def throughput(tool, total, inflight, out):
    command = ["/bin/true"]
    start = take_sample()
    done = 0
    if tool == "wait_procs":
        alive = []
        spawned = 0
        while done < total:
            while spawned < total and len(alive) < inflight:
                alive.append(psutil.Popen(command))
                spawned += 1
            # NOTE: 10 ms is a choice: wait_procs() returns only when all are
            # gone or the timeout passes, and refilling needs it to return.
            gone, alive = psutil.wait_procs(alive, timeout=0.01)
            done += len(gone)
    else:
        slots = threading.BoundedSemaphore(inflight)
        finished = []

        def wait_one(proc):
            proc.wait()
            finished.append(proc.pid)
            slots.release()

        threads = []
        for _ in range(total):
            slots.acquire()
            proc = psutil.Popen(command)
            thread = threading.Thread(target=wait_one, args=(proc,), daemon=True)
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()
        done = len(finished)
    end = take_sample()
    since(end, start, "window", out)
    out.update(n=total, exits=done, timed_out=False)


def main(argv):
    if len(argv) < 3 or argv[1] not in ("wait_procs", "threads"):
        print("usage: psutil_waiter.py wait_procs|threads SCENARIO KEY=VALUE...", file=sys.stderr)
        return 2
    tool, scenario = argv[1], argv[2]
    args = dict(pair.split("=", 1) for pair in argv[3:])
    nofile = int(args["nofile"]) if "nofile" in args else None
    out = {"nofile": set_nofile(nofile), "psutil_version": psutil.__version__}
    plan = Plan(int(args.get("n", 100)), int(args.get("idle_ms", 200)), int(args.get("spread_ms", 2000)))
    # Thousands of waiting threads need little stack each.
    threading.stack_size(256 * 1024)
    if scenario == "children":
        children(tool, plan, args, out)
    elif scenario == "nonchildren":
        args["hold_ms"] = int(args.get("hold_ms", 1000))
        nonchildren(tool, plan, args, out)
    elif scenario == "throughput":
        throughput(tool, plan.n, int(args.get("inflight", 64)), out)
    else:
        print(f"psutil_waiter.py: scenario {scenario} is not supported", file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
