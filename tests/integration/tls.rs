//! TLS: a host with a certificate made here (a test CA and a leaf for 127.0.0.1) serves
//! `wss://` to the Rust client (trusting the CA file), to the real Python client (`https://`
//! host and an SSL context, easyrpc 0.251 as it is) and to a child host's link; plain `ws://`
//! and a client that does not trust the CA are refused.

use easyrpc::client::{ClientConfig, EasyRpcProxy};
use easyrpc::value::Value;
use easyrpc_tests::{load, python_with_easyrpc, ScratchDir, TestServer, PATH, SECRET};

/// A test CA and a certificate for 127.0.0.1 signed by it: (CA file, cert, key).
fn certificates(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    xtask::test_certificates(dir).expect("test certificates")
}

async fn tls_host(cert: &std::path::Path, key: &std::path::Path) -> TestServer {
    let mut snapshot = easyrpc::registry::RegistrySnapshot::default();
    snapshot.add_module("peer", &load("peer"));
    let mut config = easyrpc::server::ServerConfig::single(PATH, SECRET);
    config.tls = Some(easyrpc::wire::tls::server_config(cert, key).expect("a TLS identity"));
    TestServer::with_config(snapshot, config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_host_serves_wss_to_our_client_and_links_and_refuses_plain_ws() {
    let dir = ScratchDir::new("tls");
    let (ca, cert, key) = certificates(&dir.0);
    let host = tls_host(&cert, &key).await;
    let wss = format!("wss://{}{PATH}", host.addr);

    let mut config = ClientConfig::new(&wss, SECRET, "peer");
    config.ca_file = Some(ca.clone());
    let client = EasyRpcProxy::connect_with(config).await.expect("wss with the CA file");
    assert_eq!(client.call("add", vec![Value::Int(40), Value::Int(2)], vec![]).await.unwrap(), Value::Int(42));

    let Err(untrusted) = EasyRpcProxy::connect(&wss, SECRET, "peer").await else { panic!("the CA is not trusted") };
    assert!(untrusted.to_string().to_lowercase().contains("certificate"), "{untrusted}");
    let Err(plain) = EasyRpcProxy::connect(&host.url(), SECRET, "peer").await else { panic!("plain ws on a TLS port") };
    println!("plain ws:// refused: {plain}");
    // The host serves on after both.
    assert_eq!(client.call("echo", vec!["still".into()], vec![]).await.unwrap(), "still".into());

    // A child host links to the TLS parent over wss, trusting the CA file.
    let mut child_config = easyrpc::server::ServerConfig::single(PATH, SECRET);
    child_config.links.push(easyrpc::cluster::parent::LinkConfig {
        url: wss.clone(),
        secret: SECRET.into(),
        namespace: "peer".into(),
        ca_file: Some(ca.clone()),
    });
    let child = TestServer::with_config(easyrpc::registry::RegistrySnapshot::default(), child_config).await;
    let on_child = EasyRpcProxy::connect(&child.url(), SECRET, "peer").await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let relayed = loop {
        match on_child.call("echo", vec!["over wss".into()], vec![]).await {
            Ok(v) => break v,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                on_child.refresh().await.expect("refresh");
            }
            Err(e) => panic!("the link over wss never came up: {e}"),
        }
    };
    assert_eq!(relayed, "over wss".into());
    child.stop().await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_reaches_a_tls_host_with_an_https_host_and_an_ssl_context() {
    const SCRIPT: &str = r#"
import asyncio, ssl, sys
from easyrpc.proxy import EasyRpcProxy

async def main():
    port, path, secret, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    context = ssl.create_default_context(cafile=ca)
    proxy = await EasyRpcProxy.create('https://127.0.0.1', port, path, server_secret=secret, namespace='peer',
                                      ssl_verify=context)
    print(await proxy['add'](40, 2))

asyncio.run(main())
"#;
    let dir = ScratchDir::new("tls-python");
    let (ca, cert, key) = certificates(&dir.0);
    let host = tls_host(&cert, &key).await;
    let output = tokio::process::Command::new(python_with_easyrpc())
        .args(["-c", SCRIPT, &host.addr.port().to_string(), PATH, SECRET, ca.to_str().unwrap()])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), output).await.expect("ends").expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stdout.trim(), "42");
    host.stop().await;
}
