//! Hostile and broken input at the wire level, from a raw websocket client. After each, the
//! server must still serve a good client.

use easyrpc::client::EasyRpcProxy;
use easyrpc::runtime::CallLimits;
use easyrpc::value::Value;
use easyrpc::wire::{self, auth, Serialization};
use easyrpc_tests::{j, RawClient, TestServer, SECRET};
use futures_util::SinkExt;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

async fn server_with(max_frame: usize, setup_timeout: Duration) -> TestServer {
    TestServer::start_with(&[("peer", &["peer"])], CallLimits::default(), |c| {
        c.limits.max_frame = max_frame;
        c.limits.setup_timeout = setup_timeout;
    })
    .await
}

async fn assert_serves(server: &TestServer) {
    let peer = EasyRpcProxy::connect(&server.url(), SECRET, "peer").await.expect("a good client connects");
    let r = peer.call("add", vec![Value::Int(1)], vec![]).await.expect("and calls");
    assert_eq!(r, Value::Int(3));
}

async fn raw(server: &TestServer, ser: Serialization) -> RawClient {
    RawClient::connect_with(server, "peer", ser).await
}

async fn next_text(ws: &mut RawClient) -> Option<String> {
    ws.next_frame().await.map(|v| j(&v))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_are_ignored_or_answered_and_the_connection_lives() {
    let server = server_with(1 << 20, Duration::from_secs(5)).await;
    let mut ws = raw(&server, Serialization::Json).await;
    for junk in
        ["{not json", "[1, 2, 3]", "\"text\"", r#"{"ws_action": 5}"#, r#"{"ws_action": {"type": "request"}}"#, ""]
    {
        ws.ws.send(Message::text(junk)).await.unwrap();
    }
    ws.ws.send(Message::binary(vec![0xff, 0x00, 0x13, 0x37])).await.unwrap();
    // Wrong field types, with an id: answered with an error dict.
    let cases = [
        (r#""request": 5"#, "request must be a dict"),
        (r#""request": {"action": "add", "args": 5}"#, "args must be a list, got int"),
        (r#""request": {"action": "add", "kwargs": [1]}"#, "kwargs must be a dict, got list"),
        (r#""request": {"action": 7}"#, "action must be a str, got int"),
        (r#""request": {"args": []}"#, "missing expected input: 'action' "),
        (r#""request": {"action": "no_such_function", "args": []}"#, "no action no_such_function registered for origin within ['echo', 'add', 'concat', 'kwecho', 'maybe', 'sum_list', 'fail', 'slow', 'count']"),
    ];
    for (i, (fields, error)) in cases.iter().enumerate() {
        let id = format!("bad-{i}");
        ws.ws
            .send(Message::text(format!(r#"{{"ws_action": {{"type": "request", {fields}, "request_id": "{id}"}}}}"#)))
            .await
            .unwrap();
        let r = ws.response(&id).await;
        assert_eq!(r.get("error").and_then(Value::as_str), Some(*error), "{fields}");
    }
    // Wrong argument types reach the host's check and come back as an error string.
    let r = ws.request("ok-1", r#"{"action": "add", "args": ["x"], "kwargs": {}}"#).await;
    assert_eq!(j(&r), r#""TypeError('bad argument for add: a: expected s64, got \"x\"')""#);
    // The same connection still works.
    assert_eq!(ws.request("ok-1", r#"{"action": "add", "args": [1], "kwargs": {"b": 2}}"#).await, Value::Int(3));
    assert_serves(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_pickle_and_pickled_objects() {
    let server = server_with(1 << 20, Duration::from_secs(5)).await;
    let mut ws = raw(&server, Serialization::Pickle).await;
    for junk in [vec![0x80, 0x04, 0x28], vec![0xff; 64], b"\x80\x04h\x09.".to_vec(), vec![]] {
        ws.ws.send(Message::binary(junk)).await.unwrap();
    }
    // Python: pickle.dumps({'ws_action': {..., 'request': {'action': 'echo', 'args': [object], ...}}})
    let mut frame = vec![0x80, 0x04, b'}'];
    let w = |out: &mut Vec<u8>, s: &str| wire::pickle::write_str(out, s);
    w(&mut frame, "ws_action");
    frame.extend_from_slice(b"}(");
    w(&mut frame, "type");
    w(&mut frame, "request");
    w(&mut frame, "request");
    frame.extend_from_slice(b"}(");
    w(&mut frame, "action");
    w(&mut frame, "echo");
    w(&mut frame, "args");
    frame.push(b']');
    w(&mut frame, "builtins");
    w(&mut frame, "object");
    frame.extend_from_slice(&[0x93, b'a']);
    frame.extend_from_slice(b"u");
    w(&mut frame, "request_id");
    w(&mut frame, "obj-1");
    frame.extend_from_slice(b"us.");
    ws.ws.send(Message::binary(frame)).await.unwrap();
    let r = ws.response("obj-1").await;
    let text = r.as_str().unwrap_or_default();
    assert!(text.starts_with("TypeError(") && text.contains("builtins.object"), "{text}");
    assert_serves(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_over_the_limit_close_that_connection_only() {
    let server = server_with(64 << 10, Duration::from_secs(5)).await;
    let mut ws = raw(&server, Serialization::Json).await;
    let big = format!(
        r#"{{"ws_action": {{"type": "request", "request": {{"action": "echo", "args": ["{}"]}}, "request_id": "big"}}}}"#,
        "x".repeat(100 << 10)
    );
    let _ = ws.ws.send(Message::text(big)).await;
    assert_eq!(ws.next_frame().await, None, "the server closes a connection that sends an oversized frame");
    assert_serves(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_frames_that_never_come_or_are_wrong() {
    let server = server_with(1 << 20, Duration::from_millis(300)).await;
    // Never sends a setup frame: the server gives up after its setup timeout.
    let mut silent = RawClient::connect_without_setup(&server).await;
    let reply = next_text(&mut silent).await;
    assert!(reply.as_deref().is_none_or(|r| r.contains("error")), "{reply:?}");
    assert_eq!(silent.next_frame().await, None);
    // A setup that is not JSON, or lacks the token, or is signed with another secret.
    for setup in ["hello", r#"{"nope": 1}"#, r#"{"setup": "a.b.c"}"#] {
        let mut ws = RawClient::connect_without_setup(&server).await;
        ws.ws.send(Message::text(setup)).await.unwrap();
        let reply = next_text(&mut ws).await.unwrap_or_default();
        assert_eq!(reply, r#"{"error":"unable to decode auth, server_secret may not match with server"}"#);
        assert_eq!(ws.next_frame().await, None, "closed after the error");
    }
    // A binary first frame.
    let mut ws = RawClient::connect_without_setup(&server).await;
    ws.ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert!(next_text(&mut ws).await.unwrap_or_default().contains("error"));
    assert_serves(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_connections_opened_and_dropped() {
    let server = server_with(1 << 20, Duration::from_secs(2)).await;
    let addr = server.addr;
    let url = server.url();
    // Bounded: 3000 connections in waves of 100; a third only open TCP, a third upgrade to a
    // websocket, a third also send a setup frame; all are dropped without a goodbye.
    for wave in 0..30 {
        let mut tasks = Vec::new();
        for i in 0..100 {
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                match (wave * 100 + i) % 3 {
                    0 => drop(tokio::net::TcpStream::connect(addr).await),
                    1 => drop(tokio_tungstenite::connect_async(url).await),
                    _ => {
                        if let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url).await {
                            let claims = auth::SetupClaims {
                                kind: "PROXY".into(),
                                id: "x".into(),
                                namespace: "peer".into(),
                                serialization: Serialization::Json,
                                notify: false,
                            };
                            let _ = ws
                                .send(Message::text(format!(r#"{{"setup": "{}"}}"#, auth::sign_setup(&claims, SECRET))))
                                .await;
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
    assert_serves(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_pings_get_the_python_servers_pong() {
    let server = server_with(1 << 20, Duration::from_secs(5)).await;
    let mut ws = raw(&server, Serialization::Json).await;
    ws.ws.send(Message::text(r#"{"ping": "ping"}"#)).await.unwrap();
    assert_eq!(next_text(&mut ws).await.as_deref(), Some(r#"{"pong":"pong"}"#));
    // Quirk Q7: a request whose text contains "ping" gets a pong before its response.
    ws.ws
        .send(Message::text(
            r#"{"ws_action": {"type": "request", "request": {"action": "echo", "args": ["ping"]}, "request_id": "p"}}"#,
        ))
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await.as_deref(), Some(r#"{"pong":"pong"}"#));
    assert_eq!(ws.response("p").await, Value::Str("ping".into()));
    // response_expected false: no response at all; the next request is answered normally.
    ws.ws.send(Message::text(r#"{"ws_action": {"type": "request", "response_expected": false, "request": {"action": "add", "args": [1]}, "request_id": "quiet"}}"#)).await.unwrap();
    assert_eq!(ws.request("ok-1", r#"{"action": "add", "args": [2]}"#).await, Value::Int(4));
    server.stop().await;
}
