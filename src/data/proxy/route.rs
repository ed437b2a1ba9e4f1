//! Routing: the longest configured prefix that matches the path, on segment boundaries.

use std::borrow::Cow;
use std::sync::Arc;

use crate::config::{RequiredScopes, RouteConfig, Upstream};

/// A route ready for the data path.
#[derive(Debug)]
pub struct Route {
    /// The prefix without its trailing slash (`""` for `/`).
    prefix: String,
    /// The prefix as configured, for metrics.
    pub label: Arc<str>,
    /// Where its requests are forwarded.
    pub upstream: Upstream,
    /// No authentication: the request goes upstream without identity headers.
    pub public: bool,
    /// The scope each method needs, checked after authentication.
    pub require: RequiredScopes,
    /// Forward the client's `Authorization` header (otherwise it is removed), for upstreams that
    /// check it themselves.
    pub keep_authorization: bool,
    /// Send the path upstream without the route's prefix.
    pub strip_prefix: bool,
}

impl Route {
    fn matches(&self, path: &str) -> bool {
        self.prefix.is_empty()
            || path.strip_prefix(&self.prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    /// Whether the path would match if case were ignored, as case-insensitive upstreams (IIS,
    /// some frameworks) read it.
    fn matches_ignoring_case(&self, path: &str) -> bool {
        let n = self.prefix.len();
        path.len() >= n
            && path.as_bytes()[..n].eq_ignore_ascii_case(self.prefix.as_bytes())
            && (path.len() == n || path.as_bytes()[n] == b'/')
    }

    /// The path to send upstream: the base path, then the request path (without the route's
    /// prefix when `strip_prefix` is set).
    pub fn upstream_path<'a>(&self, path: &'a str) -> std::borrow::Cow<'a, str> {
        let rest = if self.strip_prefix { &path[self.prefix.len()..] } else { path };
        match (self.upstream.base_path.is_empty(), rest.is_empty()) {
            (true, true) => "/".into(),
            (true, false) => rest.into(),
            (false, _) => format!("{}{rest}", self.upstream.base_path).into(),
        }
    }
}

/// All routes, longest prefix first.
#[derive(Debug)]
pub struct Router {
    routes: Vec<Arc<Route>>,
}

impl Router {
    /// The data path's routes from the validated configuration, longest prefix first.
    pub fn new(configs: &[RouteConfig]) -> Self {
        let mut routes: Vec<Arc<Route>> = configs
            .iter()
            .map(|c| {
                Arc::new(Route {
                    prefix: c.prefix.trim_end_matches('/').to_owned(),
                    label: Arc::from(c.prefix.as_str()),
                    upstream: c.upstream.clone(),
                    public: c.public,
                    require: c.require.clone(),
                    keep_authorization: c.keep_authorization,
                    strip_prefix: c.strip_prefix,
                })
            })
            .collect();
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        Router { routes }
    }

    /// The route of a canonical path: the longest prefix that matches. A path that would
    /// match a longer prefix if case were ignored is refused (`/ADM/x` while `/adm` needs more
    /// than `/`): an upstream that ignores case would serve it as that route's resource.
    pub fn route(&self, path: &str) -> Result<Option<&Arc<Route>>, PathError> {
        for route in &self.routes {
            if route.matches(path) {
                return Ok(Some(route));
            }
            if route.matches_ignoring_case(path) {
                return Err(PathError::CaseFolded);
            }
        }
        Ok(None)
    }
}

/// Whether a method is spelled as the standard spells methods: without lower-case letters.
/// Frameworks that upper-case methods would run `delete` as DELETE, past the scope the
/// gateway checked for `delete`.
pub fn is_standard_spelling(method: &http::Method) -> bool {
    !method.as_str().bytes().any(|b| b.is_ascii_lowercase())
}

/// Why a request path is refused (400) before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not `/...` (for example `*` or an empty path).
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// `%2F` or `%5C`: a separator the router would not see but an upstream might.
    EncodedSeparator,
    /// A backslash, which some servers treat as a separator.
    Backslash,
    /// `;` starts path parameters, which servers strip before routing (`/admin;x`, `/..;/`).
    Semicolon,
    /// A `.` or `..` segment, also percent-encoded.
    DotSegment,
    /// `//`: an empty segment that servers collapse.
    EmptySegment,
    /// An encoded control character.
    ControlCharacter,
    /// A segment ending in `.` or a space, which Windows servers strip (`/admin./x`).
    TrailingDotOrSpace,
    /// `%252e`, `%252f`, `%255c`: a dot or separator that an upstream decoding twice would see.
    DoubleEncoded,
    /// The path matches a longer route prefix only when case is ignored.
    CaseFolded,
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|d| d as u8)
}

