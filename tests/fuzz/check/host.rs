//! Host checks: `split_host` on any text, and `Router::check_host` / `Router::host_of` on any
//! `Host` headers and request target: no panic, `split_host` only accepts what the reference
//! calls a host (and gives back its parts), and the two readings of a request's host agree.
//! Shared by the property tests and the `host` fuzz target.

use std::sync::OnceLock;

use http::header::HOST;
use http::{Uri, Version};
use tokengate::data::proxy::route::{PathError, Router, split_host};

/// One request's host, as sent: its target (origin-form `/x` or absolute `http://HOST/x`), its
/// `Host` headers and its version.
#[derive(Debug, Clone)]
pub struct Case {
    /// The request target.
    pub target: Vec<u8>,
    /// The `Host` headers, in order.
    pub hosts: Vec<Vec<u8>>,
    /// HTTP/1.1 (`Host` required) or HTTP/1.0.
    pub http11: bool,
}

/// A router with a host route, so that `host_of` reads the host.
fn router() -> &'static Router {
    static ROUTER: OnceLock<Router> = OnceLock::new();
    ROUTER.get_or_init(|| {
        let text = "[[routes]]\nprefix = \"/\"\nupstream = \"http://any:1\"\n\
                    [[routes]]\nprefix = \"/\"\nupstream = \"http://api:1\"\nhost = \"api.example.com\"\n";
        super::router(text)
    })
}

/// Fuzzer bytes as a case: the first byte's low bit picks the version, the next bit an
/// absolute target; then `Host` values, one per line, the first line being the target's
/// authority when it is absolute.
pub fn from_bytes(data: &[u8]) -> Case {
    let (flags, rest) = super::flags_and_rest(data);
    let mut lines = rest.split(|b| *b == b'\n');
    let target = if flags & 2 != 0 {
        let mut target = b"http://".to_vec();
        target.extend_from_slice(lines.next().unwrap_or_default());
        target.extend_from_slice(b"/x");
        target
    } else {
        b"/x".to_vec()
    };
    Case { target, hosts: lines.map(<[u8]>::to_vec).collect(), http11: flags & 1 == 0 }
}

/// Checks `split_host` on `text`: `None`, or a name and port that make up the text again.
pub fn check_split(text: &str) -> Option<(&str, Option<u16>)> {
    let split = split_host(text);
    let (name, port) = split?;
    let rest = text.strip_prefix(name).unwrap_or_else(|| panic!("{text:?} does not start with {name:?}"));
    if let Some(inner) = name.strip_prefix('[') {
        let inner = inner.strip_suffix(']').unwrap_or_else(|| panic!("{text:?}: {name:?}"));
        assert!(inner.parse::<std::net::Ipv6Addr>().is_ok(), "{text:?}: {name:?}");
    } else {
        assert!(!name.ends_with('.'), "{text:?}: {name:?}");
        for label in name.split('.') {
            let valid = !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
            assert!(valid, "{text:?}: the label {label:?} of {name:?}");
        }
    }
    let rest = if name.starts_with('[') { rest } else { rest.strip_prefix('.').unwrap_or(rest) };
    match port {
        None => assert!(rest.is_empty(), "{text:?}: {rest:?} left over"),
        Some(port) => {
            let digits = rest.strip_prefix(':').unwrap_or_else(|| panic!("{text:?}: {rest:?} left over"));
            assert!((1..=5).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()), "{text:?}");
            assert_eq!(digits.parse::<u16>().ok(), Some(port), "{text:?}");
        }
    }
    split
}

/// Whether `Host` and the target's authority name one host, as the reference compares them:
/// the same text in any case, or the same name (any case, as `split_host` gives it) and the same
/// port, a missing port being 80 (the check's listener is plain HTTP).
fn names_the_same_host(header: &str, authority: &str) -> bool {
    let parts = |text: &str| {
        let (name, port) = split_host(text)?;
        Some((name.to_ascii_lowercase(), port.unwrap_or(80)))
    };
    header.eq_ignore_ascii_case(authority) || parts(header).is_some_and(|h| parts(authority) == Some(h))
}

/// Checks the request's host as both `check_host` and `host_of` read it.
pub fn check(case: &Case) {
    let Ok(uri) = Uri::try_from(case.target.as_slice()) else { return };
    let headers = super::header_map(&HOST, &case.hosts);
    for value in headers.get_all(HOST) {
        if let Ok(text) = value.to_str() {
            check_split(text);
        }
    }
    if let Some(authority) = uri.authority() {
        check_split(authority.as_str());
    }
    let version = if case.http11 { Version::HTTP_11 } else { Version::HTTP_10 };
    let router = router();
    let checked = router.check_host(version, &uri, &headers);
    let read = router.host_of(&uri, &headers);
    let count = headers.get_all(HOST).iter().count();
    let context = || format!("{case:?}: check_host {checked:?}, host_of {:?}", read.as_ref().map(Option::is_some));
    if count > 1 {
        assert_eq!(checked, Err(PathError::ConflictingHost), "{}", context());
        assert_eq!(read.as_ref().err(), Some(&PathError::ConflictingHost), "{}", context());
        return;
    }
    match (count, uri.authority().is_some(), case.http11) {
        (0, _, true) => assert_eq!(checked, Err(PathError::MissingHost), "{}", context()),
        (0, _, false) | (1, false, _) => assert_eq!(checked, Ok(()), "{}", context()),
        (1, true, _) => {
            let authority = uri.authority().map_or("", |a| a.as_str());
            let expected = match headers.get(HOST).map(|value| value.to_str()) {
                Some(Ok(header)) if names_the_same_host(header, authority) => Ok(()),
                Some(Ok(_)) => Err(PathError::ConflictingHost),
                _ => Err(PathError::BadHost),
            };
            assert_eq!(checked, expected, "{}", context());
        }
        _ => {}
    }
    // The two readings agree: a host that passed the check is never read as two hosts, and a
    // host read from both the target and `Host` passed the check.
    if checked.is_ok() {
        assert_ne!(read.as_ref().err(), Some(&PathError::ConflictingHost), "{}", context());
    }
    if count == 1 && uri.authority().is_some() && matches!(read, Ok(Some(_))) {
        assert_eq!(checked, Ok(()), "{}", context());
    }
    if let Ok(None) = read {
        assert!(count == 0 && uri.authority().is_none(), "{}", context());
    }
}
