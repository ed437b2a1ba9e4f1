//! TLS: `https://` upstreams verified against the operator's CA, and the proxy and admin
//! listeners terminating TLS themselves (ALPN h2 and http/1.1). Certificates are made at test
//! time: a CA, and a leaf for `localhost` and 127.0.0.1 that it signs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use reqwest::StatusCode;
use serde_json::Value;
use tempfile::TempDir;
use tokengate::clock::Clock;
use tokengate::config::Config;

use crate::support::{GatewayProcess, TestGateway, Upstream, client, config_text};

const ANN: &str = "ann@example.com";

/// A CA and a server certificate it signed, as PEM files.
struct Pki {
    _dir: TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    ca_pem: String,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "tokengate test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ca_path, cert, key) = (dir.path().join("ca.pem"), dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&ca_path, ca.pem()).unwrap();
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    Pki { ca_pem: ca.pem(), _dir: dir, ca: ca_path, cert, key }
}

/// The echo upstream behind TLS, with `pki`'s server certificate.
async fn tls_echo(pki: &Pki) -> SocketAddr {
    let chain = tokengate::data::tls::read_certificates(&pki.cert).unwrap();
    let key = tokengate::data::tls::read_private_key(&pki.key).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tokengate::data::tls::server_config(chain, key).unwrap()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(stream) = acceptor.accept(stream).await {
                    crate::echo::serve_connection(stream).await;
                }
            });
        }
    });
    addr
}

fn secure_route(upstream: SocketAddr) -> String {
    format!(
        "\n[[routes]]\nprefix = \"/secure\"\nupstream = \"https://127.0.0.1:{}/api\"\nstrip_prefix = true\n",
        upstream.port()
    )
}

#[tokio::test]
async fn https_upstreams_are_verified_against_the_configured_ca() {
    let pki = pki();
    let upstream = tls_echo(&pki).await;
    let ca = pki.ca.to_str().unwrap();
    let gw =
        TestGateway::spawn_with(&secure_route(upstream), &[("TOKENGATE_PROXY__UPSTREAM_CA_FILE", ca)], Clock::System)
            .await;
    gw.account(ANN).await;
    let (_, secret) = gw.token(ANN, "laptop", &[]).await;
    let response = client().get(gw.url("/secure/things?x=1")).basic_auth(ANN, Some(&secret)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let echo: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(echo["path"], "/api/things", "the base path and the rest of the path reach the upstream");
    assert_eq!(echo["headers"]["x-auth-user"], ANN);
    assert_eq!(echo["headers"]["host"], format!("127.0.0.1:{}", upstream.port()));

    // Without the operator's CA the upstream's certificate is not trusted: 502, never plain text.
    let untrusting = TestGateway::spawn_with(&secure_route(upstream), &[], Clock::System).await;
    untrusting.account(ANN).await;
    let (_, secret) = untrusting.token(ANN, "laptop", &[]).await;
    let response = client().get(untrusting.url("/secure/things")).basic_auth(ANN, Some(&secret)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn the_proxy_and_admin_listeners_terminate_tls() {
    let pki = pki();
    let (cert, key) = (pki.cert.to_str().unwrap(), pki.key.to_str().unwrap());
    let env = [
        ("TOKENGATE_PROXY__TLS_CERT_FILE", cert),
        ("TOKENGATE_PROXY__TLS_KEY_FILE", key),
        ("TOKENGATE_ADMIN__TLS_CERT_FILE", cert),
        ("TOKENGATE_ADMIN__TLS_KEY_FILE", key),
    ];
    let gw = TestGateway::spawn_with("", &env, Clock::System).await;
    gw.account(ANN).await;
    let (_, secret) = gw.token(ANN, "laptop", &["read", "write", "admin"]).await;
    let trusting = trusting(&pki);

    let response = trusting
        .get(format!("https://127.0.0.1:{}/things", gw.proxy.port()))
        .basic_auth(ANN, Some(&secret))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), reqwest::Version::HTTP_2, "ALPN offers h2");
    let echo: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(echo["headers"]["x-forwarded-proto"], "https", "the upstream learns the client used TLS");

    let me = trusting
        .get(format!("https://127.0.0.1:{}/api/v1/me", gw.admin.port()))
        .basic_auth(ANN, Some(&secret))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let me: Value = serde_json::from_str(&me.text().await.unwrap()).unwrap();
    assert_eq!(me["email"], ANN);
    let page = trusting.get(format!("https://127.0.0.1:{}/", gw.admin.port())).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);

    // Plain HTTP to a TLS port gets no answer, and a client that does not trust the CA is refused.
    assert!(client().get(format!("http://127.0.0.1:{}/things", gw.proxy.port())).send().await.is_err());
    let untrusting = reqwest::Client::builder().no_proxy().build().unwrap();
    assert!(untrusting.get(format!("https://127.0.0.1:{}/healthz", gw.admin.port())).send().await.is_err());
}

