//! Exit statuses and resource usage.

use std::fmt;
use std::time::Duration;

/// The way a process ended, as far as the kernel reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// The process called `exit` (or returned from `main`) with this code.
    ///
    /// On Unix the code is the low 8 bits the kernel keeps (0 to 255).
    ///
    /// On Windows it is the process's 32-bit exit code (GetExitCodeProcess)
    /// with its bits reinterpreted as `i32`, as `std::process::ExitStatus::code`
    /// does, so an NTSTATUS such as 0xC0000005 (access violation) reads as
    /// -1073741819; `code as u32` gives the original value back.
    Exited(i32),
    /// The process was terminated by a signal.
    Signaled {
        /// The signal number, as in `<signal.h>` of the platform.
        signal: i32,
        /// Whether the kernel reported that it wrote a core dump.
        core_dumped: bool,
    },
    /// The process is gone, but its status could not be obtained.
    ///
    /// This is the case for a process that is not a child of the caller, unless
    /// the kernel kept its status (see the crate docs). It is also the case for
    /// a child that someone else reaped first, and for a child the kernel
    /// reaped by itself because `SIGCHLD` is ignored.
    Unknown,
}

impl ExitStatus {
    /// Decodes a `waitpid`-style status word, as `WIFEXITED` and friends do.
    ///
    /// Returns `None` for a word that describes a stopped or continued process.
    #[cfg(unix)]
    pub fn from_wait_status(raw: i32) -> Option<Self> {
        if libc::WIFEXITED(raw) {
            Some(Self::Exited(libc::WEXITSTATUS(raw)))
        } else if libc::WIFSIGNALED(raw) {
            Some(Self::Signaled {
                signal: libc::WTERMSIG(raw),
                core_dumped: libc::WCOREDUMP(raw),
            })
        } else {
            None
        }
    }

    /// Returns `true` if the process exited with code 0.
    pub fn success(&self) -> bool {
        matches!(self, Self::Exited(0))
    }

    /// Returns the exit code, if the process exited normally.
    pub fn code(&self) -> Option<i32> {
        match self {
            Self::Exited(code) => Some(*code),
            _ => None,
        }
    }

    /// Returns the terminating signal, if a signal ended the process.
    pub fn signal(&self) -> Option<i32> {
        match self {
            Self::Signaled { signal, .. } => Some(*signal),
            _ => None,
        }
    }

    /// Returns `true` if the kernel reported a core dump.
    pub fn core_dumped(&self) -> bool {
        matches!(
            self,
            Self::Signaled {
                core_dumped: true,
                ..
            }
        )
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited(code) => write!(f, "exited with code {code}"),
            Self::Signaled {
                signal,
                core_dumped,
            } => {
                match signal_name(*signal) {
                    Some(name) => write!(f, "killed by signal {signal} ({name})")?,
                    None => write!(f, "killed by signal {signal}")?,
                }
                if *core_dumped {
                    f.write_str(", core dumped")?;
                }
                Ok(())
            }
            Self::Unknown => f.write_str("exited, status unknown"),
        }
    }
}

/// Returns the conventional name (`"SIGTERM"`) of a signal number on this platform.
pub fn signal_name(signal: i32) -> Option<&'static str> {
    #[cfg(unix)]
    {
        let name = match signal {
            libc::SIGHUP => "SIGHUP",
            libc::SIGINT => "SIGINT",
            libc::SIGQUIT => "SIGQUIT",
            libc::SIGILL => "SIGILL",
            libc::SIGTRAP => "SIGTRAP",
            libc::SIGABRT => "SIGABRT",
            libc::SIGBUS => "SIGBUS",
            libc::SIGFPE => "SIGFPE",
            libc::SIGKILL => "SIGKILL",
            libc::SIGUSR1 => "SIGUSR1",
            libc::SIGSEGV => "SIGSEGV",
            libc::SIGUSR2 => "SIGUSR2",
            libc::SIGPIPE => "SIGPIPE",
            libc::SIGALRM => "SIGALRM",
            libc::SIGTERM => "SIGTERM",
            libc::SIGCHLD => "SIGCHLD",
            libc::SIGCONT => "SIGCONT",
            libc::SIGSTOP => "SIGSTOP",
            libc::SIGTSTP => "SIGTSTP",
            libc::SIGTTIN => "SIGTTIN",
            libc::SIGTTOU => "SIGTTOU",
            libc::SIGURG => "SIGURG",
            libc::SIGXCPU => "SIGXCPU",
            libc::SIGXFSZ => "SIGXFSZ",
            libc::SIGVTALRM => "SIGVTALRM",
            libc::SIGPROF => "SIGPROF",
            libc::SIGWINCH => "SIGWINCH",
            libc::SIGIO => "SIGIO",
            libc::SIGSYS => "SIGSYS",
            _ => return None,
        };
        Some(name)
    }
    #[cfg(not(unix))]
    {
        let _ = signal;
        None
    }
}

/// Resource usage of a reaped child, as `waitid`'s `rusage` argument reports it.
///
/// The figures cover the child itself and those of its own children that it
/// waited for (the kernel's `RUSAGE_BOTH` view at reap time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResourceUsage {
    /// CPU time spent in user mode.
    pub user_time: Duration,
    /// CPU time spent in the kernel on the process's behalf.
    pub system_time: Duration,
    /// Peak resident set size, in bytes.
    pub max_rss_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn wait_status_decoding() {
        assert_eq!(ExitStatus::from_wait_status(0), Some(ExitStatus::Exited(0)));
        assert_eq!(
            ExitStatus::from_wait_status(127 << 8),
            Some(ExitStatus::Exited(127))
        );
        assert_eq!(
            ExitStatus::from_wait_status(255 << 8),
            Some(ExitStatus::Exited(255))
        );
        assert_eq!(
            ExitStatus::from_wait_status(libc::SIGKILL),
            Some(ExitStatus::Signaled {
                signal: libc::SIGKILL,
                core_dumped: false
            })
        );
        assert_eq!(
            ExitStatus::from_wait_status(libc::SIGSEGV | 0x80),
            Some(ExitStatus::Signaled {
                signal: libc::SIGSEGV,
                core_dumped: true
            })
        );
        // 0x7f in the low byte means "stopped": not an exit.
        assert_eq!(
            ExitStatus::from_wait_status((libc::SIGSTOP << 8) | 0x7f),
            None
        );
        // 0xffff means "continued": not an exit.
        assert_eq!(ExitStatus::from_wait_status(0xffff), None);
    }

    #[test]
    fn display_names_the_signal() {
        let status = ExitStatus::Signaled {
            signal: 9,
            core_dumped: false,
        };
        #[cfg(unix)]
        assert_eq!(status.to_string(), "killed by signal 9 (SIGKILL)");
        #[cfg(not(unix))]
        assert_eq!(status.to_string(), "killed by signal 9");
        assert_eq!(ExitStatus::Exited(3).to_string(), "exited with code 3");
    }
}
