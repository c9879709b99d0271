//! The request pipeline: the one place that sequences what happens to a request. actix hands
//! every proxy-port request to [`handle`]; from there it reads top to bottom:
//!
//! 1. load the current runtime snapshot (once; the request keeps it to the end)
//! 2. request id, client IP
//! 3. route lookup (404 / 405 / the `/` banner)
//! 4. request filters, in this order: CORS preflight (answered here, never forwarded), JWT auth
//!    (401), rate limit (429; after auth so that a limit can key on a claim), then the route's
//!    WASM plugins' `on_request` (which may answer themselves, or fail: 500 `plugin_failed`)
//! 5. body admission (413), then [`attempts`]: backend choice (503), forward attempts with
//!    retries on other backends (502 / 504), passive health
//! 6. the response, whose body streams from the backend, after the plugins' `on_response`
//! 7. [`finish`](ctx::Finish): metrics, the end of the request's span and the access log line,
//!    exactly once, when the response body ends or the client goes away.
//!
//! With tracing on, the request's SERVER span starts before step 2 and each attempt of step 5
//! has a CLIENT span; log lines emitted meanwhile carry the trace and span ids.

mod attempts;
mod body;
mod ctx;

use std::{cell::Cell, rc::Rc};

use actix_web::{
    HttpRequest, HttpResponse,
    dev::Payload,
    http::{ConnectionType, Method, header},
    web,
};

pub use body::MeteredBody;
pub use ctx::{RequestCtx, UNMATCHED};

use opentelemetry::KeyValue;

use crate::{
    error::GatewayError,
    gateway::Gateway,
    headers::{self as h, X_REQUEST_ID},
    normalize::{self, Refusal},
    plugins::{ChainResult, Exchange, Pinned},
    proxy::{body::RequestBody, forward},
    routing::RouteMatch,
    telemetry::{correlation::correlate, otel::spans::TRACERESPONSE},
};

/// The text `GET /` answers when no route claims `/`.
pub const BANNER: &str = "RustyGate is running";

/// Per-connection state, inserted by the proxy listener's `on_connect` and dropped with the
/// connection.
pub struct ConnectionState {
    /// A request on this connection asked for `Connection: close` (or was HTTP/1.0 without
    /// keep-alive): requests pipelined after it are not served. actix parses them anyway.
    closing: Cell<bool>,
    /// The gateway's count of open connections, decremented on drop.
    open: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// This connection's number among the open ones when it was accepted.
    rank: usize,
    /// The peer's address and its count of open connections, decremented on drop.
    per_ip: Option<(std::net::IpAddr, std::sync::Arc<PerIpConnections>)>,
    /// This connection's number among its peer's open ones when it was accepted.
    ip_rank: usize,
}

/// Open client connections per peer address (`server.max_connections_per_ip`).
#[derive(Debug, Default)]
pub struct PerIpConnections(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

impl ConnectionState {
    /// Counts a new connection from `peer` (per peer only when `per_ip` counts are kept).
    pub fn open(
        counter: &std::sync::Arc<std::sync::atomic::AtomicUsize>,
        per_ip: Option<&std::sync::Arc<PerIpConnections>>,
        peer: Option<std::net::IpAddr>,
    ) -> Self {
        let rank = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let per_ip = per_ip.zip(peer).map(|(counts, ip)| (ip, counts.clone()));
        let ip_rank = per_ip.as_ref().map_or(0, |(ip, counts)| {
            let mut counts = counts.0.lock().unwrap_or_else(|e| e.into_inner());
            let n = counts.entry(*ip).or_insert(0);
            *n += 1;
            *n
        });
        Self { closing: Cell::default(), open: counter.clone(), rank, per_ip, ip_rank }
    }
}

impl Drop for ConnectionState {
    fn drop(&mut self) {
        self.open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if let Some((ip, per_ip)) = &self.per_ip {
            let mut counts = per_ip.0.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = counts.get_mut(ip) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(ip);
                }
            }
        }
    }
}

