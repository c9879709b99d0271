//! `otlp-sink`: a stand-in for Jaeger in the native lab. Receives OTLP traces (gRPC and
//! HTTP/protobuf) and answers Jaeger's `GET /api/traces/{traceID}`; see `mock_backends::otlp_sink`.

use std::{net::SocketAddr, process::ExitCode};

use clap::Parser;

/// A small OTLP trace receiver with Jaeger's trace query API.
#[derive(Debug, Parser)]
#[command(name = "otlp-sink", version, about)]
struct Cli {
    /// OTLP/gRPC address.
    #[arg(long, default_value = "127.0.0.1:4317")]
    grpc: SocketAddr,
    /// OTLP/HTTP and Jaeger query addresses (repeatable).
    #[arg(long, default_values = ["127.0.0.1:4318", "127.0.0.1:16686"])]
    http: Vec<SocketAddr>,
}

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match mock_backends::otlp_sink::run(cli.grpc, cli.http).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("otlp-sink: {e}");
            ExitCode::FAILURE
        }
    }
}
