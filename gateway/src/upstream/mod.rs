//! Upstream pools: the backends of an upstream, and the choice of one per attempt among those
//! in rotation (see [`health`]). Round robin follows a schedule precomputed at compile time
//! (smooth weighted round robin, as NGINX does it), so a pick is one atomic increment and
//! weights interleave instead of bursting; least connections compares two backends drawn at
//! random (power of two choices); `ip_hash` / `header_hash` walk a consistent-hash ring built
//! at compile time ([`ring`]).

pub mod health;
pub mod retry;
pub mod ring;

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use actix_web::http::{
    header::{HeaderMap, HeaderName, HeaderValue},
    uri::{Authority, Scheme},
};
use arc_swap::ArcSwapOption;
use prometheus::{IntCounter, IntGauge};
use rand::Rng;

use crate::config::{BackendConfig, HealthCheckConfig, OutlierConfig, Strategy, UpstreamConfig};
use retry::RetryPolicy;

/// One backend server.
#[derive(Debug)]
pub struct Backend {
    /// The URL as configured (any password removed): the `backend` metrics label.
    pub label: Arc<str>,
    /// `http` (https is planned).
    pub scheme: Scheme,
    /// `host:port` to connect to.
    pub authority: Authority,
    /// Base path prepended to forwarded paths, without trailing slash (often empty).
    pub base_path: String,
    /// The backend's own authority as a `Host` value (used when `preserve_host: false`).
    pub host_header: HeaderValue,
    /// Relative share of requests.
    pub weight: u32,
    /// Requests currently being forwarded to this backend.
    pub in_flight: AtomicU64,
    /// The last transport error seen, for `/admin/upstreams`.
    pub last_error: ArcSwapOption<String>,
    /// The active health checks' verdict (true without health checks).
    healthy: AtomicBool,
    /// `rustygate_backend_up{upstream,backend}`.
    up: Option<IntGauge>,
    /// Passive health: failed attempts in a row.
    consecutive_failures: AtomicU32,
    /// Passive health: ejected until this many ms after [`clock_epoch`] (0: not ejected).
    ejected_until_ms: AtomicU64,
    /// Passive health: ejections so far (each one lasts twice the previous, up to the cap).
    ejections: AtomicU32,
    /// `rustygate_backend_ejections_total{upstream,backend}`.
    ejections_total: Option<IntCounter>,
}

/// The origin of the ejection clock (process-wide, monotonic).
fn clock_epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    clock_epoch().elapsed().as_millis() as u64 + 1
}

/// Every `reason` of `rustygate_backend_failures_total`.
const FAILURE_REASONS: [&str; 5] = ["connect_error", "connect_timeout", "timeout", "protocol_error", "status_5xx"];

/// A pool of backends with its balancing state and timeouts.
#[derive(Debug)]
pub struct UpstreamPool {
    /// Upstream name (the route name for inline backends): the `upstream` metrics label.
    pub name: Arc<str>,
    /// Load-balancing strategy.
    pub strategy: Strategy,
    /// The backends.
    pub backends: Vec<Arc<Backend>>,
    /// Round-robin schedule: indexes into `backends`, each appearing `weight` times.
    schedule: Vec<usize>,
    cursor: AtomicUsize,
    /// The consistent-hash ring of `ip_hash` / `header_hash`.
    ring: ring::Ring,
    /// The header `header_hash` hashes.
    hash_header: Option<HeaderName>,
    /// Active health checks, if configured.
    pub health_check: Option<HealthCheckConfig>,
    /// Retry settings and budget.
    pub retry: RetryPolicy,
    /// Deadline of a whole request (retries included), if set.
    pub request_timeout: Option<Duration>,
    outlier: OutlierConfig,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Default per-attempt timeout for the response head.
    pub timeout: Duration,
    /// The longest wait for the next bytes of a response body.
    pub read_timeout: Duration,
    /// Send the client's `Host` (true) or the backend's authority (false).
    pub preserve_host: bool,
}

