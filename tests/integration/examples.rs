//! Every example in examples/ run as its header says: the guest built from source, the server
//! started from the example's own config (on a free port instead of the fixed one), then the
//! Rust client binary and the Python client script against it.

use easyrpc::config::{load_registry, ConfigFile};
use easyrpc::registry::PolicyConfig;
use easyrpc::server::{ConnectionLimits, ServerConfig};
use easyrpc_tests::{python_with_easyrpc, runtime, TestServer};
use std::path::PathBuf;

async fn serve_example(name: &str) -> (TestServer, String) {
    {
        let _builds = easyrpc_tests::NO_BUILDS_BESIDE.lock().await;
        xtask::build_examples().expect("example guests build");
        xtask::build_modules().expect("bundled modules build");
    }
    let config_path = xtask::project_root().join("examples").join(name).join("easyrpc.toml");
    let file = ConfigFile::read(&config_path).expect("example config reads");
    let secret = file.secret.clone().expect("example config has its secret");
    let snapshot = file.prepare_snapshot(&PolicyConfig::default(), &no_state()).expect("tenants and groups");
    let (snapshot, failures) = load_registry(&runtime(), &file.module_sources(), snapshot).expect("modules load");
    assert!(failures.is_empty(), "{failures:?}");
    let paths = file.path_configs(&secret);
    let path = paths[0].path.clone();
    let config = ServerConfig {
        paths,
        limits: ConnectionLimits::default(),
        server_id: "example".into(),
        links: Vec::new(),
        tls: None,
    };
    let server = TestServer::with_config(snapshot, config).await;
    let url = format!("ws://{}{path}", server.addr);
    (server, url)
}

/// The example binary cargo built beside this test (`target/<profile>/examples/<name>`).
fn example_binary(name: &str) -> PathBuf {
    let path = easyrpc_tests::target_profile_dir().join("examples").join(name);
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

/// The hosts of a cluster example (examples/cluster/TOPOLOGY/*.toml), each started from its own
/// config on a free port, the links' URLs pointed at those ports; by host name.
async fn serve_cluster(topology: &str) -> Vec<(String, TestServer)> {
    xtask::build_modules().expect("bundled modules build");
    let dir = xtask::project_root().join("examples/cluster").join(topology);
    let mut configs: Vec<PathBuf> = std::fs::read_dir(&dir).expect("topology dir").map(|e| e.unwrap().path()).collect();
    configs.sort();
    let mut hosts = Vec::new();
    let mut ports = Vec::new();
    for path in &configs {
        let file = ConfigFile::read(path).expect("config reads");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        ports.push((file.port.expect("a port"), listener.local_addr().unwrap().port()));
        hosts.push((path.file_stem().unwrap().to_string_lossy().into_owned(), file, listener));
    }
    let mut servers = Vec::new();
    for (name, file, listener) in hosts {
        let secret = file.secret.clone().expect("a secret");
        let snapshot = file.prepare_snapshot(&PolicyConfig::default(), &no_state()).expect("groups");
        let (snapshot, failures) = load_registry(&runtime(), &file.module_sources(), snapshot).expect("modules load");
        assert!(failures.is_empty(), "{failures:?}");
        let mut links = easyrpc::config::link_configs(&file.links, &[], &secret).expect("links");
        for link in &mut links {
            for (written, free) in &ports {
                link.url = link.url.replace(&format!(":{written}/"), &format!(":{free}/"));
            }
        }
        let config = ServerConfig {
            paths: file.path_configs(&secret),
            limits: ConnectionLimits::default(),
            server_id: name.clone(),
            links,
            tls: None,
        };
        let paths = if config.paths.is_empty() {
            ServerConfig::single(easyrpc_tests::PATH, &secret).paths
        } else {
            config.paths
        };
        let config = ServerConfig { paths, ..config };
        let registry = std::sync::Arc::new(easyrpc::registry::Registry::new(snapshot));
        servers.push((name, TestServer::serve_on(listener, registry, None, config)));
    }
    servers
}

/// Calls `function` on `host`'s `namespace` until it answers (the links come up meanwhile).
async fn call_across(
    host: &TestServer,
    namespace: &str,
    function: &str,
    args: Vec<easyrpc::value::Value>,
) -> easyrpc::value::Value {
    let client =
        easyrpc::client::EasyRpcProxy::connect(&host.url(), "cluster-secret", namespace).await.expect("connects");
    let started = std::time::Instant::now();
    loop {
        let _ = client.refresh().await;
        if client.function(function).is_some() {
            return client.call(function, args, vec![]).await.expect("answers across the cluster");
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{function} never reached {}", host.url());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_examples() {
    use easyrpc::value::Value;
    let chain = serve_cluster("chain").await;
    assert_eq!(call_across(&chain[2].1, "public", "echo", vec!["from c".into()]).await, "from c".into());
    assert_eq!(call_across(&chain[0].1, "public", "version", vec![]).await, "v1".into());
    for (_, host) in chain {
        host.stop().await;
    }
    let fork = serve_cluster("fork").await;
    assert_eq!(call_across(&fork[1].1, "public", "ok", vec![]).await, "ok".into(), "b reaches its sibling d");
    assert_eq!(call_across(&fork[0].1, "public", "version", vec![]).await, "v1".into());
    for (_, host) in fork {
        host.stop().await;
    }
    let ring = serve_cluster("ring").await;
    assert_eq!(call_across(&ring[0].1, "ring", "version", vec![]).await, "v1".into());
    let product = call_across(&ring[0].1, "ring", "mul", vec![Value::Float(2.0), Value::Float(4.0)]).await;
    assert_eq!(product, Value::Float(8.0));
    assert_eq!(call_across(&ring[2].1, "ring", "echo", vec!["round".into()]).await, "round".into());
    for (_, host) in ring {
        host.stop().await;
    }
}

/// Capability sources for the examples, which grant none.
fn no_state() -> easyrpc::capabilities::CapabilitySources {
    let registry = std::sync::Arc::new(easyrpc::registry::Registry::default());
    easyrpc::capabilities::CapabilitySources::new(&std::env::temp_dir().join("easyrpc-examples-state"), &registry)
}
