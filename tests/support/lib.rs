//! Shared helpers for the integration tests and benchmarks: the built guest modules and a
//! runtime to load them with. Tests use real `.wasm` files built from `modules/`.

use easyrpc::runtime::{Module, Runtime, RuntimeConfig};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// Held by the tests whose waits are tight (the attack rows) and by the tests that run cargo
/// builds of their own (the guide, the SDK's snippets and walk): on two cores a build can starve
/// a host under test past those waits. Async tests `.lock().await` it, the others
/// `blocking_lock()` it.
pub static NO_BUILDS_BESIDE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Path of a module built from `modules/` (built on first use).
pub fn module_path(name: &str) -> PathBuf {
    xtask::module_path(name).unwrap_or_else(|e| panic!("cannot build the guest modules: {e}"))
}

/// One runtime per test process, shared: it is what a host has too.
pub fn runtime() -> Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new(RuntimeConfig::default()).expect("runtime starts")).clone()
}

/// Loads a built module into the shared runtime.
pub fn load(name: &str) -> Arc<Module> {
    runtime().load_file(module_path(name)).unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// Parses JSON text (Python dialect) into a Value, for readable test arguments.
pub fn v(text: &str) -> easyrpc::value::Value {
    easyrpc::value::json::parse(text).unwrap_or_else(|e| panic!("bad test JSON {text}: {e}"))
}

/// A value as compact JSON text, for readable assertions.
pub fn j(value: &easyrpc::value::Value) -> String {
    value.to_json()
}

/// A real server on 127.0.0.1 (random port) in this process, stopped by [`TestServer::stop`].
pub struct TestServer {
    pub addr: std::net::SocketAddr,
    pub registry: Arc<easyrpc::registry::Registry>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// Removed when the server is dropped (its config and state, for [`serve_config`]).
    scratch: Option<ScratchDir>,
}

/// The secret test servers use.
pub const SECRET: &str = "test-secret";
/// The path test servers serve.
pub const PATH: &str = "/ws/easy";

impl TestServer {
    /// Serves `modules` (name, namespaces) with default limits on [`PATH`] with [`SECRET`].
    pub async fn start(modules: &[(&str, &[&str])]) -> Self {
        Self::start_with(modules, easyrpc::runtime::CallLimits::default(), |_| {}).await
    }

    /// Like [`start`](Self::start) with call limits and a chance to adjust the server config.
    pub async fn start_with(
        modules: &[(&str, &[&str])],
        limits: easyrpc::runtime::CallLimits,
        tweak: impl FnOnce(&mut easyrpc::server::ServerConfig),
    ) -> Self {
        let mut snapshot = easyrpc::registry::RegistrySnapshot::default();
        for (name, namespaces) in modules {
            let module = load(name);
            for ns in *namespaces {
                snapshot.add_module_with_limits(ns, &module, limits);
            }
        }
        let mut config = easyrpc::server::ServerConfig::single(PATH, SECRET);
        tweak(&mut config);
        Self::with_config(snapshot, config).await
    }

    pub async fn with_config(
        snapshot: easyrpc::registry::RegistrySnapshot,
        config: easyrpc::server::ServerConfig,
    ) -> Self {
        Self::serve(Arc::new(easyrpc::registry::Registry::new(snapshot)), None, config).await
    }

    /// Serves `registry`; with a deployer, admins may deploy and remove modules.
    pub async fn serve(
        registry: Arc<easyrpc::registry::Registry>,
        deployer: Option<Arc<easyrpc::deploy::Deployer>>,
        config: easyrpc::server::ServerConfig,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
        Self::serve_on(listener, registry, deployer, config)
    }

    /// [`serve`](Self::serve) on a listener the caller bound (to restart a host on its port).
    pub fn serve_on(
        listener: tokio::net::TcpListener,
        registry: Arc<easyrpc::registry::Registry>,
        deployer: Option<Arc<easyrpc::deploy::Deployer>>,
        config: easyrpc::server::ServerConfig,
    ) -> Self {
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(easyrpc::server::run_with_deployer(
            listener,
            config,
            registry.clone(),
            deployer,
            async move {
                let _ = stopped.await;
            },
        ));
        Self { addr, registry, stop: Some(stop), task: Some(task), scratch: None }
    }

    /// `ws://127.0.0.1:port/ws/easy`
    pub fn url(&self) -> String {
        format!("ws://{}{PATH}", self.addr)
    }

    /// Shuts the server down gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server ran cleanly");
        }
    }

    /// Ends the server at once, as a killed process would: its connections drop without a
    /// close frame, and calls running on it are abandoned.
    pub async fn kill(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

/// A Python virtualenv (under target/) with the real `easyrpc==0.251` client, created on first
/// use. Returns its python interpreter.
pub fn python_with_easyrpc() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let venv = xtask::project_root().join("target").join("peer-venv");
            let python = venv.join("bin").join("python");
            let ready = || {
                std::process::Command::new(&python)
                    .args(["-c", "import easyrpc"])
                    .output()
                    .is_ok_and(|o| o.status.success())
            };
            if ready() {
                return Ok(python);
            }
            let run = |cmd: &mut std::process::Command| -> Result<(), String> {
                let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(format!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr)))
                }
            };
            run(std::process::Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
            run(std::process::Command::new(&python).args(["-m", "pip", "install", "--quiet", "easyrpc==0.251"]))?;
            if ready() {
                Ok(python)
            } else {
                Err("easyrpc did not install into the test virtualenv".to_owned())
            }
        })
        .clone()
        .unwrap_or_else(|e| panic!("cannot set up the Python peer client: {e}"))
}

