//! The jobs of `waitprocs run`: lines of a job file, or one command.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::process::Command;

/// One command to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Job {
    /// Line number in the job file (from 1), for jobs read from a file.
    pub(crate) line: Option<usize>,
    pub(crate) program: Program,
    /// The command as shown in reports: trimmed, with invalid UTF-8 replaced.
    pub(crate) display: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Program {
    /// A line of shell, run with `sh -c`.
    Shell(OsString),
    /// A program and its arguments, run without a shell.
    Direct(Vec<OsString>),
}

impl Job {
    /// Returns the job for a command given after `--`, which must not be empty.
    pub(crate) fn direct(argv: Vec<OsString>) -> Self {
        let display = argv
            .iter()
            .map(|arg| quote(&arg.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ");
        Self {
            line: None,
            program: Program::Direct(argv),
            display,
        }
    }

    /// Returns the command that starts this job (without stdio or process group settings).
    pub(crate) fn command(&self) -> Command {
        match &self.program {
            Program::Shell(line) => {
                let mut command = Command::new("sh");
                command.arg("-c").arg(line);
                command
            }
            Program::Direct(argv) => {
                let mut command = Command::new(&argv[0]);
                command.args(&argv[1..]);
                command
            }
        }
    }
}

/// Splits a job file into jobs, one per line.
///
/// Lines that are empty or blank, and lines whose first non-blank character
/// is `#`, are skipped. A trailing carriage return is removed, so files with
/// CRLF line ends work. Bytes that are not UTF-8 reach `sh` unchanged.
pub(crate) fn parse_job_file(contents: &[u8]) -> Vec<Job> {
    let mut jobs = Vec::new();
    for (index, raw) in contents.split(|&byte| byte == b'\n').enumerate() {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let text = line.trim_ascii();
        if text.is_empty() || text.starts_with(b"#") {
            continue;
        }
        jobs.push(Job {
            line: Some(index + 1),
            program: Program::Shell(OsString::from_vec(line.to_vec())),
            display: String::from_utf8_lossy(text).into_owned(),
        });
    }
    jobs
}

/// Quotes an argument for display the way a POSIX shell would read it back.
fn quote(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        return arg.to_owned();
    }
    format!("'{}'", arg.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStrExt;

    use super::*;

    fn shell_bytes(job: &Job) -> &[u8] {
        match &job.program {
            Program::Shell(line) => line.as_bytes(),
            Program::Direct(_) => panic!("not a shell job"),
        }
    }

    #[test]
    fn file_skips_blank_and_comments() {
        let jobs = parse_job_file(b"# header\n\ntrue\n   \n  # indented\nexit 3\n");
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].line, Some(3));
        assert_eq!(jobs[0].display, "true");
        assert_eq!(jobs[1].line, Some(6));
        assert_eq!(jobs[1].display, "exit 3");
    }

    #[test]
    fn file_strips_carriage_return() {
        let jobs = parse_job_file(b"echo a\r\necho b");
        assert_eq!(shell_bytes(&jobs[0]), b"echo a");
        assert_eq!(shell_bytes(&jobs[1]), b"echo b");
    }

    #[test]
    fn file_keeps_invalid_utf8() {
        let jobs = parse_job_file(b"echo \xff\n");
        assert_eq!(shell_bytes(&jobs[0]), b"echo \xff");
        assert_eq!(jobs[0].display, "echo \u{fffd}");
    }

    #[test]
    fn file_without_jobs_is_empty() {
        assert!(parse_job_file(b"").is_empty());
        assert!(parse_job_file(b"# only a comment\n\n").is_empty());
    }

    #[test]
    fn direct_display_quotes() {
        let argv = ["printf", "%s\\n", "a b", "it's", ""].map(OsString::from);
        let job = Job::direct(argv.to_vec());
        assert_eq!(job.display, r"printf '%s\n' 'a b' 'it'\''s' ''");
    }
}
