//! The request rewrite on any request head hyper accepts, against the reference's list of headers sent upstream.
#![no_main]

#[path = "../../tests/fuzz/check/mod.rs"]
#[allow(dead_code)]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    check::run_target("header_rewrite", data);
});
