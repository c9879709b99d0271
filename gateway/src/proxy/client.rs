//! The forwarding client: awc, one per actix worker thread (DESIGN.md explains the measured
//! choice). Each worker keeps its own connection pool, so nothing is shared or woken across
//! threads. Clients are created lazily per connect timeout (a connector setting in awc).
//! Redirects are never followed, responses never decompressed, no default headers are added,
//! and upstream sockets get `TCP_NODELAY`.

use std::{cell::RefCell, collections::HashMap, sync::Arc, time::Duration};

use actix_tls::connect::{ConnectError, ConnectInfo, Connector as TcpConnector, Resolver};
use actix_web::body::{None as NoBody, SizedStream};
use awc::{Client, Connector, error::SendRequestError};

use super::upstream_response::UpstreamResponse;
use crate::{
    error::GatewayError,
    http_compat as compat,
    http_types::{HeaderMap, Method},
    pipeline::body::RequestBody,
};

/// How long an idle pooled upstream connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(60);
/// The longest an upstream connection is reused before it is replaced.
const POOL_LIFETIME: Duration = Duration::from_secs(300);

/// A worker's clients, by connect timeout and TLS configuration (its address: upstreams share
/// one when their TLS settings are the same object; a reload that rebuilds an upstream gets a
/// new entry, and the old one goes idle).
type ClientKey = (Duration, usize);

thread_local! {
    static CLIENTS: RefCell<HashMap<ClientKey, Client>> = RefCell::new(HashMap::new());
}

/// The calling worker's client for the given connect timeout and TLS configuration (for
/// `https://` backends; `None` for an upstream of `http://` backends only).
pub fn for_worker(connect_timeout: Duration, tls: Option<&Arc<rustls::ClientConfig>>) -> Client {
    let key = (connect_timeout, tls.map_or(0, |t| Arc::as_ptr(t) as usize));
    CLIENTS
        .with(|clients| clients.borrow_mut().entry(key).or_insert_with(|| build(connect_timeout, tls.cloned())).clone())
}

fn build(connect_timeout: Duration, tls: Option<Arc<rustls::ClientConfig>>) -> Client {
    let tcp = TcpConnector::new(Resolver::default()).service();
    let nodelay = actix_service::fn_service(move |info: ConnectInfo<actix_web::http::Uri>| {
        let tcp = tcp.clone();
        async move {
            let conn = actix_service::Service::call(&tcp, info).await?;
            // Small request/response heads must not wait for Nagle's algorithm.
            let _ = conn.io_ref().set_nodelay(true);
            Ok::<_, ConnectError>(conn)
        }
    });
    let mut connector = Connector::new().connector(nodelay);
    if let Some(tls) = tls {
        connector = connector.rustls_0_23(tls);
    }
    let connector = connector.timeout(connect_timeout).limit(0).conn_keep_alive(POOL_IDLE).conn_lifetime(POOL_LIFETIME);
    Client::builder()
        .connector(connector)
        .disable_redirects()
        .no_default_headers()
        // Timeouts are the pipeline's (per attempt), not the client's 5 s default.
        .disable_timeout()
        .finish()
}

/// Sends one request with the calling worker's awc client; `timeout` bounds the wait for the
/// response head. The request and the response head are converted between the core's `http`
/// 1.x types and awc's 0.2 ones here.
pub async fn send(
    connect_timeout: Duration,
    tls: Option<&Arc<rustls::ClientConfig>>,
    method: &Method,
    url: String,
    headers: HeaderMap,
    body: RequestBody,
    timeout: Duration,
) -> Result<UpstreamResponse<awc::ClientResponse>, GatewayError> {
    // awc's own URI type, parsed once from the text (no copy of it).
    let uri = actix_web::http::Uri::try_from(url)
        .map_err(|_| GatewayError::BadRequest("the request path cannot be forwarded"))?;
    let mut up = for_worker(connect_timeout, tls).request(compat::method_to_02(method), uri).no_decompress();
    *up.headers_mut() = compat::headers_to_02(&headers);
    // A body of size "none" keeps awc from adding `Content-Length: 0` to bodiless requests.
    let send = match body {
        RequestBody::Empty => up.send_body(NoBody::new()),
        RequestBody::Sized(len, stream) => up.send_body(SizedStream::new(len, stream)),
        RequestBody::Streamed(stream) => up.send_stream(stream),
        RequestBody::Buffered(bytes) => up.send_body(bytes),
    };
    let resp = match tokio::time::timeout(timeout, send).await {
        Err(_elapsed) => return Err(GatewayError::UpstreamTimeout),
        Ok(Err(e)) => return Err(map_error(e)),
        Ok(Ok(resp)) => resp,
    };
    let status = compat::status_from_02(resp.status());
    let version = compat::version_from_02(resp.version());
    let headers = compat::headers_from_02(resp.headers());
    Ok(UpstreamResponse { status, version, headers, body: resp, trailers: None })
}

fn map_error(e: SendRequestError) -> GatewayError {
    // A TLS failure (a refused certificate) is said as such, not as a connection error: on
    // connecting, or — TLS 1.3, where a backend refuses the gateway's certificate after the
    // client's side of the handshake has finished — on reading the answer.
    if let SendRequestError::Connect(awc::error::ConnectError::Io(io))
    | SendRequestError::Response(actix_web::error::ParseError::Io(io)) = &e
        && let Some(reason) = crate::tls::upstream::failure_reason(io)
    {
        return GatewayError::UpstreamTls { reason, detail: io.to_string() };
    }
    match e {
        SendRequestError::Connect(awc::error::ConnectError::Timeout) => GatewayError::UpstreamConnectTimeout,
        SendRequestError::Timeout => GatewayError::UpstreamTimeout,
        SendRequestError::Connect(c) => GatewayError::UpstreamConnect(Box::new(c)),
        other => GatewayError::UpstreamProtocol(Box::new(other)),
    }
}
