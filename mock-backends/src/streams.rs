//! Generated response bodies: `/bytes/{n}` (a deterministic byte pattern, any size, in
//! 64 KiB chunks) and `/drip/{n}` (one byte at a time, spaced in time).
//!
//! The pattern is byte `i = (i % 251) as u8`. 251 is prime, so the pattern does not line up
//! with any power-of-two chunking; [`pattern_sha256`] gives the digest tests expect. Chunks
//! are zero-copy slices of one shared buffer, so streaming gigabytes allocates nothing.

use std::{
    convert::Infallible,
    pin::Pin,
    sync::OnceLock,
    task::{Context, Poll},
    time::Duration,
};

use actix_web::{
    HttpRequest, HttpResponse,
    body::{BodySize, MessageBody},
    http::{StatusCode, header},
    rt::time::sleep,
    web::{self, Bytes, Payload},
};
use futures_util::stream;
use sha2::{Digest as _, Sha256};

use crate::{echo::param, gate, state::Shared};

/// The pattern repeats every `PATTERN_MODULUS` bytes: byte `i` is `(i % 251) as u8`.
pub const PATTERN_MODULUS: u64 = 251;

/// Size of the chunks of `/bytes/{n}`.
const CHUNK: usize = 64 * 1024;
/// Largest `/bytes/{n}`: 8 GiB.
const MAX_BYTES: u64 = 8 << 30;
/// Largest `/drip/{n}`.
const MAX_DRIPS: u64 = 1_000_000;
/// Largest `interval_ms` of `/drip`.
const MAX_DRIP_INTERVAL_MS: u64 = 60_000;
/// Default `interval_ms` of `/drip`.
const DEFAULT_DRIP_INTERVAL_MS: u64 = 100;

/// One chunk plus one period of the pattern, so any chunk is a slice starting at `i % 251`.
fn pattern() -> &'static Bytes {
    static PATTERN: OnceLock<Bytes> = OnceLock::new();
    PATTERN.get_or_init(|| {
        (0..CHUNK + PATTERN_MODULUS as usize).map(|i| (i as u64 % PATTERN_MODULUS) as u8).collect::<Vec<u8>>().into()
    })
}

/// The chunk of the pattern starting at byte `offset`, `len <= CHUNK` bytes long.
fn pattern_chunk(offset: u64, len: usize) -> Bytes {
    let start = (offset % PATTERN_MODULUS) as usize;
    pattern().slice(start..start + len)
}

/// Hex SHA-256 of the first `n` bytes of the `/bytes/{n}` pattern (byte `i` is
/// `(i % 251) as u8`), for tests to check a download without storing it.
pub fn pattern_sha256(n: u64) -> String {
    let mut hasher = Sha256::new();
    let mut offset = 0;
    while offset < n {
        let len = (n - offset).min(CHUNK as u64) as usize;
        hasher.update(pattern_chunk(offset, len));
        offset += len as u64;
    }
    hex::encode(hasher.finalize())
}

/// The body of `/bytes/{n}`: generated chunk by chunk.
struct PatternBody {
    sent: u64,
    len: u64,
    chunked: bool,
}

impl MessageBody for PatternBody {
    type Error = Infallible;

    fn size(&self) -> BodySize {
        if self.chunked { BodySize::Stream } else { BodySize::Sized(self.len) }
    }

    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let remaining = self.len - self.sent;
        if remaining == 0 {
            return Poll::Ready(None);
        }
        let len = remaining.min(CHUNK as u64) as usize;
        let chunk = pattern_chunk(self.sent, len);
        self.sent += len as u64;
        Poll::Ready(Some(Ok(chunk)))
    }
}

/// `ANY /bytes/{n}[?chunked=1]`: `n` pattern bytes (at most 8 GiB), with a content-length
/// unless `chunked` is set.
pub(crate) async fn bytes(req: HttpRequest, mut payload: Payload, state: web::Data<Shared>) -> HttpResponse {
    if let Some(res) = gate::admit(&state, &mut payload).await {
        return res;
    }
    gate::drain(&mut payload).await;
    let Some(len) = param::<u64>(&req, "n").filter(|n| *n <= MAX_BYTES) else {
        return state.error(StatusCode::BAD_REQUEST, format_args!("n must be an integer from 0 to {MAX_BYTES}"));
    };
    let chunked = query_value(req.query_string(), "chunked").is_some_and(|v| matches!(v, "1" | "true" | "yes" | ""));
    state.response(StatusCode::OK).insert_header((header::CONTENT_TYPE, "application/octet-stream")).body(PatternBody {
        sent: 0,
        len,
        chunked,
    })
}

/// `ANY /drip/{n}?interval_ms=X`: `n` chunks of one `.` each, `X` ms apart (default 100),
/// with chunked transfer encoding.
pub(crate) async fn drip(req: HttpRequest, mut payload: Payload, state: web::Data<Shared>) -> HttpResponse {
    if let Some(res) = gate::admit(&state, &mut payload).await {
        return res;
    }
    gate::drain(&mut payload).await;
    let Some(count) = param::<u64>(&req, "n").filter(|n| *n <= MAX_DRIPS) else {
        return state.error(StatusCode::BAD_REQUEST, format_args!("n must be an integer from 0 to {MAX_DRIPS}"));
    };
    let interval_ms = match query_value(req.query_string(), "interval_ms") {
        None => DEFAULT_DRIP_INTERVAL_MS,
        Some(v) => match v.parse::<u64>() {
            Ok(ms) => ms.min(MAX_DRIP_INTERVAL_MS),
            Err(_) => {
                return state.error(StatusCode::BAD_REQUEST, "interval_ms must be an integer");
            }
        },
    };
    let interval = Duration::from_millis(interval_ms);
    let drops = stream::unfold(0u64, move |sent| async move {
        if sent == count {
            return None;
        }
        if sent > 0 {
            sleep(interval).await;
        }
        Some((Ok::<_, Infallible>(Bytes::from_static(b".")), sent + 1))
    });
    state.response(StatusCode::OK).insert_header((header::CONTENT_TYPE, "application/octet-stream")).streaming(drops)
}

/// The raw value of the first `key` in a query string (`Some("")` for a bare `key`).
fn query_value<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_follow_the_pattern() {
        let mut body = PatternBody { sent: 0, len: CHUNK as u64 * 2 + 7, chunked: false };
        let mut all = Vec::new();
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        while let Poll::Ready(Some(Ok(chunk))) = Pin::new(&mut body).poll_next(&mut cx) {
            assert!(chunk.len() <= CHUNK);
            all.extend_from_slice(&chunk);
        }
        assert_eq!(all.len() as u64, body.len);
        assert!(all.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
        assert_eq!(hex::encode(Sha256::digest(&all)), pattern_sha256(body.len));
    }

    #[test]
    fn empty_pattern_digest() {
        assert_eq!(pattern_sha256(0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn query_values() {
        assert_eq!(query_value("a=1&chunked=1", "chunked"), Some("1"));
        assert_eq!(query_value("chunked", "chunked"), Some(""));
        assert_eq!(query_value("chunkedx=1", "chunked"), None);
        assert_eq!(query_value("", "chunked"), None);
    }
}
