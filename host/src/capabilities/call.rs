//! `easyrpc:call`: a namespace's guests call functions, through the same dispatcher as remote
//! callers.
//!
//! Owns which namespaces a guest may call (its own and its config's `call_namespaces`) and the
//! translation between the guest's JSON and the dispatcher's values and errors. The call itself
//! (resolve, run, check the result) is `dispatch`'s; this module must not run functions itself.

use crate::dispatch::{self, CallContext, Called, DispatchError};
use crate::registry::{Registry, Relay};
use crate::runtime::imports::{FunctionCaller, NestedCall, NestedCallError};
use crate::runtime::CallError;
use crate::signature::FunctionKind;
use crate::value::{json, Value};
use std::sync::{Arc, Weak};

/// The request id nested calls carry in logs; the outermost call's id is on its span.
const NESTED_REQUEST: &str = "nested";
/// Largest arguments (JSON text of `args` and `kwargs` together) a nested call may pass:
/// decoded, arguments take several times their text, and each level of a chain holds its own.
pub const MAX_NESTED_ARGUMENT_BYTES: usize = 4 << 20;

/// The nested calls of one namespace's guests.
pub struct RegistryCaller {
    /// Weak: the registry's snapshots hold the namespace's capabilities, which hold this.
    registry: Weak<Registry>,
    namespace: String,
    /// The namespaces (or groups) it may call besides its own.
    may_call: Vec<String>,
}

impl RegistryCaller {
    pub fn new(registry: Weak<Registry>, namespace: &str, may_call: Vec<String>) -> Self {
        Self { registry, namespace: namespace.to_owned(), may_call }
    }

    fn may_call(&self, namespace: &str) -> bool {
        namespace == self.namespace || self.may_call.iter().any(|n| n == namespace)
    }
}

#[async_trait::async_trait]
impl FunctionCaller for RegistryCaller {
    async fn call(&self, call: NestedCall) -> Result<String, NestedCallError> {
        let NestedCall { namespace, function, args, kwargs, deadline, depth, hops, callers, trace } = call;
        if !self.may_call(&namespace) {
            return Err(NestedCallError::NotGranted(format!(
                "namespace {} may not call namespace {namespace} (its config's call_namespaces lists {})",
                self.namespace,
                if self.may_call.is_empty() { "none".to_owned() } else { self.may_call.join(", ") }
            )));
        }
        if args.len() + kwargs.len() > MAX_NESTED_ARGUMENT_BYTES {
            return Err(NestedCallError::BadArguments(format!(
                "the arguments of {namespace}.{function} take {} bytes of JSON; a nested call passes at most \
                 {MAX_NESTED_ARGUMENT_BYTES}",
                args.len() + kwargs.len()
            )));
        }
        let args = match json::parse(&args) {
            Ok(Value::List(items)) => items,
            Ok(other) => return Err(bad_json("args", "an array", other.kind())),
            Err(e) => return Err(NestedCallError::BadArguments(format!("args is not JSON: {e}"))),
        };
        let kwargs = match json::parse(&kwargs) {
            Ok(Value::Dict(entries)) => entries,
            Ok(Value::None) => Vec::new(),
            Ok(other) => return Err(bad_json("kwargs", "an object", other.kind())),
            Err(e) => return Err(NestedCallError::BadArguments(format!("kwargs is not JSON: {e}"))),
        };
        let registry = self.registry.upgrade().ok_or_else(|| NestedCallError::Busy("the host is stopping".into()))?;
        let snapshot = registry.snapshot();
        // The caller's span is the current one: the nested call's span sits inside it.
        let relay = Relay { hops, deadline: Some(deadline), depth, callers, trace, parent: None };
        let context = CallContext { namespace: &namespace, request_id: NESTED_REQUEST, relay };
        let resolved = dispatch::resolve(&snapshot, context, &function).map_err(from_dispatch)?;
        if resolved.kind() == FunctionKind::Generator {
            return Err(NestedCallError::BadArguments(format!(
                "{namespace}.{function} is a generator; a nested call returns one value"
            )));
        }
        match resolved.call(args, kwargs).await.map_err(from_dispatch)? {
            Called::Value(value) => Ok(json::to_string(&value)),
            Called::Generator(_) => Err(NestedCallError::Failed(format!(
                "{namespace}.{function} started a generator; a nested call returns one value"
            ))),
        }
    }
}

fn bad_json(what: &str, expected: &str, got: &str) -> NestedCallError {
    NestedCallError::BadArguments(format!("{what} must be {expected} in JSON, got {got}"))
}

/// The dispatcher's error as the guest interface's.
fn from_dispatch(error: DispatchError) -> NestedCallError {
    let message = error.to_string();
    match error {
        DispatchError::Unknown { .. } => NestedCallError::UnknownFunction(message),
        DispatchError::DeadlinePassed { .. } => NestedCallError::Timeout(message),
        DispatchError::Loop { .. } | DispatchError::Reserved(_) => NestedCallError::Failed(message),
        DispatchError::Call(call) => match call {
            CallError::BadArguments { .. } | CallError::BadValue { .. } => NestedCallError::BadArguments(message),
            CallError::UnknownFunction { .. } => NestedCallError::UnknownFunction(message),
            CallError::Timeout { .. } => NestedCallError::Timeout(message),
            CallError::Busy { .. } => NestedCallError::Busy(message),
            _ => NestedCallError::Failed(message),
        },
    }
}

/// The caller for `namespace`'s guests, as the runtime takes it.
pub fn caller(registry: &Weak<Registry>, namespace: &str, may_call: Vec<String>) -> Arc<dyn FunctionCaller> {
    Arc::new(RegistryCaller::new(registry.clone(), namespace, may_call))
}
