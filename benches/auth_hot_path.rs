//! Benchmarks the gateway's authentication hot path: one `authenticate` decision
//! (`Authorization: Basic` parse → format/CRC32 check → SHA-256 → index lookup → owner /
//! revoked / expired / blocked checks) against an in-memory `TokenIndex` of 10 k and 1 M tokens,
//! for a valid token, a well-formed unknown token and a revoked token; plus the parts that can be
//! measured alone (SHA-256 of a 52-character secret, the Basic header parse, the checksum check,
//! the path check).
//!
//! Run with:
//!
//! ```text
//! cargo bench --bench auth_hot_path
//! ```
//!
//! Target: < 1 µs per decision at 1 M tokens. Building each index prints its build time and the
//! process RSS before and after (from `VmRSS` in /proc/self/status) to stderr, so the memory per
//! token is visible.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use tokengate::clock::UnixTime;
use tokengate::control::store::{IndexAccountRow, IndexTokenRow};
use tokengate::data::index::TokenIndex;
use tokengate::data::proxy::authenticate::{AuthFailure, authenticate};
use tokengate::data::proxy::credentials::{CredentialBuffer, read_credentials};
use tokengate::data::proxy::route::canonical_path;
use tokengate::model::secret::{Secret, TokenDigest, check_format};

/// Index sizes benchmarked.
const SIZES: [usize; 2] = [10_000, 1_000_000];
/// Accounts the tokens are spread over.
const ACCOUNTS: usize = 1_000;
/// Tokens with real minted secrets that the bench presents, per kind (valid, revoked, unknown).
const SAMPLE: usize = 1_000;
/// The decision time.
const NOW: UnixTime = 1_750_000_000;

/// An index of `n` tokens and prebuilt requests that present tokens of each kind.
struct Fixture {
    n: usize,
    index: TokenIndex,
    valid: Vec<HeaderMap>,
    revoked: Vec<HeaderMap>,
    unknown: Vec<HeaderMap>,
}

fn email(account: usize) -> String {
    format!("user{account}@example.com")
}

fn account_of(token: usize) -> usize {
    token % ACCOUNTS + 1
}

fn basic_headers(email: &str, secret: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let value = format!("Basic {}", STANDARD.encode(format!("{email}:{secret}")));
    headers.insert(AUTHORIZATION, HeaderValue::from_str(&value).unwrap());
    headers.insert(http::header::HOST, HeaderValue::from_static("api.example.com"));
    headers.insert(http::header::USER_AGENT, HeaderValue::from_static("bench/1.0"));
    headers
}

/// A token row shaped like the ones the store returns (name, scopes, some limits and expiries).
fn token_row(id: usize, digest: &TokenDigest, revoked: bool) -> IndexTokenRow {
    IndexTokenRow {
        id: id as i64,
        account_id: account_of(id) as i64,
        name: format!("ci-token-{id}"),
        digest: digest.as_bytes().to_vec(),
        scopes: "read write".into(),
        rate_limit: id.is_multiple_of(2).then(|| "100/s".into()),
        expires_at: (!id.is_multiple_of(3)).then_some(NOW + 90 * 86_400),
        revoked_at: revoked.then_some(NOW - 3_600),
        handover_from: None,
        handover_digest: None,
    }
}

