//! Copying a whole database into an empty one (`tokengate db copy`), for moving from SQLite to
//! PostgreSQL when one machine is outgrown (or back). Every row keeps its id, so token ids in
//! scripts, audit references and rotation links stay valid, and every secret keeps working.
//!
//! The copy is driven by [`TABLES`]; the columns of each table are read from the source's own
//! schema when the copy runs, so a column added by a migration is carried without anyone
//! remembering to list it here.

use std::sync::Arc;

use sqlx::postgres::PgPool;
use sqlx::query::Query;
use sqlx::sqlite::SqlitePool;
use sqlx::{
    AssertSqlSafe, ColumnIndex, Database, Decode, Encode, Postgres, Row, SqlSafeStr, SqlStr, Sqlite, Transaction, Type,
};

use super::{Backend, BeginWrite, Store, StoreError, with_pool};

/// Rows read and written per round trip.
const BATCH: i64 = 1000;

/// Rows per table: what `db copy` carried, checked against both databases after the copy, and
/// printed with `--json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TableCounts {
    /// Rows of `accounts`.
    pub accounts: i64,
    /// Rows of `tokens`.
    pub tokens: i64,
    /// Rows of `events`, the audit log.
    pub events: i64,
    /// Rows of `changes`, the change log.
    pub changes: i64,
    /// Rows of `outbox`, the notifications.
    pub outbox: i64,
    /// Rows of `outbox_deliveries`, each channel's delivery state.
    pub outbox_deliveries: i64,
    /// Rows of `token_usage`, the usage counters.
    pub token_usage: i64,
}

/// A table the copy carries: what its schema does not say or what the copy needs beyond it.
struct Table {
    name: &'static str,
    /// The primary key: rows are read in its order, each batch after the last key read.
    key: &'static [&'static str],
    /// The key is an identity column, whose PostgreSQL sequence must continue after the copied
    /// ids.
    identity: bool,
    /// Its field in [`TableCounts`].
    count: fn(&mut TableCounts) -> &mut i64,
}

/// Every table the copy carries, in dependency order: the rows a row references are copied
/// before it. Deliberately not copied: `gateways`, the registrations of the gateway processes
/// running on the source (runtime state; each gateway registers with the database it runs on),
/// and `_sqlx_migrations` (opening the target migrates it).
const TABLES: [Table; 7] = [
    Table { name: "accounts", key: &["id"], identity: true, count: |c| &mut c.accounts },
    Table { name: "tokens", key: &["id"], identity: true, count: |c| &mut c.tokens },
    Table { name: "events", key: &["id"], identity: true, count: |c| &mut c.events },
    Table { name: "changes", key: &["seq"], identity: true, count: |c| &mut c.changes },
    Table { name: "outbox", key: &["id"], identity: true, count: |c| &mut c.outbox },
    Table {
        name: "outbox_deliveries",
        key: &["outbox_id", "channel"],
        identity: false,
        count: |c| &mut c.outbox_deliveries,
    },
    Table {
        name: "token_usage",
        key: &["token_id", "day", "route", "outcome"],
        identity: false,
        count: |c| &mut c.token_usage,
    },
];

/// The column types the schema uses, as each backend names them.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Read and written as i64: SQLite's INTEGER and BIGINT, PostgreSQL's BIGINT (its schema
    /// declares no 32-bit integers).
    Integer,
    Text,
    Blob,
    /// SQLite stores these as integers 0 and 1; PostgreSQL as BOOLEAN.
    Boolean,
}

impl Kind {
    /// The kind of a column declared `declared` (SQLite's declared type or PostgreSQL's
    /// `information_schema` data type); `None` for a type the copy does not know.
    fn of(declared: &str) -> Option<Kind> {
        match declared.to_ascii_lowercase().as_str() {
            "integer" | "bigint" => Some(Kind::Integer),
            "text" => Some(Kind::Text),
            "blob" | "bytea" => Some(Kind::Blob),
            "boolean" => Some(Kind::Boolean),
            _ => None,
        }
    }
}

/// One value of one column. A NULL keeps its column's type too: PostgreSQL refuses a NULL
/// bound as BIGINT for a TEXT column.
#[derive(Debug, Clone)]
enum Value {
    Integer(Option<i64>),
    Text(Option<String>),
    Blob(Option<Vec<u8>>),
    Boolean(Option<bool>),
}

