//! Rate limiting with governor's GCRA: `requests` per `window`, bursts up to `burst`, one bucket
//! per key (client IP, a header, or a JWT claim). A limiter is shared by every route naming the
//! policy unless `scope: route`. The response headers — the IETF draft's `RateLimit-Policy` /
//! `RateLimit` and the older `RateLimit-Limit` / `-Remaining` / `-Reset` — are computed from the
//! bucket's state after the request. Keys whose bucket has refilled are evicted on a timer on
//! the background runtime, which also sets `rustygate_rate_limit_keys{policy}` to the keys held
//! before each eviction.

use std::{
    fmt::Write,
    hash::BuildHasher,
    net::IpAddr,
    num::NonZeroU32,
    sync::{Arc, Weak},
    time::Duration,
};

use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    middleware::StateInformationMiddleware,
    state::keyed::DefaultKeyedStateStore,
};
use opentelemetry::KeyValue;
use prometheus::{IntCounter, IntGauge};
use serde_json::{Map, Value};

use crate::{
    background::TaskSet,
    config::{RateLimitConfig, values::KeySpec},
    error::GatewayError,
    filters::jwt::Authenticated,
    http_types::{HeaderMap, HeaderName, HeaderValue, header::RETRY_AFTER},
    metrics::Metrics,
    pipeline::{
        filter::{Filter, Phase},
        message::Response,
        session::Session,
    },
};

/// A bucket's key. Header and claim values are stored as a 128-bit keyed hash, so a key costs
/// the same few bytes however long the value a client sends.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Ip(IpAddr),
    Value(u128),
}

type Limiter = RateLimiter<Key, DefaultKeyedStateStore<Key>, DefaultClock, StateInformationMiddleware>;

/// The outcome of one check, kept until the response headers are written.
#[derive(Clone, Copy, Debug)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// Requests left right now.
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset: u64,
    /// When refused: seconds until one request is allowed again.
    pub retry_after: u64,
}

/// A compiled rate-limit policy instance (one per policy, or one per route with `scope: route`).
pub struct RateLimit {
    /// The policy's name.
    pub name: Arc<str>,
    limiter: Limiter,
    spec: KeySpec,
    hasher: [std::hash::RandomState; 2],
    requests: u32,
    period: Duration,
    burst: u32,
    draft_headers: bool,
    legacy_headers: bool,
    policy_value: HeaderValue,
    limit_value: HeaderValue,
    /// The policy name as a Structured Field string, for the `RateLimit` field.
    name_item: String,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit").field("name", &self.name).field("spec", &self.spec).finish()
    }
}

impl RateLimit {
    /// Compiles a validated policy.
    pub fn new(name: &str, config: &RateLimitConfig) -> Result<Self, String> {
        let spec = config.key.get().map_err(str::to_owned)?.clone();
        let requests = NonZeroU32::new(config.requests).ok_or("requests must be at least 1")?;
        let burst = NonZeroU32::new(config.burst.unwrap_or(config.requests)).ok_or("burst must be at least 1")?;
        let period = config.window.0 / requests.get();
        let quota = Quota::with_period(period).ok_or("the window is too short")?.allow_burst(burst);
        let window = config.window.0.as_secs().max(1);
        let policy_value = HeaderValue::from_str(&format!("{};q={};w={window}", sf_string(name), requests))
            .map_err(|_| format!("policy name {name:?} cannot be sent in a header"))?;
        Ok(Self {
            name: name.into(),
            limiter: RateLimiter::dashmap(quota).with_middleware::<StateInformationMiddleware>(),
            spec,
            hasher: Default::default(),
            requests: requests.get(),
            period,
            burst: burst.get(),
            draft_headers: config.draft_headers,
            legacy_headers: config.legacy_headers,
            policy_value,
            limit_value: HeaderValue::from(requests.get()),
            name_item: sf_string(name),
        })
    }

    /// Whether this limit keys on a JWT claim.
    pub fn keys_on_claim(&self) -> bool {
        matches!(self.spec, KeySpec::Claim(_))
    }

