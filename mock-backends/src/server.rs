//! Building and running the actix server: in the foreground for the binary ([`run`]) or on a
//! dedicated thread for tests ([`MockServer`]).
//!
//! Listeners accept HTTP/1.x and cleartext HTTP/2 (prior knowledge). Keep-alive is on, there
//! is no compression and no request body limit: bodies are consumed as streams.

use std::{
    io,
    net::SocketAddr,
    sync::{Arc, mpsc},
    thread::{self, JoinHandle},
    time::Duration,
};

use actix_web::{
    App, HttpServer,
    dev::{Server, ServerHandle},
    http::KeepAlive,
    web,
};

use crate::{MockOptions, control, echo, state::Shared, streams, websocket};

/// How long idle connections are kept open.
const KEEP_ALIVE: Duration = Duration::from_secs(75);

/// Where the server runs, which decides signal handling and the shutdown grace period.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The `mock-backend` binary: stops on SIGINT/SIGTERM.
    Foreground,
    /// A [`MockServer`] thread: no signal handlers, short grace period.
    Embedded,
}

/// Registers every endpoint.
fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::route().to(control::health))
        .service(
            web::scope("/control")
                .route("/health", web::post().to(control::set_health))
                .route("/fail", web::post().to(control::fail))
                .route("/latency", web::post().to(control::set_latency))
                .route("/stats", web::get().to(control::stats))
                .route("/reset", web::post().to(control::reset))
                .default_service(web::to(control::not_found)),
        )
        .route("/status/{code}", web::route().to(echo::status))
        .route("/delay/{ms}", web::route().to(echo::delay))
        .route("/bytes/{n}", web::route().to(streams::bytes))
        .route("/drip/{n}", web::route().to(streams::drip))
        .route("/ws/echo", web::get().to(websocket::echo))
        .default_service(web::to(echo::echo));
}

/// Binds the listener and builds (and starts) the server; must run inside an actix `System`.
fn build(opts: &MockOptions, state: Arc<Shared>, mode: Mode) -> io::Result<(Server, SocketAddr)> {
    let data = web::Data::from(state);
    let mut http = HttpServer::new(move || App::new().app_data(data.clone()).configure(routes))
        .workers(opts.workers.max(1))
        .keep_alive(KeepAlive::Timeout(KEEP_ALIVE));
    http = match mode {
        Mode::Foreground => http.shutdown_timeout(5),
        Mode::Embedded => http.shutdown_timeout(1).disable_signals(),
    };
    let http = match &opts.tls {
        Some((cert, key)) => http.bind_rustls_0_23(opts.bind, tls_config(cert, key, opts.tls_client_ca.as_deref())?)?,
        None => http.bind_auto_h2c(opts.bind)?,
    };
    let addr = *http.addrs().first().ok_or_else(|| io::Error::other("no listening address"))?;
    Ok((http.run(), addr))
}

/// A rustls server configuration for a PEM certificate chain and key (aws-lc-rs, the provider
/// the gateway uses), ALPN h2 and http/1.1.
fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
    client_ca: Option<&std::path::Path>,
) -> io::Result<rustls::ServerConfig> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| io::Error::other(format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| io::Error::other(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in
                CertificateDer::pem_file_iter(ca).map_err(|e| io::Error::other(format!("{}: {e}", ca.display())))?
            {
                roots.add(c.map_err(io::Error::other)?).map_err(io::Error::other)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(io::Error::other)?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(io::Error::other)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Runs a mock backend in the current actix `System` (as `#[actix_web::main]` provides) until
/// SIGINT/SIGTERM, after printing one startup line to stderr. Used by the `mock-backend`
/// binary.
pub async fn run(opts: MockOptions) -> io::Result<()> {
    let state = Arc::new(Shared::new(&opts)?);
    let (server, addr) = build(&opts, state, Mode::Foreground)?;
    eprintln!(
        "mock-backend {:?} listening on {}://{addr} (workers {}, latency {} ms, error rate {})",
        opts.name,
        if opts.tls.is_some() { "https" } else { "http" },
        opts.workers.max(1),
        opts.latency.as_millis(),
        opts.error_rate,
    );
    server.await
}

/// A mock backend running on its own thread (with its own actix `System`), for tests.
///
/// It works from any context: `#[tokio::test]`, plain threads, another runtime. Dropping it
/// stops it without waiting; [`MockServer::stop`] stops it gracefully and waits.
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    state: Arc<Shared>,
    handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
}

impl MockServer {
    /// Starts a backend named `name` on `127.0.0.1` and a free port; returns once it listens.
    ///
    /// # Panics
    ///
    /// If the server cannot start (e.g. `name` is not a valid header value).
    pub fn start(name: &str) -> MockServer {
        let opts = MockOptions { name: name.to_owned(), ..Default::default() };
        MockServer::start_with(opts).unwrap_or_else(|err| panic!("mock backend {name:?} failed to start: {err}"))
    }

    /// Starts a backend with these options; returns once it listens.
    ///
    /// # Errors
    ///
    /// If the name is not a valid header value, the address cannot be bound, or the server
    /// thread cannot be spawned.
    pub fn start_with(opts: MockOptions) -> io::Result<MockServer> {
        let state = Arc::new(Shared::new(&opts)?);
        let (tx, rx) = mpsc::channel();
        let thread_state = Arc::clone(&state);
        let thread = thread::Builder::new().name(format!("mock-{}", opts.name)).spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                match build(&opts, thread_state, Mode::Embedded) {
                    Ok((server, addr)) => {
                        let _ = tx.send(Ok((addr, server.handle())));
                        let _ = server.await;
                    }
                    Err(err) => {
                        let _ = tx.send(Err(err));
                    }
                }
            });
        })?;
        let started =
            rx.recv().unwrap_or_else(|_| Err(io::Error::other("mock backend thread exited before listening")));
        match started {
            Ok((addr, handle)) => Ok(MockServer { addr, state, handle, thread: Some(thread) }),
            Err(err) => {
                let _ = thread.join();
                Err(err)
            }
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, `http://127.0.0.1:PORT` (no trailing slash; `https://` when it serves TLS).
    pub fn url(&self) -> String {
        let scheme = if self.state.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Its name, as reported in bodies and in the `x-backend` header.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Requests served so far, excluding `/control/*` and `/health` (injected failures count).
    pub fn hits(&self) -> u64 {
        self.state.hits()
    }

    /// Sets what `/health` answers (like `POST /control/health`).
    pub fn set_healthy(&self, healthy: bool) {
        self.state.set_healthy(healthy);
    }

    /// Makes the next `count` non-control requests answer `status`, like
    /// `POST /control/fail`. Status 0 closes the connection without answering; a status that
    /// is neither 0 nor in `200..=599` is replaced by 500; `count == 0` clears.
    pub fn fail_next(&self, count: u64, status: u16) {
        self.state.fail_next(count, status);
    }

    /// Sets the latency of non-control requests (like `POST /control/latency`).
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.state.set_latency(latency);
    }

    /// Like `POST /control/reset`: hits to 0, healthy, no pending failures.
    pub fn reset(&self) {
        self.state.reset();
    }

    /// Stops gracefully and waits for the server thread: new connections are refused, then
    /// in-flight requests get up to about a second to finish.
    pub fn stop(mut self) {
        // The stop command is sent when `stop` is called; the returned future only waits.
        drop(self.handle.stop(true));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        if self.thread.take().is_some() {
            drop(self.handle.stop(false));
        }
    }
}
