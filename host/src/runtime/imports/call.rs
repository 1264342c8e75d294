//! `easyrpc:guest/call`: a guest calls another function, through a [`FunctionCaller`] that
//! the layer above the runtime implements (it knows namespaces and links; the runtime does not).

use super::easyrpc::guest::call::{CallError, Host};
use super::Grant;
use crate::runtime::sandbox::CallState;
use std::time::Instant;

/// How deep calls may nest: a caller's call is depth 0, a call it makes depth 1, and so on.
/// Deeper than any chain drawn on purpose; a function that calls itself without end meets it
/// long before the deadline.
pub const MAX_CALL_DEPTH: u8 = 8;

/// The namespaces of the calls a nested call is nested in, outermost first, as hashes of
/// their names: a fixed size, so that it travels by copy with every call. A call into a
/// namespace already on the chain runs under its caller's admission there (waiting for a slot
/// its own caller holds would never end); a call into any other namespace takes a slot there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallerChain {
    namespaces: [u64; MAX_CALL_DEPTH as usize],
    len: u8,
}

impl CallerChain {
    fn id(namespace: &str) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::hash::DefaultHasher::new();
        namespace.hash(&mut hasher);
        hasher.finish()
    }

    /// The chain with `namespace` (the caller's) added; full chains stay as they are (a call
    /// that deep is refused anyway).
    pub fn with(mut self, namespace: &str) -> Self {
        if let Some(slot) = self.namespaces.get_mut(usize::from(self.len)) {
            *slot = Self::id(namespace);
            self.len += 1;
        }
        self
    }

    /// Whether a call of `namespace` is already on the chain.
    pub fn contains(&self, namespace: &str) -> bool {
        let id = Self::id(namespace);
        self.namespaces[..usize::from(self.len)].contains(&id)
    }
}

/// One nested call as the guest asked for it.
#[derive(Debug, Clone)]
pub struct NestedCall {
    pub namespace: String,
    pub function: String,
    /// A JSON array of positional arguments.
    pub args: String,
    /// A JSON object of keyword arguments.
    pub kwargs: String,
    /// The calling call's deadline, which the nested call inherits.
    pub deadline: Instant,
    /// The nested call's own depth (its caller's plus one).
    pub depth: u8,
    /// Hosts the calling call passed through over cluster links.
    pub hops: u8,
    /// The namespaces of the calls it is nested in, the calling one's last.
    pub callers: CallerChain,
}

/// Why a nested call gave no result (the interface's `call-error` cases).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NestedCallError {
    #[error("{0}")]
    NotGranted(String),
    #[error("{0}")]
    UnknownFunction(String),
    #[error("{0}")]
    BadArguments(String),
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    TooDeep(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Busy(String),
}

/// Runs the nested calls of one namespace's guests, checking which namespaces they may reach.
#[async_trait::async_trait]
pub trait FunctionCaller: Send + Sync {
    /// The nested call's result as JSON text.
    async fn call(&self, call: NestedCall) -> Result<String, NestedCallError>;
}

impl From<NestedCallError> for CallError {
    fn from(e: NestedCallError) -> Self {
        match e {
            NestedCallError::NotGranted(m) => CallError::NotGranted(m),
            NestedCallError::UnknownFunction(m) => CallError::UnknownFunction(m),
            NestedCallError::BadArguments(m) => CallError::BadArguments(m),
            NestedCallError::Failed(m) => CallError::Failed(m),
            NestedCallError::TooDeep(m) => CallError::TooDeep(m),
            NestedCallError::Timeout(m) => CallError::Timeout(m),
            NestedCallError::Busy(m) => CallError::Busy(m),
        }
    }
}

impl Host for CallState {
    async fn call(
        &mut self,
        namespace: String,
        function: String,
        args: String,
        kwargs: String,
    ) -> wasmtime::Result<Result<String, CallError>> {
        let env = self.env();
        let caps = env.granted(Grant::Call)?;
        let Some(caller) = caps.calls.clone() else { return Err(wasmtime::format_err!("easyrpc:call has no caller")) };
        let depth = env.depth.saturating_add(1);
        if depth > MAX_CALL_DEPTH {
            return Ok(Err(CallError::TooDeep(format!(
                "{namespace}.{function} would be the {depth}th call nested in one caller's call; calls nest at \
                 most {MAX_CALL_DEPTH} deep"
            ))));
        }
        let callers = env.callers.with(&caps.namespace);
        let call =
            NestedCall { namespace, function, args, kwargs, deadline: self.deadline(), depth, hops: env.hops, callers };
        // The nested call runs on its own instance; this one waits without a core.
        self.leave_long_lane();
        Ok(caller.call(call).await.map_err(CallError::from))
    }
}

#[cfg(test)]
mod tests {
    use super::CallerChain;

    #[test]
    fn a_chain_knows_its_namespaces_and_stops_growing_when_full() {
        let chain = CallerChain::default().with("a").with("b");
        assert!(chain.contains("a") && chain.contains("b") && !chain.contains("c"));
        let full = (0..20).fold(CallerChain::default(), |c, i| c.with(&format!("n{i}")));
        assert!(full.contains("n0") && full.contains("n7") && !full.contains("n8"));
    }
}
