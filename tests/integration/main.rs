//! tokengate's integration tests: one binary, real sockets, a real SQLite file per test, the
//! real echo upstream, and the real `tokengate` binary where a process matters.
//!
//! Run with `cargo nextest run` (or `cargo test`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../examples/support/echo.rs"]
mod echo;

mod cli;
mod credentials;
mod process;
mod proxy;
mod support;
