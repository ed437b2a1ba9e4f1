//! Routing: the route of a request's host and canonical path. Routes for the request's host
//! come first, then routes for any host; within each, the longest prefix that matches on
//! segment boundaries wins. `canonical` puts the path in the one form that is routed.

mod canonical;

use std::sync::Arc;

use http::header::{HOST, HeaderMap};
use http::{Method, Uri, Version};

use crate::config::{RequiredScopes, RouteConfig, Upstream};

pub use canonical::{CanonicalPath, canonical_path};

/// A route ready for the data path.
#[derive(Debug)]
pub struct Route {
    /// The prefix without its trailing slash (`""` for `/`).
    prefix: String,
    /// The one host this route answers; `None`: every host.
    host: Option<BoundHost>,
    /// The prefix as configured, after the host for a route with one (`api.example.com/v1`):
    /// the metrics', usage counters' and access log's route.
    pub label: Arc<str>,
    /// Where its requests are forwarded.
    pub upstream: Upstream,
    /// No authentication: the request goes upstream without identity headers.
    pub public: bool,
    /// Methods served as on a public route (CORS preflight); empty on most routes, where the
    /// check is one length test.
    public_methods: Box<[Method]>,
    /// The scope each method needs, checked after authentication.
    pub require: RequiredScopes,
    /// Forward the client's `Authorization` header (otherwise it is removed), for upstreams that
    /// check it themselves.
    pub keep_authorization: bool,
    /// Send the path upstream without the route's prefix.
    pub strip_prefix: bool,
    /// `%2F` may stay in this route's paths (see [`Router::route`] for why that is safe).
    pub allow_encoded_slash: bool,
}

/// A route's host as requests are compared with it: the name in lower case, the port made
/// explicit (the listener's default port when the configuration gave none).
#[derive(Debug)]
struct BoundHost {
    name: String,
    port: u16,
}

impl Route {
    /// Whether `method` is served here without authentication: on a public route, or one of
    /// its `public_methods`.
    pub fn is_public_for(&self, method: &Method) -> bool {
        self.public || self.public_methods.contains(method)
    }

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