impl UpstreamPool {
    /// Builds a pool from its (validated) configuration; `up` is the `rustygate_backend_up`
    /// family each backend's gauge is taken from (set to 1: in rotation until a check fails).
    pub fn new(name: &str, config: &UpstreamConfig, metrics: Option<&crate::metrics::Metrics>) -> Result<Self, String> {
        let mut backends = config.backends.iter().map(Backend::new).collect::<Result<Vec<_>, _>>()?;
        for b in &mut backends {
            if let Some(m) = metrics {
                let gauge = m.backend_up.with_label_values(&[name, &b.label]);
                gauge.set(1);
                b.up = Some(gauge);
                b.ejections_total = Some(m.backend_ejections_total.with_label_values(&[name, &b.label]));
                // Series at 0 from the start, so rates and alerts see the first failure.
                for reason in FAILURE_REASONS {
                    m.backend_failures_total.with_label_values(&[name, &b.label, reason]);
                }
            }
        }
        if let Some(m) = metrics {
            m.retries_total.with_label_values(&[name]);
            m.retry_budget_exhausted_total.with_label_values(&[name]);
        }
        let weights: Vec<u32> = backends.iter().map(|b| b.weight).collect();
        let ring = match config.strategy {
            Strategy::IpHash | Strategy::HeaderHash => ring::Ring::new(backends.iter().map(|b| (&*b.label, b.weight))),
            _ => ring::Ring::default(),
        };
        Ok(Self {
            name: name.into(),
            strategy: config.strategy,
            schedule: smooth_weighted_schedule(&weights),
            backends: backends.into_iter().map(Arc::new).collect(),
            cursor: AtomicUsize::new(0),
            ring,
            hash_header: config.hash_header.as_deref().and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
            health_check: config.health_check.clone(),
            retry: RetryPolicy::new(config),
            request_timeout: config.request_timeout.map(|t| t.0),
            outlier: config.outlier_detection.clone(),
            connect_timeout: config.connect_timeout.0,
            timeout: config.timeout.0,
            read_timeout: config.read_timeout.0,
            preserve_host: config.preserve_host,
        })
    }

    /// Picks the backend for the next attempt among those in rotation, or `None` if there is
    /// none (the caller answers 503 at once).
    pub fn pick(&self, client_ip: IpAddr, headers: &HeaderMap) -> Option<&Arc<Backend>> {
        match self.strategy {
            Strategy::RoundRobin => self.pick_round_robin(),
            Strategy::LeastConnections => self.pick_least_connections(),
            Strategy::IpHash => self.pick_hashed(&ring::key_of_ip(client_ip)),
            Strategy::HeaderHash => match self.hash_header.as_ref().and_then(|h| headers.get(h)) {
                Some(value) => self.pick_hashed(value.as_bytes()),
                None => self.pick_hashed(&ring::key_of_ip(client_ip)),
            },
        }
    }

    /// Like [`pick`](Self::pick), but never one of `tried` (a retry goes to another backend).
    pub fn pick_other(&self, client_ip: IpAddr, headers: &HeaderMap, tried: &[Arc<Backend>]) -> Option<&Arc<Backend>> {
        if tried.is_empty() {
            return self.pick(client_ip, headers);
        }
        let fresh = |b: &Arc<Backend>| b.in_rotation() && !tried.iter().any(|t| Arc::ptr_eq(t, b));
        match self.strategy {
            // Hashing keeps its order on the ring: the next usable point.
            Strategy::IpHash | Strategy::HeaderHash => {
                let key = match self.hash_header.as_ref().and_then(|h| headers.get(h)) {
                    Some(v) if self.strategy == Strategy::HeaderHash => v.as_bytes().to_vec(),
                    _ => ring::key_of_ip(client_ip),
                };
                self.ring.lookup(&key, |i| fresh(&self.backends[i])).map(|i| &self.backends[i])
            }
            _ => {
                let load = |b: &Backend| b.in_flight.load(Ordering::Relaxed) as f64 / f64::from(b.weight);
                self.backends.iter().filter(|b| fresh(b)).min_by(|a, b| load(a).total_cmp(&load(b)))
            }
        }
    }

    /// Passive health: records an attempt's outcome on `backend`; after
    /// `consecutive_failures` failures in a row it is ejected, unless that would put more than
    /// `max_ejected_percent` of the backends out at once.
    pub fn record_outcome(&self, backend: &Backend, failed: bool) {
        if !failed {
            backend.consecutive_failures.store(0, Ordering::Relaxed);
            return;
        }
        let threshold = self.outlier.consecutive_failures;
        let failures = backend.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if threshold == 0 || failures < threshold || backend.is_ejected() {
            return;
        }
        let ejected = self.backends.iter().filter(|b| b.is_ejected()).count();
        let allowed = self.backends.len() * self.outlier.max_ejected_percent as usize / 100;
        if ejected + 1 > allowed.max(if self.backends.len() > 1 { 1 } else { 0 }) {
            return; // ejecting it would leave too few backends
        }
        let n = backend.ejections.fetch_add(1, Ordering::Relaxed);
        let length = self.outlier.base_ejection.0.saturating_mul(1 << n.min(16)).min(self.outlier.max_ejection.0);
        backend.ejected_until_ms.store(now_ms() + length.as_millis() as u64, Ordering::Relaxed);
        backend.consecutive_failures.store(0, Ordering::Relaxed);
        if let Some(c) = &backend.ejections_total {
            c.inc();
        }
        backend.refresh_up_gauge();
        tracing::warn!(
            upstream = &*self.name,
            backend = &*backend.label,
            failures,
            ejected_for_ms = length.as_millis() as u64,
            "backend ejected after failing in a row"
        );
    }