impl Value {
    /// Reads column `index` of `row` as a value of `kind`.
    fn read<R: Row>(row: &R, index: usize, kind: Kind) -> Result<Value, sqlx::Error>
    where
        usize: ColumnIndex<R>,
        for<'r> Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> Option<Vec<u8>>: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> Option<bool>: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(match kind {
            Kind::Integer => Value::Integer(row.try_get(index)?),
            Kind::Text => Value::Text(row.try_get(index)?),
            Kind::Blob => Value::Blob(row.try_get(index)?),
            Kind::Boolean => Value::Boolean(row.try_get(index)?),
        })
    }

    /// Binds this value as the next parameter of `query`.
    fn bind<DB: Database>(self, query: Query<'_, DB, DB::Arguments>) -> Query<'_, DB, DB::Arguments>
    where
        for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
        for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
        for<'t> Option<Vec<u8>>: Encode<'t, DB> + Type<DB>,
        for<'t> Option<bool>: Encode<'t, DB> + Type<DB>,
    {
        match self {
            Value::Integer(v) => query.bind(v),
            Value::Text(v) => query.bind(v),
            Value::Blob(v) => query.bind(v),
            Value::Boolean(v) => query.bind(v),
        }
    }
}

/// A column as the source's schema declares it.
struct Column {
    name: String,
    kind: Kind,
}

/// How one table is copied: its columns as the source has them, and the statements built
/// from them.
struct TablePlan {
    columns: Vec<Column>,
    /// Where the key's columns are in `columns`.
    key_at: Vec<usize>,
    /// The first batch: `LIMIT $1`.
    first: SqlStr,
    /// The next batch: the key values after which to go on, then the limit.
    next: SqlStr,
    insert: SqlStr,
}

