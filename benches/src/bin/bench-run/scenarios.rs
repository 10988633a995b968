//! The scenarios, the tools that run them, and the sizes of a full and a
//! smoke run.

use std::time::Duration;

use waitprocs_benches::Plan;

/// One way of waiting for processes, each run in its own waiter process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Tool {
    Waitprocs,
    WaitpidLoop,
    Tokio,
    PsutilWaitProcs,
    PsutilThreads,
}

impl Tool {
    pub(crate) const ALL: [Tool; 5] = [
        Tool::Waitprocs,
        Tool::WaitpidLoop,
        Tool::Tokio,
        Tool::PsutilWaitProcs,
        Tool::PsutilThreads,
    ];

    /// Returns the short id used in results and on the command line of the waiter.
    pub(crate) fn id(self) -> &'static str {
        match self {
            Tool::Waitprocs => "waitprocs",
            Tool::WaitpidLoop => "waitpid-loop",
            Tool::Tokio => "tokio",
            Tool::PsutilWaitProcs => "wait_procs",
            Tool::PsutilThreads => "threads",
        }
    }

    /// Returns the column title of the tool in the tables.
    pub(crate) fn title(self) -> &'static str {
        match self {
            Tool::Waitprocs => "waitprocs",
            Tool::WaitpidLoop => "waitpid(-1) loop",
            Tool::Tokio => "tokio Child::wait()",
            Tool::PsutilWaitProcs => "psutil wait_procs()",
            Tool::PsutilThreads => "psutil Process.wait() threads",
        }
    }

    pub(crate) fn is_python(self) -> bool {
        matches!(self, Tool::PsutilWaitProcs | Tool::PsutilThreads)
    }
}

/// Kind of work a scenario gives its waiters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Gated children of the waiter (latency, idle cost, scale).
    Children,
    /// Gated children of another process, registered by PID.
    NonChildren,
    /// `/bin/true` children spawned and reaped with a bounded number in flight.
    Throughput,
    /// Children registered by PID after all are spawned, to isolate the
    /// engine's memory and registration time.
    Memory,
}

impl Kind {
    pub(crate) fn arg(self) -> &'static str {
        match self {
            Kind::Children => "children",
            Kind::NonChildren => "nonchildren",
            Kind::Throughput => "throughput",
            Kind::Memory => "memory",
        }
    }
}

/// Table layout of a scenario in the report: which metrics it shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    Latency,
    NonChildren,
    Idle,
    Throughput,
    Scale,
    Memory,
}

#[derive(Debug, Clone)]
pub(crate) struct Scenario {
    /// Unique id, also the key in the results file.
    pub(crate) id: String,
    pub(crate) title: String,
    pub(crate) group: Group,
    pub(crate) kind: Kind,
    pub(crate) plan: Plan,
    pub(crate) hold_ms: u64,
    pub(crate) inflight: usize,
    /// Soft RLIMIT_NOFILE the waiter sets for itself; `None` raises it to the
    /// hard limit.
    pub(crate) nofile: Option<u64>,
    pub(crate) reps: usize,
    /// Tools that run it; the others get the reason from [`not_applicable`].
    pub(crate) tools: Vec<Tool>,
}

impl Scenario {
    /// Returns how long a waiter may take before the runner stops it.
    pub(crate) fn timeout(&self) -> Duration {
        // Spawning costs up to about 3 ms a process here (Python's Popen is
        // the slowest), plus the plan, plus the waiters' own grace.
        let spawn = Duration::from_millis(self.plan.n as u64 * 3);
        spawn
            + Duration::from_millis(self.plan.last_exit_ms() + self.hold_ms)
            + waitprocs_benches::grace(self.plan.n)
            + Duration::from_secs(30)
    }
}

/// Returns why `tool` cannot run a scenario of this kind, if it cannot.
pub(crate) fn not_applicable(tool: Tool, kind: Kind) -> Option<&'static str> {
    match (kind, tool) {
        (Kind::NonChildren, Tool::WaitpidLoop) => {
            Some("waitpid(2) waits only for children of the caller")
        }
        (Kind::NonChildren, Tool::Tokio) => {
            Some("tokio::process waits only for children it spawned itself")
        }
        (Kind::Memory, Tool::Waitprocs) => None,
        (Kind::Memory, _) => Some("measured for waitprocs only: the peers allocate per process in their own spawn calls, which this scenario keeps apart"),
        _ => None,
    }
}