/// actix's entry point for every request on the proxy listener.
pub async fn handle(req: HttpRequest, payload: web::Payload, gw: web::Data<Gateway>) -> HttpResponse<MeteredBody> {
    let rt = gw.runtime.load_full();
    let request_id = match req.headers().get(X_REQUEST_ID) {
        Some(v) if h::is_valid_request_id(v.as_bytes()) => v.clone(),
        _ => header::HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).expect("a UUID is a valid header value"),
    };
    let peer = req.peer_addr().map(|a| a.ip()).unwrap_or(std::net::Ipv6Addr::UNSPECIFIED.into());
    let peer_trusted = rt.is_trusted_proxy(peer);
    let client_ip = if peer_trusted { h::client_ip(req.headers(), peer, |ip| rt.is_trusted_proxy(ip)) } else { peer };
    let bytes_in = Rc::new(Cell::new(0u64));
    let trace = gw.tracing.as_ref().map(|t| t.start_request(&req, client_ip));
    let mut ctx = RequestCtx::new(
        gw.clone().into_inner(),
        rt.clone(),
        &req,
        request_id.clone(),
        client_ip,
        bytes_in.clone(),
        trace,
    );

    // Log lines emitted while the request runs carry its trace and span ids.
    let ids = ctx.trace_ids;
    let result =
        correlate(ids, route_and_forward(&req, payload.into_inner(), &mut ctx, peer, peer_trusted, bytes_in)).await;
    let mut resp = match result {
        Ok(resp) => resp,
        Err(err) => {
            // The client's fault: counted, and logged at DEBUG only (a flood of malformed
            // requests must not become a flood of log lines).
            if let Some(reason) = err.client_reason() {
                gw.metrics.client_errors_total.with_label_values(&[reason]).inc();
                tracing::debug!(reason, error = %err, "client error");
            }
            ctx.error = Some(err.to_string());
            err.to_response(request_id.to_str().unwrap_or_default())
        }
    };
    // Headers the plugins set for the response go on every answer, whoever made it.
    if let Some(headers) = ctx.plugin_response_headers.take() {
        for (name, value) in headers {
            resp.headers_mut().insert(name, value);
        }
    }
    // Every answer, the backend's or the gateway's, carries the request id, and the trace to
    // look up when the request is traced.
    resp.headers_mut().insert(X_REQUEST_ID, request_id);
    if let Some(trace) = &ctx.trace
        && gw.tracing.as_ref().is_some_and(|t| t.traceresponse)
    {
        resp.headers_mut().insert(TRACERESPONSE, trace.traceresponse());
    }
    // Rate-limit headers go on every answer of a limited route, the 429 included.
    if let (Some(limit), Some(decision)) = (ctx.route().and_then(|r| r.rate_limit.as_ref()), &ctx.rate_limit) {
        limit.write_headers(decision, resp.headers_mut());
    }
    // Response filters. CORS headers go on backend and gateway answers alike (so scripts can
    // read error bodies), but not on a preflight, which was answered complete.
    if let Some(cors) = ctx.route().and_then(|r| r.cors.as_ref())
        && !ctx.preflight_answered
    {
        cors.decorate(req.headers(), resp.headers_mut());
    }
    // The answer to a request that closes the connection says so (actix decides from the last
    // request it parsed, which may be a pipelined one after it).
    if req.head().connection_type() == ConnectionType::Close
        || req.conn_data::<ConnectionState>().is_some_and(|c| c.closing.get())
    {
        resp.head_mut().set_connection_type(ConnectionType::Close);
    }
    let finish = ctx.finish(resp.status());
    resp.map_body(|_, body| MeteredBody::new(body, finish))
}