    fn pick_round_robin(&self) -> Option<&Arc<Backend>> {
        let len = self.schedule.len();
        // Skip backends out of rotation; after one full cycle there is none.
        for _ in 0..len {
            let n = self.cursor.fetch_add(1, Ordering::Relaxed);
            let b = &self.backends[self.schedule[n % len]];
            if b.in_rotation() {
                return Some(b);
            }
        }
        None
    }

    /// Power of two choices: of two distinct backends drawn at random, the one in rotation with
    /// fewer in-flight requests per unit of weight.
    fn pick_least_connections(&self) -> Option<&Arc<Backend>> {
        let n = self.backends.len();
        let load = |b: &Backend| b.in_flight.load(Ordering::Relaxed) as f64 / f64::from(b.weight);
        if n >= 2 {
            let mut rng = rand::rng();
            let i = rng.random_range(0..n);
            let j = (i + rng.random_range(1..n)) % n;
            let (a, b) = (&self.backends[i], &self.backends[j]);
            match (a.in_rotation(), b.in_rotation()) {
                (true, true) => return Some(if load(b) < load(a) { b } else { a }),
                (true, false) => return Some(a),
                (false, true) => return Some(b),
                (false, false) => {}
            }
        }
        // Both draws out of rotation, or a single backend: the least loaded of those left.
        self.backends.iter().filter(|b| b.in_rotation()).min_by(|a, b| load(a).total_cmp(&load(b)))
    }

    fn pick_hashed(&self, key: &[u8]) -> Option<&Arc<Backend>> {
        self.ring.lookup(key, |i| self.backends[i].in_rotation()).map(|i| &self.backends[i])
    }

    /// A one-backend pool for tests and fuzzing.
    #[doc(hidden)]
    pub fn for_tests(name: &str) -> Self {
        let cfg = UpstreamConfig {
            backends: vec![BackendConfig { url: "http://127.0.0.1:1".into(), weight: 1 }],
            ..Default::default()
        };
        Self::new(name, &cfg, None).expect("valid test pool")
    }
}

impl Backend {
    fn new(config: &BackendConfig) -> Result<Self, String> {
        let url = crate::config::values::check_url(&config.url)?;
        let host = url.host_str().unwrap_or_default();
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        };
        let base_path = url.path().trim_end_matches('/').to_owned();
        // Userinfo is never part of the label: labels end up in metrics and logs.
        let label = format!("http://{authority}{base_path}");
        Ok(Self {
            label: label.into(),
            scheme: Scheme::HTTP,
            authority: authority.parse().map_err(|e| format!("{:?}: {e}", config.url))?,
            base_path,
            host_header: HeaderValue::from_str(&authority).map_err(|e| format!("{:?}: {e}", config.url))?,
            weight: config.weight,
            in_flight: AtomicU64::new(0),
            last_error: ArcSwapOption::empty(),
            healthy: AtomicBool::new(true),
            up: None,
            consecutive_failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            ejections_total: None,
        })
    }

    /// Whether the backend may be chosen: healthy and not ejected.
    pub fn in_rotation(&self) -> bool {
        self.healthy.load(Ordering::Relaxed) && !self.is_ejected()
    }

    /// Whether passive health has ejected the backend for now.
    pub fn is_ejected(&self) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until != 0 && now_ms() < until
    }

    /// The active health checks' verdict.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Records an active health verdict; returns whether it changed. A backend that comes back
    /// healthy is also un-ejected (it was restarted or repaired: its old failures are moot).
    pub fn set_healthy(&self, healthy: bool) -> bool {
        let changed = self.healthy.swap(healthy, Ordering::Relaxed) != healthy;
        if changed && healthy {
            self.lift_ejection();
        }
        self.refresh_up_gauge();
        changed
    }

    /// Ends a passive ejection; returns whether there was one.
    pub fn lift_ejection(&self) -> bool {
        let was = self.is_ejected();
        self.ejected_until_ms.store(0, Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.refresh_up_gauge();
        was
    }

    /// Sets `rustygate_backend_up` from the rotation state (health and ejection).
    pub fn refresh_up_gauge(&self) {
        if let Some(g) = &self.up {
            g.set(i64::from(self.in_rotation()));
        }
    }
}

