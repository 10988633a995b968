//! `parse_duration` never panics, and accepts only text that starts with a
//! digit or a dot and yields a finite duration.

#![no_main]

use libfuzzer_sys::fuzz_target;
use waitprocs_cli::args::parse_duration;

fuzz_target!(|text: &str| {
    if let Ok(duration) = parse_duration(text) {
        let first = text.as_bytes()[0];
        assert!(first.is_ascii_digit() || first == b'.', "{text:?}");
        assert!(duration.as_secs_f64().is_finite(), "{text:?}");
    }
});
