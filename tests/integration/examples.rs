//! Every example in examples/ run as its header says: the guest built from source, the server
//! started from the example's own config (on a free port instead of the fixed one), then the
//! Rust client binary and the Python client script against it.

use easyrpc::config::{load_registry, ConfigFile};
use easyrpc::registry::PolicyConfig;
use easyrpc::server::{ConnectionLimits, ServerConfig};
use easyrpc_tests::{python_with_easyrpc, runtime, TestServer};
use std::path::PathBuf;

async fn serve_example(name: &str) -> (TestServer, String) {
    xtask::build_examples().expect("example guests build");
    xtask::build_modules().expect("bundled modules build");
    let config_path = xtask::project_root().join("examples").join(name).join("easyrpc.toml");
    let file = ConfigFile::read(&config_path).expect("example config reads");
    let secret = file.secret.clone().expect("example config has its secret");
    let snapshot = file.prepare_snapshot(&PolicyConfig::default()).expect("tenants and groups");
    let (snapshot, failures) = load_registry(&runtime(), &file.module_sources(), snapshot).expect("modules load");
    assert!(failures.is_empty(), "{failures:?}");
    let paths = file.path_configs(&secret);
    let path = paths[0].path.clone();
    let config =
        ServerConfig { paths, limits: ConnectionLimits::default(), server_id: "example".into(), links: Vec::new() };
    let server = TestServer::with_config(snapshot, config).await;
    let url = format!("ws://{}{path}", server.addr);
    (server, url)
}

/// The example binary cargo built beside this test (`target/<profile>/examples/<name>`).
fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>");
    let path = profile_dir.join("examples").join(name);
    assert!(path.exists(), "{} is not built: `cargo test` builds it (a single `--test` does not: run `cargo build -p easyrpc-tests --examples` first)", path.display());
    path
}

async fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> String {
    let out = tokio::process::Command::new(program).args(args).kill_on_drop(true).output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), out).await.expect("finishes").expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "exit {}: {stdout}{}", out.status, String::from_utf8_lossy(&out.stderr));
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_usage() {
    let (server, url) = serve_example("basic").await;
    let rust = run(example_binary("basic_client"), &[&url]).await;
    assert_eq!(rust, "{\"good_func_a\":[1,5,7]}\n");
    let script = xtask::project_root().join("examples/basic/client.py");
    let port = server.addr.port().to_string();
    let python = run(python_with_easyrpc(), &[script.to_str().unwrap(), &port]).await;
    assert_eq!(python, "{'good_func_a': [1, 5, 7]}\n");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiple_namespaces() {
    let (server, url) = serve_example("namespaces").await;
    let rust = run(example_binary("namespaces_client"), &[&url]).await;
    let lines: Vec<&str> = rust.lines().collect();
    assert_eq!(lines[0], r#"{"private_function":[1,5,7]}"#);
    assert_eq!(lines[1], r#"{"open_function":[1,{"keyword":"value"}]}"#);
    assert_eq!(
        &lines[2..],
        ["private_function(a: json, b: json, c: json) -> json", "open_function(a: json, **kw: json) -> json"]
    );
    let script = xtask::project_root().join("examples/namespaces/client.py");
    let port = server.addr.port().to_string();
    let python = run(python_with_easyrpc(), &[script.to_str().unwrap(), &port]).await;
    assert_eq!(
        python,
        "{'private_function': [1, 5, 7]}\n{'open_function': [1, {'keyword': 'value'}]}\n['open_function', 'private_function']\n"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generators() {
    let (server, url) = serve_example("generators").await;
    let rust = run(example_binary("generators_client"), &[&url]).await;
    assert_eq!(rust, "stream 1\nstream 2\nstream \"a\"\nstream \"b\"\nstream 3\nstream 4\n");
    let script = xtask::project_root().join("examples/generators/client.py");
    let port = server.addr.port().to_string();
    let python = run(python_with_easyrpc(), &[script.to_str().unwrap(), &port]).await;
    let expected: String = ["async for", "asend(None)"]
        .iter()
        .flat_map(|how| ["1", "2", "a", "b", "3", "4"].iter().map(move |i| format!("{how} {i}\n")))
        .collect();
    assert_eq!(python, expected);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants() {
    let (server, _) = serve_example("tenants").await;
    let script = xtask::project_root().join("examples/tenants/client.py");
    let port = server.addr.port().to_string();
    let python = run(python_with_easyrpc(), &[script.to_str().unwrap(), &port]).await;
    let lines: Vec<&str> = python.lines().collect();
    assert_eq!(lines[0], "alpha echo(hi) -> hi");
    assert!(lines[1].starts_with("sandbox spin() -> Timeout('spin exceeded its deadline of 500ms"), "{}", lines[1]);
    assert_eq!(
        &lines[2..],
        ["everything mul(2.0, 3.0) -> 6.0", "everything ok() -> ok", "sandbox with alpha-secret: refused"]
    );
    server.stop().await;
}
