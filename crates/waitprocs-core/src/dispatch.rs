//! The decision for a process that the poller or the fallback lane flagged.
//!
//! It is a pure state machine over three queries to the system (`reap`,
//! `exit_info`, `probe`), so small mocks can test it. The shard feeds it the
//! real backend.

use std::io;

use crate::status::{ExitStatus, ResourceUsage};
use crate::sys::{Liveness, Reap};

/// The relation of a registered process to the caller, fixed at registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A child of the caller: the engine reaps it (or, with `keep`, only reads
    /// its status and leaves it waitable).
    Child { keep: bool },
    /// Any other process: its exit is observed, never reaped.
    Other,
}

/// The reason the process is being looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// The kernel reported the process exited (a readable pidfd or `NOTE_EXIT`).
    Exited,
    /// A fallback-lane timer fired; the process may still be running.
    Timer,
}

/// The queries `decide` makes about one process.
pub(crate) trait Probe {
    /// Reaps the child without blocking (`keep`: read the status only).
    fn reap(&mut self, keep: bool) -> io::Result<Reap>;
    /// Returns the status the kernel kept for a process reaped by someone else.
    fn exit_info(&mut self) -> Option<ExitStatus>;
    /// Returns the state of a process we cannot wait on.
    fn liveness(&mut self) -> Liveness;
}

/// What to do with the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// It has ended: report this status and forget it.
    Report(ExitStatus, Option<ResourceUsage>),
    /// Not ended, or not reapable yet: look again after a back-off.
    Retry,
}

