//! `parse_pid` never panics, accepts only decimal digits, and returns a PID in
//! the range of `pid_t` that reads back as the same number.

#![no_main]

use libfuzzer_sys::fuzz_target;
use waitprocs_cli::args::parse_pid;

fuzz_target!(|text: &str| {
    if let Ok(pid) = parse_pid(text) {
        assert!(text.bytes().all(|b| b.is_ascii_digit()), "{text:?}");
        assert!((1..=i32::MAX as u32).contains(&pid), "{text:?}");
        assert_eq!(text.trim_start_matches('0'), pid.to_string(), "{text:?}");
    }
});
