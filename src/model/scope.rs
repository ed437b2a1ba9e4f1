//! Scopes: what a token may do. The one place that says which scope grants which, so the
//! proxy, the admin API and token minting can never disagree.
//!
//! Operators declare their own scopes in `tokens.scopes` (`read`, `write`, ...). Two more are
//! reserved and always valid, because the gateway itself needs them: [`ADMIN`] may call every
//! admin API endpoint (with the account's own powers), [`ADMIN_READ`] only its `GET` endpoints.
//! Neither is ever given by default, so a token minted for a script cannot administer anything
//! unless someone asked for that. [`ALL`] (`*`) grants every scope, reserved ones included.

/// Every scope, including the reserved ones.
pub const ALL: &str = "*";
/// Every admin API endpoint, with the account's own powers.
pub const ADMIN: &str = "admin";
/// The admin API's `GET` endpoints only.
pub const ADMIN_READ: &str = "admin:read";
/// The scopes that need no entry in `tokens.scopes`.
pub const RESERVED: [&str; 2] = [ADMIN, ADMIN_READ];

/// What each reserved scope allows, for `/api/v1/policy`, the web page and `--help`.
pub const RESERVED_MEANING: [(&str, &str); 2] = [
    (ADMIN, "every admin API endpoint and the web page, with the account's own powers"),
    (ADMIN_READ, "the admin API's GET endpoints only; not a proxy scope"),
];

/// Whether `scope` is one of the reserved admin scopes.
pub fn is_reserved(scope: &str) -> bool {
    RESERVED.contains(&scope)
}

/// Whether holding `held` grants `needed`: the same scope, `*`, or `admin` for `admin:read`.
pub fn grants(held: &str, needed: &str) -> bool {
    held == needed || held == ALL || (held == ADMIN && needed == ADMIN_READ)
}

/// Whether any of `held` grants `needed`.
pub fn carries<S: AsRef<str>>(held: &[S], needed: &str) -> bool {
    held.iter().any(|scope| grants(scope.as_ref(), needed))
}

/// The first of `wanted` that `held` does not grant: a token may only pass on what it carries
/// (`*` only from `*`).
pub fn first_missing<'a, S: AsRef<str>, W: AsRef<str>>(held: &[S], wanted: &'a [W]) -> Option<&'a str> {
    wanted.iter().map(AsRef::as_ref).find(|scope| !carries(held, scope))
}

/// The scope an admin API request needs: reading needs `admin:read` (which `admin` includes),
/// anything else `admin`.
pub fn for_admin_method(method: &http::Method) -> &'static str {
    if method == http::Method::GET || method == http::Method::HEAD { ADMIN_READ } else { ADMIN }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_grants_everything_and_admin_includes_admin_read() {
        assert!(grants("*", "read") && grants("*", ADMIN) && grants("*", ADMIN_READ));
        assert!(grants(ADMIN, ADMIN_READ) && grants(ADMIN, ADMIN));
        assert!(!grants(ADMIN_READ, ADMIN), "admin:read never writes");
        assert!(!grants(ADMIN_READ, "read"), "admin:read is no proxy scope");
        assert!(!grants(ADMIN, "read") && !grants("read", ADMIN_READ) && !grants("write", "read"));
    }

    #[test]
    fn a_token_passes_on_only_what_it_carries() {
        assert_eq!(first_missing(&["read", "admin"], &["read", "admin:read"]), None);
        assert_eq!(first_missing(&["read", "admin"], &["read", "write"]), Some("write"));
        assert_eq!(first_missing(&["read", "write", "admin"], &["*"]), Some("*"), "* only from *");
        assert_eq!(first_missing(&["*"], &["*", "admin"]), None);
    }

    #[test]
    fn reading_needs_admin_read_and_the_rest_admin() {
        assert_eq!(for_admin_method(&http::Method::GET), ADMIN_READ);
        assert_eq!(for_admin_method(&http::Method::HEAD), ADMIN_READ);
        for method in [http::Method::POST, http::Method::PATCH, http::Method::DELETE, http::Method::PUT] {
            assert_eq!(for_admin_method(&method), ADMIN);
        }
    }
}
