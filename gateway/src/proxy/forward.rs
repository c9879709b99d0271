//! One upstream attempt: build the backend request (URI, headers, body), send it with the
//! route's per-attempt timeout, and turn the backend's response head into the client response
//! whose body is streamed through, never buffered.

use std::net::IpAddr;

use actix_web::{
    HttpRequest, HttpResponse,
    body::{BodyStream, BoxBody, None as NoBody, SizedStream},
    error::PayloadError,
    http::{Method, StatusCode, Uri, header},
};
use bytes::Bytes;
use futures_util::Stream;

use super::{
    body::{RequestBody, UpstreamResponse},
    idle::IdleTimeout,
};
use crate::headers as h;
use crate::{config::UpstreamClient, error::GatewayError, routing::Route, upstream::Backend};

/// What the pipeline knows about the request that the attempt needs.
pub struct Outgoing<'a> {
    /// The client request (head only; the body is in `body`).
    pub req: &'a HttpRequest,
    /// The matched route.
    pub route: &'a Route,
    /// The normalised request path (what the route was matched on).
    pub path: &'a str,
    /// The chosen backend.
    pub backend: &'a Backend,
    /// The client's socket peer (appended to `X-Forwarded-For`).
    pub peer: IpAddr,
    /// Whether the peer is a trusted proxy (its `X-Forwarded-Proto/Host` are kept).
    pub peer_trusted: bool,
    /// The request id to send.
    pub request_id: &'a header::HeaderValue,
    /// What the route's JWT policy verified (claim headers, a query without the token).
    pub auth: Option<&'a crate::filters::jwt::Authenticated>,
    /// The request as the route's plugins left it: its path, query and headers replace the
    /// client's.
    pub plugins: Option<&'a crate::plugins::Exchange>,
    /// The attempt's span, whose context the backend receives as its parent.
    pub trace: Option<(&'a crate::telemetry::otel::Tracing, &'a crate::telemetry::otel::AttemptSpan)>,
}

/// Sends the request to the backend and returns the response head, mapped to the client
/// response (headers rewritten, body streaming from the backend).
pub async fn attempt(
    out: &Outgoing<'_>,
    body: RequestBody,
    client: UpstreamClient,
    timeout: std::time::Duration,
) -> Result<HttpResponse, GatewayError> {
    let uri = upstream_uri(out)?;
    let mut headers = header::HeaderMap::with_capacity(out.req.headers().len() + 6);
    upstream_headers(out, &mut headers);
    let pool = &out.route.upstream;
    match client {
        UpstreamClient::Awc => {
            let resp = super::client::send(pool.connect_timeout, out.req.method(), uri, headers, body, timeout).await?;
            client_response(out, resp)
        }
        UpstreamClient::Reqwest => {
            let resp =
                super::reqwest_client::send(pool.connect_timeout, out.req.method(), &uri, &headers, body, timeout)
                    .await?;
            client_response(out, resp)
        }
    }
}