/// NGINX's smooth weighted round robin, unrolled into one full cycle: every backend appears
/// `weight` times, spread as evenly as the weights allow (1:2:3 → c b a c b c …).
pub fn smooth_weighted_schedule(weights: &[u32]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|w| i64::from(*w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(weights) {
            *c += i64::from(*w);
        }
        let (best, _) =
            current.iter().enumerate().max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i))).expect("non-empty");
        current[best] -= total;
        schedule.push(best);
    }
    schedule
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_respects_weights_and_interleaves() {
        let s = smooth_weighted_schedule(&[1, 2, 3]);
        assert_eq!(s.len(), 6);
        for (i, w) in [1, 2, 3].iter().enumerate() {
            assert_eq!(s.iter().filter(|x| **x == i).count(), *w);
        }
        // Smooth: the heaviest backend never gets three in a row.
        assert!(!s.windows(3).any(|w| w.iter().all(|x| *x == 2)));
        assert_eq!(smooth_weighted_schedule(&[1, 1, 1]), vec![0, 1, 2]);
    }

    #[test]
    fn pick_cycles_through_the_schedule() {
        let cfg = UpstreamConfig {
            backends: ["http://a:1", "http://b:2/base/"]
                .iter()
                .map(|u| BackendConfig { url: (*u).into(), weight: 1 })
                .collect(),
            ..Default::default()
        };
        let pool = UpstreamPool::new("u", &cfg, None).unwrap();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let h = HeaderMap::new();
        let picks: Vec<String> = (0..4).map(|_| pool.pick(ip, &h).unwrap().authority.to_string()).collect();
        assert_eq!(picks, ["a:1", "b:2", "a:1", "b:2"]);
        assert_eq!(pool.backends[1].base_path, "/base");
        // Out of rotation: skipped; none left: no pick.
        pool.backends[0].set_healthy(false);
        let picks: Vec<String> = (0..3).map(|_| pool.pick(ip, &h).unwrap().authority.to_string()).collect();
        assert_eq!(picks, ["b:2", "b:2", "b:2"]);
        pool.backends[1].set_healthy(false);
        assert!(pool.pick(ip, &h).is_none());
    }

    fn pool(strategy: Strategy, n: usize) -> UpstreamPool {
        let cfg = UpstreamConfig {
            strategy,
            hash_header: Some("x-user".into()),
            backends: (0..n).map(|i| BackendConfig { url: format!("http://b{i}:80"), weight: 1 }).collect(),
            ..Default::default()
        };
        UpstreamPool::new("u", &cfg, None).unwrap()
    }

    #[test]
    fn least_connections_avoids_the_busy_backend() {
        let p = pool(Strategy::LeastConnections, 3);
        p.backends[0].in_flight.store(50, Ordering::Relaxed);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let h = HeaderMap::new();
        let busy = (0..1000).filter(|_| std::ptr::eq(&**p.pick(ip, &h).unwrap(), &*p.backends[0])).count();
        // The two draws are distinct backends, so b0 always meets an idle one and loses.
        assert_eq!(busy, 0);
        p.backends[1].set_healthy(false);
        p.backends[2].set_healthy(false);
        assert!(std::ptr::eq(&**p.pick(ip, &h).unwrap(), &*p.backends[0]), "the only one left");
    }

    #[test]
    fn hashing_is_sticky_and_skips_backends_out_of_rotation() {
        let p = pool(Strategy::HeaderHash, 4);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(HeaderName::from_static("x-user"), HeaderValue::from_static("alice"));
        let first = p.pick(ip, &h).unwrap().label.clone();
        assert!((0..20).all(|_| p.pick(ip, &h).unwrap().label == first));
        let i = p.backends.iter().position(|b| b.label == first).unwrap();
        p.backends[i].set_healthy(false);
        let moved = p.pick(ip, &h).unwrap().label.clone();
        assert_ne!(moved, first);
        p.backends[i].set_healthy(true);
        assert_eq!(p.pick(ip, &h).unwrap().label, first, "back when it returns");
    }
}
