//! Active health checks: a task per upstream on the background runtime probes every backend
//! with `GET <base path><path>` each `interval` (plus a random `jitter`), and moves a backend out
//! of rotation after `unhealthy_threshold` failed probes in a row, back after
//! `healthy_threshold` good ones. A good probe after failed ones also lifts a passive ejection. Only transitions are logged (not every probe); the verdict is
//! `rustygate_backend_up` and `/admin/upstreams`' `healthy`. The task is the pool's: it stops
//! when a reload retires the pool.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use rand::Rng;

use crate::config::{HealthCheckConfig, HealthCheckProtocol};
use crate::upstream::{Backend, UpstreamPool};

/// Starts the health checks of `pool` (if it has any) on `background`; they stop when the pool
/// is retired (or dropped).
pub fn spawn(background: &tokio::runtime::Handle, pool: &Arc<UpstreamPool>) {
    let Some(config) = pool.health_check.clone() else { return };
    let Ok(range) = config.status_range() else { return };
    let weak: Weak<UpstreamPool> = Arc::downgrade(pool);
    // `https://` backends are probed over TLS with the upstream's own verification settings.
    let tls = pool.tls.as_ref().map(|t| (**t).clone());
    let http2 = pool.protocol.is_http2();
    pool.tasks.spawn(background, async move {
        let mut builder = reqwest::Client::builder().timeout(config.timeout.0).pool_max_idle_per_host(1);
        if let Some(tls) = tls {
            builder = builder.tls_backend_preconfigured(tls);
        }
        // Probed in the protocol requests use: HTTP/2 (`h2` by ALPN, `h2c` by prior knowledge).
        if http2 {
            builder = builder.http2_prior_knowledge();
        }
        let client = match builder.build() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the health-check client");
                return;
            }
        };
        let jitter = config.jitter.map_or(config.interval.0 / 10, |j| j.0);
        let mut streaks: Vec<Streak> = Vec::new();
        loop {
            let Some(pool) = weak.upgrade() else { break };
            streaks.resize(pool.backends.len(), Streak::default());
            let probes = pool.backends.iter().map(|b| match config.protocol {
                HealthCheckProtocol::Http => {
                    futures_util::future::Either::Left(probe(&client, b, &config.path, &range))
                }
                HealthCheckProtocol::Grpc => {
                    futures_util::future::Either::Right(probe_grpc(&client, b, &config.grpc_service))
                }
            });
            let results = futures_util::future::join_all(probes).await;
            for ((backend, streak), result) in pool.backends.iter().zip(&mut streaks).zip(results) {
                streak.record(&pool.name, backend, result, &config);
            }
            drop(pool);
            let spread =
                if jitter.is_zero() { Duration::ZERO } else { rand::rng().random_range(Duration::ZERO..=jitter) };
            tokio::time::sleep(config.interval.0 + spread).await;
        }
    });
}

/// Consecutive probe results of one backend.
#[derive(Clone, Default)]
struct Streak {
    successes: u32,
    failures: u32,
}

impl Streak {
    fn record(&mut self, upstream: &str, backend: &Backend, result: Result<(), String>, config: &HealthCheckConfig) {
        match result {
            Ok(()) => {
                // A probe that passes after failing ones: the backend was down and is back
                // (restarted, repaired), so an ejection for its old failures ends too.
                if self.failures > 0 && backend.lift_ejection() {
                    tracing::info!(upstream, backend = &*backend.label, "backend recovered: ejection lifted");
                }
                self.failures = 0;
                self.successes = self.successes.saturating_add(1);
                if !backend.is_healthy() && self.successes >= config.healthy_threshold && backend.set_healthy(true) {
                    tracing::info!(upstream, backend = &*backend.label, "backend is healthy again: back in rotation");
                }
            }
            Err(reason) => {
                self.successes = 0;
                self.failures = self.failures.saturating_add(1);
                if backend.is_healthy() && self.failures >= config.unhealthy_threshold && backend.set_healthy(false) {
                    tracing::warn!(
                        upstream,
                        backend = &*backend.label,
                        reason = reason.as_str(),
                        failures = self.failures,
                        "backend failed its health checks: out of rotation"
                    );
                }
                backend.last_error.store(Some(Arc::new(format!("health check: {reason}"))));
            }
        }
    }
}

async fn probe(
    client: &reqwest::Client,
    backend: &Backend,
    path: &str,
    expected: &std::ops::RangeInclusive<u16>,
) -> Result<(), String> {
    let url = format!("{}{}", backend.url_prefix, path);
    match client.get(&url).send().await {
        Ok(resp) if expected.contains(&resp.status().as_u16()) => Ok(()),
        Ok(resp) => Err(format!("GET {path} answered {}", resp.status().as_u16())),
        Err(e) if e.is_timeout() => Err(format!("GET {path} timed out")),
        Err(e) if e.is_connect() => Err(format!("GET {path}: cannot connect")),
        Err(e) => Err(format!("GET {path}: {e}")),
    }
}

/// The gRPC health-checking protocol's path.
const GRPC_HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";

/// `grpc.health.v1.Health/Check` for `service`: healthy when the answer is a
/// `HealthCheckResponse` saying SERVING (field 1 = 1). A Trailers-Only error answer
/// (`grpc-status` in its head, no message), NOT_SERVING or anything else is a failure.
async fn probe_grpc(client: &reqwest::Client, backend: &Backend, service: &str) -> Result<(), String> {
    // The request message, `HealthCheckRequest { service }`, in gRPC's length-prefixed frame.
    let mut message = Vec::with_capacity(service.len() + 2);
    if !service.is_empty() {
        message.push(0x0a); // field 1, length-delimited
        let mut n = service.len();
        while n >= 0x80 {
            message.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        message.push(n as u8);
        message.extend_from_slice(service.as_bytes());
    }
    let mut frame = Vec::with_capacity(5 + message.len());
    frame.push(0);
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    let url = format!("{}{GRPC_HEALTH_CHECK}", backend.url_prefix);
    let resp = client
        .post(&url)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(frame)
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() { "gRPC health check timed out".into() } else { format!("gRPC health check: {e}") }
        })?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(format!("gRPC health check answered HTTP {}", resp.status().as_u16()));
    }
    if let Some(status) = resp.headers().get("grpc-status").filter(|s| s.as_bytes() != b"0") {
        return Err(format!("gRPC health check answered grpc-status {}", String::from_utf8_lossy(status.as_bytes())));
    }
    let body = resp.bytes().await.map_err(|e| format!("gRPC health check: {e}"))?;
    // One frame: uncompressed flag, length, then `HealthCheckResponse { status: 1 }` (SERVING).
    match body.as_ref() {
        [0, 0, 0, 0, 2, 0x08, 1] => Ok(()),
        [0, _, _, _, _, 0x08, status, ..] => Err(format!("gRPC health check: status {status} (1 is SERVING)")),
        _ => Err("gRPC health check: no HealthCheckResponse in the answer".into()),
    }
}
