//! The job-file and argument-list parsers never panic. Every entry they return
//! is a piece of the input between separators, holds no NUL byte, and comes in
//! input order; a rejected input really has a NUL byte where the error says.

#![no_main]

use libfuzzer_sys::fuzz_target;
use waitprocs_cli::jobs::{parse_items, parse_job_file, Entry, InvalidEntry, Separator};

/// Returns the raw pieces of `input` between `separator` bytes, by number from 1.
fn piece(input: &[u8], separator: u8, number: usize) -> &[u8] {
    input
        .split(|&b| b == separator)
        .nth(number - 1)
        .expect("entry number in range")
}

fn check(input: &[u8], separator: u8, result: Result<Vec<Entry>, InvalidEntry>) {
    match result {
        Ok(entries) => {
            let mut last = 0;
            for entry in entries {
                assert!(entry.number > last, "entries out of order");
                last = entry.number;
                assert!(!entry.bytes.is_empty());
                assert!(!entry.bytes.contains(&0));
                assert!(!entry.bytes.contains(&b'\n') || separator == 0);
                let raw = piece(input, separator, entry.number);
                assert!(
                    raw.starts_with(&entry.bytes),
                    "entry is not its piece of input"
                );
            }
        }
        Err(error) => {
            let raw = piece(input, separator, error.number);
            assert_eq!(raw.get(error.column - 1), Some(&0), "no NUL where reported");
        }
    }
}

fuzz_target!(|input: &[u8]| {
    check(input, b'\n', parse_job_file(input));
    check(input, b'\n', parse_items(input, Separator::Newline));
    check(input, 0, parse_items(input, Separator::Nul));
});
