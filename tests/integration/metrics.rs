//! `/metrics`, `/healthz` and `/readyz` scraped during a run: counters move with calls,
//! errors, connections, generators and deploys; readiness waits for the modules; label sets
//! carry namespaces and functions only.

use easyrpc::client::EasyRpcProxy;
use easyrpc::value::Value;
use easyrpc_tests::{module_path, serve_config, SECRET};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GET `path` from the endpoint: (status code, body).
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("the endpoint listens");
    stream.write_all(format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n").as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// The value of the sample `name{labels}` in `text`, 0 when absent.
fn sample(text: &str, name_and_labels: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(name_and_labels).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_answer_and_counters_move() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let readiness = easyrpc::metrics::Readiness::new(0);
    tokio::spawn(easyrpc::metrics::serve_http(listener, readiness.clone(), std::future::pending()));

    assert_eq!(get(addr, "/healthz").await, (200, "ok\n".to_owned()));
    let (status, body) = get(addr, "/readyz").await;
    assert_eq!((status, body.as_str()), (503, "not ready: the configured modules are still loading\n"));
    let config = "[[module]]\nfile = \"{peer}\"\nnamespaces = [\"metered\"]\n";
    let (server, failures) = serve_config(config).await;
    assert!(failures.is_empty(), "{failures:?}");
    readiness.modules_loaded();
    assert_eq!(get(addr, "/readyz").await, (200, "ready\n".to_owned()));
    assert_eq!(get(addr, "/nothing").await.0, 404);

    let calls = r#"easyrpc_calls_total{namespace="metered",function="add"}"#;
    let errors = r#"easyrpc_call_errors_total{namespace="metered",function="fail",kind="Error"}"#;
    let latency = r#"easyrpc_call_duration_seconds_count{namespace="metered",function="add"}"#;
    let (_, before) = get(addr, "/metrics").await;
    let client = EasyRpcProxy::connect(&server.url(), SECRET, "metered").await.unwrap();
    for i in 0..3 {
        client.call("add", vec![Value::Int(i), Value::Int(1)], vec![]).await.unwrap();
    }
    client.call("fail", vec![Value::Str("boom".into())], vec![]).await.expect_err("fails");
    let mut items = client.stream("count", vec![Value::Int(100)], vec![]).await.unwrap();
    futures_util::StreamExt::next(&mut items).await.expect("an item").unwrap();
    let (status, after) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(sample(&after, calls) - sample(&before, calls), 3.0, "{after}");
    assert_eq!(sample(&after, latency) - sample(&before, latency), 3.0);
    assert_eq!(sample(&after, errors) - sample(&before, errors), 1.0);
    assert!(sample(&after, "easyrpc_connections") >= 1.0);
    assert!(sample(&after, "easyrpc_open_generators") >= 1.0);
    assert!(after.contains("# TYPE easyrpc_call_duration_seconds histogram"), "{after}");
    // Labels are namespaces, functions and kinds only: the arguments never appear.
    assert!(!after.contains("boom"));

    drop(items);
    let admin = EasyRpcProxy::connect(&server.url(), SECRET, "metered").await.unwrap();
    let deploys = r#"easyrpc_deploys_total{outcome="deployed"}"#;
    admin.deploy("metered", "math", &std::fs::read(module_path("math")).unwrap()).await.unwrap();
    let (_, later) = get(addr, "/metrics").await;
    assert!(sample(&later, deploys) - sample(&after, deploys) >= 1.0, "{later}");
    server.stop().await;
}
