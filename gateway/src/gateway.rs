//! The gateway's state: the current runtime snapshot, the metrics registry, the background
//! runtime, the tracer, readiness, and reloading (what swaps the snapshot). Listeners
//! (`server`), the admin API and the request pipeline depend on it; it depends on none of them.

use std::sync::{
    Arc, Mutex, OnceLock,
    atomic::{AtomicBool, AtomicUsize},
};

use arc_swap::ArcSwap;

use crate::{
    background::Background,
    config::{self, Config, ConfigError, ConfigIssue},
    metrics::Metrics,
    pipeline::filter::FilterFactory,
    reload::{Reloaded, startup_only_changes, unix_now},
    runtime::{Plan, Runtime},
    telemetry::otel::Tracing,
    tls::{ClientAuth, ServedCertificates, certs::PairError, client_auth::ClientCa},
};

/// State shared by every worker of both listeners.
pub struct Gateway {
    /// The current runtime snapshot.
    pub runtime: ArcSwap<Runtime>,
    /// Metrics registry and handles.
    pub metrics: Metrics,
    /// Whether `/readyz` answers 200 (false while draining).
    pub ready: AtomicBool,
    /// Client connections open on the proxy listener (`rustygate_connections`).
    pub connections: Arc<AtomicUsize>,
    /// Runs policy timers (JWKS refresh, rate-limit eviction) and the span exporter.
    pub background: Background,
    /// The tracer, when tracing is enabled (built once at start).
    pub tracing: Option<Tracing>,
    /// The configuration file that reloads re-read (unset: reloads from a file are refused).
    pub config_path: OnceLock<std::path::PathBuf>,
    /// The HTTPS listener's certificates (`server.tls`), swapped on reload when their files
    /// change.
    pub tls_certificates: Option<ServedCertificates>,
    /// Automatic certificates (`server.tls.acme`): served through `tls_certificates`' resolver,
    /// renewed by a background task started once the listeners are bound.
    pub acme: Option<crate::acme::Acme>,
    /// The HTTPS listener's client CA (`server.tls.client_auth`), swapped likewise.
    pub tls_client_ca: Option<ClientCa>,
    /// The port the HTTPS listener bound (set when it is bound): where `redirect_https` sends
    /// clients.
    pub https_port: OnceLock<u16>,
    /// Open WebSocket sessions, and the signal that closes them at the end of a drain.
    pub websockets: crate::websocket::Sessions,
    /// One reload at a time.
    pub(crate) reload_lock: Mutex<()>,
    /// Filters of the embedding program's, compiled into the routes at every reload.
    extra_filters: Vec<FilterFactory>,
}

impl Gateway {
    /// Compiles `config` (generation 1) with a fresh metrics registry.
    pub fn new(config: Config) -> Result<Arc<Self>, ConfigError> {
        Self::with_filters(config, Vec::new())
    }

    /// [`Gateway::new`], with filters of the embedding program's added to the routes their
    /// factories choose, at start and at every reload.
    pub fn with_filters(config: Config, extra_filters: Vec<FilterFactory>) -> Result<Arc<Self>, ConfigError> {
        let metrics = Metrics::new();
        let background = Background::start().map_err(|e| ConfigError {
            source_name: "<startup>".into(),
            issues: vec![ConfigIssue::at(String::new(), format!("cannot start the background thread: {e}"))],
        })?;
        let tracing = Tracing::start(
            &config.tracing,
            &|name| std::env::var(name).ok(),
            metrics.tracing_spans_dropped.clone(),
            background.handle(),
        )
        .map_err(|e| ConfigError {
            source_name: "<environment>".into(),
            issues: vec![ConfigIssue::at(String::from("tracing"), e)],
        })?;
        let acme = match config.server.tls.as_ref().and_then(|t| t.acme.as_ref()) {
            Some(a) => Some(crate::acme::Acme::new(a).map_err(|e| ConfigError {
                source_name: "<acme>".into(),
                issues: vec![ConfigIssue::at("server.tls.acme".to_owned(), e)],
            })?),
            None => None,
        };
        let tls_certificates = match &config.server.tls {
            Some(tls) => Some(
                ServedCertificates::load(
                    &certificate_pairs(tls),
                    acme.as_ref().map(|a| a.certificates.clone() as Arc<dyn crate::tls::sni::ManagedCertificates>),
                )
                .map_err(certificate_error)?,
            ),
            None => None,
        };
        if let Some(served) = &tls_certificates {
            set_expiry_gauges(&metrics, served, acme.as_ref());
        }
        let tls_client_ca = match config.server.tls.as_ref().and_then(client_ca_of) {
            Some((ca_file, mode)) => Some(ClientCa::load(&ca_file, mode).map_err(client_ca_error)?),
            None => None,
        };
        let runtime = Runtime::compile(config, 1, &metrics, background.handle(), &Plan::initial(), &extra_filters)?;
        runtime.start(background.handle());
        metrics.config_generation.set(runtime.generation as i64);
        metrics.config_last_reload_success.set(unix_now());
        Ok(Arc::new(Self {
            runtime: ArcSwap::from_pointee(runtime),
            metrics,
            ready: AtomicBool::new(true),
            connections: Arc::new(AtomicUsize::new(0)),
            background,
            tracing,
            config_path: OnceLock::new(),
            tls_certificates,
            acme,
            tls_client_ca,
            https_port: OnceLock::new(),
            websockets: Default::default(),
            reload_lock: Mutex::new(()),
            extra_filters,
        }))
    }
}

