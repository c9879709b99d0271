//! The runtime snapshot: everything the request path needs, compiled once from a validated
//! [`Config`] and never mutated afterwards. The gateway holds the current snapshot in an
//! `ArcSwap`; each request loads it once and uses it to the end, so a reload (swap) never
//! mixes two configurations within one request.

use std::{collections::HashMap, net::IpAddr, sync::Arc};

use crate::{
    background::TaskSet,
    config::{Config, UpstreamClient},
    filters::{jwt::JwtPolicy, rate_limit::RateLimit},
    routing::RouteTable,
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
    /// `server.redirect_https`: requests on the plain listener get a 308 to the HTTPS one
    /// (whose port is [`Gateway::https_port`](crate::gateway::Gateway::https_port)).
    pub redirect_https: bool,
    /// JWT policies by name (a reload keeps the ones whose definition did not change, with
    /// their key sets and refresh timers).
    pub(super) jwt: HashMap<String, Arc<JwtPolicy>>,
    /// Rate-limit policies by name, with their instances per route. A reload keeps a policy's
    /// buckets when its definition and the routes using it did not change.
    pub(super) limits: HashMap<String, Arc<LimitGroup>>,
    /// `rustygate_rate_limit_keys{policy}`, set by the eviction timers.
    pub(super) rate_limit_keys: prometheus::IntGaugeVec,
    /// The plugin manager, passed from snapshot to snapshot (slots, compiled modules, watcher).
    #[cfg(feature = "wasm")]
    pub plugins: Arc<crate::plugins::PluginRegistry>,
}

/// A rate-limit policy's instances (one shared by its routes, or one per route with
/// `scope: route`), by route name, and the eviction timer they share.
#[derive(Debug, Default)]
pub struct LimitGroup {
    /// Route name → the instance it uses.
    pub instances: HashMap<String, Arc<RateLimit>>,
    /// The eviction timer.
    pub eviction: TaskSet,
}

impl Runtime {
    /// Each plugin in use, with its state and the routes running it (`GET /admin/plugins`).
    #[cfg(feature = "wasm")]
    pub fn plugin_status(&self) -> Vec<crate::plugins::PluginStatus> {
        let routes: Vec<_> = self.routes.iter().map(|r| (&*r.name, r.plugins.names().collect())).collect();
        self.plugins.status(&routes)
    }

    /// Whether a peer address belongs to a trusted proxy.
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }
}
