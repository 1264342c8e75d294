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
        let call = NestedCall { namespace, function, args, kwargs, deadline: self.deadline(), depth, hops: env.hops };
        // The nested call runs on its own instance; this one waits without a core.
        self.leave_long_lane();
        Ok(caller.call(call).await.map_err(CallError::from))
    }
}
