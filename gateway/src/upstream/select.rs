//! Choosing a backend: one function, [`UpstreamPool::select`], for the first attempt and for
//! retries, keeping the pool's strategy. Round robin follows a schedule precomputed at compile
//! time (smooth weighted round robin, as NGINX does it), so a pick is one atomic increment and
//! weights interleave instead of bursting; a retry takes the next backend in the schedule that
//! is not excluded. Least connections compares two backends drawn at random (power of two
//! choices). `ip_hash` / `header_hash` walk the consistent-hash ring built at compile time
//! ([`super::ring`]): a retry takes the next usable point.

use std::{
    net::IpAddr,
    sync::{Arc, atomic::Ordering},
};

use rand::Rng;

use super::{
    pool::{Backend, UpstreamPool},
    ring,
};
use crate::{
    config::Strategy,
    http_types::{HeaderMap, HeaderValue},
};

/// What a request's picks are keyed by (the same for every attempt of the request).
#[derive(Debug, Clone)]
pub enum SelectionKey {
    /// Least connections, first pick: power of two choices.
    Unkeyed,
    /// Least connections, a retry: the least loaded backend not excluded (on a tie, the first
    /// listed), so retries spread by load rather than by chance.
    LeastLoaded,
    /// Round robin: where in the schedule the request's last pick was (none yet: the pool's
    /// cursor decides), so that a retry takes the next backend in the schedule without moving
    /// the rotation other requests see.
    Schedule(Option<usize>),
    /// The client's address (`ip_hash`, or `header_hash` without the header).
    Ip(IpAddr),
    /// The hashed header's value (`header_hash`).
    Header(HeaderValue),
}

impl UpstreamPool {
    /// The key of a request's picks under this pool's strategy.
    pub fn selection_key(&self, client_ip: IpAddr, headers: &HeaderMap) -> SelectionKey {
        match self.strategy {
            Strategy::RoundRobin => SelectionKey::Schedule(None),
            Strategy::LeastConnections => SelectionKey::Unkeyed,
            Strategy::IpHash => SelectionKey::Ip(client_ip),
            Strategy::HeaderHash => match self.hash_header.as_ref().and_then(|h| headers.get(h)) {
                Some(value) => SelectionKey::Header(value.clone()),
                None => SelectionKey::Ip(client_ip),
            },
        }
    }

    /// Picks the backend for the next attempt among those in rotation that `accept` takes (a
    /// retry excludes the backends already tried), or `None` if there is none (503 at once).
    pub fn select(&self, key: &mut SelectionKey, accept: impl Fn(&Backend) -> bool) -> Option<Arc<Backend>> {
        let usable = |b: &Backend| b.in_rotation() && accept(b);
        let chosen = match (self.strategy, key) {
            (Strategy::IpHash | Strategy::HeaderHash, SelectionKey::Header(value)) => {
                self.ring.lookup(value.as_bytes(), |i| usable(&self.backends[i]))
            }
            (Strategy::IpHash | Strategy::HeaderHash, SelectionKey::Ip(ip)) => {
                self.ring.lookup(ring::key_of_ip(*ip).as_ref(), |i| usable(&self.backends[i]))
            }
            (Strategy::RoundRobin, SelectionKey::Schedule(position)) => self.round_robin(position, usable),
            (_, SelectionKey::LeastLoaded) => self.least_loaded(usable),
            (_, key) => {
                // Least connections: power of two choices first, the least loaded on a retry.
                *key = SelectionKey::LeastLoaded;
                self.least_connections(usable)
            }
        };
        chosen.map(|i| self.backends[i].clone())
    }

