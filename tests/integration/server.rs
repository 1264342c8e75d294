//! The server with the Rust client: every example function over the wire, argument checks
//! before sending, errors, namespaces, concurrency, big payloads, dropped connections,
//! wrong secrets, encryption_enabled, closing and graceful shutdown. Real server on 127.0.0.1.

use easyrpc::client::{ClientConfig, ClientError, EasyRpcProxy};
use easyrpc::registry::RegistrySnapshot;
use easyrpc::runtime::CallLimits;
use easyrpc::server::ServerConfig;
use easyrpc::value::Value;
use easyrpc::wire::Serialization;
use easyrpc_tests::{j, load, v, TestServer, PATH, SECRET};
use std::time::{Duration, Instant};

fn args(text: &str) -> Vec<Value> {
    match v(text) {
        Value::List(items) => items,
        _ => panic!("args must be a list"),
    }
}

/// Calls peer's `slow` with `arguments` (JSON) in a task of its own: a call left running.
fn slow_in_background(
    peer: &std::sync::Arc<EasyRpcProxy>,
    arguments: &'static str,
) -> tokio::task::JoinHandle<Result<Value, ClientError>> {
    let peer = peer.clone();
    tokio::spawn(async move { peer.call("slow", args(arguments), vec![]).await })
}

async fn proxy(server: &TestServer, namespace: &str, ser: Serialization) -> EasyRpcProxy {
    let mut config = ClientConfig::new(&server.url(), SECRET, namespace);
    config.serialization = ser;
    EasyRpcProxy::connect_with(config).await.expect("client connects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_function_over_the_wire() {
    let server = TestServer::start(&[("peer", &["peer"]), ("math", &["math"])]).await;
    for ser in [Serialization::Json, Serialization::Pickle] {
        let peer = proxy(&server, "peer", ser).await;
        let names: Vec<String> = peer.functions().iter().map(|d| d.name.clone()).collect();
        assert_eq!(names, ["echo", "add", "concat", "kwecho", "maybe", "sum_list", "fail", "slow", "count"]);
        assert_eq!(peer.call("add", args("[1]"), vec![]).await.unwrap(), Value::Int(3));
        assert_eq!(peer.call("add", args("[1]"), vec![("b".into(), 5.into())]).await.unwrap(), Value::Int(6));
        assert_eq!(peer.call("concat", args(r#"["a","b"]"#), vec![]).await.unwrap(), Value::Str("a-b".into()));
        let kw = peer.call("kwecho", args("[1]"), vec![("z".into(), 2.into())]).await.unwrap();
        assert_eq!(j(&kw), r#"{"a":1,"kwargs":{"z":2}}"#);
        assert_eq!(peer.call("maybe", vec![], vec![]).await.unwrap(), Value::None);
        assert_eq!(peer.call("sum_list", args("[[1,2,3]]"), vec![]).await.unwrap(), Value::Int(6));
        assert_eq!(peer.call("slow", args(r#"[0.01, "t"]"#), vec![]).await.unwrap(), Value::Str("t".into()));
        let big = v("1180591620717411303424");
        assert_eq!(peer.call("echo", vec![big.clone()], vec![]).await.unwrap(), big);
        let nan = peer.call("echo", args("[NaN]"), vec![]).await.unwrap();
        assert!(matches!(nan, Value::Float(x) if x.is_nan()));

        let math = proxy(&server, "math", ser).await;
        assert_eq!(math.call("add", args("[2, 40]"), vec![]).await.unwrap(), Value::Int(42));
        let d = math.call("distance", args(r#"[{"x":0,"y":0},{"x":3,"y":4}]"#), vec![]).await.unwrap();
        assert_eq!(d, Value::Float(5.0));
        let area = math.call("shapes.area", args(r#"[{"rect":[2,3]}]"#), vec![]).await.unwrap();
        assert_eq!(area, Value::Float(6.0));
        let max = math.call("kinds.echo_u64", args("[18446744073709551615]"), vec![]).await.unwrap();
        assert_eq!(j(&max), "18446744073709551615");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_are_checked_before_sending() {
    let server = TestServer::start(&[("peer", &["peer"]), ("math", &["math"])]).await;
    let peer = proxy(&server, "peer", Serialization::Json).await;
    let bad = |r: Result<Value, ClientError>| match r {
        Err(ClientError::BadArguments { reason, .. }) => reason,
        other => panic!("expected a local argument error, got {other:?}"),
    };
    assert_eq!(bad(peer.call("add", args(r#"["x"]"#), vec![]).await), r#"a: expected s64, got "x""#);
    assert_eq!(bad(peer.call("add", vec![], vec![]).await), "missing a required argument: 'a'");
    assert_eq!(bad(peer.call("add", args("[1,2,3]"), vec![]).await), "too many positional arguments");
    assert_eq!(
        bad(peer.call("add", args("[1]"), vec![("z".into(), 2.into())]).await),
        "got an unexpected keyword argument 'z'"
    );
    assert_eq!(bad(peer.call("sum_list", args(r#"[[1,"a"]]"#), vec![]).await), r#"xs[1]: expected s64, got "a""#);
    assert_eq!(bad(peer.call("concat", args(r#"["a", 1]"#), vec![]).await), "parts[1]: expected string, got 1");
    let math = proxy(&server, "math", Serialization::Json).await;
    assert_eq!(
        bad(math.call("distance", args(r#"[{"x":1,"y":"a"},{"x":0,"y":0}]"#), vec![]).await),
        r#"a.y: expected f64, got "a""#
    );
    assert!(matches!(peer.call("nope", vec![], vec![]).await, Err(ClientError::UnknownFunction { .. })));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_errors_and_namespaces() {
    let server =
        TestServer::start(&[("peer", &["peer", "shared"]), ("math", &["math", "shared"]), ("hostile", &["hostile"])])
            .await;
    let peer = proxy(&server, "peer", Serialization::Json).await;
    match peer.call("fail", args(r#"["kaput"]"#), vec![]).await {
        Err(ClientError::Remote(text)) => assert_eq!(text, "Error('kaput')"),
        other => panic!("expected the function's error, got {other:?}"),
    }
    let hostile = proxy(&server, "hostile", Serialization::Pickle).await;
    match hostile.call("panic", args(r#"["it's over"]"#), vec![]).await {
        Err(ClientError::Remote(text)) => assert_eq!(text, r#"Panic("panic panicked: it's over")"#),
        other => panic!("expected the panic, got {other:?}"),
    }
    // A module in two namespaces; later modules win a name clash (math.add over peer.add).
    let shared = proxy(&server, "shared", Serialization::Json).await;
    assert!(shared.function("echo").is_some() && shared.function("distance").is_some());
    assert_eq!(shared.call("add", args("[1, 2]"), vec![]).await.unwrap(), Value::Int(3));
    // Namespaces do not see each other; an unknown namespace lists nothing.
    assert!(peer.function("distance").is_none());
    let nowhere = proxy(&server, "nowhere", Serialization::Json).await;
    assert!(nowhere.functions().is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_calls_in_flight_complete_out_of_order() {
    let server = TestServer::start(&[("peer", &["peer"])]).await;
    let peer = std::sync::Arc::new(proxy(&server, "peer", Serialization::Json).await);
    let started = Instant::now();
    let mut calls = Vec::new();
    for i in 0..200i64 {
        let peer = peer.clone();
        calls.push(tokio::spawn(async move {
            if i % 10 == 0 {
                // Slow calls first in each group: later quick calls overtake them.
                let tag = format!("slow-{i}");
                let r = peer.call("slow", vec![Value::Float(0.3), Value::Str(tag.clone())], vec![]).await;
                (r, Value::Str(tag))
            } else {
                (peer.call("add", vec![i.into()], vec![("b".into(), 1000.into())]).await, Value::Int(i as i128 + 1000))
            }
        }));
    }
    for c in calls {
        let (got, expected) = c.await.unwrap();
        assert_eq!(got.unwrap(), expected);
    }
    // 20 calls sleeping 0.3 s each run concurrently, not one after another (6 s).
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_and_timed_out_calls_leave_the_connection_working() {
    let server = TestServer::start(&[("peer", &["peer"])]).await;
    let mut config = ClientConfig::new(&server.url(), SECRET, "peer");
    // The bound applies to every call below: wide enough that a loaded machine (CI runs the
    // other tests of this file alongside) does not time out an `add`, as a bound of 100 ms can.
    config.call_timeout = Some(Duration::from_secs(1));
    let peer = std::sync::Arc::new(EasyRpcProxy::connect_with(config).await.unwrap());
    let e = peer.call("slow", vec![Value::Float(1.5), "late".into()], vec![]).await.unwrap_err();
    assert!(matches!(e, ClientError::Timeout(_)), "{e}");
    // Many callers writing at once, half of them dropped after their first step (waiting to
    // write, or waiting for the answer): every call that is kept gets its own answer, and
    // nothing stays stuck in the connection's buffer.
    use futures_util::FutureExt;
    for round in 0..50i64 {
        let mut kept = Vec::new();
        for i in 0..20i64 {
            let peer = peer.clone();
            let n = round * 100 + i;
            if i % 2 == 0 {
                tokio::spawn(async move { peer.call("add", vec![n.into()], vec![]).now_or_never() });
            } else {
                kept.push((tokio::spawn(async move { peer.call("add", vec![n.into()], vec![]).await }), n + 2));
            }
        }
        for (call, expected) in kept {
            let answer = tokio::time::timeout(Duration::from_secs(5), call).await.expect("answered, not stuck");
            assert_eq!(answer.unwrap().unwrap(), Value::Int(expected as i128));
        }
    }
    assert_eq!(peer.call("add", vec![1.into()], vec![]).await.unwrap(), Value::Int(3));
    server.stop().await;
}

/// A caller alone reads its own answer while the client's reader task may be reading on the
/// other thread: whoever the socket wakes, the answer reaches its caller. Sequential calls,
/// some with a second call joining, each bounded so that a lost wake fails instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_callers_and_the_reader_task_never_lose_an_answer() {
    let server = TestServer::start(&[("peer", &["peer"])]).await;
    let peer = std::sync::Arc::new(proxy(&server, "peer", Serialization::Json).await);
    for i in 0..10_000i64 {
        let call = async {
            if i % 7 == 0 {
                let other = peer.clone();
                let joined =
                    tokio::spawn(async move { other.call("add", vec![i.into()], vec![("b".into(), 5.into())]).await });
                let mine = peer.call("add", vec![i.into()], vec![]).await;
                (mine, Some(joined.await.unwrap()))
            } else {
                (peer.call("add", vec![i.into()], vec![]).await, None)
            }
        };
        let (mine, joined) =
            tokio::time::timeout(Duration::from_secs(5), call).await.unwrap_or_else(|_| panic!("call {i} stalled"));
        assert_eq!(mine.unwrap(), Value::Int(i as i128 + 2));
        if let Some(joined) = joined {
            assert_eq!(joined.unwrap(), Value::Int(i as i128 + 5));
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_megabyte_payloads() {
    let server = TestServer::start(&[("peer", &["peer"])]).await;
    for ser in [Serialization::Json, Serialization::Pickle] {
        let peer = proxy(&server, "peer", ser).await;
        let text = Value::Str("é".repeat(500_000));
        assert_eq!(peer.call("echo", vec![text.clone()], vec![]).await.unwrap(), text);
        let list = Value::List((0..100_000).map(|i| Value::Int(i * 7)).collect());
        assert_eq!(peer.call("echo", vec![list.clone()], vec![]).await.unwrap(), list);
        // Over the 4 MiB response limit of easyrpc clients: an error, not a dropped connection.
        let huge = Value::Str("x".repeat(5 << 20));
        match peer.call("echo", vec![huge], vec![]).await {
            Err(ClientError::Remote(text)) => assert!(text.starts_with("ResultTooLarge("), "{text}"),
            other => panic!("expected ResultTooLarge, got {other:?}"),
        }
        assert_eq!(peer.call("add", args("[1]"), vec![]).await.unwrap(), Value::Int(3));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_fails_fast_with_a_clear_error() {
    let server = TestServer::start(&[("peer", &["peer"])]).await;
    let started = Instant::now();
    let r = EasyRpcProxy::connect(&server.url(), "not-the-secret", "peer").await;
    match r {
        Err(ClientError::Auth(text)) => assert!(text.contains("server_secret may not match"), "{text}"),
        Err(other) => panic!("expected an auth error, got {other:?}"),
        Ok(_) => panic!("connected with a wrong secret"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    let bad_path = EasyRpcProxy::connect(&format!("ws://{}/ws/other", server.addr), SECRET, "peer").await;
    assert!(matches!(bad_path, Err(ClientError::Connect { .. })));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_fails_calls_at_once_and_the_next_call_reconnects() {
    let mut snapshot = RegistrySnapshot::default();
    snapshot.add_module_with_limits("peer", &load("peer"), CallLimits::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let registry = std::sync::Arc::new(easyrpc::registry::Registry::new(snapshot));
    let first = tokio::spawn(easyrpc::server::run(
        listener,
        ServerConfig::single(PATH, SECRET),
        registry.clone(),
        std::future::pending(),
    ));
    let url = format!("ws://{addr}{PATH}");
    let peer = std::sync::Arc::new(EasyRpcProxy::connect(&url, SECRET, "peer").await.unwrap());
    let in_flight = slow_in_background(&peer, r#"[30, "never"]"#);
    tokio::time::sleep(Duration::from_millis(200)).await;
    first.abort(); // the host dies: its sockets close without a goodbye
    let started = Instant::now();
    let r = in_flight.await.unwrap();
    assert_eq!(r, Err(ClientError::Disconnected));
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    // The host comes back on the same port; the next call reconnects by itself.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let second = tokio::spawn(easyrpc::server::run(
        listener,
        ServerConfig::single(PATH, SECRET),
        registry,
        std::future::pending(),
    ));
    assert_eq!(peer.call("add", args("[1]"), vec![]).await.unwrap(), Value::Int(3));
    second.abort();
}

/// How a client's side of a relayed connection ended.
#[derive(Debug, PartialEq)]
enum ClientEnd {
    CloseFrame,
    WithoutCloseFrame,
}

/// Relays every websocket connection made to `listener` to `upstream` (both ways) and reports
/// how the client's side of each ended.
fn relay(listener: tokio::net::TcpListener, upstream: String) -> tokio::sync::mpsc::UnboundedReceiver<ClientEnd> {
    use futures_util::{SinkExt, StreamExt};
    let (ends, ended) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (ends, upstream) = (ends.clone(), upstream.clone());
            tokio::spawn(async move {
                let client = tokio_tungstenite::accept_async(tcp).await.expect("client handshake");
                let (server, _) = tokio_tungstenite::connect_async(upstream.as_str()).await.expect("host handshake");
                let (mut to_client, mut from_client) = client.split();
                let (mut to_server, mut from_server) = server.split();
                let answers = tokio::spawn(async move {
                    while let Some(Ok(message)) = from_server.next().await {
                        if to_client.send(message).await.is_err() {
                            break;
                        }
                    }
                });
                let mut end = ClientEnd::WithoutCloseFrame;
                while let Some(Ok(message)) = from_client.next().await {
                    if message.is_close() {
                        end = ClientEnd::CloseFrame;
                        break;
                    }
                    if to_server.send(message).await.is_err() {
                        break;
                    }
                }
                answers.abort();
                let _ = ends.send(end);
            });
        }
    });
    ended
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_closes_its_connection_with_a_close_frame() {
    let server = TestServer::start(&[("peer", &["peer"])]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}{PATH}", listener.local_addr().unwrap());
    let mut ended = relay(listener, server.url());
    let next_end = async |ended: &mut tokio::sync::mpsc::UnboundedReceiver<ClientEnd>| {
        tokio::time::timeout(Duration::from_secs(5), ended.recv())
            .await
            .expect("the connection ends")
            .expect("relay running")
    };

    // close(): a close frame; a call still in flight fails at once.
    let peer = std::sync::Arc::new(EasyRpcProxy::connect(&url, SECRET, "peer").await.unwrap());
    assert_eq!(peer.call("add", args("[1]"), vec![]).await.unwrap(), Value::Int(3));
    let in_flight = slow_in_background(&peer, r#"[30, "never"]"#);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    peer.close().await;
    assert_eq!(in_flight.await.unwrap(), Err(ClientError::Disconnected));
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert_eq!(next_end(&mut ended).await, ClientEnd::CloseFrame);

    // The proxy stays usable: the next call connects again.
    assert_eq!(peer.call("add", args("[2]"), vec![]).await.unwrap(), Value::Int(4));
    // Dropped inside a runtime, it closes the same way.
    drop(peer);
    assert_eq!(next_end(&mut ended).await, ClientEnd::CloseFrame);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encryption_enabled_paths_unwrap_requests() {
    let mut snapshot = RegistrySnapshot::default();
    snapshot.add_module_with_limits("peer", &load("peer"), CallLimits::default());
    let mut config = ServerConfig::single(PATH, SECRET);
    config.paths[0].encryption = true;
    let server = TestServer::with_config(snapshot, config).await;
    let mut client = ClientConfig::new(&server.url(), SECRET, "peer");
    client.encryption = true;
    let peer = EasyRpcProxy::connect_with(client).await.unwrap();
    assert_eq!(peer.call("add", args("[1]"), vec![("b".into(), 5.into())]).await.unwrap(), Value::Int(6));
    server.stop().await;
}

/// A tenant that connects with its namespace's own secret wraps its requests with that secret,
/// as the Python client does with the secret it was given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encryption_enabled_paths_unwrap_a_tenant_s_requests_with_its_secret() {
    use easyrpc::registry::{NamespacePolicy, PolicyConfig};
    let mut snapshot = RegistrySnapshot::default();
    let tenant = PolicyConfig { secret: Some("tenant-secret".into()), ..PolicyConfig::default() };
    snapshot.set_policy("peer", NamespacePolicy::new(tenant));
    snapshot.add_module_with_limits("peer", &load("peer"), CallLimits::default());
    let mut config = ServerConfig::single(PATH, SECRET);
    config.paths[0].encryption = true;
    let server = TestServer::with_config(snapshot, config).await;
    let mut client = ClientConfig::new(&server.url(), "tenant-secret", "peer");
    client.encryption = true;
    let peer = EasyRpcProxy::connect_with(client).await.unwrap();
    assert_eq!(peer.call("add", args("[1]"), vec![("b".into(), 5.into())]).await.unwrap(), Value::Int(6));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_running_calls_finish() {
    let server = TestServer::start(&[("peer", &["peer"])]).await;
    let url = server.url();
    let peer = std::sync::Arc::new(proxy(&server, "peer", Serialization::Json).await);
    let running = slow_in_background(&peer, r#"[0.5, "done"]"#);
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.stop().await; // returns once every connection is closed
    assert_eq!(running.await.unwrap().unwrap(), Value::Str("done".into()));
    assert!(EasyRpcProxy::connect(&url, SECRET, "peer").await.is_err(), "no new connections after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_made_while_another_runs_is_sent_at_once() {
    // With Nagle's algorithm on the client's socket, a request written while an earlier one is
    // still unacknowledged waits for that ACK, which the host's kernel delays (40 ms on Linux)
    // when the earlier call is slow to answer: every call made beside a slow one pays it.
    let server = TestServer::start(&[("peer", &["peer"])]).await;
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let peer = std::sync::Arc::new(proxy(&server, "peer", Serialization::Json).await);
        assert_eq!(peer.call("add", args("[1]"), vec![]).await.unwrap(), Value::Int(3));
        let slow = slow_in_background(&peer, r#"[0.3, "done"]"#);
        tokio::time::sleep(Duration::from_millis(2)).await;
        let started = Instant::now();
        assert_eq!(peer.call("add", args("[2]"), vec![]).await.unwrap(), Value::Int(4));
        best = best.min(started.elapsed());
        assert_eq!(slow.await.unwrap().unwrap(), Value::Str("done".to_owned()));
    }
    assert!(best < Duration::from_millis(20), "a call beside a slow one took at best {best:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_to_a_burst_of_requests_leave_while_the_burst_is_handled() {
    // A client keeping many calls in flight sends its requests in bursts. Its first answers
    // must reach it while the host still works through the rest of a burst, so that it can send
    // its next requests meanwhile: held back to the burst's end, both sides idle in turn, which
    // costs a connection with many calls in flight a good share of its calls/s.
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let server = TestServer::start(&[("peer", &["peer"])]).await;
    let client = easyrpc_tests::RawClient::connect(&server, "peer").await;
    let (mut requests, mut answers) = client.ws.split();
    // Arguments the host rejects before any call: every request is answered by the connection
    // itself, in a debug build as in a release one (a slow guest call would be moved to a task
    // of its own). The best of three rounds counts.
    const BURST: usize = 2000;
    let mut spans = Vec::new();
    for _round in 0..3 {
        let sent = Instant::now();
        let writer = tokio::spawn(async move {
            for i in 0..BURST {
                let frame =
                    easyrpc_tests::request_frame(&i.to_string(), &format!(r#"{{"action": "add", "args": ["{i}"]}}"#));
                requests.feed(Message::text(frame)).await.expect("request written");
            }
            requests.flush().await.expect("burst sent");
            requests
        });
        answers.next().await.expect("an answer").expect("a frame");
        let first = sent.elapsed();
        for _ in 1..BURST {
            answers.next().await.expect("an answer").expect("a frame");
        }
        spans.push((first, sent.elapsed()));
        requests = writer.await.expect("writer");
    }
    // The first answer must come within a quarter of the burst's time (debug build), well
    // before it would if answers waited for the host to run out of frames (which happens once
    // per write of the client's buffer).
    let best = spans.iter().map(|(first, last)| first.as_secs_f64() / last.as_secs_f64()).fold(f64::INFINITY, f64::min);
    assert!(best < 0.25, "the first answer came after {best:.2} of the burst's time at best: {spans:?}");
    server.stop().await;
}
