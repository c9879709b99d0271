//! The actix front end: actix hands every proxy-port request to [`handle`], which admits it
//! (connection limits, requests pipelined after `Connection: close`), turns it into the
//! pipeline's messages, runs `pipeline::driver::serve`, and turns the response back into
//! actix's, with
//! a body that ends the request's record when it has been sent.

use actix_web::{
    HttpRequest, HttpResponse,
    error::PayloadError,
    http::{ConnectionType, header},
    web,
};
use futures_util::{StreamExt, stream};

use super::{connection::ConnectionState, metered_body::MeteredBody};
use crate::{
    error::GatewayError,
    gateway::Gateway,
    http_compat as compat,
    normalize::Refusal,
    pipeline::{
        body::{BodyError, BodySource},
        driver::{self, Connection, Served},
        message::{RequestHead, Response, ResponseBody},
    },
    runtime::Runtime,
};

impl ConnectionState {
    /// Why a request on this connection is refused before it is looked at, if it is.
    fn admit(&self, req: &HttpRequest, rt: &Runtime) -> Option<GatewayError> {
        if self.closing.get() {
            return Some(GatewayError::Malformed(Refusal::AfterClose));
        }
        // Over `server.max_connections` (or the peer's share): refused with a 503 that closes
        // the connection.
        if self.over_limits(rt) {
            self.closing.set(true);
            return Some(GatewayError::TooManyConnections);
        }
        self.closing.set(req.head().connection_type() == ConnectionType::Close);
        None
    }
}

/// actix's entry point for every request on the proxy listener.
pub async fn handle(req: HttpRequest, payload: web::Payload, gw: web::Data<Gateway>) -> HttpResponse<MeteredBody> {
    // One snapshot for the whole request, its admission included.
    let rt = gw.runtime.load_full();
    let conn_state = req.conn_data::<ConnectionState>();
    let mut refused = conn_state.and_then(|c| c.admit(&req, &rt));
    let tls = conn_state.and_then(|c| c.tls.clone());
    let uri = compat::uri_from_02(req.uri()).unwrap_or_else(|| {
        refused.get_or_insert(GatewayError::BadRequest("the request target cannot be read"));
        crate::http_types::Uri::from_static("/")
    });
    let peer = req.peer_addr().map(|a| a.ip()).unwrap_or(std::net::Ipv6Addr::UNSPECIFIED.into());
    let head = RequestHead {
        method: compat::method_from_02(req.method()),
        uri,
        version: compat::version_from_02(req.version()),
        headers: compat::headers_from_02(req.headers()),
    };
    let limit = rt.max_body_size;
    // A WebSocket handshake's payload is the rest of the connection (actix hands it over as
    // such): the session's bytes, if the route relays it.
    let body: BodySource = if might_have_body(&req) || req.head().upgrade() {
        payload
            .into_inner()
            .map(move |chunk| {
                chunk.map_err(|e| match e {
                    // actix's own size guard: the same refusal as the gateway's limit.
                    PayloadError::Overflow => BodyError::TooLarge(limit),
                    other => BodyError::Read(other.to_string()),
                })
            })
            .boxed_local()
    } else {
        // A zero-sized stream: no allocation for the usual bodiless request.
        stream::empty().boxed_local()
    };
    let gateway = gw.into_inner();
    let Served { response, finish } = driver::serve(&gateway, rt, head, body, Connection { peer, refused, tls }).await;
    let Response { status, headers, body } = response;
    let mut resp = HttpResponse::with_body(compat::status_to_02(status), ());
    // Into the pooled head's own map (it keeps its capacity from response to response).
    compat::headers_into_02(&headers, resp.headers_mut());
    if matches!(body, ResponseBody::HeadOf(_)) {
        resp.head_mut().no_chunking(true);
    }
    // The answer to a request that closes the connection says so (actix decides from the last
    // request it parsed, which may be a pipelined one after it).
    if status == crate::http_types::StatusCode::SWITCHING_PROTOCOLS {
        // The connection is the session's now: actix writes the body as it comes (no framing)
        // and closes the connection when it ends.
        resp.head_mut().set_connection_type(ConnectionType::Upgrade);
    } else if req.head().connection_type() == ConnectionType::Close
        || req.conn_data::<ConnectionState>().is_some_and(|c| c.closing.get())
    {
        resp.head_mut().set_connection_type(ConnectionType::Close);
    }
    resp.set_body(MeteredBody::new(body, Some(finish)))
}

/// Whether the request may carry a body: one declared by its framing (HTTP/1.1), or any over
/// HTTP/2 (where a body needs no header).
fn might_have_body(req: &HttpRequest) -> bool {
    let h = req.headers();
    h.contains_key(header::CONTENT_LENGTH)
        || h.contains_key(header::TRANSFER_ENCODING)
        || req.version() >= actix_web::http::Version::HTTP_2
}
