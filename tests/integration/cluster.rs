//! Cluster links, the parent side: a child host (here a raw websocket playing one, as the
//! Python original's `create_server_proxy` does on the wire) connects with `type: SERVER`.
//! The host lists the child's functions, offers them to its clients, relays their calls and
//! generator steps down the link, answers the child's own listing without the child's
//! functions, and takes the functions away when the link drops, failing calls in flight.

use easyrpc::client::{ClientError, EasyRpcProxy};
use easyrpc::value::{json, Value};
use easyrpc::wire::{self, auth, Message, RequestBody, Serialization};
use easyrpc_tests::{connect_like_our_client, TestServer, SECRET};
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message as WsMessage;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A child host played by hand: a `type: SERVER` connection to the host's namespace `peer`.
struct Child {
    ws: Ws,
}

/// A request the host sent down the link.
struct Down {
    request_id: String,
    action: String,
    args: Vec<Value>,
    kwargs: Vec<(String, Value)>,
    /// Hosts that passed the call on (our host counts itself).
    hops: u8,
}

impl Child {
    async fn connect(server: &TestServer) -> Self {
        let mut ws = connect_like_our_client(&server.url()).await;
        let claims = auth::SetupClaims {
            kind: auth::SERVER.into(),
            id: "child-1".into(),
            namespace: "peer".into(),
            serialization: Serialization::Json,
            notify: false,
        };
        let setup = format!(r#"{{"setup": "{}"}}"#, auth::sign_setup(&claims, SECRET));
        ws.send(WsMessage::text(setup)).await.expect("setup sent");
        let reply = ws.next().await.expect("auth reply").expect("auth reply");
        assert!(reply.to_text().unwrap_or_default().contains(r#""auth":"ok""#), "{reply:?}");
        Self { ws }
    }

    /// The next request the host sends down (answers to the child's own requests are skipped).
    async fn next_request(&mut self) -> Down {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(5), self.ws.next())
                .await
                .expect("the host sends a request down")
                .expect("open")
                .expect("a frame");
            let Ok(Message::Request(request)) = wire::read_text(frame.to_text().unwrap_or_default()) else { continue };
            let call = match request.body {
                RequestBody::Call(call) => call,
                RequestBody::Plain(value) => wire::parse_call(value).expect("a call"),
                RequestBody::Wrapped(_) => panic!("no wrapped requests here"),
            };
            return Down {
                request_id: request.request_id,
                action: call.action.unwrap_or_default(),
                args: call.args,
                kwargs: call.kwargs,
                hops: call.hops,
            };
        }
    }

    async fn answer(&mut self, request_id: &str, value: &Value) {
        let wire::Frame::Text(text) = wire::response(Serialization::Json, request_id, value, false) else {
            panic!("json answers are text")
        };
        self.ws.send(WsMessage::text(text)).await.expect("answer sent");
    }

    /// Answers the host's listing request with `functions` (a listing as JSON text).
    async fn answer_listing(&mut self, listing: &Value) {
        let down = self.next_request().await;
        assert_eq!(down.action, "get_registered_functions");
        assert_eq!(down.kwargs.iter().find(|(k, _)| k == "upstream").map(|(_, v)| v), Some(&Value::Bool(false)));
        self.answer(&down.request_id, listing).await;
    }
}

/// The listing a child offers: `remote_add(a, b)` and `remote_count(n)` (a generator), taken
/// from the peer module's own descriptors under other names.
async fn child_listing(server: &TestServer) -> Value {
    let snapshot = server.registry.snapshot();
    let mut descriptors = Vec::new();
    for (name, renamed) in [("add", "remote_add"), ("count", "remote_count")] {
        let (_, _, function) = snapshot.resolve("peer", name).expect("the peer module's function");
        let mut d = function.descriptor().clone();
        d.name = renamed.into();
        descriptors.push(d);
    }
    wire::listing::listing(&descriptors)
}

/// Waits (a bounded while) until `proxy` sees `name`, or does not.
async fn until_listed(proxy: &EasyRpcProxy, name: &str, listed: bool) {
    let started = Instant::now();
    loop {
        proxy.refresh().await.expect("lists");
        if proxy.function(name).is_some() == listed {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{name} listed: {}, wanted {listed}", !listed);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_host_s_functions_are_offered_relayed_and_taken_away_with_its_link() {
    let server = TestServer::start(&[("peer", &["peer"])]).await;
    let listing = child_listing(&server).await;
    let mut child = Child::connect(&server).await;
    child.answer_listing(&listing).await;

    // A client of the host sees the child's functions beside the host's own, and calls them.
    let client = std::sync::Arc::new(EasyRpcProxy::connect(&server.url(), SECRET, "peer").await.expect("connects"));
    until_listed(&client, "remote_add", true).await;
    assert!(client.function("add").is_some(), "the host's own functions stay");
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.call("remote_add", vec![Value::Int(40)], vec![("b".into(), Value::Int(2))]).await }
    });
    let down = child.next_request().await;
    assert_eq!((down.action.as_str(), down.args.as_slice()), ("remote_add", &[Value::Int(40)][..]));
    assert_eq!(down.hops, 1, "the host counts itself when it passes a call on");
    child.answer(&down.request_id, &Value::Int(42)).await;
    assert_eq!(call.await.expect("joins").expect("the relayed call answers"), Value::Int(42));

