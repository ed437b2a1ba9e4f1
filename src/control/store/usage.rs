//! The usage counters' table, `token_usage`: a token's requests per UTC day, route and outcome
//! (written by the usage flush, see `activity.rs`), read back for the usage document and the
//! listings' `requests_30d`, and pruned past `usage.keep_days`.

use super::{Store, StoreError, with_pool};
use crate::model::{TokenId, UsageRow};

/// Rows deleted per statement when pruning: each statement holds the write lock briefly, so
/// gateways' flushes and control-path changes interleave with a large prune.
const PRUNE_BATCH: i64 = 5_000;

impl Store {
    /// The token's usage rows from `first_day` on (days since 1970-01-01 UTC), sorted by day,
    /// route and outcome.
    pub async fn token_usage(&self, token_id: TokenId, first_day: i64) -> Result<Vec<UsageRow>, StoreError> {
        let sql = "SELECT day, route, outcome, requests FROM token_usage WHERE token_id = $1 AND day >= $2 \
                   ORDER BY day, route, outcome";
        Ok(with_pool!(self, pool => {
            sqlx::query_as::<_, UsageRow>(sql).bind(token_id).bind(first_day).fetch_all(pool).await?
        }))
    }

    /// Deletes the counter rows of days before `first_kept_day`, [`PRUNE_BATCH`] rows per
    /// statement, and returns how many went.
    pub async fn prune_usage(&self, first_kept_day: i64) -> Result<u64, StoreError> {
        // Row values select whole keys on both backends (SQLite 3.15+, PostgreSQL).
        let sql = "DELETE FROM token_usage WHERE (token_id, day, route, outcome) IN \
                   (SELECT token_id, day, route, outcome FROM token_usage WHERE day < $1 LIMIT $2)";
        let mut pruned = 0;
        loop {
            let deleted = with_pool!(self, pool => {
                sqlx::query(sql).bind(first_kept_day).bind(PRUNE_BATCH).execute(pool).await?.rows_affected()
            });
            pruned += deleted;
            if deleted < PRUNE_BATCH as u64 {
                return Ok(pruned);
            }
        }
    }
}