    /// Counts one request against its bucket.
    pub fn check(&self, client_ip: IpAddr, headers: &HeaderMap, claims: Option<&Map<String, Value>>) -> Decision {
        let key = match &self.spec {
            KeySpec::ClientIp => Key::Ip(client_ip),
            KeySpec::Header(name) => headers.get(name).map_or(Key::Ip(client_ip), |v| self.hashed(v.as_bytes())),
            KeySpec::Claim(claim) => match claims.and_then(|c| c.get(claim)) {
                Some(Value::String(s)) => self.hashed(s.as_bytes()),
                Some(Value::Null) | None => Key::Ip(client_ip),
                Some(other) => self.hashed(other.to_string().as_bytes()),
            },
        };
        match self.limiter.check_key(&key) {
            Ok(state) => {
                let left = state.remaining_burst_capacity();
                let reset = self.period.saturating_mul(self.burst - left);
                Decision { allowed: true, remaining: left.min(self.requests), reset: ceil_secs(reset), retry_after: 0 }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.limiter.clock().now());
                let reset = wait + self.period.saturating_mul(self.burst - 1);
                Decision { allowed: false, remaining: 0, reset: ceil_secs(reset), retry_after: ceil_secs(wait).max(1) }
            }
        }
    }

    fn hashed(&self, value: &[u8]) -> Key {
        let [a, b] = self.hasher.each_ref().map(|h| h.hash_one(value));
        Key::Value((u128::from(a) << 64) | u128::from(b))
    }

    /// Writes the rate-limit headers for a decision (and `Retry-After` on a refusal).
    pub fn write_headers(&self, d: &Decision, out: &mut HeaderMap) {
        if !d.allowed {
            out.insert(RETRY_AFTER, HeaderValue::from(d.retry_after));
        }
        if self.draft_headers {
            out.insert(HeaderName::from_static("ratelimit-policy"), self.policy_value.clone());
            let mut current = String::with_capacity(self.name_item.len() + 24);
            let _ = write!(current, "{};r={};t={}", self.name_item, d.remaining, d.reset);
            if let Ok(v) = HeaderValue::from_str(&current) {
                out.insert(HeaderName::from_static("ratelimit"), v);
            }
        }
        if self.legacy_headers {
            out.insert(HeaderName::from_static("ratelimit-limit"), self.limit_value.clone());
            out.insert(HeaderName::from_static("ratelimit-remaining"), HeaderValue::from(d.remaining));
            out.insert(HeaderName::from_static("ratelimit-reset"), HeaderValue::from(d.reset));
        }
    }

    /// Drops keys whose bucket has refilled (indistinguishable from a new key); returns how many
    /// keys were held just before.
    pub fn evict(&self) -> usize {
        let held = self.limiter.len();
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        held
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// A Structured Field string (RFC 8941 §3.3.3).
fn sf_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Starts the eviction timer of a policy's instances on the background runtime, in `tasks`:
/// every `interval`, the key gauge is set to the keys held (keys only come between ticks, so
/// this is the most held over the interval, what memory follows) and stale keys go. It stops
/// when a reload retires the policy's instances (or they are all dropped).
pub fn spawn_eviction(
    background: &tokio::runtime::Handle,
    tasks: &TaskSet,
    instances: Vec<Weak<RateLimit>>,
    gauge: IntGauge,
    interval: Duration,
) {
    tasks.spawn(background, async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let mut live = 0;
            let mut keys = 0;
            for instance in instances.iter().filter_map(Weak::upgrade) {
                live += 1;
                keys += instance.evict();
            }
            if live == 0 {
                break;
            }
            gauge.set(keys as i64);
        }
    });
}

