//! Rate limits on the data path, with governor's GCRA: each token's own rate (else the
//! configured default), and failed authentications per client address.
//!
//! A token's bucket is created on its first request and replaced when its rate changes (the
//! index carries the rate, so `token set-limit` applies on the next request). An address that
//! exceeds `rate_limit.failed_auth` is throttled until its bucket has room again: its failing
//! requests get 429 instead of 401, which makes guessing slow, while its requests with valid
//! credentials are served as usual — behind a NAT one forgotten script must not lock out every
//! user, and guessing a 256-bit secret gains nothing from being told 401 rather than 429. Idle state is dropped by
//! [`RateLimits::forget_idle`], so a flood of distinct tokens or addresses leaves bounded memory.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use dashmap::DashMap;
use governor::clock::{Clock as _, DefaultClock, QuantaInstant, Reference as _};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::HeaderValue;

use crate::config::RateLimitConfig;
use crate::model::rate::Rate;

mod shared;
pub use shared::{SharedLimiter, SharedOutcome};

type TokenLimiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// The GCRA parameters of a rate: one request every `period / count`, bursts of `burst_size`.
fn quota(rate: Rate) -> Quota {
    let burst = NonZeroU32::new(rate.burst_size()).unwrap_or(NonZeroU32::MIN);
    let interval = (rate.period / rate.count.max(1)).max(Duration::from_nanos(1));
    Quota::with_period(interval).unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN)).allow_burst(burst)
}

/// One token's bucket.
struct TokenBucket {
    rate: Rate,
    limiter: TokenLimiter,
    /// `RateLimit-Policy`, built once.
    policy: HeaderValue,
    /// When this bucket was last used, in seconds since the limiter started.
    last_seen: AtomicU64,
}

/// The IETF draft headers of a rate-limited token, sent on every response of that token.
#[derive(Debug, Clone)]
pub struct LimitHeaders {
    /// `RateLimit-Policy: "token";q=LIMIT;w=WINDOW`
    pub policy: HeaderValue,
    /// `RateLimit: "token";r=REMAINING;t=RESET`
    pub state: HeaderValue,
}

static RATELIMIT_POLICY: http::HeaderName = http::HeaderName::from_static("ratelimit-policy");
static RATELIMIT: http::HeaderName = http::HeaderName::from_static("ratelimit");

impl LimitHeaders {
    /// Adds both headers to a response.
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        headers.insert(&RATELIMIT_POLICY, self.policy.clone());
        headers.insert(&RATELIMIT, self.state.clone());
    }
}

/// The verdict on one request of a token.
#[derive(Debug)]
pub enum TokenVerdict {
    /// The token has no limit (none of its own, no default).
    Unlimited,
    /// Under the limit; the headers tell the client how much is left.
    Allowed(LimitHeaders),
    /// Over the limit: 429 with `Retry-After` in whole seconds (rounded up).
    Limited {
        /// Seconds until the token may send again.
        retry_after: u64,
        /// The limit's headers, sent with the 429 too.
        headers: LimitHeaders,
    },
}

/// Every limiter of one gateway process.
pub struct RateLimits {
    /// The rates `SIGHUP` can change, swapped whole.
    rates: ArcSwap<Rates>,
    /// Fleet-wide token limits, when `rate_limit.backend = "redis"`.
    shared: Option<SharedLimiter>,
    tokens: DashMap<i64, Arc<TokenBucket>>,
    /// Addresses past their failed-authentication limit.
    blocked: DashMap<IpAddr, Block>,
    clock: DefaultClock,
    started: Instant,
}

/// `rate_limit.default` and `rate_limit.failed_auth`, as the running configuration has them.
struct Rates {
    /// The limit of tokens without their own.
    default: Option<Rate>,
    /// Failed authentications per client address, with the addresses' buckets.
    failed_auth: Option<Arc<FailedAuthLimiter>>,
}

/// The failed-authentication limit and the buckets of the addresses it counts.
struct FailedAuthLimiter {
    rate: Rate,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
}

