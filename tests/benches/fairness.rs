//! Fairness benchmark (run with `cargo bench -p easyrpc-tests --bench fairness`): a
//! well-behaved tenant's call latency alone, then while a hostile tenant keeps the host busy
//! with infinite loops and memory bombs, measured in one run. Prints p50/p99 and the ratios.

use easyrpc::client::EasyRpcProxy;
use easyrpc::value::Value;
use easyrpc_tests::{serve_config, SECRET};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The host binary's allocator (host/src/main.rs), so the bench measures what ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CALLS: usize = 3_000;
const HOSTILE_CONNECTIONS: usize = 8;

const CONFIG: &str = r#"
[[namespace]]
name = "good"

[[namespace]]
name = "bad"
call_deadline_ms = 1000
memory_mib = 64

[[module]]
file = "{peer}"
namespaces = ["good"]

[[module]]
file = "{hostile}"
namespaces = ["bad"]
"#;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn measure(good: &EasyRpcProxy) -> (Duration, Duration) {
    let mut samples = Vec::with_capacity(CALLS);
    for i in 0..CALLS {
        let t = Instant::now();
        let r = good.call("add", vec![Value::Int(i as i128)], vec![]).await.expect("good call");
        samples.push(t.elapsed());
        assert_eq!(r, Value::Int(i as i128 + 2));
    }
    samples.sort();
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio");
    rt.block_on(async {
        let (server, _) = serve_config(CONFIG).await;
        let good = EasyRpcProxy::connect(&server.url(), SECRET, "good").await.expect("good tenant");
        measure(&good).await; // warm-up
        let (alone_p50, alone_p99) = measure(&good).await;

        let stop = Arc::new(AtomicBool::new(false));
        let hostile_calls = Arc::new(AtomicUsize::new(0));
        let mut attackers = Vec::new();
        for i in 0..HOSTILE_CONNECTIONS {
            let url = server.url();
            let stop = stop.clone();
            let count = hostile_calls.clone();
            attackers.push(tokio::spawn(async move {
                let bad = EasyRpcProxy::connect(&url, SECRET, "bad").await.expect("bad tenant");
                let name = if i % 2 == 0 { "spin" } else { "memory_bomb" };
                while !stop.load(Ordering::Relaxed) {
                    let _ = bad.call(name, vec![], vec![]).await;
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (busy_p50, busy_p99) = measure(&good).await;
        stop.store(true, Ordering::Relaxed);
        for a in attackers {
            let _ = a.await;
        }
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!("== well-behaved tenant: {CALLS} sequential calls of add over a websocket");
        println!("alone                         p50 {:>8.1} µs   p99 {:>8.1} µs", us(alone_p50), us(alone_p99));
        println!(
            "with {HOSTILE_CONNECTIONS} hostile connections    p50 {:>8.1} µs   p99 {:>8.1} µs   ({} hostile calls ended meanwhile)",
            us(busy_p50),
            us(busy_p99),
            hostile_calls.load(Ordering::Relaxed)
        );
        println!("ratio under attack / alone     p50 {:.2}x   p99 {:.2}x   (goal: p99 <= 2x)", us(busy_p50) / us(alone_p50), us(busy_p99) / us(alone_p99));
        server.stop().await;
    });
}
