//! The admin listener's endpoints: `/healthz`, `/readyz`, `/metrics`, and the token-protected
//! `/admin/*` API (`/admin/config`, `/admin/upstreams`, `/admin/plugins`, `POST /admin/reload`). Never mounted on
//! the proxy port.

use std::sync::atomic::Ordering;

use actix_web::{
    HttpRequest, HttpResponse,
    http::{StatusCode, header},
    web,
};
use serde_json::json;

use crate::{
    error::{error_code, error_json},
    gateway::Gateway,
};

/// A JSON error answer of the admin API (same body as the proxy's errors).
fn error_response(status: StatusCode, message: &str, request_id: &str) -> HttpResponse {
    let core = crate::http_compat::status_from_02(status);
    HttpResponse::build(status).content_type("application/json").body(error_json(
        core,
        error_code(core),
        message,
        request_id,
    ))
}

/// Registers the admin endpoints.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .route("/admin/config", web::get().to(config))
        .route("/admin/upstreams", web::get().to(upstreams))
        .route("/admin/certificates", web::get().to(certificates))
        .route("/admin/reload", web::post().to(reload))
        .route("/admin/plugins", web::get().to(plugins))
        .default_service(web::to(|| async { error_response(StatusCode::NOT_FOUND, "no such admin endpoint", "") }));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("ok\n")
}

async fn readyz(gw: web::Data<Gateway>) -> HttpResponse {
    if gw.ready.load(Ordering::Relaxed) {
        HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("ready\n")
    } else {
        HttpResponse::ServiceUnavailable().content_type("text/plain; charset=utf-8").body("draining\n")
    }
}

async fn metrics(gw: web::Data<Gateway>) -> HttpResponse {
    // Passive ejections end with time, not with an event: read rotation state at scrape time.
    for pool in &gw.runtime.load().upstreams {
        for backend in &pool.backends {
            backend.refresh_up_gauge();
        }
    }
    gw.metrics.connections.set(gw.connections.load(std::sync::atomic::Ordering::Relaxed) as i64);
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(gw.metrics.render())
}

async fn config(req: HttpRequest, gw: web::Data<Gateway>) -> HttpResponse {
    let rt = gw.runtime.load();
    if let Some(denied) = authorize(&req, &rt.config.admin.token) {
        return denied;
    }
    // Secrets are redacted by the config types' serializers.
    HttpResponse::Ok().json(json!({ "generation": rt.generation, "config": &*rt.config }))
}

/// The plugins in use: version (SHA-256, size, load time), hooks, the routes running each,
/// and a missing file or a refused replacement.
async fn plugins(req: HttpRequest, gw: web::Data<Gateway>) -> HttpResponse {
    let rt = gw.runtime.load();
    if let Some(denied) = authorize(&req, &rt.config.admin.token) {
        return denied;
    }
    #[cfg(feature = "wasm")]
    let body = json!({ "enabled": true, "plugins": rt.plugin_status() });
    #[cfg(not(feature = "wasm"))]
    let body = json!({ "enabled": false, "plugins": [], "message": "this build has no WASM plugin support" });
    HttpResponse::Ok().json(body)
}

async fn upstreams(req: HttpRequest, gw: web::Data<Gateway>) -> HttpResponse {
    let rt = gw.runtime.load();
    if let Some(denied) = authorize(&req, &rt.config.admin.token) {
        return denied;
    }
    let upstreams: Vec<_> = rt
        .upstreams
        .iter()
        .map(|u| {
            let backends: Vec<_> = u
                .backends
                .iter()
                .map(|b| {
                    json!({
                        "url": &*b.label,
                        "healthy": b.is_healthy(),
                        "in_flight": b.in_flight.load(Ordering::Relaxed),
                        "weight": b.weight,
                        "last_error": b.last_error.load().as_deref(),
                    })
                })
                .collect();
            json!({ "name": &*u.name, "strategy": u.strategy, "backends": backends })
        })
        .collect();
    HttpResponse::Ok().json(json!({ "upstreams": upstreams }))
}

