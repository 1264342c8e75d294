//! A call of one of the namespace's functions: through the dispatcher, or, for a generator
//! function, opened and kept by the session, answered with `{"GENERATOR_START": id}` (quirk Q3).

use crate::dispatch::{self, CallContext, Called, GENERATOR_START};
use crate::registry::Relay;
use crate::runtime::TraceId;
use crate::session::reply::Reply;
use crate::session::{OpenGenerator, Session};
use crate::signature::FunctionKind;
use crate::telemetry::RemoteParent;
use crate::value::Value;
use crate::wire;
use std::time::Instant;

/// Longest request id kept as a generator's id; a longer one gets a uuid instead (clients
/// pull with the id the start answer names). Python clients send uuids (36 bytes).
const MAX_GENERATOR_ID: usize = 128;

pub struct Call {
    function: String,
    args: Vec<Value>,
    kwargs: Vec<(String, Value)>,
    /// How many hosts passed the call on (0 from a client).
    hops: u8,
    /// When the caller behind the hosts that passed it on stops waiting.
    deadline: Option<Instant>,
    /// The trace those hosts passed on with it, as sent.
    trace: Option<String>,
    /// The exported span that passed it on, as sent.
    traceparent: Option<String>,
    /// A pickled Python object found in the arguments, by name.
    unsupported: Option<String>,
}

impl Call {
    pub fn parse(call: wire::Call, unsupported: Option<String>) -> Self {
        // A deadline past the clock's range is none.
        let deadline = call.deadline_ms.and_then(|ms| Instant::now().checked_add(std::time::Duration::from_millis(ms)));
        let (function, args, kwargs) = (call.action.unwrap_or_default(), call.args, call.kwargs);
        let (trace, traceparent) = (call.trace, call.traceparent);
        Self { function, args, kwargs, hops: call.hops, deadline, trace, traceparent, unsupported }
    }

    pub async fn apply(self, session: &Session, request_id: &str) -> Reply {
        let Call { function, args, kwargs, hops, deadline, trace, traceparent, unsupported } = self;
        // The trace and span another host passed on, over a link only: a client names neither
        // (nor hides its calls from the export with an unsampled parent).
        let (trace, traceparent) = if session.link.is_some() { (trace, traceparent) } else { (None, None) };
        let trace = trace.as_deref().and_then(TraceId::parse).unwrap_or_else(|| TraceId::of_request(request_id));
        let parent = traceparent.as_deref().and_then(RemoteParent::parse);
        let relay = Relay { hops, deadline, trace, parent, ..Relay::default() };
        let snapshot = session.registry.snapshot();
        let context = CallContext { namespace: &session.namespace, request_id, relay };
        let resolved = match dispatch::resolve(&snapshot, context, &function) {
            Ok(resolved) => resolved,
            Err(unknown) => return Reply::from_dispatch(unknown),
        };
        if let Some(object) = unsupported {
            let message = format!(
                "an argument holds a pickled Python object ({object}), which a WASM function cannot take; send plain data"
            );
            return Reply::exception("TypeError", &message);
        }
        let generator = if resolved.kind() != FunctionKind::Generator {
            match resolved.call(args, kwargs).await {
                Ok(Called::Value(value)) => return Reply::Value(value),
                Ok(Called::Generator(generator)) => match admit_here(session) {
                    Ok(host_slot) => (generator, host_slot),
                    Err(busy) => return busy,
                },
                Err(error) => return Reply::from_dispatch(error),
            }
        } else {
            let host_slot = match admit_here(session) {
                Ok(host_slot) => host_slot,
                Err(busy) => return busy,
            };
            match resolved.open(args, kwargs).await {
                Ok(generator) => (generator, host_slot),
                Err(error) => return Reply::from_dispatch(error),
            }
        };
        let (generator, host_slot) = generator;
        let open = OpenGenerator { generator, last_used: Instant::now(), _host_slot: Some(host_slot) };
        let mut generators = session.generators_lock();
        // The id is the client's own unless taken or long: ids are kept as long as their
        // generators, and a request id may be as long as a frame.
        let id = if request_id.len() > MAX_GENERATOR_ID || generators.contains_key(request_id) {
            uuid::Uuid::new_v4().to_string()
        } else {
            request_id.to_owned()
        };
        generators.insert(id.clone(), std::sync::Arc::new(tokio::sync::Mutex::new(open)));
        tracing::debug!(namespace = %session.namespace, %function, generator = %id, "generator opened");
        Reply::Value(Value::Dict(vec![(GENERATOR_START.to_owned(), Value::Str(id))]))
    }
}

/// A place for one more generator on this connection and on the host, or the `Busy` reply.
fn admit_here(session: &Session) -> Result<tokio::sync::OwnedSemaphorePermit, Reply> {
    if session.generators_lock().len() >= session.max_generators {
        let reason = format!("this connection already has {} open generators, its limit", session.max_generators);
        return Err(Reply::failed(&crate::runtime::CallError::Busy { reason }));
    }
    session.open_generators.clone().try_acquire_owned().map_err(|_| {
        let reason = "the host has too many open generators".to_owned();
        Reply::failed(&crate::runtime::CallError::Busy { reason })
    })
}
