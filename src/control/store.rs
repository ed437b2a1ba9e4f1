//! The database: one [`Store`] over SQLite (the embedded default) or PostgreSQL (for several
//! gateways), with embedded migrations. Every mutation appends to the change log in the same
//! transaction. No HTTP types here.
//!
//! The SQL is written once, in a portable dialect (`$N` placeholders, `RETURNING`, integer
//! times), and `with_pool!` expands each query for both pool types.

mod accounts;
mod activity;
mod announcements;
mod copy;
mod events;
mod expiry_cap;
mod gateways;
mod listing;
mod outbox;
mod records;
pub(crate) mod refusal_notice;
mod reminders;
mod sync_reads;
mod tokens;
mod usage;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Postgres, Sqlite, Transaction};

use crate::clock::UnixTime;
use crate::config::SecretUrl;
use crate::model::{AccountId, TokenId};

pub use crate::model::{
    AccountChanges, AccountRecord, AccountSummary, EventFilter, EventKind, EventRecord, NewAccount, NewEvent, NewToken,
    RevokeReason, SortField, StatusFilter, TokenFilter, TokenRecord, TokenSort, TokenStatus,
};
pub use announcements::ChangeListener;
pub use copy::TableCounts;
pub use expiry_cap::CappedExpiry;
pub use gateways::{GatewayRecord, NewGateway};
pub use outbox::{Delivery, DeliveryOutcome, KeyedNotification, OutboxMessage};
pub use records::*;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Why the store failed. The duplicates and the last superuser become the service's conflicts;
/// the rest are failures of the system, which the admin API logs and answers without their text.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be opened or reached at start; the URL is masked.
    #[error("cannot open database {url}: {message}")]
    Open {
        /// The database URL, its password masked.
        url: String,
        /// The driver's reason (refused, unknown host, authentication failed, ...).
        message: String,
    },
    /// An embedded migration failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// An account with this email (compared without case) exists already.
    #[error("an account with email {0} already exists")]
    DuplicateAccount(String),
    /// The owner has a live token with this name already.
    #[error("a live token named {0:?} already exists for this account")]
    DuplicateTokenName(String),
    /// The change would leave no enabled superuser, and with it nobody to manage accounts
    /// through the API or the web page.
    #[error("{0} is the last enabled superuser: make another account a superuser first")]
    LastSuperuser(String),
    /// A copy's target holds data, or the copy does not match its source.
    #[error("{0}")]
    NotEmpty(String),
    /// `db copy` met a table or column it cannot carry.
    #[error("{0}")]
    CannotCopy(String),
    /// Anything else the database reported.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The database file's watcher could not be set up (change announcements on SQLite).
    #[error("{0}")]
    Watch(String),
    /// Reading the SQLite file directly (the index's full load) failed.
    #[error("database error: {0}")]
    DirectRead(String),
    /// A command that reads or changes tokens and accounts found no SQLite file: it creates
    /// none, since an empty new database would only hide a wrong directory or configuration.
    #[error(
        "no database at {}: only serve and user add create one (--config, --data-dir or --database choose another)",
        path.display()
    )]
    Missing {
        /// The absolute path looked for.
        path: std::path::PathBuf,
    },
}

impl StoreError {
    /// True when the database could not be reached (as opposed to refusing a statement).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed))
    }
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

/// The connection pool of one backend.
#[derive(Clone, Debug)]
pub(crate) enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to whichever pool the store has. The body is compiled
/// once per backend, so one piece of SQL serves both.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            $crate::control::store::Backend::Sqlite($pool) => $body,
            $crate::control::store::Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

/// Begins a transaction that will write. On SQLite it takes the write lock at once
/// (`BEGIN IMMEDIATE`), so two writers queue on the busy timeout instead of failing when the
/// first read of a deferred transaction is upgraded.
pub(crate) trait BeginWrite {
    type Db: sqlx::Database;
    fn begin_write(&self) -> impl Future<Output = Result<Transaction<'static, Self::Db>, sqlx::Error>> + Send;
}

