//! The `rustygate` binary: command line, logging, and the two listeners.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand};
use rustygate::{
    config::{self, Config},
    runtime::Runtime,
    server::{self, Gateway},
    telemetry::logging,
};

/// glibc's malloc showed up as ~11% of the gateway's CPU under load (perf); mimalloc's
/// per-thread heaps suit actix's thread-per-core workers (see docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The default configuration path; if it does not exist, the embedded default is used.
const DEFAULT_CONFIG: &str = "config/default.yaml";

#[derive(Parser)]
#[command(name = "rustygate", version, about = "An observable HTTP reverse proxy / API gateway")]
struct Cli {
    /// Configuration file (YAML).
    #[arg(long, short, global = true, env = "RUSTYGATE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Run,
    /// Validate the configuration: exit 0 if valid, else print every error and exit 1.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::Check => {
            println!("configuration is valid: {} routes, {} upstreams", config.routes.len(), config.upstreams.len());
            ExitCode::SUCCESS
        }
        Command::Run => match run(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rustygate: {e:#}");
                ExitCode::from(1)
            }
        },
    }
}

fn load(path: Option<&std::path::Path>) -> Result<Config, config::ConfigError> {
    match path {
        Some(p) => config::load_file(p),
        None if std::path::Path::new(DEFAULT_CONFIG).exists() => config::load_file(DEFAULT_CONFIG.as_ref()),
        None => config::load_str(config::DEFAULT_CONFIG_YAML, "<embedded config/default.yaml>"),
    }
}

fn run(config: Config) -> anyhow::Result<()> {
    let _log_guard = logging::init(&config.log);
    let runtime = Runtime::compile(config.clone(), 1).map_err(|e| anyhow::anyhow!("{e}"))?;
    let routes = runtime.routes.routes().len();
    let gateway = Gateway::new(runtime);
    actix_web::rt::System::new().block_on(async move {
        let servers = server::bind(gateway, &config, true).context("starting the listeners")?;
        tracing::info!(
            proxy = ?servers.proxy_addrs,
            admin = ?servers.admin_addrs,
            routes,
            version = env!("CARGO_PKG_VERSION"),
            "rustygate listening"
        );
        let (proxy, admin) = futures_util::future::join(servers.proxy, servers.admin).await;
        proxy.context("proxy listener")?;
        admin.context("admin listener")?;
        tracing::info!("rustygate stopped");
        Ok(())
    })
}
