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

/// The request id a call's first caller sent, carried by every call it leads to: the calls
/// its guest makes and the hops over cluster links. Logs and exported spans of every host name
/// it as `trace`, which joins the pieces of one call. Fixed size, so that it travels by copy.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceId {
    bytes: [u8; TraceId::MAX_LEN],
    len: u8,
}

impl TraceId {
    /// The longest request id kept as it is: a uuid (36 bytes) and then some.
    pub const MAX_LEN: usize = 64;

    /// `id` when it is 1 to [`Self::MAX_LEN`] visible ASCII characters (what clients send:
    /// uuids), else none.
    pub fn parse(id: &str) -> Option<Self> {
        let fits = (1..=Self::MAX_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic());
        fits.then(|| {
            let mut bytes = [0; Self::MAX_LEN];
            bytes[..id.len()].copy_from_slice(id.as_bytes());
            Self { bytes, len: id.len() as u8 }
        })
    }

    /// The trace of a call whose caller's request id is `request_id`: that id, or a fresh one
    /// when the id is too long or holds characters a log line should not.
    pub fn of_request(request_id: &str) -> Self {
        Self::parse(request_id).unwrap_or_else(Self::fresh)
    }

    /// A new random id.
    pub fn fresh() -> Self {
        let mut id = [0u8; 36];
        let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut id);
        Self::parse(text).unwrap_or_default()
    }

    pub fn as_str(&self) -> &str {
        // Only visible ASCII is ever stored.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

/// `-`: the trace of calls that come from no caller's request (warm-up, tests).
impl Default for TraceId {
    fn default() -> Self {
        Self { bytes: [b'-'; Self::MAX_LEN], len: 1 }
    }
}

impl std::fmt::Display for TraceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for TraceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TraceId({})", self.as_str())
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
    /// The trace of the calling call.
    pub trace: TraceId,
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
        let call = NestedCall {
            namespace,
            function,
            args,
            kwargs,
            deadline: self.deadline(),
            depth,
            hops: env.hops,
            callers,
            trace: env.trace,
        };
        // The nested call runs on its own instance; this one waits without a core.
        self.leave_long_lane();
        Ok(caller.call(call).await.map_err(CallError::from))
    }
}

#[cfg(test)]
mod tests {
    use super::{CallerChain, TraceId};

    #[test]
    fn a_trace_keeps_a_request_id_that_fits_and_replaces_one_that_does_not() {
        let uuid = "d2f95712-e78f-11f1-a490-02fc00000001";
        assert_eq!(TraceId::of_request(uuid).as_str(), uuid);
        assert_eq!(TraceId::parse(&"x".repeat(64)).map(|t| t.as_str().len()), Some(64));
        for unfit in ["", &"x".repeat(65), "two words", "line\nbreak", "héllo"] {
            assert!(TraceId::parse(unfit).is_none(), "{unfit:?}");
            let fresh = TraceId::of_request(unfit);
            assert!(uuid::Uuid::try_parse(fresh.as_str()).is_ok(), "{fresh}");
        }
    }

    #[test]
    fn a_chain_knows_its_namespaces_and_stops_growing_when_full() {
        let chain = CallerChain::default().with("a").with("b");
        assert!(chain.contains("a") && chain.contains("b") && !chain.contains("c"));
        let full = (0..20).fold(CallerChain::default(), |c, i| c.with(&format!("n{i}")));
        assert!(full.contains("n0") && full.contains("n7") && !full.contains("n8"));
    }
}
