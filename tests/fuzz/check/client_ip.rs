//! The client address: `client_ip` on any `X-Forwarded-For` headers is the peer or one of their
//! entries, the peer whenever the peer is not trusted, and, behind a chain of trusted proxies
//! that each appended the address they saw, the address the first proxy saw, whatever the
//! client wrote itself. Shared by the property tests and the `client_ip` fuzz target.

use std::net::IpAddr;

use http::HeaderValue;
use ipnet::IpNet;
use tokengate::data::proxy::client_ip::{Peer, X_FORWARDED_FOR, client_ip};

/// The trusted proxies of every check: a private range, a single IPv6 address and IPv4's
/// loopback range, so that trusted addresses come in both families and mapped forms.
pub fn trusted() -> Vec<IpNet> {
    ["10.0.0.0/8", "2001:db8::7/128", "127.0.0.0/8"].iter().map(|net| net.parse().unwrap()).collect()
}

/// Whether the reference counts `ip` as a trusted proxy: inside one of the `trusted` networks,
/// an IPv4-mapped IPv6 address read as its IPv4 address. Decided here, not by the gateway's
/// own `is_trusted`, so that the checks do not agree with it by construction.
pub fn trusted_by_reference(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = ip.to_canonical();
    trusted.iter().any(|net| net.contains(&ip))
}

/// One request as a gateway behind proxies sees it.
#[derive(Debug, Clone)]
pub struct Chain {
    /// What the client itself sent as `X-Forwarded-For`, one entry per line: anything.
    pub client_wrote: Vec<Vec<u8>>,
    /// The client's address, which the first proxy saw and appended.
    pub client: IpAddr,
    /// The proxies from the first to the one that connects to the gateway (the peer), each
    /// `(address, appends as a new header line rather than to the last value)`.
    pub proxies: Vec<(IpAddr, bool)>,
}

/// Checks `client_ip` on arbitrary headers against the peer and the trusted list.
pub fn check_any(peer: IpAddr, values: &[Vec<u8>], trusted: &[IpNet]) -> IpAddr {
    let headers = super::header_map(&X_FORWARDED_FOR, values);
    let found = client_ip(peer, &headers, trusted);
    let peer = peer.to_canonical();
    assert_eq!(Peer::new(peer).client_ip(&headers, trusted), found, "Peer::client_ip is client_ip");
    assert_eq!(Peer::new(peer).forwarded_for.as_bytes(), peer.to_string().as_bytes());
    if !trusted_by_reference(peer, trusted) {
        assert_eq!(found, peer, "an untrusted peer chose its address: {headers:?}");
    } else if found != peer {
        let entries: Vec<IpAddr> = values.iter().flat_map(|v| v.split(|b| *b == b',')).filter_map(entry).collect();
        assert!(entries.contains(&found), "{found} is neither the peer nor in {headers:?}");
    }
    assert_eq!(found, found.to_canonical(), "IPv4-mapped addresses are read as IPv4");
    found
}

/// Checks a chain of proxies: when every proxy is trusted and the client is not, the client's
/// address is found, whatever the client wrote.
pub fn check_chain(chain: &Chain, trusted: &[IpNet]) {
    let Some((peer, _)) = chain.proxies.last() else { return };
    // A proxy passes on only what a header can carry.
    let mut values: Vec<Vec<u8>> =
        chain.client_wrote.iter().filter(|v| HeaderValue::from_bytes(v).is_ok()).cloned().collect();
    // Each proxy appends the address it received the request from, then passes it on.
    let mut seen = chain.client;
    for (proxy, new_line) in &chain.proxies {
        match values.last_mut() {
            Some(last) if !new_line => last.extend_from_slice(format!(", {seen}").as_bytes()),
            _ => values.push(seen.to_string().into_bytes()),
        }
        seen = *proxy;
    }
    let found = check_any(*peer, &values, trusted);
    let all_trusted = chain.proxies.iter().all(|(ip, _)| trusted_by_reference(*ip, trusted));
    if all_trusted && !trusted_by_reference(chain.client, trusted) {
        assert_eq!(found, chain.client.to_canonical(), "the client hid behind what it wrote: {values:?}");
    }
}

/// Fuzzer bytes as one request: the first byte picks the peer, the rest are header lines.
pub fn from_bytes(data: &[u8]) -> (IpAddr, Vec<Vec<u8>>) {
    let peers = ["10.1.2.3", "203.0.113.9", "::ffff:10.0.0.1", "2001:db8::7", "127.0.0.1", "2001:db8::8"];
    let (flag, rest) = super::flags_and_rest(data);
    let peer = peers[usize::from(flag) % peers.len()].parse().unwrap();
    (peer, rest.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect())
}

/// An entry as the reference describes it: an address, perhaps bracketed with a port.
fn entry(bytes: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(bytes).ok()?.trim_matches([' ', '\t']);
    let ip = text.parse::<IpAddr>().ok().or_else(|| text.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))?;
    Some(ip.to_canonical())
}

/// Fuzzer bytes as what a client wrote before two trusted proxies forwarded its request; the
/// first byte says whether the second proxy starts a header line of its own.
pub fn chain_from_bytes(data: &[u8]) -> Chain {
    let (flag, rest) = super::flags_and_rest(data);
    Chain {
        client_wrote: rest.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect(),
        client: "198.51.100.7".parse().unwrap(),
        proxies: vec![("10.0.0.2".parse().unwrap(), false), ("10.0.0.3".parse().unwrap(), flag % 2 == 1)],
    }
}
