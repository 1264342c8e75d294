//! RPC against the transport's limit (run with `cargo bench -p easyrpc-tests --bench wire`).
//!
//! Starts, in one process, our host (peer and math modules) and a bare tokio-tungstenite
//! websocket echo server, then measures for the same frames, each as a ratio taken in this run:
//! sequential round-trip latency (RPC `add` vs raw echo), pipelined throughput (1 connection
//! with 100 in flight, and 4 connections), payload scaling (`echo` of 1 KB / 64 KB / 1 MB in
//! json and pickle vs echo of a frame of the same size), and memory per idle connection
//! (1,000 connections held by a child process). `-- --python` also runs the Python original
//! (tests/peer/bench_python_easyrpc.py) and prints our speed-up.
//!
//! Throughput runs take turns in rounds (each path once per round) and report the median of the
//! rounds' ratios, since one run of a path moves by a third from one run to the next here.
//! It is measured twice for our host: in namespaces with the default fresh instance per
//! call (`peer`, `math`), and in namespaces configured with `instances = "reused"`
//! (`peer_reused`, `math_reused`: the same modules, instances kept between the namespace's
//! calls, as the Python original keeps its functions' process).
//!
//! `-- --profile echo|host|rpc|echo-tp|rpc-tp|math-tp SECONDS` runs one path alone for that
//! long (raw client to the echo, raw client to our host, our client to our host; `-tp`: 4
//! connections x 100 in flight; `math-tp` calls math, a guest with no imports) and prints its
//! rate and median latency: a clean run for `perf` and `strace`. `host-reused`, `rpc-reused`
//! and `reused-tp` are `host`, `rpc` and `rpc-tp` on the namespace that reuses instances;
//! `peer-echo-tp` and `math-echo-tp` the 4-connection workloads compared with the Python
//! original (`echo(i)`, math's `kinds.echo_s64(i)`). `EASYRPC_CONNECTIONS=1` runs the `-tp`
//! profiles over one connection instead of four.
//! `latency` repeats the sequential round-trip comparison alone for that long, `paced` its
//! paced variant (a pause before each call); `payload` calls `echo` of a 64 KiB string with
//! our client, json (`EASYRPC_PAYLOAD_KIB=1024` for another size).

use easyrpc::client::{ClientConfig, EasyRpcProxy};
use easyrpc::value::Value;
use easyrpc::wire::{self, Serialization};
use easyrpc_tests::{TestServer, SECRET};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio_tungstenite::tungstenite::Message;

/// The host binary's allocator (host/src/main.rs), so the bench measures what ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const LATENCY_CALLS: usize = 5_000;
/// Calls per path, and the pause before each, of the paced latency table.
const PACED_CALLS: usize = 2_000;
const PACE: Duration = Duration::from_micros(200);
const THROUGHPUT_CALLS: usize = 40_000;
/// Rounds of the throughput tables: every path runs once per round, the paths taking turns, and
/// each ratio is the median of the rounds' ratios (one run of a path moves +-30% here from one
/// run to the next, so a single run's ratio says little).
const THROUGHPUT_ROUNDS: usize = 5;
/// Runs of each of our workloads in the comparison with the Python original (which runs once).
const PYTHON_ROUNDS: usize = 3;
const IN_FLIGHT: usize = 100;
const IDLE_CONNECTIONS: usize = 1_000;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A bare websocket echo server: the transport's limit. It reads with our host's read buffer
/// (tungstenite zero-fills the free part of its read buffer before every read, which at the
/// default 128 KiB would slow the echo down for a reason our host does not share).
async fn echo_server() -> std::net::SocketAddr {
    easyrpc_tests::websocket_echo_server().await
}

fn add_frame(i: usize) -> String {
    let request = wire::call_object("add", vec![Value::Int(i as i128)], vec![("b".into(), Value::Int(1))]);
    match wire::request(Serialization::Json, &format!("{i:08}-0000-0000-0000-000000000000"), &request, true) {
        wire::Frame::Text(t) => t,
        wire::Frame::Binary(_) => unreachable!("json is text"),
    }
}