impl BeginWrite for SqlitePool {
    type Db = Sqlite;
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

impl BeginWrite for PgPool {
    type Db = Postgres;
    /// Takes the change-log lock first: PostgreSQL writers then run one at a time, as SQLite's
    /// do. That orders change-log sequence numbers by commit (see [`ChangeLogAppend`]), makes
    /// read-modify-write changes (an account's flags) safe without per-statement row locks, and
    /// rules out deadlocks between a usage flush and a revocation touching the same rows.
    /// Control-path writes are rare and short, and usage writes one batch per flush interval.
    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let mut tx = self.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(CHANGE_LOG_LOCK).execute(&mut *tx).await?;
        Ok(tx)
    }
}

/// The NOTIFY channel on which PostgreSQL announces new change-log rows.
pub const CHANGES_CHANNEL: &str = "tokengate_changes";

/// The key of the transaction-scoped advisory lock that orders change-log appends.
const CHANGE_LOG_LOCK: i64 = 0x746f_6b65_6e67_6174; // "tokengat"

/// Appending to the change log, which differs by backend.
///
/// The follower reads rows with `seq` greater than the last one it applied, so a row must never
/// become visible after a row with a higher `seq`. SQLite guarantees it: there is one writer at
/// a time. PostgreSQL does not: two transactions can draw sequence values 10 and 11, and 11 can
/// commit first; a follower reading then would skip 10 forever. So on PostgreSQL the append
/// writers hold a transaction-scoped advisory lock from `BEGIN` to commit ([`BeginWrite`]):
/// sequence values are drawn in commit order. The NOTIFY in the same transaction is delivered
/// on commit and only wakes followers up; they read the log either way.
pub(crate) trait ChangeLogAppend {
    fn append_change(
        &mut self,
        at: UnixTime,
        account_id: AccountId,
        token_id: Option<TokenId>,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
}

impl ChangeLogAppend for sqlx::SqliteConnection {
    async fn append_change(
        &mut self,
        at: UnixTime,
        account_id: AccountId,
        token_id: Option<TokenId>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO changes (at, at_ms, account_id, token_id) VALUES ($1, $2, $3, $4)")
            .bind(at)
            .bind(crate::clock::wall_ms())
            .bind(account_id)
            .bind(token_id)
            .execute(&mut *self)
            .await?;
        Ok(())
    }
}

impl ChangeLogAppend for sqlx::PgConnection {
    async fn append_change(
        &mut self,
        at: UnixTime,
        account_id: AccountId,
        token_id: Option<TokenId>,
    ) -> Result<(), sqlx::Error> {
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO changes (at, at_ms, account_id, token_id) VALUES ($1, $2, $3, $4) RETURNING seq",
        )
        .bind(at)
        .bind(crate::clock::wall_ms())
        .bind(account_id)
        .bind(token_id)
        .fetch_one(&mut *self)
        .await?;
        sqlx::query("SELECT pg_notify($1, $2)").bind(CHANGES_CHANNEL).bind(seq.to_string()).execute(&mut *self).await?;
        Ok(())
    }
}

/// Appends a change-log row inside the transaction `$tx` (the mutation's last statement).
macro_rules! append_change {
    ($tx:expr, $at:expr, $account_id:expr, $token_id:expr) => {
        $crate::control::store::ChangeLogAppend::append_change(&mut *$tx, $at, $account_id, $token_id).await
    };
}
pub(crate) use append_change;

