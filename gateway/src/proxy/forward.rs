//! One upstream attempt: build the backend request (URI, headers, body), send it with the
//! route's per-attempt timeout, and turn the backend's response head into the client response
//! whose body is streamed through, never buffered.

use bytes::Bytes;
use futures_util::Stream;

use super::{idle::IdleTimeout, upstream_response::UpstreamResponse};
use crate::{
    config::UpstreamClient,
    error::GatewayError,
    headers as h,
    http_types::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header},
    pipeline::{
        body::RequestBody,
        message::{BoxError, Response, ResponseBody},
        session::Session,
    },
    routing::Route,
    upstream::Backend,
};

/// What one attempt needs: the request (as the filters left it), the route, the backend.
pub struct Outgoing<'a> {
    /// The request: its head, client, and the upstream request the filters prepared.
    pub session: &'a Session,
    /// The matched route.
    pub route: &'a Route,
    /// The chosen backend.
    pub backend: &'a Backend,
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
) -> Result<Response, GatewayError> {
    // The request as the filters prepared it (a clone shares the values), then the gateway's own.
    let mut headers = out.session.upstream.headers.clone();
    upstream_headers(out, &mut headers);
    // The route's filters' `upstream_request` phase: this attempt's headers, final.
    for filter in out.route.filters.iter() {
        filter.upstream_request(out.session, &mut headers);
    }
    let pool = &out.route.upstream;
    let method = &out.session.head.method;
    if out.session.upstream.websocket {
        // Always hyper's client, whichever `server.upstream_client` forwards the rest.
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        let target = super::hyper_client::Target {
            dial: &out.backend.dial,
            tls: pool.tls.as_ref(),
            connect_timeout: pool.connect_timeout,
        };
        let path = upstream_target(out, &out.backend.base_path);
        return match super::hyper_client::upgrade(target, path, headers, timeout).await? {
            super::hyper_client::Upgrade::Answered(resp) => client_response(out, resp),
            super::hyper_client::Upgrade::Switched { version, headers, io } => switched(version, headers, io),
        };
    }
    if pool.protocol.is_http2() {
        // HTTP/2 to the backends: hyper's HTTP/2 client, whichever client forwards HTTP/1.1.
        let target = super::hyper_client::Target {
            dial: &out.backend.dial,
            tls: pool.tls.as_ref(),
            connect_timeout: pool.connect_timeout,
        };
        let path = upstream_target(out, &out.backend.base_path);
        // `TE: trailers` is the one `TE` HTTP/2 allows; gRPC servers look for it.
        if out.session.head.headers.get(header::TE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers")) {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
        let resp =
            super::h2_client::send(target, method, path, headers, body, timeout, pool.max_concurrent_streams).await?;
        let ended = resp.body.is_end_stream();
        let mut resp = client_response(out, resp)?;
        // A head that ended the stream (gRPC's Trailers-Only answer) goes on as one: an empty
        // body of known length, so that the client's stream ends with the head too.
        if ended && matches!(resp.body, ResponseBody::Stream { .. }) {
            resp.body = ResponseBody::Full(Bytes::new());
        }
        return Ok(resp);
    }
    match client {
        UpstreamClient::Hyper => {
            let target = super::hyper_client::Target {
                dial: &out.backend.dial,
                tls: pool.tls.as_ref(),
                connect_timeout: pool.connect_timeout,
            };
            let path = upstream_target(out, &out.backend.base_path);
            let resp = super::hyper_client::send(target, method, path, headers, body, timeout).await?;
            client_response(out, resp)
        }
        UpstreamClient::Awc => {
            let url = upstream_target(out, &out.backend.url_prefix);
            let resp =
                super::client::send(pool.connect_timeout, pool.tls.as_ref(), method, url, headers, body, timeout)
                    .await?;
            client_response(out, resp)
        }
        UpstreamClient::Reqwest => {
            let url = upstream_target(out, &out.backend.url_prefix);
            let resp = super::reqwest_client::send(
                pool.connect_timeout,
                pool.tls.as_ref(),
                method,
                &url,
                headers,
                body,
                timeout,
            )
            .await?;
            client_response(out, resp)
        }
    }
}

/// The gateway's headers of the upstream request, added to the client's as the filters left
/// them: `Host`, `X-Forwarded-*`, `Via` and `X-Request-Id`.
fn upstream_headers(out: &Outgoing<'_>, headers: &mut HeaderMap) {
    let session = out.session;
    let client = &session.head.headers;
    // `headers` holds the prepared request, already cleaned of what the gateway owns (filters
    // cannot set the reserved ones).
    let client_host = client
        .get(header::HOST)
        .cloned()
        .or_else(|| session.head.uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()));
    let host = match (&client_host, out.route.upstream.preserve_host) {
        (Some(h), true) => h.clone(),
        _ => out.backend.host_header.clone(),
    };
    headers.insert(header::HOST, host);
    headers.insert(h::X_FORWARDED_FOR, h::forwarded_for(client, session.peer));
    let keep = |name| session.peer_trusted.then(|| client.get(&name).cloned()).flatten();
    let proto = keep(h::X_FORWARDED_PROTO).unwrap_or(HeaderValue::from_static(if session.tls.is_some() {
        "https"
    } else {
        "http"
    }));
    headers.insert(h::X_FORWARDED_PROTO, proto);
    if let Some(fwd_host) = keep(h::X_FORWARDED_HOST).or(client_host) {
        headers.insert(h::X_FORWARDED_HOST, fwd_host);
    }
    headers.append(header::VIA, h::via_value(session.head.version));
    // The verified client certificate's identity, made into header values once per connection.
    if let Some(client) = session.tls.as_ref().and_then(|t| t.client.as_ref()) {
        for (name, value) in &client.headers {
            headers.insert(name.clone(), value.clone());
        }
    }
    headers.insert(h::X_REQUEST_ID, session.request_id.clone());
    // Traced: the backend's parent is this attempt's span. Untraced: the caller's
    // `traceparent` passed through unchanged with the other headers.
    if let Some((tracing, span)) = out.trace {
        tracing.inject(span, headers);
    }
}

