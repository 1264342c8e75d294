//! Runtime benchmark (run with `cargo bench -p easyrpc-tests --bench runtime`):
//! * ns per call of `add`: a fresh sandboxed instance per call (what the host does by default)
//!   vs an instance kept between calls (a namespace with `instances = "reused"`), median and
//!   p99 over many sequential calls, measured in one run; and
//!   fresh instances of guests with more imports (peer: generator resources; hostile: WASI);
//! * fresh calls of one module from one thread and from two threads at once (the host's two
//!   workers calling the same function): what sharing the module's state costs each call;
//! * per module: compile time vs load from the on-disk cache.
//!
//! Prints figures; asserts nothing (machines here are shared and noisy).
//! `-- --calls-only` skips the loads: a clean run to profile the call path under perf.
//! `-- --compare A.wasm B.wasm ..` times fresh calls of `add` in each module, taking turns.

use easyrpc::runtime::{CallLimits, InstanceReuse, Module, Runtime, RuntimeConfig, WarmInstances};
use easyrpc::value::Value;
use easyrpc_tests::module_path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The host binary's allocator (host/src/main.rs), so the bench measures what ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const WARMUP: usize = 2_000;
const CALLS: usize = 50_000;
const LOADS: usize = 20;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summarize(label: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let median = percentile(&samples, 0.5);
    println!(
        "{label:<44} median {:>8.2} µs   p99 {:>8.2} µs",
        median.as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6
    );
    median
}

fn add_args(i: usize) -> Vec<Value> {
    vec![Value::Int(i as i128 % 1000), Value::Int(1)]
}

/// Warms up, then times `CALLS` sequential calls, each in a fresh instance; prints and returns
/// the median.
async fn fresh_median(
    label: &str,
    module: &Arc<Module>,
    function: &str,
    args: impl Fn(usize) -> Vec<Value>,
) -> Duration {
    timed_calls(module, None, function, WARMUP, &args).await;
    summarize(label, timed_calls(module, None, function, CALLS, &args).await)
}

/// `n` sequential calls, in fresh instances or (with `warm`) in instances kept between calls.
async fn timed_calls(
    module: &Arc<Module>,
    warm: Option<&WarmInstances>,
    function: &str,
    n: usize,
    args: impl Fn(usize) -> Vec<Value>,
) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let args = args(i);
        let t = Instant::now();
        let r = module.call_in(warm, function, args, vec![], CallLimits::default()).await;
        samples.push(t.elapsed());
        assert!(r.is_ok());
    }
    samples
}

/// `-- --compare A.wasm B.wasm ..`: fresh calls of each module's `add(i, 1)`, the modules
/// taking turns in batches (the machine's drift falls on all alike); prints each module's
/// median of the batches' medians. For comparing two builds of a guest.
async fn compare_modules(runtime: &Runtime, files: &[String]) {
    const ROUNDS: usize = 40;
    const BATCH: usize = 1_000;
    let modules: Vec<Arc<Module>> = files.iter().map(|f| runtime.load_file(f).expect("module loads")).collect();
    let mut medians = vec![Vec::with_capacity(ROUNDS); modules.len()];
    for module in &modules {
        timed_calls(module, None, "add", WARMUP, add_args).await;
    }
    for _ in 0..ROUNDS {
        for (module, medians) in modules.iter().zip(&mut medians) {
            let mut batch = timed_calls(module, None, "add", BATCH, add_args).await;
            batch.sort();
            medians.push(percentile(&batch, 0.5));
        }
    }
    for (file, mut medians) in files.iter().zip(medians) {
        medians.sort();
        let (low, mid, high) = (percentile(&medians, 0.1), percentile(&medians, 0.5), percentile(&medians, 0.9));
        println!(
            "{file:<60} fresh add: median of {ROUNDS} batch medians {:>6.2} µs (p10 {:.2}, p90 {:.2})",
            mid.as_secs_f64() * 1e6,
            low.as_secs_f64() * 1e6,
            high.as_secs_f64() * 1e6
        );
    }
}

/// Fresh calls of `function` in `module` from `threads` threads at once, each on a
/// current-thread tokio runtime of its own and yielding after every call (so that the used
/// instance's replacement runs between calls, as it does after a host's answer); the time per
/// call and thread, the threads' mean.
fn concurrent_fresh(module: &Arc<Module>, function: &'static str, threads: usize, calls: usize) -> Duration {
    let start = Arc::new(std::sync::Barrier::new(threads));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (module, start) = (module.clone(), start.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
                rt.block_on(async move {
                    let call = |i: usize| module.call(function, add_args(i), vec![], CallLimits::default());
                    for i in 0..WARMUP {
                        call(i).await.expect("call");
                        tokio::task::yield_now().await;
                    }
                    start.wait();
                    let t = Instant::now();
                    for i in 0..calls {
                        call(i).await.expect("call");
                        tokio::task::yield_now().await;
                    }
                    t.elapsed() / calls as u32
                })
            })
        })
        .collect();
    workers.into_iter().map(|w| w.join().expect("bench thread")).sum::<Duration>() / threads as u32
}

