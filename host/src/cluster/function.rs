//! A function another host offers over a link: calls and generator steps are sent over the
//! link and answered from there.

use super::LinkHandle;
use crate::registry::{Callable, Origin, Relay, ValueStream};
use crate::runtime::CallError;
use crate::signature::FunctionDescriptor;
use crate::value::Value;
use crate::wire;
use std::sync::Arc;

/// A function of the host at the other end of a link.
pub struct LinkFunction {
    descriptor: FunctionDescriptor,
    origin: Origin,
    link: LinkHandle,
}

impl LinkFunction {
    /// Every function of a listing the other host sent, offered over `link`.
    pub fn all(link: &LinkHandle, descriptors: Vec<FunctionDescriptor>) -> Vec<Arc<dyn Callable>> {
        descriptors
            .into_iter()
            .map(|descriptor| {
                let origin = Origin::Link(link.id().clone());
                Arc::new(LinkFunction { descriptor, origin, link: link.clone() }) as Arc<dyn Callable>
            })
            .collect()
    }

    /// Sends `request` and reads the answer, waiting at most until `deadline`: an error answer
    /// is relayed as it came.
    async fn ask(&self, request: Value, deadline: Option<std::time::Instant>) -> Result<Value, CallError> {
        let function = || self.descriptor.name.clone();
        let link = || self.link.id().peer.to_string();
        let asked = self.link.request(request);
        let answered = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline.into(), asked).await {
                Ok(answered) => answered,
                Err(_) => {
                    let waited = deadline.saturating_duration_since(std::time::Instant::now());
                    return Err(CallError::Timeout {
                        function: format!("{} on {}", function(), link()),
                        deadline: waited,
                    });
                }
            },
            None => asked.await,
        };
        let answer = answered.map_err(|_| CallError::LinkLost { function: function(), link: link() })?;
        if answer.is_error {
            return Err(CallError::Relayed { function: function(), link: link(), answer: answer.response });
        }
        Ok(answer.response)
    }
}

#[async_trait::async_trait]
impl Callable for LinkFunction {
    fn descriptor(&self) -> &FunctionDescriptor {
        &self.descriptor
    }

    fn origin(&self) -> &Origin {
        &self.origin
    }

    async fn call(&self, args: Vec<Value>, kwargs: Vec<(String, Value)>, relay: Relay) -> Result<Value, CallError> {
        self.ask(relayed(&self.descriptor.name, args, kwargs, relay), relay.deadline).await
    }

    async fn open(
        &self,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
        relay: Relay,
    ) -> Result<Box<dyn ValueStream>, CallError> {
        let started = self.ask(relayed(&self.descriptor.name, args, kwargs, relay), relay.deadline).await?;
        self.adopt_generator(&started).ok_or_else(|| {
            let answer = Value::Str(format!("{} did not start a generator: {}", self.descriptor.name, started.brief()));
            let link = self.link.id().peer.to_string();
            CallError::Relayed { function: self.descriptor.name.clone(), link, answer }
        })
    }

    fn adopt_generator(&self, started: &Value) -> Option<Box<dyn ValueStream>> {
        let Value::Dict(entries) = started else { return None };
        let [(key, Value::Str(id))] = entries.as_slice() else { return None };
        (key == crate::dispatch::GENERATOR_START).then(|| {
            let stream =
                LinkStream { function: self.descriptor.name.clone(), link: self.link.clone(), id: Some(id.clone()) };
            Box::new(stream) as Box<dyn ValueStream>
        })
    }
}

/// The request object of a call passed on to the other host: one hop more, its trace, and the
/// time its caller still waits.
fn relayed(function: &str, args: Vec<Value>, kwargs: Vec<(String, Value)>, relay: Relay) -> Value {
    let mut request = wire::call_object(function, args, kwargs);
    if let Value::Dict(fields) = &mut request {
        fields.push((wire::HOPS_KEY.to_owned(), Value::Int(i128::from(relay.hops.saturating_add(1)))));
        fields.push((wire::TRACE_KEY.to_owned(), Value::Str(relay.trace.as_str().to_owned())));
        // The caller's span: the call runs inside it.
        if let Some(parent) = crate::telemetry::RemoteParent::of(&tracing::Span::current()) {
            fields.push((wire::TRACEPARENT_KEY.to_owned(), Value::Str(parent.traceparent())));
        }
        if let Some(deadline) = relay.deadline {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            fields.push((wire::DEADLINE_KEY.to_owned(), Value::Int(left.as_millis() as i128)));
        }
    }
    request
}

/// A generator running on the other host, pulled step by step over the link.
struct LinkStream {
    function: String,
    link: LinkHandle,
    /// The other host's generator id; none once the generator ended.
    id: Option<String>,
}

/// A generator given up before its end (its puller went away or stopped pulling) is closed on
/// the other host too, when that host is one of ours; a Python host keeps its generators.
impl Drop for LinkStream {
    fn drop(&mut self) {
        if let Some(id) = self.id.take().filter(|_| self.link.is_ours()) {
            self.link.tell(Value::Dict(vec![
                ("action".to_owned(), Value::Str(wire::GENERATOR_CLOSE.to_owned())),
                ("generator_id".to_owned(), Value::Str(id)),
            ]));
        }
    }
}

#[async_trait::async_trait]
impl ValueStream for LinkStream {
    async fn next(&mut self) -> Result<Option<Value>, CallError> {
        let Some(id) = self.id.clone() else { return Ok(None) };
        let request = Value::Dict(vec![
            ("action".to_owned(), Value::Str("GENERATOR_NEXT".to_owned())),
            ("generator_id".to_owned(), Value::Str(id)),
        ]);
        let link = || self.link.id().peer.to_string();
        let answer = match self.link.request(request).await {
            Ok(answer) => answer,
            Err(_) => {
                self.id = None;
                return Err(CallError::LinkLost { function: self.function.clone(), link: link() });
            }
        };
        if answer.is_error {
            self.id = None;
            return Err(CallError::Relayed { function: self.function.clone(), link: link(), answer: answer.response });
        }
        if answer.response.as_str() == Some(crate::dispatch::GENERATOR_END) {
            self.id = None;
            return Ok(None);
        }
        Ok(Some(answer.response))
    }
}
