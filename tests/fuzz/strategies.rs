//! Generators that reach the interesting cases (escapes, dots, separators, control and
//! non-ASCII bytes, addresses in every spelling) far more often than random text would.

use proptest::prelude::*;
use proptest::test_runner::Config;

/// `n` cases per property, unless `PROPTEST_CASES` asks for another number; no regression
/// files (a failure found here becomes a named test).
pub fn cases(n: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(n);
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// Concatenations of `pieces`, `min..max` of them.
pub fn joined(pieces: impl Strategy<Value = String>, min: usize, max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(pieces, min..max).prop_map(|parts| parts.concat())
}

/// Pieces of request paths: the containment check's route segments in several cases, every
/// way of writing a dot, a slash, a backslash or a semicolon (raw, encoded, double encoded,
/// encoded in pieces), spaces, controls, non-ASCII, broken escapes and ordinary characters.
pub fn path_piece() -> impl Strategy<Value = String> {
    let fixed = prop::sample::select(vec![
        "admin",
        "ADMIN",
        "Admin",
        "api",
        "v1",
        "V1",
        "git",
        "pub",
        "x",
        "/",
        "/",
        "/",
        "//",
        "\\",
        ".",
        "..",
        "...",
        "%2e",
        "%2E",
        "%2e%2e",
        "%2f",
        "%2F",
        "%5c",
        "%5C",
        "%25",
        "%252e",
        "%252E",
        "%252f",
        "%255c",
        "%2561",
        "%2541",
        "%253b",
        "%253B",
        "%2520",
        "%2500",
        "%25252e",
        "%32%65",
        "%32%66",
        "%35%63",
        "%3b",
        "%3B",
        ";",
        "%20",
        "%00",
        "%09",
        "%7f",
        "%7F",
        "%61",
        "%41",
        "%64min",
        "%C3%A9",
        "%c3%a9",
        "\u{e9}",
        "%c0%ae",
        "%e0%80%ae",
        "%",
        "%g1",
        "%2",
        "?",
        "#",
        "~",
        "-",
        "_",
        "%7E",
        "%2D",
        "%3F",
        "%23",
        "%3A",
        ":",
        "@",
    ]);
    prop_oneof![
        6 => fixed.prop_map(str::to_owned),
        2 => "[a-zA-Z0-9._~!$&'()*+,=:@-]{1,3}",
        1 => any::<char>().prop_map(String::from),
    ]
}

/// Request paths, mostly absolute, built from [`path_piece`].
pub fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => joined(path_piece(), 0, 10).prop_map(|rest| format!("/{rest}")),
        1 => joined(path_piece(), 0, 6),
        1 => any::<String>(),
    ]
}

/// Addresses on both sides of the trust line of `check::client_ip::trusted`, in both
/// families and in IPv4-mapped form.
pub fn ip() -> impl Strategy<Value = std::net::IpAddr> {
    let v4 = any::<[u8; 4]>().prop_map(std::net::IpAddr::from);
    let trusted_v4 = any::<[u8; 3]>().prop_map(|o| std::net::IpAddr::from([10, o[0], o[1], o[2]]));
    let v6 = any::<[u16; 8]>().prop_map(std::net::IpAddr::from);
    let mapped = any::<[u8; 3]>()
        .prop_map(|o| std::net::IpAddr::V6(std::net::Ipv4Addr::new(10, o[0], o[1], o[2]).to_ipv6_mapped()));
    let fixed = prop::sample::select(vec!["2001:db8::7", "2001:db8::8", "127.0.0.1", "::1", "::ffff:203.0.113.9"])
        .prop_map(|ip| ip.parse().unwrap());
    prop_oneof![v4, trusted_v4, v6, mapped, fixed]
}

/// One `X-Forwarded-For` entry as written by someone: an address in any spelling (with a
/// port, bracketed), or not an address at all.
pub fn xff_entry() -> impl Strategy<Value = Vec<u8>> {
    let address = (ip(), any::<u16>(), 0..4u8).prop_map(|(ip, port, form)| match (form, ip) {
        (0, _) => ip.to_string(),
        (1, std::net::IpAddr::V4(v4)) => format!("{v4}:{port}"),
        (_, std::net::IpAddr::V6(v6)) if form != 3 => format!("[{v6}]:{port}"),
        _ => format!(" {ip}\t"),
    });
    let junk = prop::sample::select(vec!["unknown", "", " ", "_hidden", "1.2.3", "[::1", "10.0.0.1:x", "obf\u{e9}"]);
    prop_oneof![
        4 => address.prop_map(String::into_bytes),
        1 => junk.prop_map(|j| j.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..8),
        1 => (ip(), 0x80..=0xffu8).prop_map(|(ip, b)| { let mut v = ip.to_string().into_bytes(); v.push(b); v }),
    ]
}

/// A whole `X-Forwarded-For` value: entries joined by commas, with or without spaces.
pub fn xff_value() -> impl Strategy<Value = Vec<u8>> {
    (prop::collection::vec(xff_entry(), 1..5), any::<bool>())
        .prop_map(|(entries, spaced)| entries.join(if spaced { &b", "[..] } else { &b","[..] }))
}
