//! The one decision a reload makes about the running snapshot's stateful parts: which upstream
//! pools (with their health state and checks), JWT policies (with their key sets and refresh)
//! and rate-limit policies (with their buckets and eviction timer) are carried over into the
//! new snapshot, and which are retired — their background tasks stopped as soon as the new
//! snapshot serves. What is neither is built new. The names logged for the reload
//! ([`ConfigDiff`]) come from the same decision.

use std::{collections::HashMap, sync::Arc};

use super::snapshot::{LimitGroup, Runtime};
use crate::{
    config::{Config, RouteConfig},
    filters::jwt::JwtPolicy,
    reload::ConfigDiff,
    upstream::UpstreamPool,
};

/// What a new snapshot takes from the running one, and what it retires.
#[derive(Debug, Default)]
pub struct Plan {
    /// Named upstream pools carried over, by upstream name.
    pub(super) pools: HashMap<String, Arc<UpstreamPool>>,
    /// Inline pools (a route's `backend:`/`backends:`) carried over, by route name.
    pub(super) inline_pools: HashMap<String, Arc<UpstreamPool>>,
    /// JWT policies carried over, by name.
    pub(super) jwt: HashMap<String, Arc<JwtPolicy>>,
    /// Rate-limit policies carried over, by name.
    pub(super) limits: HashMap<String, Arc<LimitGroup>>,
    /// The plugin manager (one for the gateway's life: slots, compiled modules, watcher).
    #[cfg(feature = "wasm")]
    pub(super) plugins: Option<Arc<crate::plugins::PluginRegistry>>,
    retired: Retired,
    /// Routes and upstreams added, removed and changed, by name.
    pub diff: ConfigDiff,
}

/// The running snapshot's parts the new one does not carry over.
#[derive(Debug, Default)]
struct Retired {
    pools: Vec<Arc<UpstreamPool>>,
    jwt: Vec<Arc<JwtPolicy>>,
    limits: Vec<Arc<LimitGroup>>,
}

impl Plan {
    /// The first snapshot's plan: everything is built.
    pub fn initial() -> Self {
        Self::default()
    }

    /// Compares the running snapshot with the configuration replacing it.
    pub fn between(old: &Runtime, new: &Config) -> Self {
        let mut plan = Self { diff: ConfigDiff::routes_between(&old.config, new), ..Self::default() };
        #[cfg(feature = "wasm")]
        {
            plan.plugins = Some(old.plugins.clone());
        }
        let pool_named = |name: &str| old.upstreams.iter().find(|p| &*p.name == name).cloned();

        // Named upstreams: carried when defined the same and their TLS files (CA bundle,
        // client certificate) hold the same bytes.
        for (name, up) in &new.upstreams {
            match (old.config.upstreams.get(name), pool_named(name)) {
                (None, _) => plan.diff.upstreams_added.push(name.clone()),
                (Some(before), Some(pool)) if before == up && pool.tls_files_unchanged() => {
                    plan.pools.insert(name.clone(), pool);
                }
                (Some(before), None) if before == up => {}
                (Some(_), _) => plan.diff.upstreams_changed.push(name.clone()),
            }
        }
        plan.diff.upstreams_removed =
            old.config.upstreams.keys().filter(|n| !new.upstreams.contains_key(*n)).cloned().collect();
        // Inline pools: carried when their route keeps its name and backends.
        for rc in new.routes.iter().filter(|r| r.upstream.is_none()) {
            let same = old.config.routes.iter().any(|before| {
                before.display_name() == rc.display_name() && before.upstream.is_none() && inline_same(before, rc)
            });
            if same && let Some(pool) = pool_named(rc.display_name()) {
                plan.inline_pools.insert(rc.display_name().to_owned(), pool);
            }
        }
        // JWT policies: carried when defined the same (their key sets and refresh go on).
        for (name, policy) in &new.auth {
            if old.config.auth.get(name) == Some(policy)
                && let Some(p) = old.jwt.get(name)
            {
                plan.jwt.insert(name.clone(), p.clone());
            }
        }
        // Rate limits: a policy keeps its buckets when its definition and the routes using it
        // are the same.
        let mut users: HashMap<&str, Vec<&str>> = HashMap::new();
        for rc in &new.routes {
            if let [_, Some(limit), _] = new.route_policies(rc) {
                users.entry(limit).or_default().push(rc.display_name());
            }
        }
        for (name, routes) in users {
            let Some(group) = old.limits.get(name) else { continue };
            let same_routes =
                group.instances.len() == routes.len() && routes.iter().all(|r| group.instances.contains_key(*r));
            if same_routes && old.config.rate_limits.get(name) == new.rate_limits.get(name) {
                plan.limits.insert(name.to_owned(), group.clone());
            }
        }

        // What is not carried is retired.
        let carried_pool =
            |p: &Arc<UpstreamPool>| plan.pools.values().chain(plan.inline_pools.values()).any(|c| Arc::ptr_eq(c, p));
        let retired = Retired {
            pools: old.upstreams.iter().filter(|p| !carried_pool(p)).cloned().collect(),
            jwt: not_carried(&old.jwt, &plan.jwt),
            limits: not_carried(&old.limits, &plan.limits),
        };
        plan.retired = retired;
        plan
    }