#[tokio::test]
async fn tls_settings_are_checked_when_the_config_is_loaded() {
    let pki = pki();
    let load = |vars: &[(&str, &str)]| {
        let env = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load(None, env).map(|_| ()).map_err(|e| e.to_string())
    };
    let (cert, key, ca) = (pki.cert.to_str().unwrap(), pki.key.to_str().unwrap(), pki.ca.to_str().unwrap());
    assert!(load(&[("TOKENGATE_PROXY__TLS_CERT_FILE", cert), ("TOKENGATE_PROXY__TLS_KEY_FILE", key)]).is_ok());
    let error = load(&[("TOKENGATE_PROXY__TLS_CERT_FILE", cert)]).unwrap_err();
    assert!(error.contains("proxy.tls_key_file"), "{error}");
    let error = load(&[("TOKENGATE_ADMIN__TLS_CERT_FILE", key), ("TOKENGATE_ADMIN__TLS_KEY_FILE", key)]).unwrap_err();
    assert!(error.contains("admin.tls_cert_file") && error.contains("no PEM certificate"), "{error}");
    // A certificate with another key is caught before the first connection.
    let other_key = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(other_key.path(), KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let other = other_key.path().to_str().unwrap();
    let error =
        load(&[("TOKENGATE_PROXY__TLS_CERT_FILE", cert), ("TOKENGATE_PROXY__TLS_KEY_FILE", other)]).unwrap_err();
    assert!(error.contains("proxy.tls_cert_file"), "{error}");
    // The key that was read never appears in the error about it.
    let key_text = std::fs::read_to_string(other_key.path()).unwrap();
    let key_line = key_text.lines().nth(1).unwrap();
    assert!(!error.contains(key_line), "{error}");
    let error = load(&[("TOKENGATE_PROXY__UPSTREAM_CA_FILE", "/nonexistent/ca.pem")]).unwrap_err();
    assert!(error.contains("proxy.upstream_ca_file") && error.contains("/nonexistent/ca.pem"), "{error}");
    assert!(load(&[("TOKENGATE_PROXY__UPSTREAM_CA_FILE", ca)]).is_ok());
    // check-config shows the files, never the key.
    let env = [("TOKENGATE_ADMIN__TLS_CERT_FILE", cert), ("TOKENGATE_ADMIN__TLS_KEY_FILE", key)];
    let config = Config::load(None, env.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap();
    let described = config.describe();
    assert!(described.contains(&format!("tls_key_file = {key:?}")), "{described}");
    assert!(!described.contains("PRIVATE KEY") && !format!("{config:?}").contains("PRIVATE KEY"));
}

/// A new client (so its first request is a new handshake) that trusts `pki`'s CA besides the
/// public roots.
fn trusting(pki: &Pki) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn sighup_reloads_the_listener_certificate_and_keeps_the_old_one_when_the_new_is_broken() {
    let (first, second) = (pki(), pki());
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let install = |pki: &Pki| {
        std::fs::copy(&pki.cert, &cert).unwrap();
        std::fs::copy(&pki.key, &key).unwrap();
    };
    install(&first);
    let upstream = Upstream::start().await;
    let config = dir.path().join("tokengate.toml");
    std::fs::write(&config, config_text(dir.path(), upstream.addr, "")).unwrap();
    let env = [
        ("TOKENGATE_PROXY__TLS_CERT_FILE", cert.to_str().unwrap()),
        ("TOKENGATE_PROXY__TLS_KEY_FILE", key.to_str().unwrap()),
    ];
    let gw = GatewayProcess::start_with_env(&config, &env);
    let url = format!("https://127.0.0.1:{}/things", gw.proxy.port());
    // Any answer (401: no credentials) means the handshake was trusted.
    let answers = |pki: &Pki| {
        let request = trusting(pki).get(&url).send();
        async move { request.await.map(|r| r.status()).ok() }
    };
    assert_eq!(answers(&first).await, Some(StatusCode::UNAUTHORIZED));
    assert_eq!(answers(&second).await, None);

    // A renewal: new files, then SIGHUP. New connections get the new certificate.
    install(&second);
    gw.signal("HUP");
    assert_eq!(gw.wait_for_log("TLS certificate reloaded")["listener"], "proxy");
    assert_eq!(answers(&second).await, Some(StatusCode::UNAUTHORIZED));
    assert_eq!(answers(&first).await, None);

    // A broken renewal is refused and the working certificate stays.
    std::fs::write(&cert, "not a certificate").unwrap();
    gw.signal("HUP");
    gw.wait_for_log("TLS certificate not reloaded; the previous one stays in use");
    assert_eq!(answers(&second).await, Some(StatusCode::UNAUTHORIZED));
    // Off the runtime, so the clients' connections can still answer the drain's HTTP/2 ping.
    let (code, lines) = tokio::task::spawn_blocking(move || gw.terminate()).await.unwrap();
    assert_eq!(code, Some(0), "SIGHUP did not end the process; SIGTERM did, cleanly");
    assert!(!lines.iter().any(|line| line.contains("still open after the drain timeout")), "{lines:?}");
}
