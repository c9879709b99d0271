//! The gateway's own errors and their one mapping to HTTP: status, DESIGN.md's error code and
//! the JSON body `{"status","error","message","request_id"}`. Every gateway-made error response
//! is built here, so the table below is the whole contract.

use crate::{
    http_types::{HeaderValue, StatusCode, header},
    pipeline::message::Response,
};

/// The cause of an upstream failure, whichever client saw it.
pub use crate::pipeline::message::BoxError;

/// Why the gateway answered instead of the backend.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No route matched host and path.
    #[error("no route matches this request")]
    NoRoute,
    /// A route matched but not its methods; carries the `Allow` value.
    #[error("method not allowed on this route")]
    MethodNotAllowed(HeaderValue),
    /// The request body exceeds `server.max_body_size`.
    #[error("request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The configured limit.
        limit: u64,
    },
    /// A policy refused the request (e.g. a CORS preflight from an origin not allowed).
    #[error("{0}")]
    Forbidden(&'static str),
    /// The TLS connection to an `https://` backend failed: its certificate was refused
    /// (`reason`: `certificate_expired`, `unknown_ca`, `wrong_host`, `bad_certificate`) or the
    /// handshake failed otherwise. A backend failure, 502.
    #[error("TLS to the backend failed ({reason})")]
    UpstreamTls {
        /// The `reason` label of `rustygate_upstream_tls_errors_total`.
        reason: &'static str,
        /// What the TLS stack said (logged, not sent to the client).
        detail: String,
    },
    /// The route asks for a client certificate the request's connection has not (or one it
    /// does not allow): 403 `client_cert_required`.
    #[error("{0}")]
    ClientCertRequired(&'static str),
    /// The route's JWT policy refused the request.
    #[error("{}", .0.description())]
    Unauthorized(crate::filters::jwt::rejection::Rejection),
    /// The route's rate limit refused the request (its headers are added by the pipeline).
    #[error("rate limit exceeded; retry after {retry_after} s")]
    TooManyRequests {
        /// Seconds until a request is allowed again.
        retry_after: u64,
    },
    /// The request cannot be forwarded as sent.
    #[error("{0}")]
    BadRequest(&'static str),
    /// A header line or the whole head is over `server.max_header_size` /
    /// `server.max_request_head_size`.
    #[error("the request headers are too large")]
    HeadersTooLarge,
    /// The request target is over `server.max_header_size`.
    #[error("the request target is too long")]
    UriTooLong,
    /// The connection is over `server.max_connections`.
    #[error("the gateway has too many open connections; retry later")]
    TooManyConnections,
    /// The request head breaks the normalisation policy (docs/security.md): refused before
    /// routing, counted in `rustygate_client_errors_total`.
    #[error("{}", .0.message())]
    Malformed(crate::normalize::Refusal),
    /// The client's request body could not be read to its end (malformed chunked framing, the
    /// connection reset or closed): the client's fault, never a backend failure.
    #[error("the request body is malformed or was cut short")]
    BodyBroken,
    /// The client stopped sending its request body for `server.client_body_timeout`.
    #[error("the client stopped sending the request body")]
    BodyStalled,
    /// The upstream has no backend to choose.
    #[error("no healthy backend available in upstream {0}")]
    NoHealthyUpstream(std::sync::Arc<str>),
    /// The connection to the backend failed (refused, unreachable, DNS); nothing was sent.
    #[error("cannot connect to the backend")]
    UpstreamConnect(#[source] BoxError),
    /// The backend did not answer within the timeout.
    #[error("the backend did not answer in time")]
    UpstreamTimeout,
    /// The connection to the backend could not be made in time; nothing was sent.
    #[error("the backend did not accept the connection in time")]
    UpstreamConnectTimeout,
    /// The backend sent an interim (1xx) response, which the forwarding client cannot pass on.
    #[error("the backend sent an interim response ({0}) the gateway cannot relay")]
    UpstreamInterim(StatusCode),
    /// The connection broke or the backend's response was malformed.
    #[error("the backend connection failed")]
    UpstreamProtocol(#[source] BoxError),
    /// A WASM plugin with `failure: closed` failed (trap, exhausted budget, bad action, missing).
    #[error("plugin {plugin:?} failed ({outcome})")]
    PluginFailed {
        /// The plugin's name.
        plugin: std::sync::Arc<str>,
        /// The `outcome` label of the failed call.
        outcome: &'static str,
    },
    /// A bug or resource problem in the gateway.
    #[error("internal error")]
    Internal(String),
    /// The client's connection ended before the gateway answered (never sent: recorded as 499,
    /// "client closed request", as NGINX logs it).
    #[error("the connection ended before a response was sent")]
    ClientGone,
}

impl GatewayError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BadRequest(_) | Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::BodyBroken => StatusCode::BAD_REQUEST,
            Self::BodyStalled => StatusCode::REQUEST_TIMEOUT,
            Self::Forbidden(_) | Self::ClientCertRequired(_) => StatusCode::FORBIDDEN,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::NoHealthyUpstream(_) | Self::TooManyConnections => StatusCode::SERVICE_UNAVAILABLE,
            Self::UpstreamConnect(_)
            | Self::UpstreamProtocol(_)
            | Self::UpstreamInterim(_)
            | Self::UpstreamTls { .. } => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout | Self::UpstreamConnectTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal(_) | Self::PluginFailed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Self::ClientGone => StatusCode::from_u16(CLIENT_CLOSED).unwrap_or(StatusCode::BAD_REQUEST),
        }
    }

    /// The `reason` label of `rustygate_backend_failures_total`, for errors that involve a backend.
    pub fn backend_reason(&self) -> Option<&'static str> {
        match self {
            Self::UpstreamConnect(_) => Some("connect_error"),
            Self::UpstreamTimeout => Some("timeout"),
            Self::UpstreamConnectTimeout => Some("connect_timeout"),
            Self::UpstreamProtocol(_) => Some("protocol_error"),
            Self::UpstreamTls { .. } => Some("tls_error"),
            _ => None,
        }
    }

    /// The `reason` label of `rustygate_client_errors_total`, for requests refused as the
    /// client's fault before or while their body was read.
    pub fn client_reason(&self) -> Option<&'static str> {
        match self {
            Self::Malformed(r) => Some(r.label()),
            Self::BodyBroken => Some("bad_body"),
            Self::BodyStalled => Some("body_timeout"),
            Self::BadRequest(_) => Some("bad_request"),
            Self::HeadersTooLarge => Some("headers_too_large"),
            Self::UriTooLong => Some("uri_too_long"),
            Self::TooManyConnections => Some("too_many_connections"),
            _ => None,
        }
    }

    /// DESIGN.md's `error` code of the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::PluginFailed { .. } => "plugin_failed",
            Self::ClientCertRequired(_) => "client_cert_required",
            Self::TooManyConnections => "too_many_connections",
            _ => error_code(self.status()),
        }
    }

    /// Builds the JSON error response.
    pub fn to_response(&self, request_id: &str) -> Response {
        let status = self.status();
        let mut resp =
            Response::full(status, "application/json", error_json(status, self.code(), &self.to_string(), request_id));
        match self {
            Self::MethodNotAllowed(allow) => {
                resp.headers.insert(header::ALLOW, allow.clone());
            }
            Self::Unauthorized(rejection) => {
                resp.headers.insert(header::WWW_AUTHENTICATE, rejection.challenge());
            }
            _ => {}
        }
        resp
    }
}

