//! The malformed-credential matrix: every shape of bad `Authorization` gets the uniform 401,
//! never a 5xx, and a good token is still accepted next to them.

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderValue};

use crate::support::{TestGateway, client};

const ANN: &str = "ann@example.com";

fn basic(raw: &[u8]) -> HeaderValue {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
    HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
}

#[tokio::test]
async fn malformed_credentials_are_always_401_and_never_5xx() {
    let gw = TestGateway::spawn().await;
    gw.account(ANN).await;
    let (_, secret) = gw.token(ANN, "ci", &[]).await;
    let mut typo = secret.clone().into_bytes();
    typo[8] = if typo[8] == b'x' { b'y' } else { b'x' };

    let cases: Vec<(&str, Vec<HeaderValue>)> = vec![
        ("no colon", vec![basic(b"ann@example.com")]),
        ("bad base64", vec![HeaderValue::from_static("Basic ***not-base64***")]),
        ("not UTF-8", vec![basic(b"ann@example.com:\xff\xfe\xfd")]),
        ("control characters", vec![basic(format!("ann@example.com:{secret}\x07").as_bytes())]),
        ("empty token", vec![basic(b"ann@example.com:")]),
        ("empty email", vec![basic(format!(":{secret}").as_bytes())]),
        ("checksum typo", vec![basic(&[b"ann@example.com:".as_slice(), &typo].concat())]),
        ("bearer scheme", vec![HeaderValue::from_str(&format!("Bearer {secret}")).unwrap()]),
        ("scheme only", vec![HeaderValue::from_static("Basic")]),
        ("16 KiB header", vec![HeaderValue::from_str(&format!("Basic {}", "A".repeat(16 * 1024))).unwrap()]),
        ("16 KiB secret", vec![basic(format!("ann@example.com:{}", "s".repeat(16 * 1024)).as_bytes())]),
        ("raw non-UTF-8 header bytes", vec![HeaderValue::from_bytes(b"Basic \xff\xfe").unwrap()]),
        (
            "two Authorization headers",
            vec![basic(format!("{ANN}:{secret}").as_bytes()), basic(format!("{ANN}:{secret}").as_bytes())],
        ),
    ];
    for (what, values) in cases {
        let mut request = client().get(gw.url("/x"));
        for value in values {
            request = request.header(AUTHORIZATION, value);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert!(response.headers().contains_key("www-authenticate"), "{what}");
    }

    let lower_scheme = format!("basic {}", &basic(format!("{ANN}:{secret}").as_bytes()).to_str().unwrap()[6..]);
    let response = client().get(gw.url("/x")).header(AUTHORIZATION, lower_scheme).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "the scheme is case-insensitive");
}