    /// How many parts the new snapshot retires: pools, JWT policies, rate-limit policies.
    pub fn retiring(&self) -> (usize, usize, usize) {
        (self.retired.pools.len(), self.retired.jwt.len(), self.retired.limits.len())
    }

    /// Stops the retired parts' background tasks (health checks, JWKS refresh, eviction). Called
    /// once the new snapshot serves; requests still running on the old one finish with its
    /// pools and policies, which simply stop being probed and refreshed.
    pub fn retire(self) {
        for pool in &self.retired.pools {
            pool.tasks.stop();
        }
        for policy in &self.retired.jwt {
            policy.tasks.stop();
        }
        for group in &self.retired.limits {
            group.eviction.stop();
        }
    }
}

/// The parts of `old` that `carried` does not hold (by identity).
fn not_carried<T>(old: &HashMap<String, Arc<T>>, carried: &HashMap<String, Arc<T>>) -> Vec<Arc<T>> {
    old.iter()
        .filter(|(name, part)| !carried.get(*name).is_some_and(|c| Arc::ptr_eq(c, part)))
        .map(|e| e.1.clone())
        .collect()
}

/// Whether two routes' inline upstreams are defined the same.
fn inline_same(a: &RouteConfig, b: &RouteConfig) -> bool {
    (&a.backend, &a.backends, a.strategy) == (&b.backend, &b.backends, b.strategy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    const BASE: &str = "upstreams:\n  a: { backends: [{url: 'http://127.0.0.1:1'}] }\n  b: { backends: [{url: 'http://127.0.0.1:2'}] }\n\
        auth:\n  p1: { algorithms: [HS256], secret: 0123456789abcdef0123456789abcdef }\n  p2: { algorithms: [HS256], secret: fedcba9876543210fedcba9876543210 }\n\
        rate_limits:\n  l1: { requests: 5, window: 1s }\n  l2: { requests: 5, window: 1s }\n\
        routes:\n  - { name: r1, path: /a, upstream: a, auth: p1, rate_limit: l1 }\n  - { name: r2, path: /b, upstream: b, auth: p2, rate_limit: l2 }\n  - { name: r3, path: /c, backend: 'http://127.0.0.1:3' }\n";

    #[test]
    fn one_decision_carries_what_is_unchanged_and_retires_the_rest() {
        let background = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let metrics = crate::metrics::Metrics::new();
        let old =
            Runtime::compile(load_str(BASE, "old").unwrap(), 1, &metrics, background.handle(), &Plan::initial(), &[])
                .unwrap();
        // Same file: everything carried, nothing retired.
        let same = Plan::between(&old, &load_str(BASE, "same").unwrap());
        assert_eq!((same.pools.len(), same.inline_pools.len(), same.jwt.len(), same.limits.len()), (2, 1, 2, 2));
        assert_eq!(same.retiring(), (0, 0, 0));
        // Upstream b and policy l2 changed, p2 and route r3 gone.
        let changed = BASE
            .replace("http://127.0.0.1:2'}", "http://127.0.0.1:2', weight: 2}")
            .replace("l2: { requests: 5", "l2: { requests: 6")
            .replace("auth: p2, ", "")
            .replace("  p2: { algorithms: [HS256], secret: fedcba9876543210fedcba9876543210 }\n", "")
            .replace("  - { name: r3, path: /c, backend: 'http://127.0.0.1:3' }\n", "");
        let plan = Plan::between(&old, &load_str(&changed, "new").unwrap());
        assert!(plan.pools.contains_key("a") && !plan.pools.contains_key("b"));
        assert!(plan.jwt.contains_key("p1") && !plan.jwt.contains_key("p2"));
        assert!(plan.limits.contains_key("l1") && !plan.limits.contains_key("l2"));
        assert_eq!(plan.retiring(), (2, 1, 1), "pool b and r3's inline pool, policy p2, limit l2");
        assert_eq!(plan.diff.upstreams_changed, ["b"]);
        assert_eq!(plan.diff.routes_removed, ["r3"]);
    }
}
