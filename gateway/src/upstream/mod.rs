//! Upstream pools: the backends of an upstream, and the choice of one per attempt.
//! Round robin follows a schedule precomputed at compile time (smooth weighted round robin, as
//! NGINX does it), so a pick is one atomic increment and weights interleave instead of bursting.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use actix_web::http::{
    header::HeaderValue,
    uri::{Authority, Scheme},
};
use arc_swap::ArcSwapOption;

use crate::config::{BackendConfig, Strategy, UpstreamConfig};

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
}

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
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Default per-attempt timeout for the response head.
    pub timeout: Duration,
    /// Send the client's `Host` (true) or the backend's authority (false).
    pub preserve_host: bool,
}

impl UpstreamPool {
    /// Builds a pool from its (validated) configuration.
    pub fn new(name: &str, config: &UpstreamConfig) -> Result<Self, String> {
        let backends = config.backends.iter().map(Backend::new).collect::<Result<Vec<_>, _>>()?;
        let weights: Vec<u32> = backends.iter().map(|b| b.weight).collect();
        Ok(Self {
            name: name.into(),
            strategy: config.strategy,
            schedule: smooth_weighted_schedule(&weights),
            backends: backends.into_iter().map(Arc::new).collect(),
            cursor: AtomicUsize::new(0),
            connect_timeout: config.connect_timeout.0,
            timeout: config.timeout.0,
            preserve_host: config.preserve_host,
        })
    }

    /// Picks the backend for the next attempt, or `None` if the pool has none.
    pub fn pick(&self) -> Option<&Arc<Backend>> {
        if self.schedule.is_empty() {
            return None;
        }
        let n = self.cursor.fetch_add(1, Ordering::Relaxed);
        self.backends.get(self.schedule[n % self.schedule.len()])
    }

    /// A one-backend pool for unit tests elsewhere in the crate.
    #[cfg(test)]
    pub(crate) fn for_tests(name: &str) -> Self {
        let cfg = UpstreamConfig {
            backends: vec![BackendConfig { url: "http://127.0.0.1:1".into(), weight: 1 }],
            ..Default::default()
        };
        Self::new(name, &cfg).expect("valid test pool")
    }
}

impl Backend {
    fn new(config: &BackendConfig) -> Result<Self, String> {
        let url = crate::config::validate::check_url(&config.url)?;
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
        })
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
        let pool = UpstreamPool::new("u", &cfg).unwrap();
        let picks: Vec<String> = (0..4).map(|_| pool.pick().unwrap().authority.to_string()).collect();
        assert_eq!(picks, ["a:1", "b:2", "a:1", "b:2"]);
        assert_eq!(pool.backends[1].base_path, "/base");
    }
}
