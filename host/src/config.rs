//! Where modules come from and which namespaces they serve in: `--modules DIR` folders and the
//! TOML config file.
//!
//! Owns reading that configuration and loading the modules into a [`RegistrySnapshot`]. A
//! module that fails to load is reported and skipped: one bad file must not keep the others
//! from being served. It does not listen or parse frames.
//!
//! Module directories (`--modules DIR`) follow `deploy`'s layout rule. Config file
//! (`--config FILE`), paths relative to it:
//!
//! ```toml
//! host = "127.0.0.1"
//! port = 8220
//! secret = "change-me"          # or --secret, or the EASYRPC_SECRET environment variable
//! cache_dir = "cache"           # compiled components (optional)
//! data_dir = "state"            # the host's state: deploys made over the wire (restored at
//!                               # start) and the embedded key-value store (optional; default
//!                               # $XDG_DATA_HOME/easyrpc or ~/.local/share/easyrpc)
//! modules_dirs = ["modules"]    # scanned as with --modules (optional)
//! metrics_addr = "127.0.0.1:9220"  # /metrics, /healthz, /readyz over HTTP (off by default)
//! otlp_endpoint = "http://127.0.0.1:4318"  # export call spans to an OpenTelemetry collector
//!                               # over OTLP/HTTP (off by default; also --otlp-endpoint)
//! tls_cert = "cert.pem"         # with tls_key: the port speaks wss:// only (PEM files;
//! tls_key = "key.pem"           # also --tls-cert, --tls-key)
//!
//! [[path]]                      # optional; default: /ws/easy with the top-level secret
//! path = "/ws/easy"
//! encryption = false            # easyrpc's encryption_enabled
//!
//! [[module]]
//! file = "wasm/peer.wasm"
//! namespaces = ["peer", "public"]   # a module may serve several namespaces
//!
//! [[namespace]]                 # a tenant: its own secret and limits (all optional)
//! name = "alpha"
//! secret = "alpha-secret"       # connections to alpha may sign with it (or the admin secret)
//! call_deadline_ms = 1000
//! memory_mib = 32
//! max_concurrent_calls = 8      # more calls wait in a queue of
//! max_queued_calls = 32         # this many; beyond it: Busy
//! max_open_generators = 20
//! max_frame_bytes = 1048576
//! instances = "reused"          # default "fresh": every call in an instance no call used;
//! max_calls_per_instance = 10000  # "reused": a call may run in one an earlier call of this
//!                               # namespace finished in cleanly (globals carry over), each
//!                               # instance serving at most this many calls
//! grants = ["wasi:keyvalue", "wasi:logging", "wasi:config", "easyrpc:call"]  # none by default
//! call_namespaces = ["beta"]    # namespaces alpha's guests may call (their own always)
//! log_lines_per_second = 100    # wasi:logging lines per second, the namespace's guests together
//! [namespace.keyvalue]          # its buckets (scoped to alpha) and quotas
//! backend = "embedded"          # under data_dir; or "redis" with url = "redis://127.0.0.1:6379"
//! max_keys = 100000             # quotas across its buckets
//! max_bytes = 67108864          # keys and values together
//! max_value_bytes = 1048576
//! [namespace.config]            # what wasi:config/store returns to alpha's guests
//! greeting = "hello"
//!
//! [[link]]                      # this host's `public` joins `public` on a parent host (ours
//! url = "ws://10.0.0.5:8220/ws/easy"  # or a Python EasyRpcServer); one parent per namespace,
//! secret = "parent-secret"      # any number of children; also --link URL#NAMESPACE
//! namespace = "public"          # with --link-secret
//! ca_file = "parent-ca.pem"     # for a wss:// parent with a private CA (optional)
//!
//! [[group]]                     # reached like a namespace; calls go to the first member
//! name = "both"                 # (in this order) that has the function
//! members = ["alpha", "beta"]
//! secret = "group-secret"       # optional
//!
//! [limits]                      # any of these; the rest keep their named defaults
//! call_deadline_ms = 10000
//! memory_mib = 64
//! guest_memory_mib = 4096      # all guests' memory together; past it calls answer Busy
//! max_frame_bytes = 16777216
//! max_response_frame_bytes = 4194304
//! max_in_flight = 256
//! max_in_flight_bytes = 16777216  # requests of one connection's calls in flight
//! max_connections = 10000
//! max_connections_per_peer = 500
//! max_queued_answer_bytes = 33554432  # answers waiting for a client that does not read
//! write_timeout_ms = 30000      # a client that takes no answer for this long is closed
//! setup_timeout_ms = 10000
//! shutdown_grace_ms = 10000
//! max_generators_per_connection = 100
//! max_open_generators = 500
//! generator_idle_timeout_ms = 60000
//! instances = "fresh"           # or "reused" (with max_calls_per_instance): every namespace's
//!                               # default; a [[namespace]] may choose otherwise
//! ```

