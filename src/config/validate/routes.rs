//! `[[routes]]`: each route checked on its own, every problem of each reported, then the routes
//! together (a prefix given twice).

use std::collections::{BTreeMap, HashSet};

use http::{Method, Uri};

use super::invalid;
use crate::config::problems::Problems;
use crate::config::raw::RawRoute;
use crate::config::{ConfigError, RequiredScopes, RouteConfig, RouteHost, Upstream, default_port};
use crate::model::scope;

/// Turns a route's problem into `routes (prefix "/api"): ...`.
type At<'a> = &'a dyn Fn(String) -> ConfigError;

/// The routes, or the built-in one when the file names none. `scopes` is `tokens.scopes`
/// (`None`: wrong, so `require` is not judged against it); `default_port` the proxy listener's
/// (`None`: not known, so the duplicate check does not guess).
pub(super) fn routes(
    p: &mut Problems,
    raw: Option<Vec<RawRoute>>,
    scopes: Option<&[String]>,
    default_port: Option<u16>,
) -> Option<Vec<RouteConfig>> {
    let raw = raw.unwrap_or_else(|| vec![RawRoute::built_in_default()]);
    let checked: Vec<Option<RouteConfig>> = raw.into_iter().map(|raw| route(p, raw, scopes)).collect();
    if let Some(default_port) = default_port {
        report_duplicates(p, checked.iter().flatten(), default_port);
    }
    checked.into_iter().collect()
}

/// `/api` and `/api/` are the same route to the router: one of them would be dead. The same
/// prefix on different hosts (or on a host and without one) is not. Among the routes that
/// passed their own checks.
fn report_duplicates<'a>(p: &mut Problems, routes: impl Iterator<Item = &'a RouteConfig>, default_port: u16) {
    let mut prefixes = HashSet::new();
    for route in routes {
        // A host without a port means the listener's default port, as the router compares hosts.
        let host = route.host.as_ref().map(|host| (host.name.clone(), host.port.unwrap_or(default_port)));
        if !prefixes.insert((route.prefix.trim_end_matches('/').to_owned(), host)) {
            let on = route.host.as_ref().map(|host| format!(" for host {:?}", host.to_string())).unwrap_or_default();
            p.record(invalid("routes", format!("prefix {:?} appears twice{on}", route.prefix)));
        }
    }
}

fn route(p: &mut Problems, raw: RawRoute, scopes: Option<&[String]>) -> Option<RouteConfig> {
    let place = format!("routes (prefix {:?})", raw.prefix);
    let at = |message: String| invalid(&place, message);
    let prefix = p.check(if raw.prefix.starts_with('/') { Ok(()) } else { Err(at("prefix must start with /".into())) });
    let upstream = p.check(upstream(&raw.upstream).map_err(&at));
    let require = required_scopes(p, &raw.require, scopes, &at);
    let public = p.check(if raw.public && !raw.require.is_empty() {
        Err(at("a public route cannot require scopes".into()))
    } else {
        Ok(())
    });
    let public_methods = public_methods(p, &raw.public_methods, raw.public, require.as_ref(), &at);
    let host = p.check(raw.host.as_deref().map(route_host).transpose().map_err(&at));
    prefix?;
    public?;
    Some(RouteConfig {
        prefix: raw.prefix,
        upstream: upstream?,
        public: raw.public,
        require: require?,
        keep_authorization: raw.keep_authorization,
        strip_prefix: raw.strip_prefix,
        allow_encoded_slash: raw.allow_encoded_slash,
        public_methods: public_methods?,
        host: host?,
    })
}

/// `routes[].upstream`: `http://` or `https://`, a host, an optional base path; no user
/// information, no query.
fn upstream(text: &str) -> Result<Upstream, String> {
    let uri: Uri = text.parse().map_err(|_| format!("upstream {text:?} is not a URL"))?;
    let scheme = uri.scheme().cloned().ok_or("upstream needs a scheme such as http://")?;
    if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
        return Err(format!("upstream scheme {scheme} is not supported; use http:// or https://"));
    }
    let authority = uri.authority().cloned().ok_or("upstream needs a host and port")?;
    if authority.as_str().contains('@') {
        // It would be printed in logs, and never sent: upstream credentials do not belong here.
        return Err("upstream must not contain user information (user:password@)".into());
    }
    if uri.query().is_some() {
        return Err("upstream must not have a query string".into());
    }
    let base_path = uri.path().trim_end_matches('/').to_owned();
    // As clients write it: without the scheme's default port.
    let host_text = match authority.port_u16() {
        Some(port) if port == default_port(&scheme) => authority.host(),
        _ => authority.as_str(),
    };
    let host = http::HeaderValue::from_str(host_text).map_err(|_| "upstream host is not a valid Host header")?;
    Ok(Upstream { host, scheme, authority, base_path })
}