/// How often a policy's stale keys are evicted: once per window, between 1 s and 60 s.
pub fn eviction_interval(config: &RateLimitConfig) -> Duration {
    config.window.0.clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// A route's rate limit in the pipeline: after auth (so that a limit can key on a claim), a
/// 429 for a refused request; its headers on every answer of the route, the 429 included.
#[derive(Debug)]
pub struct RateLimitFilter {
    limit: Arc<RateLimit>,
    /// `rustygate_rate_limited_total{route}` of the route.
    limited: IntCounter,
}

impl RateLimitFilter {
    /// The limit on route `route`, with its refusal counter (created at zero).
    pub fn new(limit: Arc<RateLimit>, metrics: &Metrics, route: &str) -> Self {
        Self { limit, limited: metrics.rate_limited_total.with_label_values(&[route]) }
    }
}

impl Filter for RateLimitFilter {
    fn name(&self) -> &'static str {
        "rate_limit"
    }

    fn request<'a>(&'a self, session: &'a mut Session) -> Phase<'a> {
        let claims = session.state.get::<Authenticated>().map(|a| &a.verified.claims);
        let decision = self.limit.check(session.client_ip, &session.head.headers, claims);
        session.state.insert(decision);
        if decision.allowed {
            return Phase::CONTINUE;
        }
        self.limited.inc();
        session.trace_event("rate limited", || {
            vec![KeyValue::new("rustygate.rate_limit.retry_after_s", decision.retry_after as i64)]
        });
        Phase::Ready(Err(GatewayError::TooManyRequests { retry_after: decision.retry_after }))
    }

    fn response(&self, session: &mut Session, response: &mut Response) {
        if let Some(decision) = session.state.get::<Decision>() {
            self.limit.write_headers(decision, &mut response.headers);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HumanDuration;

    fn policy(requests: u32, window: u64, key: &str) -> RateLimit {
        let config = RateLimitConfig {
            requests,
            window: HumanDuration::secs(window),
            key: key.into(),
            ..RateLimitConfig::default()
        };
        RateLimit::new("p", &config).unwrap()
    }

    #[test]
    fn the_request_after_the_quota_is_refused_with_a_wait() {
        let p = policy(3, 3600, "client_ip");
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let h = HeaderMap::new();
        let remaining: Vec<u32> = (0..3).map(|_| p.check(ip, &h, None).remaining).collect();
        assert_eq!(remaining, [2, 1, 0]);
        let refused = p.check(ip, &h, None);
        assert!(!refused.allowed);
        // One request comes back every 20 minutes.
        assert!((1190..=1200).contains(&refused.retry_after), "{refused:?}");
        assert!(p.check("10.0.0.2".parse().unwrap(), &h, None).allowed, "another key has its own bucket");
    }

    #[test]
    fn header_keys_fall_back_to_the_client_ip() {
        let p = policy(1, 3600, "header:X-Api-Key");
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut h = HeaderMap::new();
        assert!(p.check(ip, &h, None).allowed);
        assert!(!p.check(ip, &h, None).allowed, "no header: the IP's bucket");
        h.insert(HeaderName::from_static("x-api-key"), HeaderValue::from_static("k1"));
        assert!(p.check(ip, &h, None).allowed, "a header value has its own bucket");
        assert!(!p.check(ip, &h, None).allowed);
    }

    #[test]
    fn headers_follow_the_draft_and_the_legacy_fields() {
        let p = policy(100, 60, "client_ip");
        let d = p.check("10.0.0.1".parse().unwrap(), &HeaderMap::new(), None);
        let mut out = HeaderMap::new();
        p.write_headers(&d, &mut out);
        assert_eq!(out.get("ratelimit-policy").unwrap(), "\"p\";q=100;w=60");
        assert_eq!(out.get("ratelimit").unwrap(), "\"p\";r=99;t=1");
        assert_eq!(out.get("ratelimit-limit").unwrap(), "100");
        assert_eq!(out.get("ratelimit-remaining").unwrap(), "99");
        assert_eq!(out.get("ratelimit-reset").unwrap(), "1");
        assert!(out.get(RETRY_AFTER).is_none());
    }

    /// Lets every task that is ready run, without moving the paused clock.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    /// The eviction timer on a paused background runtime (governor's own clock is not tokio's:
    /// with one request an hour, no key refills during the test). It ticks at once, then every
    /// interval, setting the gauge to the keys held; it stops once its instances are dropped,
    /// or at once when its task set is stopped. Fails if the interval or the gauge changed.
    #[test]
    fn the_eviction_timer_ticks_every_interval_and_stops_with_its_instances() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let config = RateLimitConfig { requests: 1, window: HumanDuration::secs(3600), ..RateLimitConfig::default() };
        let interval = eviction_interval(&config);
        assert_eq!(interval, Duration::from_secs(60), "once per window, at most a minute apart");
        let limit = Arc::new(RateLimit::new("p", &config).unwrap());
        let gauge = IntGauge::new("keys", "keys held").unwrap();
        let (tasks, h) = (TaskSet::default(), HeaderMap::new());
        let use_keys = |limit: &RateLimit, keys: std::ops::Range<u8>| {
            for i in keys {
                assert!(limit.check(IpAddr::from([10, 0, 0, i]), &h, None).allowed);
            }
        };
        use_keys(&limit, 0..2);
        rt.block_on(async {
            spawn_eviction(rt.handle(), &tasks, vec![Arc::downgrade(&limit)], gauge.clone(), interval);
            settle().await;
            assert_eq!(gauge.get(), 2, "the first tick is at once");
            use_keys(&limit, 2..5);
            tokio::time::advance(interval - Duration::from_millis(1)).await;
            settle().await;
            assert_eq!(gauge.get(), 2, "no tick before the interval");
            tokio::time::advance(Duration::from_millis(1)).await;
            settle().await;
            assert_eq!(gauge.get(), 5, "the second tick, one interval later");
            assert_eq!(rt.metrics().num_alive_tasks(), 1);
        });
        drop(limit);
        rt.block_on(async {
            tokio::time::advance(interval).await;
            settle().await;
            assert_eq!(rt.metrics().num_alive_tasks(), 0, "no instance left: the timer ended");

            // A retired policy's timer (its task set stopped) ends without waiting for a tick.
            let kept = Arc::new(RateLimit::new("p", &config).unwrap());
            let retired = TaskSet::default();
            spawn_eviction(rt.handle(), &retired, vec![Arc::downgrade(&kept)], gauge.clone(), interval);
            settle().await;
            assert_eq!(rt.metrics().num_alive_tasks(), 1);
            retired.stop();
            settle().await;
            assert_eq!(rt.metrics().num_alive_tasks(), 0, "stopped with its task set");
        });
    }

    #[test]
    fn key_specs_parse_or_explain() {
        assert_eq!(KeySpec::parse("client_ip"), Ok(KeySpec::ClientIp));
        assert_eq!(KeySpec::parse("claim:sub"), Ok(KeySpec::Claim("sub".into())));
        assert!(matches!(KeySpec::parse("header:X-Key"), Ok(KeySpec::Header(_))));
        assert!(KeySpec::parse("header:bad name").unwrap_err().contains("not a header name"));
        assert!(KeySpec::parse("ip").unwrap_err().contains("client_ip, header:NAME or claim:NAME"));
        assert!(KeySpec::parse("claim:").is_err());
    }
}