use crate::capabilities::{CapabilitySources, GrantConfig, KeyValueConfig};
use crate::cluster::parent::LinkConfig;
use crate::deploy::{Deployer, ModuleSource};
use crate::registry::{Group, NamespacePolicy, PolicyConfig, Registry, RegistrySnapshot};
use crate::runtime::{CallLimits, InstanceReuse, Runtime};
use crate::server::{ConnectionLimits, PathConfig};
use anyhow::{bail, Context};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The config file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub secret: Option<String>,
    pub cache_dir: Option<PathBuf>,
    /// The host's own state: the embedded key-value store (see `capabilities`).
    pub data_dir: Option<PathBuf>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served (none: not at all).
    pub metrics_addr: Option<String>,
    /// The OpenTelemetry collector call spans are exported to over OTLP/HTTP (none: no export).
    pub otlp_endpoint: Option<String>,
    /// The host's TLS certificate chain and key (PEM): its port then speaks `wss://` only.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    #[serde(default)]
    pub modules_dirs: Vec<PathBuf>,
    #[serde(default, rename = "path")]
    pub paths: Vec<PathEntry>,
    #[serde(default, rename = "module")]
    pub modules: Vec<ModuleEntry>,
    #[serde(default)]
    pub limits: LimitsEntry,
    #[serde(default, rename = "namespace")]
    pub namespaces: Vec<NamespaceEntry>,
    #[serde(default, rename = "group")]
    pub groups: Vec<GroupEntry>,
    #[serde(default, rename = "link")]
    pub links: Vec<LinkEntry>,
}

/// `[[link]]`: this host's namespace (or group) joins the namespace of that name on a parent
/// host, ours or a Python `EasyRpcServer`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkEntry {
    /// The parent's websocket URL, path included: `ws://10.0.0.5:8220/ws/easy`.
    pub url: String,
    /// The parent's secret for that path or namespace.
    pub secret: String,
    pub namespace: String,
    /// For a `wss://` parent: certificates (PEM) to trust besides Mozilla's roots.
    pub ca_file: Option<PathBuf>,
}

/// The links to parent hosts: the config file's `[[link]]` entries and `--link URL#NAMESPACE`
/// flags (signed with `flag_secret`). A namespace has at most one parent.
pub fn link_configs(entries: &[LinkEntry], flags: &[String], flag_secret: &str) -> anyhow::Result<Vec<LinkConfig>> {
    let mut links: Vec<LinkConfig> = entries
        .iter()
        .map(|e| LinkConfig {
            url: e.url.clone(),
            secret: e.secret.clone(),
            namespace: e.namespace.clone(),
            ca_file: e.ca_file.clone(),
        })
        .collect();
    for flag in flags {
        let Some((url, namespace)) = flag.rsplit_once('#').filter(|(url, ns)| !url.is_empty() && !ns.is_empty()) else {
            bail!("--link {flag}: write the parent's URL and this host's namespace as URL#NAMESPACE");
        };
        links.push(LinkConfig {
            url: url.to_owned(),
            secret: flag_secret.to_owned(),
            namespace: namespace.to_owned(),
            ca_file: None,
        });
    }
    for link in &links {
        if !(link.url.starts_with("ws://") || link.url.starts_with("wss://")) {
            bail!("link of namespace {}: {} is not a ws:// or wss:// URL", link.namespace, link.url);
        }
        let parents: Vec<&str> =
            links.iter().filter(|other| other.namespace == link.namespace).map(|other| other.url.as_str()).collect();
        if parents.len() > 1 {
            bail!(
                "namespace {} has {} parent links ({}); a namespace links to at most one parent, \
                 and any number of children link to it",
                link.namespace,
                parents.len(),
                parents.join(", ")
            );
        }
    }
    Ok(links)
}

