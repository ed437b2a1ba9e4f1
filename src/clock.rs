//! The one place that reads the wall clock, so tests can control time.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A point in time: whole seconds since the Unix epoch, UTC. This is how every time is stored.
pub type UnixTime = i64;

/// Where "now" comes from. `System` in production; `Manual` in tests that move time by hand.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// The operating system's clock.
    #[default]
    System,
    /// A clock that moves only when a test calls [`Clock::advance`]; shared by every clone, so the
    /// gateway and the test see the same time.
    Manual(Arc<AtomicI64>),
}

/// The wall clock in milliseconds since the epoch. Not a [`Clock`]: the fleet of gateways
/// (heartbeats, confirmations, lag) runs on real time even where a test stands the clock still.
pub fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Clock {
    /// A clock that stands still at `start` until the test advances it.
    pub fn manual(start: UnixTime) -> Self {
        Clock::Manual(Arc::new(AtomicI64::new(start)))
    }

    /// The current time in whole seconds: what expiry, revocation and last-use times are compared
    /// with and stored as.
    pub fn now(&self) -> UnixTime {
        match self {
            Clock::System => SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0),
            Clock::Manual(now) => now.load(Ordering::Relaxed),
        }
    }

    /// Moves a manual clock forward; a system clock ignores it.
    pub fn advance(&self, seconds: i64) {
        if let Clock::Manual(now) = self {
            now.fetch_add(seconds, Ordering::Relaxed);
        }
    }
}

/// Formats a stored time as RFC 3339 (`2026-11-25T16:13:05Z`).
pub fn to_rfc3339(t: UnixTime) -> String {
    OffsetDateTime::from_unix_timestamp(t).ok().and_then(|dt| dt.format(&Rfc3339).ok()).unwrap_or_else(|| t.to_string())
}

/// The UTC day of `t`, as days since 1970-01-01: what usage counters are kept per.
pub fn utc_day(t: UnixTime) -> i64 {
    t.div_euclid(86_400)
}

/// A UTC day number as the date it is (`2026-12-01`).
pub fn day_to_date(day: i64) -> String {
    let t = day.saturating_mul(86_400);
    OffsetDateTime::from_unix_timestamp(t).map(|dt| dt.date().to_string()).unwrap_or_else(|_| day.to_string())
}

/// The RFC 3339 text [`to_rfc3339`] gives for `t` (`2026-11-25T16:13:05Z`), written into 20
/// bytes without allocating or going through a formatter: the data path sends a token's expiry
/// with every response and no longer keeps it prebuilt per token. `None` outside the years
/// 1970–9999, where [`to_rfc3339`] is the reference.
pub fn rfc3339_bytes(t: UnixTime) -> Option<[u8; 20]> {
    // The last second of 9999-12-31.
    const LAST: UnixTime = 253_402_300_799;
    if !(0..=LAST).contains(&t) {
        return None;
    }
    let (days, second_of_day) = (t / 86_400, t % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's `civil_from_days`), with the
    // era arithmetic reduced for non-negative days.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    let mut out = *b"0000-00-00T00:00:00Z";
    let mut put = |at: usize, digits: usize, mut value: i64| {
        for i in (at..at + digits).rev() {
            out[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, second_of_day / 3600);
    put(14, 2, second_of_day / 60 % 60);
    put(17, 2, second_of_day % 60);
    Some(out)
}

/// Formats milliseconds since the epoch as RFC 3339 with milliseconds (`...T16:13:05.123Z`).
pub fn to_rfc3339_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|dt| dt.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// Parses an RFC 3339 time given by a user (`2026-01-31T00:00:00Z`, or a bare date
/// `2026-01-31`, taken as midnight UTC).
pub fn parse_rfc3339(text: &str) -> Result<UnixTime, String> {
    let text = text.trim();
    if let Ok(dt) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(dt.unix_timestamp());
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, &date_format).map(|d| d.midnight().assume_utc().unix_timestamp()).map_err(|_| {
        format!("invalid time {text:?}: expected RFC 3339 such as 2026-01-31T12:00:00Z or a date such as 2026-01-31")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_round_trip() {
        let t = 1_795_000_000;
        assert_eq!(parse_rfc3339(&to_rfc3339(t)), Ok(t));
        assert_eq!(parse_rfc3339("1970-01-02"), Ok(86_400));
        assert!(parse_rfc3339("yesterday").is_err());
    }

    #[test]
    fn rfc3339_bytes_match_the_formatter() {
        let mut t = 0;
        let mut step = 1;
        while t <= 253_402_300_799 {
            let bytes = rfc3339_bytes(t).unwrap();
            assert_eq!(std::str::from_utf8(&bytes).unwrap(), to_rfc3339(t), "at {t}");
            t += step;
            // From seconds to months between samples, so every boundary kind is crossed.
            step = (step * 3 + 7) % 5_000_003 + 1;
        }
        for t in [951_782_400, 951_868_799, 4_107_542_400, 4_107_628_799, 253_402_300_799, 1_795_000_000] {
            assert_eq!(std::str::from_utf8(&rfc3339_bytes(t).unwrap()).unwrap(), to_rfc3339(t), "at {t}");
        }
        assert_eq!(rfc3339_bytes(-1), None);
        assert_eq!(rfc3339_bytes(253_402_300_800), None);
    }

    #[test]
    fn manual_clock_advances() {
        let clock = Clock::manual(100);
        clock.advance(5);
        assert_eq!(clock.now(), 105);
    }
}
