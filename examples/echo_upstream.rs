//! Runs the echo upstream: a stand-in backend for the quick start that answers every
//! request with JSON describing what it received (see `support/echo.rs` for routes).
//!
//! Run it with:
//!
//! ```text
//! cargo run --example echo_upstream -- [ADDR]    # ADDR defaults to 127.0.0.1:9000
//! ```
//!
//! It serves HTTP/1.1 and h2c (HTTP/2 prior knowledge) until Ctrl-C.

#[path = "support/echo.rs"]
mod echo;

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9000".to_owned());
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("echo upstream: cannot bind {addr}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let local = listener.local_addr().map_or(addr, |a| a.to_string());
    println!("echo upstream listening on http://{local}");

    echo::serve(listener, async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            eprintln!("echo upstream: cannot listen for Ctrl-C: {err}");
        }
    })
    .await;
    ExitCode::SUCCESS
}