    /// Whether this route answers requests for `host` (`None`: the request named none).
    fn answers(&self, host: Option<&RequestHost<'_>>) -> bool {
        match (&self.host, host) {
            (None, _) => true,
            (Some(bound), Some(host)) => host.port == bound.port && host.name.eq_ignore_ascii_case(&bound.name),
            (Some(_), None) => false,
        }
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

/// All routes: those with a host first, then those without; each group longest prefix first.
#[derive(Debug)]
pub struct Router {
    routes: Vec<Arc<Route>>,
    /// Some route has a host: only then is the request's host read at all.
    by_host: bool,
    /// The port a request host without one means: 443 on a TLS listener, else 80.
    default_port: u16,
}

impl Router {
    /// The data path's routes from the validated configuration, for a listener that terminates
    /// TLS (`over_tls`) or not.
    pub fn new(configs: &[RouteConfig], over_tls: bool) -> Self {
        let default_port = if over_tls { 443 } else { 80 };
        let mut routes: Vec<Arc<Route>> = configs
            .iter()
            .map(|c| {
                let label = match &c.host {
                    Some(host) => Arc::from(format!("{host}{}", c.prefix)),
                    None => Arc::from(c.prefix.as_str()),
                };
                Arc::new(Route {
                    prefix: c.prefix.trim_end_matches('/').to_owned(),
                    host: c
                        .host
                        .as_ref()
                        .map(|host| BoundHost { name: host.name.clone(), port: host.port.unwrap_or(default_port) }),
                    label,
                    upstream: c.upstream.clone(),
                    public: c.public,
                    public_methods: c.public_methods.clone().into_boxed_slice(),
                    require: c.require.clone(),
                    keep_authorization: c.keep_authorization,
                    strip_prefix: c.strip_prefix,
                    allow_encoded_slash: c.allow_encoded_slash,
                })
            })
            .collect();
        routes.sort_by_key(|r| (r.host.is_none(), std::cmp::Reverse(r.prefix.len())));
        let by_host = routes.iter().any(|r| r.host.is_some());
        Router { routes, by_host, default_port }
    }

    /// Every request names its host once: HTTP/1.1 needs `Host`, nobody may send two, and a
    /// `Host` beside an authority (HTTP/2's `:authority`, an absolute URI) must name the same
    /// host. Otherwise the gateway, its `X-Forwarded-Host` and the upstream could each read a
    /// different host. Checked on every request, whether or not routes have hosts.
    pub fn check_host(&self, version: Version, uri: &Uri, headers: &HeaderMap) -> Result<(), PathError> {
        let mut values = headers.get_all(HOST).iter();
        let header = values.next();
        if values.next().is_some() {
            return Err(PathError::ConflictingHost);
        }
        match (header, uri.authority()) {
            (None, _) if version == Version::HTTP_11 => Err(PathError::MissingHost),
            (Some(header), Some(authority)) => {
                let header = header.to_str().map_err(|_| PathError::BadHost)?;
                let same = header.eq_ignore_ascii_case(authority.as_str())
                    || matches!(
                        (RequestHost::parse(header, self.default_port), RequestHost::parse(authority.as_str(), self.default_port)),
                        (Some(a), Some(b)) if a.is_same(&b)
                    );
                if same { Ok(()) } else { Err(PathError::ConflictingHost) }
            }
            _ => Ok(()),
        }
    }

    /// The host a request is for, when some route has a host (else `None` without reading
    /// anything): `:authority` (HTTP/2) or the absolute URI's authority, else `Host`. A request
    /// that names its host twice (two `Host` headers, or `Host` disagreeing with the authority)
    /// or names no valid host is refused: the upstream learns the host from `X-Forwarded-Host`
    /// (the `Host` header), so routing must not pick one reading while the upstream picks the
    /// other.
    pub fn host_of<'r>(&self, uri: &'r Uri, headers: &'r HeaderMap) -> Result<Option<RequestHost<'r>>, PathError> {
        if !self.by_host {
            return Ok(None);
        }
        let parse = |text: &'r str| RequestHost::parse(text, self.default_port).ok_or(PathError::BadHost);
        let mut values = headers.get_all(HOST).iter();
        let header = values.next();
        if values.next().is_some() {
            return Err(PathError::ConflictingHost);
        }
        let header = header.map(|value| value.to_str().map_err(|_| PathError::BadHost).and_then(parse)).transpose()?;
        let authority = uri.authority().map(|authority| parse(authority.as_str())).transpose()?;
        match (authority, header) {
            (Some(authority), Some(header)) if !authority.is_same(&header) => Err(PathError::ConflictingHost),
            (Some(host), _) | (None, Some(host)) => Ok(Some(host)),
            (None, None) => Ok(None),
        }
    }

    /// The host a forward-auth check is about: the asking (trusted) proxy's `X-Forwarded-Host`,
    /// its first entry; `None` when no route has a host or the proxy names none (then only
    /// routes without a host match).
    pub fn forwarded_host_of<'r>(&self, headers: &'r HeaderMap) -> Result<Option<RequestHost<'r>>, PathError> {
        if !self.by_host {
            return Ok(None);
        }
        let Some(value) = headers.get("x-forwarded-host") else { return Ok(None) };
        let text = value.to_str().map_err(|_| PathError::BadHost)?;
        let first = text.split(',').next().unwrap_or("").trim();
        RequestHost::parse(first, self.default_port).map(Some).ok_or(PathError::BadHost)
    }

    /// The route of a request for `host` and a canonical path, or why it is refused.
    ///
    /// An encoded slash is routed as three opaque characters: `%2F` is not a separator, so the
    /// route found is the one whose prefix ends on a real `/` of the path as sent, and the path
    /// cannot be under a prefix it does not literally start with. Then it is refused unless
    /// that route allows encoded slashes, and unless the path with every `%2F` decoded — as an
    /// upstream (or a server in front of it) that decodes before routing reads it — finds the
    /// very same route. Decoding only adds separators, so it can only reach a longer prefix,
    /// never leave this one; this check refuses exactly the paths that would reach another
    /// route's resources under this route's rules (`/a%2Fadmin` while `/a/admin` is a route of
    /// its own). `canonical_path` has already refused dot and empty segments in the decoded
    /// reading (`/a%2F..%2Fb`), so normalising after decoding cannot climb out of the prefix
    /// either. The scope check that follows uses this route: the route of both readings.
    pub fn route(
        &self,
        host: Option<&RequestHost<'_>>,
        path: &CanonicalPath<'_>,
    ) -> Result<Option<&Arc<Route>>, PathError> {
        let Some(route) = self.route_path(host, &path.path)? else {
            return Ok(None);
        };
        if path.encoded_slash {
            if !route.allow_encoded_slash {
                return Err(PathError::EncodedSlash);
            }
            let decoded = path.path.replace("%2F", "/");
            match self.route_path(host, &decoded)? {
                Some(same) if Arc::ptr_eq(same, route) => {}
                _ => return Err(PathError::EncodedSlashChangesRoute),
            }
        }
        Ok(Some(route))
    }

