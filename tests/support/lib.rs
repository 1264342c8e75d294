//! Shared helpers for the integration tests and benchmarks: the built guest modules and a
//! runtime to load them with. Tests use real `.wasm` files built from `modules/`.

use easyrpc::runtime::{Module, Runtime, RuntimeConfig};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

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
}

/// The secret test servers use.
pub const SECRET: &str = "test-secret";
/// The path test servers serve.
pub const PATH: &str = "/ws/easy";

impl TestServer {
    /// Serves `modules` (name, namespaces) with default limits on [`PATH`] with [`SECRET`].
    pub async fn start(modules: &[(&str, &[&str])]) -> Self {
        let mut snapshot = easyrpc::registry::RegistrySnapshot::default();
        for (name, namespaces) in modules {
            let module = load(name);
            for ns in *namespaces {
                snapshot.add_module(ns, &module, easyrpc::runtime::CallLimits::default());
            }
        }
        Self::with_config(snapshot, easyrpc::server::ServerConfig::single(PATH, SECRET)).await
    }

    pub async fn with_config(snapshot: easyrpc::registry::RegistrySnapshot, config: easyrpc::server::ServerConfig) -> Self {
        let registry = Arc::new(easyrpc::registry::Registry::new(snapshot));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(easyrpc::server::run(listener, config, registry.clone(), async move {
            let _ = stopped.await;
        }));
        Self { addr, registry, stop: Some(stop), task: Some(task) }
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

/// `shared/peer/` beside the project root.
pub fn shared_peer_dir() -> PathBuf {
    xtask::project_root().parent().map(|p| p.join("shared").join("peer")).unwrap_or_default()
}
