//! Request ids and the access log, through the real binary: ids generated, kept, replaced and
//! forwarded upstream, on refusals too; one JSON access record per request with the contract's
//! keys at the top level and never a secret; none when `log.access = false`.

use std::path::PathBuf;

use serde_json::Value;
use tempfile::TempDir;

use crate::support::{GatewayProcess, Upstream, client, config_text, run_cli};

const ANN: &str = "ann@example.com";

struct Setup {
    _dir: TempDir,
    _upstream: Upstream,
    config: PathBuf,
    secret: String,
    token_id: i64,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::start().await;
    let config = dir.path().join("tokengate.toml");
    std::fs::write(&config, config_text(dir.path(), upstream.addr, "")).unwrap();
    let (code, _, stderr) = run_cli(&config, &["user", "add", ANN]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) =
        run_cli(&config, &["token", "create", "--user", ANN, "--name", "app", "--scope", "read", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let created: Value = serde_json::from_str(&stdout).unwrap();
    Setup {
        secret: created["token"].as_str().unwrap().to_owned(),
        token_id: created["id"].as_i64().unwrap(),
        _dir: dir,
        _upstream: upstream,
        config,
    }
}

/// Sends `GET path` with `request_id` (if any) and Ann's secret (if `authenticated`); returns
/// the status, the response's `X-Request-Id` and, when the upstream answered, the id it received.
async fn call(
    gateway: &GatewayProcess,
    path: &str,
    request_id: Option<&str>,
    secret: Option<&str>,
) -> (u16, String, Option<String>) {
    let mut request = client().get(gateway.url(path));
    if let Some(id) = request_id {
        request = request.header("x-request-id", id);
    }
    if let Some(secret) = secret {
        request = request.basic_auth(ANN, Some(secret));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let ids: Vec<String> =
        response.headers().get_all("x-request-id").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 1, "exactly one X-Request-Id: {ids:?}");
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap_or(Value::Null);
    let upstream_saw = body["headers"]["x-request-id"].as_str().map(str::to_owned);
    (status, ids[0].clone(), upstream_saw)
}

fn is_uuid_v7(id: &str) -> bool {
    let bytes = id.as_bytes();
    id.len() == 36
        && bytes[14] == b'7'
        && id.chars().enumerate().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() && !c.is_ascii_uppercase() }
        })
}

/// The access records among the gateway's log lines.
fn access_records(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| entry["target"] == "tokengate::access")
        .collect()
}

async fn stop(gateway: GatewayProcess) -> Vec<String> {
    let (code, lines) = tokio::task::spawn_blocking(move || gateway.terminate()).await.unwrap();
    assert_eq!(code, Some(0), "{}", lines.join("\n"));
    lines
}