    // A generator of the child, pulled through the host.
    let stream = tokio::spawn({
        let client = client.clone();
        async move {
            let stream = client.stream("remote_count", vec![Value::Int(2)], vec![]).await.expect("opens");
            stream.collect::<Vec<_>>().await
        }
    });
    let open = child.next_request().await;
    assert_eq!(open.action, "remote_count");
    child.answer(&open.request_id, &json::parse(r#"{"GENERATOR_START": "g1"}"#).unwrap()).await;
    for item in [Value::Int(0), Value::Int(1), Value::Str("GENERATOR_END".into())] {
        let pull = child.next_request().await;
        assert_eq!(pull.action, "GENERATOR_NEXT");
        child.answer(&pull.request_id, &item).await;
    }
    let items: Vec<Value> = stream.await.expect("joins").into_iter().map(|i| i.expect("an item")).collect();
    assert_eq!(items, [Value::Int(0), Value::Int(1)]);

    // The child asks for the host's functions: it hears the host's own, not its own back.
    let own = wire::call_object(
        "get_registered_functions",
        vec![Value::Str("peer".into())],
        vec![("upstream".into(), Value::Bool(true)), ("trigger".into(), Value::Str("child-1".into()))],
    );
    let wire::Frame::Text(request) = wire::request(Serialization::Json, "up-1", &own, true) else { panic!() };
    child.ws.send(WsMessage::text(request)).await.expect("sent");
    let answer = loop {
        let frame = child.ws.next().await.expect("open").expect("a frame");
        if let Ok(Message::Response { request_id, response, .. }) = wire::read_text(frame.to_text().unwrap_or("")) {
            assert_eq!(request_id, "up-1");
            break response;
        }
    };
    let names: Vec<String> =
        wire::listing::parse_listing(&answer).expect("a listing").into_iter().map(|d| d.name).collect();
    assert!(names.contains(&"add".to_owned()), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("remote_")), "the child's own functions came back: {names:?}");

    // A call in flight when the link drops fails at once, naming the lost link; the child's
    // functions leave the namespace.
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.call("remote_add", vec![Value::Int(1)], vec![]).await }
    });
    let unanswered = child.next_request().await;
    assert_eq!(unanswered.action, "remote_add");
    let dropped = Instant::now();
    drop(child);
    match tokio::time::timeout(Duration::from_secs(1), in_flight).await.expect("fails within 1 s").expect("joins") {
        Err(ClientError::Remote(text)) => assert!(text.starts_with("LinkLost('the link to child child-1"), "{text}"),
        other => panic!("expected the lost link's error, got {other:?}"),
    }
    println!("the call in flight failed {:?} after the link dropped", dropped.elapsed());
    until_listed(&client, "remote_add", false).await;
    assert_eq!(client.call("add", vec![Value::Int(1)], vec![]).await.expect("the host still serves"), Value::Int(3));
    server.stop().await;
}

/// A link of namespace `peer` to the `peer` of the host at `url`, signed with the tests' secret.
fn peer_link(url: String) -> easyrpc::cluster::parent::LinkConfig {
    easyrpc::cluster::parent::LinkConfig { url, secret: SECRET.into(), namespace: "peer".into(), ca_file: None }
}