/// The one form of a request path that is both routed and forwarded, so the router and the
/// upstream can never disagree about which resource is meant: percent-escapes of unreserved
/// characters decoded (`/%61dmin` is `/admin`), other escapes upper-cased, and every shape that
/// servers resolve differently refused — dot segments (`/public/../admin`), path parameters
/// (`/public/..;/admin`, `/admin;x`), encoded separators (`/admin%2Fx`), backslashes and `//`.
pub fn canonical_path(path: &str) -> Result<Cow<'_, str>, PathError> {
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
        return Ok(Cow::Borrowed(path));
    }
    let mut canonical = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let (Some(high), Some(low)) =
                    (bytes.get(i + 1).copied().and_then(hex_value), bytes.get(i + 2).copied().and_then(hex_value))
                else {
                    return Err(PathError::BadEscape);
                };
                let value = high << 4 | low;
                match value {
                    b'/' | b'\\' => return Err(PathError::EncodedSeparator),
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
    let segments: Vec<&str> = canonical[1..].split('/').collect();
    for (n, segment) in segments.iter().enumerate() {
        if *segment == "." || *segment == ".." {
            return Err(PathError::DotSegment);
        }
        if segment.is_empty() && n + 1 < segments.len() {
            return Err(PathError::EmptySegment);
        }
        if segment.ends_with('.') || segment.ends_with("%20") {
            return Err(PathError::TrailingDotOrSpace);
        }
    }
    if is_double_encoded(&canonical) {
        return Err(PathError::DoubleEncoded);
    }
    Ok(Cow::Owned(canonical))
}

/// Whether a canonical path holds `%25` followed by the escape of a dot or a separator.
fn is_double_encoded(canonical: &str) -> bool {
    canonical.match_indices("%25").any(|(at, _)| {
        let next = canonical.as_bytes().get(at + 3..at + 5).unwrap_or_default();
        [b"2E", b"2F", b"5C"].iter().any(|escape| next.eq_ignore_ascii_case(*escape))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn router(text: &str) -> Router {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        Router::new(&Config::load(Some(&path), Vec::new()).unwrap().routes)
    }

    #[test]
    fn longest_prefix_wins_on_segment_boundaries() {
        let r = router(
            "[[routes]]\nprefix = \"/\"\nupstream = \"http://a:1\"\n\
             [[routes]]\nprefix = \"/api/\"\nupstream = \"http://b:1/v2\"\nstrip_prefix = true\n",
        );
        let route = |path: &str| r.route(path).unwrap().unwrap();
        assert_eq!(route("/api/x").upstream.authority.as_str(), "b:1");
        assert_eq!(route("/api").upstream.authority.as_str(), "b:1");
        assert_eq!(route("/apix").upstream.authority.as_str(), "a:1");
        assert_eq!(route("/api/x").upstream_path("/api/x"), "/v2/x");
        assert_eq!(route("/other").upstream_path("/other"), "/other");
    }

    #[test]
    fn a_path_that_matches_a_longer_prefix_only_without_case_is_refused() {
        let r = router(
            "[[routes]]\nprefix = \"/\"\nupstream = \"http://a:1\"\n\
             [[routes]]\nprefix = \"/adm\"\nupstream = \"http://b:1\"\n",
        );
        for folded in ["/ADM/x", "/Adm", "/aDm/users"] {
            assert_eq!(r.route(folded).err(), Some(PathError::CaseFolded), "{folded}");
        }
        assert_eq!(r.route("/adm/x").unwrap().unwrap().upstream.authority.as_str(), "b:1");
        assert_eq!(r.route("/ADMIN/x").unwrap().unwrap().upstream.authority.as_str(), "a:1", "not the /adm prefix");
        assert_eq!(r.route("/Other").unwrap().unwrap().upstream.authority.as_str(), "a:1");
    }

    #[test]
    fn only_upper_case_methods_pass() {
        for good in ["GET", "DELETE", "PROPFIND", "M-SEARCH"] {
            assert!(is_standard_spelling(&http::Method::from_bytes(good.as_bytes()).unwrap()), "{good}");
        }
        for bad in ["delete", "Get", "pOST"] {
            assert!(!is_standard_spelling(&http::Method::from_bytes(bad.as_bytes()).unwrap()), "{bad}");
        }
    }

    #[test]
    fn paths_are_canonicalised_or_refused() {
        assert_eq!(canonical_path("/api/v4/items?x"), Ok(Cow::Borrowed("/api/v4/items?x")));
        assert_eq!(canonical_path("/a/b.c/..d/").unwrap(), "/a/b.c/..d/");
        assert_eq!(canonical_path("/%61dmin/x").unwrap(), "/admin/x");
        assert_eq!(canonical_path("/caf%c3%a9").unwrap(), "/caf%C3%A9");
        assert_eq!(canonical_path("/.well-known/x").unwrap(), "/.well-known/x");
        for (bad, why) in [
            ("*", PathError::NotAbsolute),
            ("/public/../admin", PathError::DotSegment),
            ("/./x", PathError::DotSegment),
            ("/%2e%2E/x", PathError::DotSegment),
            ("/a/%2E", PathError::DotSegment),
            ("/public/..;/admin", PathError::Semicolon),
            ("/admin;x/y", PathError::Semicolon),
            ("/admin%3bx", PathError::Semicolon),
            ("/admin%2Fx", PathError::EncodedSeparator),
            ("/a%5cb", PathError::EncodedSeparator),
            ("/a\\b", PathError::Backslash),
            ("//admin", PathError::EmptySegment),
            ("/a//b", PathError::EmptySegment),
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
        ] {
            assert_eq!(canonical_path(bad), Err(why), "{bad}");
        }
    }
}
