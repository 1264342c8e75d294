//! Deploys kept across restarts: modules deployed over the wire, and removals of module
//! files, are written to the host's data directory and served again after a restart, in the
//! same order; `modules` lists what each namespace holds and where it came from.

use easyrpc::client::EasyRpcProxy;
use easyrpc::value::Value;
use easyrpc_tests::{j, module_path, serve_config_on, ScratchDir, TestServer, SECRET};

fn config(data_dir: &std::path::Path) -> String {
    format!("data_dir = \"{}\"\n\n[[module]]\nfile = \"{{math}}\"\nnamespaces = [\"files\"]\n", data_dir.display())
}

async fn start(data_dir: &std::path::Path) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (server, failures) = serve_config_on(listener, &config(data_dir));
    assert!(failures.is_empty(), "{failures:?}");
    server
}

async fn admin(server: &TestServer, namespace: &str) -> EasyRpcProxy {
    EasyRpcProxy::connect(&server.url(), SECRET, namespace).await.expect("connects")
}

/// (namespace, name, source) of each module the host lists.
async fn listed(server: &TestServer) -> Vec<(String, String, String)> {
    let Value::List(modules) = admin(server, "files").await.modules(None).await.expect("modules") else {
        panic!("a list")
    };
    let text = |m: &Value, k: &str| m.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    modules.iter().map(|m| (text(m, "namespace"), text(m, "name"), text(m, "source"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_and_removals_survive_a_restart_in_order() {
    let state = ScratchDir::new("kept-deploys");
    let peer = std::fs::read(module_path("peer")).unwrap();
    let math = std::fs::read(module_path("math")).unwrap();

    let first = start(&state.0).await;
    let a = admin(&first, "tenant").await;
    a.deploy("tenant", "peer", &peer).await.expect("deploy peer");
    a.deploy("tenant", "calc", &math).await.expect("deploy math as calc");
    a.remove("files", "math").await.expect("remove the file's module");
    let before = listed(&first).await;
    assert_eq!(
        before.iter().map(|(ns, name, source)| format!("{ns}/{name}/{source}")).collect::<Vec<_>>(),
        ["tenant/peer/deployed", "tenant/calc/deployed"],
        "the removed file module is not listed"
    );
    let Value::List(details) = a.modules(Some("tenant")).await.unwrap() else { panic!("a list") };
    let peer_hash = easyrpc::runtime::content_hash(&peer);
    assert_eq!(details[0].get("hash").and_then(Value::as_str), Some(peer_hash.as_str()));
    assert_eq!(details[0].get("size"), Some(&Value::Int(peer.len() as i128)));
    assert!(matches!(details[0].get("since"), Some(Value::Int(secs)) if *secs > 1_700_000_000), "{}", j(&details[0]));
    first.stop().await;

    // A restart serves the same modules, in the same order, and keeps the removal.
    let second = start(&state.0).await;
    assert_eq!(listed(&second).await, before);
    let tenant = admin(&second, "tenant").await;
    assert_eq!(tenant.call("echo", vec!["kept".into()], vec![]).await.unwrap(), "kept".into());
    assert!(tenant.functions().iter().any(|d| d.name == "distance"), "calc (math) is served too");
    let files = admin(&second, "files").await;
    assert!(files.functions().is_empty(), "the removed file stays removed: {:?}", files.functions());

    // Removing a deployed module is kept too.
    tenant.remove("tenant", "calc").await.expect("remove calc");
    second.stop().await;
    let third = start(&state.0).await;
    let names: Vec<String> = listed(&third).await.into_iter().map(|(_, name, _)| name).collect();
    assert_eq!(names, ["peer"]);
    third.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_list_of_deploys_stops_the_host_with_a_clear_error() {
    let state = ScratchDir::new("kept-damaged");
    std::fs::create_dir_all(state.0.join("deploys")).unwrap();
    std::fs::write(state.0.join("deploys").join("deploys.json"), "{ not json").unwrap();
    let file = state.0.join("easyrpc.toml");
    std::fs::write(&file, config(&state.0).replace("{math}", &module_path("math").display().to_string())).unwrap();
    let config = easyrpc::config::ConfigFile::read(&file).unwrap();
    let registry = std::sync::Arc::new(easyrpc::registry::Registry::default());
    let sources = easyrpc::capabilities::CapabilitySources::new(&state.0, &registry);
    let base = config.prepare_snapshot(&easyrpc::registry::PolicyConfig::default(), &sources).unwrap();
    let deployer = easyrpc::deploy::Deployer::new(easyrpc_tests::runtime(), registry, base, config.module_sources())
        .keep_in(&state.0);
    let e = deployer.load_all().expect_err("a damaged list is not ignored");
    assert!(format!("{e:#}").contains("deploys.json is damaged; move it away"), "{e:#}");
}
