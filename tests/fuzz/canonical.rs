//! `canonical_path` and the router: every path's canonical form is a fixed point with the same
//! decoded bytes and none of the refused shapes, and a routed path stays in its route however a
//! lenient upstream reads it (see `check::canonical`).

use proptest::prelude::*;

use crate::check::canonical::{check, decode, normalise, route_label};
use crate::strategies::{cases, path, path_piece};

proptest! {
    #![proptest_config(cases(2048))]

    #[test]
    fn any_path_is_canonicalised_or_refused_and_stays_in_its_route(path in path()) {
        check(&path);
    }

    #[test]
    fn a_traversal_under_a_prefix_never_reaches_another_route(
        prefix in prop::sample::select(vec!["/pub", "/git", "/api", "/api/v1", "/admin", ""]),
        climb in crate::strategies::joined(path_piece(), 1, 6),
        target in prop::sample::select(vec!["admin", "ADMIN", "%61dmin", "git/admin", "git%2Fadmin", "api/v1"]),
    ) {
        // `/pub/<climb>/admin`: whatever `climb` spells, the path is refused or its route is the
        // route of every reading of it.
        check(&format!("{prefix}/{climb}/{target}"));
        check(&format!("{prefix}/{climb}{target}"));
    }
}

/// The harness itself: the router of the containment check routes as configured, and the
/// readings model the upstreams it claims to (otherwise the properties above check nothing).
#[test]
fn the_containment_check_routes_and_reads_as_intended() {
    for (path, label) in [
        ("/x", "/"),
        ("/%61dmin/x", "/admin"),
        ("/git/group%2Fproject", "/git"),
        ("/git/admin/x", "/git/admin"),
        ("/api/v1/items", "/api/v1"),
        ("/pub/caf%c3%a9", "/pub"),
    ] {
        assert_eq!(route_label(path).as_deref(), Some(label), "{path}");
    }
    assert_eq!(route_label("/git/admin%2Fx"), None, "the decoded reading is another route");
    assert_eq!(normalise(b"/pub/a/..\\..;x/admin./"), b"/admin/");
    assert_eq!(normalise(b"/a//b/./c /"), b"/a/b/c/");
    assert_eq!(decode(b"/%2561%2F%zz%", false), b"/%61/%zz%");
    assert_eq!(decode(b"/a%2Fb%2f", true), b"/a%2Fb%2f");
}