/// Resident set size of this process, in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn build(n: usize) -> Fixture {
    assert!(n >= 2 * SAMPLE);
    let mint = || Secret::generate().expect("random source");
    let valid: Vec<(usize, Secret)> = (1..=SAMPLE).map(|id| (id, mint())).collect();
    let revoked: Vec<(usize, Secret)> = (SAMPLE + 1..=2 * SAMPLE).map(|id| (id, mint())).collect();
    let unknown: Vec<Secret> = (0..SAMPLE).map(|_| mint()).collect();

    let rss_before = rss_bytes();
    let started = Instant::now();
    let index = TokenIndex::new();
    for account in 1..=ACCOUNTS {
        let email = email(account);
        index.upsert_account(IndexAccountRow {
            id: account as i64,
            email_norm: email.to_lowercase(),
            email,
            enabled: true,
            can_create_tokens: true,
        });
    }
    for (id, secret) in &valid {
        index.upsert_token(token_row(*id, &secret.digest(), false));
    }
    for (id, secret) in &revoked {
        index.upsert_token(token_row(*id, &secret.digest(), true));
    }
    for id in 2 * SAMPLE + 1..=n {
        index.upsert_token(token_row(id, &TokenDigest::of(&format!("filler-{id}")), false));
    }
    let elapsed = started.elapsed();
    let rss_after = rss_bytes();
    assert_eq!(index.token_count(), n);
    let grown = rss_after.saturating_sub(rss_before);
    eprintln!(
        "index of {n} tokens / {ACCOUNTS} accounts: built in {:.3} s; RSS {:.1} MiB -> {:.1} MiB \
         (+{:.1} MiB, {} bytes/token)",
        elapsed.as_secs_f64(),
        mib(rss_before),
        mib(rss_after),
        mib(grown),
        grown / n as u64,
    );

    let headers = |id: usize, secret: &Secret| basic_headers(&email(account_of(id)), secret.expose());
    let fixture = Fixture {
        n,
        valid: valid.iter().map(|(id, s)| headers(*id, s)).collect(),
        revoked: revoked.iter().map(|(id, s)| headers(*id, s)).collect(),
        unknown: unknown.iter().enumerate().map(|(i, s)| headers(i, s)).collect(),
        index,
    };
    // The bench measures what it claims to: every request gets the decision of its kind.
    for h in &fixture.valid {
        assert!(authenticate(&fixture.index, h, NOW).is_ok());
    }
    for h in &fixture.revoked {
        assert!(matches!(authenticate(&fixture.index, h, NOW), Err(AuthFailure::Revoked(_))));
    }
    for h in &fixture.unknown {
        assert_eq!(authenticate(&fixture.index, h, NOW).err(), Some(AuthFailure::UnknownToken));
    }
    fixture
}

/// Short enough for a 2-core machine: 50 samples, 1 s warm-up, 3 s measurement per bench.
fn config() -> Criterion {
    Criterion::default().sample_size(50).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3))
}

/// Picks the requests of one kind from a fixture.
type Requests = fn(&Fixture) -> &[HeaderMap];

fn bench_decisions(c: &mut Criterion) {
    let fixtures: Vec<Fixture> = SIZES.iter().map(|&n| build(n)).collect();
    let kinds: [(&str, Requests); 3] = [
        ("authenticate_ok", |f| &f.valid),
        ("authenticate_unknown", |f| &f.unknown),
        ("authenticate_revoked", |f| &f.revoked),
    ];
    for (name, requests) in kinds {
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(1));
        for fixture in &fixtures {
            group.bench_with_input(BenchmarkId::from_parameter(fixture.n), fixture, |b, f| {
                // Rotate through the sample so each decision looks up a different token.
                let mut next = requests(f).iter().cycle();
                b.iter(|| authenticate(&f.index, black_box(next.next().unwrap()), black_box(NOW)));
            });
        }
        group.finish();
    }
}

fn bench_parts(c: &mut Criterion) {
    let secret = Secret::generate().expect("random source");
    let headers = basic_headers(&email(1), secret.expose());
    let mut group = c.benchmark_group("parts");
    group.bench_function("sha256_only", |b| b.iter(|| TokenDigest::of(black_box(secret.expose()))));
    group.bench_function("basic_header_parse", |b| {
        b.iter(|| read_credentials(black_box(&headers), &mut CredentialBuffer::new()).is_ok())
    });
    group.bench_function("check_format", |b| b.iter(|| check_format(black_box(secret.expose()))));
    // The per-token limiter step (governor GCRA, a generous limit so every check is allowed).
    let limits = tokengate::data::ratelimit::RateLimits::new(&tokengate::config::RateLimitConfig {
        default: Some("1000000/s".parse().unwrap()),
        failed_auth: None,
        redis: None,
    });
    let mut token_id = 0i64;
    group.bench_function("rate_limit_check", |b| {
        b.iter(|| {
            token_id = (token_id + 1) % 1000;
            matches!(
                limits.check_token(black_box(token_id), None),
                tokengate::data::ratelimit::TokenVerdict::Allowed(_)
            )
        })
    });
    group.bench_function("canonical_path_plain", |b| {
        b.iter(|| canonical_path(black_box("/api/v4/projects/42/repository/files")).is_ok())
    });
    group.bench_function("canonical_path_encoded", |b| {
        b.iter(|| canonical_path(black_box("/api/v4/projects/gr%6Fup-name/repository/files")).is_ok())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_decisions, bench_parts
}
criterion_main!(benches);
