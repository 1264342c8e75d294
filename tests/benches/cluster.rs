//! Cluster benchmark (run with `cargo bench -p easyrpc-tests --bench cluster`): what a hop
//! over a cluster link costs, measured in one run.
//!
//! Hosts A <- B <- C <- D run in this process on a runtime of their own, each with a module
//! of its own in namespace `peer` (A has `echo`). Printed, each as a ratio taken in this run:
//! - sequential latency of `echo(i)` from our client: a bare websocket echo of a frame of the
//!   same size, a call on A, the same call through B (one hop) and through C (two hops), the
//!   paths taking turns in rounds; p50/p99 and what each hop adds;
//! - calls per second with 4 connections of 16 calls in flight, on A against through B;
//! - how long a change on A takes to reach D, three hops down, by push (median and slowest of
//!   [`CHANGES`]).

use easyrpc::client::EasyRpcProxy;
use easyrpc::cluster::parent::LinkConfig;
use easyrpc::registry::{Registry, RegistrySnapshot};
use easyrpc::server::ServerConfig;
use easyrpc::value::Value;
use easyrpc::wire::{self, Serialization};
use easyrpc_tests::{TestServer, PATH, SECRET};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The host binary's allocator (host/src/main.rs), so the bench measures what ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sequential calls per path and round, and rounds.
const CALLS: usize = 2_000;
const ROUNDS: usize = 3;
/// Connections, calls in flight on each, and how long each throughput run lasts.
const CONNECTIONS: usize = 4;
const IN_FLIGHT: usize = 16;
const THROUGHPUT_RUN: Duration = Duration::from_secs(2);
/// Changes timed on their way three hops down.
const CHANGES: usize = 20;

/// A host serving `module` in namespace `peer`, linked to `parent`'s `peer` if given.
async fn host(module: &str, parent: Option<&TestServer>) -> TestServer {
    let mut snapshot = RegistrySnapshot::default();
    snapshot.add_module("peer", &easyrpc_tests::load(module));
    let mut config = ServerConfig::single(PATH, SECRET);
    if let Some(parent) = parent {
        config.links.push(LinkConfig {
            url: parent.url(),
            secret: SECRET.into(),
            namespace: "peer".into(),
            ca_file: None,
        });
    }
    TestServer::with_config(snapshot, config).await
}

async fn connect_when_listed(server: &TestServer, function: &str) -> EasyRpcProxy {
    let proxy = EasyRpcProxy::connect(&server.url(), SECRET, "peer").await.expect("connects");
    let started = Instant::now();
    while proxy.function(function).is_none() {
        assert!(started.elapsed() < Duration::from_secs(10), "{function} never reached {}", server.url());
        tokio::time::sleep(Duration::from_millis(10)).await;
        proxy.refresh().await.expect("lists");
    }
    proxy
}

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e6;
    (at(0.5), at(0.99))
}

/// Latencies of `CALLS` sequential `echo(i)` calls.
async fn echo_calls(proxy: &EasyRpcProxy, samples: &mut Vec<Duration>) {
    for i in 0..CALLS {
        let started = Instant::now();
        let echoed = proxy.call("echo", vec![Value::Int(i as i128)], vec![]).await.expect("echo");
        samples.push(started.elapsed());
        assert_eq!(echoed, Value::Int(i as i128));
    }
}

/// Latencies of `CALLS` round trips of a frame the size of an `echo(i)` request.
async fn raw_echoes(addr: std::net::SocketAddr, samples: &mut Vec<Duration>) {
    let mut ws = easyrpc_tests::connect_like_our_client(&format!("ws://{addr}/")).await;
    let request = wire::call_object("echo", vec![Value::Int(0)], vec![]);
    let wire::Frame::Text(frame) =
        wire::request(Serialization::Json, "00000000-0000-0000-0000-000000000000", &request, true)
    else {
        unreachable!("json is text")
    };
    for _ in 0..CALLS {
        let started = Instant::now();
        ws.send(tokio_tungstenite::tungstenite::Message::text(frame.clone())).await.expect("sent");
        ws.next().await.expect("open").expect("echoed");
        samples.push(started.elapsed());
    }
}

