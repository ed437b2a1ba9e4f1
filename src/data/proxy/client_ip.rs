//! The client's address: the socket peer, unless the peer is a trusted proxy; then the
//! right-most `X-Forwarded-For` entry that is not itself trusted.

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue};
use ipnet::IpNet;

/// Read from trusted proxies to find the client; rewritten on every forwarded request.
pub static X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");

/// The far end of a client connection, worked out once per connection rather than per request.
/// Whether it is a trusted proxy is asked per request: `SIGHUP` can change the list while the
/// connection stays open.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The socket peer's address, IPv4-mapped IPv6 addresses read as IPv4.
    pub ip: IpAddr,
    /// The peer's address as an `X-Forwarded-For` value: what an untrusted peer's requests carry
    /// upstream, built once for all of them.
    pub forwarded_for: HeaderValue,
}

impl Peer {
    /// The peer `ip` of a new connection.
    pub fn new(ip: IpAddr) -> Self {
        let ip = ip.to_canonical();
        // An address's text is always a valid header value.
        let forwarded_for =
            HeaderValue::from_str(&ip.to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Peer { ip, forwarded_for }
    }

    /// Whether the peer is one of the `trusted` proxies: its `X-Forwarded-*` headers are read
    /// and extended.
    pub fn is_trusted(&self, trusted: &[IpNet]) -> bool {
        is_trusted(self.ip, trusted)
    }

    /// The client's address for a request on this connection (see [`client_ip`]).
    pub fn client_ip(&self, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
        client_ip(self.ip, headers, trusted)
    }
}

/// Whether `ip` is one of the trusted proxies.
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// Resolves the client address. A client cannot choose its address by sending
/// `X-Forwarded-For` itself: the header is read only when the peer is trusted, and only up to
/// the first untrusted hop from the right.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    if trusted.is_empty() || !is_trusted(peer, trusted) {
        return peer;
    }
    let mut candidate = peer;
    for value in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
        // Entry by entry, as bytes: a byte that is not visible ASCII ends the walk at its own
        // entry, not at the whole value, whose right-hand entries the trusted hops appended.
        for entry in value.as_bytes().rsplit(|b| *b == b',') {
            let Some(ip) = parse_entry(entry) else { return candidate };
            candidate = ip;
            if !is_trusted(ip, trusted) {
                return ip;
            }
        }
    }
    candidate
}

/// An `X-Forwarded-For` entry: an address, perhaps with a port or brackets.
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let entry = std::str::from_utf8(entry.trim_ascii()).ok()?;
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    entry.parse::<std::net::SocketAddr>().ok().map(|s| s.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn xff(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(&X_FORWARDED_FOR, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_cannot_choose_their_address() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(client_ip(ip("203.0.113.9"), &xff(&["1.2.3.4"]), &trusted), ip("203.0.113.9"));
        assert_eq!(client_ip(ip("203.0.113.9"), &xff(&["1.2.3.4"]), &[]), ip("203.0.113.9"));
    }

    #[test]
    fn trusted_peers_yield_the_rightmost_untrusted_entry() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let headers = xff(&["6.6.6.6, 198.51.100.7", "10.1.1.1"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &headers, &trusted), ip("198.51.100.7"));
        assert_eq!(client_ip(ip("10.0.0.1"), &xff(&["garbage, 10.2.2.2"]), &trusted), ip("10.2.2.2"));
        assert_eq!(client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted), ip("10.0.0.1"));
        assert_eq!(client_ip(ip("::ffff:10.0.0.1"), &xff(&["[2001:db8::1]:443"]), &trusted), ip("2001:db8::1"));
    }

    #[test]
    fn a_non_ascii_byte_a_client_wrote_does_not_hide_the_entries_proxies_appended() {
        // Found by the `client_ip` fuzz target: the whole value was read with `to_str`, so a
        // client that put one such byte in its own `X-Forwarded-For` (which a proxy extends in
        // place: `<client's value>, <client address>`) was taken for the trusted proxy itself.
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut headers = HeaderMap::new();
        headers.append(&X_FORWARDED_FOR, HeaderValue::from_bytes(b"6.6.6.6\xff, 198.51.100.7").unwrap());
        assert_eq!(client_ip(ip("10.0.0.1"), &headers, &trusted), ip("198.51.100.7"));
        let mut headers = HeaderMap::new();
        headers.append(&X_FORWARDED_FOR, HeaderValue::from_bytes(b"\xff, 10.2.2.2").unwrap());
        assert_eq!(client_ip(ip("10.0.0.1"), &headers, &trusted), ip("10.2.2.2"), "the left-most trusted hop");
    }
}