async fn route_and_forward(
    req: &HttpRequest,
    payload: Payload,
    ctx: &mut RequestCtx,
    peer: std::net::IpAddr,
    peer_trusted: bool,
    bytes_in: Rc<Cell<u64>>,
) -> Result<HttpResponse, GatewayError> {
    let rt = ctx.runtime.clone();
    if let Some(conn) = req.conn_data::<ConnectionState>() {
        if conn.closing.get() {
            return Err(GatewayError::Malformed(Refusal::AfterClose));
        }
        // Over `server.max_connections` (or the peer's share): refused with a 503 that closes
        // the connection.
        if conn.rank > rt.max_connections || (rt.max_connections_per_ip > 0 && conn.ip_rank > rt.max_connections_per_ip)
        {
            conn.closing.set(true);
            return Err(GatewayError::TooManyConnections);
        }
        conn.closing.set(req.head().connection_type() == ConnectionType::Close);
    }
    // The normalisation policy (docs/security.md), before anything looks at host or path.
    check_head_size(req, &rt)?;
    check_method(req.method())?;
    let host = normal_host(req)?;
    let normal = normalize::path(req.uri().path()).map_err(GatewayError::Malformed)?;
    let path = &*normal.path;
    let route = match rt.routes.find(host.as_deref(), path, req.method()) {
        RouteMatch::Found(route) => route.clone(),
        RouteMatch::NotFound if path == "/" && matches!(*req.method(), Method::GET | Method::HEAD) => {
            return Ok(HttpResponse::Ok().content_type("text/plain; charset=utf-8").body(BANNER));
        }
        RouteMatch::NotFound => return Err(GatewayError::NoRoute),
        RouteMatch::MethodNotAllowed(allow) => return Err(GatewayError::MethodNotAllowed(allow)),
    };
    ctx.enter_route(route.clone());
    if normal.encoded_slash && !route.allow_encoded_slashes {
        return Err(GatewayError::Malformed(Refusal::EncodedSlash));
    }
    // `/strip;x/y`: stripping the prefix would leave a path starting with a parameter.
    if route.strip_prefix && route.prefix != "/" && path[route.prefix.len()..].starts_with(';') {
        return Err(GatewayError::Malformed(Refusal::PrefixParameter));
    }

    // Request filters, before any body is read. CORS preflights first: they carry no
    // credentials, so auth (next, when it lands) must not see them.
    if let Some(answer) = route.cors.as_ref().and_then(|cors| cors.preflight(req)) {
        // Answered complete either way: a rejected preflight gets no CORS headers.
        ctx.preflight_answered = true;
        return answer.map_err(GatewayError::Forbidden);
    }
    // Auth: nothing about an unauthenticated request reaches the backend or a bucket. A token
    // in the query is kept out of the access log, valid or not.
    if ctx.logs_query()
        && let Some(policy) = &route.auth
        && let Some(clean) = req.uri().query().and_then(|q| policy.query_without_token(q))
    {
        ctx.replace_logged_query(&clean);
    }
    let authenticated = match &route.auth {
        None => None,
        Some(policy) => match policy.authenticate(req).await {
            Ok(authenticated) => Some(authenticated),
            Err(reason) => {
                route.metrics.auth_rejected(reason);
                ctx.trace_event("auth rejected", || vec![KeyValue::new("rustygate.auth.reason", reason.label())]);
                return Err(GatewayError::Unauthorized(reason));
            }
        },
    };
    // Rate limit, after auth so that a limit can key on a claim.
    if let Some(limit) = &route.rate_limit {
        let decision = limit.check(ctx.client_ip(), req.headers(), authenticated.as_ref().map(|a| &a.verified.claims));
        ctx.rate_limit = Some(decision);
        if !decision.allowed {
            if let Some(counter) = &route.metrics.rate_limited {
                counter.inc();
            }
            ctx.trace_event("rate limited", || {
                vec![KeyValue::new("rustygate.rate_limit.retry_after_s", decision.retry_after as i64)]
            });
            return Err(GatewayError::TooManyRequests { retry_after: decision.retry_after });
        }
    }
    // Plugins: `on_request` may edit what goes upstream, answer, or fail the request.
    let mut exchange = None;
    if !route.plugins.is_empty() {
        let mut headers = header::HeaderMap::with_capacity(req.headers().len());
        forward::forwarded_client_headers(req, &route, authenticated.as_ref(), &mut headers);
        let mut ex = Exchange::for_request(
            req.method().clone(),
            route.upstream_path(path).to_owned(),
            forward::upstream_query(req, authenticated.as_ref()).map(str::to_owned),
            headers,
            route.auth.clone(),
            route.header_rules.clone(),
        );
        let mut pinned = Pinned::default();
        let result = route.plugins.on_request(&mut ex, &mut pinned);
        // Response headers set so far go on whatever answer the client gets (a plugin's answer
        // carries them already).
        if !ex.response_headers.is_empty() {
            ctx.plugin_response_headers = Some(std::mem::take(&mut ex.response_headers));
        }
        match result {
            Ok(ChainResult::Continue) => {}
            Ok(ChainResult::Respond(resp)) => {
                ctx.trace_event("plugin responded", Vec::new);
                return Ok(resp);
            }
            Err(e) => return Err(plugin_failed(ctx, e)),
        }
        exchange = Some((ex, pinned));
    }

    // For actix, the body of an upgrade request is the rest of the connection: a declared
    // body there is ambiguous (and would be read forever).
    if req.head().upgrade()
        && (req.headers().contains_key(header::CONTENT_LENGTH) || req.headers().contains_key(header::TRANSFER_ENCODING))
    {
        return Err(GatewayError::Malformed(Refusal::UpgradeWithBody));
    }
    let body = RequestBody::new(req, payload, rt.max_body_size, bytes_in.clone(), rt.client_body_timeout)?;
    let client = rt.client;
    let from = attempts::Client {
        path,
        peer,
        peer_trusted,
        auth: authenticated.as_ref(),
        client,
        plugins: exchange.as_ref().map(|(ex, _)| ex),
    };
    let mut resp = attempts::forward(req, &route, ctx, body, from).await?;
    if let Some((ex, pinned)) = exchange.as_mut().filter(|(_, pinned)| route.plugins.wants_response(pinned)) {
        ex.status = Some(resp.status());
        ex.response_headers = std::mem::take(resp.headers_mut());
        // `on_response` sees (and may change) the headers `on_request` set too.
        for (name, value) in ctx.plugin_response_headers.take().into_iter().flatten() {
            ex.response_headers.insert(name, value);
        }
        match route.plugins.on_response(ex, pinned) {
            Ok(ChainResult::Continue) => *resp.headers_mut() = std::mem::take(&mut ex.response_headers),
            Ok(ChainResult::Respond(answer)) => {
                ctx.trace_event("plugin replaced the response", Vec::new);
                resp = answer;
            }
            Err(e) => return Err(plugin_failed(ctx, e)),
        }
    }
    Ok(resp)
}

