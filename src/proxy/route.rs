//! Routing: the longest configured prefix that matches the path, on segment boundaries.

use std::sync::Arc;

use crate::config::{RequiredScopes, RouteConfig, Upstream};

/// A route ready for the data path.
#[derive(Debug)]
pub struct Route {
    /// The prefix without its trailing slash (`""` for `/`).
    prefix: String,
    pub upstream: Upstream,
    pub public: bool,
    pub require: RequiredScopes,
    pub keep_authorization: bool,
    pub strip_prefix: bool,
}

impl Route {
    fn matches(&self, path: &str) -> bool {
        self.prefix.is_empty()
            || path.strip_prefix(&self.prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
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
    pub fn new(configs: &[RouteConfig]) -> Self {
        let mut routes: Vec<Arc<Route>> = configs
            .iter()
            .map(|c| {
                Arc::new(Route {
                    prefix: c.prefix.trim_end_matches('/').to_owned(),
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

    pub fn route(&self, path: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.matches(path))
    }
}

/// Refuses paths an upstream might resolve differently from the router: dot segments
/// (`/public/../admin` would otherwise slip past a public route's prefix to a private one),
/// also when their dots or slashes are percent-encoded, and backslashes. Such paths get 400.
/// An encoded slash alone (`/projects/group%2Fname`) is fine.
pub fn is_safe_path(path: &str) -> bool {
    if !path.starts_with('/') {
        return false;
    }
    // Fast path, without allocating: nothing encoded, no backslash, no segment starting with a dot.
    if !path.bytes().any(|b| b == b'%' || b == b'\\') && !path.contains("/.") {
        return true;
    }
    let decoded = path.to_ascii_lowercase().replace("%2f", "/").replace("%5c", "\\").replace("%2e", ".");
    !decoded.contains('\\') && decoded.split('/').all(|segment| segment != "." && segment != "..")
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
        assert_eq!(r.route("/api/x").unwrap().upstream.authority.as_str(), "b:1");
        assert_eq!(r.route("/api").unwrap().upstream.authority.as_str(), "b:1");
        assert_eq!(r.route("/apix").unwrap().upstream.authority.as_str(), "a:1");
        assert_eq!(r.route("/api/x").unwrap().upstream_path("/api/x"), "/v2/x");
        assert_eq!(r.route("/other").unwrap().upstream_path("/other"), "/other");
    }

    #[test]
    fn dot_segments_are_unsafe() {
        assert!(is_safe_path("/a/b.c/..d"));
        assert!(is_safe_path("/projects/group%2Fname"));
        for bad in ["/public/../admin", "/./x", "/%2e%2E/x", "/a/%2E", "x", "/a\\b", "/a%2f..%2fb", "/a%5cb"] {
            assert!(!is_safe_path(bad), "{bad}");
        }
    }
}
