//! tokengate: a reverse-proxy authentication gateway with API-token lifecycle management.
//!
//! The file names show the two paths:
//!
//! - [`data`] — **the data path**, per request, never waiting on the database: accept
//!   (plain or TLS, HTTP/1.1 and HTTP/2), route by the longest path prefix on one canonical form
//!   of the path, authenticate (`Authorization: Basic`, checksum, SHA-256, the in-memory
//!   [`data::index`]) through the one [`data::gate`] the admin API uses too, check the route's
//!   scope, rate-limit, record the last use in memory, forward on the client connection's pinned
//!   upstream connection, stream both bodies.
//! - [`control`] — **the control path**, when tokens and accounts change: the CLI and the admin
//!   API call [`control::service`] (every rule and audit event), which commits through
//!   [`control::store`] (one transaction that also appends to the change log); [`control::sync`]
//!   applies the change to every gateway's index; [`control::fleet`] confirms every running
//!   gateway applied it before the change returns; [`control::notify`] tells token owners.
//!
//! Around them: [`model`] (the vocabulary both paths share: accounts, tokens, events, notices,
//! scopes, secrets, rates and durations), [`config`] (TOML + environment, validated once),
//! [`cli`] and [`admin`] (the surfaces: commands; the JSON API, health, metrics and the web
//! page), [`view`] (the JSON shapes of the contract), [`gateway`] (wires `serve` together,
//! reloads its configuration on `SIGHUP` and shuts it down in order), [`logging`], [`metrics`]
//! and [`clock`].

pub mod admin;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod data;
pub mod gateway;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod view;