/// Calls per second of `CONNECTIONS` x `IN_FLIGHT` loops calling `echo` on `server`.
async fn throughput(server: &TestServer) -> f64 {
    let mut proxies = Vec::new();
    for _ in 0..CONNECTIONS {
        proxies.push(Arc::new(connect_when_listed(server, "echo").await));
    }
    let until = Instant::now() + THROUGHPUT_RUN;
    let mut loops = tokio::task::JoinSet::new();
    for proxy in &proxies {
        for _ in 0..IN_FLIGHT {
            let proxy = proxy.clone();
            loops.spawn(async move {
                let mut calls = 0u64;
                while Instant::now() < until {
                    proxy.call("echo", vec![Value::Int(1)], vec![]).await.expect("echo");
                    calls += 1;
                }
                calls
            });
        }
    }
    let started = Instant::now();
    let mut calls = 0;
    while let Some(done) = loops.join_next().await {
        calls += done.expect("joins");
    }
    calls as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let hosts = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio");
    let client = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
    let (a, b, c, d, echo) = hosts.block_on(async {
        let a = host("peer", None).await;
        let b = host("math", Some(&a)).await;
        let c = host("swap_v1", Some(&b)).await;
        let d = host("hostile", Some(&c)).await;
        (a, b, c, d, easyrpc_tests::websocket_echo_server().await)
    });

    client.block_on(async {
        let on_a = connect_when_listed(&a, "echo").await;
        let via_b = connect_when_listed(&b, "echo").await;
        let via_c = connect_when_listed(&c, "echo").await;
        let mut samples: [Vec<Duration>; 4] = Default::default();
        for _ in 0..ROUNDS {
            raw_echoes(echo, &mut samples[0]).await;
            echo_calls(&on_a, &mut samples[1]).await;
            echo_calls(&via_b, &mut samples[2]).await;
            echo_calls(&via_c, &mut samples[3]).await;
        }
        let [raw, direct, one_hop, two_hops] = samples.map(percentiles);
        println!("== sequential echo(i), {ROUNDS} rounds of {CALLS} calls per path, the paths taking turns");
        println!("raw websocket echo     p50 {:>8.1} µs   p99 {:>8.1} µs", raw.0, raw.1);
        println!("call on A (direct)     p50 {:>8.1} µs   p99 {:>8.1} µs", direct.0, direct.1);
        println!("through B (1 hop)      p50 {:>8.1} µs   p99 {:>8.1} µs", one_hop.0, one_hop.1);
        println!("through C (2 hops)     p50 {:>8.1} µs   p99 {:>8.1} µs", two_hops.0, two_hops.1);
        println!(
            "added per hop          p50 {:>+8.1} µs   p99 {:>+8.1} µs   (first hop; the second adds p50 {:+.1} µs)",
            one_hop.0 - direct.0,
            one_hop.1 - direct.1,
            two_hops.0 - one_hop.0
        );
        println!("direct over the echo   p50 {:>+8.1} µs", direct.0 - raw.0);

        let direct_rate = throughput(&a).await;
        let hop_rate = throughput(&b).await;
        println!("== {CONNECTIONS} connections x {IN_FLIGHT} calls in flight, echo, {THROUGHPUT_RUN:?} each");
        println!(
            "on A {direct_rate:>9.0} calls/s   through B {hop_rate:>9.0} calls/s   ({:.0}% of direct)",
            hop_rate / direct_rate * 100.0
        );
    });

    // Push: a change on A (swap_v2's `extra` added, then taken away again) reaching D.
    let mut took = Vec::with_capacity(CHANGES);
    hosts.block_on(async {
        for i in 0..CHANGES {
            let with_extra = i % 2 == 0;
            let mut snapshot = RegistrySnapshot::default();
            snapshot.add_module("peer", &easyrpc_tests::load("peer"));
            if with_extra {
                snapshot.add_module("peer", &easyrpc_tests::load("swap_v2"));
            }
            let started = Instant::now();
            a.registry.publish(snapshot);
            while offers(&d.registry, "extra") != with_extra {
                assert!(started.elapsed() < Duration::from_secs(5), "the change never reached D");
                tokio::task::yield_now().await;
            }
            took.push(started.elapsed());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    took.sort();
    println!(
        "== a change on A reaching D (three hops) by push: median {:?}, slowest {:?} of {CHANGES}",
        took[CHANGES / 2],
        took[CHANGES - 1]
    );
    hosts.block_on(async {
        for host in [d, c, b, a] {
            host.stop().await;
        }
    });
}

fn offers(registry: &Registry, function: &str) -> bool {
    registry.snapshot().resolve("peer", function).is_some()
}
