//! What a guest may import besides WASI: EasyRpc's own `easyrpc:guest/host` and
//! `easyrpc:guest/call`, and the standard `wasi:keyvalue`, `wasi:logging` and `wasi:config`
//! (wit/guest/host.wit and wit/guest/deps/).
//!
//! Owns the bindings of those interfaces, their registration in the runtime's linker, and the
//! per-namespace [`GuestCapabilities`] that a call carries in its store ([`CallEnv`]). Every
//! function here acts for the call that made it, under that call's deadline, and reaches only
//! what its namespace was granted: a capability the namespace lacks traps with a message that
//! says so. It does not implement the backends: key-value stores and the function caller are
//! traits ([`KeyValue`], [`FunctionCaller`]) implemented above the runtime (`capabilities`),
//! which hands in one `GuestCapabilities` per namespace, already scoped to it.

mod call;
mod config;
mod host;
mod keyvalue;
mod logging;

pub use call::{CallerChain, FunctionCaller, NestedCall, NestedCallError, TraceId, MAX_CALL_DEPTH};
pub use keyvalue::{
    Bucket, Cas, HandleBudget, KeyPage, KeyValue, KvError, Swapped, MAX_BATCH_BYTES, MAX_BATCH_KEYS, MAX_HANDLES,
    MAX_HANDLE_BYTES,
};
pub use logging::{LogGate, DEFAULT_LOG_LINES_PER_SECOND};

use super::sandbox::CallState;
use std::sync::Arc;
use wasmtime::component::{HasSelf, Linker};

/// The interface of EasyRpc's plain host functions (sleep) as guests import it.
pub const HOST_INTERFACE: &str = "easyrpc:guest/host@0.1.0";

wasmtime::component::bindgen!({
    path: "../wit/guest",
    world: "easyrpc:guest/capabilities",
    imports: { default: async | trappable },
    with: {
        "wasi:keyvalue/store.bucket": keyvalue::Bucket,
        "wasi:keyvalue/atomics.cas": keyvalue::Cas,
    },
});

/// A capability a namespace may grant its guests, by the name its config uses in `grants`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Grant {
    KeyValue,
    Logging,
    Config,
    Call,
}

impl Grant {
    pub const ALL: [Grant; 4] = [Grant::KeyValue, Grant::Logging, Grant::Config, Grant::Call];

    /// The name a config's `grants` list uses.
    pub fn name(self) -> &'static str {
        match self {
            Grant::KeyValue => "wasi:keyvalue",
            Grant::Logging => "wasi:logging",
            Grant::Config => "wasi:config",
            Grant::Call => "easyrpc:call",
        }
    }

    pub fn from_name(name: &str) -> Option<Grant> {
        Grant::ALL.into_iter().find(|g| g.name() == name)
    }

    /// The grant an import (`wasi:keyvalue/store@0.2.0-draft2`) needs; none for what every
    /// guest may import (WASI with nothing granted, `easyrpc:guest/host`).
    pub fn needed_by(import: &str) -> Option<Grant> {
        let package = import.split('/').next().unwrap_or(import);
        match package {
            "wasi:keyvalue" => Some(Grant::KeyValue),
            "wasi:logging" => Some(Grant::Logging),
            "wasi:config" => Some(Grant::Config),
            "easyrpc:guest" if import.starts_with("easyrpc:guest/call") => Some(Grant::Call),
            _ => None,
        }
    }
}

/// What the guests of one namespace may reach beyond their instance. Built once per namespace
/// from its config; each capability is none unless the namespace grants it.
pub struct GuestCapabilities {
    /// The namespace the capabilities belong to (their scope).
    pub namespace: Arc<str>,
    /// Its key-value buckets, scoped to the namespace (and its quotas) by the backend.
    pub keyvalue: Option<Arc<dyn KeyValue>>,
    /// Its share of the host's log.
    pub logging: Option<LogGate>,
    /// What `wasi:config/store` returns, sorted by key.
    pub config: Option<Vec<(String, String)>>,
    /// Calls to other functions, with the namespaces it may call.
    pub calls: Option<Arc<dyn FunctionCaller>>,
}

impl GuestCapabilities {
    /// A namespace that grants nothing (what every namespace starts with).
    pub fn none(namespace: &str) -> Self {
        Self { namespace: namespace.into(), keyvalue: None, logging: None, config: None, calls: None }
    }

