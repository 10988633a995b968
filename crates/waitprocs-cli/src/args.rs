//! Value parsers for durations, PIDs, counts and `--halt`. Clap prefixes
//! their messages with the rejected value and the option it was given for.

use std::time::Duration;

const DURATION_FORMS: &str =
    "use seconds as a decimal number (0.5) or a number with a unit: ms, s, m or h (500ms, 2s, 1m, 1h)";

const PID_RANGE: &str = "a PID is a whole number from 1 to 2147483647";

/// Parses a duration: `0.5` (seconds), `500ms`, `2s`, `1m` or `1h`.
///
/// # Errors
///
/// Returns a message naming the problem and the accepted forms if `text` is
/// empty, negative, not a decimal number, has an unknown unit, or is too large
/// for a [`Duration`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.is_empty() {
        return Err(format!("the duration is empty; {DURATION_FORMS}"));
    }
    if text.starts_with('-') {
        return Err(format!("a duration cannot be negative; {DURATION_FORMS}"));
    }
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(number_end);
    let has_digit = number.bytes().any(|b| b.is_ascii_digit());
    if !has_digit || number.matches('.').count() > 1 {
        return Err(format!(
            "not a decimal number with an optional unit; {DURATION_FORMS}"
        ));
    }
    let seconds_per_unit = match unit {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("unknown unit '{unit}'; {DURATION_FORMS}")),
    };
    // Digits and one dot always parse, but a long enough run of digits is infinite.
    let value: f64 = number
        .parse()
        .map_err(|_| format!("not a decimal number; {DURATION_FORMS}"))?;
    Duration::try_from_secs_f64(value * seconds_per_unit).map_err(|_| {
        format!(
            "the duration is too large: the maximum is {} seconds; leave the option out for no limit",
            Duration::MAX.as_secs()
        )
    })
}

/// Parses a whole number from `min` to `max`, for options that count jobs,
/// retries or exits.
///
/// # Errors
///
/// Returns a message naming the problem and the valid range if `text` is
/// empty, negative, not a whole number, or outside `min..=max`.
pub fn parse_count(text: &str, min: u64, max: u64) -> Result<u64, String> {
    let range = format!("use a whole number from {min} to {max}");
    match parse_whole(text, "number", &range)? {
        value if (min..=max).contains(&value) => Ok(value),
        _ => Err(format!("out of range; {range}")),
    }
}

/// Parses `--jobs`: from 1 to `u32::MAX`.
///
/// # Errors
///
/// Returns the message of [`parse_count`], which names the valid range.
pub fn parse_jobs(text: &str) -> Result<u32, String> {
    parse_count(text, 1, u64::from(u32::MAX)).map(|value| value as u32)
}

/// Parses `--retries`: from 0 to `u32::MAX`.
///
/// # Errors
///
/// Returns the message of [`parse_count`], which names the valid range.
pub fn parse_retries(text: &str) -> Result<u32, String> {
    parse_count(text, 0, u64::from(u32::MAX)).map(|value| value as u32)
}

/// Parses `wait --count`: from 1 to `u64::MAX`.
///
/// # Errors
///
/// Returns the message of [`parse_count`], which names the valid range.
pub fn parse_exit_count(text: &str) -> Result<u64, String> {
    parse_count(text, 1, u64::MAX)
}

/// Parses a PID: a whole number from 1 to `i32::MAX`, the range of `pid_t`.
///
/// # Errors
///
/// Returns a message naming the problem and the valid range if `text` is
/// empty, negative, zero, not a whole number, or above `i32::MAX`.
pub fn parse_pid(text: &str) -> Result<u32, String> {
    match parse_whole(text, "PID", PID_RANGE)? {
        0 => Err(format!("0 is not a process; {PID_RANGE}")),
        pid if pid <= i32::MAX as u64 => Ok(pid as u32),
        _ => Err(format!("out of range; {PID_RANGE}")),
    }
}

/// Parses decimal digits into a `u64`, with the errors of [`parse_pid`] and
/// [`parse_count`]: `what` names the value and `range` says what is valid.
fn parse_whole(text: &str, what: &str, range: &str) -> Result<u64, String> {
    if text.is_empty() {
        return Err(format!("the {what} is empty; {range}"));
    }
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if text.strip_prefix('-').is_some_and(all_digits) {
        return Err(format!("a {what} cannot be negative; {range}"));
    }
    if !all_digits(text) {
        return Err(format!("not a whole number; {range}"));
    }
    // Parsing into u64 turns an overflow into an error; narrower types are
    // checked by the callers, so 2^32 + 1 never wraps to 1.
    text.parse::<u64>()
        .map_err(|_| format!("out of range; {range}"))
}

const HALT_FORMS: &str = "use soon,fail=N (start no new job after N failed jobs) or now,fail=N (also stop the running jobs), with N from 1";

/// When `run` stops early because jobs failed, from `--halt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Halt {
    /// Whether the running jobs are stopped too (SIGTERM, then SIGKILL), not
    /// only the start of new ones.
    pub now: bool,
    /// Number of failed jobs, counted after their retries, that triggers the halt.
    pub failures: u32,
}

