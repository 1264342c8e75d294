//! The path of one call, from a function's name to its answer: resolve, admit, call.
//!
//! Owns what every caller of a function goes through, whoever it is (a client's session today;
//! a cluster link relaying a call, a guest calling a function): the function is looked
//! up in one registry snapshot (a group's first member that has it), the namespace admits the
//! call (its concurrency and queue limits, its open generators), the call runs only in the
//! namespace's turns, and a result the Python client would misread is refused. A
//! [`CallContext`] says who calls. It does not decode frames or write answers (`session`), and
//! it does not know how a function runs (`registry::Callable`).

use crate::metrics::{metrics, Held};
use crate::registry::{Callable, Namespace, NamespacePolicy, Origin, RegistrySnapshot, Relay, ValueStream};
use crate::runtime::CallError;
use crate::signature::FunctionKind;
use crate::telemetry::{LogSafe, LogText};
use crate::value::Value;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;

/// Marker of the generator protocol that results must not carry (quirks Q3, Q8).
pub const GENERATOR_START: &str = "GENERATOR_START";
/// Marker that ends a generator; an item must not be it.
pub const GENERATOR_END: &str = "GENERATOR_END";

/// Who calls: the namespace (or group) the caller reached, the request it answers, and what
/// the call carries from the hosts that passed it on.
#[derive(Clone, Copy, Debug)]
pub struct CallContext<'a> {
    /// The namespace or group name the caller is connected to.
    pub namespace: &'a str,
    /// The caller's request id, for logs.
    pub request_id: &'a str,
    pub relay: Relay,
}

/// Hosts a call may pass through over cluster links. A chain longer than this is not a
/// cluster anyone draws; a call that gets this far is going round a loop of links whose
/// listings have not caught up with a change, and is refused instead of circulating.
pub const MAX_HOPS: u8 = 16;

/// Why a call got no result. Callers turn it into their own kind of answer.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// No member of the namespace has the function; `known` lists what it has.
    #[error("no action {function} in {namespace}")]
    Unknown { namespace: String, function: String, known: Vec<String> },
    /// The function ran, or could not be run (busy, trap, timeout, bad argument...).
    #[error(transparent)]
    Call(#[from] CallError),
    /// The function returned something the Python client would take for a protocol marker.
    #[error("{0}")]
    Reserved(&'static str),
    /// The call passed through [`MAX_HOPS`] hosts and would go on over another link.
    #[error("{function} was passed on through {hops} hosts without reaching a host that runs it: the links of the cluster form a loop")]
    Loop { function: String, hops: u8 },
    /// The caller's deadline passed before the call could start.
    #[error("the caller stopped waiting for {function} before it could start")]
    DeadlinePassed { function: String },
}

/// A function found for a call, with the namespace that holds it; borrowed from the snapshot
/// the caller keeps for the call's length.
pub struct Resolved<'a> {
    context: CallContext<'a>,
    function_name: &'a str,
    member: &'a str,
    namespace: &'a Namespace,
    function: &'a Arc<dyn Callable>,
}

/// Finds `function` for `context` in `snapshot`.
pub fn resolve<'a>(
    snapshot: &'a RegistrySnapshot,
    context: CallContext<'a>,
    function: &'a str,
) -> Result<Resolved<'a>, DispatchError> {
    match snapshot.resolve(context.namespace, function) {
        Some((member, namespace, callable)) => {
            Ok(Resolved { context, function_name: function, member, namespace, function: callable })
        }
        None => Err(DispatchError::Unknown {
            namespace: context.namespace.to_owned(),
            function: function.to_owned(),
            known: snapshot.listing(context.namespace).iter().map(|d| d.name.clone()).collect(),
        }),
    }
}

