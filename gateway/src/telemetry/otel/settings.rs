//! The effective tracing settings: the `tracing:` section with the standard `OTEL_*`
//! environment variables applied on top (an operator's environment wins over the file, as
//! `RUST_LOG` wins over `log.level`). Resolved once at start; a bad variable is a start-up error
//! that names it.

use std::{collections::BTreeMap, time::Duration};

use crate::config::{OtlpProtocol, TracingConfig};

/// How new traces are sampled.
#[derive(Clone, Debug, PartialEq)]
pub enum SamplerChoice {
    /// Follow the caller's decision; for new traces, record this share (the default).
    ParentBasedRatio(f64),
    /// Ignore the caller; record this share of all traces.
    Ratio(f64),
    /// Follow the caller; record every new trace.
    ParentBasedAlwaysOn,
    /// Follow the caller; record no new trace.
    ParentBasedAlwaysOff,
    /// Record everything.
    AlwaysOn,
    /// Record nothing.
    AlwaysOff,
}

/// Everything the exporter and the tracer need.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Whether tracing is on (`OTEL_SDK_DISABLED=true` turns it off).
    pub enabled: bool,
    /// The full export URL (for HTTP, with its `/v1/traces` path).
    pub endpoint: String,
    /// The transport.
    pub protocol: OtlpProtocol,
    /// Resource attributes, `service.name` included.
    pub resource: BTreeMap<String, String>,
    /// The sampler.
    pub sampler: SamplerChoice,
    /// Export headers from the file (the exporter adds `OTEL_EXPORTER_OTLP_HEADERS` itself).
    pub headers: BTreeMap<String, String>,
    /// Queue bound.
    pub max_queue_size: usize,
    /// Spans per export.
    pub max_export_batch_size: usize,
    /// Longest wait before a partial batch is sent.
    pub scheduled_delay: Duration,
    /// Time allowed for one export.
    pub export_timeout: Duration,
}

impl Settings {
    /// Applies the environment (`env(name)` reads one variable) to `config`.
    pub fn resolve(config: &TracingConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let var = |name: &str| env(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let enabled = match var("OTEL_SDK_DISABLED").as_deref() {
            Some(v) if v.eq_ignore_ascii_case("true") => false,
            _ => config.enabled,
        };
        let protocol = match var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL")) {
            None => config.protocol,
            Some(p) => match p.as_str() {
                "grpc" => OtlpProtocol::Grpc,
                "http/protobuf" => OtlpProtocol::HttpProtobuf,
                other => {
                    return Err(format!(
                        "OTEL_EXPORTER_OTLP_PROTOCOL={other:?}: supported values are grpc and http/protobuf"
                    ));
                }
            },
        };
        // The signal-specific variable is used as is; the generic one and the file's value get
        // `/v1/traces` for HTTP when they have no path.
        let endpoint = match (var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), var("OTEL_EXPORTER_OTLP_ENDPOINT")) {
            (Some(e), _) => e,
            (None, Some(e)) => with_traces_path(&e, protocol),
            (None, None) => {
                let configured = TracingConfig { protocol, ..config.clone() };
                with_traces_path(&configured.effective_endpoint(), protocol)
            }
        };
        let parsed = url::Url::parse(&endpoint).map_err(|e| format!("tracing endpoint {endpoint:?}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("tracing endpoint {endpoint:?} must be http:// or https://"));
        }
        if parsed.scheme() == "https" && protocol == OtlpProtocol::Grpc {
            return Err(format!(
                "tracing endpoint {endpoint:?}: OTLP/gRPC over TLS is not built in; use protocol http/protobuf for https"
            ));
        }

        let mut resource = config.resource_attributes.clone();
        if let Some(attrs) = var("OTEL_RESOURCE_ATTRIBUTES") {
            for pair in attrs.split(',').filter(|p| !p.trim().is_empty()) {
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("OTEL_RESOURCE_ATTRIBUTES: {pair:?} is not key=value"))?;
                resource.insert(percent_decode(k.trim()), percent_decode(v.trim()));
            }
        }
        let service_name = var("OTEL_SERVICE_NAME")
            .or_else(|| var("OTEL_RESOURCE_ATTRIBUTES").and(resource.get("service.name").cloned()))
            .unwrap_or_else(|| config.service_name.clone());
        resource.insert("service.name".into(), service_name);
        resource.entry("service.version".into()).or_insert_with(|| env!("CARGO_PKG_VERSION").into());

