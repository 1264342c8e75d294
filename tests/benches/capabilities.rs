//! Guest capabilities benchmark (run with `cargo bench -p easyrpc-tests --bench capabilities`):
//! * a guest's key-value get / set / increment (modules/stateful, each call in a fresh
//!   instance, through the dispatcher as a remote call goes) against the same operation from
//!   native Rust on the same backend (the namespace's own store, no guest), median latency and
//!   the ratio, for the embedded store and for Redis (`EASYRPC_TEST_REDIS`, default
//!   redis://127.0.0.1:6379, when one answers);
//! * increments from 8 tasks at once, guest and native (the embedded store shares one disk flush
//!   among the writes that arrive together);
//! * a chained call (modules/chain `forward` -> math `add`) against calling `add` directly.
//!
//! Prints figures measured in one run; asserts nothing (machines here are shared and noisy).

use easyrpc::dispatch::{self, CallContext, Called};
use easyrpc::registry::{PolicyConfig, Registry, Relay};
use easyrpc::runtime::imports::KeyValue;
use easyrpc::value::Value;
use easyrpc_tests::{module_path, runtime, ScratchDir};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Calls `function` of `namespace` as a remote caller's call goes (resolve, admit, run).
async fn call(registry: &Registry, namespace: &str, function: &str, args: Vec<Value>) -> Value {
    let snapshot = registry.snapshot();
    let context = CallContext { namespace, request_id: "bench", relay: Relay::default() };
    let resolved = dispatch::resolve(&snapshot, context, function).expect("function found");
    match resolved.call(args, vec![]).await {
        Ok(Called::Value(v)) => v,
        Ok(Called::Generator(_)) => panic!("{function} is a generator"),
        Err(e) => panic!("{function}: {e}"),
    }
}

/// Median of `n` sequential runs of `op`, after `n / 10` unmeasured ones.
async fn timed<F: std::future::Future<Output = ()>>(n: usize, mut op: impl FnMut(usize) -> F) -> Duration {
    for i in 0..n / 10 {
        op(i).await;
    }
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        op(i).await;
        samples.push(started.elapsed());
    }
    median(samples)
}

/// Medians of `n` runs each of `a` and `b`, taking turns (a, b, a, b...), so that both see
/// the same moments of a noisy machine; after `n / 10` unmeasured turns.
async fn taking_turns<FA, FB>(
    n: usize,
    mut a: impl FnMut(usize) -> FA,
    mut b: impl FnMut(usize) -> FB,
) -> (Duration, Duration)
where
    FA: std::future::Future<Output = ()>,
    FB: std::future::Future<Output = ()>,
{
    for i in 0..n / 10 {
        a(i).await;
        b(i).await;
    }
    let (mut sa, mut sb) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let started = Instant::now();
        a(i).await;
        sa.push(started.elapsed());
        let started = Instant::now();
        b(i).await;
        sb.push(started.elapsed());
    }
    (median(sa), median(sb))
}

fn s(text: &str) -> Value {
    Value::Str(text.to_owned())
}

/// A host (registry) serving stateful in `kv` with `keyvalue`, chain in `a` and math in `c`.
fn host(scratch: &ScratchDir, keyvalue: &str) -> (Arc<Registry>, Arc<dyn KeyValue>) {
    let config = format!(
        r#"
[[namespace]]
name = "kv"
grants = ["wasi:keyvalue", "wasi:logging", "wasi:config"]
[namespace.keyvalue]
{keyvalue}
[[namespace]]
name = "a"
grants = ["easyrpc:call"]
call_namespaces = ["c"]
[[module]]
file = "{stateful}"
namespaces = ["kv"]
[[module]]
file = "{chain}"
namespaces = ["a"]
[[module]]
file = "{math}"
namespaces = ["c"]
"#,
        stateful = module_path("stateful").display(),
        chain = module_path("chain").display(),
        math = module_path("math").display(),
    );
    let file = scratch.0.join(format!("bench-{}.toml", keyvalue.len()));
    std::fs::write(&file, config).expect("config written");
    let config = easyrpc::config::ConfigFile::read(&file).expect("config parses");
    let registry = Arc::new(Registry::default());
    let sources = easyrpc::capabilities::CapabilitySources::new(&scratch.0.join("state"), &registry);
    let base = config.prepare_snapshot(&PolicyConfig::default(), &sources).expect("policies");
    let deployer = easyrpc::deploy::Deployer::new(runtime(), registry.clone(), base, config.module_sources());
    let failures = deployer.load_all().expect("modules load");
    assert!(failures.is_empty(), "{failures:?}");
    let store = registry.snapshot().policy("kv").and_then(|p| p.config.capabilities.clone()).expect("kv grants");
    let store = store.keyvalue.clone().expect("a key-value store");
    (registry, store)
}

