//! `client_ip`: the peer or an entry of the chain; the peer when it is not trusted or nobody is;
//! behind trusted proxies, the address the first of them saw, whatever the client wrote.

use proptest::prelude::*;

use crate::check::client_ip::{Chain, check_any, check_chain, trusted, trusted_by_reference};
use crate::strategies::{cases, ip, xff_entry, xff_value};

/// Addresses inside `check::client_ip::trusted`, in every form.
fn trusted_ip() -> impl Strategy<Value = std::net::IpAddr> {
    ip().prop_filter("trusted", |ip| trusted_by_reference(*ip, &trusted()))
}

/// Addresses outside it.
fn untrusted_ip() -> impl Strategy<Value = std::net::IpAddr> {
    ip().prop_filter("untrusted", |ip| !trusted_by_reference(*ip, &trusted()))
}

proptest! {
    #![proptest_config(cases(1024))]

    #[test]
    fn the_client_is_the_peer_or_in_the_chain(peer in ip(), values in prop::collection::vec(xff_value(), 0..4)) {
        check_any(peer, &values, &trusted());
    }

    #[test]
    fn without_trusted_proxies_the_client_is_the_peer(peer in ip(), values in prop::collection::vec(xff_value(), 0..4)) {
        prop_assert_eq!(check_any(peer, &values, &[]), peer.to_canonical());
    }

    #[test]
    fn an_untrusted_peer_is_the_client(peer in untrusted_ip(), values in prop::collection::vec(xff_value(), 0..4)) {
        prop_assert_eq!(check_any(peer, &values, &trusted()), peer.to_canonical());
    }

    #[test]
    fn what_a_client_writes_cannot_hide_what_trusted_proxies_appended(
        client_wrote in prop::collection::vec(prop_oneof![xff_value(), xff_entry()], 0..3),
        client in untrusted_ip(),
        proxies in prop::collection::vec((trusted_ip(), any::<bool>()), 1..4),
    ) {
        check_chain(&Chain { client_wrote, client, proxies }, &trusted());
    }

    #[test]
    fn any_chain_of_any_proxies_reads_as_the_peer_or_an_entry(
        client_wrote in prop::collection::vec(xff_value(), 0..3),
        client in ip(),
        proxies in prop::collection::vec((ip(), any::<bool>()), 1..4),
    ) {
        check_chain(&Chain { client_wrote, client, proxies }, &trusted());
    }
}