/// Parses `--halt`: `soon,fail=N` or `now,fail=N`, with N from 1.
///
/// # Errors
///
/// Returns a message naming the problem and the accepted forms if `text` has
/// another mode or condition, or N is not a whole number from 1 to `u32::MAX`.
pub fn parse_halt(text: &str) -> Result<Halt, String> {
    let Some((mode, condition)) = text.split_once(',') else {
        return Err(format!("expected a mode and a condition; {HALT_FORMS}"));
    };
    let now = match mode {
        "soon" => false,
        "now" => true,
        _ => return Err(format!("unknown mode '{mode}'; {HALT_FORMS}")),
    };
    let Some(count) = condition.strip_prefix("fail=") else {
        return Err(format!("unknown condition '{condition}'; {HALT_FORMS}"));
    };
    if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{count}' is not a whole number; {HALT_FORMS}"));
    }
    match count.parse::<u32>() {
        Ok(0) => Err(format!("the count must be at least 1; {HALT_FORMS}")),
        Ok(failures) => Ok(Halt { now, failures }),
        Err(_) => Err(format!("'{count}' is out of range; {HALT_FORMS}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_accepts_range() {
        assert_eq!(parse_count("1", 1, 8), Ok(1));
        assert_eq!(parse_count("8", 1, 8), Ok(8));
        assert_eq!(parse_jobs("4294967295"), Ok(u32::MAX));
        assert_eq!(parse_retries("0"), Ok(0));
        assert_eq!(parse_exit_count("18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn count_errors_name_range() {
        let cases = [
            ("", "empty"),
            ("-1", "cannot be negative"),
            ("abc", "not a whole number"),
            ("1.5", "not a whole number"),
            ("+3", "not a whole number"),
            ("0", "out of range"),
            ("99999999999999999999", "out of range"),
        ];
        for (text, reason) in cases {
            let error = parse_jobs(text).expect_err(text);
            assert!(error.contains(reason), "{text}: {error}");
            assert!(error.contains("from 1 to 4294967295"), "{text}: {error}");
        }
    }

    #[test]
    fn duration_accepts_forms() {
        let cases = [
            ("0", Duration::ZERO),
            ("0.5", Duration::from_millis(500)),
            ("2", Duration::from_secs(2)),
            (".25", Duration::from_millis(250)),
            ("3.", Duration::from_secs(3)),
            ("500ms", Duration::from_millis(500)),
            ("1.5ms", Duration::from_micros(1500)),
            ("2s", Duration::from_secs(2)),
            ("1m", Duration::from_secs(60)),
            ("1.5m", Duration::from_secs(90)),
            ("1h", Duration::from_secs(3600)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn duration_rejects_invalid() {
        let cases = [
            ("", "empty"),
            ("-1", "negative"),
            ("-0.5s", "negative"),
            ("nan", "not a decimal number"),
            ("NaN", "not a decimal number"),
            ("inf", "not a decimal number"),
            ("infinity", "not a decimal number"),
            ("s", "not a decimal number"),
            (".", "not a decimal number"),
            ("1.2.3", "not a decimal number"),
            ("1e3", "unknown unit 'e3'"),
            ("5x", "unknown unit 'x'"),
            ("5 s", "unknown unit ' s'"),
            ("5S", "unknown unit 'S'"),
            ("1d", "unknown unit 'd'"),
            (" 1", "not a decimal number"),
            ("99999999999999999999999h", "too large"),
        ];
        for (text, expected) in cases {
            let error = parse_duration(text).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn duration_error_lists_forms() {
        let error = parse_duration("5x").unwrap_err();
        assert!(error.contains("500ms, 2s, 1m, 1h"), "{error}");
    }

    #[test]
    fn pid_accepts_range() {
        assert_eq!(parse_pid("1"), Ok(1));
        assert_eq!(parse_pid("007"), Ok(7));
        assert_eq!(parse_pid("2147483647"), Ok(2_147_483_647));
    }

    #[test]
    fn pid_rejects_invalid() {
        let cases = [
            ("", "empty"),
            ("0", "0 is not a process"),
            ("-1", "negative"),
            ("-2147483648", "negative"),
            ("abc", "not a whole number"),
            ("12abc", "not a whole number"),
            ("+5", "not a whole number"),
            ("1.5", "not a whole number"),
            (" 5", "not a whole number"),
            ("2147483648", "out of range"),
            ("4294967295", "out of range"),
            ("4294967296", "out of range"),
            ("4294967297", "out of range"),
            ("18446744073709551615", "out of range"),
            ("99999999999999999999999999", "out of range"),
        ];
        for (text, expected) in cases {
            let error = parse_pid(text).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn halt_accepts_forms() {
        let soon = Halt {
            now: false,
            failures: 1,
        };
        assert_eq!(parse_halt("soon,fail=1"), Ok(soon));
        let now = Halt {
            now: true,
            failures: 3,
        };
        assert_eq!(parse_halt("now,fail=3"), Ok(now));
    }

    #[test]
    fn halt_rejects_invalid() {
        let cases = [
            ("", "a mode and a condition"),
            ("now", "a mode and a condition"),
            ("later,fail=1", "unknown mode 'later'"),
            ("now,success=1", "unknown condition 'success=1'"),
            ("now,fail=", "not a whole number"),
            ("now,fail=-1", "not a whole number"),
            ("now,fail=1%", "not a whole number"),
            ("now,fail=0", "at least 1"),
            ("soon,fail=4294967296", "out of range"),
        ];
        for (text, expected) in cases {
            let error = parse_halt(text).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
            assert!(error.contains("now,fail=N"), "{text}: {error}");
        }
    }
}
