//! The driver: the one place that sequences what happens to a request, whichever front end
//! received it. [`serve`] reads top to bottom:
//!
//! 1. the runtime snapshot the front end loaded (once; the request keeps it to the end)
//! 2. request id, client IP, the request's span
//! 3. the front end's admission (connection limits), then the normalisation policy
//!    (docs/security.md) and the route lookup (404 / 405 / the `/` banner)
//! 4. the route's filters' `request` phase, in chain order (CORS preflight, JWT, rate limit,
//!    plugins' `on_request`): each may answer or refuse
//! 5. body admission (413), then [`attempts`](super::attempts): backend choice (503), forward
//!    attempts with retries (502 / 504), passive health; each attempt's headers pass the
//!    filters' `upstream_request` phase
//! 6. the backend's response head through the filters' `upstream_response` phase (plugins'
//!    `on_response`), last filter first
//! 7. every answer of a routed request — the backend's, a filter's, an error — through the
//!    route's filters' `response` phase (CORS and rate-limit headers), then `X-Request-Id` and
//!    `traceresponse`
//! 8. [`Finish`]: metrics, the end of the span and the access log line (after the filters'
//!    `logging` phase), exactly once, when the front end has sent the body or the client left.

use std::{cell::Cell, net::IpAddr, rc::Rc, sync::Arc};

use super::{
    attempts,
    body::{BodySource, RequestBody},
    ctx::{Finish, RequestCtx},
    filter::Flow,
    message::{BoxError, RequestHead, Response, ResponseBody, UpstreamRequest},
    session::Session,
};
use crate::{
    error::GatewayError,
    gateway::Gateway,
    headers::{self as h, X_REQUEST_ID},
    http_types::{HeaderValue, Method, StatusCode, Version, header},
    normalize::{self, Refusal},
    routing::RouteMatch,
    runtime::Runtime,
    telemetry::{correlation::correlate, otel::spans::TRACERESPONSE},
    tls::ConnectionTls,
    websocket,
};
use futures_util::{StreamExt, TryStreamExt};

/// The text `GET /` answers when no route claims `/`.
pub const BANNER: &str = "RustyGate is running";

/// What the front end knows about the request's connection.
#[derive(Debug)]
pub struct Connection {
    /// The socket peer.
    pub peer: IpAddr,
    /// Why the front end refuses the request before it is looked at (over the connection
    /// limits, pipelined after `Connection: close`), if it does.
    pub refused: Option<GatewayError>,
    /// What the connection negotiated, when it came over TLS.
    pub tls: Option<Arc<ConnectionTls>>,
}

/// A request served: the response to send and its record, to be dropped when the body has
/// been sent (or the client left).
pub struct Served {
    /// The response.
    pub response: Response,
    /// The request's record.
    pub finish: Finish,
}

/// Serves one request on the runtime snapshot `rt` (loaded once by the front end, which may
/// have used it to admit the request).
pub async fn serve(
    gateway: &Arc<Gateway>,
    rt: Arc<Runtime>,
    head: RequestHead,
    body: BodySource,
    conn: Connection,
) -> Served {
    let request_id = match head.headers.get(X_REQUEST_ID) {
        Some(v) if h::is_valid_request_id(v.as_bytes()) => v.clone(),
        _ => HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).expect("a UUID is a valid header value"),
    };
    let peer = conn.peer;
    let peer_trusted = rt.is_trusted_proxy(peer);
    let client_ip = if peer_trusted { h::client_ip(&head.headers, peer, |ip| rt.is_trusted_proxy(ip)) } else { peer };
    let trace = gateway.tracing.as_ref().map(|t| t.start_request(&head, client_ip, conn.tls.as_ref()));
    let session = Session {
        head,
        request_id: request_id.clone(),
        client_ip,
        peer,
        peer_trusted,
        tls: conn.tls,
        upstream: UpstreamRequest::default(),
        state: Default::default(),
        trace,
    };
    let bytes_in = Rc::new(Cell::new(0u64));
    let mut ctx = RequestCtx::new(gateway.clone(), rt, session, bytes_in);

    // Log lines emitted while the request runs carry its trace and span ids.
    let ids = ctx.trace_ids;
    let mut resp = match correlate(ids, run(&mut ctx, body, conn.refused)).await {
        Ok(resp) => resp,
        Err(err) => {
            // The client's fault: counted, and logged at DEBUG only (a flood of malformed
            // requests must not become a flood of log lines).
            if let Some(reason) = err.client_reason() {
                gateway.metrics.client_errors_total.with_label_values(&[reason]).inc();
                tracing::debug!(reason, error = %err, "client error");
            }
            // A gRPC client reads a status, not a JSON body.
            let resp = if ctx.grpc {
                crate::grpc::error_response(&err)
            } else {
                err.to_response(request_id.to_str().unwrap_or_default())
            };
            ctx.error = Some(err);
            resp
        }
    };
    // The `response` phase of the route's filters, last first, on every answer of a routed
    // request (each writes only what its own `request` phase decided: no rate-limit headers
    // without a decision, no CORS headers on an answered preflight).
    if let Some(route) = ctx.route() {
        for filter in route.filters.iter().rev() {
            filter.response(&mut ctx.session, &mut resp);
        }
    }
    // Every answer, the backend's or the gateway's, carries the request id, and the trace to
    // look up when the request is traced.
    resp.headers.insert(X_REQUEST_ID, request_id);
    if let Some(trace) = &ctx.session.trace
        && gateway.tracing.as_ref().is_some_and(|t| t.traceresponse)
    {
        resp.headers.insert(TRACERESPONSE, trace.traceresponse());
    }
    if ctx.grpc {
        ctx.grpc_status = Some(crate::grpc::status_label(&resp.headers));
        if let ResponseBody::Stream { trailers: Some(trailers), .. } = &resp.body {
            ctx.trailers = Some(trailers.clone());
        }
    }
    let finish = ctx.finish(resp.status);
    Served { response: resp, finish }
}

