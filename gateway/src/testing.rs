//! An in-process gateway for integration tests: it runs on its own thread with its own actix
//! system, on ephemeral loopback ports, so tests need no fixed ports and no particular runtime.

use std::{net::SocketAddr, sync::Arc, thread::JoinHandle};

use actix_web::dev::ServerHandle;

use crate::{
    config::{self, Config, ConfigError},
    gateway::Gateway,
    pipeline::filter::FilterFactory,
    server,
};

/// A running gateway; stopped when dropped.
pub struct TestGateway {
    /// The proxy listener.
    pub addr: SocketAddr,
    /// The admin listener.
    pub admin_addr: SocketAddr,
    /// The HTTPS listener, when the configuration has `server.tls`.
    pub tls_addr: Option<SocketAddr>,
    /// Shared state (runtime snapshot, metrics).
    pub gateway: Arc<Gateway>,
    handles: Vec<ServerHandle>,
    thread: Option<JoinHandle<()>>,
}

impl TestGateway {
    /// Loads `yaml` and starts a gateway with both listeners moved to `127.0.0.1:0`.
    pub fn start(yaml: &str) -> Result<Self, ConfigError> {
        Self::start_with_filters(yaml, Vec::new())
    }

    /// [`TestGateway::start`] with extra filters ([`Gateway::with_filters`]).
    pub fn start_with_filters(yaml: &str, filters: Vec<FilterFactory>) -> Result<Self, ConfigError> {
        let mut config = config::load_str(yaml, "<test>")?;
        config.server.listen = "127.0.0.1:0".into();
        config.admin.listen = "127.0.0.1:0".into();
        if let Some(tls) = &mut config.server.tls {
            tls.listen = "127.0.0.1:0".into();
        }
        if config.server.workers == 0 {
            config.server.workers = 2;
        }
        // `RUSTYGATE_TEST_FRONTEND=hyper`: the same tests against the experimental front end.
        if std::env::var("RUSTYGATE_TEST_FRONTEND").is_ok_and(|f| f == "hyper") {
            config.server.frontend = config::Frontend::Hyper;
        }
        Self::run(Gateway::with_filters(config.clone(), filters)?, config)
    }

    /// Starts a gateway from an already loaded configuration, on the addresses it names;
    /// fails if it does not compile (such as an unreadable key file).
    pub fn start_config(config: Config) -> Result<Self, ConfigError> {
        Self::run(Gateway::new(config.clone())?, config)
    }

    fn run(gateway: Arc<Gateway>, config: Config) -> Result<Self, ConfigError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let gw = gateway.clone();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let servers = server::bind(gw, &config, false).expect("test gateway binds");
                let handles = vec![servers.proxy.handle(), servers.admin.handle()];
                let addrs = (servers.proxy_addrs[0], servers.admin_addrs[0], servers.tls_addrs.first().copied());
                tx.send((addrs, handles)).expect("test waits");
                let _ = futures_util::future::join(servers.proxy, servers.admin).await;
            });
        });
        let ((addr, admin_addr, tls_addr), handles) = rx.recv().expect("test gateway started");
        Ok(Self { addr, admin_addr, tls_addr, gateway, handles, thread: Some(thread) })
    }

    /// `http://ADDR` of the proxy listener followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://ADDR` of the admin listener followed by `path`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin_addr)
    }

    /// Stops both listeners gracefully and waits for the server thread.
    pub fn stop(mut self) {
        self.shutdown(true);
    }

    fn shutdown(&mut self, graceful: bool) {
        let handles = std::mem::take(&mut self.handles);
        if let Some(thread) = self.thread.take() {
            // Stopping needs a runtime to drive the futures. It runs on a thread of its own
            // because the caller may itself be inside a runtime (a `#[tokio::test]`).
            let stopper = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                rt.block_on(async {
                    for h in handles {
                        h.stop(graceful).await;
                    }
                });
            });
            let _ = stopper.join();
            let _ = thread.join();
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown(false);
    }
}