/// The HTTPS listener's certificates: per certificate its names, subject, issuer, serial,
/// SHA-256, expiry and files (the first is the default); the client CA file when client
/// certificates are asked for. No key material.
async fn certificates(req: HttpRequest, gw: web::Data<Gateway>) -> HttpResponse {
    let rt = gw.runtime.load();
    if let Some(denied) = authorize(&req, &rt.config.admin.token) {
        return denied;
    }
    let now = crate::tls::certs::unix_now();
    let describe = |c: &crate::tls::LoadedCertificate, default: bool, source: &str, cert_file, key_file| {
        json!({
            "names": c.names,
            "subject": c.subject,
            "issuer": c.issuer,
            "serial": c.serial,
            "sha256": c.sha256,
            "not_after": crate::tls::certs::utc(c.not_after),
            "expires_in_seconds": c.not_after - now,
            "default": default,
            "source": source,
            "cert_file": cert_file,
            "key_file": key_file,
        })
    };
    let mut served: Vec<_> = gw
        .tls_certificates
        .iter()
        .flat_map(|s| s.with_sources())
        .enumerate()
        .map(|(i, (c, cert_file, key_file))| describe(&c, i == 0, "file", Some(cert_file), Some(key_file)))
        .collect();
    // The ACME certificate, served for its domains (and as the default without files; its key
    // file is not named: it is the state directory's).
    let acme = gw.acme.as_ref().map(|acme| {
        let now_served = acme.certificates.served();
        let c = &now_served.certificate;
        let default = served.is_empty();
        served.push(describe(c, default, now_served.source.as_str(), Some(acme.issuer.certificate_path()), None));
        json!({
            "directory": acme.issuer.directory,
            "domains": acme.certificates.domains(),
            "renew_at": crate::tls::certs::utc(crate::acme::renewal::renew_at(c.not_before, c.not_after)),
        })
    });
    let tls = rt.config.server.tls.as_ref();
    HttpResponse::Ok().json(json!({
        "listener": tls.map(|t| t.listen.to_string()),
        "certificates": served,
        "acme": acme,
        "client_auth": tls.map(|t| json!({ "mode": t.client_auth.mode, "ca_file": t.client_auth.ca_file })),
    }))
}

/// Re-reads the configuration file and applies it: 200 `{"status":"ok","generation","changed"}`,
/// or 422 `{"status":"error","errors":[{path,line,column,message}]}` with the old configuration
/// still serving.
async fn reload(req: HttpRequest, gw: web::Data<Gateway>) -> HttpResponse {
    if let Some(denied) = authorize(&req, &gw.runtime.load().config.admin.token) {
        return denied;
    }
    // Reading and compiling may touch files (key files, JWKS files): off the admin's event loop.
    let gateway = gw.into_inner();
    match web::block(move || gateway.reload_file()).await {
        Ok(Ok(done)) => {
            HttpResponse::Ok().json(json!({"status": "ok", "generation": done.generation(), "changed": done.changed()}))
        }
        Ok(Err(error)) => {
            let errors: Vec<_> = error
                .issues
                .iter()
                .map(|i| json!({"path": i.path, "line": i.line, "column": i.column, "message": i.message}))
                .collect();
            HttpResponse::UnprocessableEntity().json(json!({"status": "error", "errors": errors}))
        }
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, &format!("reload did not run: {e}"), ""),
    }
}

/// DESIGN.md's admin rules: no token configured → 403; missing or wrong bearer → 401.
fn authorize(req: &HttpRequest, token: &str) -> Option<HttpResponse> {
    if token.is_empty() {
        return Some(error_response(
            StatusCode::FORBIDDEN,
            "the admin API is disabled: set admin.token to enable it",
            "",
        ));
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(presented.as_bytes(), token.as_bytes()) {
        return None;
    }
    let mut resp = error_response(StatusCode::UNAUTHORIZED, "missing or invalid admin token", "");
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer realm=\"rustygate-admin\""));
    Some(resp)
}

/// Compares without an early exit, so response timing does not reveal how much of a guess was
/// right. The length difference still shows, which reveals nothing useful about the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
