//! The canonical request path: the one form that is both routed and forwarded.

use std::borrow::Cow;

use super::PathError;

/// A request path in the one form that is routed and forwarded (see [`canonical_path`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath<'a> {
    /// The path; borrowed from the request when nothing had to change.
    pub path: Cow<'a, str>,
    /// It holds `%2F`, which only a route with `allow_encoded_slash` accepts.
    pub encoded_slash: bool,
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|d| d as u8)
}

/// The byte the two hex digits at `at` spell (the `XY` of an escape `%XY`), if they are two.
fn hex_pair(bytes: &[u8], at: usize) -> Option<u8> {
    let high = hex_value(*bytes.get(at)?)?;
    let low = hex_value(*bytes.get(at + 1)?)?;
    Some(high << 4 | low)
}

/// The one form of a request path that is both routed and forwarded, so the router and the
/// upstream can never disagree about which resource is meant: percent-escapes of unreserved
/// characters decoded (`/%61dmin` is `/admin`), other escapes upper-cased, and every shape that
/// servers resolve differently refused — dot segments (`/public/../admin`), path parameters
/// (`/public/..;/admin`, `/admin;x`), encoded backslashes, backslashes and `//`.
///
/// An encoded slash is kept as `%2F` (and `encoded_slash` set) for the router to accept on a
/// route that allows it and refuse elsewhere; since an upstream may decode it, the segment rules
/// also hold for the path read with `%2F` as a separator (`/a%2F..%2Fb` is a dot segment).
pub fn canonical_path(path: &str) -> Result<CanonicalPath<'_>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let bytes = path.as_bytes();
    // Fast path: nothing to decode, nothing to refuse; the path is already canonical.
    if !bytes.iter().any(|b| matches!(b, b'%' | b';' | b'\\'))
        && !path.contains("//")
        && !path.contains("/.")
        && !path.contains("./")
        && !path.ends_with('.')
    {
        return Ok(CanonicalPath { path: Cow::Borrowed(path), encoded_slash: false });
    }
    let mut canonical = String::with_capacity(path.len());
    let mut encoded_slash = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let Some(value) = hex_pair(bytes, i + 1) else {
                    return Err(PathError::BadEscape);
                };
                match value {
                    b'/' => {
                        encoded_slash = true;
                        canonical.push_str("%2F");
                    }
                    b'\\' => return Err(PathError::EncodedBackslash),
                    b';' => return Err(PathError::Semicolon),
                    0..0x20 | 0x7f => return Err(PathError::ControlCharacter),
                    v if is_unreserved(v) => canonical.push(char::from(v)),
                    v => canonical.push_str(&format!("%{v:02X}")),
                }
                i += 3;
            }
            b';' => return Err(PathError::Semicolon),
            b'\\' => return Err(PathError::Backslash),
            _ => {
                // Copy a run of ordinary bytes at once (it is valid UTF-8: `path` is a &str and
                // the run ends before an ASCII byte or at the end).
                let run =
                    bytes[i..].iter().position(|b| matches!(b, b'%' | b';' | b'\\')).map_or(bytes.len(), |n| i + n);
                canonical.push_str(&path[i..run]);
                i = run;
            }
        }
    }
    check_segments(canonical[1..].split('/'))?;
    if encoded_slash {
        // As an upstream that decodes `%2F` before resolving the path reads it.
        check_segments(canonical[1..].split('/').flat_map(|segment| segment.split("%2F")))?;
    }
    if is_double_encoded(&canonical) {
        return Err(PathError::DoubleEncoded);
    }
    Ok(CanonicalPath { path: Cow::Owned(canonical), encoded_slash })
}

