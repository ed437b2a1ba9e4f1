//! `tokengate db copy` carries every column of every table: a source in which every column of
//! every table holds a value of its own (never NULL, never the column's default) goes SQLite →
//! PostgreSQL → SQLite, and both copies equal the source cell for cell. The tables and columns
//! are read from the migrated SQLite schema, so a migration that adds either is covered at once.

use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, ColumnIndex, Decode, PgPool, Row, Type};
use tokengate::config::SecretUrl;
use tokengate::control::store::Store;

use crate::postgres::TestDatabase;

/// Rows per table: more than one of the copy's batches (1000 rows). Three deliveries per
/// notice, so a batch boundary falls between two deliveries of one notice (composite key).
const ROWS: i64 = 1001;

/// Tables the copy leaves out on purpose: the running gateways (runtime state), the migration
/// bookkeeping (the target is migrated when opened) and SQLite's own AUTOINCREMENT table.
const NOT_COPIED: [&str; 3] = ["gateways", "_sqlx_migrations", "sqlite_sequence"];

#[derive(Debug, Clone, Copy)]
enum Kind {
    Integer,
    Text,
    Blob,
    Boolean,
}

struct Column {
    name: String,
    kind: Kind,
    /// The SQL text of the column's default, if it has one.
    default: Option<String>,
    /// Part of a foreign key: must name an existing row.
    reference: bool,
}

struct Table {
    name: String,
    columns: Vec<Column>,
    /// The primary key's columns, in key order.
    key: Vec<String>,
}

/// One cell, the same whichever backend it was read from.
#[derive(Debug, PartialEq)]
enum Cell {
    Null,
    Integer(i64),
    Text(String),
    Blob(Vec<u8>),
    Boolean(bool),
}

fn quoted(name: &str) -> String {
    format!("\"{name}\"")
}

/// The copied tables of the migrated SQLite database at `pool`, as its schema declares them.
async fn copied_tables(pool: &SqlitePool) -> Vec<Table> {
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .fetch_all(pool)
        .await
        .unwrap();
    let mut tables = Vec::new();
    for name in names.into_iter().filter(|n| !NOT_COPIED.contains(&n.as_str())) {
        let info: Vec<(String, String, Option<String>, i64)> =
            sqlx::query_as("SELECT name, type, dflt_value, pk FROM pragma_table_info($1) ORDER BY cid")
                .bind(&name)
                .fetch_all(pool)
                .await
                .unwrap();
        let references: Vec<String> = sqlx::query_scalar("SELECT \"from\" FROM pragma_foreign_key_list($1)")
            .bind(&name)
            .fetch_all(pool)
            .await
            .unwrap();
        let mut key: Vec<(i64, String)> =
            info.iter().filter(|c| c.3 > 0).map(|(column, _, _, pk)| (*pk, column.clone())).collect();
        key.sort();
        let columns = info
            .into_iter()
            .map(|(column, declared, default, _)| Column {
                kind: match declared.to_ascii_uppercase().as_str() {
                    "INTEGER" | "BIGINT" => Kind::Integer,
                    "TEXT" => Kind::Text,
                    "BLOB" => Kind::Blob,
                    "BOOLEAN" => Kind::Boolean,
                    other => panic!("{name}.{column} has type {other}, which this test does not fill yet"),
                },
                reference: references.contains(&column),
                name: column,
                default,
            })
            .collect();
        tables.push(Table { name, columns, key: key.into_iter().map(|(_, c)| c).collect() });
    }
    tables
}

/// The value of `column` (the `index`th of `table`) in row `row` (1-based): never NULL, never
/// the default, unique per row (for UNIQUE columns), and a valid reference where it is one.
fn value(table: &Table, index: usize, row: i64) -> Cell {
    let column = &table.columns[index];
    let label = format!("{}.{} #{row:05}", table.name, column.name);
    match column.kind {
        // Every referenced table has rows 1..=ROWS; three rows refer to each.
        Kind::Integer if column.reference => Cell::Integer((row - 1) / 3 + 1),
        Kind::Integer if table.key == [column.name.clone()] => Cell::Integer(row),
        // Past 2^32, so a value narrowed to 32 bits anywhere shows.
        Kind::Integer => Cell::Integer((1 << 33) + 10_000 * index as i64 + row),
        Kind::Text => Cell::Text(format!("{label} é✓")),
        Kind::Blob => Cell::Blob([&[0u8, 0xff][..], label.as_bytes()].concat()),
        Kind::Boolean => Cell::Boolean(!matches!(
            column.default.as_deref().map(str::to_ascii_uppercase).as_deref(),
            Some("TRUE" | "1")
        )),
    }
}