/// `[[namespace]]`: a tenant's own secret and limits (all optional but the name).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceEntry {
    pub name: String,
    pub secret: Option<String>,
    pub call_deadline_ms: Option<u64>,
    pub memory_mib: Option<usize>,
    pub max_concurrent_calls: Option<usize>,
    pub max_queued_calls: Option<usize>,
    pub max_open_generators: Option<usize>,
    pub max_frame_bytes: Option<usize>,
    pub instances: Option<InstancesEntry>,
    pub max_calls_per_instance: Option<u32>,
    /// Capabilities its guests may import; none unless listed (see `capabilities`).
    #[serde(default)]
    pub grants: Vec<String>,
    /// Namespaces its guests may call besides their own (with `easyrpc:call`).
    #[serde(default)]
    pub call_namespaces: Vec<String>,
    pub keyvalue: Option<KeyValueConfig>,
    /// What `wasi:config/store` returns to its guests: strings, numbers or booleans.
    pub config: Option<BTreeMap<String, toml::Value>>,
    pub log_lines_per_second: Option<u32>,
}

impl NamespaceEntry {
    /// Its capability settings as `capabilities` takes them.
    fn grant_config(&self) -> anyhow::Result<GrantConfig> {
        let config = match &self.config {
            None => None,
            Some(table) => Some(
                table
                    .iter()
                    .map(|(key, value)| {
                        let text = match value {
                            toml::Value::String(s) => s.clone(),
                            toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => value.to_string(),
                            other => bail!(
                                "namespace {}: [namespace.config] {key} is a {}; values are strings, numbers or booleans",
                                self.name,
                                other.type_str()
                            ),
                        };
                        Ok((key.clone(), text))
                    })
                    .collect::<anyhow::Result<_>>()?,
            ),
        };
        Ok(GrantConfig {
            grants: self.grants.clone(),
            call_namespaces: self.call_namespaces.clone(),
            keyvalue: self.keyvalue.clone(),
            config,
            log_lines_per_second: self.log_lines_per_second,
        })
    }
}

/// `instances = "fresh" | "reused"` of a `[[namespace]]`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InstancesEntry {
    Fresh,
    Reused,
}

/// The instance policy a scope (`[limits]` or a `[[namespace]]`) configures, falling back to
/// `inherited` for what it leaves out. `max_calls_per_instance` where instances are fresh is an
/// error, not a setting silently ignored.
fn instance_reuse(
    scope: &str,
    instances: Option<InstancesEntry>,
    max_calls: Option<u32>,
    inherited: InstanceReuse,
) -> anyhow::Result<InstanceReuse> {
    let reused = match instances {
        Some(InstancesEntry::Reused) => true,
        Some(InstancesEntry::Fresh) => false,
        None => inherited != InstanceReuse::Fresh,
    };
    match (reused, max_calls, inherited) {
        (false, Some(_), _) => bail!("{scope}: max_calls_per_instance needs instances = \"reused\""),
        (false, None, _) => Ok(InstanceReuse::Fresh),
        (true, Some(0), _) => bail!("{scope}: max_calls_per_instance must be at least 1"),
        (true, Some(max_calls), _) => Ok(InstanceReuse::Reused { max_calls }),
        (true, None, InstanceReuse::Reused { max_calls }) => Ok(InstanceReuse::Reused { max_calls }),
        (true, None, InstanceReuse::Fresh) => Ok(InstanceReuse::reused()),
    }
}

/// `[[group]]`: a namespace group, reached like a namespace.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupEntry {
    pub name: String,
    pub members: Vec<String>,
    pub secret: Option<String>,
}

/// `[limits]`: overrides of the named defaults (see `server` and `runtime`); all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsEntry {
    pub call_deadline_ms: Option<u64>,
    pub memory_mib: Option<usize>,
    /// The runtime's host-wide budget (`runtime::MemoryBudget`), read where the runtime is made.
    pub guest_memory_mib: Option<usize>,
    pub max_frame_bytes: Option<usize>,
    pub max_response_frame_bytes: Option<usize>,
    pub max_in_flight: Option<usize>,
    pub max_in_flight_bytes: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_connections_per_peer: Option<usize>,
    pub max_queued_answer_bytes: Option<usize>,
    pub write_timeout_ms: Option<u64>,
    pub setup_timeout_ms: Option<u64>,
    pub shutdown_grace_ms: Option<u64>,
    pub max_generators_per_connection: Option<usize>,
    pub max_open_generators: Option<usize>,
    pub generator_idle_timeout_ms: Option<u64>,
    /// Every namespace's default; a `[[namespace]]` may choose otherwise.
    pub instances: Option<InstancesEntry>,
    pub max_calls_per_instance: Option<u32>,
}

