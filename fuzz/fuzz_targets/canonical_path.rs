//! `canonical_path` on any path: its canonical form, its readings by lenient upstreams, its route.
#![no_main]

#[path = "../../tests/fuzz/check/mod.rs"]
#[allow(dead_code)]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    check::run_target("canonical_path", data);
});
