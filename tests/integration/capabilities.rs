//! Guest capabilities end to end, with real guests (modules/stateful, modules/chain) on a real
//! host: key-value state on both backends (the same suite: counters under contention, a
//! compare-and-swap loop, a work queue served by a pool of workers, batches, quotas), tenants
//! kept apart (by bucket name, through a group, through a link), settings, and functions calling
//! functions (a chain, across a cluster link, recursion cut at the depth bound, nested calls
//! under a full concurrency limit, the caller's deadline, what a namespace may not call).
//! Log lines and state across a restart are tested on the binary (host/tests/cli.rs).

use easyrpc::client::EasyRpcProxy;
use easyrpc::value::Value;
use easyrpc_tests::{j, python_with_easyrpc, serve_config, test_redis, TestServer, PATH, SECRET};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

async fn connect(server: &TestServer, namespace: &str) -> EasyRpcProxy {
    EasyRpcProxy::connect(&server.url(), SECRET, namespace).await.expect("connects")
}

fn s(text: &str) -> Value {
    Value::Str(text.to_owned())
}

/// A namespace name no earlier run used, for state kept in a shared Redis.
fn fresh_namespace(tag: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{tag}-{}-{nanos}", std::process::id())
}

/// A config serving stateful in `namespace` with key-value state on `keyvalue` (the lines of
/// its `[namespace.keyvalue]` table).
fn stateful_in(namespace: &str, keyvalue: &str) -> String {
    format!(
        r#"
[[namespace]]
name = "{namespace}"
grants = ["wasi:keyvalue", "wasi:logging", "wasi:config"]
[namespace.keyvalue]
{keyvalue}

[[module]]
file = "{{stateful}}"
namespaces = ["{namespace}"]
"#
    )
}