/// The status recorded for a request whose connection ended before it was answered.
const CLIENT_CLOSED: u16 = 499;

/// DESIGN.md's `error` code for a status the gateway answers with.
pub fn error_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        413 => "payload_too_large",
        414 => "uri_too_long",
        429 => "too_many_requests",
        431 => "headers_too_large",
        502 => "bad_gateway",
        503 => "no_healthy_upstream",
        504 => "gateway_timeout",
        _ => "internal_error",
    }
}

/// The JSON body of a gateway-made error: `{"status","error","message","request_id"}`.
pub fn error_json(status: StatusCode, code: &str, message: &str, request_id: &str) -> String {
    serde_json::json!({
        "status": status.as_u16(),
        "error": code,
        "message": message,
        "request_id": request_id,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_maps_to_its_status_and_code() {
        let cases: Vec<(GatewayError, u16, &str)> = vec![
            (GatewayError::NoRoute, 404, "not_found"),
            (GatewayError::MethodNotAllowed(HeaderValue::from_static("GET")), 405, "method_not_allowed"),
            (GatewayError::PayloadTooLarge { limit: 1 }, 413, "payload_too_large"),
            (GatewayError::BadRequest("x"), 400, "bad_request"),
            (GatewayError::Forbidden("x"), 403, "forbidden"),
            (GatewayError::ClientCertRequired("x"), 403, "client_cert_required"),
            (GatewayError::Unauthorized(crate::filters::jwt::rejection::Rejection::Expired), 401, "unauthorized"),
            (GatewayError::TooManyRequests { retry_after: 1 }, 429, "too_many_requests"),
            (GatewayError::NoHealthyUpstream("u".into()), 503, "no_healthy_upstream"),
            (GatewayError::UpstreamTimeout, 504, "gateway_timeout"),
            (GatewayError::Internal("x".into()), 500, "internal_error"),
            (GatewayError::PluginFailed { plugin: "p".into(), outcome: "trap" }, 500, "plugin_failed"),
        ];
        for (err, status, code) in cases {
            assert_eq!(err.status().as_u16(), status, "{err:?}");
            assert_eq!(err.code(), code);
        }
        assert_eq!(error_code(StatusCode::from_u16(431).unwrap()), "headers_too_large");
        assert_eq!(error_code(StatusCode::from_u16(408).unwrap()), "request_timeout");
    }

    #[test]
    fn method_not_allowed_carries_allow() {
        let resp = GatewayError::MethodNotAllowed(HeaderValue::from_static("GET, POST")).to_response("id");
        assert_eq!(resp.headers.get(header::ALLOW).unwrap(), "GET, POST");
        assert_eq!(resp.headers.get(header::CONTENT_TYPE).unwrap(), "application/json");
    }
}
