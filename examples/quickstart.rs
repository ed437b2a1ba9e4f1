//! The quick start: the gateway on its embedded defaults in front of the example echo
//! upstream, in one command from a fresh checkout:
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! It reads `config/tokengate.toml` (SQLite under `data/`, proxy on 127.0.0.1:8080, admin on
//! 127.0.0.1:8081, one route to 127.0.0.1:9000), starts the echo upstream on 127.0.0.1:9000,
//! and on the first run only (an empty database) creates the account `demo@example.com` (a
//! superuser) with a token, printing a `curl` line that works. Ctrl-C stops both.

#![allow(clippy::print_stdout)]

#[path = "support/echo.rs"]
mod echo;

use std::process::ExitCode;

use tokengate::clock::Clock;
use tokengate::config::Config;
use tokengate::control::service::{Actor, CreateAccount, CreateToken, LifecycleService};
use tokengate::gateway::{Gateway, Listeners};
use tokio_util::sync::CancellationToken;

const DEMO_EMAIL: &str = "demo@example.com";
const ECHO_ADDR: &str = "127.0.0.1:9000";

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt().with_env_filter("info").with_writer(std::io::stderr).init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("quickstart: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let config = Config::load(Config::locate(None).as_deref(), std::env::vars()).map_err(|e| e.to_string())?;
    let shutdown = CancellationToken::new();

    match tokio::net::TcpListener::bind(ECHO_ADDR).await {
        Ok(listener) => {
            eprintln!("echo upstream listening on http://{ECHO_ADDR}");
            let stop = shutdown.clone();
            tokio::spawn(echo::serve(listener, async move { stop.cancelled().await }));
        }
        Err(error) => {
            eprintln!("not starting the echo upstream on {ECHO_ADDR} ({error}); using whatever listens there")
        }
    }

    let listeners = Listeners::bind(&config).await.map_err(|e| e.to_string())?;
    let (proxy_addr, admin_addr) = listeners.addresses().map_err(|e| e.to_string())?;
    let gateway = Gateway::start(&config).await.map_err(|e| e.to_string())?;
    let service =
        LifecycleService::new(gateway.store.clone(), config.tokens.clone(), Clock::System, Some(gateway.sync.clone()));
    if service.store().account_count().await.map_err(|e| e.to_string())? == 0 {
        let actor = Actor::cli();
        let account = CreateAccount {
            email: DEMO_EMAIL.into(),
            name: Some("Demo".into()),
            // A superuser, so that the web page shows all of its tabs in the quick start.
            superuser: true,
            can_create_tokens: true,
            ..CreateAccount::default()
        };
        service.create_account(account, &actor).await.map_err(|e| e.to_string())?;
        let request = CreateToken {
            owner_email: DEMO_EMAIL.into(),
            name: "quickstart".into(),
            description: Some("created by the quick start".into()),
            expiry: Default::default(),
            // `admin` too, so that the same token signs in to the web page.
            scopes: vec!["read".into(), "write".into(), "admin".into()],
            rate_limit: None,
        };
        let created = service.create_token(request, &actor).await.map_err(|e| e.to_string())?;
        println!();
        println!("Created the account {DEMO_EMAIL} and its token {:?} (shown only this once):", created.token.name);
        println!();
        println!("  curl --user '{DEMO_EMAIL}:{}' http://{proxy_addr}/hello", created.secret.expose());
        println!();
        println!(
            "Revoke it from another terminal: the command returns once the gateway refuses it, and the next call gets 401:"
        );
        println!();
        println!("  cargo run -- token revoke {}", created.token.id);
        println!();
        println!("Or manage tokens in the browser: http://{admin_addr}/ (sign in with {DEMO_EMAIL} and the token).");
        println!();
    } else {
        println!();
        println!("The database already has accounts; the demo token was shown on the first run only.");
        println!("Mint another:  cargo run -- token create --user {DEMO_EMAIL} --name another");
        println!();
    }
    println!("Gateway on http://{proxy_addr}, web page and admin API on http://{admin_addr}/. Ctrl-C stops it.");

    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    gateway.serve(&config, listeners, Clock::System, shutdown, None).await;
    Ok(())
}
