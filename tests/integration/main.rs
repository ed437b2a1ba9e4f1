//! tokengate's integration tests: one binary, real sockets, a real SQLite file (and, where a
//! server answers, a real PostgreSQL database) per test, the real echo upstream, and the real
//! `tokengate` binary where a process matters.
//!
//! Run with `scripts/test` (or `cargo nextest run`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// A test binary, not an API: its helpers are `pub` for the sibling modules and need no docs.
#![allow(missing_docs, unreachable_pub)]

#[path = "../../examples/support/echo.rs"]
mod echo;

mod access_log;
mod admin;
mod cli;
mod cluster;
mod confirm;
mod copy;
mod credentials;
mod durability;
mod expiry_cap;
mod first_run;
mod forward_auth;
mod forwarding;
mod hostile;
mod layout;
mod lifecycle;
mod notify;
mod package;
mod postgres;
mod process;
mod proxy;
mod ratelimit;
mod redis;
mod refused;
mod reload;
mod routes;
mod smtp;
mod store;
mod support;
mod tls;
mod trust;
mod upstream_cap;
mod usage;
mod web;
mod webdriver;
mod websocket;
