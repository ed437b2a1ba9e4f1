//! Bounded limiter memory and the cost of shared limits. Floods the limiters with 100 000
//! distinct client addresses (failed authentications) and 100 000 distinct tokens, prints the
//! process's resident memory before, after, and after idle state is dropped; then, if a
//! `redis-server` can be started, times the shared (Redis) limiter step against the local one.
//!
//! ```text
//! cargo bench --bench ratelimit_flood
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokengate::config::{RateLimitConfig, RedisLimits, SecretUrl};
use tokengate::data::ratelimit::{RateLimits, TokenVerdict};

const FLOOD: u32 = 100_000;

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 =
        status.lines().find(|l| l.starts_with("VmRSS:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024.0
}

async fn time_per_step(limits: &RateLimits, rounds: u32) -> Duration {
    let started = Instant::now();
    for i in 0..rounds {
        let verdict = limits.admit_token(i64::from(i % 100), None).await;
        assert!(matches!(verdict, TokenVerdict::Allowed(_)));
    }
    started.elapsed() / rounds
}

#[tokio::main]
async fn main() {
    // Fast-refilling limits, so "idle" is reached within the run.
    let config = RateLimitConfig {
        default: Some("1000/s".parse().unwrap()),
        failed_auth: Some("1000/s".parse().unwrap()),
        redis: None,
    };
    let limits = RateLimits::new(&config);
    let flood = |offset: u32| {
        for i in offset..offset + FLOOD {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + i));
            limits.failed_auth(ip);
            limits.check_token(i64::from(i), None);
        }
    };
    let before = rss_mib();
    println!("limiter state for floods of {FLOOD} distinct addresses and {FLOOD} distinct tokens:");
    for round in 0..3 {
        flood(round * FLOOD);
        let flooded = rss_mib();
        let (tokens, addresses) = limits.tracked();
        // Idle state is dropped once its bucket would have refilled (here within 1 s).
        tokio::time::sleep(Duration::from_millis(2100)).await;
        limits.forget_idle(Duration::ZERO);
        let (tokens_after, addresses_after) = limits.tracked();
        println!(
            "  flood {}: RSS {before:.1} -> {flooded:.1} MiB ({tokens} tokens, {addresses} addresses tracked); \
             after dropping idle state: {:.1} MiB ({tokens_after} tokens, {addresses_after} addresses)",
            round + 1,
            rss_mib()
        );
    }

    let local = RateLimits::new(&RateLimitConfig {
        default: Some("1000000/s".parse().unwrap()),
        failed_auth: None,
        redis: None,
    });
    println!("local limiter step: {:?} per request", time_per_step(&local, 200_000).await);

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let Ok(mut redis) = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
    else {
        println!("shared limiter: SKIPPED (no redis-server)");
        return;
    };
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let shared_config = RateLimitConfig {
        default: Some("1000000/s".parse().unwrap()),
        failed_auth: None,
        redis: Some(RedisLimits {
            url: SecretUrl::new(format!("redis://127.0.0.1:{port}")),
            timeout: Duration::from_millis(100),
        }),
    };
    let shared = RateLimits::new(&shared_config);
    shared.connect_shared(&shared_config).await;
    time_per_step(&shared, 1_000).await; // warm up (script load)
    let per_step = time_per_step(&shared, 20_000).await;
    assert_eq!(shared.shared_healthy(), Some(true));
    println!("shared limiter step (Redis on loopback, one EVALSHA): {per_step:?} per request");
    let _ = redis.kill();
    let _ = redis.wait();
}
