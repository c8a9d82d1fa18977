//! HTTP load generator for `bench/http.sh`: N keep-alive connections (one thread each) against a
//! running `flowbot serve` on loopback, for a fixed time, then requests/s and latency
//! percentiles as one JSON line.
//!
//! ```text
//! cargo run --release -p flowbot-e2e --example http_load -- BASE_URL[,BASE_URL...] start|get [CONNECTIONS] [SECONDS]
//! ```
//! With several base URLs (the nodes of a cluster), connection `i` talks to URL `i mod n`.
//! `start` posts the order flow (`order_processing`, amount 20000: it runs to its first wait, the
//! review task); `get` first starts one instance per connection, then reads it over and over.

use serde_json::json;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: http_load BASE_URL[,BASE_URL...] start|get [CONNECTIONS] [SECONDS]";
    let bases: Vec<String> = args
        .get(1)
        .expect(usage)
        .split(',')
        .map(|base| base.trim_end_matches('/').to_string())
        .collect();
    let mode = args.get(2).expect(usage).clone();
    assert!(mode == "start" || mode == "get", "{usage}");
    let connections: usize = args.get(3).map_or(32, |n| n.parse().expect(usage));
    let seconds: f64 = args.get(4).map_or(10.0, |n| n.parse().expect(usage));
    let duration = Duration::from_secs_f64(seconds);

    let threads: Vec<_> = (0..connections)
        .map(|connection| {
            let (base, mode) = (bases[connection % bases.len()].clone(), mode.clone());
            std::thread::spawn(move || worker(&base, &mode, connection, duration))
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    let started = Instant::now();
    for thread in threads {
        let (mut samples, failed) = thread.join().expect("a worker");
        latencies.append(&mut samples);
        errors += failed;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d: &Duration| d.as_secs_f64() * 1000.0)
    };
    let report = json!({
        "mode": mode,
        "connections": connections,
        "seconds": elapsed,
        "requests": latencies.len(),
        "errors": errors,
        "requests_per_second": latencies.len() as f64 / elapsed,
        "p50_ms": percentile(0.50),
        "p99_ms": percentile(0.99),
        "max_ms": percentile(1.0),
    });
    println!("{report}");
}

/// One connection's loop: latencies of successful requests and the count of failed ones.
fn worker(base: &str, mode: &str, connection: usize, duration: Duration) -> (Vec<Duration>, usize) {
    let agent = ureq::AgentBuilder::new()
        .max_idle_connections_per_host(1)
        .timeout(Duration::from_secs(30))
        .build();
    let start = |n: usize| {
        let order = json!({"process": "order_processing", "variables": {
            "order_id": format!("SO-{connection}-{n}"), "customer": format!("c{connection}"),
            "amount": 20000}});
        agent
            .post(&format!("{base}/api/v1/instances"))
            .set("Content-Type", "application/json")
            .send_string(&order.to_string())
            .ok()
    };
    let instance = if mode == "get" {
        let view: serde_json::Value = start(0)
            .expect("a first instance")
            .into_json()
            .expect("an instance view");
        Some(format!(
            "{base}/api/v1/instances/{}",
            view["id"].as_str().expect("an id")
        ))
    } else {
        None
    };
    let mut latencies = Vec::new();
    let mut errors = 0;
    let began = Instant::now();
    let mut n = 0;
    while began.elapsed() < duration {
        n += 1;
        let sent = Instant::now();
        let outcome = match &instance {
            Some(url) => agent.get(url).call().ok(),
            None => start(n),
        };
        match outcome.and_then(|response| response.into_string().ok()) {
            Some(_) => latencies.push(sent.elapsed()),
            None => errors += 1,
        }
    }
    (latencies, errors)
}
