//! Typed errors of the runtime: why a module did not load, why a call did not return a value.
//!
//! Callers match on these (the server turns a [`CallError`] into the wire's error string, tests
//! assert the kind). Each message says what happened and, where it helps, what to do. The
//! wasmtime error is kept as the source where there is one.

use crate::signature::BindError;
use crate::value::Value;
use std::time::Duration;

pub use crate::signature::ValueError;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read module {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{name} is not a WebAssembly file (it does not start with the \\0asm header)")]
    NotWasm { name: String },
    #[error("{name} is a core WebAssembly module, not a component: build it for wasm32-wasip2 or link it with wasm-component-ld (see guest-sdk), or wrap it with `wasm-tools component new`")]
    CoreModule { name: String },
    #[error("{name} failed to compile: {source:#}")]
    Compile { name: String, source: anyhow::Error },
    #[error("{name} needs imports this host does not provide (it offers WASI with nothing granted and the interfaces of wit/guest: easyrpc:guest, wasi:keyvalue@0.2.0-draft2, wasi:logging@0.1.0-draft, wasi:config@0.2.0-draft): {source:#}")]
    Link { name: String, source: anyhow::Error },
    #[error("{name}: {message}")]
    Describe { name: String, message: String },
    /// The module imports a capability the namespace it is placed in does not grant.
    #[error("{message}")]
    NotGranted { message: String },
    /// The deploy could not be written down in the data directory, so it was not made.
    #[error("{name} was not deployed: it could not be kept in the data directory: {message}")]
    NotKept { name: String, message: String },
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("no function `{name}` in module {module}")]
    UnknownFunction { module: String, name: String },
    #[error("bad arguments for {function}: {source}")]
    BadArguments { function: String, source: BindError },
    #[error("bad argument for {function}: {source}")]
    BadValue { function: String, source: ValueError },
    #[error("{function} exceeded its deadline of {deadline:?} and was stopped")]
    Timeout { function: String, deadline: Duration },
    #[error("{function} ran out of memory: it tried to grow past its limit of {limit} bytes")]
    OutOfMemory { function: String, limit: usize },
    #[error("{function} overflowed its stack (unbounded recursion?)")]
    StackOverflow { function: String },
    #[error("{function} panicked: {message}")]
    Panic { function: String, message: String },
    #[error("{function} trapped: {message}")]
    Trap {
        function: String,
        message: String,
        #[source]
        source: anyhow::Error,
    },
    /// The function returned the `err` case of its `result` (the guest's own error).
    #[error("{function} failed: {}", describe_error_value(.error))]
    Failed { function: String, error: Value },
    /// A limit was reached (instances, a namespace's concurrent calls and queue...).
    #[error("busy: {reason}; try again shortly")]
    Busy { reason: String },
    #[error("{function} returned a value that breaks its own signature: {source}")]
    BadResult { function: String, source: ValueError },
    /// The function runs on another host, whose answer was an error: relayed as it came.
    #[error("{function} failed on {link}: {}", .answer.brief())]
    Relayed { function: String, link: String, answer: Value },
    /// The link to the host that runs the function went down before it answered.
    #[error("the link to {link} was lost before {function} answered")]
    LinkLost { function: String, link: String },
}

fn describe_error_value(v: &Value) -> String {
    match v {
        Value::Str(s) => s.clone(),
        other => other.brief(),
    }
}

impl CallError {
    /// A short machine-friendly name of the error kind, used in logs and wire error strings.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::UnknownFunction { .. } => "UnknownFunction",
            CallError::BadArguments { .. } | CallError::BadValue { .. } => "TypeError",
            CallError::Timeout { .. } => "Timeout",
            CallError::OutOfMemory { .. } => "OutOfMemory",
            CallError::StackOverflow { .. } => "StackOverflow",
            CallError::Panic { .. } => "Panic",
            CallError::Trap { .. } => "Trap",
            CallError::Failed { .. } => "Error",
            CallError::Busy { .. } => "Busy",
            CallError::BadResult { .. } => "BadResult",
            CallError::Relayed { .. } => "Relayed",
            CallError::LinkLost { .. } => "LinkLost",
        }
    }
}
