//! A route's plugins run in order: `on_request` in list order, `on_response` in reverse (the
//! first plugin sees the request first and the response last, like nested middleware). Each
//! call is timed and counted; a failing one follows its plugin's failure policy.

use std::{sync::Arc, time::Instant};

use prometheus::{Histogram, IntCounter};

use super::{
    engine::{CallOutcome, CompiledPlugin, MISSING, OUTCOMES},
    exchange::{ChainResult, Exchange, Hook},
    pool,
    registry::PluginSlot,
};
use crate::{
    config::PluginFailure,
    error::GatewayError,
    http_types::{HeaderMap, header},
    metrics::Metrics,
    pipeline::message::{Response, ResponseBody},
};

/// A hook's series for one plugin, resolved when the route is compiled.
#[derive(Debug)]
struct HookMetrics {
    calls: [IntCounter; OUTCOMES.len()],
    duration: Histogram,
}

impl HookMetrics {
    fn new(metrics: &Metrics, plugin: &str, hook: Hook) -> Self {
        Self {
            calls: OUTCOMES.map(|o| metrics.plugin_calls_total.with_label_values(&[plugin, hook.label(), o])),
            duration: metrics.plugin_duration.with_label_values(&[plugin, hook.label()]),
        }
    }
}

/// One entry of a route's chain: the plugin's slot and its settings.
#[derive(Debug)]
pub struct RoutePlugin {
    slot: Arc<PluginSlot>,
    failure: PluginFailure,
    fuel: u64,
    metrics: [HookMetrics; 2],
}

impl RoutePlugin {
    /// A chain entry for `slot` with the plugin's failure policy and budget.
    pub fn new(slot: Arc<PluginSlot>, failure: PluginFailure, fuel: u64, metrics: &Metrics) -> Self {
        let metrics = [Hook::Request, Hook::Response].map(|hook| HookMetrics::new(metrics, &slot.name, hook));
        Self { slot, failure, fuel, metrics }
    }

    fn hook_metrics(&self, hook: Hook) -> &HookMetrics {
        &self.metrics[hook as usize]
    }
}

/// The plugin versions `on_request` ran with, one per chain entry: `on_response` runs the
/// same ones, so a plugin swapped mid-request does not mix versions within the request.
#[derive(Debug, Default)]
pub struct Pinned(Vec<Option<Arc<CompiledPlugin>>>);

/// A route's plugins, in order.
#[derive(Debug, Default)]
pub struct PluginChain(Box<[RoutePlugin]>);

/// What one plugin call means for the request.
enum Step {
    Next,
    Respond,
}

impl PluginChain {
    /// The chain of `plugins`, in order.
    pub fn new(plugins: Vec<RoutePlugin>) -> Self {
        Self(plugins.into_boxed_slice())
    }