async fn raw_client(addr: std::net::SocketAddr) -> Ws {
    easyrpc_tests::connect_like_our_client(&format!("ws://{addr}/")).await
}

fn stats(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e6;
    (at(0.5), at(0.99))
}

async fn rpc_latency(proxy: &EasyRpcProxy, n: usize) -> (f64, f64) {
    let mut samples = Vec::with_capacity(n);
    rpc_samples(proxy, n, Duration::ZERO, &mut samples).await;
    stats(samples)
}

/// Times `n` sequential `add` calls through our client, each after `pause` (the thread
/// sleeps: a caller busy with other work between its calls).
async fn rpc_samples(proxy: &EasyRpcProxy, n: usize, pause: Duration, samples: &mut Vec<Duration>) {
    for i in 0..n {
        pause_for(pause);
        let t = Instant::now();
        let r = proxy.call("add", vec![Value::Int(i as i128)], vec![("b".into(), Value::Int(1))]).await.expect("add");
        samples.push(t.elapsed());
        debug_assert_eq!(r, Value::Int(i as i128 + 1));
    }
}

async fn raw_latency(ws: &mut Ws, n: usize) -> (f64, f64) {
    let mut samples = Vec::with_capacity(n);
    raw_samples(ws, n, Duration::ZERO, &mut samples).await;
    stats(samples)
}

/// Times `n` sequential round trips of the `add` request frame through a raw websocket client,
/// each after `pause`.
async fn raw_samples(ws: &mut Ws, n: usize, pause: Duration, samples: &mut Vec<Duration>) {
    for i in 0..n {
        let frame = add_frame(i);
        pause_for(pause);
        let t = Instant::now();
        ws.send(Message::text(frame)).await.expect("send");
        ws.next().await.expect("echo").expect("echo ok");
        samples.push(t.elapsed());
    }
}

/// Blocks this (the clients') thread for `pause`; nothing else runs on it meanwhile, as
/// nothing arrives for its clients between calls.
fn pause_for(pause: Duration) {
    if !pause.is_zero() {
        std::thread::sleep(pause);
    }
}

/// Sequential round trips (p50, p99 in µs) of: the raw echo, RPC `add` through our client
/// (fresh instances, then reused ones), and the raw client against our host (fresh, reused),
/// `calls` each, every call after `pause`. The paths take turns in short batches, so that the
/// machine's changing load falls on all of them alike.
async fn sequential_latency(
    server: &TestServer,
    echo: std::net::SocketAddr,
    calls: usize,
    pause: Duration,
) -> [(f64, f64); 5] {
    const BATCH: usize = 250;
    let proxy = EasyRpcProxy::connect_with(ClientConfig::new(&server.url(), SECRET, "peer")).await.expect("rpc client");
    let kept =
        EasyRpcProxy::connect_with(ClientConfig::new(&server.url(), SECRET, "peer_reused")).await.expect("client");
    let mut raw = raw_client(echo).await;
    let mut host_raw = easyrpc_tests::RawClient::connect(server, "peer").await.ws;
    let mut host_raw_kept = easyrpc_tests::RawClient::connect(server, "peer_reused").await.ws;
    let mut samples: [Vec<Duration>; 5] = Default::default();
    let mut warm_up: [Vec<Duration>; 5] = Default::default();
    for round in 0..=calls / BATCH {
        // The first round warms every path up and is not counted.
        let into = if round == 0 { &mut warm_up } else { &mut samples };
        raw_samples(&mut raw, BATCH, pause, &mut into[0]).await;
        rpc_samples(&proxy, BATCH, pause, &mut into[1]).await;
        rpc_samples(&kept, BATCH, pause, &mut into[2]).await;
        raw_samples(&mut host_raw, BATCH, pause, &mut into[3]).await;
        raw_samples(&mut host_raw_kept, BATCH, pause, &mut into[4]).await;
    }
    samples.map(stats)
}

