//! Requests per token, UTC day, route and outcome, counted in memory and handed to the usage
//! flush once per interval (issue 15): what each token is used for and how much.
//!
//! A request touches one shard of a sharded map (no lock that serialises requests) and, on a
//! token already counted this interval, allocates nothing: the route is compared by pointer
//! first (every request of a route shares its label), and only a new day, route or outcome
//! for the token adds an entry. The flush takes every token's counters out of the map, so only
//! tokens used during the interval hold memory; a count made while a flush writes waits for
//! the next one, and a flush that fails puts its counts back.

use std::sync::Arc;

use dashmap::DashMap;

use crate::control::store::UsageCount;
use crate::data::index::IndexHashing;
use crate::model::UsageOutcome;

/// One token's requests on one day, route and outcome, since the last flush.
#[derive(Debug)]
struct Counter {
    day: i64,
    route: Arc<str>,
    outcome: UsageOutcome,
    requests: i64,
}

impl Counter {
    fn counts(&self, day: i64, route: &Arc<str>, outcome: UsageOutcome) -> bool {
        self.day == day && self.outcome == outcome && (Arc::ptr_eq(&self.route, route) || self.route == *route)
    }
}

/// The counters of every token used since the last flush.
#[derive(Debug, Default)]
pub struct UsageCounters {
    /// Token id → its counters (usually one or two: a token's requests mostly end alike).
    tokens: DashMap<i64, Vec<Counter>, IndexHashing>,
}

impl UsageCounters {
    /// No counts yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `requests` to the token's count for `day`, `route` and `outcome`.
    pub fn add(&self, token_id: i64, day: i64, route: &Arc<str>, outcome: UsageOutcome, requests: i64) {
        let mut counters = self.tokens.entry(token_id).or_default();
        match counters.iter_mut().find(|c| c.counts(day, route, outcome)) {
            Some(counter) => counter.requests += requests,
            None => counters.push(Counter { day, route: Arc::clone(route), outcome, requests }),
        }
    }

    /// Takes every count made so far, ordered by token, day, route and outcome (the order rows
    /// are written in, so concurrent flushes of several gateways touch rows in one order).
    pub fn take(&self) -> Vec<UsageCount> {
        let token_ids: Vec<i64> = self.tokens.iter().map(|entry| *entry.key()).collect();
        let mut counts = Vec::with_capacity(token_ids.len());
        for token_id in token_ids {
            let Some((_, counters)) = self.tokens.remove(&token_id) else { continue };
            counts.extend(counters.into_iter().map(|c| UsageCount {
                token_id,
                day: c.day,
                route: c.route,
                outcome: c.outcome,
                requests: c.requests,
            }));
        }
        counts
            .sort_by(|a, b| (a.token_id, a.day, &*a.route, a.outcome).cmp(&(b.token_id, b.day, &*b.route, b.outcome)));
        counts
    }

    /// Puts back counts whose write failed, added to whatever was counted meanwhile.
    pub fn restore(&self, counts: &[UsageCount]) {
        for count in counts {
            self.add(count.token_id, count.day, &count.route, count.outcome, count.requests);
        }
    }

    /// How many tokens hold counters.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// No counts are waiting.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_per_day_route_and_outcome_and_leave_with_the_flush() {
        let counters = UsageCounters::new();
        let a: Arc<str> = Arc::from("/a");
        let a_again: Arc<str> = Arc::from("/a");
        let b: Arc<str> = Arc::from("/b");
        counters.add(7, 100, &a, UsageOutcome::Success, 1);
        counters.add(7, 100, &a_again, UsageOutcome::Success, 1);
        counters.add(7, 100, &b, UsageOutcome::Success, 1);
        counters.add(7, 101, &a, UsageOutcome::Success, 1);
        counters.add(7, 100, &a, UsageOutcome::Forbidden, 1);
        counters.add(3, 100, &a, UsageOutcome::Refused, 1);
        let taken = counters.take();
        let rows: Vec<(i64, i64, &str, &str, i64)> =
            taken.iter().map(|c| (c.token_id, c.day, &*c.route, c.outcome.as_str(), c.requests)).collect();
        assert_eq!(
            rows,
            [
                (3, 100, "/a", "refused", 1),
                (7, 100, "/a", "2xx", 2),
                (7, 100, "/a", "forbidden", 1),
                (7, 100, "/b", "2xx", 1),
                (7, 101, "/a", "2xx", 1)
            ]
        );
        assert!(counters.is_empty());
        counters.add(7, 100, &a, UsageOutcome::Success, 5);
        counters.restore(&taken);
        let again = counters.take();
        assert_eq!(again.iter().map(|c| c.requests).sum::<i64>(), 11);
        assert_eq!(again[1].requests, 7);
    }
}
