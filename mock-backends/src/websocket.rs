//! `GET /ws/echo`: a WebSocket echo (actix-ws). Text and binary messages come back as they
//! came (fragmented ones whole), pings are answered, a close frame is answered with the same
//! code. With `?headers=1` the first message is a JSON list of the handshake's headers (sorted
//! by name), so that a test sees what the backend was told; with `?refuse=CODE` it answers
//! that status instead of switching protocols. Messages up to [`MAX_MESSAGE`].

use actix_web::{
    HttpRequest, HttpResponse,
    http::header::HeaderValue,
    web::{self, Payload},
};
use actix_ws::AggregatedMessage;

use crate::state::{Shared, X_BACKEND};

/// The largest message the echo takes (a 64 MiB one must pass in the gateway's tests).
pub const MAX_MESSAGE: usize = 128 * 1024 * 1024;

/// The handshake, then the echo on a task of its own.
pub(crate) async fn echo(
    req: HttpRequest,
    payload: Payload,
    state: web::Data<Shared>,
) -> Result<HttpResponse, actix_web::Error> {
    state.record_hit();
    // `?refuse=CODE`: a backend that answers the handshake without switching protocols (and
    // without waiting for a body: an upgrade request's payload is the rest of the connection).
    if let Some(code) = req.query_string().split('&').find_map(|p| p.strip_prefix("refuse="))
        && let Ok(status) = actix_web::http::StatusCode::from_bytes(code.as_bytes())
    {
        return Ok(state.status_response(status, false));
    }
    let (mut response, mut session, messages) = actix_ws::handle(&req, payload)?;
    if let Ok(name) = HeaderValue::from_str(&state.name) {
        response.headers_mut().insert(X_BACKEND, name);
    }
    let headers = req.query_string().split('&').any(|p| p == "headers=1").then(|| {
        let mut list: Vec<(String, String)> = req
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        list.sort();
        serde_json::to_string(&list).unwrap_or_default()
    });
    let mut messages =
        messages.max_frame_size(MAX_MESSAGE).aggregate_continuations().max_continuation_size(MAX_MESSAGE);
    actix_web::rt::spawn(async move {
        if let Some(headers) = headers
            && session.text(headers).await.is_err()
        {
            return;
        }
        while let Some(message) = messages.recv().await {
            let sent = match message {
                Ok(AggregatedMessage::Text(text)) => session.text(text).await,
                Ok(AggregatedMessage::Binary(bytes)) => session.binary(bytes).await,
                Ok(AggregatedMessage::Ping(bytes)) => session.pong(&bytes).await,
                Ok(AggregatedMessage::Pong(_)) => Ok(()),
                Ok(AggregatedMessage::Close(reason)) => {
                    let _ = session.close(reason).await;
                    return;
                }
                Err(_) => {
                    let _ = session.close(Some(actix_ws::CloseCode::Protocol.into())).await;
                    return;
                }
            };
            if sent.is_err() {
                return;
            }
        }
        let _ = session.close(None).await;
    });
    Ok(response)
}