/// One call the throughput runs repeat: `namespace.function(i, **kwargs)`, which must return
/// `i + offset`.
#[derive(Clone, Copy)]
struct Workload {
    /// `peer` (the peer-test functions; no WASI, but generator resources and the host's
    /// sleep) or `math` (no imports at all: one core instance, the cheapest kind).
    namespace: &'static str,
    function: &'static str,
    /// `b=1` for `add(i, b=1)`.
    b: Option<i128>,
    offset: i128,
}

const ADD: Workload = Workload { namespace: "peer", function: "add", b: Some(1), offset: 1 };
const ECHO: Workload = Workload { namespace: "peer", function: "echo", b: None, offset: 0 };
const MATH_ADD: Workload = Workload { namespace: "math", function: "add", b: Some(1), offset: 1 };
const MATH_ECHO: Workload = Workload { namespace: "math", function: "kinds.echo_s64", b: None, offset: 0 };

/// The same workloads in namespaces that reuse instances between their calls.
fn reused(work: Workload) -> Workload {
    let namespace = match work.namespace {
        "peer" => "peer_reused",
        "math" => "math_reused",
        other => panic!("no reusing namespace for {other}"),
    };
    Workload { namespace, ..work }
}

/// Calls/s of `work` over `connections` new clients, each with `IN_FLIGHT` calls in flight, run
/// on the `load` runtime.
async fn rpc_throughput(load: &Handle, url: &str, work: Workload, connections: usize, total: usize) -> f64 {
    let url = url.to_owned();
    let run = async move {
        let mut proxies = Vec::new();
        for _ in 0..connections {
            proxies.push(Arc::new(
                EasyRpcProxy::connect_with(ClientConfig::new(&url, SECRET, work.namespace)).await.expect("client"),
            ));
        }
        let per_task = total / (connections * IN_FLIGHT);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for proxy in &proxies {
            for _ in 0..IN_FLIGHT {
                let proxy = proxy.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..per_task as i128 {
                        let kwargs = work.b.map(|b| ("b".to_owned(), Value::Int(b))).into_iter().collect();
                        let r = proxy.call(work.function, vec![Value::Int(i)], kwargs).await.expect(work.function);
                        assert_eq!(r, Value::Int(i + work.offset));
                    }
                }));
            }
        }
        for t in tasks {
            t.await.expect("task");
        }
        (per_task * connections * IN_FLIGHT) as f64 / started.elapsed().as_secs_f64()
    };
    load.spawn(run).await.expect("load task")
}

