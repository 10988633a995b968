//! The jobs of `waitprocs run`, read from its arguments and input files before
//! the first job starts, and the commands that run them.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::process::Command;

use crate::app::output::Failure;
use crate::app::RunArgs;
use crate::jobs::{self, Entry, Separator};
use crate::template::{self, Filled, Template};

/// Every job of a run. Template jobs are filled when they start, so that a
/// long argument list costs no more memory than the list itself.
#[derive(Debug)]
pub(crate) enum Plan {
    /// One command given after `--`, run without a shell.
    Single(Vec<OsString>),
    /// Shell commands from a job file.
    Commands(Vec<Entry>),
    /// A template and the items that fill it, one job per item.
    Filled {
        template: Template,
        items: Vec<Entry>,
    },
}

/// One job, ready to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Job {
    /// Line (or item) number in the job file or argument list, from 1.
    pub(crate) line: Option<usize>,
    /// The item of the argument list, for template jobs.
    pub(crate) item: Option<Vec<u8>>,
    pub(crate) program: Program,
    /// The command as shown in reports, with invalid UTF-8 replaced.
    pub(crate) display: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Program {
    /// A line of shell, run with `sh -c`.
    Shell(Vec<u8>),
    /// A program and its arguments, run without a shell; never empty.
    Direct(Vec<OsString>),
}

impl Plan {
    /// Reads the jobs that `args` name.
    ///
    /// # Errors
    ///
    /// `Usage` if the job file or argument list cannot be read or has a NUL
    /// byte in a line, naming the file and the line.
    pub(crate) fn load(args: &RunArgs) -> Result<Self, Failure> {
        if let Some(path) = &args.file {
            let contents = read_input(path, "job file")?;
            let entries = jobs::parse_job_file(&contents)
                .map_err(|error| invalid_input("job file", path, &error))?;
            return Ok(Self::Commands(entries));
        }
        let template = match &args.template {
            // An empty template would make each item the whole command, so
            // the item would run as code.
            Some(text) if text.as_bytes().iter().all(u8::is_ascii_whitespace) => {
                return Err(Failure::Usage(format!(
                    "invalid --template {text:?}: the template is empty; give a command \
                     such as 'gzip -k {{}}'"
                )));
            }
            Some(text) => Template::shell(text.as_bytes()),
            None => {
                let argv: Vec<&[u8]> = args.command.iter().map(|arg| arg.as_bytes()).collect();
                match &args.args_from {
                    Some(_) => Template::argv(&argv),
                    None => return Ok(Self::Single(args.command.clone())),
                }
            }
        };
        let Some(path) = &args.args_from else {
            return Err(Failure::Usage(
                "--template needs --args-from FILE (or - for standard input)".to_owned(),
            ));
        };
        let separator = if args.null {
            Separator::Nul
        } else {
            Separator::Newline
        };
        let contents = read_input(path, "argument list")?;
        let items = jobs::parse_items(&contents, separator)
            .map_err(|error| invalid_input("argument list", path, &error))?;
        Ok(Self::Filled { template, items })
    }

    /// Returns the number of jobs.
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Single(_) => 1,
            Self::Commands(entries) => entries.len(),
            Self::Filled { items, .. } => items.len(),
        }
    }

    /// Returns job `index` (from 0).
    pub(crate) fn job(&self, index: usize) -> Job {
        match self {
            Self::Single(argv) => Job {
                line: None,
                item: None,
                display: display_argv(argv),
                program: Program::Direct(argv.clone()),
            },
            Self::Commands(entries) => {
                let entry = &entries[index];
                Job {
                    line: Some(entry.number),
                    item: None,
                    display: String::from_utf8_lossy(entry.bytes.trim_ascii()).into_owned(),
                    program: Program::Shell(entry.bytes.clone()),
                }
            }
            Self::Filled { template, items } => {
                let entry = &items[index];
                let (program, display) = match template.fill(&entry.bytes, index + 1) {
                    Filled::Shell(command) => {
                        let display = String::from_utf8_lossy(&command).into_owned();
                        (Program::Shell(command), display)
                    }
                    Filled::Argv(argv) => {
                        let argv: Vec<OsString> =
                            argv.into_iter().map(OsString::from_vec).collect();
                        (Program::Direct(argv.clone()), display_argv(&argv))
                    }
                };
                Job {
                    line: Some(entry.number),
                    item: Some(entry.bytes.clone()),
                    program,
                    display,
                }
            }
        }
    }
}

impl Job {
    /// Returns the command that starts this job (without stdio or process
    /// group settings).
    pub(crate) fn command(&self) -> Command {
        match &self.program {
            Program::Shell(line) => {
                let mut command = Command::new("sh");
                command.arg("-c").arg(OsStr::from_bytes(line));
                command
            }
            Program::Direct(argv) => {
                let mut command = Command::new(&argv[0]);
                command.args(&argv[1..]);
                command
            }
        }
    }

    /// Returns the text that `--tag` puts before each output line: the item of
    /// a template job, or the command.
    pub(crate) fn tag_text(&self) -> &[u8] {
        match &self.item {
            Some(item) => item,
            None => self.display.as_bytes(),
        }
    }
}

fn display_argv(argv: &[OsString]) -> String {
    let bytes: Vec<&[u8]> = argv.iter().map(|arg| arg.as_bytes()).collect();
    template::display_argv(&bytes)
}

/// Reads a whole input file, or standard input for `-`.
fn read_input(path: &Path, what: &str) -> Result<Vec<u8>, Failure> {
    let contents = if path == Path::new("-") {
        let mut contents = Vec::new();
        io::stdin()
            .lock()
            .read_to_end(&mut contents)
            .map(|_| contents)
    } else {
        fs::read(path)
    };
    contents.map_err(|error| {
        Failure::Usage(format!("cannot read {what} '{}': {error}", path.display()))
    })
}

fn invalid_input(what: &str, path: &Path, error: &jobs::InvalidEntry) -> Failure {
    let name = if path == Path::new("-") {
        "standard input".to_owned()
    } else {
        format!("'{}'", path.display())
    };
    Failure::Usage(format!("{what} {name}, {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_job_trims_display() {
        let plan = Plan::Commands(vec![Entry {
            number: 4,
            bytes: b"  echo a  ".to_vec(),
        }]);
        let job = plan.job(0);
        assert_eq!(job.line, Some(4));
        assert_eq!(job.display, "echo a");
        assert_eq!(job.program, Program::Shell(b"  echo a  ".to_vec()));
    }

    #[test]
    fn template_job_fills_argv() {
        let plan = Plan::Filled {
            template: Template::argv(&["echo", "{#}:{}"]),
            items: vec![Entry {
                number: 2,
                bytes: b"a b".to_vec(),
            }],
        };
        let job = plan.job(0);
        let argv = ["echo", "1:a b"].map(OsString::from).to_vec();
        assert_eq!(job.program, Program::Direct(argv));
        assert_eq!(job.display, "echo '1:a b'");
        assert_eq!(job.tag_text(), b"a b");
    }

    #[test]
    fn single_job_displays_quoted() {
        let plan = Plan::Single(["printf", "%s\\n", "it's"].map(OsString::from).to_vec());
        assert_eq!(plan.job(0).display, r"printf '%s\n' 'it'\''s'");
    }
}
