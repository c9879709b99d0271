//! What a front end keeps about one client connection: its place in the gateway's connection
//! counts (`server.max_connections`, `max_connections_per_ip`), what it negotiated over TLS, and
//! whether a request on it asked to close it. Front-end neutral: the actix front end keeps it in
//! the connection's data, the hyper one in its connection task.

use std::{
    cell::Cell,
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use crate::{runtime::Runtime, tls::ConnectionTls};

/// Per-connection state, made when a connection is accepted and dropped with it.
pub struct ConnectionState {
    /// A request on this connection asked for `Connection: close` (or was HTTP/1.0 without
    /// keep-alive): requests pipelined after it are not served. actix parses them anyway.
    pub(super) closing: Cell<bool>,
    /// The gateway's count of open connections, decremented on drop.
    open: Arc<AtomicUsize>,
    /// This connection's number among the open ones when it was accepted.
    rank: usize,
    /// The peer's address and its count of open connections, decremented on drop.
    per_ip: Option<(IpAddr, Arc<PerIpConnections>)>,
    /// This connection's number among its peer's open ones when it was accepted.
    ip_rank: usize,
    /// What the connection negotiated, when it came over TLS.
    pub(super) tls: Option<Arc<ConnectionTls>>,
}

/// Open client connections per peer address (`server.max_connections_per_ip`).
#[derive(Debug, Default)]
pub struct PerIpConnections(Mutex<HashMap<IpAddr, usize>>);

impl ConnectionState {
    /// Counts a new connection from `peer` (per peer only when `per_ip` counts are kept).
    pub fn open(counter: &Arc<AtomicUsize>, per_ip: Option<&Arc<PerIpConnections>>, peer: Option<IpAddr>) -> Self {
        let rank = counter.fetch_add(1, Ordering::Relaxed) + 1;
        let per_ip = per_ip.zip(peer).map(|(counts, ip)| (ip, counts.clone()));
        let ip_rank = per_ip.as_ref().map_or(0, |(ip, counts)| {
            let mut counts = counts.0.lock().unwrap_or_else(|e| e.into_inner());
            let n = counts.entry(*ip).or_insert(0);
            *n += 1;
            *n
        });
        Self { closing: Cell::default(), open: counter.clone(), rank, per_ip, ip_rank, tls: None }
    }

    /// The connection came over TLS and negotiated this.
    pub fn with_tls(mut self, tls: ConnectionTls) -> Self {
        self.tls = Some(Arc::new(tls));
        self
    }

    /// Whether this connection is over `server.max_connections` or its peer's share
    /// (`max_connections_per_ip`): its requests are refused with a 503 that closes it.
    pub fn over_limits(&self, rt: &Runtime) -> bool {
        self.rank > rt.max_connections || (rt.max_connections_per_ip > 0 && self.ip_rank > rt.max_connections_per_ip)
    }
}

impl Drop for ConnectionState {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        if let Some((ip, per_ip)) = &self.per_ip {
            let mut counts = per_ip.0.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = counts.get_mut(ip) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(ip);
                }
            }
        }
    }
}
