//! The listeners: the proxy (one catch-all handler into the pipeline) and the admin API, each an
//! actix `HttpServer` on its own address. Routing is not actix's: actix builds its router once
//! per worker, so everything that must be reloadable lives in the runtime snapshot instead.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::{App, HttpServer, dev::Server, web};

use crate::{
    admin,
    config::{Config, Frontend, TlsVersion, values::Parsed},
    frontend::{
        actix as front_actix,
        connection::{ConnectionState, PerIpConnections},
        hyper as front_hyper,
    },
    gateway::Gateway,
    tls::{ConnectionTls, SniResolver},
};

/// The two bound (not yet running) servers and their addresses.
pub struct Servers {
    /// The proxy listener's bound addresses (plain HTTP).
    pub proxy_addrs: Vec<SocketAddr>,
    /// The HTTPS listener's bound addresses (`server.tls`), served by the proxy server.
    pub tls_addrs: Vec<SocketAddr>,
    /// The HTTPS listener's certificates (to swap them), when there is one.
    pub tls_certificates: Option<Arc<SniResolver>>,
    /// The admin listener's bound addresses.
    pub admin_addrs: Vec<SocketAddr>,
    /// The proxy server future.
    pub proxy: Server,
    /// The admin server future.
    pub admin: Server,
}

/// Binds both listeners. Must run inside an actix system (`#[actix_web::main]` or
/// `actix_web::rt::System`). `handle_signals` lets actix stop gracefully on SIGINT/SIGTERM.
pub fn bind(gateway: Arc<Gateway>, config: &Config, handle_signals: bool) -> io::Result<Servers> {
    let workers = match config.server.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n as usize,
    };
    let data = web::Data::from(gateway.clone());
    let proxy_data = data.clone();
    let connections = gateway.connections.clone();
    // Peers are counted only when a per-peer limit is set (a start-up setting).
    let per_ip = (config.server.max_connections_per_ip > 0).then(|| std::sync::Arc::new(PerIpConnections::default()));
    let send_timeout = config.server.send_timeout.0;
    let proxy =
        HttpServer::new(move || App::new().app_data(proxy_data.clone()).default_service(web::to(front_actix::handle)))
            .on_connect(move |connection, extensions| {
                let tls = connection.downcast_ref::<TlsStream<actix_web::rt::net::TcpStream>>();
                let tcp =
                    connection.downcast_ref::<actix_web::rt::net::TcpStream>().or_else(|| tls.map(|t| t.get_ref().0));
                let peer = tcp.and_then(|t| t.peer_addr().ok()).map(|a| a.ip());
                let mut state = ConnectionState::open(&connections, per_ip.as_ref(), peer);
                if let Some(tls) = tls {
                    state = state.with_tls(ConnectionTls::of(tls.get_ref().1));
                }
                extensions.insert(state);
                // A client that stops reading cannot hold the connection (and the backend's)
                // for longer than `send_timeout`: actix has no send timeout of its own.
                if let Some(tcp) = tcp {
                    let _ = socket2::SockRef::from(tcp).set_tcp_user_timeout(Some(send_timeout));
                }
            })
            // actix's hard ceiling per worker: its share of `server.max_connections` plus room for
            // the 503s that say why (at actix's ceiling a client only waits in the backlog).
            .max_connections((config.server.max_connections as usize).div_ceil(workers) + 64)
            .workers(workers)
            .client_request_timeout(config.server.client_header_timeout.0)
            .keep_alive(config.server.keep_alive.0)
            // The drain (`shutdown.rs`) decides when in-flight requests are cut; actix's own
            // force-stop comes a second later, so it never cuts them first, unseen.
            .shutdown_timeout(config.server.shutdown_timeout.0.as_secs() + 1)
            .backlog(4096)
            // Response heads are small writes; they must not wait for Nagle's algorithm.
            .tcp_nodelay(true);
    // `server.h2c`: HTTP/1.1 and cleartext HTTP/2 (prior knowledge) told apart by their first bytes.
    let plain = listen_addr(&config.server.listen)?;
    if config.server.frontend == Frontend::Hyper {
        return bind_hyper(gateway, config, plain, workers, handle_signals, data);
    }
    let mut proxy = if config.server.h2c { proxy.bind_auto_h2c(plain) } else { proxy.bind(plain) }.map_err(|e| {
        io::Error::new(e.kind(), format!("cannot listen on {} (server.listen): {e}", config.server.listen))
    })?;
    let mut tls_certificates = None;
    if let Some((resolver, rustls_config, addr)) = tls_setup(&gateway, config)? {
        proxy = proxy
            .bind_rustls_0_23(addr, rustls_config)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr} (server.tls.listen): {e}")))?;
        tls_certificates = Some(resolver);
    }
    if !handle_signals {
        proxy = proxy.disable_signals();
    }
    let (mut proxy_addrs, mut tls_addrs) = (Vec::new(), Vec::new());
    for (addr, scheme) in proxy.addrs_with_scheme() {
        if scheme == "https" { tls_addrs.push(addr) } else { proxy_addrs.push(addr) }
    }
    if let Some(addr) = tls_addrs.first() {
        let _ = gateway.https_port.set(addr.port());
    }
    let (admin, admin_addrs) = admin_server(config, data, handle_signals)?;
    // The listeners that answer ACME's challenges are bound: orders may start.
    if let Some(acme) = &gateway.acme {
        acme.start(gateway.background.handle(), &gateway.metrics);
    }
    Ok(Servers { proxy_addrs, tls_addrs, tls_certificates, admin_addrs, proxy: proxy.run(), admin })
}