/// Sizes of one run of the harness.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sizes {
    pub(crate) smoke: bool,
    pub(crate) reps: usize,
}

/// Builds the list of scenarios for a full or a smoke run.
pub(crate) fn scenarios(sizes: Sizes) -> Vec<Scenario> {
    let smoke = sizes.smoke;
    let reps = sizes.reps;
    let all = Tool::ALL.to_vec();
    let pick = |full: u64, small: u64| if smoke { small } else { full };
    let mut list = Vec::new();

    list.push(Scenario {
        id: "latency".into(),
        title: format!(
            "Latency: {} children exit at staggered times over {} s",
            pick(100, 20),
            pick(2000, 300) as f64 / 1000.0
        ),
        group: Group::Latency,
        kind: Kind::Children,
        plan: Plan {
            n: pick(100, 20) as usize,
            idle_ms: 300,
            spread_ms: pick(2000, 300),
        },
        hold_ms: 0,
        inflight: 0,
        nofile: None,
        // Latency runs are short and their tails noisy: take more of them.
        reps: if smoke { 1 } else { reps.max(7) },
        tools: all.clone(),
    });

    list.push(Scenario {
        id: "nonchildren".into(),
        title: format!(
            "Non-children: {} processes of another parent, which reaps them {} s after the last exit",
            pick(100, 20),
            pick(1000, 300) as f64 / 1000.0
        ),
        group: Group::NonChildren,
        kind: Kind::NonChildren,
        plan: Plan {
            n: pick(100, 20) as usize,
            idle_ms: 300,
            spread_ms: pick(2000, 300),
        },
        hold_ms: pick(1000, 300),
        inflight: 0,
        nofile: None,
        reps,
        tools: all.clone(),
    });

    let idle_sizes: &[u64] = if smoke { &[20, 50] } else { &[200, 1000, 3000] };
    for &n in idle_sizes {
        list.push(Scenario {
            id: format!("idle-{n}"),
            title: format!(
                "Idle cost: {n} children sleep {} s, then exit in random order over {} s",
                pick(10_000, 1000) / 1000,
                pick(500, 100) as f64 / 1000.0
            ),
            group: Group::Idle,
            kind: Kind::Children,
            // Exits in random order, not in spawn order: waitpid(-1) scans the
            // children list from the oldest, so spawn order is its best case.
            plan: Plan {
                n: n as usize,
                idle_ms: pick(10_000, 1000),
                spread_ms: pick(500, 100),
            },
            hold_ms: 0,
            inflight: 0,
            nofile: None,
            reps,
            tools: all.clone(),
        });
    }

    list.push(Scenario {
        id: "throughput".into(),
        title: format!(
            "Throughput: spawn and reap {} /bin/true, at most {} in flight",
            pick(5000, 200),
            pick(64, 16)
        ),
        group: Group::Throughput,
        kind: Kind::Throughput,
        plan: Plan {
            n: pick(5000, 200) as usize,
            idle_ms: 0,
            spread_ms: 0,
        },
        hold_ms: 0,
        inflight: pick(64, 16) as usize,
        nofile: None,
        reps,
        tools: all.clone(),
    });

    list.push(Scenario {
        id: "scale".into(),
        title: format!(
            "Scale: {} children, soft descriptor limit {}, idle {} s, exits over {} s",
            pick(20_000, 300),
            pick(1024, 64),
            pick(5000, 1000) / 1000,
            pick(2000, 300) as f64 / 1000.0
        ),
        group: Group::Scale,
        kind: Kind::Children,
        plan: Plan {
            n: pick(20_000, 300) as usize,
            idle_ms: pick(5000, 1000),
            spread_ms: pick(2000, 300),
        },
        hold_ms: 0,
        inflight: 0,
        nofile: Some(pick(1024, 64)),
        reps: 1,
        tools: all.clone(),
    });

    list.push(Scenario {
        id: "memory".into(),
        title: format!(
            "Cost per process: register {} running children by PID",
            pick(10_000, 200)
        ),
        group: Group::Memory,
        kind: Kind::Memory,
        plan: Plan {
            n: pick(10_000, 200) as usize,
            idle_ms: 300,
            spread_ms: pick(1000, 300),
        },
        hold_ms: 0,
        inflight: 0,
        nofile: None,
        reps: 1,
        tools: all,
    });
    list
}
