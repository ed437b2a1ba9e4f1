//! `split_host`, `Router::check_host` and `Router::host_of` on any host text, `Host` headers and target.
#![no_main]

#[path = "../../tests/fuzz/check/mod.rs"]
#[allow(dead_code)]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    check::run_target("host", data);
});
