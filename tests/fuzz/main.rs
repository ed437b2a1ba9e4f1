//! Property tests of the parsers every request goes through before any check of its own:
//! credentials, the canonical path and its route, the host, the client address and the
//! request rewrite for the upstream. The invariants live in `check/`, shared with the
//! cargo-fuzz targets in `fuzz/` (`scripts/fuzz`), which run them on libFuzzer's inputs for as
//! long as one likes; here proptest runs them on generated inputs in every test run, a few
//! hundred cases each, in seconds.
//!
//! Run with `scripts/test` or `cargo nextest run --test fuzz`; `PROPTEST_CASES=N` runs more.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// A test binary, not an API: its helpers are `pub` for the sibling modules and need no docs.
#![allow(missing_docs, unreachable_pub)]

mod check;
mod strategies;

mod canonical;
mod client_ip;
mod credentials;
mod header_rewrite;
mod host;
mod seeds;