/// Decides whether a flagged process has ended and how.
///
/// `status_pending` is set while a non-child's parent may still reap it, after
/// which the kernel keeps its status: the exit is then retried, not reported
/// as `Unknown`, until the caller's grace period is over.
pub(crate) fn decide(
    origin: Origin,
    trigger: Trigger,
    status_pending: bool,
    probe: &mut impl Probe,
) -> Decision {
    match origin {
        Origin::Child { keep } => match probe.reap(keep) {
            Ok(Reap::Exited(status, usage)) => Decision::Report(status, usage),
            // A readable pidfd whose child is not reapable yet (a tracer holds
            // it, for example) is retried on a timer, never reported and never
            // re-armed at once, which would spin.
            Ok(Reap::NotYet) => Decision::Retry,
            // ECHILD for our own child: the kernel reaped it (SIGCHLD ignored or
            // SA_NOCLDWAIT) or another waiter took it. It is gone either way.
            Ok(Reap::NotChild) => {
                Decision::Report(probe.exit_info().unwrap_or(ExitStatus::Unknown), None)
            }
            Err(error) => {
                // The errnos waitid documents here (EINVAL, EFAULT) cannot
                // occur for a valid pidfd and buffers. Report the process as
                // gone rather than retry forever on an error that will repeat.
                tracing::debug!(%error, "waitid failed on a registered child");
                Decision::Report(probe.exit_info().unwrap_or(ExitStatus::Unknown), None)
            }
        },
        Origin::Other => match trigger {
            Trigger::Exited => match probe.exit_info() {
                Some(status) => Decision::Report(status, None),
                None if status_pending => Decision::Retry,
                None => Decision::Report(ExitStatus::Unknown, None),
            },
            Trigger::Timer => match probe.liveness() {
                Liveness::Running => Decision::Retry,
                Liveness::Zombie | Liveness::Gone => {
                    Decision::Report(probe.exit_info().unwrap_or(ExitStatus::Unknown), None)
                }
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Mock {
        reap: Option<Reap>,
        reap_error: bool,
        info: Option<ExitStatus>,
        liveness: Option<Liveness>,
        kept: Option<bool>,
    }

    impl Probe for Mock {
        fn reap(&mut self, keep: bool) -> io::Result<Reap> {
            self.kept = Some(keep);
            if self.reap_error {
                return Err(io::Error::from_raw_os_error(22));
            }
            Ok(self.reap.expect("reap not expected"))
        }
        fn exit_info(&mut self) -> Option<ExitStatus> {
            self.info
        }
        fn liveness(&mut self) -> Liveness {
            self.liveness.expect("liveness not expected")
        }
    }

    const CHILD: Origin = Origin::Child { keep: false };

    #[test]
    fn child_reaped_reports_status() {
        let mut mock = Mock {
            reap: Some(Reap::Exited(ExitStatus::Exited(127), None)),
            ..Mock::default()
        };
        assert_eq!(
            decide(CHILD, Trigger::Exited, false, &mut mock),
            Decision::Report(ExitStatus::Exited(127), None)
        );
        assert_eq!(mock.kept, Some(false));
    }

    #[test]
    fn kept_child_reads_without_reaping() {
        let mut mock = Mock {
            reap: Some(Reap::Exited(ExitStatus::Exited(5), None)),
            ..Mock::default()
        };
        decide(
            Origin::Child { keep: true },
            Trigger::Exited,
            false,
            &mut mock,
        );
        assert_eq!(mock.kept, Some(true));
    }

    #[test]
    fn child_not_reapable_yet_retries() {
        let mut mock = Mock {
            reap: Some(Reap::NotYet),
            ..Mock::default()
        };
        assert_eq!(
            decide(CHILD, Trigger::Exited, false, &mut mock),
            Decision::Retry
        );
        assert_eq!(
            decide(CHILD, Trigger::Timer, false, &mut mock),
            Decision::Retry
        );
    }

    #[test]
    fn child_reaped_elsewhere_uses_kept_info() {
        let signaled = ExitStatus::Signaled {
            signal: 15,
            core_dumped: false,
        };
        let mut mock = Mock {
            reap: Some(Reap::NotChild),
            info: Some(signaled),
            ..Mock::default()
        };
        assert_eq!(
            decide(CHILD, Trigger::Exited, false, &mut mock),
            Decision::Report(signaled, None)
        );
    }

    #[test]
    fn child_reaped_elsewhere_without_info_is_unknown() {
        let mut mock = Mock {
            reap: Some(Reap::NotChild),
            ..Mock::default()
        };
        assert_eq!(
            decide(CHILD, Trigger::Exited, false, &mut mock),
            Decision::Report(ExitStatus::Unknown, None)
        );
    }

    #[test]
    fn child_waitid_error_is_reported_not_retried() {
        let mut mock = Mock {
            reap_error: true,
            ..Mock::default()
        };
        assert_eq!(
            decide(CHILD, Trigger::Exited, false, &mut mock),
            Decision::Report(ExitStatus::Unknown, None)
        );
    }

    #[test]
    fn other_exit_event_reports_without_reaping() {
        let mut mock = Mock {
            info: Some(ExitStatus::Exited(3)),
            ..Mock::default()
        };
        assert_eq!(
            decide(Origin::Other, Trigger::Exited, false, &mut mock),
            Decision::Report(ExitStatus::Exited(3), None)
        );
        assert_eq!(mock.kept, None, "a non-child must never be waited on");
    }

    #[test]
    fn other_exit_waits_for_parent_within_grace() {
        let mut mock = Mock::default();
        assert_eq!(
            decide(Origin::Other, Trigger::Exited, true, &mut mock),
            Decision::Retry
        );
        assert_eq!(
            decide(Origin::Other, Trigger::Exited, false, &mut mock),
            Decision::Report(ExitStatus::Unknown, None)
        );
        mock.info = Some(ExitStatus::Exited(9));
        assert_eq!(
            decide(Origin::Other, Trigger::Exited, true, &mut mock),
            Decision::Report(ExitStatus::Exited(9), None)
        );
    }

    #[test]
    fn other_timer_follows_liveness() {
        for (liveness, expected) in [
            (Liveness::Running, Decision::Retry),
            (
                Liveness::Zombie,
                Decision::Report(ExitStatus::Unknown, None),
            ),
            (Liveness::Gone, Decision::Report(ExitStatus::Unknown, None)),
        ] {
            let mut mock = Mock {
                liveness: Some(liveness),
                ..Mock::default()
            };
            assert_eq!(
                decide(Origin::Other, Trigger::Timer, false, &mut mock),
                expected
            );
            assert_eq!(mock.kept, None);
        }
    }
}