impl FailedAuthLimiter {
    fn new(rate: Rate) -> Arc<Self> {
        Arc::new(FailedAuthLimiter { rate, limiter: RateLimiter::dashmap(quota(rate)) })
    }
}

/// An address past its failed-authentication limit.
struct Block {
    until: QuantaInstant,
    /// A refusal during this block was already reported (one log line per block, not per request).
    reported: bool,
}

/// A failed authentication from an address past its limit: 429 instead of 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    /// Whole seconds until the address may fail again.
    pub retry_after: u64,
    /// The first refusal of this block: the one worth a log line.
    pub first: bool,
}

/// `RateLimit-Policy: "token";q=LIMIT;w=WINDOW_S`
fn policy_header(rate: Rate) -> HeaderValue {
    HeaderValue::from_str(&format!("\"token\";q={};w={}", rate.count, rate.period.as_secs()))
        .unwrap_or_else(|_| HeaderValue::from_static("\"token\""))
}

/// `RateLimit: "token";r=REMAINING;t=RESET_S`
/// Built on every admitted request of a limited token, so written with `itoa` into one buffer
/// rather than through `format!`.
fn state_header(remaining: u32, reset: u64) -> HeaderValue {
    let mut value = bytes::BytesMut::with_capacity(40);
    value.extend_from_slice(b"\"token\";r=");
    value.extend_from_slice(itoa::Buffer::new().format(remaining).as_bytes());
    value.extend_from_slice(b";t=");
    value.extend_from_slice(itoa::Buffer::new().format(reset).as_bytes());
    HeaderValue::from_maybe_shared(value.freeze()).unwrap_or_else(|_| HeaderValue::from_static("\"token\""))
}