/// The HTTPS listener's certificates, rustls configuration and address, when there is one.
fn tls_setup(
    gateway: &Gateway,
    config: &Config,
) -> io::Result<Option<(Arc<SniResolver>, rustls::ServerConfig, SocketAddr)>> {
    let Some(tls) = &config.server.tls else { return Ok(None) };
    let resolver = gateway.tls_certificates.as_ref().map(|c| c.resolver()).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "server.tls: the gateway was started without its certificates")
    })?;
    let client_auth = gateway.tls_client_ca.as_ref().map(|ca| ca.verifier());
    let rustls_config = crate::tls::server_config(
        resolver.clone(),
        tls.min_version == TlsVersion::Tls13,
        client_auth,
        gateway.acme.as_ref().is_some_and(|a| a.answers_on_tls()),
    )
    .map_err(|e| io::Error::other(format!("server.tls: {e}")))?;
    Ok(Some((resolver, rustls_config, listen_addr(&tls.listen)?)))
}

/// The admin listener: bound, running (the returned future), and its addresses.
fn admin_server(
    config: &Config,
    data: web::Data<Gateway>,
    handle_signals: bool,
) -> io::Result<(Server, Vec<SocketAddr>)> {
    let mut admin = HttpServer::new(move || App::new().app_data(data.clone()).configure(admin::routes))
        .workers(1)
        .client_request_timeout(Duration::from_secs(10))
        .shutdown_timeout(config.server.shutdown_timeout.0.as_secs())
        .bind(listen_addr(&config.admin.listen)?)
        .map_err(|e| {
            io::Error::new(e.kind(), format!("cannot listen on {} (admin.listen): {e}", config.admin.listen))
        })?;
    if !handle_signals {
        admin = admin.disable_signals();
    }
    let addrs = admin.addrs();
    Ok((admin.run(), addrs))
}

/// The proxy listener served by the hyper front end (`server.frontend: hyper`): actix-server's
/// workers and accept loop, each connection handed to hyper on the worker that accepted it.
fn bind_hyper(
    gateway: Arc<Gateway>,
    config: &Config,
    plain: SocketAddr,
    workers: usize,
    handle_signals: bool,
    data: web::Data<Gateway>,
) -> io::Result<Servers> {
    let listener = std::net::TcpListener::bind(plain).map_err(|e| {
        io::Error::new(e.kind(), format!("cannot listen on {} (server.listen): {e}", config.server.listen))
    })?;
    let proxy_addrs = vec![listener.local_addr()?];
    let h2c = config.server.h2c;
    let connections = gateway.connections.clone();
    let served = gateway.clone();
    let tls = tls_setup(&gateway, config)?;
    let per_ip = (config.server.max_connections_per_ip > 0).then(|| Arc::new(PerIpConnections::default()));
    let per_ip_tls = per_ip.clone();
    let mut proxy = actix_server::Server::build()
        .workers(workers)
        .backlog(4096)
        .max_concurrent_connections((config.server.max_connections as usize).div_ceil(workers) + 64)
        .shutdown_timeout(config.server.shutdown_timeout.0.as_secs() + 1)
        .listen("proxy", listener, move || {
            let (gateway, connections, per_ip) = (served.clone(), connections.clone(), per_ip.clone());
            actix_service::fn_service(move |tcp: actix_web::rt::net::TcpStream| {
                let gateway = gateway.clone();
                // Counted while open (`rustygate_connections`, the peer's share), as the actix
                // front end does.
                let peer = tcp.peer_addr().ok().map(|a| a.ip());
                let state = ConnectionState::open(&connections, per_ip.as_ref(), peer);
                async move {
                    front_hyper::serve_connection(gateway, tcp, state, h2c).await;
                    Ok::<_, std::convert::Infallible>(())
                }
            })
        })?;
    let (mut tls_addrs, mut tls_certificates) = (Vec::new(), None);
    if let Some((resolver, rustls_config, addr)) = tls {
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr} (server.tls.listen): {e}")))?;
        tls_addrs.push(listener.local_addr()?);
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(rustls_config));
        let (served, connections) = (gateway.clone(), gateway.connections.clone());
        let handshake_timeout = config.server.client_header_timeout.0;
        proxy = proxy.listen("https", listener, move || {
            let (gateway, connections, acceptor) = (served.clone(), connections.clone(), acceptor.clone());
            let per_ip = per_ip_tls.clone();
            actix_service::fn_service(move |tcp: actix_web::rt::net::TcpStream| {
                let (gateway, acceptor) = (gateway.clone(), acceptor.clone());
                let peer = tcp.peer_addr().ok().map(|a| a.ip());
                let state = ConnectionState::open(&connections, per_ip.as_ref(), peer);
                async move {
                    front_hyper::serve_tls_connection(gateway, tcp, state, acceptor, handshake_timeout).await;
                    Ok::<_, std::convert::Infallible>(())
                }
            })
        })?;
        tls_certificates = Some(resolver);
    }
    if let Some(addr) = tls_addrs.first() {
        let _ = gateway.https_port.set(addr.port());
    }
    if !handle_signals {
        proxy = proxy.disable_signals();
    }
    let (admin, admin_addrs) = admin_server(config, data, handle_signals)?;
    if let Some(acme) = &gateway.acme {
        acme.start(gateway.background.handle(), &gateway.metrics);
    }
    Ok(Servers { proxy_addrs, tls_addrs, tls_certificates, admin_addrs, proxy: proxy.run(), admin })
}

/// A listen address, as parsed when the configuration was read.
fn listen_addr(listen: &Parsed<SocketAddr>) -> io::Result<SocketAddr> {
    listen.get().copied().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_owned()))
}
