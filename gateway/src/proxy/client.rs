//! The forwarding client: awc, one per actix worker thread (DESIGN.md explains the measured
//! choice). Each worker keeps its own connection pool, so nothing is shared or woken across
//! threads. Clients are created lazily per connect timeout (a connector setting in awc).
//! Redirects are never followed, responses never decompressed, no default headers are added,
//! and upstream sockets get `TCP_NODELAY`.

use std::{cell::RefCell, collections::HashMap, time::Duration};

use actix_tls::connect::{ConnectError, ConnectInfo, Connector as TcpConnector, Resolver};
use actix_web::http::Uri;
use awc::{Client, Connector};

/// How long an idle pooled upstream connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(60);
/// The longest an upstream connection is reused before it is replaced.
const POOL_LIFETIME: Duration = Duration::from_secs(300);

thread_local! {
    static CLIENTS: RefCell<HashMap<Duration, Client>> = RefCell::new(HashMap::new());
}

/// The calling worker's client for the given connect timeout.
pub fn for_worker(connect_timeout: Duration) -> Client {
    CLIENTS
        .with(|clients| clients.borrow_mut().entry(connect_timeout).or_insert_with(|| build(connect_timeout)).clone())
}

fn build(connect_timeout: Duration) -> Client {
    let tcp = TcpConnector::new(Resolver::default()).service();
    let nodelay = actix_service::fn_service(move |info: ConnectInfo<Uri>| {
        let tcp = tcp.clone();
        async move {
            let conn = actix_service::Service::call(&tcp, info).await?;
            // Small request/response heads must not wait for Nagle's algorithm.
            let _ = conn.io_ref().set_nodelay(true);
            Ok::<_, ConnectError>(conn)
        }
    });
    let connector = Connector::new()
        .connector(nodelay)
        .timeout(connect_timeout)
        .limit(0)
        .conn_keep_alive(POOL_IDLE)
        .conn_lifetime(POOL_LIFETIME);
    Client::builder()
        .connector(connector)
        .disable_redirects()
        .no_default_headers()
        // Timeouts are the pipeline's (per attempt), not the client's 5 s default.
        .disable_timeout()
        .finish()
}
