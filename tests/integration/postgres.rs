//! A PostgreSQL database of its own for each test that needs one, dropped afterwards.
//!
//! The server is `TOKENGATE_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`).
//! Where none answers, [`TestDatabase::create`] prints why and returns `None`, and the test
//! returns early — unless `TOKENGATE_REQUIRE_POSTGRES=1` (set by CI, whose machines run one),
//! where an absent server fails the test instead of letting it look passed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sqlx::{Connection, PgConnection};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub struct TestDatabase {
    /// The URL of this test's own database.
    pub url: String,
    name: String,
    server_url: String,
}

fn server_url() -> String {
    std::env::var("TOKENGATE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// `base` with its database name replaced by `name`.
fn with_database(base: &str, name: &str) -> String {
    let (without_query, query) = match base.split_once('?') {
        Some((url, query)) => (url, Some(query)),
        None => (base, None),
    };
    let scheme_end = without_query.find("://").map_or(0, |i| i + 3);
    let path_start = without_query[scheme_end..].find('/').map_or(without_query.len(), |i| scheme_end + i);
    let mut url = format!("{}/{name}", &without_query[..path_start]);
    if let Some(query) = query {
        url = format!("{url}?{query}");
    }
    url
}

impl TestDatabase {
    pub async fn create() -> Option<TestDatabase> {
        let server_url = server_url();
        let mut conn = match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&server_url)).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(error)) => return absent(&server_url, &error.to_string()),
            Err(_) => return absent(&server_url, "no answer within 5 s"),
        };
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let name = format!("tg_test_{}_{}_{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
        Some(TestDatabase { url: with_database(&server_url, &name), name, server_url })
    }

    /// A connection to the server's maintenance database, for terminating connections.
    pub async fn server_connection(&self) -> PgConnection {
        PgConnection::connect(&self.server_url).await.unwrap()
    }

    /// Ends every connection to this test's database (as a restart or network cut would).
    pub async fn terminate_connections(&self, only_listeners: bool) -> u64 {
        let mut conn = self.server_connection().await;
        let sql = if only_listeners {
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND query ILIKE 'listen%'"
        } else {
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()"
        };
        let count: i64 = sqlx::query_scalar(sql).bind(&self.name).fetch_one(&mut conn).await.unwrap();
        count as u64
    }
}

fn absent(url: &str, why: &str) -> Option<TestDatabase> {
    if std::env::var("TOKENGATE_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
        panic!("PostgreSQL is required (TOKENGATE_REQUIRE_POSTGRES=1) but {url} does not answer: {why}");
    }
    eprintln!("SKIPPED: this test needs PostgreSQL and none answers at {url} ({why}); set TOKENGATE_TEST_POSTGRES_URL");
    None
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (server_url, name) = (self.server_url.clone(), self.name.clone());
        // Drop runs outside async context: a thread with its own runtime does the cleanup.
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            runtime.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&server_url).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

#[test]
fn database_names_are_replaced_in_urls() {
    assert_eq!(with_database("postgres://u@h:5432/test", "x"), "postgres://u@h:5432/x");
    assert_eq!(with_database("postgres://u@h/test?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
    assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
}
