//! How fast a revocation reaches every gateway of a fleet: three real `tokengate serve`
//! processes on one PostgreSQL database (default `sync.interval` of 250 ms), 200 tokens
//! revoked one by one by a writer that, like the CLI, has no index of its own. For each
//! revocation it measures the time from the commit until all three gateways answer 401, and
//! prints the distribution. Target: p99 under 250 ms.
//!
//! ```text
//! cargo bench --bench revocation_propagation
//! ```
//!
//! PostgreSQL: `TOKENGATE_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`);
//! the bench creates and drops a database of its own, and says so and stops if none answers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../examples/support/echo.rs"]
mod echo;

#[path = "support/serve.rs"]
mod serve;
use serve::{spawn_serve, wait_until_listening};

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};
use tokengate::clock::Clock;
use tokengate::config::{Config, SecretUrl};
use tokengate::control::service::{Actor, CreateAccount, CreateToken, ExpiryRequest, LifecycleService};
use tokengate::control::store::Store;

const GATEWAYS: usize = 3;
const REVOCATIONS: usize = 200;
const EMAIL: &str = "fleet@example.com";

struct Gateway {
    child: Child,
    proxy: SocketAddr,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_gateway(config: &std::path::Path) -> Gateway {
    let (child, mut lines) = spawn_serve(without_access_log(), config);
    // Owned from here on, so a failure below still kills and reaps the child (see Drop).
    let mut gateway = Gateway { child, proxy: SocketAddr::from(([0, 0, 0, 0], 0)) };
    gateway.proxy = wait_until_listening(&mut lines, |_| {}).expect("a gateway exited before listening");
    // Keep reading, so warnings are seen and the gateway never writes into a closed pipe.
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            eprintln!("gateway: {line}");
        }
    });
    gateway
}

async fn status(client: &reqwest::Client, gateway: &Gateway, secret: &str) -> u16 {
    let url = format!("http://{}/x", gateway.proxy);
    client.get(url).basic_auth(EMAIL, Some(secret)).send().await.unwrap().status().as_u16()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() {
    let server = std::env::var("TOKENGATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let Ok(mut admin) = PgConnection::connect(&server).await else {
        eprintln!("SKIPPED: no PostgreSQL answers at {server}");
        return;
    };
    let db_name = format!("tg_bench_{}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}"))).execute(&mut admin).await.unwrap();
    let db_url = format!("{}/{db_name}", &server[..server.rfind('/').unwrap()]);

    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    tokio::spawn(echo::serve(upstream, std::future::pending()));

    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("fleet.toml");
    std::fs::write(
        &config_path,
        format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[database]\nurl = \"{db_url}\"\n\
             [[routes]]\nprefix = \"/\"\nupstream = \"http://{upstream_addr}\"\n"
        ),
    )
    .unwrap();
    let config = Config::load(Some(&config_path), Vec::new()).unwrap();
    let store = Store::open(&SecretUrl::new(&db_url)).await.unwrap();
    let writer = LifecycleService::new(store, config.tokens.clone(), Clock::System, None);
    let actor = Actor::cli();
    let account = CreateAccount { email: EMAIL.into(), can_create_tokens: true, ..CreateAccount::default() };
    writer.create_account(account, &actor).await.unwrap();
    let mut tokens = Vec::new();
    for i in 0..REVOCATIONS {
        let request = CreateToken {
            owner_email: EMAIL.into(),
            name: format!("t{i}"),
            description: None,
            expiry: ExpiryRequest::Default,
            scopes: vec![],
            rate_limit: None,
        };
        let created = writer.create_token(request, &actor).await.unwrap();
        tokens.push((created.token.id, created.secret.expose().to_owned()));
    }

    let gateways: Vec<Gateway> = (0..GATEWAYS).map(|_| start_gateway(&config_path)).collect();
    let clients: Vec<reqwest::Client> =
        (0..GATEWAYS).map(|_| reqwest::Client::builder().no_proxy().build().unwrap()).collect();
    for (gateway, client) in gateways.iter().zip(&clients) {
        for (_, secret) in &tokens {
            assert_eq!(status(client, gateway, secret).await, 200, "every token works before the run");
        }
    }

    let mut all_three = Vec::with_capacity(REVOCATIONS);
    let mut each = Vec::with_capacity(REVOCATIONS * GATEWAYS);
    for (id, secret) in &tokens {
        writer.revoke_token(*id, &actor).await.unwrap();
        let committed = Instant::now();
        let waits = gateways.iter().zip(&clients).map(|(gateway, client)| async move {
            while status(client, gateway, secret).await != 401 {
                assert!(committed.elapsed() < Duration::from_secs(5), "a gateway never refused token {id}");
            }
            committed.elapsed()
        });
        let latencies = futures_util::future::join_all(waits).await;
        all_three.push(latencies.iter().copied().max().unwrap());
        each.extend(latencies);
    }
    all_three.sort();
    each.sort();
    println!(
        "revocation propagation, {GATEWAYS} gateways on PostgreSQL, sync.interval 250ms, {REVOCATIONS} revocations"
    );
    for (label, sorted) in [("refused by all three", &all_three), ("refused by one gateway", &each)] {
        println!(
            "  {label:<24} p50 {:>8.2?}  p90 {:>8.2?}  p99 {:>8.2?}  max {:>8.2?}",
            percentile(sorted, 0.50),
            percentile(sorted, 0.90),
            percentile(sorted, 0.99),
            sorted[sorted.len() - 1]
        );
    }

    drop(gateways);
    writer.store().close().await;
    let drop_db = format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)");
    sqlx::query(sqlx::AssertSqlSafe(drop_db)).execute(&mut admin).await.unwrap();
}

/// The gateway binary with its access log off: these measurements need no record per request.
fn without_access_log() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tokengate"));
    command.env("TOKENGATE_LOG__ACCESS", "false");
    command
}