    pub fn grants(&self, grant: Grant) -> bool {
        match grant {
            Grant::KeyValue => self.keyvalue.is_some(),
            Grant::Logging => self.logging.is_some(),
            Grant::Config => self.config.is_some(),
            Grant::Call => self.calls.is_some(),
        }
    }

    /// The names of what it grants, in [`Grant::ALL`]'s order.
    pub fn granted(&self) -> Vec<&'static str> {
        Grant::ALL.into_iter().filter(|g| self.grants(*g)).map(Grant::name).collect()
    }
}

impl std::fmt::Debug for GuestCapabilities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestCapabilities")
            .field("namespace", &self.namespace)
            .field("grants", &self.granted())
            .finish()
    }
}

/// Two namespaces' capabilities are the same only if they are the same object: backends and
/// callers cannot be compared.
impl PartialEq for GuestCapabilities {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

/// What one call carries into its instance: its namespace's capabilities and where it sits in
/// a chain of calls.
#[derive(Clone, Debug, Default)]
pub struct CallEnv {
    pub capabilities: Option<Arc<GuestCapabilities>>,
    /// How many calls this one is nested in (0: a caller's own call).
    pub depth: u8,
    /// Hosts the call passed through over cluster links before this one.
    pub hops: u8,
    /// The namespaces of the calls this one is nested in.
    pub callers: CallerChain,
    /// The request id of the call's first caller.
    pub trace: TraceId,
}

impl CallEnv {
    /// The capabilities when they grant `grant`, else the trap that tells the guest author
    /// what is missing.
    fn granted(&self, grant: Grant) -> wasmtime::Result<&GuestCapabilities> {
        match &self.capabilities {
            Some(caps) if caps.grants(grant) => Ok(caps),
            Some(caps) => Err(not_granted(grant, Some(&caps.namespace))),
            None => Err(not_granted(grant, None)),
        }
    }
}

fn not_granted(grant: Grant, namespace: Option<&str>) -> wasmtime::Error {
    let name = grant.name();
    match namespace {
        Some(ns) => wasmtime::format_err!("namespace {ns} does not grant {name} (add it to the namespace's grants)"),
        None => wasmtime::format_err!("{name} is not granted here (a namespace's config grants it)"),
    }
}

/// Defines every interface above in `linker`. Linking never depends on grants: whether a
/// module may use what it imports is decided where it is placed in a namespace (and checked
/// again at each use).
pub(super) fn add_to_linker(linker: &mut Linker<CallState>) -> anyhow::Result<()> {
    fn data(state: &mut CallState) -> &mut CallState {
        state
    }
    easyrpc::guest::host::add_to_linker::<_, HasSelf<CallState>>(linker, data)?;
    easyrpc::guest::call::add_to_linker::<_, HasSelf<CallState>>(linker, data)?;
    wasi::keyvalue::store::add_to_linker::<_, HasSelf<CallState>>(linker, data)?;
    wasi::keyvalue::atomics::add_to_linker::<_, HasSelf<CallState>>(linker, data)?;
    wasi::keyvalue::batch::add_to_linker::<_, HasSelf<CallState>>(linker, data)?;
    wasi::logging::logging::add_to_linker::<_, HasSelf<CallState>>(linker, data)?;
    wasi::config::store::add_to_linker::<_, HasSelf<CallState>>(linker, data)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Grant;

    #[test]
    fn imports_map_to_the_grants_they_need() {
        assert_eq!(Grant::needed_by("wasi:keyvalue/store@0.2.0-draft2"), Some(Grant::KeyValue));
        assert_eq!(Grant::needed_by("wasi:keyvalue/atomics@0.2.0-draft2"), Some(Grant::KeyValue));
        assert_eq!(Grant::needed_by("wasi:logging/logging@0.1.0-draft"), Some(Grant::Logging));
        assert_eq!(Grant::needed_by("wasi:config/store@0.2.0-draft"), Some(Grant::Config));
        assert_eq!(Grant::needed_by("easyrpc:guest/call@0.1.0"), Some(Grant::Call));
        assert_eq!(Grant::needed_by("easyrpc:guest/host@0.1.0"), None);
        assert_eq!(Grant::needed_by("wasi:cli/stdout@0.2.6"), None);
        for g in Grant::ALL {
            assert_eq!(Grant::from_name(g.name()), Some(g));
        }
        assert_eq!(Grant::from_name("wasi:filesystem"), None);
    }
}
