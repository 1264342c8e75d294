//! 10,000 generators opened and abandoned: the host's memory returns to its baseline and it
//! keeps serving. It runs alone in a process of its own, so that other tests' allocations do
//! not blur the process's resident size.

use easyrpc::client::EasyRpcProxy;
use easyrpc::runtime::CallLimits;
use easyrpc::server::ServerConfig;
use easyrpc::value::Value;
use easyrpc_tests::{TestServer, SECRET};
use futures_util::StreamExt;
use std::time::Duration;

async fn server(limits: CallLimits, tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
    TestServer::start_with(&[("peer", &["peer"]), ("hostile", &["hostile"])], limits, tweak).await
}

/// Resident set size of this process in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("linux /proc");
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("statm rss");
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_abandoned_generators_give_their_memory_back() {
    easyrpc_tests::alone_in_process!(ten_thousand_abandoned_generators_give_their_memory_back);
    let server = server(CallLimits::default(), |_| {}).await;
    const CONNECTIONS: usize = 100;
    const PER_CONNECTION: usize = 100; // the default per-connection limit
    let url = server.url();
    // Each generator holds 1 MiB inside its instance; each connection opens 100 of them at once,
    // pulls one item from each and goes away without closing any.
    let run_connection = |url: String| async move {
        let proxy = std::sync::Arc::new(EasyRpcProxy::connect(&url, SECRET, "hostile").await.unwrap());
        let mut opened = Vec::new();
        for _ in 0..PER_CONNECTION {
            let proxy = proxy.clone();
            opened.push(tokio::spawn(async move {
                let mut s = proxy.stream("streams.endless", vec![1.into()], vec![]).await.expect("opens");
                assert_eq!(s.next().await.unwrap().unwrap(), Value::Int(0));
            }));
        }
        for o in opened {
            o.await.unwrap();
        }
    };
    run_connection(url.clone()).await; // warm-up: pools, caches, allocator
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = rss();
    for _ in 1..CONNECTIONS {
        run_connection(url.clone()).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss();
    let grown = after.saturating_sub(baseline);
    println!("rss baseline {} MiB, after 10,000 generators {} MiB", baseline >> 20, after >> 20);
    // 100 generators at once hold 100 MiB; after all 10,000 are abandoned, what remains is
    // allocator slack, the warm pool slots and decommits still batched, not generator memory:
    // a leak of even 1% of them would be 100 MiB.
    assert!(grown < 48 << 20, "rss grew by {} MiB", grown >> 20);
    let peer = EasyRpcProxy::connect(&url, SECRET, "peer").await.unwrap();
    assert_eq!(peer.call("add", vec![1.into()], vec![]).await.unwrap(), Value::Int(3));
    server.stop().await;
}