    /// The next usable backend in the schedule: from the pool's cursor for a request's first
    /// pick, from its last pick for a retry; after one full cycle there is none.
    fn round_robin(&self, position: &mut Option<usize>, usable: impl Fn(&Backend) -> bool) -> Option<usize> {
        let len = self.schedule.len();
        for step in 1..=len {
            let at = match *position {
                Some(last) => (last + step) % len,
                None => self.cursor.fetch_add(1, Ordering::Relaxed) % len,
            };
            if usable(&self.backends[self.schedule[at]]) {
                *position = Some(at);
                return Some(self.schedule[at]);
            }
        }
        None
    }

    /// Power of two choices: of two distinct backends drawn at random, the usable one with fewer
    /// in-flight requests per unit of weight; if neither is usable, the least loaded of those
    /// that are.
    fn least_connections(&self, usable: impl Fn(&Backend) -> bool) -> Option<usize> {
        let n = self.backends.len();
        let load = |i: usize| {
            let b = &self.backends[i];
            b.in_flight.load(Ordering::Relaxed) as f64 / f64::from(b.weight)
        };
        if n >= 2 {
            let mut rng = rand::rng();
            let a = rng.random_range(0..n);
            let b = (a + rng.random_range(1..n)) % n;
            match (usable(&self.backends[a]), usable(&self.backends[b])) {
                (true, true) => return Some(if load(b) < load(a) { b } else { a }),
                (true, false) => return Some(a),
                (false, true) => return Some(b),
                (false, false) => {}
            }
        }
        self.least_loaded(usable)
    }