/// One thread against two threads at once, taking turns for `ROUNDS` rounds; prints the
/// medians and their ratio.
fn one_thread_against_two(label: &str, module: &Arc<Module>, function: &'static str) {
    const ROUNDS: usize = 5;
    const CALLS: usize = 10_000;
    let (mut one, mut two) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        one.push(concurrent_fresh(module, function, 1, CALLS));
        two.push(concurrent_fresh(module, function, 2, CALLS));
    }
    one.sort();
    two.sort();
    let (one, two) = (percentile(&one, 0.5).as_secs_f64() * 1e6, percentile(&two, 0.5).as_secs_f64() * 1e6);
    println!(
        "{label:<44} one thread {one:>7.2} µs   two threads {two:>7.2} µs per call and thread ({:.2}x)",
        two / one
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
    rt.block_on(async {
        let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
        let args: Vec<String> = std::env::args().collect();
        if let Some(at) = args.iter().position(|a| a == "--compare") {
            compare_modules(&runtime, &args[at + 1..]).await;
            return;
        }
        let math = runtime.load_file(module_path("math")).expect("math loads");

        println!("== call of math.add(i, 1), {CALLS} sequential calls after {WARMUP} warm-up");
        let fresh = fresh_median("fresh sandboxed instance per call", &math, "add", add_args).await;
        let warm = WarmInstances::for_policy(&math, InstanceReuse::reused()).expect("reusing policy");
        timed_calls(&math, Some(&*warm), "add", WARMUP, add_args).await;
        let reused = summarize(
            "kept instance (instances = reused)",
            timed_calls(&math, Some(&*warm), "add", CALLS, add_args).await,
        );
        println!("fresh / reused median ratio: {:.2}x", fresh.as_secs_f64() / reused.as_secs_f64());
        // What a guest's imports cost a fresh instance: peer has no WASI but exports generator
        // resources (two more core instances wire them up); hostile is a wasm32-wasip2 guest
        // (three core instances and thirteen lowered WASI functions).
        let peer = runtime.load_file(module_path("peer")).expect("peer loads");
        let resources = fresh_median("fresh instance, peer.add (resources)", &peer, "add", add_args).await;
        fresh_median("fresh instance, peer.echo (allocates)", &peer, "echo", |i| vec![Value::Int(i as i128)]).await;
        let hostile = runtime.load_file(module_path("hostile")).expect("hostile loads");
        let wasi = fresh_median("fresh instance, hostile.bump (WASI)", &hostile, "bump", |_| vec![]).await;
        println!(
            "against math.add: peer.add {:.2}x, hostile.bump {:.2}x",
            resources.as_secs_f64() / fresh.as_secs_f64(),
            wasi.as_secs_f64() / fresh.as_secs_f64()
        );

        println!("\n== fresh calls of one module from one thread and from two at once (median of 5 rounds)");
        one_thread_against_two("math.add (no imports)", &math, "add");
        one_thread_against_two("peer.add (resources, a host import)", &peer, "add");
        if std::env::args().any(|a| a == "--calls-only") {
            return;
        }

        println!("\n== load per module, median of {LOADS}");
        let cache_dir = std::env::temp_dir().join(format!("easyrpc-bench-cache-{}", std::process::id()));
        let cached =
            Runtime::new(RuntimeConfig { cache_dir: Some(cache_dir.clone()), ..Default::default() }).expect("runtime");
        for name in ["math", "peer", "hostile"] {
            let bytes = std::fs::read(module_path(name)).expect("module built");
            let mut compile = Vec::new();
            for _ in 0..LOADS {
                let t = Instant::now();
                runtime.load_bytes(name, &bytes).expect("loads");
                compile.push(t.elapsed());
            }
            cached.load_bytes(name, &bytes).expect("stores in cache");
            let mut from_cache = Vec::new();
            for _ in 0..LOADS {
                let t = Instant::now();
                cached.load_bytes(name, &bytes).expect("loads from cache");
                from_cache.push(t.elapsed());
            }
            compile.sort();
            from_cache.sort();
            let (c, l) = (percentile(&compile, 0.5), percentile(&from_cache, 0.5));
            println!(
                "{name:<8} {:>7} KiB   compile {:>8.2} ms   from cache {:>7.2} ms   speed-up {:>5.1}x",
                bytes.len() / 1024,
                c.as_secs_f64() * 1e3,
                l.as_secs_f64() * 1e3,
                c.as_secs_f64() / l.as_secs_f64()
            );
        }
        let _ = std::fs::remove_dir_all(&cache_dir);
    });
}
