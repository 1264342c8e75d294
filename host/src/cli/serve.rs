//! `easyrpc serve`: load modules into namespaces and serve them over easyrpc's websocket
//! protocol until ctrl-c or SIGTERM.

use crate::capabilities::{self, CapabilitySources};
use crate::config::ConfigFile;
use crate::deploy::ModuleSource;
use crate::deploy::{self, Deployer};
use crate::metrics;
use crate::registry::{PolicyConfig, Registry};
use crate::runtime::{CallLimits, Runtime, RuntimeConfig};
use crate::server::{self, ConnectionLimits, PathConfig, ServerConfig, DEFAULT_PATH, DEFAULT_PORT};
use anyhow::{bail, Context};
use std::path::PathBuf;
use std::sync::Arc;

/// Environment variable read for the secret when neither --secret nor the config gives one.
pub const SECRET_ENV: &str = "EASYRPC_SECRET";
/// The secret of `--demo` (the one easyrpc's README uses). Never used without --demo.
pub const DEMO_SECRET: &str = "abcd1234";
/// Where `cargo xtask modules` puts the bundled modules, relative to the project root.
pub const BUNDLED_MODULES: &str = "modules/target/components";
/// What the bundled modules' namespaces are granted when the host serves them (no modules
/// given): `stateful` keeps state in the data directory, logs and reads its settings, `chain`
/// calls the other bundled namespaces. A namespace the config configures itself keeps its own.
const BUNDLED_GRANTS: &str = r#"
[[namespace]]
name = "stateful"
grants = ["wasi:keyvalue", "wasi:logging", "wasi:config"]
[namespace.config]
greeting = "hello from the bundled modules"

[[namespace]]
name = "chain"
grants = ["easyrpc:call"]
call_namespaces = ["math", "peer", "stateful"]
"#;

/// Serve WebAssembly component functions to easyrpc clients.
///
/// With no --config, --modules or files, serves the bundled example modules (built by
/// `cargo xtask modules`), each in a namespace named after it (math, peer, hostile, ...). A
/// config without modules serves what is deployed to it.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long)]
    pub host: Option<String>,
    /// Port to listen on (default 8220).
    #[arg(long)]
    pub port: Option<u16>,
    /// Websocket path to serve; repeat for several (default /ws/easy).
    #[arg(long = "path")]
    pub paths: Vec<String>,
    /// Shared secret clients sign their setup with (or EASYRPC_SECRET, or the config's).
    #[arg(long)]
    pub secret: Option<String>,
    /// TOML config file (see the `config` module docs and the README).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Directory of modules: DIR/*.wasm serve namespace DEFAULT, DIR/<ns>/*.wasm namespace <ns>.
    #[arg(long = "modules")]
    pub modules_dirs: Vec<PathBuf>,
    /// Module files, each served in the namespace named after the file.
    pub files: Vec<PathBuf>,
    /// Directory for compiled components, so restarts skip compilation (default:
    /// $XDG_CACHE_HOME/easyrpc or ~/.cache/easyrpc).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Directory for the host's state: modules deployed over the wire (and removals), restored
    /// at start, and the embedded key-value store of namespaces that grant wasi:keyvalue
    /// (default: the config's data_dir, else $XDG_DATA_HOME/easyrpc or ~/.local/share/easyrpc).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// TLS certificate chain (PEM): with --tls-key the port speaks wss:// only (default: the
    /// config's tls_cert).
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// Serve /metrics (Prometheus), /healthz and /readyz over HTTP on this address, e.g.
    /// 127.0.0.1:9220 (default: the config's metrics_addr, else off).
    #[arg(long)]
    pub metrics_addr: Option<String>,
    /// Export every call's span to the OpenTelemetry collector at this base URL over OTLP/HTTP,
    /// e.g. http://127.0.0.1:4318 (default: the config's otlp_endpoint, else off).
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
    /// Compile every module at start instead of using the compile cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Requests arrive wrapped in JWTs (easyrpc's encryption_enabled) on the --path paths.
    #[arg(long)]
    pub encryption: bool,
    /// Demo mode: allow the well-known demo secret when no secret is configured (printed).
    #[arg(long)]
    pub demo: bool,
    /// Per-call deadline in milliseconds.
    #[arg(long)]
    pub call_deadline_ms: Option<u64>,
    /// Per-call memory limit in MiB.
    #[arg(long)]
    pub memory_mib: Option<usize>,
    /// Guest memory across all calls and generators in MiB (default 4096); past it calls
    /// answer Busy.
    #[arg(long)]
    pub guest_memory_mib: Option<usize>,
    /// Link a namespace (or group) of this host to the namespace of that name on a parent host
    /// (ours or a Python EasyRpcServer): `--link ws://10.0.0.5:8220/ws/easy#public`. Repeatable,
    /// one parent per namespace; `[[link]]` in the config does the same.
    #[arg(long = "link", value_name = "URL#NAMESPACE")]
    pub links: Vec<String>,
    /// The parent's secret for `--link` (default: this host's own secret).
    #[arg(long)]
    pub link_secret: Option<String>,
}