/// A host serving `module` in namespace `peer`, linked (when `parent` is given) to the
/// parent's `peer`.
async fn host(module: &str, parent: Option<&TestServer>) -> TestServer {
    let mut snapshot = easyrpc::registry::RegistrySnapshot::default();
    snapshot.add_module("peer", &easyrpc_tests::load(module));
    let mut config = easyrpc::server::ServerConfig::single(easyrpc_tests::PATH, SECRET);
    if let Some(parent) = parent {
        config.links.push(peer_link(parent.url()));
    }
    TestServer::with_config(snapshot, config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_linked_hosts_call_each_other_s_functions_and_the_child_comes_back_after_its_parent_restarts() {
    let parent = host("peer", None).await;
    let child = host("math", Some(&parent)).await;
    let on_child = EasyRpcProxy::connect(&child.url(), SECRET, "peer").await.expect("connects");
    let on_parent = EasyRpcProxy::connect(&parent.url(), SECRET, "peer").await.expect("connects");

    // Upward: a client of the child calls the parent's function; downward: the reverse.
    until_listed(&on_child, "echo", true).await;
    assert_eq!(on_child.call("echo", vec![Value::Str("up".into())], vec![]).await.expect("relayed up"), "up".into());
    until_listed(&on_parent, "mul", true).await;
    let product = on_parent.call("mul", vec![Value::Float(2.0), Value::Float(3.0)], vec![]).await;
    assert_eq!(product.expect("relayed down"), Value::Float(6.0));
    assert_eq!(on_parent.call("add", vec![Value::Int(1)], vec![]).await.expect("its own add"), Value::Int(3));

    // The parent goes away: the child drops its functions at once and dials again.
    let addr = parent.addr;
    let stopped = Instant::now();
    parent.stop().await;
    until_listed(&on_child, "echo", false).await;
    println!("the parent's functions left the child {:?} after the parent stopped", stopped.elapsed());
    assert_eq!(
        on_child.call("mul", vec![Value::Float(2.0), Value::Float(2.0)], vec![]).await.expect("own"),
        Value::Float(4.0)
    );

    // A parent on the same address again: the link comes back by itself, with its functions.
    let listener = tokio::net::TcpListener::bind(addr).await.expect("the parent's port again");
    let mut snapshot = easyrpc::registry::RegistrySnapshot::default();
    snapshot.add_module("peer", &easyrpc_tests::load("peer"));
    let registry = std::sync::Arc::new(easyrpc::registry::Registry::new(snapshot));
    let config = easyrpc::server::ServerConfig::single(easyrpc_tests::PATH, SECRET);
    let restarted = Instant::now();
    let parent = TestServer::serve_on(listener, registry, None, config);
    until_listed(&on_child, "echo", true).await;
    println!("the link was back {:?} after the parent restarted", restarted.elapsed());
    assert_eq!(on_child.call("echo", vec![Value::Str("again".into())], vec![]).await.expect("relayed"), "again".into());
    child.stop().await;
    parent.stop().await;
}

/// A Python easyrpc 0.251 `EasyRpcServer` (tests/peer/cluster_node.py) on a port of its own,
/// serving `py_func` and `py_gen` in namespace `peer`, linked as a child to `parent` if given.
struct PythonNode {
    process: tokio::process::Child,
    url: String,
}

impl PythonNode {
    async fn start(parent: Option<&TestServer>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let mut command = tokio::process::Command::new(easyrpc_tests::python_with_easyrpc());
        command
            .arg(easyrpc_tests::peer_dir().join("cluster_node.py"))
            .args(["--port", &port.to_string(), "--path", "/ws/py", "--secret", SECRET, "--namespace", "peer"])
            .kill_on_drop(true)
            .stdout(std::process::Stdio::null());
        if let Some(parent) = parent {
            command.args(["--parent", &parent.addr.to_string(), "--parent-path", easyrpc_tests::PATH]);
        }
        let process = command.spawn().expect("python runs");
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(60), "the Python server did not listen on {port}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { process, url: format!("ws://127.0.0.1:{port}/ws/py") }
    }
}

/// Waits (a bounded while, a Python server being slower to start) until `proxy` sees `name`.
async fn until_listed_slowly(proxy: &EasyRpcProxy, name: &str) {
    let started = Instant::now();
    while proxy.function(name).is_none() {
        assert!(started.elapsed() < Duration::from_secs(75), "{name} never listed");
        tokio::time::sleep(Duration::from_millis(100)).await;
        proxy.refresh().await.expect("lists");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_server_joins_our_host_as_a_child() {
    let host = host("peer", None).await;
    let mut python = PythonNode::start(Some(&host)).await;
    let client = EasyRpcProxy::connect(&host.url(), SECRET, "peer").await.expect("connects");
    until_listed_slowly(&client, "py_func").await;
    let answer = client.call("py_func", vec![Value::Str("down".into())], vec![]).await.expect("relayed down");
    assert_eq!(json::to_string(&answer), r#"{"py":"down"}"#);
    let stream = client.stream("py_gen", vec![Value::Int(3)], vec![]).await.expect("opens");
    let items: Vec<Value> = stream.map(|i| i.expect("an item")).collect().await;
    assert_eq!(items, [Value::Int(0), Value::Int(1), Value::Int(2)]);
    // The Python child goes away: its functions leave the namespace.
    python.process.kill().await.expect("killed");
    until_listed(&client, "py_func", false).await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_host_joins_a_python_server_as_a_child() {
    let python = PythonNode::start(None).await;
    let mut snapshot = easyrpc::registry::RegistrySnapshot::default();
    snapshot.add_module("peer", &easyrpc_tests::load("peer"));
    let mut config = easyrpc::server::ServerConfig::single(easyrpc_tests::PATH, SECRET);
    config.links.push(peer_link(python.url.clone()));
    let host = TestServer::with_config(snapshot, config).await;
    // Up: our client on our host calls the Python parent's function.
    let on_host = EasyRpcProxy::connect(&host.url(), SECRET, "peer").await.expect("connects");
    until_listed_slowly(&on_host, "py_func").await;
    let answer = on_host.call("py_func", vec![Value::Int(7)], vec![]).await.expect("relayed up");
    assert_eq!(json::to_string(&answer), r#"{"py":7}"#);
    // Down: a client of the Python parent calls our host's function through it.
    let on_python = EasyRpcProxy::connect(&python.url, SECRET, "peer").await.expect("connects to Python");
    until_listed_slowly(&on_python, "concat").await;
    let joined = on_python.call("concat", vec!["a".into(), "b".into()], vec![]).await.expect("relayed down");
    assert_eq!(joined, Value::Str("a-b".into()));
    host.stop().await;
}

/// Waits until `host` offers `function` in namespace `peer` (or no longer does); how long it
/// took. Polls the registry, which is what the host's callers see.
async fn until_offered(host: &TestServer, function: &str, offered: bool) -> Duration {
    let started = Instant::now();
    while host.registry.snapshot().resolve("peer", function).is_some() != offered {
        assert!(started.elapsed() < Duration::from_secs(5), "{function} offered: {}, wanted {offered}", !offered);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_four_hosts_calls_end_to_end_and_pushes_changes_three_hops() {
    // A <- B <- C <- D, each with a module of its own in namespace `peer`.
    let a = host("peer", None).await;
    let b = host("math", Some(&a)).await;
    let c = host("swap_v1", Some(&b)).await;
    let d = host("hostile", Some(&c)).await;
    let on_d = EasyRpcProxy::connect(&d.url(), SECRET, "peer").await.expect("connects");
    let on_a = EasyRpcProxy::connect(&a.url(), SECRET, "peer").await.expect("connects");
    until_listed(&on_d, "echo", true).await;
    until_listed(&on_a, "bump", true).await;
    assert_eq!(on_d.call("echo", vec!["three hops up".into()], vec![]).await.expect("D -> A"), "three hops up".into());
    assert_eq!(on_a.call("ok", vec![], vec![]).await.expect("A -> D"), "ok".into());
    assert_eq!(on_a.call("version", vec![], vec![]).await.expect("A -> C"), "v1".into());

    // A change on A reaches D three hops down by push, and one on D reaches A.
    let mut with_extra = easyrpc::registry::RegistrySnapshot::default();
    with_extra.add_module("peer", &easyrpc_tests::load("peer"));
    with_extra.add_module("peer", &easyrpc_tests::load("swap_v2"));
    a.registry.publish(with_extra);
    let down = until_offered(&d, "extra", true).await;
    let mut without_ok = easyrpc::registry::RegistrySnapshot::default();
    without_ok.add_module("peer", &easyrpc_tests::load("math"));
    d.registry.publish(without_ok);
    let up = until_offered(&a, "ok", false).await;
    println!("a change reached the host three hops away in {down:?} (down) and {up:?} (up)");
    assert!(down < Duration::from_secs(1) && up < Duration::from_secs(1), "down {down:?}, up {up:?}");
    for host in [d, c, b, a] {
        host.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_call_that_went_round_too_many_hosts_or_outlived_its_caller_is_refused() {
    let parent = host("peer", None).await;
    let child = host("math", Some(&parent)).await;
    let on_child = EasyRpcProxy::connect(&child.url(), SECRET, "peer").await.expect("connects");
    until_listed(&on_child, "echo", true).await;
    let mut raw = easyrpc_tests::RawClient::connect(&child, "peer").await;
    // A call that says it already passed through 16 hosts is not passed on again.
    let looped = raw.request("r-1", r#"{"action": "echo", "args": ["x"], "easyrpc_hops": 16}"#).await;
    let text = looped.as_str().unwrap_or_default();
    assert!(text.starts_with("LoopRefused('echo was passed on through 16 hosts"), "{looped:?}");
    // The child's own functions still run for it: only passing it on is refused.
    let own = raw.request("r-2", r#"{"action": "mul", "args": [2.0, 3.0], "easyrpc_hops": 16}"#).await;
    assert_eq!(own, Value::Float(6.0));
    // A caller that no longer waits is not served.
    let late = raw.request("r-3", r#"{"action": "echo", "args": ["x"], "easyrpc_deadline_ms": 0}"#).await;
    assert!(late.as_str().unwrap_or_default().starts_with("Timeout('the caller stopped waiting for echo"), "{late:?}");
    let in_time = raw.request("r-4", r#"{"action": "echo", "args": ["y"], "easyrpc_deadline_ms": 5000}"#).await;
    assert_eq!(in_time, Value::Str("y".into()));
    child.stop().await;
    parent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_reaches_only_the_namespace_its_secret_opens() {
    use easyrpc::registry::{NamespacePolicy, PolicyConfig, RegistrySnapshot};
    let tenant =
        |secret: &str| NamespacePolicy::new(PolicyConfig { secret: Some(secret.into()), ..Default::default() });
    let mut snapshot = RegistrySnapshot::default();
    snapshot.set_policy("alpha", tenant("alpha-secret"));
    snapshot.set_policy("beta", tenant("beta-secret"));
    snapshot.add_module("alpha", &easyrpc_tests::load("peer"));
    snapshot.add_module("beta", &easyrpc_tests::load("swap_v1"));
    let parent =
        TestServer::with_config(snapshot, easyrpc::server::ServerConfig::single(easyrpc_tests::PATH, SECRET)).await;
    // The child links its `alpha` with alpha's own secret.
    let mut child_snapshot = RegistrySnapshot::default();
    child_snapshot.add_module("alpha", &easyrpc_tests::load("math"));
    let mut config = easyrpc::server::ServerConfig::single(easyrpc_tests::PATH, SECRET);
    config.links.push(easyrpc::cluster::parent::LinkConfig {
        url: parent.url(),
        secret: "alpha-secret".into(),
        namespace: "alpha".into(),
        ca_file: None,
    });
    let child = TestServer::with_config(child_snapshot, config).await;
    let started = Instant::now();
    while child.registry.snapshot().resolve("alpha", "echo").is_none() {
        assert!(started.elapsed() < Duration::from_secs(5), "the link never came up");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    while parent.registry.snapshot().resolve("alpha", "mul").is_none() {
        assert!(started.elapsed() < Duration::from_secs(5), "the child's functions never reached alpha");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let names = |host: &TestServer, ns: &str| -> Vec<String> {
        host.registry.snapshot().listing(ns).iter().map(|d| d.name.clone()).collect()
    };
    assert!(
        !names(&child, "alpha").contains(&"version".to_owned()),
        "beta's functions crossed: {:?}",
        names(&child, "alpha")
    );
    assert!(
        !names(&parent, "beta").contains(&"mul".to_owned()),
        "the child reached beta: {:?}",
        names(&parent, "beta")
    );
    assert!(child.registry.snapshot().namespace("beta").is_none(), "nothing of beta on the child");

    // A link signed with another tenant's secret gets nowhere.
    let mut config = easyrpc::server::ServerConfig::single(easyrpc_tests::PATH, SECRET);
    config.links.push(easyrpc::cluster::parent::LinkConfig {
        url: parent.url(),
        secret: "beta-secret".into(),
        namespace: "alpha".into(),
        ca_file: None,
    });
    let mut intruder_snapshot = RegistrySnapshot::default();
    intruder_snapshot.add_module("alpha", &easyrpc_tests::load("hostile"));
    let intruder = TestServer::with_config(intruder_snapshot, config).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(intruder.registry.snapshot().resolve("alpha", "echo").is_none(), "alpha opened to beta's secret");
    assert!(parent.registry.snapshot().resolve("alpha", "spin").is_none(), "the intruder's functions reached alpha");
    for host in [intruder, child, parent] {
        host.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_chain_ours_python_ours_calls_end_to_end() {
    // A (ours) <- P (Python EasyRpcServer) <- C (ours).
    let a = host("peer", None).await;
    let python = PythonNode::start(Some(&a)).await;
    let mut snapshot = easyrpc::registry::RegistrySnapshot::default();
    snapshot.add_module("peer", &easyrpc_tests::load("math"));
    let mut config = easyrpc::server::ServerConfig::single(easyrpc_tests::PATH, SECRET);
    config.links.push(peer_link(python.url.clone()));
    let c = TestServer::with_config(snapshot, config).await;
    let on_c = EasyRpcProxy::connect(&c.url(), SECRET, "peer").await.expect("connects");
    let on_a = EasyRpcProxy::connect(&a.url(), SECRET, "peer").await.expect("connects");
    // The Python host relays listings only at its 30 s refresh: allow for one.
    until_listed_slowly(&on_c, "echo").await;
    assert_eq!(on_c.call("echo", vec!["via python".into()], vec![]).await.expect("C -> P -> A"), "via python".into());
    let answer = on_c.call("py_func", vec![Value::Int(1)], vec![]).await.expect("C -> P");
    assert_eq!(json::to_string(&answer), r#"{"py":1}"#);
    until_listed_slowly(&on_a, "mul").await;
    let product = on_a.call("mul", vec![Value::Float(3.0), Value::Float(4.0)], vec![]).await.expect("A -> P -> C");
    assert_eq!(product, Value::Float(12.0));
    c.stop().await;
    a.stop().await;
}

/// A <- B <- C under load from a client on C calling A's function; B is killed (its sockets
/// drop without a close) and comes back on its port. Calls fail fast while B is away (none hangs) and succeed again once the links
/// are back, with no operator action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_middle_host_of_a_chain_is_killed_and_restarted_under_load() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let a = host("peer", None).await;
    let b = host("math", Some(&a)).await;
    let c = host("swap_v1", Some(&b)).await;
    let on_c = Arc::new(EasyRpcProxy::connect(&c.url(), SECRET, "peer").await.expect("connects"));
    until_listed(&on_c, "echo", true).await;

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let slowest_failure = Arc::new(std::sync::Mutex::new(Duration::ZERO));
    let mut load = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (on_c, stop, ok, failed, slowest) =
            (on_c.clone(), stop.clone(), ok.clone(), failed.clone(), slowest_failure.clone());
        load.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                match on_c.call("echo", vec!["x".into()], vec![]).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => {
                        let took = started.elapsed();
                        let mut slowest = slowest.lock().unwrap();
                        *slowest = (*slowest).max(took);
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = ok.load(Ordering::Relaxed);
    assert!(before > 0, "calls went through before the stop");

    let b_addr = b.addr;
    b.kill().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let failed_while_away = failed.load(Ordering::Relaxed);
    // B back on its port: A accepts its link again, C dials it again by itself.
    let listener = tokio::net::TcpListener::bind(b_addr).await.expect("B's port again");
    let mut snapshot = easyrpc::registry::RegistrySnapshot::default();
    snapshot.add_module("peer", &easyrpc_tests::load("math"));
    let mut config = easyrpc::server::ServerConfig::single(easyrpc_tests::PATH, SECRET);
    config.links.push(peer_link(a.url()));
    let restarted = Instant::now();
    let b =
        TestServer::serve_on(listener, std::sync::Arc::new(easyrpc::registry::Registry::new(snapshot)), None, config);
    let ok_at_restart = ok.load(Ordering::Relaxed);
    while ok.load(Ordering::Relaxed) == ok_at_restart {
        assert!(restarted.elapsed() < Duration::from_secs(10), "calls never succeeded again");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let recovered = restarted.elapsed();
    stop.store(true, Ordering::Relaxed);
    while load.join_next().await.is_some() {}
    let slowest = *slowest_failure.lock().unwrap();
    println!(
        "calls: {} ok, {} failed while B was away (slowest failure {slowest:?}); calls succeeded again {recovered:?} after B restarted",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    assert!(failed_while_away > 0, "B's absence was seen");
    assert!(slowest < Duration::from_secs(1), "a failing call waited {slowest:?}");
    for host in [c, b, a] {
        host.stop().await;
    }
}

/// A relayed generator given up mid-way is closed at every hop at once, not at each host's
/// idle timeout: A allows one open generator in all, and a client of A opens one as soon as
/// the client of C that held A's only generator (two hops away) goes away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_generator_given_up_is_closed_at_every_hop() {
    let mut snapshot = easyrpc::registry::RegistrySnapshot::default();
    snapshot.add_module("peer", &easyrpc_tests::load("peer"));
    let mut config = easyrpc::server::ServerConfig::single(easyrpc_tests::PATH, SECRET);
    config.limits.max_open_generators = 1;
    let a = TestServer::with_config(snapshot, config).await;
    let b = host("math", Some(&a)).await;
    let c = host("swap_v1", Some(&b)).await;
    let on_c = EasyRpcProxy::connect(&c.url(), SECRET, "peer").await.expect("connects");
    until_listed(&on_c, "count", true).await;
    let mut stream = on_c.stream("count", vec![Value::Int(1000)], vec![]).await.expect("opens two hops away");
    assert_eq!(stream.next().await.expect("an item").expect("an item"), Value::Int(0));
    assert_eq!(stream.next().await.expect("an item").expect("an item"), Value::Int(1));
    let on_a = EasyRpcProxy::connect(&a.url(), SECRET, "peer").await.expect("connects");
    match on_a.stream("count", vec![Value::Int(1)], vec![]).await {
        Err(ClientError::Remote(text)) => assert!(text.starts_with("Busy("), "{text}"),
        other => panic!("A's one generator is taken, yet: {:?}", other.map(|_| ())),
    }
    drop(stream);
    drop(on_c);
    let given_up = Instant::now();
    loop {
        match on_a.stream("count", vec![Value::Int(1)], vec![]).await {
            Ok(stream) => {
                let items: Vec<_> = stream.collect().await;
                assert_eq!(items.len(), 1);
                break;
            }
            Err(e) => assert!(given_up.elapsed() < Duration::from_secs(2), "still taken: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("A's generator was free {:?} after the client two hops away gave up", given_up.elapsed());
    for host in [c, b, a] {
        host.stop().await;
    }
}

/// A ring of three hosts with namespace groups, as the Python original's ring: on each host
/// group `ring` = [left, right] holds the host's module; B links to A and C to B on `left`, A
/// to C on `right`. A client on A's `ring` reaches every function; when B goes away, C's
/// functions are still reached through `right`, with no failed call once A has seen the drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_of_groups_fails_over_when_a_link_drops() {
    use easyrpc::cluster::parent::LinkConfig;
    use easyrpc::registry::{Group, RegistrySnapshot};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    async fn ring_host(module: &str, listener: tokio::net::TcpListener, links: Vec<LinkConfig>) -> TestServer {
        let mut snapshot = RegistrySnapshot::default();
        snapshot.add_group("ring", Group { members: vec!["left".into(), "right".into()], secret: None });
        snapshot.add_module("ring", &easyrpc_tests::load(module));
        let mut config = easyrpc::server::ServerConfig::single(easyrpc_tests::PATH, SECRET);
        config.links = links;
        TestServer::serve_on(listener, Arc::new(easyrpc::registry::Registry::new(snapshot)), None, config)
    }
    let bind = || async { tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind") };
    let (la, lb, lc) = (bind().await, bind().await, bind().await);
    let url = |l: &tokio::net::TcpListener| format!("ws://{}{}", l.local_addr().unwrap(), easyrpc_tests::PATH);
    let link = |to: &tokio::net::TcpListener, namespace: &str| LinkConfig {
        url: url(to),
        secret: SECRET.into(),
        namespace: namespace.into(),
        ca_file: None,
    };
    let (to_a_left, to_b_left, to_c_right) = (link(&la, "left"), link(&lb, "left"), link(&lc, "right"));
    let a = ring_host("peer", la, vec![to_c_right]).await;
    let b = ring_host("math", lb, vec![to_a_left]).await;
    let c = ring_host("swap_v1", lc, vec![to_b_left]).await;

    let on_a = Arc::new(EasyRpcProxy::connect(&a.url(), SECRET, "ring").await.expect("connects"));
    until_listed(&on_a, "mul", true).await;
    until_listed(&on_a, "version", true).await;
    assert_eq!(on_a.call("version", vec![], vec![]).await.expect("C's, on A"), "v1".into());
    assert_eq!(
        on_a.call("mul", vec![Value::Float(2.0), Value::Float(5.0)], vec![]).await.expect("B's"),
        Value::Float(10.0)
    );

    // Load on A for C's function while B goes away.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    // When the last call that failed was made: calls made before A saw the drop may fail (they
    // were on their way over the dropped link); none made after it may.
    let last_failure = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let mut load = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (on_a, stop, ok, failed, last_failure) =
            (on_a.clone(), stop.clone(), ok.clone(), failed.clone(), last_failure.clone());
        load.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let made = Instant::now();
                match on_a.call("version", vec![], vec![]).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => {
                        *last_failure.lock().unwrap() = Some(made);
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    b.stop().await;
    // A sees the drop once B's own function leaves its namespaces.
    until_offered_in(&a, "left", "mul", false).await;
    let seen = Instant::now();
    let ok_at_seen = ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    while load.join_next().await.is_some() {}
    let failed_after_seen = last_failure.lock().unwrap().is_some_and(|t| t > seen);
    println!(
        "ring failover: {} calls made before A saw the drop failed, {} succeeded after it",
        failed.load(Ordering::Relaxed),
        ok.load(Ordering::Relaxed) - ok_at_seen
    );
    assert!(!failed_after_seen, "a call made after A had seen the drop failed");
    assert!(ok.load(Ordering::Relaxed) > ok_at_seen, "calls went on through `right`");
    assert_eq!(on_a.call("version", vec![], vec![]).await.expect("through right"), "v1".into());
    for host in [c, a] {
        host.stop().await;
    }
}

/// Waits until `host` offers `function` in `namespace` (or no longer does).
async fn until_offered_in(host: &TestServer, namespace: &str, function: &str, offered: bool) {
    let started = Instant::now();
    while host.registry.snapshot().resolve(namespace, function).is_some() != offered {
        assert!(started.elapsed() < Duration::from_secs(5), "{function} in {namespace}: wanted {offered}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A fork: B, C and D are children of A. Every host reaches every function: a child reaches
/// its siblings' through the parent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_of_one_parent_and_three_children_reaches_every_function() {
    let a = host("peer", None).await;
    let b = host("math", Some(&a)).await;
    let c = host("swap_v1", Some(&a)).await;
    let d = host("hostile", Some(&a)).await;
    let on_b = EasyRpcProxy::connect(&b.url(), SECRET, "peer").await.expect("connects");
    for function in ["echo", "version", "bump"] {
        until_listed(&on_b, function, true).await;
    }
    assert_eq!(on_b.call("version", vec![], vec![]).await.expect("B -> A -> C"), "v1".into());
    assert_eq!(on_b.call("ok", vec![], vec![]).await.expect("B -> A -> D"), "ok".into());
    assert_eq!(on_b.call("echo", vec!["parent".into()], vec![]).await.expect("B -> A"), "parent".into());
    let on_a = EasyRpcProxy::connect(&a.url(), SECRET, "peer").await.expect("connects");
    for function in ["mul", "version", "ok"] {
        until_listed(&on_a, function, true).await;
    }
    assert_eq!(
        on_a.call("mul", vec![Value::Float(1.5), Value::Float(2.0)], vec![]).await.expect("A -> B"),
        Value::Float(3.0)
    );
    for host in [d, c, b, a] {
        host.stop().await;
    }
}

/// Two hosts each the other's parent for one namespace (A -> B -> A): every function is
/// reached once, no host learns its own functions back, and a call of a function that is
/// nowhere fails at once instead of going round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_linked_to_each_other_call_without_circulating() {
    let (la, lb) = (
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    );
    let url = |l: &tokio::net::TcpListener| format!("ws://{}{}", l.local_addr().unwrap(), easyrpc_tests::PATH);
    let serve = |module: &str, listener: tokio::net::TcpListener, parent: String| {
        let mut snapshot = easyrpc::registry::RegistrySnapshot::default();
        snapshot.add_module("peer", &easyrpc_tests::load(module));
        let mut config = easyrpc::server::ServerConfig::single(easyrpc_tests::PATH, SECRET);
        config.links.push(peer_link(parent));
        TestServer::serve_on(listener, std::sync::Arc::new(easyrpc::registry::Registry::new(snapshot)), None, config)
    };
    let (url_a, url_b) = (url(&la), url(&lb));
    let a = serve("peer", la, url_b);
    let b = serve("math", lb, url_a);
    let on_a = EasyRpcProxy::connect(&a.url(), SECRET, "peer").await.expect("connects");
    until_listed(&on_a, "mul", true).await;
    assert_eq!(
        on_a.call("mul", vec![Value::Float(3.0), Value::Float(3.0)], vec![]).await.expect("A -> B"),
        Value::Float(9.0)
    );
    assert_eq!(on_a.call("echo", vec!["own".into()], vec![]).await.expect("A's own"), "own".into());
    // Each host lists each function once: its own, and the other's once, over one link.
    let names: Vec<String> = a.registry.snapshot().listing("peer").iter().map(|d| d.name.clone()).collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(names.len(), unique.len(), "{names:?}");
    let origins: Vec<String> = ["echo", "mul"]
        .iter()
        .map(|f| a.registry.snapshot().resolve("peer", f).expect("offered").2.origin().to_string())
        .collect();
    assert!(origins[0].starts_with("module"), "A's echo is A's own: {origins:?}");
    let started = Instant::now();
    let mut raw = easyrpc_tests::RawClient::connect(&a, "peer").await;
    let nowhere = raw.request("n-1", r#"{"action": "nowhere", "args": []}"#).await;
    assert!(
        nowhere.get("error").and_then(Value::as_str).unwrap_or_default().starts_with("no action nowhere"),
        "{nowhere:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    a.stop().await;
    b.stop().await;
}

/// A child that never answers holds no caller past the namespace's call deadline (300 ms here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_over_a_link_that_is_never_answered_times_out() {
    let limits = easyrpc::runtime::CallLimits { deadline: Duration::from_millis(300), ..Default::default() };
    let policy = easyrpc::registry::PolicyConfig { limits, ..Default::default() };
    let mut snapshot = easyrpc::registry::RegistrySnapshot::with_default_policy(policy);
    snapshot.add_module("peer", &easyrpc_tests::load("peer"));
    let server =
        TestServer::with_config(snapshot, easyrpc::server::ServerConfig::single(easyrpc_tests::PATH, SECRET)).await;
    let listing = child_listing(&server).await;
    let mut child = Child::connect(&server).await;
    child.answer_listing(&listing).await;
    let client = EasyRpcProxy::connect(&server.url(), SECRET, "peer").await.expect("connects");
    until_listed(&client, "remote_add", true).await;
    let started = Instant::now();
    let call = client.call("remote_add", vec![Value::Int(1)], vec![]);
    let (answer, down) = tokio::join!(call, child.next_request());
    assert_eq!(down.action, "remote_add", "the call went down and was never answered");
    match answer {
        Err(ClientError::Remote(text)) => assert!(text.starts_with("Timeout('remote_add on child child-1"), "{text}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    server.stop().await;
}

/// A child that announces changes without end (a notice after every listing) gets at most one
/// listing per MIN_RELIST_GAP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_change_notices_costs_one_listing_per_gap() {
    let server = TestServer::start(&[("peer", &["peer"])]).await;
    let listing = child_listing(&server).await;
    let mut child = Child::connect(&server).await;
    child.answer_listing(&listing).await;
    let wire::Frame::Text(notice) = wire::functions_changed(Serialization::Json) else { panic!("json is text") };
    let window = Duration::from_millis(400);
    let started = Instant::now();
    let mut listings = 0;
    while started.elapsed() < window {
        child.ws.send(WsMessage::text(notice.clone())).await.expect("sent");
        let Ok(down) = tokio::time::timeout(window.saturating_sub(started.elapsed()), child.next_request()).await
        else {
            break;
        };
        assert_eq!(down.action, "get_registered_functions");
        child.answer(&down.request_id, &listing).await;
        listings += 1;
    }
    let most = (window.as_millis() / easyrpc::cluster::MIN_RELIST_GAP.as_millis()) as usize + 2;
    println!("a notice after every listing: {listings} listings in {window:?}");
    assert!(listings >= 2 && listings <= most, "{listings} listings, between 2 and {most} expected");
    server.stop().await;
}