/// Steps 3 to 6: the response, or why the gateway answers itself.
async fn run(ctx: &mut RequestCtx, body: BodySource, refused: Option<GatewayError>) -> Result<Response, GatewayError> {
    if let Some(refusal) = refused {
        return Err(refusal);
    }
    let rt = ctx.runtime.clone();
    let head = &ctx.session.head;
    // The normalisation policy (docs/security.md), before anything looks at host or path.
    check_head_size(head, &rt)?;
    check_method(&head.method)?;
    let host = normal_host(head)?;
    let normal = normalize::path(head.uri.path()).map_err(GatewayError::Malformed)?;
    let path = &*normal.path;
    // ACME's HTTP-01 challenges of a pending order (`server.tls.acme`), before routing: the
    // CA asks on port 80, for any host the order names. Unknown tokens go on as any request.
    if let Some(token) = path.strip_prefix(crate::acme::HTTP01_PREFIX)
        && let Some(acme) = &ctx.gateway().acme
        && let Some(answer) = acme.certificates.http01(token)
    {
        return Ok(Response::full(StatusCode::OK, "application/octet-stream", answer));
    }
    // `server.redirect_https`: the plain listener sends every request to the HTTPS one (ACME's
    // HTTP-01 challenges excepted: they must be answered over plain HTTP).
    if rt.redirect_https && ctx.session.tls.is_none() && !path.starts_with(crate::acme::HTTP01_PREFIX) {
        let port = ctx.gateway().https_port.get().copied().unwrap_or(443);
        return redirect_to_https(host.as_deref(), port, head);
    }
    let route = match rt.routes.find(host.as_deref(), path, &head.method) {
        RouteMatch::Found(route) => route.clone(),
        RouteMatch::NotFound if path == "/" && matches!(head.method, Method::GET | Method::HEAD) => {
            return Ok(Response::full(StatusCode::OK, "text/plain; charset=utf-8", BANNER));
        }
        RouteMatch::NotFound => return Err(GatewayError::NoRoute),
        RouteMatch::MethodNotAllowed(allow) => return Err(GatewayError::MethodNotAllowed(allow)),
    };
    if normal.encoded_slash && !route.allow_encoded_slashes {
        ctx.enter_route(route);
        return Err(GatewayError::Malformed(Refusal::EncodedSlash));
    }
    // `/strip;x/y`: stripping the prefix would leave a path starting with a parameter.
    if route.strip_prefix && route.prefix != "/" && path[route.prefix.len()..].starts_with(';') {
        ctx.enter_route(route);
        return Err(GatewayError::Malformed(Refusal::PrefixParameter));
    }
    // The request as it will go upstream: the client's end-to-end headers less what the
    // gateway owns, the (stripped) normalised path, the client's query. Filters edit it.
    // A clone shares the values (no copy of their bytes); what is not end-to-end goes after.
    let mut upstream_headers = head.headers.clone();
    h::retain_end_to_end(&mut upstream_headers, &h::REQUEST_SET_BY_GATEWAY);
    route.header_rules.apply(&mut upstream_headers);
    ctx.session.upstream = UpstreamRequest {
        path: route.upstream_path(path).to_owned(),
        query: head.uri.query().map(str::to_owned),
        headers: upstream_headers,
        websocket: route.websocket.is_some() && websocket::is_handshake(&head.method, head.version, &head.headers),
    };
    ctx.enter_route(route.clone());

    // The filters' `request` phase, in order: the first answer or refusal ends it.
    for (i, filter) in route.filters.iter().enumerate() {
        ctx.enter_filter(i);
        match filter.request(&mut ctx.session).decided().await {
            Ok(Flow::Continue) => {}
            Ok(Flow::Respond(answer)) => {
                tracing::debug!(filter = filter.name(), status = answer.status.as_u16(), "a filter answered");
                return Ok(answer);
            }
            Err(refusal) => {
                tracing::debug!(filter = filter.name(), error = %refusal, "a filter refused the request");
                return Err(refusal);
            }
        }
    }

    // For actix, the body of an upgrade request is the rest of the connection: a declared
    // body there is ambiguous (and would be read forever).
    let headers = &ctx.session.head.headers;
    if h::asks_upgrade(headers)
        && (headers.contains_key(header::CONTENT_LENGTH) || headers.contains_key(header::TRANSFER_ENCODING))
    {
        return Err(GatewayError::Malformed(Refusal::UpgradeWithBody));
    }
    // A WebSocket handshake goes upstream without a body; what the client sends after it is
    // the session's, relayed once the backend has answered 101.
    let (body, session_bytes) = match &route.websocket {
        Some(sessions) if ctx.session.upstream.websocket => (RequestBody::Empty, Some((sessions.clone(), body))),
        _ => {
            (RequestBody::new(&ctx.session.head, body, rt.max_body_size, ctx.bytes_in(), rt.client_body_timeout)?, None)
        }
    };
    // Boxed: the attempts' state (the upstream client's send future among it) is large, and
    // inline it would be copied with the request's future every time that one moves.
    let mut resp = Box::pin(attempts::forward(&route, ctx, body)).await?;
    // The backend's answer through the `upstream_response` phase, last filter first.
    for filter in route.filters.iter().rev() {
        resp = filter.upstream_response(&mut ctx.session, resp)?;
    }
    if let Some((sessions, client)) = session_bytes {
        relay_websocket(ctx, sessions, &mut resp, client);
    }
    Ok(resp)
}

