//! Forwarding with retries: pick a backend (503 if none), send one attempt with the route's
//! per-attempt timeout (bounded by the request's deadline), record its outcome for passive
//! health, and — when the retry rules, the attempt count, the deadline and the upstream's
//! retry budget all allow — try again on another backend after a backoff.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use super::{body::RequestBody, ctx::RequestCtx, message::Response};
use crate::{
    error::GatewayError,
    proxy::forward::{self, Outgoing},
    routing::Route,
    upstream::{Backend, retry},
};

/// Sends the request to the route's upstream, retrying per the upstream's policy.
pub(super) async fn forward(
    route: &Arc<Route>,
    ctx: &mut RequestCtx,
    body: RequestBody,
) -> Result<Response, GatewayError> {
    let pool = &route.upstream;
    let policy = &pool.retry;
    let started = Instant::now();
    let mut deadline = route.request_timeout.map(|d| started + d);
    // A gRPC call's own deadline (`grpc-timeout`), when sooner: past it the caller has given up.
    // (A client's `99999999H` is no deadline at all: checked, never an overflow.)
    if ctx.grpc
        && let Some(call) = crate::grpc::timeout(&ctx.session.head.headers).and_then(|t| started.checked_add(t))
    {
        deadline = Some(deadline.map_or(call, |d| d.min(call)));
    }
    let retrying = policy.enabled() && pool.backends.len() > 1;
    // A gRPC call's messages are not read ahead: a streaming call waits for answers between them.
    let body = if ctx.grpc { body } else { body.prefetch(policy.buffer).await? };
    // A body still streaming can fail an attempt by the client's fault (see below).
    let client_side = body.client_side();
    let mut body = Some(body);
    let replayable = retrying && body.as_ref().is_some_and(RequestBody::is_replayable);
    policy.budget.record_request();

    let client = ctx.runtime.client;
    let gateway = ctx.gateway();
    let tracing = gateway.tracing.as_ref();
    let mut key = pool.selection_key(ctx.session.client_ip, &ctx.session.head.headers);
    let mut tried: Vec<Arc<Backend>> = Vec::new();
    let mut backend =
        pool.select(&mut key, |_| true).ok_or_else(|| GatewayError::NoHealthyUpstream(pool.name.clone()))?;
    let mut attempt = 0u32;
    loop {
        ctx.enter_backend(backend.clone());
        let this_body = if replayable { body.as_ref().and_then(RequestBody::replay) } else { body.take() };
        let this_body = this_body.expect("a body for every attempt made");
        let timeout = match deadline {
            Some(d) => route.timeout.min(d.saturating_duration_since(Instant::now())),
            None => route.timeout,
        };
        let span = match (tracing, &ctx.session.trace) {
            (Some(t), Some(request)) => Some(t.start_attempt(request, &backend, attempt)),
            _ => None,
        };
        let result = if timeout.is_zero() {
            Err(GatewayError::UpstreamTimeout)
        } else {
            let out = Outgoing { session: &ctx.session, route, backend: &backend, trace: tracing.zip(span.as_ref()) };
            forward::attempt(&out, this_body, client, timeout).await
        };
        if let (Some(span), Some(request)) = (span, &mut ctx.session.trace) {
            request.end_attempt(
                span,
                match &result {
                    Ok(resp) => Ok(resp.status),
                    Err(e) => Err((e.backend_reason().unwrap_or("error"), e.to_string())),
                },
            );
        }
        // A body over the limit, broken or stalled surfaces as a send error or a timeout; it is
        // the client's fault: no backend failure, no ejection, no retry.
        if let Err(e) = &result
            && let Some(fault) = client_side.as_deref().and_then(|c| c.fault(e))
        {
            return Err(fault);
        }
        ctx.record_attempt(&result);
        let failed = match &result {
            Ok(resp) => resp.status.is_server_error(),
            Err(e) => e.backend_reason().is_some(),
        };
        pool.record_outcome(&backend, failed);

        // Another attempt? Only for a retryable outcome of a replayable request, within the
        // attempt count and the deadline, on a backend not tried yet, within the budget.
        let outcome = result.as_ref().map(|r| r.status);
        let deadline_left = deadline.is_none_or(|d| Instant::now() < d);
        if !(replayable
            && attempt < policy.retries
            && deadline_left
            && policy.retryable(&ctx.session.head.method, &outcome))
        {
            return result;
        }
        tried.push(backend.clone());
        let Some(next) = pool.select(&mut key, |b| !tried.iter().any(|t| std::ptr::eq(&**t, b))) else {
            return result;
        };
        if !policy.budget.try_retry() {
            ctx.gateway_metrics().retry_budget_exhausted_total.with_label_values(&[&pool.name]).inc();
            return result;
        }
        ctx.gateway_metrics().retries_total.with_label_values(&[&pool.name]).inc();
        attempt += 1;
        let pause = retry::backoff(attempt);
        let pause = match deadline {
            Some(d) => pause.min(d.saturating_duration_since(Instant::now())),
            None => pause,
        };
        if pause > Duration::ZERO {
            tokio::time::sleep(pause).await;
        }
        backend = next;
    }
}
