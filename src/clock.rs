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
    fn manual_clock_advances() {
        let clock = Clock::manual(100);
        clock.advance(5);
        assert_eq!(clock.now(), 105);
    }
}