/// `tests/peer/`: the real Python client's peer suite and the Python original's benchmark.
pub fn peer_dir() -> PathBuf {
    xtask::project_root().join("tests").join("peer")
}

/// A websocket connection to `url` with the settings of our client (its read buffer,
/// TCP_NODELAY), so that raw clients and ours differ only in what they do with frames.
pub async fn connect_like_our_client(
    url: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
    config.read_buffer_size = easyrpc::client::READ_BUFFER;
    tokio_tungstenite::connect_async_with_config(url, Some(config), true).await.expect("ws connects").0
}

/// The json frame of a request object (JSON text) under `request_id`, as a client sends it.
pub fn request_frame(request_id: &str, request: &str) -> String {
    format!(
        r#"{{"ws_action": {{"type": "request", "response_expected": true, "request": {request}, "request_id": "{request_id}"}}}}"#
    )
}

/// A raw websocket client speaking the wire protocol by hand, for tests that send what a
/// well-behaved client never would.
pub struct RawClient {
    pub ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

impl RawClient {
    /// Connects and completes the setup for `namespace` (json frames).
    pub async fn connect(server: &TestServer, namespace: &str) -> Self {
        Self::connect_with(server, namespace, easyrpc::wire::Serialization::Json).await
    }

    /// Connects and completes the setup for `namespace` in the given serialization.
    pub async fn connect_with(
        server: &TestServer,
        namespace: &str,
        serialization: easyrpc::wire::Serialization,
    ) -> Self {
        Self::connect_as(server, namespace, serialization, SECRET).await
    }

