//! `/health` and the `/control/*` endpoints that tests, the lab and benchmarks use to steer a
//! backend at run time. None of them count as hits nor get latency or injected failures.
//!
//! Control bodies are JSON whatever their content-type, and at most 64 KiB.

use actix_web::{
    HttpRequest, HttpResponse,
    http::StatusCode,
    web::{self, Payload},
};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::state::Shared;

/// Largest accepted control body.
const MAX_CONTROL_BODY: usize = 64 * 1024;

/// `{"backend", "hits", "healthy", "fail_remaining", "fail_status", "latency_ms"}`.
#[derive(Serialize)]
struct Stats<'a> {
    backend: &'a str,
    hits: u64,
    healthy: bool,
    fail_remaining: u64,
    fail_status: u16,
    latency_ms: u64,
}

fn stats_of(state: &Shared) -> Stats<'_> {
    let pending = state.pending_failures();
    Stats {
        backend: &state.name,
        hits: state.hits(),
        healthy: state.healthy(),
        fail_remaining: pending.remaining,
        fail_status: pending.status,
        latency_ms: state.latency().as_millis() as u64,
    }
}

/// `ANY /health`: 200 `{"status":"ok"}` or 503 `{"status":"unhealthy"}`.
pub(crate) async fn health(state: web::Data<Shared>) -> HttpResponse {
    #[derive(Serialize)]
    struct Health<'a> {
        status: &'a str,
        backend: &'a str,
    }
    let (code, status) =
        if state.healthy() { (StatusCode::OK, "ok") } else { (StatusCode::SERVICE_UNAVAILABLE, "unhealthy") };
    state.json(code, Health { status, backend: &state.name })
}

/// Body of `POST /control/health`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetHealth {
    healthy: bool,
}

/// `POST /control/health` `{"healthy": bool}`: sets what `/health` answers.
pub(crate) async fn set_health(payload: Payload, state: web::Data<Shared>) -> HttpResponse {
    let body: SetHealth = match read_json(payload).await {
        Ok(body) => body,
        Err(err) => return state.error(StatusCode::BAD_REQUEST, err),
    };
    state.set_healthy(body.healthy);
    state.json(StatusCode::OK, stats_of(&state))
}

/// Body of `POST /control/latency`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetLatency {
    ms: u64,
}

/// `POST /control/latency` `{"ms": n}`: the delay added to every non-control request from now.
pub(crate) async fn set_latency(payload: Payload, state: web::Data<Shared>) -> HttpResponse {
    let body: SetLatency = match read_json(payload).await {
        Ok(body) => body,
        Err(err) => return state.error(StatusCode::BAD_REQUEST, err),
    };
    if body.ms > 600_000 {
        return state.error(StatusCode::BAD_REQUEST, "ms must be at most 600000");
    }
    state.set_latency(std::time::Duration::from_millis(body.ms));
    state.json(StatusCode::OK, stats_of(&state))
}

/// Body of `POST /control/fail`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fail {
    /// How many of the next requests fail (default 1; 0 clears).
    count: Option<u64>,
    /// Their status (default 500; 0 drops the connection).
    status: Option<u16>,
    /// Clears pending failures (the other fields are then ignored).
    #[serde(default)]
    reset: bool,
}

/// `POST /control/fail` `{"count": n, "status": s}` or `{"reset": true}`.
pub(crate) async fn fail(payload: Payload, state: web::Data<Shared>) -> HttpResponse {
    let body: Fail = match read_json(payload).await {
        Ok(body) => body,
        Err(err) => return state.error(StatusCode::BAD_REQUEST, err),
    };
    if body.reset {
        state.clear_failures();
    } else {
        let status = body.status.unwrap_or(500);
        if status != 0 && !(200..=599).contains(&status) {
            return state.error(StatusCode::BAD_REQUEST, "status must be 0 (drop the connection) or from 200 to 599");
        }
        state.fail_next(body.count.unwrap_or(1), status);
    }
    state.json(StatusCode::OK, stats_of(&state))
}

/// `GET /control/stats`.
pub(crate) async fn stats(state: web::Data<Shared>) -> HttpResponse {
    state.json(StatusCode::OK, stats_of(&state))
}

/// `POST /control/reset`: hits to 0, healthy, no pending failures.
pub(crate) async fn reset(state: web::Data<Shared>) -> HttpResponse {
    state.reset();
    state.json(StatusCode::OK, stats_of(&state))
}

/// Any other `/control/*` request: 405 on a known path with the wrong method, else 404.
pub(crate) async fn not_found(req: HttpRequest, state: web::Data<Shared>) -> HttpResponse {
    const KNOWN: [&str; 5] =
        ["/control/health", "/control/fail", "/control/latency", "/control/stats", "/control/reset"];
    if KNOWN.contains(&req.path()) {
        state.error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
    } else {
        state.error(StatusCode::NOT_FOUND, "unknown control endpoint")
    }
}

/// Reads a small JSON body.
async fn read_json<T: DeserializeOwned>(mut payload: Payload) -> Result<T, String> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|err| format!("reading the body failed: {err}"))?;
        if body.len() + chunk.len() > MAX_CONTROL_BODY {
            return Err(format!("control body over {MAX_CONTROL_BODY} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|err| format!("invalid control body: {err}"))
}