/// Messages/s echoed over `connections`, each with `IN_FLIGHT` frames in flight, run on the
/// `load` runtime.
async fn raw_throughput(load: &Handle, addr: std::net::SocketAddr, connections: usize, total: usize) -> f64 {
    let run = async move {
        let per_connection = total / connections;
        let frame = add_frame(1);
        let mut clients = Vec::new();
        for _ in 0..connections {
            clients.push(raw_client(addr).await);
        }
        let started = Instant::now();
        let mut tasks = Vec::new();
        for ws in clients {
            let frame = frame.clone();
            tasks.push(tokio::spawn(async move {
                let (mut sink, mut source) = ws.split();
                let window = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
                let reader_window = window.clone();
                let reader = tokio::spawn(async move {
                    for _ in 0..per_connection {
                        source.next().await.expect("echo").expect("echo ok");
                        reader_window.add_permits(1);
                    }
                });
                for _ in 0..per_connection {
                    window.acquire().await.expect("window").forget();
                    sink.send(Message::text(frame.clone())).await.expect("send");
                }
                reader.await.expect("reader");
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        (per_connection * connections) as f64 / started.elapsed().as_secs_f64()
    };
    load.spawn(run).await.expect("load task")
}

/// One throughput path: the raw echo server, or a workload on our host.
#[derive(Clone, Copy)]
enum Path {
    Echo(std::net::SocketAddr),
    Rpc(Workload),
}

/// Runs each of `paths` once per round, `rounds` times, the paths taking turns, so that the
/// machine's changing load falls on all of them alike; returns each path's rates, one per round.
async fn taking_turns<const N: usize>(
    load: &Handle,
    url: &str,
    paths: [Path; N],
    connections: usize,
    calls: usize,
    rounds: usize,
) -> [Vec<f64>; N] {
    let mut rates: [Vec<f64>; N] = std::array::from_fn(|_| Vec::with_capacity(rounds));
    for _ in 0..rounds {
        for (path, rates) in paths.iter().zip(rates.iter_mut()) {
            rates.push(match *path {
                Path::Echo(addr) => raw_throughput(load, addr, connections, calls).await,
                Path::Rpc(work) => rpc_throughput(load, url, work, connections, calls).await,
            });
        }
    }
    rates
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Round-by-round ratios of one path's rates to another's (taken in the same rounds).
struct Ratio(Vec<f64>);

impl Ratio {
    fn of(rates: &[f64], base: &[f64]) -> Self {
        Self(rates.iter().zip(base).map(|(r, b)| r / b).collect())
    }
}

impl std::fmt::Display for Ratio {
    /// As a percentage: the median, then the range over the rounds.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lowest = self.0.iter().copied().fold(f64::INFINITY, f64::min);
        let highest = self.0.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        write!(f, "{:>3.0}% [{:.0}-{:.0}%]", 100.0 * median(&self.0), 100.0 * lowest, 100.0 * highest)
    }
}

/// Mean µs per echo of `value` through RPC, and per echo of an equally sized frame (raw).
async fn payload(proxy: &EasyRpcProxy, ws: &mut Ws, value: &Value, ser: Serialization, n: usize) -> (f64, f64) {
    let frame = wire::response(ser, "0000", value, false);
    let started = Instant::now();
    for _ in 0..n {
        proxy.call("echo", vec![value.clone()], vec![]).await.expect("echo");
    }
    let rpc = started.elapsed().as_secs_f64() * 1e6 / n as f64;
    let message = match frame {
        wire::Frame::Text(t) => Message::text(t),
        wire::Frame::Binary(b) => Message::binary(b),
    };
    let started = Instant::now();
    for _ in 0..n {
        ws.send(message.clone()).await.expect("send");
        ws.next().await.expect("echo").expect("echo ok");
    }
    (rpc, started.elapsed().as_secs_f64() * 1e6 / n as f64)
}

fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0) * 4096
}

/// Child mode: hold `n` set-up connections to `url` until stdin closes.
async fn hold_connections(url: &str, n: usize) {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("connects");
        let claims = wire::auth::SetupClaims {
            kind: "PROXY".into(),
            id: "idle".into(),
            namespace: "peer".into(),
            serialization: Serialization::Json,
            notify: false,
        };
        ws.send(Message::text(format!(r#"{{"setup": "{}"}}"#, wire::auth::sign_setup(&claims, SECRET))))
            .await
            .expect("setup");
        ws.next().await.expect("auth reply").expect("auth ok");
        held.push(ws);
    }
    println!("ready");
    let mut line = String::new();
    let _ = tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut line)).await;
}

fn runtime(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().thread_name(name).enable_all().build().expect("tokio")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let client = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
    if let Some(i) = args.iter().position(|a| a == "--hold") {
        client.block_on(hold_connections(&args[i + 1], args[i + 2].parse().expect("count")));
        return;
    }
    // The servers (ours and the echo) and their clients run on runtimes of their own, as they
    // would in separate processes: sequential clients on this thread, which polls its own
    // sockets, pipelined clients on two workers of their own. (With one shared runtime a
    // client's wake-up waited for whatever the server's workers did after answering.)
    let host = runtime("host");
    let load = runtime("load");
    let (server, echo) = host.block_on(async { (serve_bench_modules().await, echo_server().await) });
    if let Some(i) = args.iter().position(|a| a == "--profile") {
        let seconds: f64 = args.get(i + 2).and_then(|s| s.parse().ok()).unwrap_or(5.0);
        client.block_on(profile(&args[i + 1], Duration::from_secs_f64(seconds), &server, echo, load.handle()));
    } else {
        client.block_on(measure(&server, echo, load.handle(), &args[0]));
        if args.iter().any(|a| a == "--python") {
            client.block_on(python_comparison(&server.url(), load.handle()));
        }
    }
    host.block_on(server.stop());
}

/// Our host serving peer and math in namespaces named after them (a fresh instance per call)
/// and in `peer_reused` and `math_reused` (instances kept between calls).
async fn serve_bench_modules() -> TestServer {
    use easyrpc::registry::{NamespacePolicy, PolicyConfig, RegistrySnapshot};
    use easyrpc::runtime::InstanceReuse;
    let mut snapshot = RegistrySnapshot::default();
    let reusing = PolicyConfig { instances: InstanceReuse::reused(), ..PolicyConfig::default() };
    for name in ["peer", "math"] {
        let module = easyrpc_tests::load(name);
        let reused = format!("{name}_reused");
        snapshot.set_policy(&reused, NamespacePolicy::new(reusing.clone()));
        snapshot.add_module(name, &module);
        snapshot.add_module(&reused, &module);
    }
    let mut config = easyrpc::server::ServerConfig::single(easyrpc_tests::PATH, SECRET);
    // The idle-connection measurement holds them all from one address.
    config.limits.max_connections_per_peer = config.limits.max_connections_per_peer.max(2 * IDLE_CONNECTIONS);
    TestServer::with_config(snapshot, config).await
}

/// The sequential round trips, printed.
async fn print_latency(server: &TestServer, echo: std::net::SocketAddr) {
    let [(raw50, raw99), (rpc50, rpc99), (kept50, kept99), (host50, host99), (host_kept50, host_kept99)] =
        sequential_latency(server, echo, LATENCY_CALLS, Duration::ZERO).await;
    println!("\n== sequential round trip, {LATENCY_CALLS} calls each, the paths taking turns");
    println!("raw websocket echo     p50 {raw50:>8.1} µs   p99 {raw99:>8.1} µs");
    println!("RPC add, raw client    p50 {host50:>8.1} µs   p99 {host99:>8.1} µs   (host only)");
    println!("RPC add (json)         p50 {rpc50:>8.1} µs   p99 {rpc99:>8.1} µs");
    println!(
        "RPC - echo             p50 {:>+8.1} µs   p99 {:>+8.1} µs   (goal: p50 within +15 µs)",
        rpc50 - raw50,
        rpc99 - raw99
    );
    println!("RPC add, reused inst.  p50 {kept50:>8.1} µs   p99 {kept99:>8.1} µs");
    println!("reused - echo          p50 {:>+8.1} µs   p99 {:>+8.1} µs", kept50 - raw50, kept99 - raw99);
    println!("reused, raw client     p50 {host_kept50:>8.1} µs   p99 {host_kept99:>8.1} µs   (host only)");
}

/// The sequential round trips again with a pause before each call (a caller with other work
/// between its calls): the fresh path's instance is then made ahead while the host waits, as
/// it is for all but back-to-back callers. (Labels differ from `print_latency`'s, which
/// tests/benches/compare-builds.sh reads.)
async fn print_paced_latency(server: &TestServer, echo: std::net::SocketAddr) {
    let [(raw50, raw99), (rpc50, rpc99), (kept50, kept99), (host50, host99), (host_kept50, host_kept99)] =
        sequential_latency(server, echo, PACED_CALLS, PACE).await;
    println!("\n== the same, {PACED_CALLS} calls each, every call after a {} µs pause", PACE.as_micros());
    let row = |what: &str, p50: f64, p99: f64| {
        println!("{what:<22} p50 {p50:>8.1} µs   p99 {p99:>8.1} µs   p50 - echo {:>+6.1} µs", p50 - raw50)
    };
    row("echo, paced", raw50, raw99);
    row("fresh, our client", rpc50, rpc99);
    row("fresh, host only", host50, host99);
    row("kept, our client", kept50, kept99);
    row("kept, host only", host_kept50, host_kept99);
}

/// Every comparison, printed as it is measured.
async fn measure(server: &TestServer, echo: std::net::SocketAddr, load: &Handle, exe: &str) {
    let connect = |ser: Serialization| {
        let mut config = ClientConfig::new(&server.url(), SECRET, "peer");
        config.serialization = ser;
        EasyRpcProxy::connect_with(config)
    };
    // First, before the other runs leave freed memory that the allocator keeps and would
    // hand to the new connections without the RSS growing.
    println!("== {IDLE_CONNECTIONS} idle connections (held by a child process)");
    let before = rss();
    let mut child = std::process::Command::new(exe)
        .args(["--hold", &server.url(), &IDLE_CONNECTIONS.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("child starts");
    let stdout = child.stdout.take().expect("stdout");
    let ready = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).map(|_| line)
    })
    .await
    .expect("join")
    .expect("child ready");
    assert_eq!(ready.trim(), "ready");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss();
    drop(child.stdin.take());
    let _ = child.wait();
    let per = after.saturating_sub(before) / IDLE_CONNECTIONS as u64;
    println!("host RSS {} MiB -> {} MiB: {per} bytes per idle connection (goal: < 64 KiB)", before >> 20, after >> 20);

    println!("\nframe: {} bytes (the JSON request of add(i, b=1))", add_frame(0).len());
    print_latency(server, echo).await;
    print_paced_latency(server, echo).await;

    println!(
        "\n== pipelined throughput, {IN_FLIGHT} in flight per connection; {THROUGHPUT_ROUNDS} rounds of {} calls per path, the paths taking turns",
        THROUGHPUT_CALLS / 2
    );
    println!("(medians over the rounds; each ratio is the median of the rounds' ratios, min-max in brackets)");
    let url = server.url();
    for connections in [1usize, 4] {
        let paths = [Path::Echo(echo), Path::Rpc(ADD), Path::Rpc(MATH_ADD), Path::Rpc(reused(ADD))];
        let [echo_rates, rpc, plain, kept] =
            taking_turns(load, &url, paths, connections, THROUGHPUT_CALLS / 2, THROUGHPUT_ROUNDS).await;
        let ratio = |rates: &[f64]| Ratio::of(rates, &echo_rates);
        println!(
            "{connections} connection(s): RPC {:>9.0} calls/s   echo {:>9.0} msg/s   RPC/echo {}   (goal: >= 50%)",
            median(&rpc),
            median(&echo_rates),
            ratio(&rpc)
        );
        println!(
            "   no-import guest (math.add): {:>9.0} calls/s                      RPC/echo {}",
            median(&plain),
            ratio(&plain)
        );
        println!(
            "   reused instances (peer.add): {:>8.0} calls/s                      RPC/echo {}",
            median(&kept),
            ratio(&kept)
        );
    }

    println!("\n== payload scaling: echo(x) of a string of the size (RPC) vs echo of the same frame (raw)");
    let proxy = connect(Serialization::Json).await.expect("rpc client");
    let pickle = connect(Serialization::Pickle).await.expect("pickle client");
    let mut raw = raw_client(echo).await;
    for (size, n) in [(1usize << 10, 2000usize), (64 << 10, 500), (1 << 20, 50)] {
        let value = Value::Str("x".repeat(size));
        for (name, client, ser) in [("json", &proxy, Serialization::Json), ("pickle", &pickle, Serialization::Pickle)] {
            let (rpc, raw_us) = payload(client, &mut raw, &value, ser, n).await;
            println!(
                "{:>5} KiB {name:<6}  RPC {rpc:>9.1} µs/call   echo {raw_us:>9.1} µs   ratio {:.2}x",
                size >> 10,
                rpc / raw_us
            );
        }
    }
}

/// Connections of the `-tp` profiles: 4, or `EASYRPC_CONNECTIONS`.
fn profile_connections() -> usize {
    std::env::var("EASYRPC_CONNECTIONS").ok().and_then(|n| n.parse().ok()).filter(|&n| n > 0).unwrap_or(4)
}

/// One path alone for `time`, printing calls/s and the median of the batches' p50: for profilers.
async fn profile(path: &str, time: Duration, server: &TestServer, echo: std::net::SocketAddr, load: &Handle) {
    let started = Instant::now();
    let mut calls = 0usize;
    let mut p50s = Vec::new();
    match path {
        "latency" => {
            while started.elapsed() < time {
                print_latency(server, echo).await;
            }
        }
        "paced" => {
            while started.elapsed() < time {
                print_paced_latency(server, echo).await;
            }
        }
        "echo" | "host" | "host-reused" => {
            let mut ws = match path {
                "echo" => raw_client(echo).await,
                "host" => easyrpc_tests::RawClient::connect(server, "peer").await.ws,
                _ => easyrpc_tests::RawClient::connect(server, "peer_reused").await.ws,
            };
            while started.elapsed() < time {
                p50s.push(raw_latency(&mut ws, 1000).await.0);
                calls += 1000;
            }
        }
        "rpc" | "rpc-reused" => {
            let namespace = if path == "rpc" { "peer" } else { "peer_reused" };
            let proxy = EasyRpcProxy::connect_with(ClientConfig::new(&server.url(), SECRET, namespace)).await.expect("client");
            while started.elapsed() < time {
                p50s.push(rpc_latency(&proxy, 1000).await.0);
                calls += 1000;
            }
        }
        "rpc-tp" | "math-tp" | "reused-tp" | "peer-echo-tp" | "math-echo-tp" => {
            let work = match path {
                "rpc-tp" => ADD,
                "math-tp" => MATH_ADD,
                "peer-echo-tp" => ECHO,
                "math-echo-tp" => MATH_ECHO,
                _ => reused(ADD),
            };
            while started.elapsed() < time {
                rpc_throughput(load, &server.url(), work, profile_connections(), THROUGHPUT_CALLS).await;
                calls += THROUGHPUT_CALLS;
            }
        }
        "payload" => {
            let proxy = EasyRpcProxy::connect_with(ClientConfig::new(&server.url(), SECRET, "peer")).await.expect("client");
            // EASYRPC_PAYLOAD_KIB picks the size (64 KiB unless set).
            let kib = std::env::var("EASYRPC_PAYLOAD_KIB").ok().and_then(|k| k.parse().ok()).unwrap_or(64usize);
            let value = Value::Str("x".repeat(kib << 10));
            while started.elapsed() < time {
                proxy.call("echo", vec![value.clone()], vec![]).await.expect("echo");
                calls += 1;
            }
        }
        "echo-tp" => {
            while started.elapsed() < time {
                raw_throughput(load, echo, profile_connections(), THROUGHPUT_CALLS).await;
                calls += THROUGHPUT_CALLS;
            }
        }
        other => panic!("--profile takes latency, paced, echo, host, host-reused, rpc, rpc-reused, payload, echo-tp, rpc-tp, math-tp, reused-tp, peer-echo-tp or math-echo-tp, not {other}"),
    }
    let p50 = if p50s.is_empty() { String::new() } else { format!(", p50 {:.1} µs", median(&p50s)) };
    println!("{path}: {calls} calls, {:.0} calls/s{p50}", calls as f64 / started.elapsed().as_secs_f64());
}

/// Runs the Python original's benchmark (tests/peer/bench_python_easyrpc.py: `echo(i)` on a
/// uvicorn EasyRpcServer, its own client, 1 client and 4 client processes with 100 in flight)
/// and measures ours the same way in this run: our client calling `echo(i)`, sequentially, then
/// 1 and 4 connections with 100 in flight. Prints our speed-up.
async fn python_comparison(url: &str, load: &Handle) {
    let python = easyrpc_tests::python_with_easyrpc();
    let script = easyrpc_tests::peer_dir().join("bench_python_easyrpc.py");
    let out_file = std::env::temp_dir().join(format!("easyrpc-python-bench-{}.json", std::process::id()));
    println!("\n== the Python original (bench_python_easyrpc.py all --repeats 1), then ours the same way");
    let out = tokio::task::spawn_blocking({
        let out_file = out_file.clone();
        move || {
            std::process::Command::new(python)
                .arg(script)
                .args(["all", "--repeats", "1", "--port", "18731", "--json-out"])
                .arg(&out_file)
                .output()
        }
    })
    .await
    .expect("join")
    .expect("python bench runs");
    if !out.status.success() {
        println!("the Python benchmark failed:\n{}", String::from_utf8_lossy(&out.stderr));
        return;
    }
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_file).expect("python results")).expect("python json");
    let _ = std::fs::remove_file(&out_file);
    let python = |key: &str| results["summary"]["json"][key].as_f64().unwrap_or(f64::NAN);

    let proxy = EasyRpcProxy::connect_with(ClientConfig::new(url, SECRET, "peer")).await.expect("client");
    let mut samples = Vec::with_capacity(LATENCY_CALLS);
    for i in 0..LATENCY_CALLS + 200 {
        let t = Instant::now();
        proxy.call("echo", vec![Value::Int(i as i128)], vec![]).await.expect("echo");
        if i >= 200 {
            samples.push(t.elapsed());
        }
    }
    let (ours_p50, _) = stats(samples);
    // As many calls per run as the Python original makes (1 client: 20,000; 4 processes:
    // 10,000 each); ours the median of PYTHON_ROUNDS runs, the workloads taking turns.
    let [ours_1] = taking_turns(load, url, [Path::Rpc(ECHO)], 1, 20_000, PYTHON_ROUNDS).await.map(|r| median(&r));
    let four = [Path::Rpc(ECHO), Path::Rpc(MATH_ECHO), Path::Rpc(reused(ECHO)), Path::Rpc(reused(MATH_ECHO))];
    let [ours_4, plain_4, reused_4, reused_plain_4] =
        taking_turns(load, url, four, 4, 40_000, PYTHON_ROUNDS).await.map(|r| median(&r));
    println!(
        "                          Python original        ours     speed-up   (ours: median of {PYTHON_ROUNDS} runs)"
    );
    let row = |what: &str, theirs: f64, ours: f64, unit: &str, speedup: f64| {
        println!("{what:<24}{theirs:>12.0} {unit:<7}{ours:>8.0} {unit:<7}{speedup:>6.1}x")
    };
    row("echo p50 latency", python("latency_median_us"), ours_p50, "µs", python("latency_median_us") / ours_p50);
    row("1 client x 100", python("tp_1client_calls_per_s"), ours_1, "c/s", ours_1 / python("tp_1client_calls_per_s"));
    row("4 clients x 100", python("tp_4procs_calls_per_s"), ours_4, "c/s", ours_4 / python("tp_4procs_calls_per_s"));
    let python_4 = python("tp_4procs_calls_per_s");
    row("  math (no imports)", python_4, plain_4, "c/s", plain_4 / python_4);
    row("  reused instances", python_4, reused_4, "c/s", reused_4 / python_4);
    row("  math, reused", python_4, reused_plain_4, "c/s", reused_plain_4 / python_4);
    println!("(goals with 4 connections: at least 5x the Python original's calls/s with a fresh instance per call, 10x with reused instances)");
}
