//! The runtime snapshot: everything the request path needs, compiled once from a validated
//! [`Config`] and never mutated afterwards. The gateway holds the current snapshot in an
//! `ArcSwap`; each request loads it once and uses it to the end, so a reload (swap) never
//! mixes two configurations within one request.

use std::{collections::HashMap, net::IpAddr, sync::Arc};

use crate::{
    config::{Config, ConfigError, ConfigIssue, RateLimitScope, UpstreamClient, UpstreamConfig, validate},
    filters::{
        cors::CorsPolicy,
        jwt::JwtPolicy,
        rate_limit::{self, RateLimit},
    },
    metrics::Metrics,
    routing::{Route, RouteTable},
    upstream::UpstreamPool,
};

/// An immutable, compiled configuration.
#[derive(Debug)]
pub struct Runtime {
    /// Increases by one with every configuration applied.
    pub generation: u64,
    /// The configuration this was compiled from (served, redacted, by `/admin/config`).
    pub config: Arc<Config>,
    /// Routes, best match first.
    pub routes: RouteTable,
    /// Every upstream pool, named and inline.
    pub upstreams: Vec<Arc<UpstreamPool>>,
    /// Largest request body accepted.
    pub max_body_size: u64,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Write access log lines.
    pub access_log: bool,
    /// Keep the query string in the access log's `path`.
    pub log_query: bool,
    /// The forwarding client.
    pub client: UpstreamClient,
}

impl Runtime {
    /// Compiles a validated configuration, resolving each route's metric series in `metrics`
    /// and starting policy timers (JWKS refresh, rate-limit eviction) on `background`. Fails
    /// only on problems validation could not see (such as an unreadable key file).
    pub fn compile(
        config: Config,
        generation: u64,
        metrics: &Metrics,
        background: &tokio::runtime::Handle,
    ) -> Result<Self, ConfigError> {
        let mut issues = Vec::new();
        let mut upstreams: Vec<Arc<UpstreamPool>> = Vec::new();
        for (name, up) in &config.upstreams {
            match UpstreamPool::new(name, up, Some(metrics)) {
                Ok(pool) => upstreams.push(Arc::new(pool)),
                Err(e) => issues.push(ConfigIssue::at(format!("upstreams.{name}"), e)),
            }
        }
        // One compiled policy per name, shared by every route that names it.
        let mut cors_policies = std::collections::HashMap::new();
        for (name, policy) in &config.cors {
            match CorsPolicy::new(name, policy) {
                Ok(p) => {
                    cors_policies.insert(name.as_str(), Arc::new(p));
                }
                Err(e) => issues.push(ConfigIssue::at(format!("cors.{name}"), e)),
            }
        }
        let mut jwt_policies = HashMap::new();
        for (name, policy) in &config.auth {
            match JwtPolicy::new(name, policy, background, &metrics.jwks_fetches) {
                Ok(p) => {
                    jwt_policies.insert(name.as_str(), Arc::new(p));
                }
                Err(e) => issues.push(ConfigIssue::at(format!("auth.{name}"), e)),
            }
        }
        // Rate limits: one instance per shared policy, created on first use; one per route
        // with `scope: route`. Every instance of a policy is evicted by one timer.
        let mut shared_limits: HashMap<&str, Arc<RateLimit>> = HashMap::new();
        let mut limit_instances: HashMap<&str, Vec<std::sync::Weak<RateLimit>>> = HashMap::new();
        let mut routes = Vec::with_capacity(config.routes.len());
        for (i, rc) in config.routes.iter().enumerate() {
            let [auth_name, limit_name, cors_name] = config.route_policies(rc);
            let rate_limit = match limit_name.and_then(|n| config.rate_limits.get_key_value(n)) {
                None => None,
                Some((name, policy)) => {
                    let existing = (policy.scope == RateLimitScope::Shared)
                        .then(|| shared_limits.get(name.as_str()).cloned())
                        .flatten();
                    match existing.map(Ok).unwrap_or_else(|| RateLimit::new(name, policy).map(Arc::new)) {
                        Ok(limit) => {
                            let instances = limit_instances.entry(name.as_str()).or_default();
                            if !instances.iter().any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(&limit))) {
                                instances.push(Arc::downgrade(&limit));
                            }
                            if policy.scope == RateLimitScope::Shared {
                                shared_limits.insert(name.as_str(), limit.clone());
                            }
                            Some(limit)
                        }
                        Err(e) => {
                            issues.push(ConfigIssue::at(format!("rate_limits.{name}"), e));
                            None
                        }
                    }
                }
            };
            let pool = if let Some(name) = &rc.upstream {
                upstreams.iter().find(|u| &*u.name == name).cloned()
            } else {
                // Inline `backend:` / `backends:` form an anonymous upstream named after the route.
                let inline = UpstreamConfig {
                    strategy: rc.strategy.unwrap_or_default(),
                    backends: match (&rc.backend, &rc.backends) {
                        (Some(url), _) => vec![crate::config::BackendConfig { url: url.clone(), weight: 1 }],
                        (None, Some(list)) => list.clone(),
                        (None, None) => Vec::new(),
                    },
                    ..UpstreamConfig::default()
                };
                match UpstreamPool::new(rc.display_name(), &inline, Some(metrics)) {
                    Ok(pool) => {
                        let pool = Arc::new(pool);
                        upstreams.push(pool.clone());
                        Some(pool)
                    }
                    Err(e) => {
                        issues.push(ConfigIssue::at(format!("routes[{i}]"), e));
                        None
                    }
                }
            };
            let Some(upstream) = pool else {
                issues.push(ConfigIssue::at(format!("routes[{i}]"), "route has no upstream"));
                continue;
            };
            routes.push(Arc::new(Route {
                name: rc.display_name().into(),
                prefix: validate::trim_prefix(&rc.path).to_owned(),
                host: rc.host.as_deref().map(validate::normalize_host),
                methods: rc.methods.iter().filter_map(|m| m.to_ascii_uppercase().parse().ok()).collect(),
                strip_prefix: rc.strip_prefix,
                cors: cors_name.and_then(|name| cors_policies.get(name).cloned()),
                auth: auth_name.and_then(|name| jwt_policies.get(name).cloned()),
                metrics: metrics.for_route(rc.display_name(), auth_name.is_some(), rate_limit.is_some()),
                rate_limit,
                timeout: rc.timeout.map(|t| t.0).unwrap_or(upstream.timeout),
                request_timeout: rc.request_timeout.map(|t| t.0).or(upstream.request_timeout),
                upstream,
            }));
        }
        if !issues.is_empty() {
            return Err(ConfigError { source_name: "<compile>".into(), issues });
        }
        for pool in &upstreams {
            crate::upstream::health::spawn(background, pool);
        }
        for (name, instances) in limit_instances {
            let gauge = metrics.rate_limit_keys.with_label_values(&[name]);
            let interval = rate_limit::eviction_interval(&config.rate_limits[name]);
            rate_limit::spawn_eviction(background, instances, gauge, interval);
        }
        Ok(Self {
            generation,
            max_body_size: config.server.max_body_size.0,
            trusted_proxies: config.server.trusted_proxies.iter().filter_map(|c| validate::parse_cidr(c)).collect(),
            access_log: config.log.access_log,
            log_query: config.log.include_query,
            client: config.server.upstream_client,
            routes: RouteTable::new(routes),
            upstreams,
            config: Arc::new(config),
        })
    }

    /// Whether a peer address belongs to a trusted proxy.
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }
}
