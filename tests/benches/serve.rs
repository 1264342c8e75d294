//! Side by side with `wasmtime serve` (run with `cargo bench -p easyrpc-tests --bench serve`):
//! sandboxed calls per second of a trivial function, a fresh instance each, on this machine.
//!
//! Our host serves the `math` module (its `add(a, b)`, a fresh instance per call by default) on
//! a runtime of its own in this process, as `easyrpc serve` would; `wasmtime serve` serves
//! `tests/benches/http-add` (the same `add` as a wasi:http handler; it makes a fresh instance
//! per request) as a process of its own. One load generator, on one thread of this process,
//! drives each in turn at the same concurrency: C connections, each with one request
//! outstanding at a time (our client over the websocket wire, `add(i, 2)`; plain HTTP/1.1
//! keep-alive, `GET /?a=i&b=2`). Rounds take turns, and each figure is the median of its rounds.
//!
//! Needs the `wasmtime` command line of the wasmtime version the host builds with (on `PATH`,
//! or named by `WASMTIME`): `cargo install wasmtime-cli --version 48.0.8 --locked`. Without it
//! the bench says so and stops.

use easyrpc::client::EasyRpcProxy;
use easyrpc::value::Value;
use easyrpc_tests::SECRET;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Concurrency levels measured: requests outstanding at once.
const CONCURRENCY: [usize; 3] = [1, 4, 16];
/// Rounds per level; both servers run once per round.
const ROUNDS: usize = 3;
/// How long each server is driven per round.
const ROUND: Duration = Duration::from_secs(3);
/// `wasmtime serve` as a user starts it for a Rust guest (`-S cli`: Rust's standard library
/// imports the CLI interfaces, environment and exit), and with the pooling allocator, as our
/// host runs.
const WASMTIME_OPTIONS: [&[&str]; 2] = [&["-S", "cli"], &["-S", "cli", "-O", "pooling-allocator=y"]];
/// Our host's one module and namespace.
const MODULES: &str = r#"
[[module]]
file = "{math}"
namespaces = ["math"]
"#;

/// The host binary's allocator (host/src/main.rs), so the bench measures what ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Kills a child server when the bench ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
}