    /// Whether the route runs no plugin.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Plugin names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> + Clone {
        self.0.iter().map(|p| &*p.slot.name)
    }

    /// Runs `on_request` of each plugin; the versions used are pinned in `pinned` for
    /// `on_response`. `Ok(Respond)` carries a plugin's answer, with the response headers set so far.
    pub fn on_request(&self, ex: &mut Exchange, pinned: &mut Pinned) -> Result<ChainResult, GatewayError> {
        pinned.0 = self.0.iter().map(|p| p.slot.current()).collect();
        for (i, plugin) in self.0.iter().enumerate() {
            let version = pinned.0[i].clone();
            if let Step::Respond = self.step(plugin, version.as_ref(), Hook::Request, ex)? {
                return Ok(ChainResult::Respond(answer(ex, false)));
            }
        }
        Ok(ChainResult::Continue)
    }

    /// Whether any plugin (as pinned by `on_request`) has an `on_response` hook.
    pub fn wants_response(&self, pinned: &Pinned) -> bool {
        pinned.0.iter().flatten().any(|p| p.on_response)
    }

    /// Runs `on_response` of each plugin, last first, on the backend's status and headers in
    /// `ex`. `Ok(Respond)` replaces the backend's response.
    pub fn on_response(&self, ex: &mut Exchange, pinned: &Pinned) -> Result<ChainResult, GatewayError> {
        for (i, plugin) in self.0.iter().enumerate().rev() {
            // A plugin missing at request time was handled (and counted) then.
            let Some(version) = pinned.0.get(i).cloned().flatten() else { continue };
            if let Step::Respond = self.step(plugin, Some(&version), Hook::Response, ex)? {
                return Ok(ChainResult::Respond(answer(ex, true)));
            }
        }
        Ok(ChainResult::Continue)
    }

    fn step(
        &self,
        plugin: &RoutePlugin,
        version: Option<&Arc<CompiledPlugin>>,
        hook: Hook,
        ex: &mut Exchange,
    ) -> Result<Step, GatewayError> {
        let metrics = plugin.hook_metrics(hook);
        let outcome = match version {
            None => {
                metrics.calls[MISSING].inc();
                return fail(plugin, hook, "missing", "its file is missing".into());
            }
            Some(v) if !exports(v, hook) => return Ok(Step::Next),
            Some(version) => {
                let started = Instant::now();
                let outcome = pool::with_instance(version, |instance| {
                    let outcome = instance.call(hook, plugin.fuel, ex);
                    let reusable = outcome.instance_reusable();
                    (outcome, reusable)
                })
                .unwrap_or_else(CallOutcome::Trap);
                metrics.duration.observe(started.elapsed().as_secs_f64());
                metrics.calls[outcome.index()].inc();
                outcome
            }
        };
        match outcome {
            CallOutcome::Continue => Ok(Step::Next),
            CallOutcome::Respond => Ok(Step::Respond),
            CallOutcome::Trap(detail) => fail(plugin, hook, "trap", detail),
            CallOutcome::BudgetExhausted => {
                fail(plugin, hook, "budget_exhausted", format!("stopped after its budget of {} points", plugin.fuel))
            }
            CallOutcome::InvalidAction(action) => {
                let detail = match action {
                    1 => "returned 1 (respond) without calling rg_respond".to_owned(),
                    a => format!("returned {a}, which is neither 0 (continue) nor 1 (respond)"),
                };
                fail(plugin, hook, "invalid_action", detail)
            }
        }
    }
}

fn exports(version: &CompiledPlugin, hook: Hook) -> bool {
    match hook {
        Hook::Request => version.on_request,
        Hook::Response => version.on_response,
    }
}

/// A failed call: the request fails (`closed`) or goes on without the plugin (`open`).
fn fail(plugin: &RoutePlugin, hook: Hook, outcome: &'static str, detail: String) -> Result<Step, GatewayError> {
    let (result, what) = match plugin.failure {
        PluginFailure::Closed => (
            Err(GatewayError::PluginFailed { plugin: plugin.slot.name.clone(), outcome }),
            "request refused (failure: closed)",
        ),
        PluginFailure::Open => (Ok(Step::Next), "skipped (failure: open)"),
    };
    tracing::warn!(
        plugin = &*plugin.slot.name,
        hook = hook.label(),
        outcome,
        error = detail.as_str(),
        "plugin failed: {what}"
    );
    result
}

/// The response a plugin asked for: its status and body, with the response headers in `ex`
/// (in `on_response`, the backend's as edited, less those that described the backend's body).
fn answer(ex: &mut Exchange, replacing_backend: bool) -> Response {
    let (status, body) = ex.respond.take().expect("a respond outcome has an answer");
    let mut headers: HeaderMap = std::mem::take(&mut ex.response_headers);
    if replacing_backend {
        for name in [header::CONTENT_ENCODING, header::CONTENT_LENGTH, header::CONTENT_RANGE, header::ETAG] {
            headers.remove(name);
        }
    }
    Response { status, headers, body: ResponseBody::Full(body) }
}