/// The segment rules: no `.` or `..`, no empty segment but the last (`/a/` is fine, `/a//b` is
/// not), none ending in a dot or an encoded space.
fn check_segments<'s>(segments: impl Iterator<Item = &'s str>) -> Result<(), PathError> {
    let mut segments = segments.peekable();
    while let Some(segment) = segments.next() {
        if segment == "." || segment == ".." {
            return Err(PathError::DotSegment);
        }
        if segment.is_empty() && segments.peek().is_some() {
            return Err(PathError::EmptySegment);
        }
        if segment.ends_with('.') || segment.ends_with("%20") {
            return Err(PathError::TrailingDotOrSpace);
        }
    }
    Ok(())
}

/// Whether a canonical path holds `%25` followed by the escape of a byte that an upstream
/// decoding twice would read as other than the router did: one that this function decodes or
/// refuses when it comes encoded once (an unreserved character, a separator, `;`, a control
/// character), or a space, which may end a segment. A dot or separator is the obvious case
/// (`%252e`); a letter changes the route (`/%2561dmin` is `/admin` to that upstream) and `;`
/// starts path parameters (`/pub/..%253b/admin` is `/pub/..;/admin`, which Tomcat reads as
/// `/admin`). Found by the `canonical_path` property test and fuzz target.
fn is_double_encoded(canonical: &str) -> bool {
    canonical.match_indices("%25").any(|(at, _)| {
        hex_pair(canonical.as_bytes(), at + 3)
            .is_some_and(|value| is_unreserved(value) || matches!(value, b'/' | b'\\' | b';' | b' ' | 0..0x20 | 0x7f))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_canonicalised_or_refused() {
        let canonical = |path| canonical_path(path).map(|c| c.path);
        assert_eq!(canonical("/api/v4/items?x"), Ok(Cow::Borrowed("/api/v4/items?x")));
        assert_eq!(canonical("/a/b.c/..d/").unwrap(), "/a/b.c/..d/");
        assert_eq!(canonical("/%61dmin/x").unwrap(), "/admin/x");
        assert_eq!(canonical("/caf%c3%a9").unwrap(), "/caf%C3%A9");
        assert_eq!(canonical("/.well-known/x").unwrap(), "/.well-known/x");
        assert_eq!(canonical("/a%2fb/").unwrap(), "/a%2Fb/");
        assert!(!canonical_path("/caf%c3%a9").unwrap().encoded_slash);
        for (bad, why) in [
            ("*", PathError::NotAbsolute),
            ("/public/../admin", PathError::DotSegment),
            ("/./x", PathError::DotSegment),
            ("/%2e%2E/x", PathError::DotSegment),
            ("/a/%2E", PathError::DotSegment),
            ("/public/..%2fadmin", PathError::DotSegment),
            ("/a%2F..%2Fb", PathError::DotSegment),
            ("/public/..;/admin", PathError::Semicolon),
            ("/admin;x/y", PathError::Semicolon),
            ("/admin%3bx", PathError::Semicolon),
            ("/a%5cb", PathError::EncodedBackslash),
            ("/a\\b", PathError::Backslash),
            ("//admin", PathError::EmptySegment),
            ("/a//b", PathError::EmptySegment),
            ("/a%2F%2Fb", PathError::EmptySegment),
            ("/a%zz", PathError::BadEscape),
            ("/a%2", PathError::BadEscape),
            ("/a%00", PathError::ControlCharacter),
            ("/adm./x", PathError::TrailingDotOrSpace),
            ("/adm%20/x", PathError::TrailingDotOrSpace),
            ("/x/file.", PathError::TrailingDotOrSpace),
            ("/a%252e%252e/x", PathError::DoubleEncoded),
            ("/a%252Fb", PathError::DoubleEncoded),
            ("/a%25%32%65", PathError::DoubleEncoded),
            ("/a%255c", PathError::DoubleEncoded),
            ("/%2561dmin/x", PathError::DoubleEncoded),
            ("/pub/..%253b/admin", PathError::DoubleEncoded),
            ("/adm%2520/x", PathError::DoubleEncoded),
            ("/a%2500", PathError::DoubleEncoded),
        ] {
            assert_eq!(canonical_path(bad).err(), Some(why), "{bad}");
        }
    }
}
