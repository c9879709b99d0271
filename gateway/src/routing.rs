//! The route table: host match (case- and port-insensitive), then the longest path prefix on a
//! segment boundary, then methods. Built once per runtime snapshot; matching allocates nothing.

use std::sync::Arc;

use crate::{
    http_types::{HeaderValue, Method},
    pipeline::filter::Filter,
    upstream::UpstreamPool,
};

/// A compiled route.
#[derive(Debug)]
pub struct Route {
    /// Name used as the `route` metrics label and in logs.
    pub name: Arc<str>,
    /// Path prefix without trailing slash (`/` for the root).
    pub prefix: String,
    /// Lower-case host without port, or `None` for any host.
    pub host: Option<String>,
    /// Allowed methods; empty means any.
    pub methods: Vec<Method>,
    /// Where requests go.
    pub upstream: Arc<UpstreamPool>,
    /// Remove `prefix` from the path before forwarding.
    pub strip_prefix: bool,
    /// Per-attempt timeout for the backend's response head.
    pub timeout: std::time::Duration,
    /// Deadline of the whole request, retries and backoff included.
    pub request_timeout: Option<std::time::Duration>,
    /// The route's policies in the order their phases run (CORS, JWT, rate limit, plugins).
    pub filters: Vec<Arc<dyn Filter>>,
    /// The route's metric series.
    pub metrics: crate::metrics::RouteMetrics,
    /// The route's WASM plugins, in order (also in `filters`; here for `/admin/plugins`).
    pub plugins: Arc<crate::plugins::PluginChain>,
    /// Keep `%2F`/`%5C` in paths (encoded) instead of refusing them (`allow_encoded_slashes`).
    pub allow_encoded_slashes: bool,
    /// Rules for the client's headers shared by every route of the snapshot.
    pub header_rules: Arc<crate::headers::RequestHeaderRules>,
    /// WebSocket handshakes are relayed (`websocket: true`): the limits and metric series.
    pub websocket: Option<Arc<crate::websocket::RouteSessions>>,
}

impl Route {
    fn path_matches(&self, path: &str) -> bool {
        if self.prefix == "/" {
            return true;
        }
        // A `;` right after the prefix is a boundary too: Tomcat and Spring read
        // `/api;x/secret` as `/api/secret`, so it must get `/api`'s policies.
        match path.strip_prefix(self.prefix.as_str()) {
            Some(rest) => rest.is_empty() || rest.starts_with(['/', ';']),
            None => false,
        }
    }

    /// `host` is normalised ([`crate::normalize::host`]): lower case, no port, no trailing dot.
    fn host_matches(&self, host: Option<&str>) -> bool {
        match (&self.host, host) {
            (None, _) => true,
            (Some(want), Some(got)) => got == want,
            (Some(_), None) => false,
        }
    }

    /// A route to a placeholder upstream, for tests and fuzzing.
    #[doc(hidden)]
    pub fn for_tests(name: &str, prefix: &str, strip_prefix: bool) -> Self {
        Self {
            name: name.into(),
            prefix: prefix.into(),
            host: None,
            methods: Vec::new(),
            upstream: Arc::new(UpstreamPool::for_tests(name)),
            strip_prefix,
            timeout: std::time::Duration::from_secs(1),
            request_timeout: None,
            filters: Vec::new(),
            metrics: crate::metrics::Metrics::new().for_route(name),
            plugins: Default::default(),
            allow_encoded_slashes: false,
            header_rules: Default::default(),
            websocket: None,
        }
    }

    /// The path to send upstream: the (normalised) request path, minus the prefix when
    /// `strip_prefix` is set. A normalised path has no dot segment, so what remains after the
    /// prefix (on a segment boundary) cannot climb out of the backend's base path.
    pub fn upstream_path<'a>(&self, path: &'a str) -> &'a str {
        if !self.strip_prefix || self.prefix == "/" {
            return path;
        }
        let rest = &path[self.prefix.len().min(path.len())..];
        if rest.is_empty() { "/" } else { rest }
    }
}

impl crate::telemetry::otel::TracedRoute for Route {
    fn name(&self) -> &Arc<str> {
        &self.name
    }

    fn prefix(&self) -> &str {
        &self.prefix
    }

    fn upstream_name(&self) -> &Arc<str> {
        &self.upstream.name
    }

    fn upstream_path<'a>(&self, path: &'a str) -> &'a str {
        Route::upstream_path(self, path)
    }
}