impl Gateway {
    /// Re-reads the configuration file ([`Gateway::config_path`]) and applies it.
    pub fn reload_file(&self) -> Result<Reloaded, ConfigError> {
        let Some(path) = self.config_path.get() else {
            let error = ConfigError {
                source_name: "<reload>".into(),
                issues: vec![ConfigIssue::at(
                    String::new(),
                    "the gateway runs the embedded default configuration: there is no file to reload \
                     (start it with --config FILE)",
                )],
            };
            self.reload_failed(&error);
            return Err(error);
        };
        match config::load_file(path) {
            Ok(config) => self.reload(config),
            Err(error) => {
                self.reload_failed(&error);
                Err(error)
            }
        }
    }

    /// Applies `config` (already loaded and validated) if it differs from the running one.
    pub fn reload(&self, config: Config) -> Result<Reloaded, ConfigError> {
        // Two reloads at once would both compile from the same snapshot and the first swap
        // would be lost.
        let _one_at_a_time = self.reload_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let current: Arc<Runtime> = self.runtime.load_full();
        // The same configuration, and the upstreams' TLS files (CA bundles, client
        // certificates) the same bytes: nothing to rebuild.
        if *current.config == config && current.upstreams.iter().all(|p| p.tls_files_unchanged()) {
            // The plugin files may have changed though (with `plugins.watch` off, a reload is
            // how they are picked up).
            #[cfg(feature = "wasm")]
            current.plugins.update();
            // So may the certificate files (the watcher reloads when they change).
            self.refresh_certificates(&current.config);
            self.metrics.config_reloads.with_label_values(&["unchanged"]).inc();
            tracing::info!(generation = current.generation, "configuration unchanged; nothing reloaded");
            return Ok(Reloaded::Unchanged { generation: current.generation });
        }
        let fixed = startup_only_changes(&current.config, &config);
        if !fixed.is_empty() {
            let error = ConfigError {
                source_name: "<reload>".into(),
                issues: fixed
                    .iter()
                    .map(|field| {
                        ConfigIssue::at(
                            (*field).to_owned(),
                            format!("{field} is read only at start: restart the gateway to change it"),
                        )
                    })
                    .collect(),
            };
            self.reload_failed(&error);
            return Err(error);
        }
        let generation = current.generation + 1;
        // One decision: what the new snapshot carries over, builds, and retires.
        let mut plan = Plan::between(&current, &config);
        let diff = std::mem::take(&mut plan.diff);
        let background = self.background.handle();
        let runtime = match Runtime::compile(config, generation, &self.metrics, background, &plan, &self.extra_filters)
        {
            Ok(rt) => rt,
            Err(error) => {
                self.reload_failed(&error);
                return Err(error);
            }
        };
        runtime.start(self.background.handle());
        let level_changed = current.config.log.level != runtime.config.log.level;
        self.runtime.store(Arc::new(runtime));
        self.refresh_certificates(&self.runtime.load().config);
        // The retired parts stop their background work now; requests still on the old
        // snapshot finish with them.
        plan.retire();
        if level_changed {
            let level = &self.runtime.load().config.log.level;
            match crate::telemetry::logging::set_level(level) {
                Ok(true) => tracing::info!(level = level.as_str(), "log level changed"),
                Ok(false) => tracing::info!(level = level.as_str(), "log.level changed, but RUST_LOG overrides it"),
                // Tests run gateways without the process's logging: nothing to change.
                Err(e) => tracing::debug!(error = %e, "log level not changed"),
            }
        }
        self.metrics.config_generation.set(generation as i64);
        self.metrics.config_last_reload_success.set(unix_now());
        self.metrics.config_reloads.with_label_values(&["success"]).inc();
        tracing::info!(
            generation,
            routes_added = ?diff.routes_added,
            routes_removed = ?diff.routes_removed,
            routes_changed = ?diff.routes_changed,
            upstreams_added = ?diff.upstreams_added,
            upstreams_removed = ?diff.upstreams_removed,
            upstreams_changed = ?diff.upstreams_changed,
            "configuration reloaded"
        );
        Ok(Reloaded::Applied { generation, diff })
    }