        let ratio_arg = |default: f64| -> Result<f64, String> {
            match var("OTEL_TRACES_SAMPLER_ARG") {
                None => Ok(default),
                Some(a) => a
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| format!("OTEL_TRACES_SAMPLER_ARG={a:?}: expected a ratio between 0 and 1")),
            }
        };
        let sampler = match var("OTEL_TRACES_SAMPLER").as_deref() {
            None => SamplerChoice::ParentBasedRatio(config.sampling_ratio),
            Some("parentbased_traceidratio") => SamplerChoice::ParentBasedRatio(ratio_arg(1.0)?),
            Some("traceidratio") => SamplerChoice::Ratio(ratio_arg(1.0)?),
            Some("parentbased_always_on") => SamplerChoice::ParentBasedAlwaysOn,
            Some("parentbased_always_off") => SamplerChoice::ParentBasedAlwaysOff,
            Some("always_on") => SamplerChoice::AlwaysOn,
            Some("always_off") => SamplerChoice::AlwaysOff,
            Some(other) => {
                return Err(format!(
                    "OTEL_TRACES_SAMPLER={other:?}: supported samplers are parentbased_traceidratio, traceidratio, \
                     parentbased_always_on, parentbased_always_off, always_on and always_off"
                ));
            }
        };

        let millis = |name: &str, default: Duration| -> Result<Duration, String> {
            match var(name) {
                None => Ok(default),
                Some(v) => v
                    .parse::<u64>()
                    .ok()
                    .filter(|ms| *ms > 0)
                    .map(Duration::from_millis)
                    .ok_or_else(|| format!("{name}={v:?}: expected milliseconds greater than 0")),
            }
        };
        let count = |name: &str, default: u32| -> Result<usize, String> {
            match var(name) {
                None => Ok(default as usize),
                Some(v) => v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{name}={v:?}: expected a count greater than 0")),
            }
        };
        let export_timeout = match var("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") {
            Some(_) => millis("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", config.export_timeout.0)?,
            None => millis("OTEL_EXPORTER_OTLP_TIMEOUT", millis("OTEL_BSP_EXPORT_TIMEOUT", config.export_timeout.0)?)?,
        };
        let max_queue_size = count("OTEL_BSP_MAX_QUEUE_SIZE", config.max_queue_size)?;
        let max_export_batch_size = count("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", config.max_export_batch_size)?;
        Ok(Self {
            enabled,
            endpoint,
            protocol,
            resource,
            sampler,
            headers: config.headers.clone(),
            max_queue_size,
            max_export_batch_size: max_export_batch_size.min(max_queue_size),
            scheduled_delay: millis("OTEL_BSP_SCHEDULE_DELAY", config.scheduled_delay.0)?,
            export_timeout,
        })
    }
}

/// For OTLP over HTTP, an endpoint without a path gets `/v1/traces` (DESIGN.md).
fn with_traces_path(endpoint: &str, protocol: OtlpProtocol) -> String {
    if protocol == OtlpProtocol::Grpc {
        return endpoint.to_owned();
    }
    match url::Url::parse(endpoint) {
        Ok(u) if u.path() == "/" || u.path().is_empty() => format!("{}/v1/traces", endpoint.trim_end_matches('/')),
        _ => endpoint.to_owned(),
    }
}

/// `OTEL_RESOURCE_ATTRIBUTES` values are percent-encoded (W3C Baggage octet rules).
fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map_or_else(|| s.to_owned(), |(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(config: &TracingConfig, vars: &[(&str, &str)]) -> Result<Settings, String> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::resolve(config, &|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn the_file_alone_gives_its_values_and_the_protocol_defaults() {
        let grpc = resolve(&TracingConfig { enabled: true, ..Default::default() }, &[]).unwrap();
        assert_eq!(grpc.endpoint, "http://localhost:4317");
        assert_eq!(grpc.sampler, SamplerChoice::ParentBasedRatio(1.0));
        assert_eq!(grpc.resource["service.name"], "rustygate");
        let http = TracingConfig { protocol: OtlpProtocol::HttpProtobuf, ..Default::default() };
        assert_eq!(resolve(&http, &[]).unwrap().endpoint, "http://localhost:4318/v1/traces");
        let with_path = TracingConfig {
            endpoint: Some("http://c:9/custom".into()),
            protocol: OtlpProtocol::HttpProtobuf,
            ..Default::default()
        };
        assert_eq!(resolve(&with_path, &[]).unwrap().endpoint, "http://c:9/custom");
    }

    #[test]
    fn otel_variables_override_the_file() {
        let config = TracingConfig { enabled: true, sampling_ratio: 0.5, ..Default::default() };
        let s = resolve(
            &config,
            &[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
                ("OTEL_SERVICE_NAME", "edge"),
                ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=prod,team=a%2Cb"),
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
                ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ],
        )
        .unwrap();
        assert_eq!(s.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(s.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(s.resource["service.name"], "edge");
        assert_eq!(s.resource["deployment.environment.name"], "prod");
        assert_eq!(s.resource["team"], "a,b");
        assert_eq!(s.sampler, SamplerChoice::ParentBasedRatio(0.25));
        assert_eq!((s.max_queue_size, s.max_export_batch_size), (100, 100));
        let traces = resolve(&config, &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://x:1")]).unwrap();
        assert_eq!(traces.endpoint, "http://x:1", "the signal's own variable is used as is");
        assert!(!resolve(&config, &[("OTEL_SDK_DISABLED", "true")]).unwrap().enabled);
    }

    #[test]
    fn bad_variables_are_named() {
        let config = TracingConfig::default();
        for (name, value, expected) in [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "OTEL_EXPORTER_OTLP_PROTOCOL=\"http/json\""),
            ("OTEL_TRACES_SAMPLER", "sometimes", "OTEL_TRACES_SAMPLER=\"sometimes\""),
            ("OTEL_BSP_SCHEDULE_DELAY", "soon", "OTEL_BSP_SCHEDULE_DELAY=\"soon\""),
            ("OTEL_RESOURCE_ATTRIBUTES", "novalue", "OTEL_RESOURCE_ATTRIBUTES"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4317", "not built in"),
        ] {
            let err = resolve(&config, &[(name, value)]).unwrap_err();
            assert!(err.contains(expected), "{name}: {err}");
        }
    }
}
