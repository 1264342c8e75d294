//! Guest capabilities: what a namespace's config grants its guests, and the backends behind
//! them (key-value stores, the caller of other functions).
//!
//! Owns turning a namespace's grants (`grants`, `call_namespaces`, `[namespace.keyvalue]`,
//! `[namespace.config]`) into the [`GuestCapabilities`] its calls carry, and the host-wide
//! sources they draw on: the data directory with the embedded key-value store (opened when the
//! first namespace chooses it), Redis servers by URL (one connection each, shared), and the
//! registry nested calls go through. Deny by default: a namespace without grants gets nothing.
//! The runtime's `imports` turns these into the interfaces guests import; this module must not
//! touch wasmtime.

pub mod call;
pub mod keyvalue;

use crate::registry::Registry;
use crate::runtime::imports::{LogGate, DEFAULT_LOG_LINES_PER_SECOND};
use crate::runtime::{Grant, GuestCapabilities};
use anyhow::bail;
use keyvalue::embedded::EmbeddedStore;
use keyvalue::redis::RedisStore;
use keyvalue::{Backend, Quotas, Scope, ScopedStore};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

/// What a namespace's config says about its guests' capabilities.
#[derive(Debug, Default, Clone)]
pub struct GrantConfig {
    /// Capability names: `wasi:keyvalue`, `wasi:logging`, `wasi:config`, `easyrpc:call`.
    pub grants: Vec<String>,
    /// Namespaces (or groups) its guests may call besides their own.
    pub call_namespaces: Vec<String>,
    pub keyvalue: Option<KeyValueConfig>,
    /// `[namespace.config]`: what `wasi:config/store` returns.
    pub config: Option<BTreeMap<String, String>>,
    pub log_lines_per_second: Option<u32>,
}

/// `[namespace.keyvalue]`: the backend and the quotas (named defaults where absent).
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeyValueConfig {
    /// `embedded` (the default) or `redis`.
    pub backend: Option<String>,
    /// The Redis server, for `backend = "redis"`: `redis://127.0.0.1:6379`.
    pub url: Option<String>,
    pub max_keys: Option<u64>,
    pub max_bytes: Option<u64>,
    pub max_value_bytes: Option<u64>,
}

/// The host-wide sources of capabilities.
pub struct CapabilitySources {
    data_dir: PathBuf,
    registry: Weak<Registry>,
    embedded: Mutex<Option<Arc<EmbeddedStore>>>,
    redis: Mutex<HashMap<String, Arc<RedisStore>>>,
}

impl CapabilitySources {
    /// Sources that keep state in `data_dir` and make nested calls through `registry` (the
    /// one the host serves).
    pub fn new(data_dir: &Path, registry: &Arc<Registry>) -> Self {
        Self {
            data_dir: data_dir.to_owned(),
            registry: Arc::downgrade(registry),
            embedded: Mutex::new(None),
            redis: Mutex::new(HashMap::new()),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The capabilities of `namespace` as `config` grants them; none when it grants nothing.
    /// A setting for a capability the namespace does not grant is an error, not ignored.
    pub fn for_namespace(
        &self,
        namespace: &str,
        config: &GrantConfig,
    ) -> anyhow::Result<Option<Arc<GuestCapabilities>>> {
        let mut granted = Vec::new();
        for name in &config.grants {
            match Grant::from_name(name) {
                Some(grant) => granted.push(grant),
                None => bail!(
                    "namespace {namespace}: unknown grant {name:?}; grants are {}",
                    Grant::ALL.map(|g| format!("{:?}", g.name())).join(", ")
                ),
            }
        }
        let grants = |g: Grant| granted.contains(&g);
        let needs = |setting: &str, g: Grant| -> anyhow::Result<()> {
            if !grants(g) {
                bail!("namespace {namespace}: {setting} is set but its grants lack {:?}", g.name());
            }
            Ok(())
        };
        if config.keyvalue.is_some() {
            needs("[namespace.keyvalue]", Grant::KeyValue)?;
        }
        if config.config.is_some() {
            needs("[namespace.config]", Grant::Config)?;
        }
        if !config.call_namespaces.is_empty() {
            needs("call_namespaces", Grant::Call)?;
        }
        if config.log_lines_per_second.is_some() {
            needs("log_lines_per_second", Grant::Logging)?;
        }
        if granted.is_empty() {
            return Ok(None);
        }
        let mut caps = GuestCapabilities::none(namespace);
        if grants(Grant::KeyValue) {
            caps.keyvalue = Some(self.keyvalue(namespace, &config.keyvalue.clone().unwrap_or_default())?);
        }
        if grants(Grant::Logging) {
            caps.logging = Some(LogGate::new(config.log_lines_per_second.unwrap_or(DEFAULT_LOG_LINES_PER_SECOND)));
        }
        if grants(Grant::Config) {
            // A BTreeMap is sorted by key, as `wasi:config/store.get` looks keys up.
            caps.config = Some(config.config.clone().unwrap_or_default().into_iter().collect());
        }
        if grants(Grant::Call) {
            caps.calls = Some(call::caller(&self.registry, namespace, config.call_namespaces.clone()));
        }
        Ok(Some(Arc::new(caps)))
    }

    fn keyvalue(
        &self,
        namespace: &str,
        config: &KeyValueConfig,
    ) -> anyhow::Result<Arc<dyn crate::runtime::imports::KeyValue>> {
        let defaults = Quotas::default();
        let quotas = Quotas {
            max_keys: config.max_keys.unwrap_or(defaults.max_keys),
            max_bytes: config.max_bytes.unwrap_or(defaults.max_bytes),
            max_value_bytes: config.max_value_bytes.unwrap_or(defaults.max_value_bytes),
        };
        let backend: Arc<dyn Backend> = match (config.backend.as_deref().unwrap_or("embedded"), &config.url) {
            ("embedded", None) => self.embedded()?,
            ("embedded", Some(_)) => bail!("namespace {namespace}: url is for backend = \"redis\""),
            ("redis", Some(url)) => self.redis(url)?,
            ("redis", None) => bail!("namespace {namespace}: backend = \"redis\" needs url = \"redis://host:port\""),
            (other, _) => bail!("namespace {namespace}: unknown key-value backend {other:?} (embedded or redis)"),
        };
        Ok(Arc::new(ScopedStore::new(backend, Scope { namespace: namespace.to_owned(), quotas })))
    }

    /// The host's embedded store, opened on first use.
    pub fn embedded(&self) -> anyhow::Result<Arc<EmbeddedStore>> {
        let mut embedded = self.embedded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(store) = &*embedded {
            return Ok(store.clone());
        }
        let store = Arc::new(EmbeddedStore::open(&self.data_dir)?);
        *embedded = Some(store.clone());
        Ok(store)
    }

    /// The Redis server at `url`, one client per URL.
    pub fn redis(&self, url: &str) -> anyhow::Result<Arc<RedisStore>> {
        let mut servers = self.redis.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(store) = servers.get(url) {
            return Ok(store.clone());
        }
        let store = Arc::new(RedisStore::new(url)?);
        servers.insert(url.to_owned(), store.clone());
        Ok(store)
    }
}

/// `$XDG_DATA_HOME/easyrpc`, else `~/.local/share/easyrpc`, else `./easyrpc-data`.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .map_or_else(|| PathBuf::from("easyrpc-data"), |base| base.join("easyrpc"))
}