/// `name` as a quoted SQL identifier (both backends quote with double quotes).
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A `$from, $from+1, …` list of `n` placeholders.
fn placeholders(from: usize, n: usize) -> String {
    (from..from + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

impl TablePlan {
    fn new(table: &'static Table, columns: Vec<Column>) -> Result<TablePlan, StoreError> {
        if columns.is_empty() {
            return Err(StoreError::CannotCopy(format!("the source has no table {}", table.name)));
        }
        let key_at = table
            .key
            .iter()
            .map(|key| {
                columns.iter().position(|c| c.name == *key).ok_or_else(|| {
                    StoreError::CannotCopy(format!("the source's table {} has no column {key}", table.name))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let name = quoted(table.name);
        let list = columns.iter().map(|c| quoted(&c.name)).collect::<Vec<_>>().join(", ");
        let key = table.key.iter().map(|k| quoted(k)).collect::<Vec<_>>().join(", ");
        let n = table.key.len();
        // Identifiers come from the table list and the source's catalog, quoted; values are bound.
        let sql = |text: String| AssertSqlSafe(Arc::<str>::from(text)).into_sql_str();
        Ok(TablePlan {
            first: sql(format!("SELECT {list} FROM {name} ORDER BY {key} LIMIT $1")),
            next: sql(format!(
                "SELECT {list} FROM {name} WHERE ({key}) > ({}) ORDER BY {key} LIMIT ${}",
                placeholders(1, n),
                n + 1
            )),
            insert: sql(format!("INSERT INTO {name} ({list}) VALUES ({})", placeholders(1, columns.len()))),
            columns,
            key_at,
        })
    }
}

/// Begins the read of the whole source as one snapshot, so that every table is copied as of
/// the same moment (a delivery's notice, a token's account) even while a gateway writes.
trait BeginSnapshot {
    type Db: Database;
    fn begin_snapshot(&self) -> impl Future<Output = Result<Transaction<'static, Self::Db>, sqlx::Error>> + Send;
}

impl BeginSnapshot for SqlitePool {
    type Db = Sqlite;
    /// A deferred transaction: its first read fixes the snapshot (WAL), without blocking writers.
    async fn begin_snapshot(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.begin().await
    }
}

impl BeginSnapshot for PgPool {
    type Db = Postgres;
    async fn begin_snapshot(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await
    }
}

impl Store {
    /// How many rows each table holds.
    pub async fn table_counts(&self) -> Result<TableCounts, StoreError> {
        let mut counts = TableCounts::default();
        for table in &TABLES {
            let sql = AssertSqlSafe(format!("SELECT COUNT(*) FROM {}", quoted(table.name)));
            *(table.count)(&mut counts) =
                with_pool!(self, pool => sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await?);
        }
        Ok(counts)
    }

    /// The columns of `table` in this database, in their order (none if there is no such table).
    async fn columns(&self, table: &str) -> Result<Vec<Column>, StoreError> {
        let declared: Vec<(String, String)> = match &self.backend {
            Backend::Sqlite(pool) => {
                sqlx::query_as("SELECT name, type FROM pragma_table_info($1) ORDER BY cid")
                    .bind(table)
                    .fetch_all(pool)
                    .await?
            }
            Backend::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT column_name::text, data_type::text FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                )
                .bind(table)
                .fetch_all(pool)
                .await?
            }
        };
        declared
            .into_iter()
            .map(|(name, declared)| match Kind::of(&declared) {
                Some(kind) => Ok(Column { name, kind }),
                None => Err(StoreError::CannotCopy(format!(
                    "cannot copy column {table}.{name}: its type {declared} is not one the copy knows"
                ))),
            })
            .collect()
    }

    /// Copies every row of this store into `target`, which must be empty, in one transaction;
    /// then checks that both hold the same number of rows per table.
    pub async fn copy_into(&self, target: &Store) -> Result<TableCounts, StoreError> {
        let existing = target.table_counts().await?;
        if existing != TableCounts::default() {
            return Err(StoreError::NotEmpty(format!(
                "the target database is not empty ({} accounts, {} tokens, {} events)",
                existing.accounts, existing.tokens, existing.events
            )));
        }
        let mut plans = Vec::with_capacity(TABLES.len());
        for table in &TABLES {
            plans.push(TablePlan::new(table, self.columns(table.name).await?)?);
        }
        with_pool!(self, source => with_pool!(target, pool => {
            let mut reader = source.begin_snapshot().await?;
            let mut tx = pool.begin_write().await?;
            for plan in &plans {
                let mut after: Option<Vec<Value>> = None;
                loop {
                    let query = match after.take() {
                        None => sqlx::query(plan.first.clone()),
                        Some(key) => key.into_iter().fold(sqlx::query(plan.next.clone()), |q, v| v.bind(q)),
                    };
                    let rows = query.bind(BATCH).fetch_all(&mut *reader).await?;
                    let Some(last) = rows.last() else { break };
                    after = Some(
                        plan.key_at.iter().map(|&i| Value::read(last, i, plan.columns[i].kind)).collect::<Result<_, _>>()?,
                    );
                    for row in &rows {
                        let mut insert = sqlx::query(plan.insert.clone());
                        for (i, column) in plan.columns.iter().enumerate() {
                            insert = Value::read(row, i, column.kind)?.bind(insert);
                        }
                        insert.execute(&mut *tx).await?;
                    }
                    if (rows.len() as i64) < BATCH {
                        break;
                    }
                }
            }
            tx.commit().await?;
            reader.commit().await?;
        }));
        target.continue_id_sequences().await?;
        let (source_counts, target_counts) = (self.table_counts().await?, target.table_counts().await?);
        if source_counts != target_counts {
            return Err(StoreError::NotEmpty(format!(
                "the copy does not match its source: source {source_counts:?}, target {target_counts:?}"
            )));
        }
        Ok(target_counts)
    }

    /// After rows were inserted with explicit ids, makes PostgreSQL's identity sequences continue
    /// after the highest id (SQLite does this by itself).
    async fn continue_id_sequences(&self) -> Result<(), StoreError> {
        let Backend::Postgres(pool) = &self.backend else {
            return Ok(());
        };
        for table in TABLES.iter().filter(|t| t.identity) {
            let (name, key) = (table.name, table.key[0]);
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence('{name}', '{key}'), \
                 COALESCE((SELECT MAX({key}) FROM {name}), 0) + 1, false)"
            );
            sqlx::query(AssertSqlSafe(sql)).execute(pool).await?;
        }
        Ok(())
    }
}