/// The outcome of matching a request against the table.
#[derive(Debug)]
pub enum RouteMatch<'a> {
    /// The route that serves the request.
    Found(&'a Arc<Route>),
    /// Some route matched host and path but none allows the method; `Allow` lists those that do.
    MethodNotAllowed(HeaderValue),
    /// No route matched host and path.
    NotFound,
}

/// Routes sorted so that the first match is the best one.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
}

impl RouteTable {
    /// Sorts routes: longer prefixes first, then host-specific before host-agnostic, then
    /// method-restricted before unrestricted, keeping config order among equals.
    pub fn new(mut routes: Vec<Arc<Route>>) -> Self {
        routes.sort_by(|a, b| {
            b.prefix
                .len()
                .cmp(&a.prefix.len())
                .then(b.host.is_some().cmp(&a.host.is_some()))
                .then(a.methods.is_empty().cmp(&b.methods.is_empty()))
        });
        Self { routes }
    }

    /// Every route, best match first.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.routes.iter()
    }

    /// Finds the route for a request. A route whose host and path match but whose methods do not
    /// is skipped, so a shorter prefix that allows the method still serves it; only when none
    /// does is the answer 405.
    pub fn find(&self, host: Option<&str>, path: &str, method: &Method) -> RouteMatch<'_> {
        let mut allowed: Option<Vec<&Method>> = None;
        for route in &self.routes {
            if !route.host_matches(host) || !route.path_matches(path) {
                continue;
            }
            if route.methods.is_empty() || route.methods.contains(method) {
                return RouteMatch::Found(route);
            }
            let list = allowed.get_or_insert_with(Vec::new);
            for m in &route.methods {
                if !list.contains(&m) {
                    list.push(m);
                }
            }
        }
        match allowed {
            Some(list) => {
                let joined = list.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ");
                RouteMatch::MethodNotAllowed(HeaderValue::from_str(&joined).unwrap_or(HeaderValue::from_static("")))
            }
            None => RouteMatch::NotFound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, prefix: &str, host: Option<&str>, methods: &[Method]) -> Arc<Route> {
        let mut route = Route::for_tests(name, prefix, true);
        route.host = host.map(str::to_owned);
        route.methods = methods.to_vec();
        Arc::new(route)
    }

    fn name(m: RouteMatch<'_>) -> String {
        match m {
            RouteMatch::Found(r) => r.name.to_string(),
            RouteMatch::MethodNotAllowed(allow) => format!("405 {}", allow.to_str().unwrap()),
            RouteMatch::NotFound => "404".into(),
        }
    }

    #[test]
    fn prefix_matches_on_segment_boundaries_and_longest_wins() {
        let t = RouteTable::new(vec![route("api", "/api", None, &[]), route("test", "/api/test", None, &[])]);
        let get = Method::GET;
        assert_eq!(name(t.find(None, "/api/test", &get)), "test");
        assert_eq!(name(t.find(None, "/api/test/x", &get)), "test");
        assert_eq!(name(t.find(None, "/api/testing", &get)), "api");
        assert_eq!(name(t.find(None, "/apix", &get)), "404");
        assert_eq!(name(t.find(None, "/api;x/secret", &get)), "api");
        assert_eq!(name(t.find(None, "/", &get)), "404");
    }

    #[test]
    fn host_is_case_and_port_insensitive() {
        let t = RouteTable::new(vec![route("any", "/", None, &[]), route("h", "/", Some("api.example.com"), &[])]);
        let host = crate::normalize::host("API.Example.com.:8080").unwrap();
        assert_eq!(name(t.find(host.as_deref(), "/x", &Method::GET)), "h");
        assert_eq!(name(t.find(Some("other.com"), "/x", &Method::GET)), "any");
        assert_eq!(name(t.find(None, "/x", &Method::GET)), "any");
    }

    #[test]
    fn methods_give_405_with_allow_or_fall_through() {
        let t = RouteTable::new(vec![
            route("read", "/orders", None, &[Method::GET, Method::HEAD]),
            route("write", "/orders", None, &[Method::POST]),
        ]);
        assert_eq!(name(t.find(None, "/orders/1", &Method::POST)), "write");
        assert_eq!(name(t.find(None, "/orders/1", &Method::DELETE)), "405 GET, HEAD, POST");
        let t = RouteTable::new(vec![route("read", "/orders", None, &[Method::GET]), route("root", "/", None, &[])]);
        assert_eq!(name(t.find(None, "/orders", &Method::DELETE)), "root");
    }

    #[test]
    fn strip_prefix_keeps_a_leading_slash() {
        let r = route("t", "/api/test", None, &[]);
        assert_eq!(r.upstream_path("/api/test"), "/");
        assert_eq!(r.upstream_path("/api/test/echo"), "/echo");
    }
}