    /// The usable backend with the fewest in-flight requests per unit of weight (on a tie, the
    /// first listed).
    fn least_loaded(&self, usable: impl Fn(&Backend) -> bool) -> Option<usize> {
        let load = |i: usize| {
            let b = &self.backends[i];
            b.in_flight.load(Ordering::Relaxed) as f64 / f64::from(b.weight)
        };
        (0..self.backends.len()).filter(|&i| usable(&self.backends[i])).min_by(|&a, &b| load(a).total_cmp(&load(b)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::{BackendConfig, UpstreamConfig},
        http_types::HeaderName,
    };

    fn pick(pool: &UpstreamPool, ip: IpAddr, headers: &HeaderMap) -> Option<Arc<Backend>> {
        pool.select(&mut pool.selection_key(ip, headers), |_| true)
    }

    #[test]
    fn pick_cycles_through_the_schedule() {
        let cfg = UpstreamConfig {
            backends: ["http://a:1", "http://b:2/base/"]
                .iter()
                .map(|u| BackendConfig { url: (*u).into(), weight: 1 })
                .collect(),
            ..Default::default()
        };
        let pool = UpstreamPool::new("u", &cfg, None).unwrap();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let h = HeaderMap::new();
        let picks: Vec<String> = (0..4).map(|_| pick(&pool, ip, &h).unwrap().authority.to_string()).collect();
        assert_eq!(picks, ["a:1", "b:2", "a:1", "b:2"]);
        assert_eq!(pool.backends[1].base_path, "/base");
        // Out of rotation: skipped; none left: no pick.
        pool.backends[0].set_healthy(false);
        let picks: Vec<String> = (0..3).map(|_| pick(&pool, ip, &h).unwrap().authority.to_string()).collect();
        assert_eq!(picks, ["b:2", "b:2", "b:2"]);
        pool.backends[1].set_healthy(false);
        assert!(pick(&pool, ip, &h).is_none());
    }

    fn pool(strategy: Strategy, n: usize) -> UpstreamPool {
        let cfg = UpstreamConfig {
            strategy,
            hash_header: Some("x-user".into()),
            backends: (0..n).map(|i| BackendConfig { url: format!("http://b{i}:80").into(), weight: 1 }).collect(),
            ..Default::default()
        };
        UpstreamPool::new("u", &cfg, None).unwrap()
    }

    #[test]
    fn least_connections_avoids_the_busy_backend() {
        let p = pool(Strategy::LeastConnections, 3);
        p.backends[0].in_flight.store(50, Ordering::Relaxed);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let h = HeaderMap::new();
        let busy = (0..1000).filter(|_| std::ptr::eq(&*pick(&p, ip, &h).unwrap(), &*p.backends[0])).count();
        // The two draws are distinct backends, so b0 always meets an idle one and loses.
        assert_eq!(busy, 0);
        p.backends[1].set_healthy(false);
        p.backends[2].set_healthy(false);
        assert!(std::ptr::eq(&*pick(&p, ip, &h).unwrap(), &*p.backends[0]), "the only one left");
    }

    #[test]
    fn hashing_is_sticky_and_skips_backends_out_of_rotation() {
        let p = pool(Strategy::HeaderHash, 4);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(HeaderName::from_static("x-user"), HeaderValue::from_static("alice"));
        let first = pick(&p, ip, &h).unwrap().label.clone();
        assert!((0..20).all(|_| pick(&p, ip, &h).unwrap().label == first));
        let i = p.backends.iter().position(|b| b.label == first).unwrap();
        p.backends[i].set_healthy(false);
        let moved = pick(&p, ip, &h).unwrap().label.clone();
        assert_ne!(moved, first);
        p.backends[i].set_healthy(true);
        assert_eq!(pick(&p, ip, &h).unwrap().label, first, "back when it returns");
    }

    #[test]
    fn a_retry_keeps_the_strategy_and_skips_what_was_tried() {
        // Round robin: the next backend in the schedule that was not tried.
        let p = pool(Strategy::RoundRobin, 3);
        let mut key = p.selection_key("10.0.0.1".parse().unwrap(), &HeaderMap::new());
        let first = p.select(&mut key, |_| true).unwrap();
        let tried = [first.clone()];
        let not_tried = |b: &Backend| !tried.iter().any(|t| std::ptr::eq(&**t, b));
        p.backends[0].in_flight.store(9, Ordering::Relaxed);
        p.backends[2].in_flight.store(0, Ordering::Relaxed);
        let second = p.select(&mut key, not_tried).unwrap();
        assert_eq!(second.label, p.backends[1].label, "the schedule's next, not the least loaded");
        let third = p.select(&mut key, |b| !std::ptr::eq(b, &*first) && !std::ptr::eq(b, &*second)).unwrap();
        assert_eq!(third.label, p.backends[2].label);
        assert!(p.select(&mut key, |_| false).is_none());
        // Retries did not move the rotation: the next request starts where the first left it.
        let next = p.select(&mut p.selection_key("10.0.0.2".parse().unwrap(), &HeaderMap::new()), |_| true).unwrap();
        assert_eq!(next.label, p.backends[1].label);
        // Least connections: a retry goes to the least loaded of the others.
        let p = pool(Strategy::LeastConnections, 3);
        p.backends[1].in_flight.store(4, Ordering::Relaxed);
        let mut key = p.selection_key("10.0.0.1".parse().unwrap(), &HeaderMap::new());
        let first = p.select(&mut key, |_| true).unwrap();
        let retry = p.select(&mut key, |b| !std::ptr::eq(b, &*first)).unwrap();
        let idle_other = p.backends.iter().find(|b| b.label != first.label && b.in_flight.load(Ordering::Relaxed) == 0);
        assert_eq!(Some(&retry.label), idle_other.map(|b| &b.label), "the idle one, not the busy one");
        // Hashing: the next usable point on the ring, the same for every request of the key.
        let p = pool(Strategy::HeaderHash, 4);
        let mut h = HeaderMap::new();
        h.insert(HeaderName::from_static("x-user"), HeaderValue::from_static("bob"));
        let mut key = p.selection_key("10.0.0.1".parse().unwrap(), &h);
        let first = p.select(&mut key, |_| true).unwrap();
        let retry = p.select(&mut key, |b| !std::ptr::eq(b, &*first)).unwrap();
        assert_ne!(retry.label, first.label);
        assert!((0..10).all(|_| p.select(&mut key, |b| !std::ptr::eq(b, &*first)).unwrap().label == retry.label));
    }
}
