//! Compiling a validated configuration into a runtime snapshot, taking what the reload
//! [`Plan`] carries over; and starting the new parts' background tasks.

use std::{collections::HashMap, sync::Arc};

use super::{
    plan::Plan,
    snapshot::{LimitGroup, Runtime},
};
use crate::{
    config::{
        Config, ConfigError, ConfigIssue, RateLimitScope, UpstreamConfig,
        values::{self, Parsed},
    },
    filters::{
        client_cert::ClientCertFilter,
        cors::CorsPolicy,
        hsts::Hsts,
        jwt::{JwtFilter, JwtPolicy},
        rate_limit::{self, RateLimit, RateLimitFilter},
    },
    metrics::Metrics,
    pipeline::filter::{Filter, FilterFactory},
    plugins::PluginFilter,
    routing::{Route, RouteTable},
    upstream::UpstreamPool,
};

impl Runtime {
    /// Compiles a validated configuration, resolving each route's metric series in `metrics`.
    /// What `plan` carries over from the running snapshot (pools with their health state, JWT
    /// policies with their key sets, rate-limit buckets) is taken as it is; the rest is built.
    /// A new JWT policy with a JWKS starts fetching it on `background` (its task stops if the
    /// compile fails); health checks and eviction timers start with [`Runtime::start`]. Fails
    /// only on problems validation could not see (such as an unreadable key file).
    /// `extra_filters` add filters of the embedding program's to the routes they choose.
    pub fn compile(
        config: Config,
        generation: u64,
        metrics: &Metrics,
        background: &tokio::runtime::Handle,
        plan: &Plan,
        extra_filters: &[FilterFactory],
    ) -> Result<Self, ConfigError> {
        let mut issues = Vec::new();
        let mut upstreams: Vec<Arc<UpstreamPool>> = Vec::new();
        for (name, up) in &config.upstreams {
            if let Some(pool) = plan.pools.get(name) {
                upstreams.push(pool.clone());
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
            if let Some(p) = plan.jwt.get(name) {
                jwt_policies.insert(name.as_str(), p.clone());
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
        // New policies' instances by route; carried policies keep their group as it is.
        let mut new_limits: HashMap<String, HashMap<String, Arc<RateLimit>>> = HashMap::new();
        #[cfg(feature = "wasm")]
        let plugin_registry = plan.plugins.clone().unwrap_or_default();
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
            let carried = limit_name
                .and_then(|n| plan.limits.get(n))
                .and_then(|group| group.instances.get(rc.display_name()).cloned());
            let rate_limit = match limit_name.and_then(|n| config.rate_limits.get_key_value(n)) {
                None => None,
                Some(_) if carried.is_some() => carried,
                Some((name, policy)) => {
                    let existing = (policy.scope == RateLimitScope::Shared)
                        .then(|| shared_limits.get(name.as_str()).cloned())
                        .flatten();
                    match existing.map(Ok).unwrap_or_else(|| RateLimit::new(name, policy).map(Arc::new)) {
                        Ok(limit) => {
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
            if let (Some(name), Some(limit)) = (limit_name, &rate_limit)
                && !plan.limits.contains_key(name)
            {
                new_limits.entry(name.to_owned()).or_default().insert(rc.display_name().to_owned(), limit.clone());
            }
            let kept_inline = plan.inline_pools.get(rc.display_name()).filter(|_| rc.upstream.is_none()).cloned();
            let pool = if let Some(name) = &rc.upstream {
                upstreams.iter().find(|u| &*u.name == name).cloned()
            } else if let Some(pool) = kept_inline {
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
            let route_metrics = metrics.for_route(rc.display_name());
            let auth = auth_name.and_then(|name| jwt_policies.get(name).cloned());
            #[cfg(feature = "wasm")]
            let plugins = Arc::new(plugin_chain(&config, rc, &plugin_slots, metrics));
            #[cfg(not(feature = "wasm"))]
            let plugins = Arc::new(crate::plugins::PluginChain);
            // The route's chain, in the order its phases run: the client-certificate requirement
            // (the connection's identity, known first), CORS preflights (they carry
            // no credentials), JWT (nothing of an unauthenticated request goes further), the
            // rate limit (after auth, so that it can key on a claim), then the plugins.
            let mut filters: Vec<Arc<dyn Filter>> = Vec::new();
            if rc.hsts {
                filters.push(Arc::new(Hsts));
            }
            if let Some(cc) = rc.client_cert.as_ref().and_then(ClientCertFilter::new) {
                filters.push(Arc::new(cc));
            }
            if let Some(cors) = cors_name.and_then(|name| cors_policies.get(name).cloned()) {
                filters.push(cors);
            }
            if let Some(policy) = &auth {
                filters.push(Arc::new(JwtFilter::new(policy.clone(), metrics, rc.display_name())));
            }
            if let Some(limit) = &rate_limit {
                filters.push(Arc::new(RateLimitFilter::new(limit.clone(), metrics, rc.display_name())));
            }
            if !plugins.is_empty() {
                filters.push(Arc::new(PluginFilter::new(plugins.clone(), auth.clone(), header_rules.clone())));
            }
            filters.extend(extra_filters.iter().filter_map(|factory| factory(rc)));
            routes.push(Arc::new(Route {
                name: rc.display_name().into(),
                prefix: values::trim_prefix(&rc.path).to_owned(),
                host: rc.host.as_deref().and_then(values::normalize_host),
                methods: parsed_all(&rc.methods, |j| format!("routes[{i}].methods[{j}]"), &mut issues),
                strip_prefix: rc.strip_prefix,
                filters,
                metrics: route_metrics,
                timeout: rc.timeout.map(|t| t.0).unwrap_or(upstream.timeout),
                request_timeout: rc.request_timeout.map(|t| t.0).or(upstream.request_timeout),
                upstream,
                plugins,
                allow_encoded_slashes: rc.allow_encoded_slashes,
                header_rules: header_rules.clone(),
                websocket: rc.websocket.then(|| {
                    let policy = crate::websocket::Policy {
                        idle_timeout: rc
                            .websocket_idle_timeout
                            .map_or(crate::config::DEFAULT_WEBSOCKET_IDLE_TIMEOUT, |d| d.0),
                        max_duration: rc.websocket_max_duration.map(|d| d.0),
                        max_frame_size: rc
                            .websocket_max_frame_size
                            .map_or(crate::config::DEFAULT_WEBSOCKET_MAX_FRAME, |s| s.0),
                    };
                    Arc::new(crate::websocket::RouteSessions::new(policy, rc.display_name(), metrics))
                }),
            }));
        }
        if !issues.is_empty() {
            return Err(ConfigError { source_name: "<compile>".into(), issues });
        }
        #[cfg(feature = "wasm")]
        plugin_registry.commit(plugin_slots);
        let mut limits: HashMap<String, Arc<LimitGroup>> =
            plan.limits.iter().map(|(name, group)| (name.clone(), group.clone())).collect();
        for (name, instances) in new_limits {
            limits.insert(name, Arc::new(LimitGroup { instances, eviction: Default::default() }));
        }
        Ok(Self {
            generation,
            max_body_size: config.server.max_body_size.0,
            trusted_proxies: parsed_all(
                &config.server.trusted_proxies,
                |i| format!("server.trusted_proxies[{i}]"),
                &mut issues,
            ),
            access_log: config.log.access_log,
            log_query: config.log.include_query,
            client: config.server.upstream_client,
            client_body_timeout: config.server.client_body_timeout.0,
            query_token_params: config.auth.values().filter_map(|p| p.query_param.clone()).collect(),
            max_header_size: config.server.max_header_size.0 as usize,
            max_request_head_size: config.server.max_request_head_size.0 as usize,
            max_connections: config.server.max_connections as usize,
            max_connections_per_ip: config.server.max_connections_per_ip as usize,
            redirect_https: config.server.redirect_https && config.server.tls.is_some(),
            routes: RouteTable::new(routes),
            upstreams,
            jwt: jwt_policies.into_iter().map(|(name, p)| (name.to_owned(), p)).collect(),
            limits,
            rate_limit_keys: metrics.rate_limit_keys.clone(),
            #[cfg(feature = "wasm")]
            plugins: plugin_registry,
            config: Arc::new(config),
        })
    }

    /// Starts what the snapshot's new parts run in the background: the health checks of its
    /// new pools and the eviction timers of its new rate-limit policies (carried parts' tasks
    /// already run).
    pub fn start(&self, background: &tokio::runtime::Handle) {
        for pool in &self.upstreams {
            if pool.tasks.is_empty() {
                crate::upstream::health::spawn(background, pool);
            }
        }
        for (name, group) in &self.limits {
            if !group.eviction.is_empty() {
                continue;
            }
            let Some(policy) = self.config.rate_limits.get(name) else { continue };
            let mut instances: Vec<std::sync::Weak<RateLimit>> = Vec::new();
            for limit in group.instances.values() {
                if !instances.iter().any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(limit))) {
                    instances.push(Arc::downgrade(limit));
                }
            }
            let gauge = self.rate_limit_keys.with_label_values(&[name]);
            let interval = rate_limit::eviction_interval(policy);
            rate_limit::spawn_eviction(background, &group.eviction, instances, gauge, interval);
        }
    }
}

/// The parsed values of a list; one that did not parse (only possible for a configuration that
/// skipped validation) is an issue at its path, never dropped.
fn parsed_all<T: Clone>(list: &[Parsed<T>], path: impl Fn(usize) -> String, issues: &mut Vec<ConfigIssue>) -> Vec<T> {
    let mut out = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        match item.get() {
            Ok(value) => out.push(value.clone()),
            Err(e) => issues.push(ConfigIssue::at(path(i), e)),
        }
    }
    out
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