/// `routes[].require`, every entry checked.
fn required_scopes(
    p: &mut Problems,
    require: &BTreeMap<String, String>,
    scopes: Option<&[String]>,
    at: At<'_>,
) -> Option<RequiredScopes> {
    let entries = p.check_each(require.iter().map(|(method, scope)| required_scope(method, scope, scopes).map_err(at)));
    let mut required = RequiredScopes::default();
    for (method, scope) in entries? {
        match method {
            Some(method) => required.by_method.push((method, scope)),
            None => required.otherwise = Some(scope),
        }
    }
    Some(required)
}

/// One `require` entry: a method (`None` for `*`) and a scope that is reserved or one of
/// `scopes` (not judged when those are wrong).
fn required_scope(method: &str, name: &str, scopes: Option<&[String]>) -> Result<(Option<Method>, String), String> {
    if scopes.is_some_and(|scopes| !scopes.iter().any(|known| known == name)) && !scope::is_reserved(name) {
        return Err(format!("require names scope {name:?}, which is not in tokens.scopes"));
    }
    if method == "*" {
        return Ok((None, name.to_owned()));
    }
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("require names an invalid method {method:?}"))?;
    Ok((Some(method), name.to_owned()))
}

/// `routes[].public_methods`: method names as the standard spells them (upper-case tokens, as
/// the data path only serves such methods), each once, and none that `require` gives a scope
/// (a method cannot be both public and scoped; not judged when `require` is wrong). On a
/// `public = true` route the list is an error rather than ignored: every method is public there
/// already, and an operator who wrote both may believe the list narrows what is public.
fn public_methods(
    p: &mut Problems,
    names: &[String],
    public: bool,
    require: Option<&RequiredScopes>,
    at: At<'_>,
) -> Option<Vec<Method>> {
    if public && !names.is_empty() {
        return p.check(Err(at("public_methods has no effect on a public route (every method is public there); \
                               remove one of them"
            .into())));
    }
    let mut earlier: Vec<Method> = Vec::with_capacity(names.len());
    p.check_each(names.iter().map(|name| {
        let method = public_method(name, &earlier, require).map_err(at)?;
        earlier.push(method.clone());
        Ok(method)
    }))
}

fn public_method(name: &str, earlier: &[Method], require: Option<&RequiredScopes>) -> Result<Method, String> {
    if name == "*" {
        return Err("public_methods cannot be \"*\"; use public = true for a route without authentication".into());
    }
    let method =
        Method::from_bytes(name.as_bytes()).ok().filter(crate::data::proxy::route::is_standard_spelling).ok_or_else(
            || format!("public_methods names {name:?}, which is not an upper-case method such as \"OPTIONS\""),
        )?;
    if earlier.contains(&method) {
        return Err(format!("public_methods names {name:?} twice"));
    }
    if require.is_some_and(|require| require.names(&method)) {
        return Err(format!("{name} is both in public_methods and given a scope in require"));
    }
    Ok(method)
}

/// `routes[].host`: a host name or IP address, with a port when only that port is meant;
/// stored in lower case without a trailing dot, as requests are compared with it.
fn route_host(text: &str) -> Result<RouteHost, String> {
    let bad = || format!("host {text:?} is not a host name such as \"api.example.com\" or \"api.example.com:8443\"");
    let (name, port) = crate::data::proxy::route::split_host(text).ok_or_else(bad)?;
    if port == Some(0) {
        return Err(bad());
    }
    Ok(RouteHost { name: name.to_ascii_lowercase(), port })
}

#[cfg(test)]
mod tests {
    use http::Method;

    use crate::config::load::load_text;

