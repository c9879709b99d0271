//! The runtime snapshot: everything the request path needs, compiled once from a validated
//! [`Config`] and never mutated afterwards. The gateway holds the current snapshot in an
//! `ArcSwap`; each request loads it once and uses it to the end, so a reload (swap) never
//! mixes two configurations within one request.

use std::{collections::HashMap, net::IpAddr, sync::Arc};

use crate::{
    config::{Config, ConfigError, ConfigIssue, RateLimitScope, UpstreamClient, UpstreamConfig, values},
    filters::{
        cors::CorsPolicy,
        jwt::{JwtFilter, JwtPolicy},
        rate_limit::{self, RateLimit, RateLimitFilter},
    },
    metrics::Metrics,
    pipeline::filter::Filter,
    plugins::PluginFilter,
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
    /// `server.client_body_timeout`.
    pub client_body_timeout: std::time::Duration,
    /// Every JWT policy's `query_param`: their values are redacted from logged queries on
    /// every route.
    pub query_token_params: Vec<String>,
    /// `server.max_header_size`.
    pub max_header_size: usize,
    /// `server.max_request_head_size`.
    pub max_request_head_size: usize,
    /// `server.max_connections`.
    pub max_connections: usize,
    /// `server.max_connections_per_ip` (0: off).
    pub max_connections_per_ip: usize,
    /// JWT policies by name (a reload keeps the ones whose definition did not change, with
    /// their key sets and refresh timers).
    jwt: HashMap<String, Arc<JwtPolicy>>,
    /// Rate-limit policy → route name → its instance (a shared policy: the same one for every
    /// route). A reload keeps a policy's buckets when its definition and the routes using it did
    /// not change.
    limits: HashMap<String, HashMap<String, Arc<RateLimit>>>,
    /// The plugin manager, passed from snapshot to snapshot (slots, compiled modules, watcher).
    #[cfg(feature = "wasm")]
    pub plugins: Arc<crate::plugins::PluginRegistry>,
}

