//! `read_credentials` on any `Authorization` headers, against the reference's model.
#![no_main]

#[path = "../../tests/fuzz/check/mod.rs"]
#[allow(dead_code)]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    check::run_target("credentials", data);
});