fn seconds_up(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

impl RateLimits {
    /// The limiters of `[rate_limit]`, empty; the Redis connection, if configured, is made by
    /// `connect_shared`.
    pub fn new(config: &RateLimitConfig) -> Self {
        RateLimits {
            rates: ArcSwap::from_pointee(Rates {
                default: config.default,
                failed_auth: config.failed_auth.map(FailedAuthLimiter::new),
            }),
            shared: config.redis.as_ref().map(SharedLimiter::new),
            tokens: DashMap::new(),
            blocked: DashMap::new(),
            clock: DefaultClock::default(),
            started: Instant::now(),
        }
    }

    /// Applies a reloaded `[rate_limit]`'s `default` and `failed_auth` from the next request on.
    /// A token bucket whose rate changes starts full (as after `token set-limit`); the
    /// failed-authentication buckets are kept while that rate stays the same, and start afresh
    /// when it changes. Addresses blocked now stay blocked until their block ends. (The backend,
    /// local or Redis, is fixed for the process.)
    pub fn reconfigure(&self, config: &RateLimitConfig) {
        let current = self.rates.load();
        let failed_auth = match (&current.failed_auth, config.failed_auth) {
            (Some(kept), Some(rate)) if kept.rate == rate => Some(Arc::clone(kept)),
            (_, rate) => rate.map(FailedAuthLimiter::new),
        };
        self.rates.store(Arc::new(Rates { default: config.default, failed_auth }));
    }

    /// The limit of tokens without one of their own (`rate_limit.default`), as now in force.
    pub fn default_rate(&self) -> Option<Rate> {
        self.rates.load().default
    }

    fn bucket(&self, token_id: i64, rate: Rate) -> Arc<TokenBucket> {
        if let Some(bucket) = self.tokens.get(&token_id).filter(|b| b.rate == rate) {
            return Arc::clone(&bucket);
        }
        let bucket = Arc::new(TokenBucket {
            rate,
            limiter: RateLimiter::direct(quota(rate)).with_middleware::<StateInformationMiddleware>(),
            policy: policy_header(rate),
            last_seen: AtomicU64::new(0),
        });
        self.tokens.insert(token_id, Arc::clone(&bucket));
        bucket
    }

    /// Connects the shared limiter (if configured), retrying in the background until it can.
    pub async fn connect_shared(&self, config: &RateLimitConfig) {
        if let (Some(shared), Some(redis)) = (&self.shared, &config.redis) {
            shared.connect(redis).await;
        }
    }

    /// Whether token limits are currently shared through Redis (`None`: not configured).
    pub fn shared_healthy(&self) -> Option<bool> {
        self.shared.as_ref().map(SharedLimiter::healthy)
    }

    /// Takes one request from the token's bucket: fleet-wide through Redis when configured and
    /// answering, else this process's own.
    pub async fn admit_token(&self, token_id: i64, own: Option<Rate>) -> TokenVerdict {
        let Some(rate) = own.or_else(|| self.default_rate()) else { return TokenVerdict::Unlimited };
        if let Some(shared) = &self.shared
            && let Some(outcome) = shared.step(token_id, rate).await
        {
            let policy = policy_header(rate);
            return if outcome.allowed {
                let state = state_header(outcome.remaining, seconds_up(outcome.reset));
                TokenVerdict::Allowed(LimitHeaders { policy, state })
            } else {
                let retry_after = seconds_up(outcome.retry_after).max(1);
                TokenVerdict::Limited {
                    retry_after,
                    headers: LimitHeaders { policy, state: state_header(0, retry_after) },
                }
            };
        }
        self.check_rate(token_id, rate)
    }

    /// Takes one request from the token's bucket in this process: its own rate, else the default.
    pub fn check_token(&self, token_id: i64, own: Option<Rate>) -> TokenVerdict {
        match own.or_else(|| self.default_rate()) {
            Some(rate) => self.check_rate(token_id, rate),
            None => TokenVerdict::Unlimited,
        }
    }

    /// Takes one request from the token's bucket of `rate` in this process.
    fn check_rate(&self, token_id: i64, rate: Rate) -> TokenVerdict {
        let bucket = self.bucket(token_id, rate);
        bucket.last_seen.store(self.started.elapsed().as_secs(), Ordering::Relaxed);
        let interval = rate.period / rate.count.max(1);
        match bucket.limiter.check() {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let reset = seconds_up(interval * rate.burst_size().saturating_sub(remaining));
                TokenVerdict::Allowed(LimitHeaders {
                    policy: bucket.policy.clone(),
                    state: state_header(remaining, reset),
                })
            }
            Err(not_until) => {
                let retry_after = seconds_up(not_until.wait_time_from(self.clock.now())).max(1);
                let headers = LimitHeaders { policy: bucket.policy.clone(), state: state_header(0, retry_after) };
                TokenVerdict::Limited { retry_after, headers }
            }
        }
    }

    /// Counts a failed authentication from `ip`. `Some` when the address is past its limit
    /// (already, or with this attempt): the caller answers 429 instead of 401. Attempts during a
    /// block are not counted again, so the block ends when the bucket has room.
    pub fn failed_auth(&self, ip: IpAddr) -> Option<Throttled> {
        let rates = self.rates.load();
        let limiter = &rates.failed_auth.as_ref()?.limiter;
        let now = self.clock.now();
        if let Some(mut block) = self.blocked.get_mut(&ip)
            && block.until > now
        {
            let first = !std::mem::replace(&mut block.reported, true);
            return Some(Throttled { retry_after: seconds_up(block.until.duration_since(now).into()).max(1), first });
        }
        self.blocked.remove_if(&ip, |_, block| block.until <= now);
        match limiter.check_key(&ip) {
            Ok(()) => None,
            Err(not_until) => {
                self.blocked.insert(ip, Block { until: not_until.earliest_possible(), reported: true });
                Some(Throttled { retry_after: seconds_up(not_until.wait_time_from(now)).max(1), first: true })
            }
        }
    }

    /// Whether `ip` is past its failed-authentication limit now.
    pub fn is_throttled(&self, ip: IpAddr) -> bool {
        self.blocked.get(&ip).is_some_and(|block| block.until > self.clock.now())
    }

    /// Drops state nobody has used for `idle` (buckets refill completely well within that,
    /// so nothing is forgiven that time would not have forgiven anyway), and expired blocks.
    pub fn forget_idle(&self, idle: Duration) {
        let now_s = self.started.elapsed().as_secs();
        self.tokens.retain(|_, bucket| {
            let refill = seconds_up(bucket.rate.period / bucket.rate.count.max(1) * bucket.rate.burst_size());
            now_s.saturating_sub(bucket.last_seen.load(Ordering::Relaxed)) < idle.as_secs().max(refill)
        });
        self.tokens.shrink_to_fit();
        if let Some(failed_auth) = &self.rates.load().failed_auth {
            failed_auth.limiter.retain_recent();
            failed_auth.limiter.shrink_to_fit();
        }
        let now = self.clock.now();
        self.blocked.retain(|_, block| block.until > now);
        self.blocked.shrink_to_fit();
    }

    /// How many tokens and addresses have state (for metrics and the memory bench).
    pub fn tracked(&self) -> (usize, usize) {
        let addresses = self.rates.load().failed_auth.as_ref().map_or(0, |f| f.limiter.len());
        (self.tokens.len(), addresses + self.blocked.len())
    }

    /// Runs [`RateLimits::forget_idle`] every minute until `shutdown`.
    pub async fn run_housekeeping(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(Duration::from_secs(60)) => self.forget_idle(Duration::from_secs(600)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_header_reads_as_the_draft_spells_it() {
        assert_eq!(state_header(0, 1), "\"token\";r=0;t=1");
        assert_eq!(state_header(u32::MAX, 86_400), "\"token\";r=4294967295;t=86400");
    }

    fn limits(default: Option<&str>, failed: Option<&str>) -> RateLimits {
        RateLimits::new(&RateLimitConfig {
            default: default.map(|r| r.parse().unwrap()),
            failed_auth: failed.map(|r| r.parse().unwrap()),
            redis: None,
        })
    }

    #[test]
    fn a_token_gets_its_burst_then_429_with_headers() {
        let limits = limits(Some("3/min"), None);
        for remaining in [2, 1, 0] {
            let TokenVerdict::Allowed(headers) = limits.check_token(1, None) else { panic!("allowed") };
            assert_eq!(headers.policy, "\"token\";q=3;w=60");
            assert!(headers.state.to_str().unwrap().starts_with(&format!("\"token\";r={remaining};t=")));
        }
        let TokenVerdict::Limited { retry_after, headers } = limits.check_token(1, None) else { panic!("limited") };
        assert!((19..=20).contains(&retry_after), "one request every 20 s: {retry_after}");
        assert_eq!(headers.state, format!("\"token\";r=0;t={retry_after}").as_str());
        assert!(matches!(limits.check_token(2, None), TokenVerdict::Allowed(_)), "buckets are per token");
    }

    #[test]
    fn a_tokens_own_rate_wins_and_a_change_takes_effect() {
        let limits = limits(None, None);
        assert!(matches!(limits.check_token(1, None), TokenVerdict::Unlimited));
        let one: Rate = "1/h".parse().unwrap();
        assert!(matches!(limits.check_token(1, Some(one)), TokenVerdict::Allowed(_)));
        assert!(matches!(limits.check_token(1, Some(one)), TokenVerdict::Limited { .. }));
        let more: Rate = "100/s".parse().unwrap();
        assert!(matches!(limits.check_token(1, Some(more)), TokenVerdict::Allowed(_)), "a new rate, a new bucket");
    }

    #[test]
    fn failed_authentications_throttle_the_address_and_say_so_once() {
        let limits = limits(None, Some("2/min"));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(limits.failed_auth(ip), None);
        assert_eq!(limits.failed_auth(ip), None);
        assert!(!limits.is_throttled(ip));
        let crossed = limits.failed_auth(ip).unwrap();
        assert!(crossed.first && crossed.retry_after >= 1);
        assert!(limits.is_throttled(ip));
        let again = limits.failed_auth(ip).unwrap();
        assert!(!again.first, "one report per block");
        assert!(!limits.is_throttled("192.0.2.2".parse().unwrap()), "other addresses are unaffected");
    }
}
