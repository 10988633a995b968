//! `parse_halt` never panics, and accepts only `soon,fail=N` and `now,fail=N`
//! with N from 1.

#![no_main]

use libfuzzer_sys::fuzz_target;
use waitprocs_cli::args::parse_halt;

fuzz_target!(|text: &str| {
    if let Ok(halt) = parse_halt(text) {
        let mode = if halt.now { "now" } else { "soon" };
        let count = text.rsplit('=').next().unwrap_or_default();
        assert!(halt.failures >= 1, "{text:?}");
        assert_eq!(
            count.trim_start_matches('0'),
            halt.failures.to_string(),
            "{text:?}"
        );
        assert!(text.starts_with(&format!("{mode},fail=")), "{text:?}");
    }
});
