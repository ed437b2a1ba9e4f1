//! `split_host`, `Router::check_host` and `Router::host_of`: no panic on any text or bytes,
//! hosts split into the parts they are made of, and both readings of a request's host agree.

use proptest::prelude::*;
use tokengate::data::proxy::route::split_host;

use crate::check::host::{Case, check, check_split};
use crate::strategies::cases;

/// Host-like text: labels of host characters and others, dots, ports of any length, IPv6
/// literals, user info, paths, blanks, non-ASCII.
fn host() -> impl Strategy<Value = String> {
    let label = prop_oneof![
        4 => "[a-zA-Z0-9_-]{0,8}",
        1 => prop::sample::select(vec!["", "@", "/", " ", "\u{e9}", "*", "%2e", "[::1]", "[", "]"]).prop_map(str::to_owned),
    ];
    let name = prop::collection::vec(label, 1..5).prop_map(|labels| labels.join("."));
    let ipv6 = prop::sample::select(vec!["[::1]", "[2001:db8::1]", "[::ffff:10.0.0.1]", "[fe80::1%25eth0]", "[::1"]);
    let port = prop_oneof![Just(String::new()), "(:[0-9]{0,7})", ":[0-9a-z]{1,3}"];
    let dot = prop_oneof![3 => Just(""), 1 => Just(".")];
    prop_oneof![
        4 => (name, dot, port.clone()).prop_map(|(n, d, p)| format!("{n}{d}{p}")),
        1 => (ipv6, port).prop_map(|(h, p)| format!("{h}{p}")),
        1 => any::<String>(),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let target = prop_oneof![
        Just("/x".to_owned()),
        Just("*".to_owned()),
        host().prop_map(|h| format!("http://{h}/x")),
        host().prop_map(|h| format!("https://u@{h}/x")),
    ];
    let value = prop_oneof![
        4 => host().prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..16),
    ];
    (target, prop::collection::vec(value, 0..3), any::<bool>(), any::<bool>()).prop_map(
        |(target, mut hosts, http11, same)| {
            // Often `Host` names the target's authority, spelled the same or not.
            if same && let Some(authority) = target.strip_prefix("http://").and_then(|t| t.strip_suffix("/x")) {
                hosts = vec![authority.to_ascii_uppercase().into_bytes()];
            }
            Case { target: target.into_bytes(), hosts, http11 }
        },
    )
}

proptest! {
    #![proptest_config(cases(2048))]

    #[test]
    fn any_text_splits_into_its_parts_or_is_no_host(text in host()) {
        check_split(&text);
    }

    #[test]
    fn a_host_name_and_port_split_back_into_themselves(
        labels in prop::collection::vec("[a-zA-Z0-9_-]{1,10}", 1..5),
        dot in any::<bool>(),
        port in prop::option::of(any::<u16>()),
    ) {
        let name = labels.join(".");
        let text = format!("{name}{}{}", if dot { "." } else { "" }, port.map(|p| format!(":{p}")).unwrap_or_default());
        prop_assert_eq!(check_split(&text), Some((name.as_str(), port)));
    }

    #[test]
    fn both_readings_of_a_requests_host_agree(case in case()) {
        check(&case);
    }
}

/// `split_host` never accepts what is not a host, in the shapes a request smuggles one in.
#[test]
fn what_is_not_a_host_is_refused() {
    for bad in ["a b", "a@b", "a/b", "a..b", "a:", "a:1:2", "[::1", "[::1]x", "[x]", "a:123456", "\u{e9}.example"] {
        assert_eq!(split_host(bad), None, "{bad:?}");
        assert_eq!(check_split(bad), None, "{bad:?}");
    }
}