/// The suite both backends pass.
async fn state_suite(keyvalue: &str, tag: &str) {
    let ns = fresh_namespace(tag);
    let (server, failures) = serve_config(&stateful_in(&ns, keyvalue)).await;
    assert!(failures.is_empty(), "{failures:?}");

    // 1,000 increments from 8 connections end at exactly 1,000.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let client = connect(&server, &ns).await;
        tasks.push(tokio::spawn(async move {
            for _ in 0..125 {
                client.call("incr", vec![s("hits")], vec![]).await.expect("incr");
            }
        }));
    }
    for t in tasks {
        t.await.expect("incrementer");
    }
    let client = connect(&server, &ns).await;
    assert_eq!(client.call("get", vec![s("hits")], vec![]).await.unwrap(), s("1000"));

    // A compare-and-swap retry loop under contention loses no update.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let client = connect(&server, &ns).await;
        tasks.push(tokio::spawn(async move {
            let mut tries = 0;
            for _ in 0..25 {
                let r = client.call("cas_incr", vec![s("cas")], vec![]).await.expect("cas_incr");
                let Some(Value::Int(n)) = r.get("tries") else { panic!("tries in {r:?}") };
                tries += n;
            }
            tries
        }));
    }
    let mut tries = 0;
    for t in tasks {
        tries += t.await.expect("swapper");
    }
    assert_eq!(client.call("get", vec![s("cas")], vec![]).await.unwrap(), s("200"));
    println!("{tag}: 200 compare-and-swap increments from 8 connections took {tries} tries");

    // A work queue: 4 producers push 50 items each while 4 workers pop; every item is taken by
    // exactly one worker.
    let mut producers = Vec::new();
    for p in 0..4 {
        let client = connect(&server, &ns).await;
        producers.push(tokio::spawn(async move {
            for n in 0..50 {
                client.call("push", vec![s("jobs"), s(&format!("p{p}-{n}"))], vec![]).await.expect("push");
            }
        }));
    }
    let mut workers = Vec::new();
    for _ in 0..4 {
        let client = connect(&server, &ns).await;
        workers.push(tokio::spawn(async move {
            let mut taken = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut idle = 0;
            while Instant::now() < deadline && idle < 50 {
                match client.call("pop", vec![s("jobs")], vec![]).await.expect("pop") {
                    Value::None => {
                        idle += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    item => {
                        idle = 0;
                        taken.push(item.as_str().expect("an item").to_owned());
                    }
                }
            }
            taken
        }));
    }
    for p in producers {
        p.await.expect("producer");
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.expect("worker"));
    }
    let distinct: BTreeSet<&String> = all.iter().collect();
    assert_eq!(all.len(), 200, "every item taken once: {} taken, {} distinct", all.len(), distinct.len());
    assert_eq!(distinct.len(), 200, "no item taken twice");
    assert_eq!(client.call("pop", vec![s("jobs")], vec![]).await.unwrap(), Value::None, "the queue is empty");

    // Batches and listing.
    let pairs = Value::Dict(vec![("a".into(), s("1")), ("b".into(), s("2"))]);
    assert_eq!(client.call("set_many", vec![pairs], vec![("bucket".into(), s("batch"))]).await.unwrap(), true.into());
    let got = client
        .call("get_many", vec![Value::List(vec![s("a"), s("zz"), s("b")])], vec![("bucket".into(), s("batch"))])
        .await
        .unwrap();
    assert_eq!(j(&got), r#"{"a":"1","b":"2"}"#);
    let keys = client.call("keys", vec![], vec![("bucket".into(), s("batch"))]).await.unwrap();
    assert_eq!(j(&keys), r#"["a","b"]"#);
    client.call("delete", vec![s("a")], vec![("bucket".into(), s("batch"))]).await.unwrap();
    let keys = client.call("keys", vec![], vec![("bucket".into(), s("batch"))]).await.unwrap();
    assert_eq!(j(&keys), r#"["b"]"#);

    // list-keys pages: 1,500 keys come back once each, in order, over two pages.
    for half in 0..2 {
        let pairs = (0..750).map(|i| (format!("key{:05}", half * 750 + i), s("v"))).collect();
        client.call("set_many", vec![Value::Dict(pairs)], vec![("bucket".into(), s("many"))]).await.unwrap();
    }
    let Value::List(keys) = client.call("keys", vec![], vec![("bucket".into(), s("many"))]).await.unwrap() else {
        panic!("keys is a list")
    };
    let expected: Vec<Value> = (0..1500).map(|i| s(&format!("key{i:05}"))).collect();
    assert_eq!(keys, expected);
    server.stop().await;
}

/// Quotas: a breach answers the guest with the interface's error and the host serves on.
async fn quota_suite(keyvalue: &str, tag: &str) {
    let ns = fresh_namespace(tag);
    let limits = format!("{keyvalue}\nmax_keys = 3\nmax_bytes = 1000\nmax_value_bytes = 600");
    let (server, failures) = serve_config(&stateful_in(&ns, &limits)).await;
    assert!(failures.is_empty(), "{failures:?}");
    let client = connect(&server, &ns).await;
    let big = client.call("fill", vec![s("big"), Value::Int(601)], vec![]).await.expect_err("over max_value_bytes");
    assert!(big.to_string().contains("max_value_bytes of 600"), "{big}");
    client.call("fill", vec![s("k1"), Value::Int(500)], vec![]).await.expect("within the quotas");
    let bytes = client.call("fill", vec![s("k2"), Value::Int(500)], vec![]).await.expect_err("over max_bytes");
    assert!(bytes.to_string().contains("max_bytes of 1000"), "{bytes}");
    client.call("set", vec![s("k2"), s("x")], vec![]).await.expect("a small one fits");
    client.call("incr", vec![s("k3")], vec![]).await.expect("a third key");
    let keys = client.call("set", vec![s("k4"), s("x")], vec![]).await.expect_err("over max_keys");
    assert!(keys.to_string().contains("would hold 4 keys, over its max_keys of 3"), "{keys}");
    // Replacing or deleting a key is always possible, and frees room.
    client.call("set", vec![s("k1"), s("small")], vec![]).await.expect("replacing");
    client.call("delete", vec![s("k2")], vec![]).await.expect("deleting");
    client.call("set", vec![s("k4"), s("x")], vec![]).await.expect("room again");
    let not_counter = client.call("incr", vec![s("k4")], vec![]).await.expect_err("not a number");
    assert!(not_counter.to_string().contains("not a decimal integer"), "{not_counter}");
    assert_eq!(client.call("get", vec![s("k1")], vec![]).await.unwrap(), s("small"));
    let long = client.call("get", vec![s(&"k".repeat(1025))], vec![]).await.expect_err("key too long");
    assert!(long.to_string().contains("keys are at most 1024 bytes"), "{long}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_state_holds_under_contention_and_serves_a_worker_pool() {
    state_suite(r#"backend = "embedded""#, "embedded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_state_holds_under_contention_and_serves_a_worker_pool() {
    let Some(url) = test_redis("redis_state_holds_under_contention_and_serves_a_worker_pool") else { return };
    state_suite(&format!("backend = \"redis\"\nurl = \"{url}\""), "redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_quotas_answer_the_guest_and_the_host_serves_on() {
    quota_suite("", "embedded-quota").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_quotas_answer_the_guest_and_the_host_serves_on() {
    let Some(url) = test_redis("redis_quotas_answer_the_guest_and_the_host_serves_on") else { return };
    quota_suite(&format!("backend = \"redis\"\nurl = \"{url}\""), "redis-quota").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_does_not_answer_fails_the_guest_s_operation_not_the_host() {
    // Port 1 on 127.0.0.1: nothing listens, the connection is refused at once.
    let config = format!(
        "{}\n[[module]]\nfile = \"{{math}}\"\nnamespaces = [\"m\"]\n",
        stateful_in("down", "backend = \"redis\"\nurl = \"redis://127.0.0.1:1\"")
    );
    let (server, failures) = serve_config(&config).await;
    assert!(failures.is_empty(), "{failures:?}");
    let client = connect(&server, "down").await;
    let started = Instant::now();
    let e = client.call("incr", vec![s("n")], vec![]).await.expect_err("no Redis").to_string();
    assert!(e.contains("the Redis key-value store at redis://127.0.0.1:1 failed"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(8), "failed within the connect timeout: {:?}", started.elapsed());
    let math = connect(&server, "m").await;
    assert_eq!(math.call("add", vec![Value::Int(1), Value::Int(2)], vec![]).await.unwrap(), Value::Int(3));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_cannot_make_the_host_hold_unbounded_handles_or_batches() {
    let (server, failures) = serve_config(&stateful_in("hoarder", "")).await;
    assert!(failures.is_empty(), "{failures:?}");
    let client = connect(&server, "hoarder").await;
    let e = client.call("hoard", vec![Value::Int(1_000_000)], vec![]).await.expect_err("bounded").to_string();
    assert!(e.contains("after 4096 handles") && e.contains("too many key-value handles open in this call"), "{e}");
    assert_eq!(
        client.call("hoard", vec![Value::Int(100)], vec![]).await.unwrap(),
        Value::Int(100),
        "the next call starts afresh"
    );

    // 17 values of 1 MiB: one get-many of all of them would read past its 16 MiB.
    let keys: Vec<Value> = (0..17).map(|i| s(&format!("big{i}"))).collect();
    for key in &keys {
        client.call("fill", vec![key.clone(), Value::Int(1 << 20)], vec![]).await.expect("1 MiB fits the quotas");
    }
    let e = client.call("get_many", vec![Value::List(keys.clone())], vec![]).await.expect_err("too much").to_string();
    assert!(e.contains("more than 16777216 bytes"), "{e}");
    let some = client.call("get_many", vec![Value::List(keys[..3].to_vec())], vec![]).await.expect("3 MiB is fine");
    assert!(j(&some).len() > 3 << 20);
    server.stop().await;
}

const TENANTS: &str = r#"
[[namespace]]
name = "alpha"
grants = ["wasi:keyvalue", "wasi:logging", "wasi:config"]
[namespace.config]
greeting = "hello from alpha"
retries = 3

[[namespace]]
name = "beta"
grants = ["wasi:keyvalue", "wasi:logging", "wasi:config"]

[[group]]
name = "both"
members = ["alpha", "beta"]

[[module]]
file = "{stateful}"
namespaces = ["alpha", "beta"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_never_reach_each_other_s_buckets_or_settings() {
    let (server, failures) = serve_config(TENANTS).await;
    assert!(failures.is_empty(), "{failures:?}");
    let (alpha, beta, both) =
        (connect(&server, "alpha").await, connect(&server, "beta").await, connect(&server, "both").await);
    let shared = || vec![("bucket".into(), s("shared"))];
    beta.call("set", vec![s("x"), s("beta's secret")], shared()).await.unwrap();
    // By bucket name: alpha's "shared" is alpha's own.
    assert_eq!(alpha.call("get", vec![s("x")], shared()).await.unwrap(), Value::None);
    assert_eq!(j(&alpha.call("keys", vec![], shared()).await.unwrap()), "[]");
    // Names that would collide if scopes were joined as text.
    for bucket in ["beta:shared", "4:beta:shared", "", "../beta/shared"] {
        let r = alpha.call("get", vec![s("x")], vec![("bucket".into(), s(bucket))]).await.unwrap();
        assert_eq!(r, Value::None, "bucket {bucket:?}");
    }
    // Through a group: its first member (alpha) serves, with alpha's state.
    assert_eq!(both.call("get", vec![s("x")], shared()).await.unwrap(), Value::None);
    both.call("set", vec![s("x"), s("alpha's")], shared()).await.unwrap();
    assert_eq!(alpha.call("get", vec![s("x")], shared()).await.unwrap(), s("alpha's"));
    assert_eq!(beta.call("get", vec![s("x")], shared()).await.unwrap(), s("beta's secret"));

    // Settings are the namespace's own.
    assert_eq!(alpha.call("setting", vec![s("greeting")], vec![]).await.unwrap(), s("hello from alpha"));
    assert_eq!(
        j(&alpha.call("settings", vec![], vec![]).await.unwrap()),
        r#"{"greeting":"hello from alpha","retries":"3"}"#
    );
    assert_eq!(beta.call("setting", vec![s("greeting")], vec![]).await.unwrap(), Value::None);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_reaches_only_the_state_of_the_namespace_it_joins() {
    let (parent, failures) = serve_config(TENANTS).await;
    assert!(failures.is_empty(), "{failures:?}");
    let child_config = format!("[[link]]\nurl = \"{}\"\nsecret = \"{SECRET}\"\nnamespace = \"alpha\"\n", parent.url());
    let (child, _) = serve_config(&child_config).await;
    let beta = connect(&parent, "beta").await;
    beta.call("set", vec![s("x"), s("beta's secret")], vec![]).await.unwrap();
    let via_link = connect(&child, "alpha").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !via_link.functions().iter().any(|d| d.name == "get") {
        assert!(Instant::now() < deadline, "the parent's alpha functions reach the child");
        tokio::time::sleep(Duration::from_millis(50)).await;
        via_link.refresh().await.expect("refresh");
    }
    assert_eq!(via_link.call("get", vec![s("x")], vec![]).await.unwrap(), Value::None);
    via_link.call("set", vec![s("x"), s("alpha's")], vec![]).await.unwrap();
    assert_eq!(connect(&parent, "alpha").await.call("get", vec![s("x")], vec![]).await.unwrap(), s("alpha's"));
    assert_eq!(beta.call("get", vec![s("x")], vec![]).await.unwrap(), s("beta's secret"));
    child.stop().await;
    parent.stop().await;
}

const CHAIN: &str = r#"
[[namespace]]
name = "a"
grants = ["easyrpc:call"]
call_namespaces = ["b"]
max_concurrent_calls = 2
max_queued_calls = 64

[[namespace]]
name = "b"
grants = ["easyrpc:call"]
call_namespaces = ["c", "slow"]
call_deadline_ms = 400

[[namespace]]
name = "slow"
max_concurrent_calls = 1

[[module]]
file = "{chain}"
namespaces = ["a", "b"]

[[module]]
file = "{math}"
namespaces = ["c"]

[[module]]
file = "{peer}"
namespaces = ["slow"]
"#;

fn args(items: &[Value]) -> Value {
    Value::List(items.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_call_functions_within_their_grants_depth_and_deadline() {
    let (server, failures) = serve_config(CHAIN).await;
    assert!(failures.is_empty(), "{failures:?}");
    let a = connect(&server, "a").await;

    // A -> B -> C: a's chain asks b's chain to call c's add.
    let inner = args(&[s("c"), s("add"), args(&[Value::Int(2), Value::Int(3)])]);
    let r = a.call("forward", vec![s("b"), s("forward"), inner], vec![]).await.expect("A -> B -> C");
    assert_eq!(r, Value::Int(5));

    // What a may not call: c (not in its call_namespaces).
    let e = a.call("forward", vec![s("c"), s("add"), args(&[Value::Int(1), Value::Int(1)])], vec![]).await;
    let e = e.expect_err("a may not call c").to_string();
    assert!(e.contains("NotGranted") && e.contains("namespace a may not call namespace c"), "{e}");
    // Unknown functions and bad arguments come back as such.
    let e = a.call("forward", vec![s("b"), s("nope"), args(&[])], vec![]).await.expect_err("unknown").to_string();
    assert!(e.contains("UnknownFunction"), "{e}");
    let inner = args(&[s("c"), s("add"), args(&[s("two"), Value::Int(3)])]);
    let e = a.call("forward", vec![s("b"), s("forward"), inner], vec![]).await.expect_err("bad").to_string();
    assert!(e.contains("BadArguments"), "{e}");

    // Recursion stops at the depth bound with a clear error.
    assert_eq!(a.call("recurse", vec![s("a"), Value::Int(5)], vec![]).await.unwrap(), Value::Int(5));
    let e = a.call("recurse", vec![s("a"), Value::Int(100)], vec![]).await.expect_err("too deep").to_string();
    assert!(e.contains("TooDeep") && e.contains("calls nest at most 8 deep"), "{e}");

    // Under a full concurrency limit (2 running in a), nested calls into a finish: they run
    // under their outermost call's slot.
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let client = connect(&server, "a").await;
        tasks.push(tokio::spawn(async move { client.call("recurse", vec![s("a"), Value::Int(6)], vec![]).await }));
    }
    for t in tasks {
        let r = tokio::time::timeout(Duration::from_secs(30), t).await.expect("no deadlock").expect("task");
        assert_eq!(r.expect("recursion under the limit"), Value::Int(6));
    }

    // A nested call inherits its caller's deadline: b's calls have 400 ms, peer.slow wants 5 s.
    let b = connect(&server, "b").await;
    let started = Instant::now();
    let slow = args(&[Value::Float(5.0), s("late")]);
    let e = b.call("forward", vec![s("slow"), s("slow"), slow], vec![]).await.expect_err("deadline");
    assert!(started.elapsed() < Duration::from_secs(3), "ended by the caller's deadline: {:?}", started.elapsed());
    assert!(e.to_string().contains("deadline") || e.to_string().contains("Timeout"), "{e}");

    // Into another namespace a nested call takes a slot there, never waiting for one: with
    // slow's one slot taken, b's call into it is busy at once; then it runs.
    let direct = connect(&server, "slow").await;
    let holder = tokio::spawn(async move { direct.call("slow", vec![Value::Float(1.0), s("hold")], vec![]).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let e = b.call("forward", vec![s("slow"), s("echo"), args(&[Value::Int(1)])], vec![]).await.expect_err("busy");
    assert!(e.to_string().contains("Busy") && e.to_string().contains("does not wait for a slot"), "{e}");
    holder.await.expect("holder").expect("the direct call ran");
    let r = b.call("forward", vec![s("slow"), s("echo"), args(&[Value::Int(1)])], vec![]).await;
    assert_eq!(r.expect("a free slot"), Value::Int(1));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_crosses_a_cluster_link() {
    let (parent, failures) = serve_config("[[module]]\nfile = \"{math}\"\nnamespaces = [\"c\"]\n").await;
    assert!(failures.is_empty(), "{failures:?}");
    let child_config = format!(
        "[[namespace]]\nname = \"a\"\ngrants = [\"easyrpc:call\"]\ncall_namespaces = [\"c\"]\n\n[[module]]\n\
         file = \"{{chain}}\"\nnamespaces = [\"a\"]\n\n[[link]]\nurl = \"{}\"\nsecret = \"{SECRET}\"\nnamespace = \"c\"\n",
        parent.url()
    );
    let (child, failures) = serve_config(&child_config).await;
    assert!(failures.is_empty(), "{failures:?}");
    let a = connect(&child, "a").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let sum = loop {
        let r = a.call("forward", vec![s("c"), s("add"), args(&[Value::Int(20), Value::Int(22)])], vec![]).await;
        match r {
            Ok(v) => break v,
            Err(e) if Instant::now() < deadline => {
                assert!(e.to_string().contains("UnknownFunction"), "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the parent's c never reached the child: {e}"),
        }
    };
    assert_eq!(sum, Value::Int(42));
    child.stop().await;
    parent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_is_deployed_only_where_its_capabilities_are_granted() {
    let config = format!("{TENANTS}\n[[namespace]]\nname = \"bare\"\n");
    let (server, failures) = serve_config(&config).await;
    assert!(failures.is_empty(), "{failures:?}");
    let bytes = std::fs::read(easyrpc_tests::module_path("stateful")).unwrap();
    let admin = connect(&server, "bare").await;
    let e = admin.deploy("bare", "stateful", &bytes).await.expect_err("bare grants nothing").to_string();
    assert!(
        e.contains("module stateful imports wasi:keyvalue/store@0.2.0-draft2")
            && e.contains("which namespace bare does not grant")
            && e.contains(r#""wasi:config", "wasi:keyvalue", "wasi:logging""#),
        "{e}"
    );
    let deployed = admin.deploy("alpha", "stateful2", &bytes).await.expect("alpha grants all it imports");
    assert!(j(&deployed).contains("\"incr\""), "{deployed:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_counts_and_chains() {
    const SCRIPT: &str = r#"
import asyncio, sys
from easyrpc.proxy import EasyRpcProxy

async def main():
    port, path, secret = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    state = await EasyRpcProxy.create('127.0.0.1', port, path, server_secret=secret, namespace='alpha')
    for _ in range(3):
        count = await state['incr']('py-hits')
    print(count, await state['get']('py-hits'), await state['setting']('greeting'))
    chain = await EasyRpcProxy.create('127.0.0.1', port, path, server_secret=secret, namespace='a')
    print(await chain['forward']('b', 'forward', ['c', 'add', [40, 2]]))

asyncio.run(main())
"#;
    let (server, failures) = serve_config(&format!("{TENANTS}\n{CHAIN}")).await;
    assert!(failures.is_empty(), "{failures:?}");
    let output = tokio::process::Command::new(python_with_easyrpc())
        .args(["-c", SCRIPT, &server.addr.port().to_string(), PATH, SECRET])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output).await.expect("python ends").expect("python ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stdout.trim(), "3 3 hello from alpha\n42");
    server.stop().await;
}
