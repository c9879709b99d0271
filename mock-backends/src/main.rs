//! `mock-backend`: runs one httpbin-like mock backend in the foreground for the lab and the
//! benchmarks, until SIGINT or SIGTERM. See the `mock_backends` library for the endpoints.

use std::{net::IpAddr, process::ExitCode, time::Duration};

use clap::Parser;
use mock_backends::MockOptions;

/// An httpbin-like mock backend for RustyGate.
#[derive(Debug, Parser)]
#[command(name = "mock-backend", version, about)]
struct Cli {
    /// Port to listen on.
    #[arg(long, default_value_t = 8001)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Backend name, reported in bodies and the `x-backend` header [default: mock-PORT].
    #[arg(long)]
    name: Option<String>,
    /// Latency added to every request but /control/* and /health, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency: u64,
    /// Fraction of requests (0.0 to 1.0) answered with an injected 500.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    error_rate: f64,
    /// Number of worker threads.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    workers: u16,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// With --tls-cert: require client certificates chaining to this CA bundle (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_client_ca: Option<std::path::PathBuf>,
}

/// Parses a fraction between 0 and 1.
fn parse_rate(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!("{value:?} is not a number from 0.0 to 1.0")),
    }
}

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let opts = MockOptions {
        name: cli.name.unwrap_or_else(|| format!("mock-{}", cli.port)),
        bind: (cli.bind, cli.port).into(),
        latency: Duration::from_millis(cli.latency),
        error_rate: cli.error_rate,
        workers: usize::from(cli.workers),
        tls: cli.tls_cert.zip(cli.tls_key),
        tls_client_ca: cli.tls_client_ca,
    };
    match mock_backends::run(opts).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("mock-backend: {err}");
            ExitCode::FAILURE
        }
    }
}