impl Runtime {
    /// Compiles a validated configuration, resolving each route's metric series in `metrics`
    /// and starting policy timers (JWKS refresh, rate-limit eviction) and health checks on
    /// `background`. Fails only on problems validation could not see (such as an unreadable
    /// key file).
    ///
    /// On a reload, `previous` is the running snapshot: upstream pools (with their health state
    /// and checks), JWT policies (with their key sets) and rate-limit buckets whose definition
    /// did not change are carried over rather than rebuilt, and their timers keep running.
    pub fn compile(
        config: Config,
        generation: u64,
        metrics: &Metrics,
        background: &tokio::runtime::Handle,
        previous: Option<&Runtime>,
    ) -> Result<Self, ConfigError> {
        let mut issues = Vec::new();
        let mut upstreams: Vec<Arc<UpstreamPool>> = Vec::new();
        // Pools taken over from `previous`: their health checks already run.
        let mut carried_pools: Vec<Arc<UpstreamPool>> = Vec::new();
        for (name, up) in &config.upstreams {
            if let Some(pool) = previous.and_then(|p| p.unchanged_pool(name, |c| c.upstreams.get(name) == Some(up))) {
                carried_pools.push(pool.clone());
                upstreams.push(pool);
                continue;
            }
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
            let kept = previous
                .filter(|p| p.config.auth.get(name) == Some(policy))
                .and_then(|p| p.jwt.get(name.as_str()).cloned());
            if let Some(p) = kept {
                jwt_policies.insert(name.as_str(), p);
                continue;
            }
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
        let mut limits: HashMap<String, HashMap<String, Arc<RateLimit>>> = HashMap::new();
        // Policies whose buckets a reload keeps: same definition, same routes using them.
        let mut users: HashMap<&str, Vec<&str>> = HashMap::new();
        for rc in &config.routes {
            if let [_, Some(limit), _] = config.route_policies(rc) {
                users.entry(limit).or_default().push(rc.display_name());
            }
        }
        let carried_limits: HashMap<&str, &HashMap<String, Arc<RateLimit>>> = match previous {
            None => HashMap::new(),
            Some(p) => users
                .iter()
                .filter_map(|(name, routes)| {
                    let group = p.limits.get(*name)?;
                    let same_routes = group.len() == routes.len() && routes.iter().all(|r| group.contains_key(*r));
                    (p.config.rate_limits.get(*name) == config.rate_limits.get(*name) && same_routes)
                        .then_some((*name, group))
                })
                .collect(),
        };
        #[cfg(feature = "wasm")]
        let plugin_registry = previous.map(|p| p.plugins.clone()).unwrap_or_default();
        #[cfg(feature = "wasm")]
        let plugin_slots = plugin_registry.resolve(&config, &mut issues);
        // Claim headers of every policy are removed on every route (docs/security.md).
        let mut claim_headers: Vec<crate::http_types::HeaderName> = Vec::new();
        for name in config.auth.values().flat_map(|p| p.forward_claims.values()) {
            if let Ok(name) = crate::http_types::HeaderName::from_bytes(name.as_bytes())
                && !claim_headers.contains(&name)
            {
                claim_headers.push(name);
            }
        }
        let header_rules = Arc::new(crate::headers::RequestHeaderRules {
            claim_headers,
            keep_underscores: config.server.underscores_in_headers,
        });
        let mut routes = Vec::with_capacity(config.routes.len());
        for (i, rc) in config.routes.iter().enumerate() {
            let [auth_name, limit_name, cors_name] = config.route_policies(rc);
            let carried =
                limit_name.and_then(|n| carried_limits.get(n)).and_then(|group| group.get(rc.display_name()).cloned());
            let rate_limit = match limit_name.and_then(|n| config.rate_limits.get_key_value(n)) {
                None => None,
                Some(_) if carried.is_some() => carried,
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
            if let (Some(name), Some(limit)) = (limit_name, &rate_limit) {
                limits.entry(name.to_owned()).or_default().insert(rc.display_name().to_owned(), limit.clone());
            }
            let kept_inline = previous.filter(|_| rc.upstream.is_none()).and_then(|p| {
                p.unchanged_pool(rc.display_name(), |c| {
                    c.routes.iter().any(|old| {
                        old.display_name() == rc.display_name()
                            && old.upstream.is_none()
                            && (&old.backend, &old.backends, old.strategy) == (&rc.backend, &rc.backends, rc.strategy)
                    })
                })
            });
            let pool = if let Some(name) = &rc.upstream {
                upstreams.iter().find(|u| &*u.name == name).cloned()
            } else if let Some(pool) = kept_inline {
                carried_pools.push(pool.clone());
                upstreams.push(pool.clone());
                Some(pool)
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
            let route_metrics = metrics.for_route(rc.display_name(), auth_name.is_some(), rate_limit.is_some());
            let auth = auth_name.and_then(|name| jwt_policies.get(name).cloned());
            #[cfg(feature = "wasm")]
            let plugins = Arc::new(plugin_chain(&config, rc, &plugin_slots, metrics));
            #[cfg(not(feature = "wasm"))]
            let plugins = Arc::new(crate::plugins::PluginChain);
            // The route's chain, in the order its phases run: CORS preflights first (they carry
            // no credentials), JWT (nothing of an unauthenticated request goes further), the
            // rate limit (after auth, so that it can key on a claim), then the plugins.
            let mut filters: Vec<Arc<dyn Filter>> = Vec::new();
            if let Some(cors) = cors_name.and_then(|name| cors_policies.get(name).cloned()) {
                filters.push(cors);
            }
            if let Some(policy) = &auth {
                filters.push(Arc::new(JwtFilter::new(policy.clone(), route_metrics.auth_rejected.clone())));
            }
            if let (Some(limit), Some(limited)) = (&rate_limit, &route_metrics.rate_limited) {
                filters.push(Arc::new(RateLimitFilter::new(limit.clone(), limited.clone())));
            }
            if !plugins.is_empty() {
                filters.push(Arc::new(PluginFilter::new(plugins.clone(), auth.clone(), header_rules.clone())));
            }
            routes.push(Arc::new(Route {
                name: rc.display_name().into(),
                prefix: values::trim_prefix(&rc.path).to_owned(),
                host: rc.host.as_deref().and_then(values::normalize_host),
                methods: rc.methods.iter().filter_map(|m| m.to_ascii_uppercase().parse().ok()).collect(),
                strip_prefix: rc.strip_prefix,
                filters,
                metrics: route_metrics,
                timeout: rc.timeout.map(|t| t.0).unwrap_or(upstream.timeout),
                request_timeout: rc.request_timeout.map(|t| t.0).or(upstream.request_timeout),
                upstream,
                plugins,
                allow_encoded_slashes: rc.allow_encoded_slashes,
                header_rules: header_rules.clone(),
            }));
        }
        if !issues.is_empty() {
            return Err(ConfigError { source_name: "<compile>".into(), issues });
        }
        #[cfg(feature = "wasm")]
        plugin_registry.commit(plugin_slots);
        for pool in &upstreams {
            if !carried_pools.iter().any(|c| Arc::ptr_eq(c, pool)) {
                crate::upstream::health::spawn(background, pool);
            }
        }
        for (name, instances) in limit_instances {
            let gauge = metrics.rate_limit_keys.with_label_values(&[name]);
            let interval = rate_limit::eviction_interval(&config.rate_limits[name]);
            rate_limit::spawn_eviction(background, instances, gauge, interval);
        }
        Ok(Self {
            generation,
            max_body_size: config.server.max_body_size.0,
            trusted_proxies: config.server.trusted_proxies.iter().filter_map(|c| values::parse_cidr(c)).collect(),
            access_log: config.log.access_log,
            log_query: config.log.include_query,
            client: config.server.upstream_client,
            client_body_timeout: config.server.client_body_timeout.0,
            query_token_params: config.auth.values().filter_map(|p| p.query_param.clone()).collect(),
            max_header_size: config.server.max_header_size.0 as usize,
            max_request_head_size: config.server.max_request_head_size.0 as usize,
            max_connections: config.server.max_connections as usize,
            max_connections_per_ip: config.server.max_connections_per_ip as usize,
            routes: RouteTable::new(routes),
            upstreams,
            jwt: jwt_policies.into_iter().map(|(name, p)| (name.to_owned(), p)).collect(),
            limits,
            #[cfg(feature = "wasm")]
            plugins: plugin_registry,
            config: Arc::new(config),
        })
    }

    /// Each plugin in use, with its state and the routes running it (`GET /admin/plugins`).
    #[cfg(feature = "wasm")]
    pub fn plugin_status(&self) -> Vec<crate::plugins::PluginStatus> {
        let routes: Vec<_> = self.routes.iter().map(|r| (&*r.name, r.plugins.names().collect())).collect();
        self.plugins.status(&routes)
    }

    /// The pool named `name`, if `unchanged(previous config)` says its definition is the same.
    fn unchanged_pool(&self, name: &str, unchanged: impl FnOnce(&Config) -> bool) -> Option<Arc<UpstreamPool>> {
        let pool = self.upstreams.iter().find(|u| &*u.name == name)?;
        unchanged(&self.config).then(|| pool.clone())
    }

    /// Whether a peer address belongs to a trusted proxy.
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }
}

/// The chain of plugins route `rc` runs, from the slots the configuration resolved (a plugin
/// that could not be loaded is already a configuration issue).
#[cfg(feature = "wasm")]
fn plugin_chain(
    config: &Config,
    rc: &crate::config::RouteConfig,
    resolved: &crate::plugins::Resolved,
    metrics: &Metrics,
) -> crate::plugins::PluginChain {
    let defaults = crate::config::PluginSettings::default();
    let chain = config
        .route_plugins(rc)
        .iter()
        .filter_map(|name| {
            let slot = resolved.slots.get(name)?;
            let settings = config.plugins.as_ref().and_then(|p| p.settings.get(name)).unwrap_or(&defaults);
            Some(crate::plugins::RoutePlugin::new(slot.clone(), settings.failure, settings.fuel, metrics))
        })
        .collect();
    crate::plugins::PluginChain::new(chain)
}
