//! Last-use records, written in one batched transaction per flush.

use super::{BeginWrite, Store, StoreError, UsageRecord, with_pool};

impl Store {
    /// Writes a batch of last-use records in one transaction. A record older than what the
    /// database already has (written by another gateway) does not overwrite it.
    pub async fn record_usage(&self, batch: &[UsageRecord]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            for record in batch {
                sqlx::query(
                    "UPDATE tokens SET last_used_at = $1, last_used_method = $2, last_used_path = $3, last_used_ip = $4 \
                     WHERE id = $5 AND (last_used_at IS NULL OR last_used_at <= $1)",
                )
                .bind(record.at)
                .bind(&record.method)
                .bind(&record.path)
                .bind(&record.ip)
                .bind(record.token_id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}
