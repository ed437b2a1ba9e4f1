//! `client_ip` on any `X-Forwarded-For`, and behind two trusted proxies whatever the client wrote.
#![no_main]

#[path = "../../tests/fuzz/check/mod.rs"]
#[allow(dead_code)]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    check::run_target("client_ip", data);
});