    #[test]
    fn routes_are_validated() {
        let base = "[[routes]]\nprefix = \"/api\"\n";
        assert!(load_text(&format!("{base}upstream = \"ftp://x\"\n")).is_err());
        assert!(load_text(&format!("{base}upstream = \"http://u:p@h:1\"\n")).is_err());
        let twice = "[[routes]]\nprefix = \"/api\"\nupstream = \"http://h:1\"\n[[routes]]\nprefix = \"/api/\"\nupstream = \"http://h:2\"\n";
        assert!(load_text(twice).unwrap_err().to_string().contains("twice"));
        assert!(load_text("[proxy]\nupstream_timeout = \"0s\"\n").is_err());
        assert!(load_text(&format!("{base}upstream = \"http://h:1\"\nrequire = {{ GET = \"deploy\" }}\n")).is_err());
        let reserved = format!("{base}upstream = \"http://h:1\"\nrequire = {{ GET = \"admin:read\" }}\n");
        assert!(load_text(&reserved).is_ok(), "reserved scopes need no entry in tokens.scopes");
        let listed = load_text("[tokens]\nscopes = [\"read\", \"admin\"]\ndefault_scopes = [\"read\"]\n");
        assert!(listed.unwrap_err().to_string().contains("reserved"));
        for default in ["admin", "admin:read", "*"] {
            let text = format!("[tokens]\ndefault_scopes = [\"read\", \"{default}\"]\n");
            assert!(load_text(&text).unwrap_err().to_string().contains("tokens.default_scopes"), "{default}");
        }
        let config = load_text(&format!(
            "{base}upstream = \"http://h:1/base/\"\nrequire = {{ GET = \"read\", \"*\" = \"write\" }}\n"
        ))
        .unwrap();
        let route = &config.routes[0];
        assert_eq!(route.upstream.base_path, "/base");
        assert_eq!(route.require.for_method(&Method::GET), Some("read"));
        assert_eq!(route.require.for_method(&Method::DELETE), Some("write"));
        let lower = Method::from_bytes(b"get").unwrap();
        assert_eq!(route.require.for_method(&lower), Some("read"), "methods compare without case");
    }

    #[test]
    fn route_options_are_validated() {
        let route = |options: &str| {
            load_text(&format!("[[routes]]\nprefix = \"/api\"\nupstream = \"http://h:1\"\n{options}\n"))
        };
        let error = |options: &str| route(options).unwrap_err().to_string();

        let config = route("public_methods = [\"OPTIONS\", \"PROPFIND\"]\nallow_encoded_slash = true").unwrap();
        assert_eq!(config.routes[0].public_methods, [Method::OPTIONS, Method::from_bytes(b"PROPFIND").unwrap()]);
        assert!(config.routes[0].allow_encoded_slash);
        for (options, expected) in [
            ("public_methods = [\"options\"]", "not an upper-case method"),
            ("public_methods = [\"GET /\"]", "not an upper-case method"),
            ("public_methods = [\"\"]", "not an upper-case method"),
            ("public_methods = [\"*\"]", "use public = true"),
            ("public_methods = [\"OPTIONS\", \"OPTIONS\"]", "twice"),
            ("public = true\npublic_methods = [\"OPTIONS\"]", "no effect on a public route"),
            ("require = { options = \"read\" }\npublic_methods = [\"OPTIONS\"]", "both in public_methods"),
        ] {
            let message = error(options);
            assert!(message.contains("routes (prefix \"/api\")") && message.contains(expected), "{options}: {message}");
        }
        assert!(route("require = { \"*\" = \"write\" }\npublic_methods = [\"OPTIONS\"]").is_ok(), "* is not a name");

        let host = route("host = \"API.Example.com.:8443\"").unwrap().routes[0].host.clone().unwrap();
        assert_eq!((host.name.as_str(), host.port), ("api.example.com", Some(8443)));
        assert_eq!(route("host = \"[::1]\"").unwrap().routes[0].host.as_ref().unwrap().to_string(), "[::1]");
        for bad in
            ["", "https://api.example.com", "api.example.com/x", "api example", "api.example.com:0", "a:99999", "u@h"]
        {
            let message = error(&format!("host = {bad:?}"));
            assert!(message.contains("is not a host name"), "{bad}: {message}");
        }

        let two = |a: &str, b: &str| {
            load_text(&format!(
                "[[routes]]\nprefix = \"/\"\nupstream = \"http://h:1\"\n{a}\n[[routes]]\nprefix = \"/\"\nupstream = \"http://h:2\"\n{b}\n"
            ))
        };
        assert!(two("host = \"a.example.com\"", "host = \"b.example.com\"").is_ok());
        assert!(two("host = \"a.example.com\"", "").is_ok(), "a host route and a fallback");
        assert!(two("host = \"a.example.com\"", "host = \"a.example.com:8080\"").is_ok());
        for (a, b) in [
            ("host = \"a.example.com\"", "host = \"A.example.com.\""),
            ("host = \"a.example.com\"", "host = \"a.example.com:80\""),
        ] {
            let message = two(a, b).unwrap_err().to_string();
            assert!(message.contains("appears twice for host"), "{a} / {b}: {message}");
        }
    }
}