    /// Connects to `namespace` signing the setup with `secret`.
    pub async fn connect_as(
        server: &TestServer,
        namespace: &str,
        serialization: easyrpc::wire::Serialization,
        secret: &str,
    ) -> Self {
        use futures_util::SinkExt;
        let mut ws = connect_like_our_client(&server.url()).await;
        let claims = easyrpc::wire::auth::SetupClaims {
            kind: "PROXY".into(),
            id: "raw".into(),
            namespace: namespace.into(),
            serialization,
            notify: false,
        };
        let setup = format!(r#"{{"setup": "{}"}}"#, easyrpc::wire::auth::sign_setup(&claims, secret));
        ws.send(tokio_tungstenite::tungstenite::Message::text(setup)).await.expect("setup sent");
        let mut client = Self { ws };
        let reply = client.next_frame().await.expect("auth reply");
        assert_eq!(reply.get("auth").and_then(easyrpc::value::Value::as_str), Some("ok"), "{}", j(&reply));
        client
    }

    /// Connects without sending a setup frame.
    pub async fn connect_without_setup(server: &TestServer) -> Self {
        let ws = connect_like_our_client(&server.url()).await;
        Self { ws }
    }

    /// The next data frame (pickle frames decoded), none once the server closed.
    pub async fn next_frame(&mut self) -> Option<easyrpc::value::Value> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        loop {
            let msg = tokio::time::timeout(std::time::Duration::from_secs(5), self.ws.next())
                .await
                .expect("server answers within 5 s");
            match msg {
                Some(Ok(Message::Text(t))) => return Some(v(t.as_str())),
                Some(Ok(Message::Binary(b))) => {
                    return Some(easyrpc::wire::pickle::decode(&b).expect("valid pickle").value)
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Sends a text frame as is.
    pub async fn send_text(&mut self, text: &str) {
        use futures_util::SinkExt;
        self.ws.send(tokio_tungstenite::tungstenite::Message::text(text)).await.expect("frame sent");
    }

    /// Sends a request object (JSON text) under `request_id`.
    pub async fn send_request(&mut self, request_id: &str, request: &str) {
        self.send_text(&request_frame(request_id, request)).await;
    }

    /// Waits for the response to `request_id`, skipping other frames.
    pub async fn response(&mut self, request_id: &str) -> easyrpc::value::Value {
        loop {
            let frame = self.next_frame().await.expect("connection still open");
            let Some(action) = frame.get("ws_action") else { continue };
            if action.get("request_id").and_then(easyrpc::value::Value::as_str) == Some(request_id) {
                return action.get("response").cloned().unwrap_or(easyrpc::value::Value::None);
            }
        }
    }

    /// Sends a request and waits for its response.
    pub async fn request(&mut self, request_id: &str, request: &str) -> easyrpc::value::Value {
        self.send_request(request_id, request).await;
        self.response(request_id).await
    }
}

/// A server configured from TOML text (tenants, groups, modules, limits, grants, links) on [`PATH`]
/// with the admin secret [`SECRET`]. `{peer}`, `{math}`, `{hostile}`, `{stateful}` and `{chain}`
/// in the text become the paths of the built modules. Without a `data_dir` in the text, the
/// host keeps its state in a scratch directory removed with the server. Returns the server and
/// the modules that failed to load. Admins may deploy and remove modules.
pub async fn serve_config(toml_text: &str) -> (TestServer, Vec<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
    serve_config_on(listener, toml_text)
}

/// [`serve_config`] on a listener the caller bound (to restart a host on its port).
pub fn serve_config_on(listener: tokio::net::TcpListener, toml_text: &str) -> (TestServer, Vec<String>) {
    let mut text = toml_text.to_owned();
    for name in ["peer", "math", "hostile", "stateful", "chain"] {
        text = text.replace(&format!("{{{name}}}"), &module_path(name).display().to_string());
    }
    let scratch = ScratchDir::new("config");
    let file = scratch.0.join("easyrpc.toml");
    std::fs::write(&file, text).expect("config written");
    let config = easyrpc::config::ConfigFile::read(&file).expect("config parses");
    let registry = Arc::new(easyrpc::registry::Registry::default());
    let data_dir = config.data_dir.clone().unwrap_or_else(|| scratch.0.join("state"));
    let sources = easyrpc::capabilities::CapabilitySources::new(&data_dir, &registry);
    let base =
        config.prepare_snapshot(&easyrpc::registry::PolicyConfig::default(), &sources).expect("tenants and groups");
    let deployer = Arc::new(
        easyrpc::deploy::Deployer::new(runtime(), registry.clone(), base, config.module_sources()).keep_in(&data_dir),
    );
    let failures = deployer.load_all().expect("module sources readable");
    let mut server_config = easyrpc::server::ServerConfig::single(PATH, SECRET);
    server_config.links = easyrpc::config::link_configs(&config.links, &[], SECRET).expect("links");
    let mut server = TestServer::serve_on(listener, registry, Some(deployer), server_config);
    server.scratch = Some(scratch);
    (server, failures)
}

/// The Redis server tests use: `EASYRPC_TEST_REDIS` (default `redis://127.0.0.1:6379`), or
/// none when nothing answers there, after printing why the test is skipped. Under `CI=true` a
/// missing server fails the test instead.
pub fn test_redis(test: &str) -> Option<String> {
    let url = std::env::var("EASYRPC_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let address = url.trim_start_matches("redis://").split(['/', '?']).next().unwrap_or_default().to_owned();
    let address = address.rsplit('@').next().unwrap_or_default().to_owned();
    let reachable = std::net::ToSocketAddrs::to_socket_addrs(&address.as_str())
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)).is_ok());
    if reachable {
        return Some(url);
    }
    let why = format!("{test}: no Redis server answers at {url} (set EASYRPC_TEST_REDIS)");
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}; under CI=true that is a failure");
    println!("skipped {why}");
    None
}

/// A directory of its own under the system's temp directory, removed when dropped.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub fn new(purpose: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("easyrpc-{purpose}-{}-{}", std::process::id(), uuid_like()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn uuid_like() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Whether the calling test runs its body here: true in a child process started for it
/// alone, false in the test binary's own process, where it starts that child, waits for it and
/// fails if the child's run of the test failed. Tests that read process-wide figures (resident
/// memory) use it through [`alone_in_process!`], so that the other tests of the binary, running
/// beside them, do not show in those figures.
pub fn alone_in_process(module: &str, test: &str) -> bool {
    const CHILD: &str = "EASYRPC_TEST_ALONE";
    // libtest names a test by its module path without the crate's name.
    let name = match module.split_once("::") {
        Some((_, path)) => format!("{path}::{test}"),
        None => test.to_owned(),
    };
    if std::env::var(CHILD).is_ok_and(|running| running == name) {
        return true;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = std::process::Command::new(exe)
        .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, &name)
        .output()
        .expect("the test binary runs again");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    print!("{stdout}");
    eprint!("{stderr}");
    assert!(out.status.success(), "{name}, alone in a process of its own, failed ({})", out.status);
    assert!(stdout.contains("1 passed"), "{name} did not run in its own process: no test by that name");
    false
}

/// Runs the rest of the calling test alone in a process of its own (see [`alone_in_process`]).
#[macro_export]
macro_rules! alone_in_process {
    ($test:ident) => {
        if !$crate::alone_in_process(module_path!(), stringify!($test)) {
            return;
        }
    };
}

/// A bare websocket echo server on 127.0.0.1 (the transport's limit, for the benchmarks): it
/// reads with the host's read buffer and sends every text or binary frame back.
pub async fn websocket_echo_server() -> std::net::SocketAddr {
    use futures_util::{SinkExt, StreamExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let mut config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
                config.read_buffer_size = easyrpc::server::READ_BUFFER;
                let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else { return };
                let (mut sink, mut source) = ws.split();
                while let Some(Ok(msg)) = source.next().await {
                    if (msg.is_text() || msg.is_binary()) && sink.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// `target/<profile>`: where cargo put the binaries built beside this test's.
pub fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps").to_path_buf()
}

/// The `easyrpc` binary `cargo test --workspace` built from this source.
pub fn built_easyrpc() -> PathBuf {
    let built = target_profile_dir().join("easyrpc");
    assert!(built.exists(), "{} is not built: `cargo test --workspace` builds it", built.display());
    built
}

/// One fenced block of a markdown text: its info string (`toml file=a.toml`) and its lines.
pub struct FencedBlock {
    pub info: String,
    pub text: String,
}

/// The fenced blocks of `markdown`, in order; a fence may be indented (a list item's block).
pub fn fenced_blocks(markdown: &str) -> Vec<FencedBlock> {
    let mut blocks = Vec::new();
    let mut open: Option<FencedBlock> = None;
    for line in markdown.lines() {
        match (&mut open, line.trim_start().strip_prefix("```")) {
            (None, Some(info)) => open = Some(FencedBlock { info: info.trim().to_owned(), text: String::new() }),
            (Some(_), Some(_)) => blocks.extend(open.take()),
            (Some(block), None) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            (None, None) => {}
        }
    }
    blocks
}
