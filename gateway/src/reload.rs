//! Configuration reload: parse → validate → compile a new runtime snapshot off the request path
//! → swap it in atomically. Requests already running finish on the snapshot they started with.
//!
//! * A configuration equal to the running one (same parsed content) changes nothing: same
//!   generation, result `unchanged`.
//! * Settings read only at start (listeners, workers, connection timeouts, log format, tracing)
//!   are not applied by a reload: a configuration changing one is refused, naming the fields.
//!   `log.level` is applied (unless `RUST_LOG` overrides it).
//! * A configuration that does not load, validate or compile changes nothing: the running one
//!   keeps serving, and every problem is logged and returned.
//! * State whose definition did not change survives: backend health, rate-limit buckets, JWKS
//!   key sets; what is not carried over stops its background work when the new snapshot serves.
//!   One plan decides both (`runtime::Plan`).
//!
//! Every outcome is counted in `rustygate_config_reloads_total{result}`; a success moves
//! `rustygate_config_generation` and `rustygate_config_last_reload_success_timestamp_seconds`.

use crate::config::{self, Config};

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// The configuration equals the running one: nothing changed.
    Unchanged {
        /// The running generation.
        generation: u64,
    },
    /// A new snapshot is serving.
    Applied {
        /// Its generation.
        generation: u64,
        /// What changed, by name.
        diff: ConfigDiff,
    },
}

impl Reloaded {
    /// The generation serving after the reload.
    pub fn generation(&self) -> u64 {
        match self {
            Self::Unchanged { generation } | Self::Applied { generation, .. } => *generation,
        }
    }

    /// Whether a new snapshot was swapped in.
    pub fn changed(&self) -> bool {
        matches!(self, Self::Applied { .. })
    }
}

/// Routes and upstreams added, removed and changed, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    /// Routes (by name, or path when unnamed) only in the new configuration.
    pub routes_added: Vec<String>,
    /// Routes only in the old one.
    pub routes_removed: Vec<String>,
    /// Routes in both, defined differently.
    pub routes_changed: Vec<String>,
    /// Named upstreams only in the new configuration.
    pub upstreams_added: Vec<String>,
    /// Named upstreams only in the old one.
    pub upstreams_removed: Vec<String>,
    /// Named upstreams in both, defined differently.
    pub upstreams_changed: Vec<String>,
}

impl ConfigDiff {
    /// The routes (by name) added, removed and changed between two configurations; the
    /// upstream fields are the reload plan's (`runtime::Plan`), which decides what is carried.
    pub fn routes_between(old: &Config, new: &Config) -> Self {
        let old_routes: Vec<_> = old.routes.iter().map(|r| (r.display_name(), r)).collect();
        let new_routes: Vec<_> = new.routes.iter().map(|r| (r.display_name(), r)).collect();
        fn find<'a>(list: &[(&str, &'a config::RouteConfig)], name: &str) -> Option<&'a config::RouteConfig> {
            list.iter().find(|(n, _)| *n == name).map(|e| e.1)
        }
        let mut diff = Self::default();
        for (name, route) in &new_routes {
            match find(&old_routes, name) {
                None => diff.routes_added.push((*name).to_owned()),
                Some(old) if old != *route => diff.routes_changed.push((*name).to_owned()),
                Some(_) => {}
            }
        }
        diff.routes_removed = old_routes
            .iter()
            .filter(|(name, _)| find(&new_routes, name).is_none())
            .map(|(name, _)| (*name).to_owned())
            .collect();
        diff
    }
}

/// Settings read once at start; a reload that changes one is refused.
pub fn startup_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let (o, n) = (&old.server, &new.server);
    // The certificates reload; the HTTPS listener and its protocol versions do not.
    let (ot, nt) = (o.tls.as_ref(), n.tls.as_ref());
    let checks: [(&'static str, bool); 19] = [
        ("server.listen", o.listen != n.listen),
        ("server.frontend", o.frontend != n.frontend),
        ("server.h2c", o.h2c != n.h2c),
        ("server.tls", ot.is_some() != nt.is_some()),
        ("server.tls.listen", ot.zip(nt).is_some_and(|(a, b)| a.listen != b.listen)),
        ("server.tls.min_version", ot.zip(nt).is_some_and(|(a, b)| a.min_version != b.min_version)),
        ("server.tls.client_auth.mode", ot.zip(nt).is_some_and(|(a, b)| a.client_auth.mode != b.client_auth.mode)),
        ("server.tls.acme", ot.zip(nt).is_some_and(|(a, b)| a.acme != b.acme)),
        ("server.max_connections_per_ip", o.max_connections_per_ip != n.max_connections_per_ip),
        ("server.send_timeout", o.send_timeout != n.send_timeout),
        ("server.max_connections", o.max_connections != n.max_connections),
        ("server.watch_config", o.watch_config != n.watch_config),
        ("server.workers", o.workers != n.workers),
        ("server.shutdown_timeout", o.shutdown_timeout != n.shutdown_timeout),
        ("server.client_header_timeout", o.client_header_timeout != n.client_header_timeout),
        ("server.keep_alive", o.keep_alive != n.keep_alive),
        ("admin.listen", old.admin.listen != new.admin.listen),
        ("log.format", old.log.format != new.log.format),
        ("tracing", old.tracing != new.tracing),
    ];
    checks.into_iter().filter(|(_, changed)| *changed).map(|(name, _)| name).collect()
}

/// Seconds since the Unix epoch, for the last-success gauge.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Config {
        config::load_str(yaml, "test.yaml").expect("valid test config")
    }

    #[test]
    fn diffs_name_what_was_added_removed_and_changed() {
        let old = parse(
            "upstreams: { a: { backends: [{url: 'http://127.0.0.1:1'}] }, b: { backends: [{url: 'http://127.0.0.1:2'}] } }\n\
             routes: [ { name: r1, path: /one, upstream: a }, { name: r2, path: /two, upstream: b } ]\n",
        );
        let new = parse(
            "upstreams: { a: { backends: [{url: 'http://127.0.0.1:1', weight: 2}] }, c: { backends: [{url: 'http://127.0.0.1:3'}] } }\n\
             routes: [ { name: r1, path: /one, upstream: a }, { name: r3, path: /three, upstream: c } ]\n",
        );
        let background = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let metrics = crate::metrics::Metrics::new();
        let running = crate::runtime::Runtime::compile(
            old,
            1,
            &metrics,
            background.handle(),
            &crate::runtime::Plan::initial(),
            &[],
        )
        .unwrap();
        let diff = crate::runtime::Plan::between(&running, &new).diff;
        assert_eq!(diff.routes_added, ["r3"]);
        assert_eq!(diff.routes_removed, ["r2"]);
        assert!(diff.routes_changed.is_empty());
        assert_eq!(diff.upstreams_added, ["c"]);
        assert_eq!(diff.upstreams_removed, ["b"]);
        assert_eq!(diff.upstreams_changed, ["a"]);
    }

    #[test]
    fn startup_settings_are_named_when_changed() {
        let old =
            parse("server: { listen: '127.0.0.1:8080' }\nroutes: [ { path: /, backend: 'http://127.0.0.1:1' } ]\n");
        let new = parse(
            "server: { listen: '127.0.0.1:9090', workers: 3, max_body_size: 1MiB }\n\
             routes: [ { path: /, backend: 'http://127.0.0.1:1' } ]\n",
        );
        assert_eq!(startup_only_changes(&old, &new), ["server.listen", "server.workers"]);
        assert!(startup_only_changes(&old, &old).is_empty());
    }
}
