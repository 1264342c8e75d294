//! Hot-swap: modules deployed, replaced and removed while the host serves, over the wire by an
//! admin and through watched module directories. Four clients calling through 20 swaps see
//! no failed call; a module that does not load leaves the old one serving; clients pick up
//! new signatures, also after a call cancelled while it read its own answer; a deploy ends
//! only the kept instances of the module it replaces, and forgets no tenant's running calls.

use easyrpc::client::{ClientConfig, ClientError, EasyRpcProxy};
use easyrpc::deploy::ModuleSource;
use easyrpc::deploy::{self, Deployer};
use easyrpc::registry::{PolicyConfig, Registry, RegistrySnapshot};
use easyrpc::runtime::InstanceReuse;
use easyrpc::server::ServerConfig;
use easyrpc::value::Value;
use easyrpc_tests::{module_path, runtime, TestServer, PATH, SECRET};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(module_path(name)).expect("module built")
}

/// A server with a deployer over `sources` (none: deploys only).
async fn server(sources: Vec<ModuleSource>) -> (TestServer, Arc<Deployer>) {
    server_with(PolicyConfig::default(), sources).await
}

/// A server whose namespaces all have `policy`.
async fn server_with(policy: PolicyConfig, sources: Vec<ModuleSource>) -> (TestServer, Arc<Deployer>) {
    let registry = Arc::new(Registry::default());
    let base = RegistrySnapshot::with_default_policy(policy);
    let deployer = Arc::new(Deployer::new(runtime(), registry.clone(), base, sources));
    deployer.load_all().expect("sources load");
    let server = TestServer::serve(registry, Some(deployer.clone()), ServerConfig::single(PATH, SECRET)).await;
    (server, deployer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_swaps_under_load_lose_no_call() {
    twenty_swaps_under_load(PolicyConfig::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_swaps_under_load_lose_no_call_with_reused_instances() {
    // Kept instances belong to the version they were made of: none answers after its swap.
    twenty_swaps_under_load(PolicyConfig { instances: InstanceReuse::reused(), ..PolicyConfig::default() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_ends_only_the_kept_instances_of_the_module_it_replaces() {
    // `bump` counts its calls in a global; these namespaces reuse instances, so the count goes
    // on while sequential calls land in the one kept instance. A deploy publishes a new
    // snapshot: the instances kept of modules it leaves in place must live on, in another
    // tenant's namespace and in the deploying one, and those of the module it replaces must not.
    let (server, _) =
        server_with(PolicyConfig { instances: InstanceReuse::reused(), ..PolicyConfig::default() }, vec![]).await;
    let admin = EasyRpcProxy::connect(&server.url(), SECRET, "tenant_a").await.unwrap();
    admin.deploy("tenant_a", "hostile", &bytes("hostile")).await.unwrap();
    let tenant_a = EasyRpcProxy::connect(&server.url(), SECRET, "tenant_a").await.unwrap();
    let bump = || async { tenant_a.call("bump", vec![], vec![]).await.unwrap() };
    assert_eq!(bump().await, Value::Int(1));
    assert_eq!(bump().await, Value::Int(2));

    admin.deploy("tenant_b", "math", &bytes("math")).await.unwrap();
    assert_eq!(bump().await, Value::Int(3), "another tenant's deploy keeps this tenant's instances");
    admin.deploy("tenant_a", "math", &bytes("math")).await.unwrap();
    assert_eq!(bump().await, Value::Int(4), "a deploy of another module keeps this module's instances");
    admin.remove("tenant_a", "math").await.unwrap();
    assert_eq!(bump().await, Value::Int(5), "so does removing another module");

    admin.deploy("tenant_a", "hostile", &bytes("hostile")).await.unwrap();
    assert_eq!(bump().await, Value::Int(6), "the same bytes again are the same module");

    // The same code with a custom section added: another version of the module.
    let mut next_version = bytes("hostile");
    let (name, payload) = (b"easyrpc-test".as_slice(), b"version 2".as_slice());
    next_version.extend([0, (1 + name.len() + payload.len()) as u8, name.len() as u8]);
    next_version.extend(name.iter().chain(payload));
    admin.deploy("tenant_a", "hostile", &next_version).await.unwrap();
    assert_eq!(bump().await, Value::Int(1), "the replaced module's instances end with it");
    assert_eq!(bump().await, Value::Int(2));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_keeps_counting_the_calls_running_in_other_namespaces() {
    // Namespaces configured nowhere get the default policy: here one call at a time and no
    // queue. A call running across another tenant's deploy still holds its namespace's one
    // slot afterwards.
    let policy = PolicyConfig { max_concurrent_calls: 1, max_queued_calls: 0, ..PolicyConfig::default() };
    let (server, _) = server_with(policy, vec![]).await;
    let admin = EasyRpcProxy::connect(&server.url(), SECRET, "admin").await.unwrap();
    admin.deploy("tenant_a", "peer", &bytes("peer")).await.unwrap();
    admin.deploy("tenant_b", "math", &bytes("math")).await.unwrap();
    let tenant_a = Arc::new(EasyRpcProxy::connect(&server.url(), SECRET, "tenant_a").await.unwrap());
    let slow = |delay: f64, tag: &str| {
        let (tenant_a, tag) = (tenant_a.clone(), tag.to_owned());
        async move { tenant_a.call("slow", vec![Value::Float(delay), Value::Str(tag)], vec![]).await }
    };
    let running = tokio::spawn(slow(2.0, "first"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Known bytes: no compilation, the deploy is over long before the first call.
    admin.deploy("tenant_c", "math", &bytes("math")).await.unwrap();
    assert!(!running.is_finished(), "the first call must still run for this test to mean anything");
    match slow(0.0, "second").await {
        Err(ClientError::Remote(text)) => assert!(text.starts_with("Busy("), "{text}"),
        other => panic!("the running call's slot was forgotten: {other:?}"),
    }
    assert_eq!(running.await.unwrap().unwrap(), Value::Str("first".into()));
    assert_eq!(slow(0.0, "third").await.unwrap(), Value::Str("third".into()));
    server.stop().await;
}

async fn twenty_swaps_under_load(policy: PolicyConfig) {
    let (server, _) = server_with(policy, vec![]).await;
    let admin = EasyRpcProxy::connect(&server.url(), SECRET, "live").await.unwrap();
    let (v1, v2) = (bytes("swap_v1"), bytes("swap_v2"));
    admin.deploy("live", "swap", &v1).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (url, stop, calls) = (server.url(), stop.clone(), calls.clone());
        clients.push(tokio::spawn(async move {
            let proxy = EasyRpcProxy::connect(&url, SECRET, "live").await.unwrap();
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match proxy.call("version", vec![], vec![]).await {
                    Ok(Value::Str(v)) if v == "v1" || v == "v2" => {}
                    other => failures.push(format!("{other:?}")),
                }
                calls.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }
    for i in 0..20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let next = if i % 2 == 0 { &v2 } else { &v1 };
        admin.deploy("live", "swap", next).await.expect("swap deploys");
    }
    // The last swap (i = 19) deployed v1 ... and one more to end on the newer version.
    admin.deploy("live", "swap", &v2).await.unwrap();
    let after_last = calls.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let failures = c.await.unwrap();
        assert!(failures.is_empty(), "failed calls: {failures:?}");
    }
    assert!(calls.load(Ordering::Relaxed) > after_last + 20, "clients kept calling");
    // After the last swap every call gets the new version.
    let check = EasyRpcProxy::connect(&server.url(), SECRET, "live").await.unwrap();
    for _ in 0..50 {
        assert_eq!(check.call("version", vec![], vec![]).await.unwrap(), Value::Str("v2".into()));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_calls_finish_on_the_old_version() {
    let (server, _) =
        server(vec![ModuleSource::File { path: module_path("peer"), namespaces: vec!["live".into()] }]).await;
    let admin = EasyRpcProxy::connect(&server.url(), SECRET, "live").await.unwrap();
    let client = Arc::new(EasyRpcProxy::connect(&server.url(), SECRET, "live").await.unwrap());
    let slow = {
        let client = client.clone();
        tokio::spawn(async move { client.call("slow", vec![Value::Float(0.5), "old".into()], vec![]).await })
    };
    let mut counting = client.stream("count", vec![3.into()], vec![]).await.unwrap();
    use futures_util::StreamExt;
    assert_eq!(counting.next().await.unwrap().unwrap(), Value::Int(0));
    tokio::time::sleep(Duration::from_millis(100)).await;
    admin.remove("live", "peer").await.unwrap();
    // The running call and the open generator finish on the version they started with.
    assert_eq!(slow.await.unwrap().unwrap(), Value::Str("old".into()));
    assert_eq!(counting.next().await.unwrap().unwrap(), Value::Int(1));
    assert_eq!(counting.next().await.unwrap().unwrap(), Value::Int(2));
    drop(counting);
    // New calls see the removal.
    assert!(client.call("echo", vec![1.into()], vec![]).await.is_err());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_version_leaves_the_old_one_serving_and_only_admins_deploy() {
    let (server, _) = server(vec![]).await;
    let admin = EasyRpcProxy::connect(&server.url(), SECRET, "live").await.unwrap();
    let summary = admin.deploy("live", "swap", &bytes("swap_v1")).await.unwrap();
    assert_eq!(summary.get("functions"), Some(&Value::List(vec!["version".into(), "scale".into()])));
    let mut broken = bytes("swap_v2");
    broken.truncate(broken.len() / 2);
    match admin.deploy("live", "swap", &broken).await {
        Err(ClientError::Remote(text)) => assert!(text.contains("failed to compile"), "{text}"),
        other => panic!("expected the compile error, got {other:?}"),
    }
    assert_eq!(admin.call("version", vec![], vec![]).await.unwrap(), Value::Str("v1".into()));
    match admin.remove("live", "nope").await {
        Err(ClientError::Remote(text)) => assert_eq!(text, "no module nope in namespace live"),
        other => panic!("expected an error, got {other:?}"),
    }
    // A tenant (or anyone without the admin secret) cannot deploy.
    let (tenant_server, _) = {
        let registry = Arc::new(Registry::default());
        let mut base = RegistrySnapshot::with_default_policy(PolicyConfig::default());
        let policy = PolicyConfig { secret: Some("tenant".into()), ..PolicyConfig::default() };
        base.set_policy("t", easyrpc::registry::NamespacePolicy::new(policy));
        let deployer = Arc::new(Deployer::new(runtime(), registry.clone(), base, vec![]));
        deployer.load_all().unwrap();
        (TestServer::serve(registry, Some(deployer.clone()), ServerConfig::single(PATH, SECRET)).await, deployer)
    };
    let tenant = EasyRpcProxy::connect(&tenant_server.url(), "tenant", "t").await.unwrap();
    match tenant.deploy("t", "swap", &bytes("swap_v1")).await {
        Err(ClientError::Remote(text)) => {
            assert!(text.contains("needs a connection signed with the admin secret"), "{text}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    tenant_server.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_pick_up_new_signatures() {
    let (server, _) = server(vec![]).await;
    let admin = EasyRpcProxy::connect(&server.url(), SECRET, "live").await.unwrap();
    admin.deploy("live", "swap", &bytes("swap_v1")).await.unwrap();
    let client = EasyRpcProxy::connect(&server.url(), SECRET, "live").await.unwrap();
    assert!(client.function("extra").is_none());
    admin.deploy("live", "swap", &bytes("swap_v2")).await.unwrap();
    // The host's notice marks the listing stale; the next call lists again first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(client.call("scale", vec![2.into()], vec![]).await.unwrap(), Value::Int(40));
    assert!(client.function("extra").is_some(), "the new function was listed after the notice");
    assert_eq!(client.call("extra", vec![], vec![]).await.unwrap(), Value::Str("only in v2".into()));
    // A name the client has not seen yet is looked up again before failing.
    let other = EasyRpcProxy::connect(&server.url(), SECRET, "live").await.unwrap();
    admin.deploy("live", "more", &bytes("peer")).await.unwrap();
    assert_eq!(other.call("add", vec![1.into()], vec![]).await.unwrap(), Value::Int(3));
    server.stop().await;
}

/// A caller alone on its connection reads its answer itself rather than through the client's
/// reader task; cancelled while reading (here by its timeout), it hands the reading back, so
/// the idle connection still reads the host's change notice. One thread, as in a
/// `current_thread` program, where a missed hand-back would leave nobody reading.
#[tokio::test(flavor = "current_thread")]
async fn a_lone_caller_cancelled_while_reading_hands_the_reading_back() {
    let (server, _) = server(vec![]).await;
    let admin = EasyRpcProxy::connect(&server.url(), SECRET, "live").await.unwrap();
    admin.deploy("live", "swap", &bytes("swap_v1")).await.unwrap();
    admin.deploy("live", "peer", &bytes("peer")).await.unwrap();
    let mut config = ClientConfig::new(&server.url(), SECRET, "live");
    config.call_timeout = Some(Duration::from_millis(200));
    let client = EasyRpcProxy::connect_with(config).await.unwrap();
    let late = client.call("slow", vec![Value::Float(0.5), "late".into()], vec![]).await.unwrap_err();
    assert!(matches!(late, ClientError::Timeout(_)), "{late}");
    // The next caller gets its own answer, not the late one still on its way.
    assert_eq!(client.call("add", vec![1.into()], vec![]).await.unwrap(), Value::Int(3));
    // Idle now: the late answer and the notice of this deploy arrive with no call waiting.
    admin.deploy("live", "swap", &bytes("swap_v2")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(client.function("extra").is_none(), "listed again only at the next call");
    assert_eq!(client.call("add", vec![2.into()], vec![]).await.unwrap(), Value::Int(4));
    assert!(client.function("extra").is_some(), "the notice read while idle marked the listing stale");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watched_directories_follow_file_changes() {
    let dir = std::env::temp_dir().join(format!("easyrpc-watch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("live")).unwrap();
    let file = dir.join("live").join("swap.wasm");
    std::fs::write(&file, bytes("swap_v1")).unwrap();
    let (server, deployer) = server(vec![ModuleSource::Dir(dir.clone())]).await;
    let (stop_watch, stopped) = tokio::sync::oneshot::channel::<()>();
    let watcher = tokio::spawn(deploy::watch(deployer, async move {
        let _ = stopped.await;
    }));
    let client = EasyRpcProxy::connect(&server.url(), SECRET, "live").await.unwrap();
    assert_eq!(client.call("version", vec![], vec![]).await.unwrap(), Value::Str("v1".into()));

    let wait_for = |expect: &'static str| {
        let client = &client;
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let got = client.call("version", vec![], vec![]).await;
                if matches!(&got, Ok(Value::Str(v)) if v == expect) {
                    return;
                }
                assert!(Instant::now() < deadline, "still {got:?} instead of {expect}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // Replaced, written in two steps as a slow copy would: half a file first.
    let v2 = bytes("swap_v2");
    std::fs::write(&file, &v2[..v2.len() / 2]).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    std::fs::write(&file, &v2).unwrap();
    wait_for("v2").await;
    // Garbage never replaces a working version.
    std::fs::write(&file, b"not wasm at all").unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(client.call("version", vec![], vec![]).await.unwrap(), Value::Str("v2".into()));
    std::fs::write(&file, bytes("swap_v1")).unwrap();
    wait_for("v1").await;
    // Removed: the namespace empties.
    std::fs::remove_file(&file).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.call("version", vec![], vec![]).await.is_ok() {
        assert!(Instant::now() < deadline, "the removed module still serves");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_watch.send(());
    watcher.await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    server.stop().await;
}

/// A client that asked for change notices gets one when its own namespace's functions change,
/// and none when another namespace's do: another tenant's deploys are not its business.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_notices_reach_only_the_namespace_that_changed() {
    use easyrpc::wire::{auth, Serialization};
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (server, _) = server(vec![]).await;
    let admin = EasyRpcProxy::connect(&server.url(), SECRET, "alpha").await.unwrap();
    admin.deploy("alpha", "swap", &bytes("swap_v1")).await.unwrap();
    let claims = auth::SetupClaims {
        kind: auth::PROXY.into(),
        id: "watcher".into(),
        namespace: "alpha".into(),
        serialization: Serialization::Json,
        notify: true,
    };
    let mut watcher = easyrpc_tests::connect_like_our_client(&server.url()).await;
    let setup = format!(r#"{{"setup": "{}"}}"#, auth::sign_setup(&claims, SECRET));
    watcher.send(Message::text(setup)).await.unwrap();
    let auth_reply = watcher.next().await.expect("auth reply").unwrap();
    assert!(auth_reply.to_text().unwrap().contains("\"auth\":\"ok\""), "{auth_reply:?}");
    async fn next_frame<S>(ws: &mut S, timeout: Duration) -> Option<String>
    where
        S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
    {
        let frame = tokio::time::timeout(timeout, ws.next()).await.ok().flatten()?;
        Some(frame.expect("a frame").to_text().expect("text").to_owned())
    }

    admin.deploy("beta", "swap", &bytes("swap_v1")).await.unwrap();
    assert_eq!(
        next_frame(&mut watcher, Duration::from_millis(700)).await,
        None,
        "beta's deploy is not alpha's business"
    );
    admin.deploy("alpha", "swap", &bytes("swap_v2")).await.unwrap();
    let notice = next_frame(&mut watcher, Duration::from_secs(5)).await.expect("alpha's own change is announced");
    assert!(notice.contains("functions_changed"), "{notice}");
    server.stop().await;
}
