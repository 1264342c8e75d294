//! The Kubernetes manifests in deploy/k8s agree with themselves and with the host: the
//! ConfigMap's config file parses as the host reads it, the ports it names are the containers'
//! and the Services', the probes ask the health endpoints, the mounts are where the config and
//! the command line look, the command line parses as `easyrpc serve`, the link names the parent
//! host by the headless Service, and the Redis URL names the Redis Service.

use serde::Deserialize;
use serde_json::Value;

/// Every document of every manifest file.
fn documents() -> Vec<Value> {
    let dir = xtask::project_root().join("deploy").join("k8s");
    let mut files: Vec<_> = std::fs::read_dir(&dir).expect("deploy/k8s").map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut docs = Vec::new();
    for file in files.iter().filter(|f| f.extension().is_some_and(|e| e == "yaml")) {
        let text = std::fs::read_to_string(file).unwrap();
        for doc in serde_norway::Deserializer::from_str(&text) {
            let value = Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            if !value.is_null() {
                docs.push(value);
            }
        }
    }
    docs
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/k8s"))
}

fn port_of(address: &str) -> u64 {
    address.rsplit(':').next().and_then(|p| p.parse().ok()).expect("an address with a port")
}

#[test]
fn the_kubernetes_manifests_agree_with_the_host_and_each_other() {
    let docs = documents();
    for doc in &docs {
        assert!(doc["apiVersion"].is_string() && doc["kind"].is_string(), "every document is an object: {doc}");
    }

    // The config file parses as the host reads it.
    let config_map = find(&docs, "ConfigMap", "easyrpc-config");
    let text = config_map["data"]["easyrpc.toml"].as_str().expect("easyrpc.toml in the ConfigMap");
    let scratch = easyrpc_tests::ScratchDir::new("k8s-config");
    let file = scratch.0.join("easyrpc.toml");
    std::fs::write(&file, text).unwrap();
    let config = easyrpc::config::ConfigFile::read(&file).expect("the ConfigMap's config parses");
    let ws_port = u64::from(config.port.expect("a port"));
    let metrics_port = port_of(config.metrics_addr.as_deref().expect("metrics_addr"));
    assert_eq!(config.host.as_deref(), Some("0.0.0.0"), "a pod listens on every interface");

    // The hosts: ports, probes, mounts, command line.
    let set = find(&docs, "StatefulSet", "easyrpc");
    let pod = &set["spec"]["template"];
    assert_eq!(set["spec"]["selector"]["matchLabels"]["app"], pod["metadata"]["labels"]["app"]);
    let container = &pod["spec"]["containers"][0];
    let port = |name: &str| {
        container["ports"].as_array().unwrap().iter().find(|p| p["name"] == name).map(|p| p["containerPort"].as_u64())
    };
    assert_eq!(port("ws"), Some(Some(ws_port)));
    assert_eq!(port("metrics"), Some(Some(metrics_port)));
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(container[probe]["httpGet"]["port"], "metrics", "{probe} asks the metrics port");
    }
    let mount = |volume: &str| {
        container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == volume)
            .and_then(|m| m["mountPath"].as_str())
            .unwrap_or_else(|| panic!("a mount of {volume}"))
            .to_owned()
    };
    assert_eq!(config.modules_dirs, [std::path::PathBuf::from(mount("modules"))]);
    assert_eq!(config.data_dir.as_deref(), Some(std::path::Path::new(&mount("data"))));
    let volume_claims: Vec<&str> = set["spec"]["volumeClaimTemplates"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["metadata"]["name"].as_str())
        .collect();
    assert_eq!(volume_claims, ["data"]);
    let modules_claim = pod["spec"]["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "modules").unwrap();
    find(&docs, "PersistentVolumeClaim", modules_claim["persistentVolumeClaim"]["claimName"].as_str().unwrap());
    let config_volume = pod["spec"]["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "config").unwrap();
    assert_eq!(config_volume["configMap"]["name"], "easyrpc-config");
    let secret_ref = &container["env"].as_array().unwrap().iter().find(|e| e["name"] == "EASYRPC_SECRET").unwrap()
        ["valueFrom"]["secretKeyRef"];
    let secret = find(&docs, "Secret", secret_ref["name"].as_str().unwrap());
    assert!(secret["stringData"][secret_ref["key"].as_str().unwrap()].is_string());

    // Each command line `easyrpc serve` runs is one the binary accepts, with the mounted config;
    // the children's link names the parent (pod 0) by the headless Service and the ws port.
    let script = container["args"][0].as_str().expect("the start script");
    let commands: Vec<&str> = script.lines().filter_map(|l| l.trim().strip_prefix("exec ")).collect();
    assert_eq!(commands.len(), 2, "a parent's command and a child's: {script}");
    let service = set["spec"]["serviceName"].as_str().unwrap();
    let parent = format!("{}-0", set["metadata"]["name"].as_str().unwrap());
    assert!(script.contains(&format!("\"$(hostname)\" = \"{parent}\"")), "{script}");
    for command in commands {
        let words: Vec<String> = command.split_whitespace().map(|w| w.trim_matches('"').to_owned()).collect();
        let parsed =
            <easyrpc::cli::Cli as clap::Parser>::try_parse_from(&words).unwrap_or_else(|e| panic!("{command}: {e}"));
        let easyrpc::cli::Command::Serve(serve) = parsed.command else { panic!("{command} is not serve") };
        let config_path = serve.config.expect("--config");
        assert_eq!(config_path.parent().unwrap(), std::path::Path::new(&mount("config")));
        assert_eq!(config_path.file_name().unwrap(), "easyrpc.toml");
        for link in &serve.links {
            assert_eq!(link, &format!("ws://{parent}.{service}:{ws_port}/ws/easy#public"));
        }
    }

    // Services: the headless one the StatefulSet names, and the clients' one, on the ws port.
    let headless = find(&docs, "Service", service);
    assert_eq!(headless["spec"]["clusterIP"], "None");
    for name in [service, "easyrpc-clients"] {
        let svc = find(&docs, "Service", name);
        assert_eq!(svc["spec"]["selector"]["app"], pod["metadata"]["labels"]["app"], "{name} selects the hosts");
        assert_eq!(svc["spec"]["ports"][0]["port"].as_u64(), Some(ws_port));
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], "ws");
    }

    // The Redis every namespace with backend = "redis" names is the Redis Service.
    let redis = find(&docs, "Service", "redis");
    let redis_port = redis["spec"]["ports"][0]["port"].as_u64().unwrap();
    let redis_urls: Vec<String> = config
        .namespaces
        .iter()
        .filter_map(|ns| ns.keyvalue.as_ref())
        .filter(|kv| kv.backend.as_deref() == Some("redis"))
        .filter_map(|kv| kv.url.clone())
        .collect();
    assert!(!redis_urls.is_empty(), "the example shares state through Redis");
    for url in redis_urls {
        assert_eq!(url, format!("redis://redis:{redis_port}"));
    }
    find(&docs, "Deployment", "redis");

    // The image's Dockerfile exposes the same ports.
    let dockerfile = std::fs::read_to_string(xtask::project_root().join("deploy").join("Dockerfile")).unwrap();
    assert!(dockerfile.contains(&format!("EXPOSE {ws_port} {metrics_port}")), "{dockerfile}");
}
