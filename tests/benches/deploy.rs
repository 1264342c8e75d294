//! Deployment benchmark (run with `cargo bench -p easyrpc-tests --bench deploy`):
//! * time from deploy (admin over the wire) to the first successful call of the new version,
//!   for bytes the host has never seen (compiled) and for bytes it compiled before (cache);
//! * host start time with 50 modules, cold (empty compile cache) and cached.
//!
//! Prints figures; asserts nothing.

use easyrpc::client::EasyRpcProxy;
use easyrpc::deploy::Deployer;
use easyrpc::deploy::ModuleSource;
use easyrpc::registry::{PolicyConfig, Registry, RegistrySnapshot};
use easyrpc::runtime::{Runtime, RuntimeConfig};
use easyrpc::server::ServerConfig;
use easyrpc::value::Value;
use easyrpc_tests::{module_path, TestServer, PATH, SECRET};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The host binary's allocator (host/src/main.rs), so the bench measures what ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MODULES: usize = 50;
const DEPLOYS: usize = 10;

/// The module's bytes with a custom section appended: the same component with a different
/// content hash, so neither cache knows it.
fn variant(bytes: &[u8], tag: usize) -> Vec<u8> {
    let name = b"bench-variant";
    let payload = tag.to_le_bytes();
    let mut out = bytes.to_vec();
    out.push(0);
    out.push((1 + name.len() + payload.len()) as u8);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(&payload);
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn deploy_to_first_call(admin: &EasyRpcProxy, caller: &EasyRpcProxy, bytes: &[u8], expect: &str) -> Duration {
    let started = Instant::now();
    admin.deploy("live", "swap", bytes).await.expect("deploys");
    loop {
        if let Ok(Value::Str(v)) = caller.call("version", vec![], vec![]).await {
            if v == expect {
                return started.elapsed();
            }
        }
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio");
    rt.block_on(async {
        let cache = std::env::temp_dir().join(format!("easyrpc-deploy-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&cache);
        let runtime =
            Runtime::new(RuntimeConfig { cache_dir: Some(cache.clone()), ..Default::default() }).expect("runtime");
        let registry = Arc::new(Registry::default());
        let base = RegistrySnapshot::with_default_policy(PolicyConfig::default());
        let deployer = Arc::new(Deployer::new(runtime.clone(), registry.clone(), base, vec![]));
        let server = TestServer::serve(registry, Some(deployer), ServerConfig::single(PATH, SECRET)).await;
        let admin = EasyRpcProxy::connect(&server.url(), SECRET, "live").await.expect("admin");
        let caller = EasyRpcProxy::connect(&server.url(), SECRET, "live").await.expect("caller");
        let v1 = std::fs::read(module_path("swap_v1")).expect("built");
        let v2 = std::fs::read(module_path("swap_v2")).expect("built");

        let mut fresh = Vec::new();
        let mut known = Vec::new();
        for i in 0..DEPLOYS {
            // Never-seen bytes: compiled on deploy.
            fresh.push(deploy_to_first_call(&admin, &caller, &variant(&v2, i), "v2").await);
            // Bytes deployed before: no compilation.
            known.push(deploy_to_first_call(&admin, &caller, &v1, "v1").await);
        }
        println!("== deploy over the wire to the first successful call of the new version (median of {DEPLOYS})");
        println!("new bytes (compiled)            {:>8.2} ms", ms(median(fresh)));
        println!("known bytes (no compilation)    {:>8.2} ms", ms(median(known)));
        server.stop().await;

        // Host start: 50 distinct modules from a directory, cold then with the disk cache.
        let dir = std::env::temp_dir().join(format!("easyrpc-start-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("many")).expect("dir");
        let peer = std::fs::read(module_path("peer")).expect("built");
        for i in 0..MODULES {
            std::fs::write(dir.join("many").join(format!("m{i:02}.wasm")), variant(&peer, 1000 + i)).expect("write");
        }
        let start_cache = dir.join("cache");
        let mut starts = Vec::new();
        for _ in 0..2 {
            let started = Instant::now();
            let runtime = Runtime::new(RuntimeConfig { cache_dir: Some(start_cache.clone()), ..Default::default() })
                .expect("runtime");
            let registry = Arc::new(Registry::default());
            let base = RegistrySnapshot::with_default_policy(PolicyConfig::default());
            let deployer = Deployer::new(runtime, registry.clone(), base, vec![ModuleSource::Dir(dir.clone())]);
            let failures = deployer.load_all().expect("loads");
            assert!(failures.is_empty());
            assert_eq!(registry.snapshot().namespace("many").map(|ns| ns.names().len()), Some(9));
            starts.push(started.elapsed());
        }
        println!("\n== host start with {MODULES} modules ({} KiB each)", peer.len() / 1024);
        println!("cold (compile every module)     {:>8.1} ms", ms(starts[0]));
        println!(
            "cached (load compiled modules)  {:>8.1} ms   ({:.0}x faster)",
            ms(starts[1]),
            starts[0].as_secs_f64() / starts[1].as_secs_f64()
        );
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&cache);
    });
}