impl Resolved<'_> {
    /// Whether calling the function opens a generator.
    pub fn kind(&self) -> FunctionKind {
        self.function.descriptor().kind
    }

    /// Calls the function once the namespace admits it, in the namespace's turns: its value,
    /// or the generator its answer started where its listing did not say it was one.
    pub async fn call(self, args: Vec<Value>, kwargs: Vec<(String, Value)>) -> Result<Called, DispatchError> {
        let Resolved { mut context, function_name, member, namespace, function } = self;
        check_relay(context, function_name, function)?;
        bound_relay(&mut context, namespace, function);
        // The clock is read only for the debug log and the metrics (the call path reads it
        // enough already).
        let recording = metrics().enabled();
        let started = (recording || tracing::enabled!(tracing::Level::DEBUG)).then(Instant::now);
        let _in_flight = Held::on(&metrics().calls_in_flight);
        let policy = &namespace.policy;
        let span = call_span(context, function_name, logs_guests(policy));
        let running = async {
            if context.relay.depth > 0 && context.relay.callers.contains(member) {
                // A guest's nested call into a namespace already on its chain of calls runs under
                // the admission and turns of the call there: waiting for a slot its own caller
                // holds would never end.
                function.call(args, kwargs, context.relay).await
            } else if context.relay.depth > 0 {
                // Into another namespace: a slot there if one is free now (never waiting while
                // the caller holds its own), and that namespace's turns.
                match policy.try_admit(member) {
                    Ok(_running) => policy.in_turns(function.call(args, kwargs, context.relay)).await,
                    Err(busy) => Err(busy),
                }
            } else {
                match policy.admit(member).await {
                    Ok(_running) => policy.in_turns(function.call(args, kwargs, context.relay)).await,
                    Err(busy) => Err(busy),
                }
            }
        };
        let result = running.instrument(span.clone()).await;
        record_outcome(&span, result.as_ref().map_or_else(CallError::kind, |_| "ok"));
        let _in_span = span.enter();
        if recording {
            let took = started.map(|s| s.elapsed()).unwrap_or_default();
            metrics().record_call(member, function_name, took, result.as_ref().err().map(CallError::kind));
        }
        match result {
            Ok(value) => {
                tracing::debug!(
                    namespace = %context.namespace, function = %function_name, request = %LogSafe(context.request_id),
                    took = ?started.map(|s| s.elapsed()), "call"
                );
                if let Some(stream) = function.adopt_generator(&value) {
                    let policy = namespace.policy.clone();
                    let slot = policy.admit_generator(member)?;
                    let _open = Held::on(&metrics().open_generators);
                    return Ok(Called::Generator(Generator { stream: Some(stream), _slot: Some(slot), policy, _open }));
                }
                match reserved_marker(&value) {
                    None => Ok(Called::Value(value)),
                    Some(why) => Err(DispatchError::Reserved(why)),
                }
            }
            Err(error) => {
                tracing::info!(
                    namespace = %context.namespace, function = %function_name, request = %LogSafe(context.request_id),
                    kind = error.kind(), error = %LogText(&error.to_string()), "call failed"
                );
                Err(error.into())
            }
        }
    }

    /// Opens the function as a generator, holding one of the namespace's open-generator slots
    /// until the generator is dropped.
    pub async fn open(self, args: Vec<Value>, kwargs: Vec<(String, Value)>) -> Result<Generator, DispatchError> {
        let Resolved { mut context, function_name, member, namespace, function } = self;
        check_relay(context, function_name, function)?;
        bound_relay(&mut context, namespace, function);
        let policy = namespace.policy.clone();
        let slot = policy.admit_generator(member)?;
        let span = call_span(context, function_name, logs_guests(&policy));
        let opened = policy.in_turns(function.open(args, kwargs, context.relay)).instrument(span.clone()).await;
        record_outcome(&span, opened.as_ref().map_or_else(CallError::kind, |_| "open"));
        let _in_span = span.enter();
        match opened {
            Ok(stream) => {
                let _open = Held::on(&metrics().open_generators);
                Ok(Generator { stream: Some(stream), _slot: Some(slot), policy, _open })
            }
            Err(error) => {
                tracing::info!(
                    namespace = %context.namespace, function = %function_name, request = %LogSafe(context.request_id),
                    kind = error.kind(), error = %LogText(&error.to_string()), "generator failed to open"
                );
                Err(error.into())
            }
        }
    }
}

/// What a call gave.
pub enum Called {
    Value(Value),
    /// A generator the call started (see [`Callable::adopt_generator`]).
    Generator(Generator),
}

/// An open generator: its items are pulled one at a time, each step in its namespace's turns.
pub struct Generator {
    /// None once it ended or failed.
    stream: Option<Box<dyn ValueStream>>,
    /// Its place among its namespace's open generators; given back when it ends.
    _slot: Option<OwnedSemaphorePermit>,
    policy: Arc<NamespacePolicy>,
    /// Its count among the host's open generators (in the metrics).
    _open: Held,
}

impl Generator {
    /// The next item; none once the generator has ended. After an error (or an item that is
    /// the end marker) it is over, and its slot is given back.
    pub async fn next(&mut self) -> Result<Option<Value>, DispatchError> {
        let Some(stream) = self.stream.as_mut() else { return Ok(None) };
        let outcome = self.policy.in_turns(stream.next()).await;
        match outcome {
            Ok(Some(item)) if item.as_str() == Some(GENERATOR_END) => {
                self.finish();
                Err(DispatchError::Reserved("the generator yielded the reserved end marker as an item"))
            }
            Ok(Some(item)) => Ok(Some(item)),
            Ok(None) => {
                self.finish();
                Ok(None)
            }
            Err(error) => {
                self.finish();
                Err(error.into())
            }
        }
    }

