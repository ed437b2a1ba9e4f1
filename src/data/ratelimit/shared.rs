//! Token limits shared by a fleet through Redis: one atomic GCRA step per request, in a Lua
//! script (one round trip), on a multiplexed connection that reconnects by itself. When Redis
//! does not answer within `rate_limit.redis_timeout` the caller limits locally instead — never
//! a 5xx, never unlimited — and Redis is tried again a second later.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::RedisLimits;
use crate::model::rate::Rate;

/// The GCRA step. KEYS[1]: the token's key. ARGV[1]: microseconds between requests,
/// ARGV[2]: the burst. Time is the Redis server's, so gateways with skewed clocks agree.
/// Returns {allowed (1/0), remaining, retry-after µs, µs until the bucket is full again}.
const GCRA: &str = r"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - interval * burst
if allow_at > now then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return {1, math.floor((now + interval * burst - new_tat) / interval), 0, new_tat - now}
";

/// How long Redis is left alone after it failed to answer.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// The outcome of one shared step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedOutcome {
    /// Whether the request is within the token's limit.
    pub allowed: bool,
    /// Requests left in the burst, for the `RateLimit` header.
    pub remaining: u32,
    /// When refused: how long until the next request would be allowed (`Retry-After`).
    pub retry_after: Duration,
    /// How long until the bucket is full again, for the `RateLimit` header's `t`.
    pub reset: Duration,
}

/// The fleet's token limiter: GCRA on Redis, with a step that gives up after
/// `rate_limit.redis_timeout` so the caller can limit locally instead.
pub struct SharedLimiter {
    connection: OnceLock<ConnectionManager>,
    script: Script,
    timeout: Duration,
    started: Instant,
    /// Milliseconds since `started` before which Redis is not tried (after a failure).
    skip_until_ms: AtomicU64,
    /// Whether the last attempt failed: state changes are logged once, not per request.
    degraded: AtomicBool,
}

impl SharedLimiter {
    /// A limiter not yet connected (every step falls back to local limiting until
    /// [`SharedLimiter::connect`] succeeds).
    pub fn new(config: &RedisLimits) -> Self {
        SharedLimiter {
            connection: OnceLock::new(),
            script: Script::new(GCRA),
            timeout: config.timeout,
            started: Instant::now(),
            skip_until_ms: AtomicU64::new(0),
            degraded: AtomicBool::new(false),
        }
    }

    /// Connects in the background, retrying until Redis answers; until then (and whenever it
    /// fails later) tokens are limited locally.
    pub async fn connect(&self, config: &RedisLimits) {
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(config.timeout));
        let mut pause = Duration::from_millis(200);
        loop {
            let attempt = match redis::Client::open(config.url.expose()) {
                Ok(client) => ConnectionManager::new_with_config(client, manager_config.clone()).await,
                Err(error) => Err(error),
            };
            match attempt {
                Ok(manager) => {
                    let _ = self.connection.set(manager);
                    tracing::info!(redis = %config.url, "shared rate limits through Redis");
                    return;
                }
                Err(error) => {
                    tracing::warn!(redis = %config.url, %error, "cannot reach Redis; limiting tokens locally meanwhile");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Whether Redis answered the last attempt (for health reporting).
    pub fn healthy(&self) -> bool {
        self.connection.get().is_some() && !self.degraded.load(Ordering::Relaxed)
    }

    /// One GCRA step for the token; `None` when Redis cannot be used now.
    pub async fn step(&self, token_id: i64, rate: Rate) -> Option<SharedOutcome> {
        let connection = self.connection.get()?;
        let now_ms = self.started.elapsed().as_millis() as u64;
        if now_ms < self.skip_until_ms.load(Ordering::Relaxed) {
            return None;
        }
        let interval_us = (rate.period.as_micros() / u128::from(rate.count.max(1))).max(1) as u64;
        let mut connection = connection.clone();
        let mut invocation = self.script.key(format!("tokengate:rl:{token_id}"));
        invocation.arg(interval_us).arg(rate.burst_size());
        let reply =
            tokio::time::timeout(self.timeout, invocation.invoke_async::<(i64, i64, i64, i64)>(&mut connection));
        match reply.await {
            Ok(Ok((allowed, remaining, retry_us, reset_us))) => {
                if self.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!("Redis answers again; shared rate limits resumed");
                }
                Some(SharedOutcome {
                    allowed: allowed == 1,
                    remaining: remaining.clamp(0, i64::from(u32::MAX)) as u32,
                    retry_after: Duration::from_micros(retry_us.max(0) as u64),
                    reset: Duration::from_micros(reset_us.max(0) as u64),
                })
            }
            outcome => {
                let error = match outcome {
                    Ok(Err(error)) => error.to_string(),
                    _ => format!("no answer within {:?}", self.timeout),
                };
                if !self.degraded.swap(true, Ordering::Relaxed) {
                    tracing::warn!(%error, "Redis unavailable; limiting tokens locally until it answers");
                }
                self.skip_until_ms.store(now_ms + RETRY_AFTER_FAILURE.as_millis() as u64, Ordering::Relaxed);
                None
            }
        }
    }
}
