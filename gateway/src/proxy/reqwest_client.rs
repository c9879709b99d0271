//! The alternative forwarding client: reqwest (hyper), one per worker. It is not the default
//! (awc is, for the CPU cost per request measured in DESIGN.md); it is kept selectable
//! (`server.upstream_client: reqwest`) so `make bench` keeps measuring that choice side by side.
//! Differences to know: hyper adds `Accept: */*` when the client sent no `Accept`, and request
//! bodies cross a channel because reqwest needs a `Send` stream and actix's payload is not.

use std::{cell::RefCell, collections::HashMap, sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::upstream_response::UpstreamResponse;
use crate::{
    error::GatewayError,
    http_types::{HeaderMap, Method},
    pipeline::body::{LimitedPayload, RequestBody},
};

/// How long an idle pooled upstream connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(60);

thread_local! {
    /// By connect timeout and TLS configuration (its address), as the awc clients are.
    static CLIENTS: RefCell<HashMap<(Duration, usize), reqwest::Client>> = RefCell::new(HashMap::new());
}

fn for_worker(
    connect_timeout: Duration,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<reqwest::Client, GatewayError> {
    let key = (connect_timeout, tls.map_or(0, |t| Arc::as_ptr(t) as usize));
    CLIENTS.with(|clients| {
        if let Some(c) = clients.borrow().get(&key) {
            return Ok(c.clone());
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .http1_only()
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(POOL_IDLE);
        // `https://` backends: the upstream's own verification settings, as with awc.
        if let Some(tls) = tls {
            builder = builder.tls_backend_preconfigured((**tls).clone());
        }
        let client =
            builder.build().map_err(|e| GatewayError::Internal(format!("cannot build the reqwest client: {e}")))?;
        clients.borrow_mut().insert(key, client.clone());
        Ok(client)
    })
}

/// Sends one request with the calling worker's reqwest client.
pub async fn send(
    connect_timeout: Duration,
    tls: Option<&Arc<rustls::ClientConfig>>,
    method: &Method,
    url: &str,
    headers: HeaderMap,
    body: RequestBody,
    timeout: Duration,
) -> Result<UpstreamResponse<impl Stream<Item = Result<Bytes, reqwest::Error>> + Unpin + use<>>, GatewayError> {
    let client = for_worker(connect_timeout, tls)?;
    let url = reqwest::Url::parse(url).map_err(|_| GatewayError::BadRequest("the request path cannot be forwarded"))?;
    let mut request = client.request(method.clone(), url).headers(headers);
    request = match body {
        RequestBody::Empty => request,
        RequestBody::Sized(len, payload) => {
            request.header(reqwest::header::CONTENT_LENGTH, len).body(reqwest::Body::wrap_stream(bridge(payload)))
        }
        RequestBody::Streamed(payload) => request.body(reqwest::Body::wrap_stream(bridge(payload))),
        RequestBody::Buffered(bytes) => request.body(bytes),
    };
    let resp = match tokio::time::timeout(timeout, request.send()).await {
        Err(_elapsed) => return Err(GatewayError::UpstreamTimeout),
        Ok(Err(e)) if e.is_connect() && e.is_timeout() => return Err(GatewayError::UpstreamConnectTimeout),
        Ok(Err(e)) if e.is_timeout() => return Err(GatewayError::UpstreamTimeout),
        Ok(Err(e)) if e.is_connect() => return Err(GatewayError::UpstreamConnect(Box::new(e))),
        Ok(Err(e)) => return Err(GatewayError::UpstreamProtocol(Box::new(e))),
        Ok(Ok(resp)) => resp,
    };
    Ok(UpstreamResponse {
        status: resp.status(),
        version: resp.version(),
        headers: resp.headers().clone(),
        body: Box::pin(resp.bytes_stream()),
        trailers: None,
    })
}

/// Moves the (thread-bound) client payload into a `Send` stream through a small channel,
/// pumped by a task on the worker's own event loop.
fn bridge(mut payload: LimitedPayload) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    actix_web::rt::spawn(async move {
        while let Some(item) = payload.next().await {
            let item = item.map_err(|e| std::io::Error::other(e.to_string()));
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}
