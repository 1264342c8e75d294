//! Namespace groups and tenants: group listing, first-member dispatch and fallback (module
//! removed, module failing to load), per-namespace secrets tried by every path (direct, group,
//! guessed generator ids, crafted request ids), per-namespace limits (deadline, memory,
//! concurrent calls with a bounded queue, open generators, frame size), and namespaces that
//! reuse instances between their calls.

use easyrpc::client::{ClientError, EasyRpcProxy};
use easyrpc::value::Value;
use easyrpc::wire::Serialization;
use easyrpc_tests::{j, serve_config, RawClient, SECRET};
use std::time::Duration;

const TENANTS: &str = r#"
[[namespace]]
name = "alpha"
secret = "alpha-secret"

[[namespace]]
name = "beta"
secret = "beta-secret"

[[group]]
name = "both"
members = ["alpha", "beta"]
secret = "both-secret"

[[group]]
name = "ordered"
members = ["m", "p"]

[[module]]
file = "{peer}"
namespaces = ["alpha", "p", "public"]

[[module]]
file = "{math}"
namespaces = ["beta", "m"]

[[module]]
file = "{hostile}"
namespaces = ["both"]
"#;

async fn connect(
    server: &easyrpc_tests::TestServer,
    namespace: &str,
    secret: &str,
) -> Result<EasyRpcProxy, ClientError> {
    EasyRpcProxy::connect(&server.url(), secret, namespace).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_lists_every_member_and_calls_the_first_that_serves() {
    let (server, failures) = serve_config(TENANTS).await;
    assert!(failures.is_empty());
    let both = connect(&server, "both", "both-secret").await.unwrap();
    let names: Vec<String> = both.functions().iter().map(|d| d.name.clone()).collect();
    assert!(names.contains(&"echo".to_owned()) && names.contains(&"distance".to_owned()), "{names:?}");
    assert_eq!(names.iter().filter(|n| *n == "add").count(), 1, "one entry per name: the serving member's");
    assert_eq!(both.call("echo", vec![1.into()], vec![]).await.unwrap(), Value::Int(1));
    let d =
        both.call("distance", vec![j_value(r#"{"x":0,"y":0}"#), j_value(r#"{"x":3,"y":4}"#)], vec![]).await.unwrap();
    assert_eq!(d, Value::Float(5.0));

    // A module deployed into a group is in every member.
    for (ns, secret) in [("alpha", "alpha-secret"), ("beta", "beta-secret")] {
        let member = connect(&server, ns, secret).await.unwrap();
        assert_eq!(member.call("ok", vec![], vec![]).await.unwrap(), Value::Str("ok".into()), "{ns}");
    }

    // Same name in both members: the first in declared order (m: math.add wraps at 2^31).
    let ordered = connect(&server, "ordered", SECRET).await.unwrap();
    let r = ordered.call("add", vec![2147483647.into(), 1.into()], vec![]).await.unwrap();
    assert_eq!(r, Value::Int(-2147483648));

    // The first member's module is removed: the same call falls back to p (peer.add, s64).
    let mut snapshot = (*server.registry.snapshot()).clone();
    snapshot.remove_module("math");
    server.registry.publish(snapshot);
    ordered.refresh().await.unwrap();
    let r = ordered.call("add", vec![2147483647.into(), 1.into()], vec![]).await.unwrap();
    assert_eq!(r, Value::Int(2147483648));
    server.stop().await;
}

fn j_value(text: &str) -> Value {
    easyrpc_tests::v(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_module_fails_to_load_falls_back() {
    let garbage = std::env::temp_dir().join(format!("easyrpc-garbage-{}.wasm", std::process::id()));
    std::fs::write(&garbage, b"\0asm\x0d\0\x01\0 definitely not a component").unwrap();
    let config = format!(
        r#"
[[group]]
name = "ordered"
members = ["m", "p"]

[[module]]
file = "{}"
namespaces = ["m"]

[[module]]
file = "{{peer}}"
namespaces = ["p"]
"#,
        garbage.display()
    );
    let (server, failures) = serve_config(&config).await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].contains("failed to compile"), "{failures:?}");
    let ordered = connect(&server, "ordered", SECRET).await.unwrap();
    assert_eq!(ordered.call("add", vec![1.into()], vec![]).await.unwrap(), Value::Int(3));
    let _ = std::fs::remove_file(&garbage);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_only_reach_their_own_namespace() {
    let (server, _) = serve_config(TENANTS).await;
    let refused = |r: Result<EasyRpcProxy, ClientError>, what: &str| match r {
        Err(ClientError::Auth(_)) => {}
        Err(other) => panic!("{what}: expected an auth error, got {other:?}"),
        Ok(_) => panic!("{what}: connected"),
    };
    assert!(connect(&server, "alpha", "alpha-secret").await.is_ok());
    assert!(connect(&server, "alpha", SECRET).await.is_ok(), "the admin secret opens every namespace");
    refused(connect(&server, "alpha", "beta-secret").await, "beta's secret on alpha");
    refused(connect(&server, "beta", "alpha-secret").await, "alpha's secret on beta");
    refused(connect(&server, "both", "alpha-secret").await, "a member's secret on the group");
    refused(connect(&server, "public", "alpha-secret").await, "a tenant secret on a namespace without its own");
    refused(connect(&server, "nowhere", "alpha-secret").await, "a tenant secret on an unknown namespace");
    assert!(connect(&server, "both", "both-secret").await.is_ok());

    // Guessed generator ids: beta cannot step alpha's generator.
    let mut alpha = RawClient::connect_as(&server, "alpha", Serialization::Json, "alpha-secret").await;
    let start = alpha.request("gen-1", r#"{"action": "count", "args": [3]}"#).await;
    assert_eq!(j(&start), r#"{"GENERATOR_START":"gen-1"}"#);
    let mut beta = RawClient::connect_as(&server, "beta", Serialization::Json, "beta-secret").await;
    let stolen = beta.request("gen-1", r#"{"action": "GENERATOR_NEXT", "generator_id": "gen-1"}"#).await;
    assert_eq!(stolen.get("error").and_then(Value::as_str), Some("no open generator gen-1 on this connection"));
    // Beta cannot call alpha's functions by name either.
    let call = beta.request("c1", r#"{"action": "echo", "args": ["x"]}"#).await;
    assert!(
        call.get("error").and_then(Value::as_str).unwrap_or_default().starts_with("no action echo"),
        "{}",
        j(&call)
    );

    // Crafted request ids: the same id on two connections; each gets only its own answer.
    alpha.send_request("same", r#"{"action": "slow", "args": [0.3, "alpha"]}"#).await;
    let theirs = beta.request("same", r#"{"action": "add", "args": [1, 2]}"#).await;
    assert_eq!(theirs, Value::Int(3));
    assert_eq!(alpha.response("same").await, Value::Str("alpha".into()));
    let next = r#"{"action": "GENERATOR_NEXT", "generator_id": "gen-1"}"#;
    assert_eq!(alpha.request("gen-1", next).await, Value::Int(0), "alpha's generator untouched");
    server.stop().await;
}

const LIMITED: &str = r#"
[[namespace]]
name = "tight"
call_deadline_ms = 200
memory_mib = 4
max_concurrent_calls = 2
max_queued_calls = 2
max_open_generators = 1
max_frame_bytes = 1024

[[module]]
file = "{hostile}"
namespaces = ["tight", "roomy"]

[[module]]
file = "{peer}"
namespaces = ["tight", "roomy"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_have_their_own_limits() {
    let (server, _) = serve_config(LIMITED).await;
    let tight = std::sync::Arc::new(connect(&server, "tight", SECRET).await.unwrap());
    let roomy = connect(&server, "roomy", SECRET).await.unwrap();
    let remote = |r: Result<Value, ClientError>| match r {
        Err(ClientError::Remote(text)) => text,
        other => panic!("expected a remote error, got {other:?}"),
    };
    // Deadline and memory: the tight tenant's, not the host defaults.
    assert!(
        remote(tight.call("spin", vec![], vec![]).await).starts_with("Timeout('spin exceeded its deadline of 200ms")
    );
    // 4 MiB, not more: the bomb must reach the limit well within the 200 ms deadline also on
    // a loaded machine (filling 16 MiB can take long enough there to end as a timeout).
    let oom = remote(tight.call("memory_bomb", vec![], vec![]).await);
    assert!(oom.contains(&format!("limit of {} bytes", 4 << 20)), "{oom}");
    // The roomy tenant (defaults) is not bound by them.
    assert_eq!(
        roomy.call("slow", vec![Value::Float(0.3), "ok".into()], vec![]).await.unwrap(),
        Value::Str("ok".into())
    );

    // Two calls run, two wait, the rest are turned away at once.
    let mut calls = Vec::new();
    for i in 0..6 {
        let tight = tight.clone();
        calls.push(tokio::spawn(async move {
            tight.call("slow", vec![Value::Float(0.15), Value::Str(format!("t{i}"))], vec![]).await
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut ok = 0;
    let mut busy = 0;
    for c in calls {
        match c.await.unwrap() {
            Ok(_) => ok += 1,
            Err(ClientError::Remote(text)) if text.starts_with("Busy(") => busy += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((ok, busy), (4, 2));

    // One open generator per tight connection set; roomy is not affected.
    let _g = tight.stream("count", vec![5.into()], vec![]).await.unwrap();
    assert!(remote_stream(tight.stream("count", vec![5.into()], vec![]).await).starts_with("Busy("));
    assert!(roomy.stream("count", vec![5.into()], vec![]).await.is_ok());

    // Frames over the tenant's size limit close that connection only.
    let big = "x".repeat(4096);
    assert_eq!(tight.call("echo", vec![big.clone().into()], vec![]).await, Err(ClientError::Disconnected));
    assert_eq!(roomy.call("echo", vec![big.clone().into()], vec![]).await.unwrap(), Value::Str(big));
    server.stop().await;
}

fn remote_stream<T>(r: Result<T, ClientError>) -> String {
    match r {
        Err(ClientError::Remote(text)) => text,
        Err(other) => panic!("expected a remote error, got {other:?}"),
        Ok(_) => panic!("expected a remote error, it opened"),
    }
}

const REUSING: &str = r#"
[[namespace]]
name = "warm"
instances = "reused"
max_calls_per_instance = 3

[[namespace]]
name = "cold"

[[group]]
name = "warm_first"
members = ["warm", "cold"]

[[module]]
file = "{hostile}"
namespaces = ["warm", "cold"]
"#;

async fn bump(client: &EasyRpcProxy) -> Value {
    client.call("bump", vec![], vec![]).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_may_reuse_instances_and_keeps_them_to_itself() {
    // `bump` counts its calls in a global: in a reused instance the count goes on.
    let (server, failures) = serve_config(REUSING).await;
    assert!(failures.is_empty(), "{failures:?}");
    let warm = connect(&server, "warm", SECRET).await.unwrap();
    let cold = connect(&server, "cold", SECRET).await.unwrap();
    for expected in [1, 2, 3, 1, 2] {
        assert_eq!(bump(&warm).await, Value::Int(expected), "warm: three calls per instance");
        assert_eq!(bump(&cold).await, Value::Int(1), "cold: every call in a fresh instance");
    }
    // Through a group the calls are the member's: its instances, its count.
    let group = connect(&server, "warm_first", SECRET).await.unwrap();
    assert_eq!(bump(&group).await, Value::Int(3));
    // A second connection to the namespace is the same tenant: the same instances.
    let again = connect(&server, "warm", SECRET).await.unwrap();
    assert_eq!(bump(&again).await, Value::Int(1), "after max_calls_per_instance, a new instance");
    // A panic ends the instance; the caller gets its error, the next call a clean instance.
    assert_eq!(bump(&warm).await, Value::Int(2));
    match warm.call("panic", vec!["boom".into()], vec![]).await {
        Err(ClientError::Remote(text)) => assert!(text.contains("boom"), "{text}"),
        other => panic!("expected the panic, got {other:?}"),
    }
    assert_eq!(bump(&warm).await, Value::Int(1));
    server.stop().await;
}