/// The collector `serve` exports spans to: the flag's, else the config's. A config that cannot
/// be read names none here; `run` reports it.
pub fn otlp_endpoint(args: &ServeArgs) -> Option<String> {
    let from_config = || args.config.as_deref().and_then(|path| ConfigFile::read(path).ok()?.otlp_endpoint);
    args.otlp_endpoint.clone().or_else(from_config)
}

pub async fn run(args: Box<ServeArgs>) -> anyhow::Result<()> {
    let mut file = match &args.config {
        Some(path) => ConfigFile::read(path)?,
        None => ConfigFile::default(),
    };
    let secret = match args.secret.clone().or(file.secret.clone()).or_else(|| std::env::var(SECRET_ENV).ok()) {
        Some(s) if !s.is_empty() => s,
        _ if args.demo => {
            eprintln!("easyrpc: demo mode, using the demo secret {DEMO_SECRET:?} (set --secret for anything real)");
            DEMO_SECRET.to_owned()
        }
        _ => bail!("no secret: pass --secret, set {SECRET_ENV}, or put `secret` in the config (or use --demo)"),
    };

    let mut paths = file.path_configs(&secret);
    paths.extend(args.paths.iter().map(|p| PathConfig {
        path: p.clone(),
        secret: secret.clone(),
        encryption: args.encryption,
    }));
    if paths.is_empty() {
        paths.push(PathConfig { path: DEFAULT_PATH.to_owned(), secret: secret.clone(), encryption: args.encryption });
    }

    // Checked before any module loads, so that a mistake in them fails at once.
    let links = crate::config::link_configs(&file.links, &args.links, args.link_secret.as_deref().unwrap_or(&secret))?;

    let tls = match (args.tls_cert.clone().or(file.tls_cert.clone()), args.tls_key.clone().or(file.tls_key.clone())) {
        (Some(cert), Some(key)) => Some(crate::wire::tls::server_config(&cert, &key).map_err(anyhow::Error::msg)?),
        (None, None) => None,
        _ => bail!("TLS needs both a certificate and its key (tls_cert and tls_key, or --tls-cert and --tls-key)"),
    };
    if tls.is_some() {
        tracing::info!("connections are TLS: clients connect with wss://");
    }

    let mut sources = file.module_sources();
    sources.extend(args.modules_dirs.iter().cloned().map(ModuleSource::Dir));
    for f in &args.files {
        let ns = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        sources.push(ModuleSource::File { path: f.clone(), namespaces: vec![ns] });
    }
    // A config with no modules serves what is deployed to it; only a bare `serve` falls back.
    if sources.is_empty() && args.config.is_none() {
        sources = bundled_modules()?;
        let bundled: ConfigFile = toml::from_str(BUNDLED_GRANTS).context("the bundled modules' grants")?;
        let unconfigured: Vec<_> = bundled
            .namespaces
            .into_iter()
            .filter(|ns| !file.namespaces.iter().any(|own| own.name == ns.name))
            .collect();
        file.namespaces.extend(unconfigured);
    }

    let cache_dir = match args.no_cache {
        true => None,
        false => args.cache_dir.clone().or(file.cache_dir.clone()).or_else(default_cache_dir),
    };
    let mut runtime_config = RuntimeConfig { cache_dir, ..Default::default() };
    if let Some(mib) = args.guest_memory_mib.or(file.limits.guest_memory_mib) {
        runtime_config.guest_memory = mib << 20;
    }
    let runtime = Runtime::new(runtime_config).context("starting the WASM runtime")?;
    // Metrics first, so that /readyz answers (not ready) while the modules load.
    let readiness = metrics::Readiness::new(links.len());
    if let Some(addr) = args.metrics_addr.clone().or(file.metrics_addr.clone()) {
        let listener =
            tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("listening for metrics on {addr}"))?;
        tracing::info!(at = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
        let sampled = runtime.clone();
        metrics::metrics().sample_with(move |m| {
            m.instances_ready.set(sampled.ready_sandboxes() as i64);
            m.instances_warm.set(sampled.warm_instances() as i64);
            m.guest_memory_bytes.set(sampled.memory_budget().used() as i64);
        });
        tokio::spawn(metrics::serve_http(listener, readiness.clone(), std::future::pending()));
    }
    let mut limits = CallLimits::default();
    let mut connection_limits = ConnectionLimits::default();
    file.limits.apply(&mut connection_limits, &mut limits);
    if let Some(ms) = args.call_deadline_ms {
        limits.deadline = std::time::Duration::from_millis(ms);
    }
    if let Some(mib) = args.memory_mib {
        limits.memory = mib << 20;
    }
    let default_policy = PolicyConfig { limits, ..PolicyConfig::default() };
    let registry = Arc::new(Registry::default());
    let data_dir = args.data_dir.clone().or(file.data_dir.clone()).unwrap_or_else(capabilities::default_data_dir);
    let capability_sources = CapabilitySources::new(&data_dir, &registry);
    let base = file.prepare_snapshot(&default_policy, &capability_sources)?;
    let deployer = Arc::new(Deployer::new(runtime, registry.clone(), base, sources).keep_in(&data_dir));
    let failures = deployer.load_all()?;
    readiness.modules_loaded();
    if registry.snapshot().namespaces().next().is_none() && !failures.is_empty() {
        bail!("no module could be loaded ({} failed)", failures.len());
    }
    // Module files are watched: adding, replacing or removing one updates what is served.
    let watcher = tokio::spawn(deploy::watch(deployer.clone(), std::future::pending()));

    let host = args.host.clone().or(file.host.clone()).unwrap_or_else(|| "127.0.0.1".to_owned());
    let port = args.port.or(file.port).unwrap_or(DEFAULT_PORT);
    let listener = tokio::net::TcpListener::bind((host.as_str(), port))
        .await
        .with_context(|| format!("listening on {host}:{port}"))?;
    let config =
        ServerConfig { paths, limits: connection_limits, server_id: uuid::Uuid::new_v4().to_string(), links, tls };
    let served = server::run_with_deployer(listener, config, registry, Some(deployer), shutdown_signal()).await;
    watcher.abort();
    served
}

/// `$XDG_CACHE_HOME/easyrpc`, else `~/.cache/easyrpc`.
fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("easyrpc"))
}

/// The bundled example modules, each in the namespace named after it.
fn bundled_modules() -> anyhow::Result<Vec<ModuleSource>> {
    let dir = PathBuf::from(BUNDLED_MODULES);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|e| e == "wasm")).collect()
        })
        .unwrap_or_default();
    if files.is_empty() {
        bail!("no modules given and the bundled modules are not built in {BUNDLED_MODULES}: run `cargo xtask modules` (or `cargo xtask serve`), or pass --modules DIR");
    }
    files.sort();
    Ok(files
        .into_iter()
        .map(|path| {
            let ns = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            ModuleSource::File { path, namespaces: vec![ns] }
        })
        .collect())
}

/// Completes on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