    /// Serves the certificate files `config` names if they changed; a pair that fails to load
    /// leaves the served set as it is (the configuration's checks refuse such a reload first:
    /// this only meets files that changed in between).
    fn refresh_certificates(&self, config: &Config) {
        if let (Some(ca), Some((ca_file, _))) = (&self.tls_client_ca, config.server.tls.as_ref().and_then(client_ca_of))
        {
            match ca.refresh(&ca_file) {
                Ok(true) => {
                    tracing::info!(ca_file = %ca_file.display(), "client CA reloaded: new handshakes are checked against it")
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "client CA not reloaded; the one in use stays"),
            }
        }
        let (Some(served), Some(tls)) = (&self.tls_certificates, &config.server.tls) else { return };
        match served.refresh(&certificate_pairs(tls)) {
            Ok(true) => {
                set_expiry_gauges(&self.metrics, served, self.acme.as_ref());
                let names: Vec<_> = served.certificates().iter().map(|c| c.names.join(",")).collect();
                tracing::info!(certificates = ?names, "TLS certificates reloaded: new handshakes get them");
            }
            Ok(false) => {}
            Err(e) => {
                let error = certificate_error(e);
                tracing::warn!(errors = %error, "TLS certificates not reloaded; the served ones stay");
            }
        }
    }

    fn reload_failed(&self, error: &ConfigError) {
        self.metrics.config_reloads.with_label_values(&["error"]).inc();
        let generation = self.runtime.load().generation;
        tracing::warn!(generation, errors = %error, "configuration reload rejected; the running configuration stays");
    }
}

/// `server.tls.certificates` as (certificate file, key file) pairs.
fn certificate_pairs(tls: &crate::config::TlsListenerConfig) -> Vec<(std::path::PathBuf, std::path::PathBuf)> {
    tls.certificates.iter().map(|c| (c.cert_file.clone(), c.key_file.clone())).collect()
}

/// A certificate pair that failed to load, as a configuration error at the file's key.
fn certificate_error((i, e): crate::tls::served::SetError) -> ConfigError {
    let (key, message) = match e {
        PairError::Cert(m) => ("cert_file", m),
        PairError::Key(m) => ("key_file", m),
    };
    ConfigError {
        source_name: "<certificates>".into(),
        issues: vec![ConfigIssue::at(format!("server.tls.certificates[{i}].{key}"), message)],
    }
}

/// `rustygate_tls_certificate_expiry_seconds`, for the certificates served now.
fn set_expiry_gauges(metrics: &Metrics, served: &ServedCertificates, acme: Option<&crate::acme::Acme>) {
    metrics.tls_certificate_expiry.reset();
    let acme = acme.map(|a| a.certificates.served().certificate.clone());
    for cert in served.certificates().into_iter().chain(acme) {
        let name = cert.names.first().cloned().unwrap_or_else(|| cert.subject.clone());
        metrics.tls_certificate_expiry.with_label_values(&[&name]).set(cert.not_after as f64);
    }
}

/// The client CA file and mode of a listener that asks for client certificates.
fn client_ca_of(tls: &crate::config::TlsListenerConfig) -> Option<(std::path::PathBuf, ClientAuth)> {
    let mode = match tls.client_auth.mode {
        crate::config::ClientAuthMode::None => return None,
        crate::config::ClientAuthMode::Optional => ClientAuth::Optional,
        crate::config::ClientAuthMode::Require => ClientAuth::Required,
    };
    tls.client_auth.ca_file.clone().map(|f| (f, mode))
}

fn client_ca_error(message: String) -> ConfigError {
    ConfigError {
        source_name: "<certificates>".into(),
        issues: vec![ConfigIssue::at("server.tls.client_auth.ca_file".to_owned(), message)],
    }
}
