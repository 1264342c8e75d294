//! Generators end to end: the Rust client's stream, the wire sequence (an error is an item,
//! then GENERATOR_END), a deadline per `next`, per-connection and host-wide limits, the idle
//! timeout and isolation between connections. (10,000 abandoned generators: generator_memory.rs.)

use easyrpc::client::{ClientConfig, ClientError, EasyRpcProxy};
use easyrpc::runtime::CallLimits;
use easyrpc::server::ServerConfig;
use easyrpc::value::Value;
use easyrpc::wire::Serialization;
use easyrpc_tests::{j, RawClient, TestServer, SECRET};
use futures_util::StreamExt;
use std::time::{Duration, Instant};

async fn server(limits: CallLimits, tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
    TestServer::start_with(&[("peer", &["peer"]), ("hostile", &["hostile"])], limits, tweak).await
}

async fn items(proxy: &EasyRpcProxy, name: &str, args: Vec<Value>) -> Vec<Result<Value, ClientError>> {
    proxy.stream(name, args, vec![]).await.expect("generator opens").collect().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_client_streams_items() {
    let server = server(CallLimits::default(), |_| {}).await;
    for ser in [Serialization::Json, Serialization::Pickle] {
        let mut config = ClientConfig::new(&server.url(), SECRET, "peer");
        config.serialization = ser;
        let peer = EasyRpcProxy::connect_with(config).await.unwrap();
        assert_eq!(peer.function("count").unwrap().to_string(), "count(n: s64) -> generator<s64>");
        let got: Vec<Value> = items(&peer, "count", vec![5.into()]).await.into_iter().map(Result::unwrap).collect();
        assert_eq!(got, (0..5).map(Value::from).collect::<Vec<_>>());
        assert!(items(&peer, "count", vec![0.into()]).await.is_empty());
        // Two at once, interleaved.
        let mut a = peer.stream("count", vec![3.into()], vec![]).await.unwrap();
        let mut b = peer.stream("count", vec![2.into()], vec![]).await.unwrap();
        assert_eq!(a.next().await.unwrap().unwrap(), Value::Int(0));
        assert_eq!(b.next().await.unwrap().unwrap(), Value::Int(0));
        assert_eq!(a.next().await.unwrap().unwrap(), Value::Int(1));
        assert_eq!(b.next().await.unwrap().unwrap(), Value::Int(1));
        assert!(b.next().await.is_none());
        assert_eq!(a.next().await.unwrap().unwrap(), Value::Int(2));
        assert!(a.next().await.is_none());
        // Arguments are checked before anything is sent.
        assert!(matches!(peer.stream("count", vec!["x".into()], vec![]).await, Err(ClientError::BadArguments { .. })));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_mid_stream_is_an_item_then_the_end() {
    let server = server(CallLimits::default(), |_| {}).await;
    let hostile = EasyRpcProxy::connect(&server.url(), SECRET, "hostile").await.unwrap();
    let got = items(&hostile, "streams.ticks_then_panic", vec![2.into()]).await;
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0], Ok(Value::Int(0)));
    assert_eq!(got[1], Ok(Value::Int(1)));
    match &got[2] {
        Err(ClientError::Remote(text)) => {
            assert!(text.starts_with("Panic(") && text.contains("ticks gave out after 2"), "{text}")
        }
        other => panic!("expected the panic as an item, got {other:?}"),
    }
    // On the wire, as the Python server does: the error as an item, then GENERATOR_END.
    let mut raw = RawClient::connect(&server, "hostile").await;
    let start = raw.request("g1", r#"{"action": "streams.ticks_then_panic", "args": [1], "kwargs": {}}"#).await;
    assert_eq!(j(&start), r#"{"GENERATOR_START":"g1"}"#);
    let next = r#"{"action": "GENERATOR_NEXT", "generator_id": "g1"}"#;
    assert_eq!(raw.request("g1", next).await, Value::Int(0));
    assert!(raw.request("g1", next).await.as_str().unwrap_or_default().starts_with("Panic("));
    assert_eq!(raw.request("g1", next).await, Value::Str("GENERATOR_END".into()));
    assert_eq!(
        raw.request("g1", next).await.get("error").and_then(Value::as_str),
        Some("no open generator g1 on this connection")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_next_has_its_own_deadline() {
    let limits = CallLimits { deadline: Duration::from_millis(300), ..CallLimits::default() };
    let server = server(limits, |_| {}).await;
    let hostile = EasyRpcProxy::connect(&server.url(), SECRET, "hostile").await.unwrap();
    // Slow pulls that each stay within the deadline are fine however long the stream lives.
    let mut ticks = hostile.stream("streams.ticks_then_spin", vec![3.into()], vec![]).await.unwrap();
    for i in 0..3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(ticks.next().await.unwrap().unwrap(), Value::Int(i));
    }
    let started = Instant::now();
    match ticks.next().await {
        Some(Err(ClientError::Remote(text))) => assert!(text.starts_with("Timeout("), "{text}"),
        other => panic!("expected a timeout item, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_millis(600), "took {:?}", started.elapsed());
    assert!(ticks.next().await.is_none());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_generators_are_limited_per_connection_and_per_host() {
    let server = server(CallLimits::default(), |c| {
        c.limits.max_generators_per_connection = 3;
        c.limits.max_open_generators = 5;
    })
    .await;
    let busy = |r: Result<_, ClientError>| match r {
        Err(ClientError::Remote(text)) => assert!(text.starts_with("Busy("), "{text}"),
        Err(other) => panic!("expected busy, got {other:?}"),
        Ok(_) => panic!("expected busy, the generator opened"),
    };
    let a = EasyRpcProxy::connect(&server.url(), SECRET, "peer").await.unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(a.stream("count", vec![10.into()], vec![]).await.unwrap());
    }
    busy(a.stream("count", vec![10.into()], vec![]).await);
    let b = EasyRpcProxy::connect(&server.url(), SECRET, "peer").await.unwrap();
    let b1 = b.stream("count", vec![1.into()], vec![]).await.unwrap();
    let _b2 = b.stream("count", vec![10.into()], vec![]).await.unwrap();
    busy(b.stream("count", vec![10.into()], vec![]).await);
    // A generator that ends gives its place back.
    let rest: Vec<_> = b1.collect().await;
    assert_eq!(rest, vec![Ok(Value::Int(0))]);
    assert!(b.stream("count", vec![1.into()], vec![]).await.is_ok());
    // Calls are not limited by generators.
    assert_eq!(a.call("add", vec![1.into()], vec![]).await.unwrap(), Value::Int(3));
    drop(held);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_generators_are_closed_and_other_connections_cannot_step_them() {
    let server = server(CallLimits::default(), |c| {
        c.limits.generator_idle_timeout = Duration::from_millis(300);
        c.limits.max_open_generators = 1;
    })
    .await;
    let mut owner = RawClient::connect(&server, "peer").await;
    let start = owner.request("mine", r#"{"action": "count", "args": [5]}"#).await;
    assert_eq!(j(&start), r#"{"GENERATOR_START":"mine"}"#);
    // Another connection guessing the id gets nothing, and the owner's stream is untouched.
    let mut other = RawClient::connect(&server, "peer").await;
    let stolen = other.request("mine", r#"{"action": "GENERATOR_NEXT", "generator_id": "mine"}"#).await;
    assert_eq!(stolen.get("error").and_then(Value::as_str), Some("no open generator mine on this connection"));
    let next = r#"{"action": "GENERATOR_NEXT", "generator_id": "mine"}"#;
    assert_eq!(owner.request("mine", next).await, Value::Int(0));
    // Left alone past the idle timeout, it is closed and its host-wide slot is free again. Its
    // next pull says why, as an error item, and the one after ends it, so that a Python
    // client (which stops only at the end marker) stops.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let gone = owner.request("mine", next).await;
    let why = gone.as_str().unwrap_or_default();
    assert!(why.starts_with("Timeout('generator mine was closed after 300ms without a pull"), "{gone:?}");
    assert_eq!(owner.request("mine", next).await, Value::Str("GENERATOR_END".into()));
    let unknown = owner.request("mine", next).await;
    assert_eq!(unknown.get("error").and_then(Value::as_str), Some("no open generator mine on this connection"));
    let again = other.request("theirs", r#"{"action": "count", "args": [1]}"#).await;
    assert_eq!(j(&again), r#"{"GENERATOR_START":"theirs"}"#);
    server.stop().await;
}