impl LimitsEntry {
    /// Applies the given overrides.
    pub fn apply(&self, connection: &mut ConnectionLimits, call: &mut CallLimits) {
        let ms = std::time::Duration::from_millis;
        if let Some(v) = self.call_deadline_ms {
            call.deadline = ms(v);
        }
        if let Some(v) = self.memory_mib {
            call.memory = v << 20;
        }
        let c = connection;
        self.max_frame_bytes.into_iter().for_each(|v| c.max_frame = v);
        self.max_response_frame_bytes.into_iter().for_each(|v| c.max_response_frame = v);
        self.max_in_flight.into_iter().for_each(|v| c.max_in_flight = v.max(1));
        self.max_in_flight_bytes.into_iter().for_each(|v| c.max_in_flight_bytes = v.clamp(1, u32::MAX as usize));
        self.max_connections.into_iter().for_each(|v| c.max_connections = v.max(1));
        self.max_connections_per_peer.into_iter().for_each(|v| c.max_connections_per_peer = v.max(1));
        self.max_queued_answer_bytes.into_iter().for_each(|v| c.max_queued_answer_bytes = v);
        self.write_timeout_ms.into_iter().for_each(|v| c.write_timeout = ms(v.max(1)));
        self.setup_timeout_ms.into_iter().for_each(|v| c.setup_timeout = ms(v));
        self.shutdown_grace_ms.into_iter().for_each(|v| c.shutdown_grace = ms(v));
        self.max_generators_per_connection.into_iter().for_each(|v| c.max_generators_per_connection = v);
        self.max_open_generators.into_iter().for_each(|v| c.max_open_generators = v);
        self.generator_idle_timeout_ms.into_iter().for_each(|v| c.generator_idle_timeout = ms(v));
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathEntry {
    pub path: String,
    pub secret: Option<String>,
    #[serde(default)]
    pub encryption: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleEntry {
    pub file: PathBuf,
    pub namespaces: Vec<String>,
}

impl ConfigFile {
    /// Reads a config file; relative paths in it become relative to the file's directory.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
        let mut config: ConfigFile =
            toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let rebase = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        config.cache_dir.iter_mut().for_each(rebase);
        config.data_dir.iter_mut().for_each(rebase);
        config.tls_cert.iter_mut().for_each(rebase);
        config.tls_key.iter_mut().for_each(rebase);
        config.links.iter_mut().filter_map(|l| l.ca_file.as_mut()).for_each(rebase);
        config.modules_dirs.iter_mut().for_each(rebase);
        config.modules.iter_mut().for_each(|m| rebase(&mut m.file));
        Ok(config)
    }
}

impl ConfigFile {
    /// The `[[path]]` entries; a path without its own secret uses `default_secret`.
    pub fn path_configs(&self, default_secret: &str) -> Vec<PathConfig> {
        self.paths
            .iter()
            .map(|p| PathConfig {
                path: p.path.clone(),
                secret: p.secret.clone().unwrap_or_else(|| default_secret.to_owned()),
                encryption: p.encryption,
            })
            .collect()
    }

    /// An empty snapshot with the configured tenants (policies, with the capabilities their
    /// grants draw from `sources`) and groups; unconfigured namespaces get `base`'s policy,
    /// with the instance policy of `[limits]` if it sets one.
    pub fn prepare_snapshot(
        &self,
        base: &PolicyConfig,
        sources: &CapabilitySources,
    ) -> anyhow::Result<RegistrySnapshot> {
        let mut default = base.clone();
        let limits = &self.limits;
        default.instances =
            instance_reuse("[limits]", limits.instances, limits.max_calls_per_instance, base.instances)?;
        let mut snapshot = RegistrySnapshot::with_default_policy(default.clone());
        for ns in &self.namespaces {
            if self.groups.iter().any(|g| g.name == ns.name) {
                bail!("{} is configured both as a namespace and as a group", ns.name);
            }
            let mut policy = default.clone();
            policy.secret = ns.secret.clone();
            if let Some(ms) = ns.call_deadline_ms {
                policy.limits.deadline = std::time::Duration::from_millis(ms);
            }
            if let Some(mib) = ns.memory_mib {
                policy.limits.memory = mib << 20;
            }
            ns.max_concurrent_calls.into_iter().for_each(|v| policy.max_concurrent_calls = v.max(1));
            ns.max_queued_calls.into_iter().for_each(|v| policy.max_queued_calls = v);
            ns.max_open_generators.into_iter().for_each(|v| policy.max_open_generators = v);
            policy.max_frame = ns.max_frame_bytes.or(policy.max_frame);
            let scope = format!("namespace {}", ns.name);
            policy.instances = instance_reuse(&scope, ns.instances, ns.max_calls_per_instance, default.instances)?;
            policy.capabilities = sources.for_namespace(&ns.name, &ns.grant_config()?)?;
            snapshot.set_policy(&ns.name, NamespacePolicy::new(policy));
        }
        for g in &self.groups {
            if g.members.is_empty() {
                bail!("group {} has no members", g.name);
            }
            if let Some(nested) = g.members.iter().find(|m| self.groups.iter().any(|other| &other.name == *m)) {
                bail!("group {} lists group {nested} as a member; members must be namespaces", g.name);
            }
            snapshot.add_group(&g.name, Group { members: g.members.clone(), secret: g.secret.clone() });
        }
        Ok(snapshot)
    }

    /// `modules_dirs` and `[[module]]` entries as module sources.
    pub fn module_sources(&self) -> Vec<ModuleSource> {
        let mut sources: Vec<ModuleSource> = self.modules_dirs.iter().cloned().map(ModuleSource::Dir).collect();
        sources.extend(
            self.modules.iter().map(|m| ModuleSource::File { path: m.file.clone(), namespaces: m.namespaces.clone() }),
        );
        sources
    }
}

/// Loads every module the sources name into `snapshot` (prepared with tenants and groups; a
/// module placed in a group goes to every member). Each file is loaded once, however many
/// namespaces it serves. Failures are logged and returned alongside, not fatal. (A running
/// host keeps its [`Deployer`] instead, to follow changes.)
pub fn load_registry(
    runtime: &Runtime,
    sources: &[ModuleSource],
    snapshot: RegistrySnapshot,
) -> anyhow::Result<(RegistrySnapshot, Vec<String>)> {
    let registry = Arc::new(Registry::new(snapshot.clone()));
    let deployer = Deployer::new(runtime.clone(), registry.clone(), snapshot, sources.to_vec());
    let failures = deployer.load_all()?;
    Ok(((*registry.snapshot()).clone(), failures))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Capability sources for parsing tests: nothing is opened unless a namespace grants it.
    fn unit_sources() -> CapabilitySources {
        CapabilitySources::new(&std::env::temp_dir().join("easyrpc-config-tests"), &Arc::new(Registry::default()))
    }

    #[test]
    fn links_read_from_the_file_and_flags_with_one_parent_per_namespace() {
        let file: ConfigFile = toml::from_str(
            r#"
            [[link]]
            url = "ws://10.0.0.5:8220/ws/easy"
            secret = "parent-secret"
            namespace = "public"
            "#,
        )
        .unwrap();
        let links = link_configs(&file.links, &["ws://10.0.0.6:8220/ws/easy#private".into()], "flag-secret").unwrap();
        assert_eq!(links.len(), 2);
        assert_eq!((links[0].namespace.as_str(), links[0].secret.as_str()), ("public", "parent-secret"));
        assert_eq!((links[1].url.as_str(), links[1].secret.as_str()), ("ws://10.0.0.6:8220/ws/easy", "flag-secret"));
        let two_parents = link_configs(&file.links, &["ws://10.0.0.7:8220/ws/easy#public".into()], "s").unwrap_err();
        assert!(two_parents.to_string().contains("namespace public has 2 parent links"), "{two_parents}");
        let no_namespace = link_configs(&[], &["ws://10.0.0.7:8220/ws/easy".into()], "s").unwrap_err();
        assert!(no_namespace.to_string().contains("URL#NAMESPACE"), "{no_namespace}");
        let not_ws = link_configs(&[], &["http://10.0.0.7/#x".into()], "s").unwrap_err();
        assert!(not_ws.to_string().contains("not a ws://"), "{not_ws}");
    }
    use crate::runtime::DEFAULT_MAX_CALLS_PER_INSTANCE;

    #[test]
    fn config_file_parses_and_rebases() {
        let dir = std::env::temp_dir().join(format!("easyrpc-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("easyrpc.toml");
        std::fs::write(
            &file,
            r#"
port = 9000
secret = "s"
[[path]]
path = "/ws/a"
encryption = true
[[module]]
file = "peer.wasm"
namespaces = ["peer", "public"]
[limits]
memory_mib = 8
max_open_generators = 7
"#,
        )
        .unwrap();
        let c = ConfigFile::read(&file).unwrap();
        assert_eq!(c.port, Some(9000));
        assert!(c.paths[0].encryption);
        assert_eq!(c.modules[0].file, dir.join("peer.wasm"));
        let (mut connection, mut call) = (ConnectionLimits::default(), CallLimits::default());
        c.limits.apply(&mut connection, &mut call);
        assert_eq!((call.memory, connection.max_open_generators), (8 << 20, 7));
        assert_eq!(connection.max_in_flight, crate::session::DEFAULT_MAX_IN_FLIGHT);
        std::fs::write(&file, "prot = 1").unwrap();
        assert!(ConfigFile::read(&file).is_err(), "unknown keys are errors");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn instance_reuse_is_chosen_per_namespace() {
        let parse = |text: &str| -> anyhow::Result<Vec<PolicyConfig>> {
            let file: ConfigFile = toml::from_str(text)?;
            let snapshot = file.prepare_snapshot(&PolicyConfig::default(), &unit_sources())?;
            Ok(file.namespaces.iter().map(|ns| snapshot.policy(&ns.name).expect("policy").config.clone()).collect())
        };
        let policies = parse(
            r#"
[[namespace]]
name = "plain"
[[namespace]]
name = "fresh"
instances = "fresh"
[[namespace]]
name = "warm"
instances = "reused"
[[namespace]]
name = "short"
instances = "reused"
max_calls_per_instance = 3
"#,
        )
        .unwrap();
        let instances: Vec<InstanceReuse> = policies.iter().map(|p| p.instances).collect();
        assert_eq!(
            instances,
            vec![
                InstanceReuse::Fresh,
                InstanceReuse::Fresh,
                InstanceReuse::Reused { max_calls: DEFAULT_MAX_CALLS_PER_INSTANCE },
                InstanceReuse::Reused { max_calls: 3 },
            ]
        );
        // [limits] sets every namespace's default; a namespace may still choose otherwise.
        let policies = parse(
            r#"
[limits]
instances = "reused"
max_calls_per_instance = 50
[[namespace]]
name = "inherits"
[[namespace]]
name = "own_count"
max_calls_per_instance = 7
[[namespace]]
name = "opts_out"
instances = "fresh"
"#,
        )
        .unwrap();
        let instances: Vec<InstanceReuse> = policies.iter().map(|p| p.instances).collect();
        assert_eq!(
            instances,
            vec![InstanceReuse::Reused { max_calls: 50 }, InstanceReuse::Reused { max_calls: 7 }, InstanceReuse::Fresh,]
        );
        let file: ConfigFile = toml::from_str("[limits]\ninstances = \"reused\"").unwrap();
        let snapshot = file.prepare_snapshot(&PolicyConfig::default(), &unit_sources()).unwrap();
        let unlisted = snapshot.default_policy().instances;
        assert_eq!(unlisted, InstanceReuse::reused(), "namespaces without an entry follow [limits]");
        let error = |text: &str| parse(text).unwrap_err().to_string();
        assert!(error("[limits]\nmax_calls_per_instance = 5").starts_with("[limits]: max_calls_per_instance needs"));
        assert!(
            error("[[namespace]]\nname = \"a\"\nmax_calls_per_instance = 5").contains("needs instances = \"reused\"")
        );
        assert!(error("[[namespace]]\nname = \"a\"\ninstances = \"reused\"\nmax_calls_per_instance = 0")
            .contains("at least 1"));
        assert!(error("[[namespace]]\nname = \"a\"\ninstances = \"shared\"").contains("unknown variant"));
    }
}