/// Inserts one audit event row inside the transaction `$tx`: the one `INSERT INTO events`.
macro_rules! insert_event {
    ($tx:expr, $at:expr, $kind:expr, $actor:expr, $account_id:expr, $account_email:expr, $token_id:expr, $ip:expr, $user_agent:expr, $detail:expr) => {
        sqlx::query(
            "INSERT INTO events (at, kind, actor, account_id, account, token_id, ip, user_agent, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind($at)
        .bind($crate::model::EventKind::as_str($kind))
        .bind($actor)
        .bind($account_id)
        .bind($account_email)
        .bind($token_id)
        .bind($ip)
        .bind($user_agent)
        .bind($detail)
        .execute(&mut *$tx)
        .await
        .map(drop)
    };
}
pub(crate) use insert_event;

/// Queues one notice inside the transaction `$tx`: the one `INSERT INTO outbox`. With a
/// `$dedupe_key`, a notice already queued under that key is not queued again (reminders);
/// evaluates to whether a row was inserted.
macro_rules! insert_outbox {
    ($tx:expr, $at:expr, $account_id:expr, $recipient:expr, $token_id:expr, $notice:expr, $dedupe_key:expr) => {{
        let notice: &$crate::model::Notice = $notice;
        sqlx::query(
            "INSERT INTO outbox (created_at, kind, account_id, recipient, token_id, payload, dedupe_key, next_attempt_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $1) ON CONFLICT (dedupe_key) DO NOTHING",
        )
        .bind($at)
        .bind(&notice.kind)
        .bind($account_id)
        .bind($recipient)
        .bind($token_id)
        .bind(notice.to_json())
        .bind($dedupe_key)
        .execute(&mut *$tx)
        .await
        .map(|done| done.rows_affected() > 0)
    }};
}
pub(crate) use insert_outbox;

/// Appends an audit event inside the transaction `$tx`, and, when the event is one its owner
/// is told about, the notice to the outbox: both commit or neither does.
macro_rules! append_event {
    ($tx:expr, $at:expr, $event:expr, $account_id:expr, $account_email:expr, $token_id:expr) => {{
        let event: &$crate::model::NewEvent = &$event;
        let inserted = $crate::control::store::insert_event!(
            $tx,
            $at,
            event.kind,
            &event.actor,
            $account_id,
            $account_email,
            $token_id,
            &event.ip,
            &event.user_agent,
            event.detail.to_string()
        );
        match inserted {
            Ok(()) if event.notify => {
                let notice = $crate::model::Notice::of_event(event, $at);
                $crate::control::store::insert_outbox!(
                    $tx,
                    $at,
                    $account_id,
                    $account_email,
                    $token_id,
                    &notice,
                    None::<&str>
                )
                .map(drop)
            }
            other => other,
        }
    }};
}
pub(crate) use append_event;

/// The database behind the control path (and the index's source of truth).
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) backend: Backend,
    /// The SQLite database file, watched for other processes' commits (none for PostgreSQL
    /// and in-memory databases).
    pub(crate) sqlite_file: Option<std::path::PathBuf>,
    /// SQLite: the connection options, for the registry's own writer (see `store/gateways.rs`).
    pub(crate) sqlite_options: Option<SqliteConnectOptions>,
    /// SQLite: that writer, opened on first use.
    pub(crate) registry_writer: std::sync::Arc<tokio::sync::OnceCell<SqlitePool>>,
}

/// Migration state, as `check-config` reports it.
#[derive(Debug, Clone)]
pub struct MigrationStatus {
    /// The versions of the embedded migrations the database has.
    pub applied: Vec<i64>,
    /// The versions and descriptions of those it lacks; `check-config` lists them and applies none.
    pub pending: Vec<(i64, String)>,
}