/// The client's headers as they go upstream, before the gateway's own: end-to-end headers
/// only, the client's copies of claim headers (and `Authorization` if not forwarded) removed,
/// and the verified claims added. Claim headers are the gateway's word, not the client's.
/// This is also what the route's plugins see and edit.
pub fn forwarded_client_headers(
    req: &HttpRequest,
    route: &Route,
    auth: Option<&crate::filters::jwt::Authenticated>,
    headers: &mut header::HeaderMap,
) {
    h::copy_end_to_end(req.headers(), headers, &h::REQUEST_SET_BY_GATEWAY);
    route.header_rules.apply(headers);
    if let Some(policy) = &route.auth {
        for name in &policy.strip {
            headers.remove(name);
        }
    }
    if let Some(auth) = auth {
        for (name, value) in &auth.verified.headers {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// The headers of the upstream request: the client's (as the plugins left them, if any), then
/// `Host`, `X-Forwarded-*`, `Via` and `X-Request-Id`.
fn upstream_headers(out: &Outgoing<'_>, headers: &mut header::HeaderMap) {
    let req = out.req;
    match out.plugins {
        // Already cleaned by `forwarded_client_headers`; plugins cannot set the reserved ones.
        Some(ex) => {
            for (name, value) in ex.request_headers.iter() {
                headers.append(name.clone(), value.clone());
            }
        }
        None => forwarded_client_headers(req, out.route, out.auth, headers),
    }
    let client_host = req
        .headers()
        .get(header::HOST)
        .cloned()
        .or_else(|| req.uri().authority().and_then(|a| header::HeaderValue::from_str(a.as_str()).ok()));
    let host = match (&client_host, out.route.upstream.preserve_host) {
        (Some(h), true) => h.clone(),
        _ => out.backend.host_header.clone(),
    };
    headers.insert(header::HOST, host);
    headers.insert(h::X_FORWARDED_FOR, h::forwarded_for(req.headers(), out.peer));
    let keep = |name| out.peer_trusted.then(|| req.headers().get(&name).cloned()).flatten();
    let proto = keep(h::X_FORWARDED_PROTO).unwrap_or(header::HeaderValue::from_static("http"));
    headers.insert(h::X_FORWARDED_PROTO, proto);
    if let Some(fwd_host) = keep(h::X_FORWARDED_HOST).or(client_host) {
        headers.insert(h::X_FORWARDED_HOST, fwd_host);
    }
    headers.append(header::VIA, h::via_value(req.version()));
    headers.insert(h::X_REQUEST_ID, out.request_id.clone());
    // Traced: the backend's parent is this attempt's span. Untraced: the caller's
    // `traceparent` passed through unchanged with the other headers.
    if let Some((tracing, span)) = out.trace {
        tracing.inject(span, headers);
    }
}

/// The client response for a backend response: hop-by-hop headers dropped, `Via` added (the
/// pipeline adds `X-Request-Id`), the body streamed as it arrives.
fn client_response<S, E>(out: &Outgoing<'_>, resp: UpstreamResponse<S>) -> Result<HttpResponse, GatewayError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin + 'static,
    E: Into<Box<dyn std::error::Error>> + 'static,
{
    let status = resp.status;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        // A `101` to a request that asked for no upgrade cannot be relayed: the client would be
        // left speaking the wrong protocol. The backend misbehaves: a backend failure.
        return Err(GatewayError::UpstreamProtocol("an unrequested 101 Switching Protocols from the backend".into()));
    }
    if status.is_informational() {
        // awc hands interim answers (100, 102, 103 Early Hints) over as the final one; they
        // cannot be relayed as such. Legitimate for the backend, so not held against it
        // (no ejection): a limitation of the forwarding client (docs/security.md).
        return Err(GatewayError::UpstreamInterim(status));
    }
    let mut client_resp = HttpResponse::new(status);
    let out_headers = client_resp.headers_mut();
    // actix writes `Content-Length` from the body's size, except on 304, where the header
    // (the length of the representation described) is kept as the backend sent it.
    let skip: &[header::HeaderName] =
        if status == StatusCode::NOT_MODIFIED { &h::RESPONSE_SET_BY_GATEWAY[1..] } else { &h::RESPONSE_SET_BY_GATEWAY };
    h::copy_end_to_end(&resp.headers, out_headers, skip);
    out_headers.append(header::VIA, h::via_value(resp.version));

    let length = resp
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok());
    let bodiless_status = status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let body = match (out.req.method() == Method::HEAD, length) {
        _ if bodiless_status => BoxBody::new(NoBody::new()),
        // A HEAD answer announces the length of the body a GET would get. The header is set
        // here and the body is an empty stream without chunking: actix's encoder then writes
        // no body whatever it believes of the request (with pipelining, its idea of "the
        // request was HEAD" belongs to the last request parsed, not to this one).
        (true, Some(len)) => {
            client_resp.headers_mut().insert(header::CONTENT_LENGTH, header::HeaderValue::from(len));
            client_resp.head_mut().no_chunking(true);
            BoxBody::new(BodyStream::new(futures_util::stream::empty::<Result<Bytes, PayloadError>>()))
        }
        (true, None) => BoxBody::new(NoBody::new()),
        (false, Some(len)) => {
            BoxBody::new(SizedStream::new(len, IdleTimeout::new(resp.body, out.route.upstream.read_timeout)))
        }
        (false, None) => BoxBody::new(BodyStream::new(IdleTimeout::new(resp.body, out.route.upstream.read_timeout))),
    };
    Ok(client_resp.set_body(body))
}

/// The query sent upstream: the client's, less a token the JWT policy took from it.
pub fn upstream_query<'a>(
    req: &'a HttpRequest,
    auth: Option<&'a crate::filters::jwt::Authenticated>,
) -> Option<&'a str> {
    match auth.and_then(|a| a.query.as_deref()) {
        // The token came in the query: forward the query without it.
        Some(rest) => Some(rest).filter(|q| !q.is_empty()),
        None => req.uri().query(),
    }
}

/// `scheme://authority` of the backend, its base path, then the (possibly stripped) normalised
/// request path and the query exactly as the client sent it.
fn upstream_uri(out: &Outgoing<'_>) -> Result<Uri, GatewayError> {
    let (path, query) = match out.plugins {
        Some(ex) => (ex.path.as_str(), ex.query.as_deref()),
        None => (out.route.upstream_path(out.path), upstream_query(out.req, out.auth)),
    };
    let mut pq = String::with_capacity(out.backend.base_path.len() + path.len() + query.map_or(0, |q| q.len() + 1));
    pq.push_str(&out.backend.base_path);
    pq.push_str(path);
    if let Some(q) = query {
        pq.push('?');
        pq.push_str(q);
    }
    Uri::builder()
        .scheme(out.backend.scheme.clone())
        .authority(out.backend.authority.clone())
        .path_and_query(pq)
        .build()
        .map_err(|_| GatewayError::BadRequest("the request path cannot be forwarded"))
}
