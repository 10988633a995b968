//! Parsers of the input of `waitprocs run`: job files (one shell command per
//! line) and argument lists (one item per line, or per NUL byte).
//!
//! Both work on bytes. Unix passes arguments as bytes, so text that is not
//! UTF-8 reaches the command unchanged. A NUL byte cannot be part of an
//! argument, so an entry that contains one is rejected with its number.

use std::fmt;

/// One entry of a job file or an argument list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Number of the line (or NUL-separated item) in its input, from 1.
    pub number: usize,
    /// The bytes of the entry, without the separator and without a trailing
    /// carriage return in line mode.
    pub bytes: Vec<u8>,
}

/// Separator between the items of an argument list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Separator {
    /// A newline; a carriage return before it is removed, so CRLF files work.
    Newline,
    /// A NUL byte, as `find -print0` writes; items may then contain newlines.
    Nul,
}

/// An entry that cannot become a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidEntry {
    /// Number of the line or item, from 1.
    pub number: usize,
    /// Byte offset of the problem inside the entry, from 1.
    pub column: usize,
    /// Description of the problem and of what to do instead.
    pub reason: &'static str,
}

impl fmt::Display for InvalidEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, byte {}: {}",
            self.number, self.column, self.reason
        )
    }
}

impl std::error::Error for InvalidEntry {}

const NUL_IN_COMMAND: &str = "contains a NUL byte, which no command or argument can hold; \
     remove it, or pass NUL-separated items with --args-from FILE --null";

const NUL_IN_ITEM: &str =
    "contains a NUL byte, which no argument can hold; use --null if the items are NUL-separated";

/// Splits a job file into shell commands, one per line.
///
/// Lines that are empty or blank, and lines whose first non-blank character is
/// `#`, are skipped. A trailing carriage return is removed, so files with CRLF
/// line ends work. Bytes that are not UTF-8 are kept as they are.
///
/// # Errors
///
/// Returns the first line that contains a NUL byte.
pub fn parse_job_file(contents: &[u8]) -> Result<Vec<Entry>, InvalidEntry> {
    let mut jobs = Vec::new();
    for (index, raw) in contents.split(|&byte| byte == b'\n').enumerate() {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let text = line.trim_ascii();
        if text.is_empty() || text.starts_with(b"#") {
            continue;
        }
        reject_nul(index + 1, line, NUL_IN_COMMAND)?;
        jobs.push(Entry {
            number: index + 1,
            bytes: line.to_vec(),
        });
    }
    Ok(jobs)
}

/// Splits an argument list into items.
///
/// Empty items are skipped, so a final separator adds no item. Nothing else is
/// trimmed: leading and trailing spaces belong to the item, as they may in a
/// file name. With [`Separator::Newline`] a carriage return before the newline
/// is removed.
///
/// # Errors
///
/// Returns the first item that contains a NUL byte (only possible with
/// [`Separator::Newline`]).
pub fn parse_items(contents: &[u8], separator: Separator) -> Result<Vec<Entry>, InvalidEntry> {
    let split_at = match separator {
        Separator::Newline => b'\n',
        Separator::Nul => 0,
    };
    let mut items = Vec::new();
    for (index, raw) in contents.split(|&byte| byte == split_at).enumerate() {
        let item = match separator {
            Separator::Newline => raw.strip_suffix(b"\r").unwrap_or(raw),
            Separator::Nul => raw,
        };
        if item.is_empty() {
            continue;
        }
        reject_nul(index + 1, item, NUL_IN_ITEM)?;
        items.push(Entry {
            number: index + 1,
            bytes: item.to_vec(),
        });
    }
    Ok(items)
}

fn reject_nul(number: usize, entry: &[u8], reason: &'static str) -> Result<(), InvalidEntry> {
    match entry.iter().position(|&byte| byte == 0) {
        Some(offset) => Err(InvalidEntry {
            number,
            column: offset + 1,
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(entries: &[Entry]) -> Vec<&[u8]> {
        entries.iter().map(|entry| entry.bytes.as_slice()).collect()
    }

    #[test]
    fn file_skips_blank_and_comments() {
        let jobs = parse_job_file(b"# header\n\ntrue\n   \n  # indented\nexit 3\n").unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].number, 3);
        assert_eq!(jobs[0].bytes, b"true");
        assert_eq!(jobs[1].number, 6);
        assert_eq!(jobs[1].bytes, b"exit 3");
    }

    #[test]
    fn file_strips_carriage_return() {
        let jobs = parse_job_file(b"echo a\r\necho b").unwrap();
        assert_eq!(bytes(&jobs), [b"echo a", b"echo b"]);
    }

    #[test]
    fn file_keeps_invalid_utf8() {
        let jobs = parse_job_file(b"echo \xff\n").unwrap();
        assert_eq!(jobs[0].bytes, b"echo \xff");
    }

    #[test]
    fn file_without_jobs_is_empty() {
        assert_eq!(parse_job_file(b""), Ok(Vec::new()));
        assert_eq!(parse_job_file(b"# only a comment\n\n"), Ok(Vec::new()));
    }

    #[test]
    fn file_rejects_nul_byte() {
        let error = parse_job_file(b"true\n\necho a\0b\n").unwrap_err();
        assert_eq!(error.number, 3);
        assert_eq!(error.column, 7);
        assert!(error
            .to_string()
            .starts_with("line 3, byte 7: contains a NUL byte"));
    }

    #[test]
    fn file_ignores_nul_in_comment() {
        let jobs = parse_job_file(b"# a\0b\ntrue\n").unwrap();
        assert_eq!(bytes(&jobs), [b"true"]);
    }

    #[test]
    fn items_keep_spaces() {
        let items = parse_items(b" a b \n\nc\r\n", Separator::Newline).unwrap();
        assert_eq!(bytes(&items), [b" a b ".as_slice(), b"c"]);
        assert_eq!(items[1].number, 3);
    }

    #[test]
    fn items_keep_comment_lines() {
        let items = parse_items(b"#not a comment\n", Separator::Newline).unwrap();
        assert_eq!(bytes(&items), [b"#not a comment"]);
    }

    #[test]
    fn items_split_on_nul() {
        let items = parse_items(b"a\nb\0c\r\0\0", Separator::Nul).unwrap();
        assert_eq!(bytes(&items), [b"a\nb".as_slice(), b"c\r"]);
    }

    #[test]
    fn items_reject_nul_in_line() {
        let error = parse_items(b"ok\nbad\0\n", Separator::Newline).unwrap_err();
        assert_eq!((error.number, error.column), (2, 4));
        assert!(error.reason.contains("--null"), "{error}");
    }
}