    /// Frees the generator's instance and slot.
    fn finish(&mut self) {
        self.stream = None;
        self._slot = None;
        self._open = Held::default();
    }
}

/// Refuses a call whose caller no longer waits, and one that would pass over yet another link
/// after [`MAX_HOPS`].
fn check_relay(
    context: CallContext<'_>,
    function_name: &str,
    function: &Arc<dyn Callable>,
) -> Result<(), DispatchError> {
    if context.relay.deadline.is_some_and(|deadline| deadline <= Instant::now()) {
        return Err(DispatchError::DeadlinePassed { function: function_name.to_owned() });
    }
    if context.relay.hops >= MAX_HOPS && matches!(function.origin(), Origin::Link(_)) {
        tracing::info!(
            namespace = %context.namespace, function = %function_name, hops = context.relay.hops,
            "call refused: it went round a loop of links"
        );
        return Err(DispatchError::Loop { function: function_name.to_owned(), hops: context.relay.hops });
    }
    Ok(())
}

/// A call passed on over a link that carries no deadline from another host gets its
/// namespace's call deadline, so that it waits no longer than one run here would: another host
/// that never answers does not hold the caller forever. (A local call keeps its own limits.)
fn bound_relay(context: &mut CallContext<'_>, namespace: &Namespace, function: &Arc<dyn Callable>) {
    if context.relay.deadline.is_none() && matches!(function.origin(), Origin::Link(_)) {
        context.relay.deadline = Instant::now().checked_add(namespace.policy.config.limits.deadline);
    }
}

/// Whether the namespace's guests write to the host's log (`wasi:logging`): their calls' spans
/// are then at the info level, so that each guest line carries the request id.
fn logs_guests(policy: &NamespacePolicy) -> bool {
    policy.config.capabilities.as_ref().is_some_and(|c| c.logging.is_some())
}

/// One call's span: namespace, function, request id, trace (the request id of the first
/// caller, the same on every host a cluster call passes through) and, once known, outcome
/// (`ok`, `open` for a generator, or the error kind). At the debug level, where it costs
/// nothing unless debug logging is on or spans are exported; at info for namespaces whose
/// guests log. A nested call's span sits inside its caller's; a relayed call's, when spans
/// are exported, below the span of the host that passed it on.
fn call_span(context: CallContext<'_>, function: &str, guests_log: bool) -> tracing::Span {
    let (namespace, request, trace) = (context.namespace, LogSafe(context.request_id), context.relay.trace);
    let (outcome, status) = (tracing::field::Empty, tracing::field::Empty);
    let span = if guests_log {
        tracing::info_span!("call", namespace = %namespace, function = %function, request = %request, %trace, outcome, otel.status_code = status)
    } else {
        tracing::debug_span!("call", namespace = %namespace, function = %function, request = %request, %trace, outcome, otel.status_code = status)
    };
    if let Some(parent) = context.relay.parent {
        parent.adopt(&span);
    }
    span
}

/// Records how a call ended on its span: the outcome, and for exported spans an error status
/// when it failed.
fn record_outcome(span: &tracing::Span, outcome: &'static str) {
    span.record("outcome", outcome);
    if !matches!(outcome, "ok" | "open") {
        span.record("otel.status_code", "error");
    }
}

/// Results the Python client would misread as generator markers (quirk Q8).
fn reserved_marker(value: &Value) -> Option<&'static str> {
    match value {
        Value::Str(s) if s.contains(GENERATOR_START) => {
            Some("the result text holds the reserved generator start marker")
        }
        Value::List(items) if items.iter().any(|v| v.as_str() == Some(GENERATOR_START)) => {
            Some("the result list holds the reserved generator start marker")
        }
        Value::Dict(entries) if entries.iter().any(|(k, _)| k == GENERATOR_START) => {
            Some("the result dict has the reserved generator start marker as a key")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_markers_are_caught() {
        assert!(reserved_marker(&Value::Str("xGENERATOR_STARTx".into())).is_some());
        assert!(reserved_marker(&Value::List(vec!["GENERATOR_START".into()])).is_some());
        assert!(reserved_marker(&Value::Dict(vec![("GENERATOR_START".into(), Value::Int(1))])).is_some());
        assert!(reserved_marker(&Value::Dict(vec![("start".into(), "GENERATOR_START".into())])).is_none());
        assert!(reserved_marker(&Value::Str("fine".into())).is_none());
    }
}
