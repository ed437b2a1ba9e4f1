//! `X-Request-Id`: one id per request, sent upstream and back to the client, and written in the
//! access log, so that "did ann's script call us at 14:03?" can be followed from the client's
//! log through the gateway's to the upstream's.
//!
//! A client's own id is kept when it is 1–128 visible ASCII characters (a tracing system's, or
//! a load balancer's in front); anything else is replaced, so what reaches the logs is always
//! printable and bounded. New ids are UUIDv7 (RFC 9562): time-ordered, so ids sort by arrival.
//! Their random part comes from a per-process seeded hash of a counter, not from the operating
//! system per request: ids must be unique, not secret, and the data path must not make a system
//! call per request for them.

use std::hash::BuildHasher;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderMap, HeaderName, HeaderValue};

/// The header, as clients and upstreams name it.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest client id kept.
const MAX_LEN: usize = 128;

/// The request's id: the client's own when it may be kept, else a new one written into
/// `headers` in its place (every copy of the header is replaced by the one id).
pub fn assign(headers: &mut HeaderMap) -> HeaderValue {
    let mut values = headers.get_all(&X_REQUEST_ID).iter();
    if let (Some(value), None) = (values.next(), values.next())
        && is_keepable(value.as_bytes())
    {
        return value.clone();
    }
    let id = new_id();
    headers.insert(&X_REQUEST_ID, id.clone());
    id
}

/// 1–128 characters, each visible ASCII (`!` to `~`).
fn is_keepable(id: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&id.len()) && id.iter().all(|b| (b'!'..=b'~').contains(b))
}

/// A new UUIDv7, hyphenated and lower case (`0193a5c4-…`).
pub fn new_id() -> HeaderValue {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    static SEED: LazyLock<foldhash::fast::RandomState> = LazyLock::new(foldhash::fast::RandomState::default);
    let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let mut random = [0u8; 10];
    random[..8].copy_from_slice(&SEED.hash_one(n).to_le_bytes());
    random[8..].copy_from_slice(&SEED.hash_one(!n).to_le_bytes()[..2]);
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let uuid = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = uuid.hyphenated().encode_lower(&mut text);
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clients_printable_id_is_kept_and_anything_else_replaced() {
        let mut headers = HeaderMap::new();
        headers.insert(&X_REQUEST_ID, HeaderValue::from_static("abc-123_XYZ"));
        assert_eq!(assign(&mut headers), "abc-123_XYZ");

        for bad in [&b""[..], b"has space", &[b'a'; 129], b"caf\xc3\xa9"] {
            let mut headers = HeaderMap::new();
            headers.insert(&X_REQUEST_ID, HeaderValue::from_bytes(bad).unwrap());
            let id = assign(&mut headers);
            assert_ne!(id.as_bytes(), bad);
            assert_eq!(headers.get_all(&X_REQUEST_ID).iter().collect::<Vec<_>>(), [&id]);
        }

        let mut twice = HeaderMap::new();
        twice.append(&X_REQUEST_ID, HeaderValue::from_static("one"));
        twice.append(&X_REQUEST_ID, HeaderValue::from_static("two"));
        let id = assign(&mut twice);
        assert!(id != "one" && id != "two");
        assert_eq!(twice.get_all(&X_REQUEST_ID).iter().count(), 1);
    }

    #[test]
    fn new_ids_are_distinct_version_7_uuids() {
        let ids: std::collections::HashSet<HeaderValue> = (0..10_000).map(|_| new_id()).collect();
        assert_eq!(ids.len(), 10_000);
        let id = uuid::Uuid::parse_str(new_id().to_str().unwrap()).unwrap();
        assert_eq!(id.get_version_num(), 7);
    }
}
