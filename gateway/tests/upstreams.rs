//! Balancing and active health over real sockets: least connections steers away from a slow
//! backend, header hashing keeps a user on one backend, health checks take a failing or killed
//! backend out of rotation within two intervals and bring it back, and an upstream with no
//! healthy backend answers 503 at once without touching any backend.

mod common;

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use common::*;
use mock_backends::MockOptions;
use serde_json::Value;

fn slow(name: &str, latency_ms: u64) -> MockServer {
    MockServer::start_with(MockOptions {
        name: name.into(),
        latency: Duration::from_millis(latency_ms),
        workers: 2,
        ..Default::default()
    })
    .unwrap()
}

#[tokio::test]
async fn least_connections_sends_new_requests_away_from_a_slow_backend() {
    let (a, b) = (slow("slow", 300), MockServer::start("fast"));
    let gw = gateway(
        "upstreams:\n  u: { strategy: least_connections, backends: [ { url: \"{b0}\" }, { url: \"{b1}\" } ] }\nroutes:\n  - { path: /, upstream: u }\n",
        &[&a, &b],
    );
    let c = client();
    // 16 clients, each sending requests one after the other for ~1.5 s.
    let deadline = Instant::now() + Duration::from_millis(1500);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (c, url) = (c.clone(), gw.url("/echo"));
            tokio::spawn(async move {
                let mut n = 0;
                while Instant::now() < deadline {
                    assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    let slow_share = a.hits() as f64 / total as f64;
    eprintln!("least_connections: {total} requests, slow backend took {:.1}%", slow_share * 100.0);
    // Round robin would give the slow backend half; least connections only what it can absorb.
    assert!(slow_share < 0.2, "slow backend took {:.1}% of {total}", slow_share * 100.0);
}

#[tokio::test]
async fn header_hashing_keeps_each_user_on_one_backend() {
    let backends: Vec<MockServer> = (0..4).map(|i| MockServer::start(&format!("b{i}"))).collect();
    let refs: Vec<&MockServer> = backends.iter().collect();
    let gw = gateway(
        "upstreams:\n  u:\n    strategy: header_hash\n    hash_header: X-User\n    backends: [ { url: \"{b0}\" }, { url: \"{b1}\" }, { url: \"{b2}\" }, { url: \"{b3}\" } ]\nroutes:\n  - { path: /, upstream: u }\n",
        &refs,
    );
    let c = client();
    let mut seen: HashMap<String, String> = HashMap::new();
    for round in 0..3 {
        for user in 0..40 {
            let echo: Value = c
                .get(gw.url("/echo"))
                .header("x-user", format!("user-{user}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let backend = echo["backend"].as_str().unwrap().to_owned();
            let first = seen.entry(format!("user-{user}")).or_insert_with(|| backend.clone());
            assert_eq!(*first, backend, "user-{user} moved in round {round}");
        }
    }
    let distinct: std::collections::HashSet<&String> = seen.values().collect();
    assert!(distinct.len() >= 3, "40 users should spread over the backends: {distinct:?}");
}

async fn admin_backends(gw: &TestGateway) -> Vec<Value> {
    let v: Value =
        client().get(gw.admin_url("/admin/upstreams")).bearer_auth("t").send().await.unwrap().json().await.unwrap();
    v["upstreams"][0]["backends"].as_array().unwrap().clone()
}

const HEALTH: &str = "admin: { token: t }\nupstreams:\n  u:\n    backends: [ { url: \"{b0}\" }, { url: \"{b1}\" }, { url: \"{b2}\" } ]\n    health_check: { path: /health, interval: 300ms, timeout: 200ms, unhealthy_threshold: 2, healthy_threshold: 1, jitter: 0s }\nroutes:\n  - { path: /, upstream: u }\n";

#[tokio::test]
async fn a_failing_backend_leaves_rotation_within_two_intervals_and_comes_back() {
    let bs: Vec<MockServer> = (0..3).map(|i| MockServer::start(&format!("b{i}"))).collect();
    let gw = gateway(HEALTH, &[&bs[0], &bs[1], &bs[2]]);
    let label = bs[1].url();
    let up = async |gw: &TestGateway| {
        metric(&scrape(gw).await, "rustygate_backend_up", &[("upstream", "u"), ("backend", &label)])
    };
    assert_eq!(up(&gw).await, 1.0);
    bs[1].set_healthy(false);
    // Two failed probes at 300 ms intervals: out within ~600 ms, well inside 2 intervals + slack.
    let took = wait_until("b1 marked down", Duration::from_millis(1500), async || up(&gw).await == 0.0).await;
    eprintln!("marked down after {took:?}");
    let b1 = admin_backends(&gw).await.into_iter().find(|b| b["url"] == bs[1].url()).unwrap();
    assert_eq!(b1["healthy"], false);
    assert!(b1["last_error"].as_str().unwrap().contains("503"), "{b1}");
    let before = bs[1].hits();
    for _ in 0..30 {
        assert_eq!(client().get(gw.url("/echo")).send().await.unwrap().status(), 200);
    }
    assert_eq!(bs[1].hits(), before, "no request goes to a backend out of rotation");
    bs[1].set_healthy(true);
    let took = wait_until("b1 back in rotation", Duration::from_millis(1000), async || up(&gw).await == 1.0).await;
    eprintln!("back after {took:?}");
    for _ in 0..30 {
        client().get(gw.url("/echo")).send().await.unwrap();
    }
    assert!(bs[1].hits() > before, "b1 takes traffic again");
}

#[tokio::test]
async fn a_killed_backend_is_marked_down() {
    let bs: Vec<MockServer> = (0..3).map(|i| MockServer::start(&format!("b{i}"))).collect();
    let gw = gateway(HEALTH, &[&bs[0], &bs[1], &bs[2]]);
    let label = bs[2].url();
    let mut bs = bs;
    bs.pop().unwrap().stop();
    wait_until("the killed backend marked down", Duration::from_millis(1500), async || {
        metric(&scrape(&gw).await, "rustygate_backend_up", &[("backend", &label)]) == 0.0
    })
    .await;
    for _ in 0..20 {
        assert_eq!(client().get(gw.url("/echo")).send().await.unwrap().status(), 200, "only live backends chosen");
    }
}

#[tokio::test]
async fn with_no_healthy_backend_the_answer_is_an_immediate_503() {
    let bs: Vec<MockServer> = (0..2).map(|i| slow(&format!("b{i}"), 0)).collect();
    let gw = gateway(
        "admin: { token: t }\nupstreams:\n  u:\n    timeout: 10s\n    backends: [ { url: \"{b0}\" }, { url: \"{b1}\" } ]\n    health_check: { interval: 200ms, timeout: 100ms, unhealthy_threshold: 1, jitter: 0s }\nroutes:\n  - { path: /, upstream: u }\n",
        &[&bs[0], &bs[1]],
    );
    for b in &bs {
        b.set_healthy(false);
    }
    wait_until("every backend down", Duration::from_millis(1500), async || {
        admin_backends(&gw).await.iter().all(|b| b["healthy"] == false)
    })
    .await;
    let hits: u64 = bs.iter().map(MockServer::hits).sum();
    let start = Instant::now();
    let resp = client().get(gw.url("/echo")).send().await.unwrap();
    let took = start.elapsed();
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "no_healthy_upstream");
    assert!(took < Duration::from_secs(1), "503 took {took:?}");
    assert_eq!(bs.iter().map(MockServer::hits).sum::<u64>(), hits, "no backend saw the request");
}
