//! The tracer: sampler, ids, propagator and the export queue, built once at start.

use std::{collections::BTreeMap, time::Duration};

use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{RandomIdGenerator, Sampler, SpanExporter as _},
};
use prometheus::IntCounter;

use super::{
    export,
    settings::{SamplerChoice, Settings},
};
use crate::config::{OtlpProtocol, TracingConfig};

/// The gateway's tracer and export pipeline.
#[derive(Debug)]
pub struct Tracing {
    pub(super) sampler: Sampler,
    pub(super) ids: RandomIdGenerator,
    pub(super) propagator: TraceContextPropagator,
    pub(super) queue: export::SpanQueue,
    /// Whether responses carry `traceresponse`.
    pub traceresponse: bool,
}

impl Tracing {
    /// Builds the tracer when tracing is enabled (by the file, unless `OTEL_SDK_DISABLED`);
    /// `None` when it is not. The export task runs on `runtime`. An invalid setting (a bad
    /// `OTEL_*` variable) is an error naming it.
    pub fn start(
        config: &TracingConfig,
        env: &dyn Fn(&str) -> Option<String>,
        dropped: IntCounter,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Option<Self>, String> {
        let settings = Settings::resolve(config, env)?;
        if !settings.enabled {
            return Ok(None);
        }
        let resource = Resource::builder_empty()
            .with_attributes(settings.resource.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())))
            .with_attributes([
                KeyValue::new("telemetry.sdk.name", "opentelemetry"),
                KeyValue::new("telemetry.sdk.language", "rust"),
            ])
            .build();
        let mut exporter = {
            // tonic's lazy channel spawns its connection task on the current runtime.
            let _guard = runtime.enter();
            build_exporter(&settings)?
        };
        let limits = export::QueueLimits {
            max_queue_size: settings.max_queue_size,
            max_export_batch_size: settings.max_export_batch_size,
            scheduled_delay: settings.scheduled_delay,
            export_timeout: settings.export_timeout,
        };
        exporter.set_resource(&resource);
        let queue = export::SpanQueue::start(exporter, limits, dropped, runtime);
        tracing::info!(
            endpoint = settings.endpoint.as_str(),
            protocol = ?settings.protocol,
            sampler = ?settings.sampler,
            "tracing enabled: exporting spans over OTLP"
        );
        Ok(Some(Self {
            sampler: sampler(&settings.sampler),
            ids: RandomIdGenerator::default(),
            propagator: TraceContextPropagator::new(),
            queue,
            traceresponse: config.traceresponse,
        }))
    }

    /// Exports what is queued and stops the exporter, waiting at most `timeout`.
    pub fn shutdown(&self, timeout: Duration) {
        if let Err(e) = self.queue.shutdown(timeout) {
            tracing::warn!(error = %e, "spans may have been lost at exit");
        }
    }

    /// Exports what is queued now (tests and the admin API use it).
    pub fn flush(&self) {
        let _ = self.queue.flush(Duration::from_secs(30));
    }
}

fn sampler(choice: &SamplerChoice) -> Sampler {
    let parent_based = |root: Sampler| Sampler::ParentBased(Box::new(root));
    match *choice {
        SamplerChoice::ParentBasedRatio(r) => parent_based(Sampler::TraceIdRatioBased(r)),
        SamplerChoice::Ratio(r) => Sampler::TraceIdRatioBased(r),
        SamplerChoice::ParentBasedAlwaysOn => parent_based(Sampler::AlwaysOn),
        SamplerChoice::ParentBasedAlwaysOff => parent_based(Sampler::AlwaysOff),
        SamplerChoice::AlwaysOn => Sampler::AlwaysOn,
        SamplerChoice::AlwaysOff => Sampler::AlwaysOff,
    }
}

fn build_exporter(s: &Settings) -> Result<opentelemetry_otlp::SpanExporter, String> {
    // The queue already drops spans when the collector fails; one quick retry covers a
    // collector restart without holding batches for long.
    let retry = opentelemetry_otlp::RetryPolicy::recommended().with_max_retries(1);
    let built = match s.protocol {
        OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(s.endpoint.clone())
            .with_timeout(s.export_timeout)
            .with_metadata(opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(header_map(
                &s.headers,
            )?))
            .with_retry_policy(retry)
            .build(),
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(s.endpoint.clone())
            .with_timeout(s.export_timeout)
            .with_headers(s.headers.clone().into_iter().collect())
            .with_retry_policy(retry)
            .build(),
    };
    built.map_err(|e| format!("cannot build the OTLP exporter for {}: {e}", s.endpoint))
}

fn header_map(headers: &BTreeMap<String, String>) -> Result<reqwest::header::HeaderMap, String> {
    let mut map = reqwest::header::HeaderMap::with_capacity(headers.len());
    for (k, v) in headers {
        let name = reqwest::header::HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes())
            .map_err(|_| format!("tracing.headers: {k:?} is not a header name"))?;
        let value =
            reqwest::header::HeaderValue::from_str(v).map_err(|_| format!("tracing.headers.{k}: invalid value"))?;
        map.insert(name, value);
    }
    Ok(map)
}