#[tokio::test(flavor = "multi_thread")]
async fn request_ids_are_generated_kept_replaced_and_forwarded() {
    let setup = setup().await;
    let gateway = GatewayProcess::start(&setup.config);
    let secret = Some(setup.secret.as_str());

    let (status, id, upstream_saw) = call(&gateway, "/hello", None, secret).await;
    assert_eq!(status, 200);
    assert!(is_uuid_v7(&id), "generated: {id}");
    assert_eq!(upstream_saw.as_deref(), Some(id.as_str()), "the upstream gets the same id");

    let (_, id, upstream_saw) = call(&gateway, "/hello", Some("trace-42.abc"), secret).await;
    assert_eq!((id.as_str(), upstream_saw.as_deref()), ("trace-42.abc", Some("trace-42.abc")), "kept");
    let longest = "x".repeat(128);
    let (_, id, _) = call(&gateway, "/hello", Some(&longest), secret).await;
    assert_eq!(id, longest);

    for bad in ["with space", &"y".repeat(129)] {
        let (_, id, upstream_saw) = call(&gateway, "/hello", Some(bad), secret).await;
        assert!(is_uuid_v7(&id), "{bad:?} replaced: {id}");
        assert_eq!(upstream_saw.as_deref(), Some(id.as_str()), "the replacement is what the upstream gets");
    }

    let (status, id, _) = call(&gateway, "/hello", None, None).await;
    assert_eq!(status, 401);
    assert!(is_uuid_v7(&id), "a refusal carries an id too: {id}");
    let (status, id, _) = call(&gateway, "/hello", Some("mine"), Some("tg_not_a_token")).await;
    assert_eq!((status, id.as_str()), (401, "mine"));
    let (first, second) =
        (call(&gateway, "/hello", None, secret).await.1, call(&gateway, "/hello", None, secret).await.1);
    assert_ne!(first, second);
    stop(gateway).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_json_access_record_per_request_with_the_contracts_keys_and_no_secret() {
    let setup = setup().await;
    let gateway = GatewayProcess::start(&setup.config);
    let secret = Some(setup.secret.as_str());
    let (_, ok_id, _) = call(&gateway, "/orders/7?api_key=hunter2", Some("req-ok"), secret).await;
    let (_, refused_id, _) = call(&gateway, "/orders/8", None, None).await;
    let (status, public_id, _) = call(&gateway, "/public/page", None, None).await;
    assert_eq!(status, 200);
    let (status, dead_id, _) = call(&gateway, "/dead/x", None, secret).await;
    assert_eq!(status, 502);
    let lines = stop(gateway).await;

    let records = access_records(&lines);
    assert_eq!(records.len(), 4, "one record per request: {records:#?}");
    let by_id =
        |id: &str| records.iter().find(|r| r["request_id"] == id).unwrap_or_else(|| panic!("no record of {id}"));

    let ok = by_id(&ok_id);
    assert_eq!(ok_id, "req-ok");
    for (key, expected) in [
        ("client_ip", Value::from("127.0.0.1")),
        ("method", Value::from("GET")),
        ("path", Value::from("/orders/7")),
        ("route", Value::from("/")),
        ("status", Value::from(200)),
        ("token_id", Value::from(setup.token_id)),
        ("user", Value::from(ANN)),
        ("outcome", Value::from("authorised")),
    ] {
        assert_eq!(ok[key], expected, "{key} in {ok}");
    }
    assert!(ok["duration_ms"].as_f64().unwrap() > 0.0, "{ok}");
    let upstream_ms = ok["upstream_ms"].as_f64().unwrap();
    assert!(upstream_ms > 0.0 && upstream_ms <= ok["duration_ms"].as_f64().unwrap(), "{ok}");

    let refused = by_id(&refused_id);
    assert_eq!((refused["status"].as_u64(), refused["outcome"].as_str()), (Some(401), Some("unauthenticated")));
    assert!(refused.get("token_id").is_none() && refused.get("upstream_ms").is_none(), "{refused}");
    let public = by_id(&public_id);
    assert_eq!((public["route"].as_str(), public["outcome"].as_str()), (Some("/public"), Some("public")));
    let dead = by_id(&dead_id);
    assert_eq!((dead["status"].as_u64(), dead["outcome"].as_str()), (Some(502), Some("upstream_error")));
    assert_eq!(dead["route"], "/dead");

    let everything = lines.join("\n");
    assert!(!everything.contains(&setup.secret), "the secret is never logged");
    assert!(!everything.contains("hunter2"), "nor the query string");
    assert!(!everything.to_ascii_lowercase().contains("basic "), "nor the Authorization header");
}

#[tokio::test(flavor = "multi_thread")]
async fn access_records_follow_log_access_and_not_the_log_level() {
    let setup = setup().await;
    // The log level hides info lines (but the start-up line, which the test waits for); access
    // records still come.
    let quiet = GatewayProcess::start_with_env(&setup.config, &[("TOKENGATE_LOG", "warn,tokengate::gateway=info")]);
    call(&quiet, "/hello", None, Some(&setup.secret)).await;
    let records = access_records(&stop(quiet).await);
    assert_eq!(records.len(), 1, "{records:?}");

    let off = GatewayProcess::start_with_env(&setup.config, &[("TOKENGATE_LOG__ACCESS", "false")]);
    call(&off, "/hello", None, Some(&setup.secret)).await;
    call(&off, "/hello", None, None).await;
    let lines = stop(off).await;
    assert!(access_records(&lines).is_empty(), "log.access = false writes none");
    assert!(!lines.iter().any(|l| l.contains("\"request_id\"")), "{lines:?}");
}
