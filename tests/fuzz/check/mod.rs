//! The invariants, one module per subject. The property tests in this binary drive them with
//! generated inputs; the cargo-fuzz targets in `fuzz/` include this directory by path and drive
//! them with libFuzzer's. Each panics, naming the input, when the code breaks an invariant.

pub mod canonical;
pub mod client_ip;
pub mod credentials;
pub mod header_rewrite;
pub mod host;

use http::{HeaderMap, HeaderName, HeaderValue};
use tokengate::config::Config;
use tokengate::data::proxy::route::Router;

/// The routes of a configuration file's text, loaded and validated as `tokengate serve` loads
/// them (on a plain listener).
pub fn router(toml: &str) -> Router {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut file, toml.as_bytes()).unwrap();
    let config = Config::load(Some(file.path()), Vec::new()).unwrap();
    Router::new(&config.routes, false)
}

/// Fuzzer bytes as a first byte of flags (0 when there is none) and the rest.
pub fn flags_and_rest(data: &[u8]) -> (u8, &[u8]) {
    data.split_first().map_or((0, &[][..]), |(flags, rest)| (*flags, rest))
}

/// The headers `name: value` for each of `values` that a header can carry, in order.
pub fn header_map(name: &HeaderName, values: &[Vec<u8>]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for value in values {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(name, value);
        }
    }
    headers
}

/// The fuzz targets, by name: what `fuzz/fuzz_targets/NAME.rs` runs on each input, and what
/// the `seeds` test replays on the inputs committed under `fuzz/seeds/NAME/`.
pub const TARGETS: [&str; 5] = ["credentials", "canonical_path", "header_rewrite", "client_ip", "host"];

/// Runs the fuzz target `target` on one input; panics on a broken invariant (or an unknown
/// target). `false`: the input never reached the invariants (hyper refused the request head
/// of a `header_rewrite` input).
pub fn run_target(target: &str, data: &[u8]) -> bool {
    match target {
        "credentials" => credentials::check(&credentials::values_from_bytes(data)),
        "canonical_path" => canonical::check(&canonical::path_from_bytes(data)),
        "header_rewrite" => return header_rewrite::check(&header_rewrite::from_bytes(data)),
        "client_ip" => {
            let (peer, values) = client_ip::from_bytes(data);
            client_ip::check_any(peer, &values, &client_ip::trusted());
            client_ip::check_chain(&client_ip::chain_from_bytes(data), &client_ip::trusted());
        }
        "host" => {
            if let Ok(text) = std::str::from_utf8(data) {
                host::check_split(text);
            }
            host::check(&host::from_bytes(data));
        }
        _ => panic!("no fuzz target {target}"),
    }
    true
}
