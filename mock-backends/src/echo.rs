//! The echo (every path without a dedicated endpoint), `/delay/{ms}` and `/status/{code}`.
//!
//! The echo describes the request as JSON: method, raw path, raw query, raw request-target,
//! HTTP version, headers, and the length and SHA-256 of the body, which is hashed chunk by
//! chunk as it streams in so that uploads of any size use constant memory.
//!
//! Header order: actix keeps the headers in a hash map, so the order between different names
//! is not the order received. The echo therefore lists them sorted by name, each repeated
//! header as its own entry in the order received.

use std::{borrow::Cow, time::Duration};

use actix_web::{
    HttpRequest, HttpResponse,
    error::PayloadError,
    http::{StatusCode, Version},
    rt::time::sleep,
    web::{self, Payload},
};
use futures_util::StreamExt as _;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::{gate, state::Shared};

/// Upper bound of `/delay/{ms}`.
const MAX_DELAY: Duration = Duration::from_secs(60);

/// The JSON body of the echo.
#[derive(Serialize)]
struct Echo<'a> {
    backend: &'a str,
    method: &'a str,
    path: &'a str,
    query: &'a str,
    uri: String,
    http_version: &'static str,
    headers: Vec<(&'a str, Cow<'a, str>)>,
    body_length: u64,
    body_sha256: String,
    traceparent: Option<Cow<'a, str>>,
}

/// `ANY /*`: echoes the request.
pub(crate) async fn echo(req: HttpRequest, mut payload: Payload, state: web::Data<Shared>) -> HttpResponse {
    if let Some(res) = gate::admit(&state, &mut payload).await {
        return res;
    }
    respond_echo(&req, payload, &state).await
}

/// `ANY /delay/{ms}`: waits `ms` milliseconds (at most 60 s), then echoes.
pub(crate) async fn delay(req: HttpRequest, mut payload: Payload, state: web::Data<Shared>) -> HttpResponse {
    if let Some(res) = gate::admit(&state, &mut payload).await {
        return res;
    }
    let Some(ms) = param::<u64>(&req, "ms") else {
        gate::drain(&mut payload).await;
        return state.error(StatusCode::BAD_REQUEST, "delay must be an integer (ms)");
    };
    sleep(Duration::from_millis(ms).min(MAX_DELAY)).await;
    respond_echo(&req, payload, &state).await
}

/// `ANY /status/{code}`: answers with that status (200 to 599).
pub(crate) async fn status(req: HttpRequest, mut payload: Payload, state: web::Data<Shared>) -> HttpResponse {
    if let Some(res) = gate::admit(&state, &mut payload).await {
        return res;
    }
    gate::drain(&mut payload).await;
    match param::<u16>(&req, "code")
        .filter(|code| (200..=599).contains(code))
        .and_then(|code| StatusCode::from_u16(code).ok())
    {
        Some(code) => state.status_response(code, false),
        None => state.error(StatusCode::BAD_REQUEST, "status must be an integer from 200 to 599"),
    }
}

/// Parses a path parameter.
pub(crate) fn param<T: std::str::FromStr>(req: &HttpRequest, name: &str) -> Option<T> {
    req.match_info().get(name)?.parse().ok()
}

/// Consumes the body, then answers the echo JSON.
async fn respond_echo(req: &HttpRequest, payload: Payload, state: &Shared) -> HttpResponse {
    let (body_length, body_sha256) = match digest(payload).await {
        Ok(digest) => digest,
        Err(err) => {
            return state.error(StatusCode::BAD_REQUEST, format_args!("reading the request body failed: {err}"));
        }
    };
    let mut headers: Vec<(&str, Cow<'_, str>)> =
        req.headers().iter().map(|(name, value)| (name.as_str(), String::from_utf8_lossy(value.as_bytes()))).collect();
    // Stable: repeated headers stay in the order received.
    headers.sort_by(|a, b| a.0.cmp(b.0));
    let traceparent = req.headers().get("traceparent").map(|value| String::from_utf8_lossy(value.as_bytes()));
    let uri = req.uri();
    state.json(
        StatusCode::OK,
        Echo {
            backend: &state.name,
            method: req.method().as_str(),
            path: uri.path(),
            query: uri.query().unwrap_or(""),
            uri: uri.to_string(),
            http_version: version_name(req.version()),
            headers,
            body_length,
            body_sha256,
            traceparent,
        },
    )
}

/// Streams the body through SHA-256, returning its length and hex digest.
async fn digest(mut payload: Payload) -> Result<(u64, String), PayloadError> {
    let mut hasher = Sha256::new();
    let mut length = 0u64;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk?;
        length += chunk.len() as u64;
        hasher.update(&chunk);
    }
    Ok((length, hex::encode(hasher.finalize())))
}

/// The conventional name of an HTTP version.
fn version_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "unknown",
    }
}