    /// The first route, in the router's order, that answers `host` and matches `path`. A path
    /// that would match an earlier route if case were ignored is refused (`/ADM/x` while `/adm`
    /// needs more than `/`): an upstream that ignores case would serve it as that route's
    /// resource.
    fn route_path(&self, host: Option<&RequestHost<'_>>, path: &str) -> Result<Option<&Arc<Route>>, PathError> {
        for route in self.routes.iter().filter(|route| route.answers(host)) {
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

/// The host a request is for, borrowed from its head: compared without case, its port made
/// explicit, a trailing dot removed (`api.example.com.` is the same DNS name).
#[derive(Debug, Clone, Copy)]
pub struct RequestHost<'r> {
    name: &'r str,
    port: u16,
}

impl<'r> RequestHost<'r> {
    fn parse(text: &'r str, default_port: u16) -> Option<Self> {
        let (name, port) = split_host(text)?;
        Some(RequestHost { name, port: port.unwrap_or(default_port) })
    }

    fn is_same(&self, other: &RequestHost<'_>) -> bool {
        self.port == other.port && self.name.eq_ignore_ascii_case(other.name)
    }
}

/// A host as `Host`, `:authority` or `routes[].host` write it, split into its name (without
/// one trailing dot) and its port, if it has one; `None` when it is not a host: a DNS name or
/// IPv4 address (letters, digits, `-` and `_` in non-empty labels separated by dots), or an
/// IPv6 address in brackets, optionally followed by `:` and 1-5 digits.
pub fn split_host(text: &str) -> Option<(&str, Option<u16>)> {
    let (name, port) = match text.strip_prefix('[') {
        Some(rest) => {
            let end = rest.find(']')?;
            rest[..end].parse::<std::net::Ipv6Addr>().ok()?;
            (&text[..end + 2], &rest[end + 1..])
        }
        None => match text.rfind(':') {
            Some(colon) => (&text[..colon], &text[colon..]),
            None => (text, ""),
        },
    };
    let port = match port.strip_prefix(':') {
        None if port.is_empty() => None,
        Some(digits) if (1..=5).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) => {
            Some(digits.parse::<u16>().ok()?)
        }
        _ => return None,
    };
    if name.starts_with('[') {
        return Some((name, port));
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    let is_label =
        |label: &str| !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    name.split('.').all(is_label).then_some((name, port))
}

/// Whether a method is spelled as the standard spells methods: without lower-case letters.
/// Frameworks that upper-case methods would run `delete` as DELETE, past the scope the
/// gateway checked for `delete`.
pub fn is_standard_spelling(method: &http::Method) -> bool {
    !method.as_str().bytes().any(|b| b.is_ascii_lowercase())
}

/// Why a request is refused (400) before it reaches a route: its path, or, where routes have
/// hosts, its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not `/...` (for example `*` or an empty path).
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// `%2F` on a route without `allow_encoded_slash`: a separator the router would not see but
    /// an upstream might.
    EncodedSlash,
    /// `%2F` on a route that allows it, but read with the slashes decoded the path belongs to
    /// another route.
    EncodedSlashChangesRoute,
    /// `%5C`, which servers may decode into a backslash and then into a separator.
    EncodedBackslash,
    /// A backslash, which some servers treat as a separator.
    Backslash,
    /// `;` starts path parameters, which servers strip before routing (`/admin;x`, `/..;/`).
    Semicolon,
    /// A `.` or `..` segment, also percent-encoded or between encoded slashes.
    DotSegment,
    /// `//`: an empty segment that servers collapse (also `/%2F` and `%2F%2F`).
    EmptySegment,
    /// An encoded control character.
    ControlCharacter,
    /// A segment ending in `.` or a space, which Windows servers strip (`/admin./x`).
    TrailingDotOrSpace,
    /// `%25` before the escape of a byte an upstream decoding twice would read as other than the
    /// router did: `%252e`, `%252f`, `%255c`, `%253b`, `%2561` (a letter), `%2520`, `%2500`.
    DoubleEncoded,
    /// The path matches a longer route prefix only when case is ignored.
    CaseFolded,
    /// The `Host` header or the authority is not a host name, where routes have hosts.
    BadHost,
    /// Two `Host` headers, or `Host` and the authority (`:authority`, an absolute URI) naming
    /// different hosts.
    ConflictingHost,
    /// An HTTP/1.1 request without `Host`, which the protocol requires.
    MissingHost,
}

impl PathError {
    /// The refusal's `reason` in the 400's body: a stable name for scripts.
    pub fn reason(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "not_absolute",
            PathError::BadEscape => "bad_escape",
            PathError::EncodedSlash => "encoded_slash",
            PathError::EncodedSlashChangesRoute => "encoded_slash_changes_route",
            PathError::EncodedBackslash => "encoded_backslash",
            PathError::Backslash => "backslash",
            PathError::Semicolon => "semicolon",
            PathError::DotSegment => "dot_segment",
            PathError::EmptySegment => "empty_segment",
            PathError::ControlCharacter => "control_character",
            PathError::TrailingDotOrSpace => "trailing_dot_or_space",
            PathError::DoubleEncoded => "double_encoded",
            PathError::CaseFolded => "case_folded",
            PathError::BadHost => "bad_host",
            PathError::ConflictingHost => "conflicting_host",
            PathError::MissingHost => "missing_host",
        }
    }

