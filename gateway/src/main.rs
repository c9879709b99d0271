//! The `rustygate` binary: command line, logging, and the two listeners.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand};
use rustygate::{
    config::{self, Config},
    gateway::Gateway,
    healthcheck, server, shutdown,
    telemetry::logging,
    token,
};

/// glibc's malloc showed up as ~11% of the gateway's CPU under load (perf); mimalloc's
/// per-thread heaps suit actix's thread-per-core workers (see docs/benchmarks.md).
#[cfg(feature = "mimalloc")]
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
    /// Mint a signed JWT to try a JWT policy (prints the token).
    Token {
        /// Signing algorithm.
        #[arg(long = "alg", default_value = "HS256")]
        algorithm: String,
        /// Shared secret (HS256/384/512).
        #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// PEM private key file (RS*, PS*, ES*, EdDSA); wins over --secret / JWT_SECRET.
        #[arg(long)]
        key_file: Option<String>,
        /// `kid` header.
        #[arg(long)]
        kid: Option<String>,
        /// `sub` claim.
        #[arg(long)]
        sub: Option<String>,
        /// `iss` claim.
        #[arg(long)]
        iss: Option<String>,
        /// `aud` claim.
        #[arg(long)]
        aud: Option<String>,
        /// Lifetime (`exp` = now + ttl).
        #[arg(long, default_value = "1h")]
        ttl: config::HumanDuration,
        /// Extra claim `name=value` (JSON values allowed); repeatable.
        #[arg(long = "claim")]
        claims: Vec<String>,
    },
    /// Probe a running gateway's admin `/healthz`: exit 0 if it answers 200, else 1.
    Health {
        /// The URL to probe.
        #[arg(long, default_value = healthcheck::DEFAULT_URL)]
        url: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Run) {
        // The probe needs no configuration: it must work in a bare container.
        Command::Health { url } => health(&url),
        Command::Token { algorithm, secret, key_file, kid, sub, iss, aud, ttl, claims } => {
            let spec = token::TokenSpec {
                algorithm,
                secret,
                key_file,
                kid,
                subject: sub,
                issuer: iss,
                audience: aud,
                ttl: ttl.0,
                claims,
            };
            token::mint(&spec).map(|t| println!("{t}")).map_err(|e| format!("rustygate token: {e}"))
        }
        // Compiling too catches what only compiling sees, such as an unreadable key file.
        Command::Check => load(cli.config.as_deref()).and_then(|config| {
            let (routes, upstreams) = (config.routes.len(), config.upstreams.len());
            Gateway::new(config).map_err(|e| e.to_string())?;
            println!("configuration is valid: {routes} routes, {upstreams} upstreams");
            Ok(())
        }),
        Command::Run => load(cli.config.as_deref()).and_then(|config| {
            run(config, config_file(cli.config.as_deref())).map_err(|e| format!("rustygate: {e:#}"))
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(1)
        }
    }
}

fn health(url: &str) -> Result<(), String> {
    match healthcheck::probe(url, std::time::Duration::from_secs(3)) {
        Ok(200) => Ok(()),
        Ok(status) => Err(format!("rustygate health: {url} answered {status}")),
        Err(e) => Err(format!("rustygate health: {e}")),
    }
}

/// SIGHUP re-reads the configuration file, like `POST /admin/reload`.
fn reload_on_sighup(gateway: std::sync::Arc<Gateway>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reload with POST /admin/reload");
            return;
        }
    };
    actix_web::rt::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            let gw = gateway.clone();
            // Outcomes are logged and counted by the reload itself.
            let _ = actix_web::rt::task::spawn_blocking(move || gw.reload_file()).await;
        }
    });
}

fn load(path: Option<&std::path::Path>) -> Result<Config, String> {
    match path {
        Some(p) => config::load_file(p),
        None if std::path::Path::new(DEFAULT_CONFIG).exists() => config::load_file(DEFAULT_CONFIG.as_ref()),
        None => config::load_str(config::DEFAULT_CONFIG_YAML, "<embedded config/default.yaml>"),
    }
    .map_err(|e| e.to_string())
}

/// The file a reload re-reads: `--config`, or the default path when it exists.
fn config_file(path: Option<&std::path::Path>) -> Option<PathBuf> {
    match path {
        Some(p) => Some(p.to_owned()),
        None => Some(PathBuf::from(DEFAULT_CONFIG)).filter(|p| p.exists()),
    }
}

fn run(config: Config, file: Option<PathBuf>) -> anyhow::Result<()> {
    let _log_guard = logging::init(&config.log);
    let gateway = Gateway::new(config.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Held until the process ends: dropping it stops watching.
    let mut _watcher = None;
    if let Some(file) = file {
        if config.server.watch_config {
            match rustygate::config_watch::watch(&gateway, &file) {
                Ok(w) => _watcher = Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "reload on file change is off; SIGHUP and POST /admin/reload still work")
                }
            }
        }
        let _ = gateway.config_path.set(file);
    }
    let routes = config.routes.len();
    let timeout = config.server.shutdown_timeout.0;
    let state = gateway.clone();
    let result = actix_web::rt::System::new().block_on(async move {
        // Before the listeners exist: a signal sent once they answer must find its handler.
        reload_on_sighup(gateway.clone());
        let mut stop = shutdown_signals().context("listening for SIGTERM and SIGINT")?;
        let servers = server::bind(gateway.clone(), &config, false).context("starting the listeners")?;
        tracing::info!(
            proxy = ?servers.proxy_addrs,
            tls = ?servers.tls_addrs,
            admin = ?servers.admin_addrs,
            routes,
            version = env!("CARGO_PKG_VERSION"),
            "rustygate listening"
        );
        let (proxy, admin) = (servers.proxy.handle(), servers.admin.handle());
        // The servers run on their own; their handles stop them.
        let proxy_task = actix_web::rt::spawn(servers.proxy);
        let admin_task = actix_web::rt::spawn(servers.admin);
        let signal = tokio::select! {
            name = stop.next() => name,
            ended = proxy_task => return ended.context("proxy listener")?.context("proxy listener").map(|()| 0),
            ended = admin_task => return ended.context("admin listener")?.context("admin listener").map(|()| 0),
        };
        Ok(shutdown::drain(&gateway, signal, proxy, admin, timeout).await)
    });
    // Spans of the last requests are still queued: export them before the process exits.
    if let Some(t) = &state.tracing {
        t.shutdown(std::time::Duration::from_secs(5));
    }
    match result? {
        0 => {
            tracing::info!("rustygate stopped");
            Ok(())
        }
        cut => anyhow::bail!(
            "{cut} request(s) were still running after server.shutdown_timeout ({timeout:?}) and were cut"
        ),
    }
}

/// SIGTERM and SIGINT (Ctrl+C), whichever comes first.
struct ShutdownSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

fn shutdown_signals() -> std::io::Result<ShutdownSignals> {
    use tokio::signal::unix::{SignalKind, signal};
    Ok(ShutdownSignals { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
}

impl ShutdownSignals {
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