/// Fills every copied table of the SQLite database at `url` with [`ROWS`] rows of [`value`]s.
async fn fill(url: &str, tables: &[Table]) {
    // Rows refer to rows of tables filled later: the references hold once all are filled.
    let options = SqliteConnectOptions::from_str(url).unwrap().foreign_keys(false);
    let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    for table in tables {
        let list = table.columns.iter().map(|c| quoted(&c.name)).collect::<Vec<_>>().join(", ");
        let params = (1..=table.columns.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        let sql = format!("INSERT INTO {} ({list}) VALUES ({params})", quoted(&table.name));
        for row in 1..=ROWS {
            let mut insert = sqlx::query(AssertSqlSafe(sql.clone()));
            for index in 0..table.columns.len() {
                insert = match value(table, index, row) {
                    Cell::Integer(v) => insert.bind(v),
                    Cell::Text(v) => insert.bind(v),
                    Cell::Blob(v) => insert.bind(v),
                    Cell::Boolean(v) => insert.bind(v),
                    Cell::Null => unreachable!("every column is filled"),
                };
            }
            insert.execute(&mut *tx).await.unwrap();
        }
    }
    tx.commit().await.unwrap();
    // The premise of the test: no column of the source holds NULL or its default anywhere.
    for table in tables {
        for column in &table.columns {
            let name = quoted(&column.name);
            let default = column.default.as_deref().map_or(String::new(), |d| format!(" OR {name} IS ({d})"));
            let sql = format!("SELECT COUNT(*) FROM {} WHERE {name} IS NULL{default}", quoted(&table.name));
            let count: i64 = sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(&pool).await.unwrap();
            assert_eq!(count, 0, "{}.{} holds NULL or its default", table.name, column.name);
        }
    }
    pool.close().await;
}

fn cells<R: Row>(row: &R, table: &Table) -> Vec<Cell>
where
    usize: ColumnIndex<R>,
    for<'r> Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<Vec<u8>>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<bool>: Decode<'r, R::Database> + Type<R::Database>,
{
    let column = |i: usize| &table.columns[i].name;
    (0..table.columns.len())
        .map(|i| {
            let cell = match table.columns[i].kind {
                Kind::Integer => row.try_get::<Option<i64>, _>(i).map(|v| v.map(Cell::Integer)),
                Kind::Text => row.try_get::<Option<String>, _>(i).map(|v| v.map(Cell::Text)),
                Kind::Blob => row.try_get::<Option<Vec<u8>>, _>(i).map(|v| v.map(Cell::Blob)),
                Kind::Boolean => row.try_get::<Option<bool>, _>(i).map(|v| v.map(Cell::Boolean)),
            };
            cell.unwrap_or_else(|e| panic!("{}.{}: {e}", table.name, column(i))).unwrap_or(Cell::Null)
        })
        .collect()
}

enum Database {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Database {
    async fn open(url: &str) -> Database {
        if url.starts_with("sqlite:") {
            Database::Sqlite(SqlitePool::connect(url).await.unwrap())
        } else {
            Database::Postgres(PgPool::connect(url).await.unwrap())
        }
    }

    /// Every row of `table` in key order, every column of the source's schema.
    async fn rows(&self, table: &Table) -> Vec<Vec<Cell>> {
        let list = table.columns.iter().map(|c| quoted(&c.name)).collect::<Vec<_>>().join(", ");
        let key = table.key.iter().map(|c| quoted(c)).collect::<Vec<_>>().join(", ");
        let sql = format!("SELECT {list} FROM {} ORDER BY {key}", quoted(&table.name));
        match self {
            Database::Sqlite(pool) => {
                let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(pool).await.unwrap();
                rows.iter().map(|row| cells(row, table)).collect()
            }
            Database::Postgres(pool) => {
                let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(pool).await.unwrap();
                rows.iter().map(|row| cells(row, table)).collect()
            }
        }
    }

    async fn close(self) {
        match self {
            Database::Sqlite(pool) => pool.close().await,
            Database::Postgres(pool) => pool.close().await,
        }
    }
}

/// Asserts that `copy` holds exactly the rows of `source`, cell for cell.
async fn assert_same(source: &Database, copy: &Database, what: &str, tables: &[Table]) {
    for table in tables {
        let (expected, actual) = (source.rows(table).await, copy.rows(table).await);
        assert_eq!(expected.len() as i64, ROWS, "the source's {}", table.name);
        assert_eq!(actual.len(), expected.len(), "{what}: rows of {}", table.name);
        for (row, (expected, actual)) in expected.iter().zip(&actual).enumerate() {
            for (i, column) in table.columns.iter().enumerate() {
                assert_eq!(actual[i], expected[i], "{what}: {}.{} of row {}", table.name, column.name, row + 1);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn db_copy_carries_every_column_of_every_table_both_ways() {
    let Some(db) = TestDatabase::create().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let source_url = format!("sqlite://{}", dir.path().join("source.db").display());
    let back_url = format!("sqlite://{}", dir.path().join("back.db").display());

    let source = Store::open(&SecretUrl::new(&source_url)).await.unwrap();
    let schema = SqlitePool::connect(&source_url).await.unwrap();
    let tables = copied_tables(&schema).await;
    schema.close().await;
    assert!(tables.iter().any(|t| t.name == "outbox_deliveries"), "the schema was read");
    fill(&source_url, &tables).await;

    let postgres = Store::open(&SecretUrl::new(&db.url)).await.unwrap();
    source.copy_into(&postgres).await.unwrap();
    let back = Store::open(&SecretUrl::new(&back_url)).await.unwrap();
    postgres.copy_into(&back).await.unwrap();
    for store in [source, postgres, back] {
        store.close().await;
    }

    let source = Database::open(&source_url).await;
    let postgres = Database::open(&db.url).await;
    let back = Database::open(&back_url).await;
    assert_same(&source, &postgres, "SQLite → PostgreSQL", &tables).await;
    assert_same(&source, &back, "SQLite → PostgreSQL → SQLite", &tables).await;
    for database in [source, postgres, back] {
        database.close().await;
    }
}