    /// The refusal's `message`: what is wrong with the request, for the person who sent it.
    pub fn message(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "the request path must start with /",
            PathError::BadEscape => "the request path has a % not followed by two hexadecimal digits",
            PathError::EncodedSlash => "the request path has an encoded slash (%2F), which this route does not allow",
            PathError::EncodedSlashChangesRoute => {
                "the request path has an encoded slash (%2F) that, decoded, would put it under another route"
            }
            PathError::EncodedBackslash => "the request path has an encoded backslash (%5C)",
            PathError::Backslash => "the request path has a backslash",
            PathError::Semicolon => "the request path has a ; (path parameters), which is refused also encoded",
            PathError::DotSegment => {
                "the request path has a . or .. segment (also when encoded, or between encoded slashes)"
            }
            PathError::EmptySegment => "the request path has an empty segment (//, also with encoded slashes)",
            PathError::ControlCharacter => "the request path has an encoded control character",
            PathError::TrailingDotOrSpace => "a segment of the request path ends in a dot or a space",
            PathError::DoubleEncoded => {
                "the request path has a double-encoded character that an upstream decoding twice would read differently (%252e, %252f, %2561)"
            }
            PathError::CaseFolded => "the request path matches a route prefix only when case is ignored",
            PathError::BadHost => "the request's Host (or :authority) is not a valid host name",
            PathError::ConflictingHost => {
                "the request names its host twice (Host repeated, or different from :authority or the absolute URI)"
            }
            PathError::MissingHost => "an HTTP/1.1 request must have a Host header",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn router(text: &str) -> Router {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        Router::new(&Config::load(Some(&path), Vec::new()).unwrap().routes, false)
    }

    /// The route of `path` (made canonical first) for a request naming `host`, or why not.
    fn route_for<'r>(r: &'r Router, host: Option<&str>, path: &str) -> Result<Option<&'r Arc<Route>>, PathError> {
        let host = host.map(|h| RequestHost::parse(h, r.default_port).unwrap());
        r.route(host.as_ref(), &canonical_path(path)?)
    }

    /// The authority of the upstream `path` is routed to, for any host.
    fn upstream_of(r: &Router, path: &str) -> String {
        route_for(r, None, path).unwrap().unwrap().upstream.authority.to_string()
    }

    #[test]
    fn longest_prefix_wins_on_segment_boundaries() {
        let r = router(
            "[[routes]]\nprefix = \"/\"\nupstream = \"http://a:1\"\n\
             [[routes]]\nprefix = \"/api/\"\nupstream = \"http://b:1/v2\"\nstrip_prefix = true\n",
        );
        assert_eq!(upstream_of(&r, "/api/x"), "b:1");
        assert_eq!(upstream_of(&r, "/api"), "b:1");
        assert_eq!(upstream_of(&r, "/apix"), "a:1");
        let route = |path: &str| route_for(&r, None, path).unwrap().unwrap();
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
            assert_eq!(route_for(&r, None, folded).err(), Some(PathError::CaseFolded), "{folded}");
        }
        assert_eq!(upstream_of(&r, "/adm/x"), "b:1");
        assert_eq!(upstream_of(&r, "/ADMIN/x"), "a:1", "not the /adm prefix");
        assert_eq!(upstream_of(&r, "/Other"), "a:1");
    }

    #[test]
    fn encoded_slashes_pass_only_on_a_route_that_allows_them_and_never_change_the_route() {
        let r = router(
            "[[routes]]\nprefix = \"/\"\nupstream = \"http://root:1\"\n\
             [[routes]]\nprefix = \"/projects\"\nupstream = \"http://git:1\"\nallow_encoded_slash = true\n\
             [[routes]]\nprefix = \"/projects/admin\"\nupstream = \"http://adm:1\"\n",
        );
        let routed = route_for(&r, None, "/projects/group%2fsub%2Fproject/issues").unwrap().unwrap();
        assert_eq!(routed.upstream.authority.as_str(), "git:1");
        let canonical = canonical_path("/projects/group%2fsub%2Fproject/issues").unwrap();
        assert_eq!(canonical.path, "/projects/group%2Fsub%2Fproject/issues", "kept, upper-cased");
        assert!(canonical.encoded_slash);
        for (path, why) in [
            // Not allowed on the route that matches as sent.
            ("/other%2Fx", PathError::EncodedSlash),
            ("/projects%2Fx", PathError::EncodedSlash),
            // Decoded, the path is under /projects/admin: the upstream would serve that route's
            // resource under this route's rules.
            ("/projects/admin%2Fusers", PathError::EncodedSlashChangesRoute),
            ("/projects/ADMIN%2Fusers", PathError::CaseFolded),
            // An upstream that decodes and then resolves dot segments would leave the prefix.
            ("/projects/a%2F..%2F..%2Fsecret", PathError::DotSegment),
            ("/projects/%2E%2E%2Fsecret", PathError::DotSegment),
            ("/projects/a%2F%2Fb", PathError::EmptySegment),
            ("/projects/%2Fb", PathError::EmptySegment),
            ("/projects/a.%2Fb", PathError::TrailingDotOrSpace),
            ("/projects/a%5Cb", PathError::EncodedBackslash),
            ("/projects/a%252Fb", PathError::DoubleEncoded),
        ] {
            assert_eq!(route_for(&r, None, path).err(), Some(why), "{path}");
        }
    }

    #[test]
    fn host_routes_win_then_the_longest_prefix() {
        let r = router(
            "[[routes]]\nprefix = \"/\"\nupstream = \"http://any:1\"\n\
             [[routes]]\nprefix = \"/v1/users\"\nupstream = \"http://users:1\"\n\
             [[routes]]\nprefix = \"/\"\nupstream = \"http://api:1\"\nhost = \"api.example.com\"\n\
             [[routes]]\nprefix = \"/v1\"\nupstream = \"http://api-v1:1\"\nhost = \"API.example.com\"\n\
             [[routes]]\nprefix = \"/\"\nupstream = \"http://alt:1\"\nhost = \"api.example.com:8443\"\n",
        );
        let upstream =
            |host: Option<&str>, path: &str| route_for(&r, host, path).unwrap().unwrap().upstream.authority.to_string();
        assert_eq!(upstream(Some("api.example.com"), "/v1/x"), "api-v1:1");
        assert_eq!(upstream(Some("Api.Example.COM."), "/v1/x"), "api-v1:1", "case and a trailing dot");
        assert_eq!(upstream(Some("api.example.com:80"), "/v1/x"), "api-v1:1", "the default port");
        assert_eq!(upstream(Some("api.example.com"), "/v1/users/7"), "api-v1:1", "a host route wins");
        assert_eq!(upstream(Some("api.example.com"), "/other"), "api:1");
        assert_eq!(upstream(Some("api.example.com:8443"), "/v1/x"), "alt:1", "the port is part of the host");
        assert_eq!(upstream(Some("api.example.com:8080"), "/v1/users/7"), "users:1", "no route for that port");
        assert_eq!(upstream(Some("www.example.com"), "/v1/users/7"), "users:1");
        assert_eq!(upstream(None, "/v1/x"), "any:1");
        let route = route_for(&r, Some("api.example.com"), "/v1").unwrap().unwrap();
        assert_eq!(&*route.label, "api.example.com/v1", "host routes are labelled with their host");
        assert_eq!(&*route_for(&r, None, "/v1/users").unwrap().unwrap().label, "/v1/users");
    }

    #[test]
    fn the_host_is_read_once_and_must_be_a_host() {
        let r = router(
            "[[routes]]\nprefix = \"/\"\nupstream = \"http://any:1\"\n\
             [[routes]]\nprefix = \"/\"\nupstream = \"http://api:1\"\nhost = \"api.example.com\"\n",
        );
        let host_of = |uri: &str, hosts: &[&str]| {
            let uri: Uri = uri.parse().unwrap();
            let mut headers = HeaderMap::new();
            for host in hosts {
                headers.append(HOST, host.parse().unwrap());
            }
            r.host_of(&uri, &headers).map(|host| host.map(|h| format!("{}:{}", h.name, h.port)))
        };
        assert_eq!(host_of("/x", &["api.example.com"]), Ok(Some("api.example.com:80".into())));
        assert_eq!(host_of("/x", &[]), Ok(None));
        assert_eq!(host_of("http://API.example.com/x", &[]), Ok(Some("API.example.com:80".into())));
        assert_eq!(host_of("http://api.example.com/x", &["api.example.com:80"]), Ok(Some("api.example.com:80".into())));
        assert_eq!(host_of("http://api.example.com/x", &["other.example.com"]), Err(PathError::ConflictingHost));
        assert_eq!(host_of("/x", &["api.example.com", "api.example.com"]), Err(PathError::ConflictingHost));
        for bad in ["api.example.com:", "api.example.com:x", "api..example.com", "a b", "user@api.example.com", ""] {
            assert_eq!(host_of("/x", &[bad]), Err(PathError::BadHost), "{bad:?}");
        }
        // Without host routes nothing is read, so nothing is refused.
        let plain = router("[[routes]]\nprefix = \"/\"\nupstream = \"http://any:1\"\n");
        let mut headers = HeaderMap::new();
        headers.append(HOST, "a b".parse().unwrap());
        headers.append(HOST, "c".parse().unwrap());
        assert_eq!(plain.host_of(&"/x".parse().unwrap(), &headers).map(|h| h.is_some()), Ok(false));
    }

    #[test]
    fn hosts_are_split_into_name_and_port() {
        assert_eq!(split_host("api.example.com"), Some(("api.example.com", None)));
        assert_eq!(split_host("api.example.com.:8443"), Some(("api.example.com", Some(8443))));
        assert_eq!(split_host("my_service:08080"), Some(("my_service", Some(8080))));
        assert_eq!(split_host("10.0.0.1"), Some(("10.0.0.1", None)));
        assert_eq!(split_host("[::1]:8080"), Some(("[::1]", Some(8080))));
        for bad in ["", ".", "a..b", ".a", "a:b:c", "a:", "a:65536", "a:123456", "[::1", "[x]", "[::1]x", "a/b", "a@b"]
        {
            assert_eq!(split_host(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn public_methods_are_public_only_for_themselves() {
        let r = router(
            "[[routes]]\nprefix = \"/\"\nupstream = \"http://a:1\"\npublic_methods = [\"OPTIONS\"]\n\
             [[routes]]\nprefix = \"/open\"\nupstream = \"http://a:1\"\npublic = true\n",
        );
        let route = route_for(&r, None, "/x").unwrap().unwrap();
        assert!(route.is_public_for(&Method::OPTIONS));
        assert!(!route.is_public_for(&Method::GET));
        assert!(!route.is_public_for(&Method::from_bytes(b"options").unwrap()), "only the standard spelling");
        let open = route_for(&r, None, "/open/x").unwrap().unwrap();
        assert!(open.is_public_for(&Method::DELETE));
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
}
