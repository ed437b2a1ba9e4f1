//! Humane durations (`30s`, `15m`, `90d`, `1y`, `1h30m`) as used in the config and the CLI.
//!
//! Written here rather than taken from humantime because the product promises calendar-free
//! units an operator can reason about: `1y` is exactly `365d` (humantime's year is 365.25
//! days, which would make `1y` exceed a `max_lifetime` of `365d`).

use std::time::Duration;

/// Parses a humane duration. Units: `ms`, `s`, `m`/`min`, `h`, `d`, `w`, `y` (365 days).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || {
        format!("invalid duration {text:?}: expected a number and a unit such as 500ms, 30s, 15m, 12h, 90d, 2w or 1y")
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(invalid());
    }
    let mut total_ms: u64 = 0;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(invalid());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = rest[digits..].trim_start();
        let unit_len = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
        let unit_ms: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" | "sec" => 1_000,
            "m" | "min" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return Err(invalid()),
        };
        rest = rest[unit_len..].trim_start();
        total_ms = number
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| format!("duration {text:?} is too large"))?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Formats a duration the way it would be written in the config (largest exact unit).
pub fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis() as u64;
    const UNITS: [(u64, &str); 6] =
        [(365 * 86_400_000, "y"), (86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1_000, "s"), (1, "ms")];
    if ms == 0 {
        return "0s".to_owned();
    }
    for (size, unit) in UNITS {
        if ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_duration("1y"), parse_duration("365d"));
    }

    #[test]
    fn refuses_garbage() {
        for bad in ["", "d", "10", "10 parsecs", "-5s", "1.5h", "99999999999999999y"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn formats_largest_exact_unit() {
        assert_eq!(format_duration(Duration::from_secs(90 * 86_400)), "90d");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
    }
}
