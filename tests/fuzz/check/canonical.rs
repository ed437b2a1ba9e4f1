//! Path canonicalisation and routing: what `canonical_path` returns for any path, and that a
//! path routed to one route cannot, read the way a lenient upstream reads it (percent-decoded
//! once or twice, `\` taken for `/`, `;params` dropped, `//` collapsed, dot segments resolved,
//! trailing dots and spaces stripped as Windows does, case ignored), belong to another route.
//! Shared by the property tests and the `canonical_path` fuzz target.

use std::sync::{Arc, OnceLock};

use tokengate::data::proxy::route::{CanonicalPath, PathError, Router, canonical_path};

/// The routes of the containment check: prefixes inside prefixes, one allowing `%2F` with a
/// longer route under it (the shape `encoded_slash_changes_route` guards).
pub const PREFIXES: [&str; 6] = ["/git/admin", "/api/v1", "/admin", "/git", "/pub", "/"];

/// The router of [`PREFIXES`], built once per process from a configuration file, as the
/// gateway builds it.
pub fn router() -> &'static Router {
    static ROUTER: OnceLock<Router> = OnceLock::new();
    ROUTER.get_or_init(|| {
        let mut text = String::new();
        for prefix in PREFIXES {
            let slash = if prefix == "/git" { "allow_encoded_slash = true\n" } else { "" };
            text.push_str(&format!("[[routes]]\nprefix = \"{prefix}\"\nupstream = \"http://up:1\"\n{slash}"));
        }
        super::router(&text)
    })
}

/// Fuzzer bytes as a path: UTF-8 (lossily), with a leading `/` when the first byte is even, so
/// that most runs get past the first check.
pub fn path_from_bytes(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data.get(1..).unwrap_or_default());
    match data.first() {
        Some(flag) if flag % 2 == 0 => format!("/{text}"),
        _ => text.into_owned(),
    }
}

/// Checks `canonical_path(path)` and, when the path could be a request's, its route.
pub fn check(path: &str) {
    let canonical = canonical_path(path);
    if is_plain(path) {
        assert_eq!(canonical.as_ref().map(|c| &*c.path), Ok(path), "a plain path must pass unchanged");
    }
    let Ok(canonical) = canonical else {
        if !path.starts_with('/') {
            assert_eq!(canonical, Err(PathError::NotAbsolute));
        }
        return;
    };
    check_form(path, &canonical);
    // Only what `http` accepts as a request path reaches the gateway (no raw spaces, say); the
    // readings below are about such paths.
    if http::uri::PathAndQuery::try_from(path).is_ok_and(|p| p.path() == path) {
        check_readings(&canonical.path);
        check_route(&canonical);
    }
}

/// A path with none of the shapes the reference refuses or rewrites: absolute, no escape, `;`
/// or `\`, no empty segment but the last, no `.` or `..` segment, none ending in a dot or a
/// space. The gateway must take it as it is (refusing too much is a failure too).
fn is_plain(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else { return false };
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len() - 1;
    !path.contains(['%', ';', '\\'])
        && segments.iter().enumerate().all(|(i, segment)| {
            (i == last || !segment.is_empty()) && *segment != "." && *segment != ".." && !segment.ends_with(['.', ' '])
        })
}

/// The canonical form itself: absolute, a fixed point, the same bytes once decoded, and free of
/// every shape the reference refuses.
fn check_form(path: &str, canonical: &CanonicalPath<'_>) {
    let form: &str = &canonical.path;
    assert!(form.starts_with('/'), "{path:?} -> {form:?}");
    let again = canonical_path(form).unwrap_or_else(|e| panic!("{path:?} -> {form:?}, which is refused: {e:?}"));
    assert_eq!((&*again.path, again.encoded_slash), (form, canonical.encoded_slash), "not idempotent: {path:?}");
    assert_eq!(canonical.encoded_slash, form.contains("%2F"), "{path:?} -> {form:?}");
    assert_eq!(decode(form.as_bytes(), false), decode(path.as_bytes(), false), "meaning changed: {path:?} -> {form:?}");
    assert!(!form.contains(['\\', ';']) && !form.contains("//"), "{path:?} -> {form:?}");
    let bytes = form.as_bytes();
    for (at, _) in form.match_indices('%') {
        let escape = bytes.get(at + 1..at + 3).unwrap_or_else(|| panic!("a cut escape in {form:?}"));
        assert!(escape.iter().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b)), "{form:?}");
        let value = u8::from_str_radix(std::str::from_utf8(escape).unwrap(), 16).unwrap();
        let kept = !(value.is_ascii_alphanumeric() || b"-._~\\;".contains(&value) || value < 0x20 || value == 0x7f);
        assert!(kept, "{form:?} keeps the escape %{value:02X}, which must be decoded or refused");
    }
    for separators in [&["/"][..], &["/", "%2F"][..]] {
        let mut segments = vec![&form[1..]];
        for separator in separators {
            segments = segments.iter().flat_map(|s| s.split(separator)).collect();
        }
        let last = segments.len() - 1;
        for (i, segment) in segments.iter().enumerate() {
            assert!(*segment != "." && *segment != "..", "dot segment in {form:?}");
            assert!(i == last || !segment.is_empty(), "empty segment in {form:?}");
            assert!(!segment.ends_with('.') && !segment.ends_with("%20"), "trailing dot or space in {form:?}");
        }
    }
    // The reference: no `%25` before the escape of an unreserved character, a separator, `;`,
    // a space or a control byte (what a second decoding would read differently).
    for (at, _) in form.match_indices("%25") {
        let hex = form.get(at + 3..at + 5).filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()));
        let next = hex.and_then(|hex| u8::from_str_radix(hex, 16).ok());
        let read_differently =
            next.is_some_and(|v| v.is_ascii_alphanumeric() || b"-._~/\\; ".contains(&v) || v < 0x20 || v == 0x7f);
        assert!(!read_differently, "double encoding in {form:?}");
    }
}

