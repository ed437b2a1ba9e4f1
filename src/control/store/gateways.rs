//! The registry of running gateways: each `serve` process's row, its heartbeat and the last
//! change-log sequence it applied. Written outside the change-log lock (autocommit): these are
//! one-row updates of a gateway's own row, and must not queue behind control-path writes.
//!
//! On SQLite they are written on a connection of their own with `synchronous = NORMAL`: a
//! revocation must survive power loss, a heartbeat need not, and a report that waits for the
//! disk holds SQLite's one write lock while every other gateway's report queues behind it —
//! measured, that made confirming a change across ten gateways several times slower.

use sqlx::sqlite::{SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use super::{Backend, Store, StoreError, with_pool};

/// Runs a registry write (the query expression is expanded once per backend) on the
/// registry's writer: SQLite's own connection, or the PostgreSQL pool. Evaluates to the number
/// of rows it changed.
macro_rules! registry_write {
    ($store:expr, $query:expr) => {
        match &$store.backend {
            Backend::Sqlite(_) => $query.execute($store.registry_writer().await?).await?.rows_affected(),
            Backend::Postgres(pool) => $query.execute(pool).await?.rows_affected(),
        }
    };
}

/// A gateway as it registers itself.
#[derive(Debug, Clone)]
pub struct NewGateway {
    /// Random, new each time a `serve` process starts: the row's key.
    pub id: String,
    /// The host it runs on, so an operator can find it.
    pub host: String,
    /// Its process id on that host.
    pub pid: i64,
    /// Its proxy listener's address (`-` when it has none), named when it lags.
    pub proxy_addr: String,
    /// Its admin listener's address (`-` when it has none).
    pub admin_addr: String,
    /// The tokengate version it runs.
    pub version: String,
    /// When the process started (milliseconds since the epoch).
    pub started_ms: i64,
}

/// A registered gateway.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct GatewayRecord {
    /// Random, new each time a `serve` process starts: the row's key.
    pub id: String,
    /// The host it runs on.
    pub host: String,
    /// Its process id on that host.
    pub pid: i64,
    /// Its proxy listener's address (`-` when it has none).
    pub proxy_addr: String,
    /// Its admin listener's address (`-` when it has none).
    pub admin_addr: String,
    /// The tokengate version it runs.
    pub version: String,
    /// When the process started (milliseconds since the epoch).
    pub started_ms: i64,
    /// Its last heartbeat (milliseconds): a gateway silent for `sync.stale_after` is not running,
    /// and is not waited for.
    pub heartbeat_ms: i64,
    /// The last change-log sequence it applied: a change is confirmed once every running gateway
    /// reports at least its sequence.
    pub applied_seq: i64,
    /// When `applied_seq` last moved (milliseconds), for measuring how long reports take.
    pub applied_ms: i64,
}

const GATEWAY_SELECT: &str = "SELECT id, host, pid, proxy_addr, admin_addr, version, started_ms, heartbeat_ms, \
     applied_seq, applied_ms FROM gateways";

impl Store {
    /// SQLite's registry writer (see the module's doc), opened on first use.
    async fn registry_writer(&self) -> Result<&SqlitePool, StoreError> {
        let options = self.sqlite_options.clone();
        let pool = self
            .registry_writer
            .get_or_try_init(|| async move {
                let options = options.ok_or_else(|| StoreError::Open {
                    url: "sqlite".into(),
                    message: "no SQLite options for the registry writer".into(),
                })?;
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(options.synchronous(SqliteSynchronous::Normal))
                    .await
                    .map_err(StoreError::from)
            })
            .await?;
        Ok(pool)
    }

    /// Registers (or re-registers, after its row was pruned) a gateway that has applied `seq`.
    pub async fn register_gateway(&self, gateway: &NewGateway, seq: i64, now_ms: i64) -> Result<(), StoreError> {
        registry_write!(
            self,
            sqlx::query(
                "INSERT INTO gateways (id, host, pid, proxy_addr, admin_addr, version, started_ms, heartbeat_ms, \
             applied_seq, applied_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $8) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_ms = $8, applied_seq = $9, applied_ms = $8",
            )
            .bind(&gateway.id)
            .bind(&gateway.host)
            .bind(gateway.pid)
            .bind(&gateway.proxy_addr)
            .bind(&gateway.admin_addr)
            .bind(&gateway.version)
            .bind(gateway.started_ms)
            .bind(now_ms)
            .bind(seq)
        );
        Ok(())
    }

    /// Records a heartbeat and the last sequence applied. `false` when the row is gone (pruned
    /// while this gateway was stopped): the caller registers again.
    pub async fn gateway_heartbeat(&self, id: &str, seq: i64, now_ms: i64) -> Result<bool, StoreError> {
        Ok(registry_write!(
            self,
            sqlx::query(
                "UPDATE gateways SET heartbeat_ms = $1, \
             applied_ms = CASE WHEN applied_seq < $2 THEN $1 ELSE applied_ms END, \
             applied_seq = CASE WHEN applied_seq < $2 THEN $2 ELSE applied_seq END WHERE id = $3",
            )
            .bind(now_ms)
            .bind(seq)
            .bind(id)
        ) > 0)
    }

    /// Removes a gateway's row (a clean stop).
    pub async fn deregister_gateway(&self, id: &str) -> Result<(), StoreError> {
        registry_write!(self, sqlx::query("DELETE FROM gateways WHERE id = $1").bind(id));
        Ok(())
    }

    /// Drops the rows of gateways silent since before `before_ms`; returns how many.
    pub async fn prune_gateways(&self, before_ms: i64) -> Result<u64, StoreError> {
        Ok(registry_write!(self, sqlx::query("DELETE FROM gateways WHERE heartbeat_ms < $1").bind(before_ms)))
    }

    /// The gateways with a heartbeat since `since_ms` (the running ones), by host and pid.
    pub async fn running_gateways(&self, since_ms: i64) -> Result<Vec<GatewayRecord>, StoreError> {
        let sql = format!("{GATEWAY_SELECT} WHERE heartbeat_ms >= $1 ORDER BY host, pid, id");
        Ok(with_pool!(self, pool => {
            sqlx::query_as::<_, GatewayRecord>(sqlx::AssertSqlSafe(sql)).bind(since_ms).fetch_all(pool).await?
        }))
    }

    /// When the oldest change after `seq` was committed (milliseconds; `None` when there is none,
    /// or it predates millisecond times).
    pub async fn first_change_ms_after(&self, seq: i64) -> Result<Option<i64>, StoreError> {
        Ok(with_pool!(self, pool => {
            sqlx::query_scalar::<_, Option<i64>>("SELECT MIN(at_ms) FROM changes WHERE seq > $1")
                .bind(seq)
                .fetch_one(pool)
                .await?
        }))
    }
}