async fn keyvalue_figures(label: &str, registry: &Arc<Registry>, store: &Arc<dyn KeyValue>) {
    const N: usize = 2_000;
    call(registry, "kv", "set", vec![s("k"), s("value")]).await;
    let (guest_get, native_get) = taking_turns(
        N,
        |_| async { drop(call(registry, "kv", "get", vec![s("k")]).await) },
        |_| async { drop(store.get("default", "k").await.expect("get")) },
    )
    .await;
    let (guest_set, native_set) = taking_turns(
        N,
        |i| async move { drop(call(registry, "kv", "set", vec![s("k"), s(&i.to_string())]).await) },
        |i| async move { store.set("default", "k", i.to_string().into_bytes()).await.expect("set") },
    )
    .await;
    let (guest_incr, native_incr) = taking_turns(
        N,
        |_| async { drop(call(registry, "kv", "incr", vec![s("n")]).await) },
        |_| async {
            store.increment("default", "n", 1).await.expect("incr");
        },
    )
    .await;
    let empty =
        timed(N, |_| async { drop(call(registry, "c", "add", vec![Value::Int(1), Value::Int(2)]).await) }).await;
    println!("{label}: median per operation, guest (a fresh instance per call) vs native Rust on the same store");
    for (op, guest, native) in
        [("get", guest_get, native_get), ("set", guest_set, native_set), ("increment", guest_incr, native_incr)]
    {
        println!(
            "  {op:<10} guest {:>8.1} µs   native {:>8.1} µs   ratio {:>5.2}x   (guest minus native {:>6.1} µs)",
            us(guest),
            us(native),
            guest.as_secs_f64() / native.as_secs_f64(),
            us(guest.saturating_sub(native))
        );
    }
    println!("  (a call of math.add, no capability: {:.1} µs)", us(empty));

    // Throughput of increments from 8 tasks at once.
    const TASKS: usize = 8;
    const EACH: usize = 250;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..EACH {
                store.increment("default", "parallel", 1).await.expect("incr");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let native = (TASKS * EACH) as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let registry = registry.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..EACH {
                call(&registry, "kv", "incr", vec![s("parallel")]).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let guest = (TASKS * EACH) as f64 / started.elapsed().as_secs_f64();
    println!(
        "  increments from {TASKS} tasks at once: guest {guest:>8.0}/s   native {native:>8.0}/s   ratio {:.2}x",
        native / guest
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let scratch = ScratchDir::new("bench-capabilities");
    let (registry, store) = host(&scratch, r#"backend = "embedded""#);
    keyvalue_figures("embedded store", &registry, &store).await;

    if let Some(redis) = easyrpc_tests::test_redis("the capabilities bench's Redis figures") {
        let (registry, store) = host(&scratch, &format!("backend = \"redis\"\nurl = \"{redis}\""));
        keyvalue_figures(&format!("Redis at {redis}"), &registry, &store).await;
    }

    const N: usize = 5_000;
    let args = || vec![s("c"), s("add"), Value::List(vec![Value::Int(1), Value::Int(2)])];
    let (chained, direct) = taking_turns(
        N,
        |_| async { drop(call(&registry, "a", "forward", args()).await) },
        |_| async { drop(call(&registry, "c", "add", vec![Value::Int(1), Value::Int(2)]).await) },
    )
    .await;
    println!(
        "chained call a.forward -> c.add: {:.1} µs   direct c.add: {:.1} µs   ratio {:.2}x",
        us(chained),
        us(direct),
        chained.as_secs_f64() / direct.as_secs_f64()
    );
}
