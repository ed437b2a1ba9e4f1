//! What a token's requests are counted by: the outcome of each request, as the usage counters,
//! their table and the usage document name it.

use serde::Serialize;

/// How a request presented with a token ended, for the usage counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum UsageOutcome {
    /// The upstream answered 1xx or 2xx (a protocol switch counts as a success).
    Success,
    /// The upstream answered 3xx.
    Redirect,
    /// The upstream answered 4xx, or the gateway refused the request as malformed.
    ClientError,
    /// The upstream answered 5xx, or could not be reached (502) or did not answer in time (504).
    ServerError,
    /// 403: the token lacks the route's scope.
    Forbidden,
    /// 429: the token's rate limit.
    Limited,
    /// 401: the token is revoked, expired or blocked.
    Refused,
}

impl UsageOutcome {
    /// Every outcome, in the order the usage document sorts them.
    pub const ALL: [UsageOutcome; 7] = [
        UsageOutcome::Success,
        UsageOutcome::Redirect,
        UsageOutcome::ClientError,
        UsageOutcome::ServerError,
        UsageOutcome::Forbidden,
        UsageOutcome::Limited,
        UsageOutcome::Refused,
    ];

    /// The outcome of a request the upstream (or the gateway in its place) answered with `status`.
    pub fn of_status(status: u16) -> Self {
        match status {
            0..=299 => UsageOutcome::Success,
            300..=399 => UsageOutcome::Redirect,
            400..=499 => UsageOutcome::ClientError,
            _ => UsageOutcome::ServerError,
        }
    }

    /// The name in the database, the usage document and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            UsageOutcome::Success => "2xx",
            UsageOutcome::Redirect => "3xx",
            UsageOutcome::ClientError => "4xx",
            UsageOutcome::ServerError => "5xx",
            UsageOutcome::Forbidden => "forbidden",
            UsageOutcome::Limited => "limited",
            UsageOutcome::Refused => "refused",
        }
    }
}

/// One row of a token's usage: requests on one UTC day, route and outcome.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UsageRow {
    /// Days since 1970-01-01 UTC.
    pub day: i64,
    /// The route's prefix, as configured.
    pub route: String,
    /// [`UsageOutcome::as_str`].
    pub outcome: String,
    /// How many requests.
    pub requests: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_fall_into_their_classes() {
        let classes: Vec<&str> = [101, 200, 204, 301, 304, 400, 404, 499, 500, 502, 504, 599]
            .into_iter()
            .map(|s| UsageOutcome::of_status(s).as_str())
            .collect();
        assert_eq!(classes, ["2xx", "2xx", "2xx", "3xx", "3xx", "4xx", "4xx", "4xx", "5xx", "5xx", "5xx", "5xx"]);
    }
}
