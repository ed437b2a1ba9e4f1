//! The data path: one request from arrival to the upstream's response. Per request it never
//! waits on the database: the index answers who the caller is, the usage recorder takes the
//! last use in memory (a rotation's hand-over, once per rotation, is the one write).
//!
//! accept ([`server`], [`tls`]) → route, canonical path ([`proxy::route`]) → client address
//! ([`proxy::client_ip`]) → credentials, digest, index ([`gate`], [`proxy::authenticate`],
//! [`index`]) → scope → rate limit ([`ratelimit`]) → last use ([`usage`]) → forward
//! ([`proxy::forward`], [`proxy::pinned`]) → the gateway's own answers ([`proxy::reject`]) → the
//! request counted per token, day, route and outcome ([`counters`]).

pub mod connections;
pub mod counters;
pub mod gate;
pub mod index;
pub mod proxy;
pub mod ratelimit;
pub mod server;
pub mod tls;
pub mod usage;
pub mod write_timeout;