/// The request line and each header line within `server.max_header_size`, the whole head
/// within `server.max_request_head_size` (414 / 431, as NGINX answers).
fn check_head_size(req: &HttpRequest, rt: &crate::runtime::Runtime) -> Result<(), GatewayError> {
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len()) + req.method().as_str().len();
    if target > rt.max_header_size {
        return Err(GatewayError::UriTooLong);
    }
    let mut total = target + 11;
    for (name, value) in req.headers() {
        // `Name: value\r\n`
        let line = name.as_str().len() + value.len() + 4;
        total += line;
        if line > rt.max_header_size || total > rt.max_request_head_size {
            return Err(GatewayError::HeadersTooLarge);
        }
    }
    Ok(())
}

/// Methods are case-sensitive tokens (RFC 9110 §9.1): one with lower-case letters is refused
/// rather than matched as an unknown method that a case-folding backend would serve as `GET`.
fn check_method(method: &Method) -> Result<(), GatewayError> {
    // CONNECT asks for a tunnel; TRACE would reflect the request's headers (cookies and
    // credentials included) to a script that can read the answer. Neither is offered.
    if *method == Method::CONNECT || *method == Method::TRACE {
        return Err(GatewayError::MethodNotAllowed(header::HeaderValue::from_static("")));
    }
    if method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(GatewayError::Malformed(Refusal::MethodCase));
    }
    Ok(())
}

/// The request's host, normalised for matching: from its one `Host` header, else the target's
/// authority. Two `Host` headers, or none (or an empty one) on HTTP/1.1, are refused (RFC 9112
/// §3.2). An absolute-form target (`GET http://a/x`) names the host itself (§3.2.2): it must
/// agree with `Host`, so what is routed is what the backend is told.
fn normal_host(req: &HttpRequest) -> Result<Option<std::borrow::Cow<'_, str>>, GatewayError> {
    let bad = |r| GatewayError::Malformed(r);
    let mut hosts = req.headers().get_all(header::HOST);
    let header = match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err(bad(Refusal::DuplicateHost)),
        (Some(v), None) => Some(normalize::host(v.to_str().map_err(|_| bad(Refusal::BadHost))?).map_err(bad)?),
        (None, _) => None,
    };
    let target = match req.uri().authority() {
        Some(_) if !matches!(req.uri().scheme_str(), Some("http" | "https")) => return Err(bad(Refusal::NotAPath)),
        Some(authority) => Some(normalize::host(authority.as_str()).map_err(bad)?),
        None => None,
    };
    let host = match (header, target) {
        (Some(Some(h)), Some(Some(t))) if h != t => return Err(bad(Refusal::HostMismatch)),
        (Some(h), None) => h,
        (_, Some(t)) => t,
        (None, None) => None,
    };
    if host.is_none() && req.version() == actix_web::http::Version::HTTP_11 {
        return Err(bad(Refusal::MissingHost));
    }
    Ok(host)
}

/// Marks a closed-policy plugin failure on the request's span.
fn plugin_failed(ctx: &mut RequestCtx, e: GatewayError) -> GatewayError {
    if let GatewayError::PluginFailed { plugin, outcome } = &e {
        ctx.trace_event("plugin failed", || {
            vec![
                KeyValue::new("rustygate.plugin", plugin.to_string()),
                KeyValue::new("rustygate.plugin.outcome", *outcome),
            ]
        });
    }
    e
}