/// After a WebSocket handshake: on the backend's `101` (still one after the filters), the
/// session's relay becomes the response's body; any other answer is the backend's refusal,
/// relayed as it is.
fn relay_websocket(
    ctx: &mut RequestCtx,
    sessions: Arc<websocket::RouteSessions>,
    resp: &mut Response,
    client: BodySource,
) {
    match std::mem::replace(&mut resp.body, ResponseBody::None) {
        ResponseBody::Switched(backend) if resp.status == StatusCode::SWITCHING_PROTOCOLS => {
            let gateway = ctx.gateway();
            let (relay, record) =
                websocket::relay::start(sessions, &gateway.websockets, backend, client, ctx.bytes_in());
            ctx.websocket = Some(record);
            resp.body = ResponseBody::Stream {
                length: None,
                stream: relay.map_err(BoxError::from).boxed_local(),
                trailers: None,
            };
        }
        // A filter replaced the 101: the backend's connection is closed with it.
        ResponseBody::Switched(_) => {}
        other => {
            sessions.refused();
            resp.body = other;
        }
    }
}

/// A 308 to the same host, path and query on the HTTPS listener's port (left out when 443).
fn redirect_to_https(host: Option<&str>, port: u16, head: &RequestHead) -> Result<Response, GatewayError> {
    let host = host.ok_or(GatewayError::BadRequest("a request without a Host cannot be redirected to HTTPS"))?;
    let target = head.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let location =
        if port == 443 { format!("https://{host}{target}") } else { format!("https://{host}:{port}{target}") };
    let location =
        HeaderValue::try_from(location).map_err(|_| GatewayError::BadRequest("the request cannot be redirected"))?;
    let mut resp = Response::full(StatusCode::PERMANENT_REDIRECT, "text/plain; charset=utf-8", "");
    resp.headers.insert(header::LOCATION, location);
    Ok(resp)
}

/// The request line and each header line within `server.max_header_size`, the whole head
/// within `server.max_request_head_size` (414 / 431, as NGINX answers).
fn check_head_size(head: &RequestHead, rt: &Runtime) -> Result<(), GatewayError> {
    let target = head.uri.path_and_query().map_or(0, |pq| pq.as_str().len()) + head.method.as_str().len();
    if target > rt.max_header_size {
        return Err(GatewayError::UriTooLong);
    }
    let mut total = target + 11;
    for (name, value) in head.headers.iter() {
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
        return Err(GatewayError::MethodNotAllowed(HeaderValue::from_static("")));
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
fn normal_host(head: &RequestHead) -> Result<Option<std::borrow::Cow<'_, str>>, GatewayError> {
    let bad = |r| GatewayError::Malformed(r);
    let mut hosts = head.headers.get_all(header::HOST).iter();
    let header = match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err(bad(Refusal::DuplicateHost)),
        (Some(v), None) => Some(normalize::host(v.to_str().map_err(|_| bad(Refusal::BadHost))?).map_err(bad)?),
        (None, _) => None,
    };
    let target = match head.uri.authority() {
        Some(_) if !matches!(head.uri.scheme_str(), Some("http" | "https")) => return Err(bad(Refusal::NotAPath)),
        Some(authority) => Some(normalize::host(authority.as_str()).map_err(bad)?),
        None => None,
    };
    let host = match (header, target) {
        (Some(Some(h)), Some(Some(t))) if h != t => return Err(bad(Refusal::HostMismatch)),
        (Some(h), None) => h,
        (_, Some(t)) => t,
        (None, None) => None,
    };
    if host.is_none() && head.version == Version::HTTP_11 {
        return Err(bad(Refusal::MissingHost));
    }
    Ok(host)
}