fn run(command: &mut Command) {
    let status = command.status().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(status.success(), "{command:?} failed ({status})");
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Waits until something accepts connections on `port`.
fn wait_for(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start listening on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The wasmtime command line, if it is installed.
fn wasmtime() -> Option<(String, String)> {
    let program = std::env::var("WASMTIME").unwrap_or_else(|_| "wasmtime".to_owned());
    let out = Command::new(&program).arg("--version").output().ok()?;
    out.status.success().then(|| (program, String::from_utf8_lossy(&out.stdout).trim().to_owned()))
}

/// Builds the wasi:http guest and returns its component.
fn http_guest(root: &Path) -> PathBuf {
    xtask::ensure_wasm_target(xtask::WASI_TARGET).expect("the wasm32-wasip2 target");
    let manifest = root.join("tests/benches/http-add/Cargo.toml");
    let target_dir = root.join("target/http-add");
    run(cargo()
        .args(["build", "--release", "--quiet", "--target", xtask::WASI_TARGET, "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir));
    target_dir.join(xtask::WASI_TARGET).join("release/http_add.wasm")
}

/// Calls per second of `concurrency` loops, each running `one` back to back for [`ROUND`].
async fn drive<C, F, Fut>(connections: Vec<C>, one: F) -> f64
where
    C: Send + 'static,
    F: Fn(Arc<tokio::sync::Mutex<C>>, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut loops = tokio::task::JoinSet::new();
    for connection in connections {
        let (stop, done, one) = (stop.clone(), done.clone(), one.clone());
        let connection = Arc::new(tokio::sync::Mutex::new(connection));
        loops.spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                one(connection.clone(), i).await;
                i += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let started = Instant::now();
    tokio::time::sleep(ROUND).await;
    stop.store(true, Ordering::Relaxed);
    let calls = done.load(Ordering::Relaxed);
    let elapsed = started.elapsed();
    while loops.join_next().await.is_some() {}
    calls as f64 / elapsed.as_secs_f64()
}

/// One HTTP/1.1 keep-alive connection to the wasi:http server.
struct Http {
    reader: BufReader<TcpStream>,
}

impl Http {
    async fn connect(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.expect("wasmtime serve accepts");
        stream.set_nodelay(true).expect("nodelay");
        Self { reader: BufReader::new(stream) }
    }

    /// `GET /?a=..&b=..` and its body, read by its content length or its chunks.
    async fn add(&mut self, a: u64, b: u64) -> String {
        let request = format!("GET /?a={a}&b={b} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n");
        self.reader.get_mut().write_all(request.as_bytes()).await.expect("request written");
        let (mut length, mut chunked, mut line) = (None, false, String::new());
        loop {
            line.clear();
            self.reader.read_line(&mut line).await.expect("response header");
            let header = line.trim_end().to_ascii_lowercase();
            if header.is_empty() {
                break;
            }
            if let Some(value) = header.strip_prefix("content-length:") {
                length = value.trim().parse::<usize>().ok();
            }
            chunked |= header.starts_with("transfer-encoding:") && header.contains("chunked");
        }
        let mut body = Vec::new();
        if let Some(length) = length {
            body.resize(length, 0);
            self.reader.read_exact(&mut body).await.expect("response body");
        } else if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line).await.expect("chunk size");
                let size = usize::from_str_radix(line.trim(), 16).expect("chunk size in hex");
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk).await.expect("chunk");
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        }
        String::from_utf8(body).expect("a text body")
    }
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn main() {
    let Some((wasmtime, version)) = wasmtime() else {
        println!("wasmtime's command line is not installed: `cargo install wasmtime-cli --version 48.0.8 --locked`");
        println!("(or name it with WASMTIME=/path/to/wasmtime); nothing measured");
        std::process::exit(2);
    };
    let root = xtask::project_root();
    let guest = http_guest(&root);
    // As a user starts it, and with the pooling allocator our host uses.
    let mut http_servers = Vec::new();
    for options in WASMTIME_OPTIONS {
        let port = free_port();
        let child = Command::new(&wasmtime)
            .arg("serve")
            .args(options)
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .arg(&guest)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("wasmtime serve starts");
        http_servers.push((Server(child), port));
        wait_for(port, "wasmtime serve");
    }
    let host = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio");
    let (server, failures) = host.block_on(easyrpc_tests::serve_config(MODULES));
    assert!(failures.is_empty(), "{failures:?}");
    let url = server.url();

    println!("{version} (`wasmtime serve`, wasi:http) against our host (the websocket wire)");
    println!("add(i, 2), a fresh instance per call on both; C connections, one call outstanding on each;");
    println!("calls/s, medians of {ROUNDS} rounds of {ROUND:?}, the servers taking turns");
    println!(
        "{:>4}  {:>14}  {:>18}  {:>12}  {:>16}  {:>16}",
        "C", "wasmtime serve", "serve, pooling", "easyrpc", "easyrpc / serve", "/ serve, pooling"
    );
    let driver = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
    driver.block_on(async {
        for concurrency in CONCURRENCY {
            let mut http_rates = vec![Vec::new(); http_servers.len()];
            let mut rpc_rates = Vec::new();
            for _ in 0..ROUNDS {
                for ((_, port), rates) in http_servers.iter().zip(&mut http_rates) {
                    let mut connections = Vec::new();
                    for _ in 0..concurrency {
                        connections.push(Http::connect(*port).await);
                    }
                    rates.push(
                        drive(connections, |http, i| async move {
                            let sum = http.lock().await.add(i, 2).await;
                            assert_eq!(sum, (i + 2).to_string(), "wasmtime serve's add");
                        })
                        .await,
                    );
                }
                let mut proxies = Vec::new();
                for _ in 0..concurrency {
                    proxies.push(EasyRpcProxy::connect(&url, SECRET, "math").await.expect("our host accepts"));
                }
                rpc_rates.push(
                    drive(proxies, |proxy, i| async move {
                        let args = vec![Value::Int(i128::from(i % 1_000_000)), Value::Int(2)];
                        let sum = proxy.lock().await.call("add", args, vec![]).await.expect("our add");
                        assert_eq!(sum, Value::Int(i128::from(i % 1_000_000) + 2), "our add");
                    })
                    .await,
                );
            }
            let http: Vec<f64> = http_rates.into_iter().map(median).collect();
            let rpc = median(rpc_rates);
            println!(
                "{concurrency:>4}  {:>14.0}  {:>18.0}  {rpc:>12.0}  {:>15.2}x  {:>15.2}x",
                http[0],
                http[1],
                rpc / http[0],
                rpc / http[1]
            );
        }
    });
    host.block_on(server.stop());
}
