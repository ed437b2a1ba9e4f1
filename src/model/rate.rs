//! Rates such as `600/min` or `100/min burst 20`: the grammar of every rate limit.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A number of requests per period, with an optional burst (default: the count itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Requests per period; at least 1.
    pub count: u32,
    /// The period: a second, a minute, an hour or a day.
    pub period: Duration,
    /// Requests allowed back to back; `None`: `count`.
    pub burst: Option<u32>,
}

impl Rate {
    /// The largest number of requests allowed back to back.
    pub fn burst_size(&self) -> u32 {
        self.burst.unwrap_or(self.count)
    }

    /// Whether this rate allows more than `other`: a faster sustained rate, or a larger burst.
    pub fn exceeds(&self, other: &Rate) -> bool {
        // count / period compared without division: a/p > b/q  ⇔  a·q > b·p.
        let faster =
            u128::from(self.count) * other.period.as_nanos() > u128::from(other.count) * self.period.as_nanos();
        faster || self.burst_size() > other.burst_size()
    }

    fn period_name(&self) -> &'static str {
        match self.period.as_secs() {
            1 => "s",
            60 => "min",
            3600 => "h",
            _ => "d",
        }
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || {
            format!(
                "invalid rate {text:?}: expected N/s, N/min, N/h or N/d with an optional \" burst M\", such as 600/min or 100/min burst 20"
            )
        };
        let mut words = text.split_whitespace();
        let base = words.next().ok_or_else(invalid)?;
        let burst = match (words.next(), words.next(), words.next()) {
            (None, _, _) => None,
            (Some("burst"), Some(n), None) => Some(n.parse::<u32>().map_err(|_| invalid())?),
            _ => return Err(invalid()),
        };
        let (count, period) = base.split_once('/').ok_or_else(invalid)?;
        let count: u32 = count.parse().map_err(|_| invalid())?;
        let period = match period {
            "s" | "sec" => Duration::from_secs(1),
            "m" | "min" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            _ => return Err(invalid()),
        };
        if count == 0 || burst == Some(0) {
            return Err(format!("invalid rate {text:?}: the count and the burst must be at least 1"));
        }
        Ok(Rate { count, period, burst })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.period_name())?;
        if let Some(burst) = self.burst {
            write!(f, " burst {burst}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_canonically() {
        for (input, canonical) in [
            ("600/min", "600/min"),
            ("20/s", "20/s"),
            ("100/min burst 20", "100/min burst 20"),
            ("5/hour", "5/h"),
            ("1/d", "1/d"),
        ] {
            let rate: Rate = input.parse().unwrap_or_else(|e| unreachable!("{e}"));
            assert_eq!(rate.to_string(), canonical);
        }
    }

    #[test]
    fn compares_sustained_rate_and_burst() {
        let rate = |text: &str| text.parse::<Rate>().unwrap_or_else(|e| unreachable!("{e}"));
        assert!(rate("11/s").exceeds(&rate("600/min")));
        assert!(!rate("10/s").exceeds(&rate("600/min")), "the same rate, the same burst");
        assert!(!rate("100/min").exceeds(&rate("600/min")));
        assert!(rate("100/min burst 700").exceeds(&rate("600/min")), "a larger burst");
        assert!(!rate("1/d").exceeds(&rate("1/h")));
    }

    #[test]
    fn refuses_malformed_rates() {
        for bad in ["", "600", "0/s", "10/fortnight", "10/s burst", "10/s burst 0", "10/s sprint 3", "x/s"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad:?} should be refused");
        }
    }
}