impl Store {
    /// Opens the database (creating a SQLite file and its directory when missing) and applies
    /// pending migrations.
    pub async fn open(url: &SecretUrl) -> Result<Store, StoreError> {
        let store = Store::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Opens an existing database and applies pending migrations; a SQLite file that does not
    /// exist is [`StoreError::Missing`], not created. For the commands that only read or change
    /// what is there: run from the wrong directory, they must say so rather than act on a new,
    /// empty database.
    pub async fn open_existing(url: &SecretUrl) -> Result<Store, StoreError> {
        if let Some(file) = Store::sqlite_path(url)
            && !file.exists()
        {
            return Err(StoreError::Missing { path: std::path::absolute(&file).unwrap_or(file) });
        }
        Store::open(url).await
    }

    /// The file behind a `sqlite:` URL, as the driver reads it; `None` for PostgreSQL, an
    /// in-memory database or a URL the driver rejects (opening it reports why).
    pub fn sqlite_path(url: &SecretUrl) -> Option<std::path::PathBuf> {
        let text = url.expose();
        let rest = text.strip_prefix("sqlite://").or_else(|| text.strip_prefix("sqlite:"))?;
        let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
        if database.is_empty() || database == ":memory:" || params.split('&').any(|p| p == "mode=memory") {
            return None;
        }
        // The driver's reading of the rest: percent escapes decoded.
        let options = SqliteConnectOptions::from_str(text).ok()?;
        Some(options.get_filename().to_owned())
    }

    /// Opens the database without changing its schema.
    pub async fn connect(url: &SecretUrl) -> Result<Store, StoreError> {
        let open_error = |message: String| StoreError::Open { url: url.masked(), message };
        let text = url.expose();
        let mut sqlite_file = None;
        let mut sqlite_options = None;
        let backend = if text.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(text)
                .map_err(|e| open_error(e.to_string()))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true);
            let file = options.get_filename().to_owned();
            if !file.as_os_str().is_empty() && file.as_os_str() != ":memory:" {
                sqlite_file = Some(std::path::absolute(&file).unwrap_or_else(|_| file.clone()));
            }
            if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| open_error(format!("cannot create directory {}: {e}", dir.display())))?;
            }
            sqlite_options = Some(options.clone());
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await
                .map_err(|e| open_error(e.to_string()))?;
            Backend::Sqlite(pool)
        } else {
            let options = PgConnectOptions::from_str(text).map_err(|e| open_error(e.to_string()))?;
            // One direct attempt first: a pool that cannot connect reports only that it timed
            // out, hiding the reason (refused, unknown host, authentication failed).
            match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect_with(&options)).await {
                Ok(Ok(connection)) => {
                    let _ = connection.close().await;
                }
                Ok(Err(error)) => return Err(open_error(error.to_string())),
                Err(_) => return Err(open_error("no answer within 5 s".into())),
            }
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(options)
                .await
                .map_err(|e| open_error(e.to_string()))?;
            Backend::Postgres(pool)
        };
        Ok(Store { backend, sqlite_file, sqlite_options, registry_writer: Default::default() })
    }

    /// `sqlite` or `postgres`, for `check-config`'s report.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    fn migrator(&self) -> &'static sqlx::migrate::Migrator {
        match self.backend {
            Backend::Sqlite(_) => &SQLITE_MIGRATIONS,
            Backend::Postgres(_) => &POSTGRES_MIGRATIONS,
        }
    }

    /// Applies the embedded migrations the database lacks (the backend's own set).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = self.migrator();
        with_pool!(self, pool => migrator.run(pool).await?);
        Ok(())
    }

    /// Which embedded migrations the database has, and which it still lacks.
    pub async fn migration_status(&self) -> Result<MigrationStatus, StoreError> {
        let applied: Vec<i64> = with_pool!(self, pool => {
            match sqlx::query_scalar::<_, i64>("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
                .fetch_all(pool)
                .await
            {
                Ok(versions) => versions,
                // No migrations table yet: nothing applied. Any other error (permissions, ...)
                // is reported, not taken for an empty database.
                Err(sqlx::Error::Database(e))
                    if e.code().as_deref() == Some("42P01") || e.message().contains("no such table") =>
                {
                    Vec::new()
                }
                Err(e) => return Err(e.into()),
            }
        });
        let pending = self
            .migrator()
            .iter()
            .filter(|m| !applied.contains(&m.version))
            .map(|m| (m.version, m.description.to_string()))
            .collect();
        Ok(MigrationStatus { applied, pending })
    }

    /// Checks that the database answers (for readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(drop)?);
        Ok(())
    }

    /// Closes the pool, waiting for open connections: the last step of a clean shutdown.
    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await);
    }
}