/// The client response for a backend response: hop-by-hop headers dropped, `Via` added (the
/// driver adds `X-Request-Id`), the body streamed as it arrives.
fn client_response<S, E>(out: &Outgoing<'_>, resp: UpstreamResponse<S>) -> Result<Response, GatewayError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin + 'static,
    E: Into<BoxError> + 'static,
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
    let length = resp
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok());
    // The backend's map, filtered in place (it is ours: no copy). The front end writes
    // `Content-Length` from the body's size, except on 304, where the header (the length of the
    // representation described) is kept as the backend sent it.
    let mut headers = resp.headers;
    let skip: &[HeaderName] =
        if status == StatusCode::NOT_MODIFIED { &h::RESPONSE_SET_BY_GATEWAY[1..] } else { &h::RESPONSE_SET_BY_GATEWAY };
    h::retain_end_to_end(&mut headers, skip);
    headers.append(header::VIA, h::via_value(resp.version));
    let bodiless_status = status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let read_timeout = out.route.upstream.read_timeout;
    let body = match (out.session.head.method == Method::HEAD, length) {
        _ if bodiless_status => ResponseBody::None,
        // A HEAD answer announces the length of the body a GET would get (in its headers, where
        // plugins see it too).
        (true, Some(len)) => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            ResponseBody::HeadOf(len)
        }
        (true, None) => ResponseBody::None,
        (false, length) => ResponseBody::Stream {
            length,
            stream: Box::pin(IdleTimeout::new(resp.body, read_timeout)),
            trailers: resp.trailers,
        },
    };
    Ok(Response { status, headers, body })
}

/// The client's `101` for a backend's: its end-to-end headers (`Sec-WebSocket-Accept`, the
/// chosen subprotocol and extensions) with `Upgrade: websocket` and `Via`; the connection as the
/// body, for the driver to relay. A `101` that switches to anything but WebSocket is the
/// backend's protocol failure.
fn switched(
    version: crate::http_types::Version,
    mut headers: HeaderMap,
    io: impl crate::pipeline::message::Tunnel + 'static,
) -> Result<Response, GatewayError> {
    let websocket = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
    if !websocket {
        return Err(GatewayError::UpstreamProtocol("a 101 that does not switch to WebSocket".into()));
    }
    h::retain_end_to_end(&mut headers, &h::RESPONSE_SET_BY_GATEWAY);
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.append(header::VIA, h::via_value(version));
    Ok(Response { status: StatusCode::SWITCHING_PROTOCOLS, headers, body: ResponseBody::Switched(Box::new(io)) })
}

/// The request's target upstream: `prefix` (the backend's base path, after `scheme://authority`
/// for a client that takes a whole URL), then the upstream path (the normalised request path,
/// stripped, as the filters left it) and query. Handed to the client as text, which parses it
/// once into its own type.
fn upstream_target(out: &Outgoing<'_>, prefix: &str) -> String {
    let up = &out.session.upstream;
    let (path, query) = (up.path.as_str(), up.query.as_deref());
    let mut url = String::with_capacity(prefix.len() + path.len() + query.map_or(0, |q| q.len() + 1));
    url.push_str(prefix);
    url.push_str(path);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}