/// Read by an upstream that decodes every escape, all but `%2F`, or decodes once more, the
/// canonical path needs no normalising: the upstream resolves nothing the router did not see.
fn check_readings(form: &str) {
    for reading in readings(form) {
        assert_eq!(normalise(&reading), reading, "{form:?} is read as {:?}", String::from_utf8_lossy(&reading));
    }
}

/// The route of a canonical path is the route of every reading of it.
fn check_route(canonical: &CanonicalPath<'_>) {
    let Ok(Some(route)) = router().route(None, canonical) else { return };
    let form: &str = &canonical.path;
    for reading in readings(form) {
        let reached = route_ignoring_case(&normalise(&reading));
        assert_eq!(
            reached,
            &*route.label,
            "{form:?} is routed to {}, but an upstream reading it as {:?} serves {reached}'s resource",
            route.label,
            String::from_utf8_lossy(&reading)
        );
    }
}

/// The path as lenient upstreams may read it: as sent, decoded all but `%2F`, decoded, and
/// decoded twice.
fn readings(form: &str) -> Vec<Vec<u8>> {
    let sent = form.as_bytes().to_vec();
    let once = decode(&sent, false);
    let twice = decode(&once, false);
    vec![decode(&sent, true), sent, once, twice]
}

/// Percent-decoding, bytes to bytes; `keep_slash` leaves `%2F` as it is. A `%` without two hex
/// digits stays.
pub fn decode(bytes: &[u8], keep_slash: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(value) if bytes[i] == b'%' && !(keep_slash && value == b'/') => {
                out.push(value);
                i += 3;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// What a lenient server resolves: `\` as `/`, `;params` dropped, `.` and `..` resolved, a
/// segment's trailing dots and spaces stripped (Windows), empty segments but the last dropped.
pub fn normalise(path: &[u8]) -> Vec<u8> {
    let path: Vec<u8> = path.iter().map(|b| if *b == b'\\' { b'/' } else { *b }).collect();
    let rest = path.strip_prefix(b"/").unwrap_or(&path);
    let segments: Vec<&[u8]> = rest.split(|b| *b == b'/').collect();
    let last = segments.len() - 1;
    let mut kept: Vec<&[u8]> = Vec::new();
    for (i, segment) in segments.into_iter().enumerate() {
        let segment = segment.split(|b| *b == b';').next().unwrap_or_default();
        match segment {
            b"." => {}
            b".." => {
                kept.pop();
            }
            _ => {
                let end = segment.iter().rposition(|b| !matches!(b, b'.' | b' ')).map_or(0, |p| p + 1);
                let segment = &segment[..end];
                if !segment.is_empty() || i == last {
                    kept.push(segment);
                }
            }
        }
    }
    let mut out = b"/".to_vec();
    out.extend_from_slice(&kept.join(&b'/'));
    out
}

/// The longest of [`PREFIXES`] that `path` is under, case ignored, on a segment boundary.
fn route_ignoring_case(path: &[u8]) -> &'static str {
    let under = |prefix: &str| {
        let n = prefix.len();
        prefix == "/"
            || (path.len() >= n
                && path[..n].eq_ignore_ascii_case(prefix.as_bytes())
                && (path.len() == n || path[n] == b'/'))
    };
    PREFIXES.into_iter().find(|prefix| under(prefix)).unwrap_or("/")
}

/// The route label of `path` as sent, for the property tests' own assertions.
pub fn route_label(path: &str) -> Option<Arc<str>> {
    let canonical = canonical_path(path).ok()?;
    router().route(None, &canonical).ok().flatten().map(|route| Arc::clone(&route.label))
}
