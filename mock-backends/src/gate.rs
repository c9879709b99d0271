//! What every non-control request goes through before its handler: the hit counter, the
//! injected failures (`/control/fail`, then `error_rate`) and the configured latency.
//!
//! A failure is decided when the request arrives, so "fail the next N" is exact, and is
//! answered after the latency. Its request body is drained first, so that a client still
//! uploading reads the injected status instead of a broken pipe. Status 0 answers nothing:
//! the connection is closed (see [`drop_connection`]).

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use actix_web::{
    HttpResponse,
    body::{BodySize, MessageBody},
    http::StatusCode,
    rt::time::sleep,
    web::{Bytes, Payload},
};
use futures_util::StreamExt as _;

use crate::state::Shared;

/// Admits a non-control request: counts it, applies the latency and, when a failure is
/// injected for it, returns the response to send instead of running the handler.
pub(crate) async fn admit(state: &Shared, payload: &mut Payload) -> Option<HttpResponse> {
    state.record_hit();
    let injected = state.take_failure().or_else(|| state.roll_error_rate().then_some(500));
    let latency = state.latency();
    if !latency.is_zero() {
        sleep(latency).await;
    }
    let status = injected?;
    if status == 0 {
        return Some(drop_connection(state));
    }
    drain(payload).await;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Some(state.status_response(status, true))
}

/// Reads and discards the rest of a request body.
pub(crate) async fn drain(payload: &mut Payload) {
    while let Some(chunk) = payload.next().await {
        if chunk.is_err() {
            break;
        }
    }
}

/// A response that is never sent: its body fails before the first byte, and on HTTP/1.x
/// actix then closes the connection without flushing the head, so the client sees the
/// connection closed with no answer. On HTTP/2 the stream is reset instead.
pub(crate) fn drop_connection(state: &Shared) -> HttpResponse {
    state.response(StatusCode::BAD_GATEWAY).body(DropConnection)
}

/// A body whose first poll fails, which makes actix abort the connection.
struct DropConnection;

impl MessageBody for DropConnection {
    type Error = io::Error;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Poll::Ready(Some(Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "mock backend: injected connection drop",
        ))))
    }
}
