//! tokengate: a reverse-proxy authentication gateway with API-token lifecycle management.
//!
//! # The data path (per request; never waits on the database)
//!
//! | step | where |
//! |---|---|
//! | accept, TLS (ALPN) or plain, HTTP/1.1 + HTTP/2, limits, graceful drain | [`server`], [`tls`] |
//! | route by longest path prefix; refuse dot segments | [`proxy::route`] |
//! | client address (trusted proxies, `X-Forwarded-For`) | [`proxy::client_ip`] |
//! | `Authorization: Basic` → email and secret | [`proxy::credentials`] |
//! | checksum, SHA-256, index lookup, owner / revoked / expired / blocked checks | [`proxy::authenticate`], [`token`], [`index`] |
//! | scope per method → 403 | [`proxy`] |
//! | last use recorded in memory | [`usage`] |
//! | header rewrite, the connection's pinned upstream connection (http or verified https), streaming, 502 / 504 | [`proxy::forward`], [`proxy::pinned`] |
//! | the gateway's own responses (uniform 401, ...) | [`proxy::reject`] |
//!
//! # The control path (tokens and accounts change)
//!
//! [`cli`], the admin API and its web page ([`admin`]) → [`service`] (every lifecycle rule, audit events) → [`store`]
//! (one transaction that also appends to the change log) → [`sync`] applies the change to the
//! [`index`]: at once in the same process, within `sync.interval` in every other gateway.
//! [`usage`] writes last-use records in one batched transaction per flush interval.
//!
//! # Around them
//!
//! [`config`] (TOML + environment, validated once), [`gateway`] (wires `serve` together and
//! shuts it down in order), [`admin`] (health, metrics, API, web page), [`view`] (the JSON shapes of the contract),
//! [`clock`], [`duration`] and [`rate`] (the time and rate grammars).

pub mod admin;
pub mod cli;
pub mod clock;
pub mod config;
pub mod duration;
pub mod fleet;
pub mod gate;
pub mod gateway;
pub mod index;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod proxy;
pub mod ratelimit;
pub mod scope;
pub mod server;
pub mod service;
pub mod store;
pub mod sync;
pub mod tls;
pub mod token;
pub mod usage;
pub mod view;
