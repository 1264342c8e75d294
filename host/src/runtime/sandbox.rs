//! One sandboxed instance of a module and the calls made on it.
//!
//! Owns the per-instance state wasmtime needs ([`CallState`]): a WASI context (made on first
//! use) with nothing granted (no files, network, environment or arguments; stdout/stderr
//! captured and bounded), the memory limiter (the call's own limit, and the host-wide budget
//! it charges), and the call deadline that the epoch callback
//! enforces; and the renewal of a store for its next instance. It also turns wasmtime's errors
//! into [`CallError`]s. It does not pick limits (the caller passes [`CallLimits`]) and does not
//! bind arguments (the module does that before calling).

use super::budget::MemoryBudget;
use super::convert::from_val;
use super::error::{CallError, ValueError};
use super::imports::CallEnv;
use super::{CallLimits, Export, ExportedFunction, Module, RuntimeInner, INSTANCES_PER_STORE};
use crate::signature::WitType;
use crate::value::Value;
use bytes::Bytes;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::sync::OwnedSemaphorePermit;
use wasmtime::component::{Func, Instance, ResourceAny, ResourceTable, Val};
use wasmtime::{ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Largest table a guest may grow to; Rust guests use a few hundred entries.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Store data of one sandboxed instance.
pub struct CallState {
    /// Built on the guest's first WASI call: most calls make none, and building one (random
    /// seeds, clocks, stdio) is a sizeable part of a fresh instance's cost.
    wasi: Option<WasiCtx>,
    stdout: OutputCapture,
    stderr: OutputCapture,
    /// WASI's resources and those of EasyRpc's imports (buckets, compare-and-swap handles).
    pub(super) table: ResourceTable,
    /// Host memory the key-value handles in `table` hold (see `imports::keyvalue`).
    pub(super) handles: super::imports::HandleBudget,
    limiter: MemoryLimiter,
    /// When the running call must stop; checked on every epoch tick while the guest runs.
    deadline: Instant,
    /// When the running call started; past [`LONG_CALL`] it runs in the long lane.
    started: Instant,
    /// The long-lane slot this call holds while it runs as a long call.
    lane_slot: Arc<Mutex<Option<OwnedSemaphorePermit>>>,

    /// The runtime's long lane and its count of retired instances.
    runtime: Arc<RuntimeInner>,
    /// What the running call may reach (its namespace's capabilities) and where it sits in a
    /// chain of calls; set at each call.
    env: CallEnv,
    /// The running call's module and function, for the log lines of its capabilities (set only
    /// when it has capabilities: cloning them costs every call otherwise).
    label: Option<(Arc<str>, Arc<str>)>,
}

/// A call running longer than this is a long call: it runs only while it holds one of the
/// runtime's few long-lane slots, taking turns with other long calls at every epoch tick. Busy
/// or hostile guests then share at most those cores, and short calls never queue behind them.
pub const LONG_CALL: std::time::Duration = std::time::Duration::from_millis(2);
/// A function whose last this many calls in a row ran past [`LONG_CALL`] (time spent running,
/// not asleep) or failed (trap, timeout, out of memory) starts its next call in the long lane, instead of spending
/// its first [`LONG_CALL`] among the short calls: a tenant whose calls loop or eat memory then
/// costs the others nothing but the long lane's core. One call that ends short makes it short
/// again.
pub const LONG_STRIKES: u8 = 2;
/// A store whose memory grew past this is dropped on a blocking thread: giving a big memory
/// back to the kernel takes milliseconds that must not stall a tokio worker.
const BIG_MEMORY: usize = 8 << 20;
/// A store whose instances' memory grew past this is not renewed (see [`Sandbox::renew`]): its
/// retired instances would hold it until the store is dropped.
const RENEW_MEMORY: usize = 2 << 20;

impl CallState {
    /// Gives up the long-lane slot the call holds, if any (it takes one again at its next
    /// epoch tick).
    pub(super) fn leave_long_lane(&self) {
        drop(lock(&self.lane_slot).take());
    }

    pub(super) fn env(&self) -> &CallEnv {
        &self.env
    }

    /// The running call's module and function names (empty outside a call with capabilities).
    pub(super) fn call_label(&self) -> (&str, &str) {
        self.label.as_ref().map_or(("", ""), |(m, f)| (&**m, &**f))
    }

    /// When the running call must stop.
    pub(super) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Sets what the next call on this instance may reach.
    fn enter(&mut self, env: &CallEnv, module: &Module, function: &ExportedFunction) {
        self.label = env.capabilities.as_ref().map(|_| (module.name.clone(), function.name.clone()));
        self.env = env.clone();
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let (stdout, stderr) = (&self.stdout, &self.stderr);
        let ctx = self.wasi.get_or_insert_with(|| {
            WasiCtxBuilder::new()
                .stdout(stdout.clone())
                .stderr(stderr.clone())
                .allow_tcp(false)
                .allow_udp(false)
                .allow_ip_name_lookup(false)
                .build()
        });
        WasiCtxView { ctx, table: &mut self.table }
    }
}

/// Refuses memory growth beyond the call's limit, or beyond what the host-wide budget has
/// left, and remembers which, so that the resulting trap (Rust guests abort on allocation
/// failure) is reported as out-of-memory or as busy.
struct MemoryLimiter {
    limit: usize,
    exceeded: bool,
    /// The largest size any memory of the instance was granted.
    peak: usize,
    budget: Arc<MemoryBudget>,
    /// What this store's memories were granted of the budget (all its instances', retired
    /// ones included); given back when the store is dropped.
    charged: usize,
    /// A growth was refused because the budget had no room.
    over_budget: bool,
    /// The store is an open generator's: its memory counts in the generators' share.
    generator: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            return Ok(false);
        }
        let growth = desired.saturating_sub(current);
        if !self.budget.charge(growth, self.generator) {
            self.over_budget = true;
            return Ok(false);
        }
        self.charged += growth;
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        self.budget.release(self.charged, self.generator);
    }
}

/// A guest's stdout or stderr: kept in memory up to a bound, the rest counted and dropped. The
/// guest never sees a write error, so chatty guests are not broken by the bound.
#[derive(Clone)]
pub struct OutputCapture {
    inner: Arc<Mutex<CaptureBuffer>>,
}

struct CaptureBuffer {
    bytes: Vec<u8>,
    dropped: u64,
    limit: usize,
}

impl OutputCapture {
    fn new(limit: usize) -> Self {
        Self { inner: Arc::new(Mutex::new(CaptureBuffer { bytes: Vec::new(), dropped: 0, limit })) }
    }

    fn append(&self, data: &[u8]) {
        let mut buf = lock(&self.inner);
        let room = buf.limit.saturating_sub(buf.bytes.len());
        let kept = data.len().min(room);
        buf.bytes.extend_from_slice(&data[..kept]);
        buf.dropped += (data.len() - kept) as u64;
    }

    /// The captured text and how many bytes were dropped beyond the bound; empties the buffer.
    fn take(&self) -> (String, u64) {
        let mut buf = lock(&self.inner);
        let text = String::from_utf8_lossy(&buf.bytes).into_owned();
        buf.bytes.clear();
        (text, std::mem::take(&mut buf.dropped))
    }

    fn peek(&self) -> String {
        let buf = lock(&self.inner);
        String::from_utf8_lossy(&buf.bytes).into_owned()
    }
}

impl IsTerminal for OutputCapture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for OutputCapture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for OutputCapture {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for OutputCapture {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for OutputCapture {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A live instance of a module. [`Module::call`] makes a fresh one per call unless the
/// namespace reuses instances (see `reuse`); generators keep one for as long as their stream.
pub struct Sandbox {
    /// Dropped by hand (see `Drop`): big stores go to a blocking thread.
    store: ManuallyDrop<Store<CallState>>,
    instance: Option<Instance>,
    /// The instance's exported functions looked up so far, by [`Export::slot`].
    funcs: Vec<Option<Func>>,
    // No handle on the module (its `InstancePre` or name): a module keeps ready sandboxes,
    // which must not keep it alive, and every caller has the module at hand. Cloning them per
    // sandbox and call also costs: their reference counts are written by every worker making
    // instances of the module (see BENCHMARKS.md).
    limits: CallLimits,
    /// Set once a call trapped or was cut off: the instance's state can no longer be trusted.
    poisoned: bool,
    /// Calls (and generator steps) made on this instance.
    calls: u32,
    /// Instances this store held before the current one, retired by [`renew`](Self::renew);
    /// counted in the runtime's retired instances until the store is dropped.
    retired: u32,
    /// How long the last call ran (in its polls: not asleep, not waiting for a slot).
    busy: std::time::Duration,
}

impl Sandbox {
    /// Creates the store for an instance of `module`; instantiation happens on the first call
    /// (inside the deadline, so a guest whose start-up never ends is stopped too).
    pub(super) fn new(module: &Module, limits: CallLimits) -> Self {
        let now = Instant::now();
        let state = CallState {
            wasi: None,
            stdout: OutputCapture::new(limits.output),
            stderr: OutputCapture::new(limits.output),
            table: ResourceTable::new(),
            handles: Default::default(),
            limiter: MemoryLimiter {
                limit: limits.memory,
                exceeded: false,
                peak: 0,
                budget: module.runtime.memory_budget.clone(),
                charged: 0,
                over_budget: false,
                generator: false,
            },
            deadline: now + limits.deadline,
            started: now,
            lane_slot: Arc::new(Mutex::new(None)),
            runtime: module.runtime.clone(),
            env: CallEnv::default(),
            label: None,
        };
        let mut store = Store::new(module.engine(), state);
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_callback(|ctx| {
            let state = ctx.data();
            let now = Instant::now();
            if now >= state.deadline {
                return Ok(UpdateDeadline::Interrupt);
            }
            if now.duration_since(state.started) < LONG_CALL {
                // Yield at every tick so a busy guest shares its worker. tokio's yield_now puts
                // the task at the back of the run queue; a plain self-wake could run it again
                // at once and starve everything else on that worker.
                return Ok(UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now())));
            }
            // A long call: give its lane slot to the next long call (FIFO) and wait for a turn.
            let slot = state.lane_slot.clone();
            let lane = state.runtime.long_lane.clone();
            drop(lock(&slot).take());
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(async move {
                    if let Ok(permit) = lane.acquire_owned().await {
                        *lock(&slot) = Some(permit);
                    }
                }),
            ))
        });
        Self {
            store: ManuallyDrop::new(store),
            instance: None,
            funcs: Vec::new(),
            limits,
            poisoned: false,
            calls: 0,
            retired: 0,
            busy: std::time::Duration::ZERO,
        }
    }

    /// The sandbox again, ready for a new instance of the same module in the same store, or
    /// none when the store has to go. Making a store and dropping one is a sizeable part of a
    /// fresh instance's cost (see BENCHMARKS.md); a renewed store spreads it over several
    /// instances. The used instance stays in the store, retired and unreachable, until the store
    /// is dropped: the next one gets memories, tables, globals and resource handle tables of its
    /// own, and what the store keeps for a call (deadline, output, WASI context, the limiter's
    /// verdict) starts afresh, so the next call sees nothing of the last. A store holds at most
    /// [`INSTANCES_PER_STORE`], one that failed or whose memory grew past [`RENEW_MEMORY`] is
    /// not renewed, and retired instances host-wide stay within the runtime's share of the pool.
    pub(super) fn renew(mut self) -> Option<Self> {
        let state = self.store.data();
        if self.poisoned
            || self.instance.is_none()
            || self.retired + 1 >= INSTANCES_PER_STORE
            || state.limiter.peak > RENEW_MEMORY
            // Key-value handles the guest never dropped stay in the store's table.
            || !state.handles.is_empty()
            || !state.runtime.retired.claim()
        {
            return None;
        }
        self.retired += 1;
        let state = self.store.data_mut();
        state.wasi = None;
        state.env = CallEnv::default();
        state.label = None;
        state.limiter.exceeded = false;
        state.limiter.over_budget = false;
        self.instance = None;
        self.funcs.clear();
        self.calls = 0;
        Some(self)
    }

    /// Calls `function` of `module` (already bound and converted arguments) within the
    /// sandbox's limits. `module` is the one the sandbox was made for.
    pub(super) async fn call(
        &mut self,
        module: &Module,
        function: &ExportedFunction,
        params: &[Val],
        env: &CallEnv,
        namespace: &str,
    ) -> Result<Value, CallError> {
        self.store.data_mut().enter(env, module, function);
        let results = self
            .invoke_noted(module, function, function.export_index(), params, function.result_count, namespace)
            .await?;
        self.convert_result(function, results)
    }

    /// Calls a generator function: the returned resource is its stream, alive as long as this
    /// sandbox.
    pub(super) async fn open(
        &mut self,
        module: &Module,
        function: &ExportedFunction,
        params: &[Val],
        env: &CallEnv,
        namespace: &str,
    ) -> Result<ResourceAny, CallError> {
        self.store.data_mut().enter(env, module, function);
        let name = &function.descriptor.name;
        let mut results = self.invoke_noted(module, function, function.export_index(), params, 1, namespace).await?;
        match results.pop() {
            Some(Val::Resource(stream)) => Ok(stream),
            other => Err(CallError::BadResult {
                function: name.clone(),
                source: ValueError {
                    path: "result".into(),
                    message: format!("expected a generator resource, got {other:?}"),
                },
            }),
        }
    }

    /// Pulls the next item of a generator opened by [`open`](Self::open); none at its end.
    pub(super) async fn next(
        &mut self,
        module: &Module,
        function: &ExportedFunction,
        stream: ResourceAny,
        namespace: &str,
    ) -> Result<Option<Value>, CallError> {
        let name = &function.descriptor.name;
        let next = function.next_index().ok_or_else(|| CallError::UnknownFunction {
            module: module.name().to_owned(),
            name: format!("{name} (not a generator)"),
        })?;
        let mut results = self.invoke_noted(module, function, next, &[Val::Resource(stream)], 1, namespace).await?;
        let item_type = function.descriptor.result.as_ref();
        match (results.pop(), item_type) {
            (Some(Val::Option(None)), _) => Ok(None),
            (Some(Val::Option(Some(v))), Some(ty)) => {
                from_val(&v, ty).map(Some).map_err(|source| CallError::BadResult { function: name.clone(), source })
            }
            (other, _) => Err(CallError::BadResult {
                function: name.clone(),
                source: ValueError { path: "next".into(), message: format!("expected an option, got {other:?}") },
            }),
        }
    }

    /// [`invoke`](Self::invoke) for `function`, in the long lane from the start if its recent
    /// calls were long, and noting whether this one was.
    async fn invoke_noted(
        &mut self,
        module: &Module,
        function: &ExportedFunction,
        export: &Export,
        params: &[Val],
        result_count: usize,
        namespace: &str,
    ) -> Result<Vec<Val>, CallError> {
        let name = &function.descriptor.name;
        let outcome = self.invoke(module, name, export, params, result_count, function.runs_long(), namespace).await;
        // A call that trapped, ran out of memory or time (a poisoned sandbox) counts as long:
        // a function that keeps failing so is broken or hostile, and its failures (unwinding,
        // tearing down) cost the host as much as running.
        function.note_call(self.poisoned || self.busy >= LONG_CALL);
        outcome
    }

    /// Runs one export (instantiating first if needed) under the deadline; classifies failures.
    /// `start_long`: the call takes a long-lane slot before it runs and counts as long from
    /// the start.
    // Each argument is its own part of one call (what, where, with what, how); a struct for
    // them would be built and taken apart at the one call site.
    #[allow(clippy::too_many_arguments)]
    async fn invoke(
        &mut self,
        module: &Module,
        name: &str,
        export: &Export,
        params: &[Val],
        result_count: usize,
        start_long: bool,
        namespace: &str,
    ) -> Result<Vec<Val>, CallError> {
        if self.poisoned {
            return Err(CallError::Trap {
                function: name.to_owned(),
                message: "the instance was stopped by an earlier failure".to_owned(),
                source: anyhow::anyhow!("poisoned sandbox"),
            });
        }
        self.calls = self.calls.saturating_add(1);
        let now = Instant::now();
        let state = self.store.data_mut();
        state.deadline = now + self.limits.deadline;
        state.started = now;
        // A guest may have met the memory limit in an earlier call and carried on (growth
        // refused, no trap): only a refusal during this call makes this call out-of-memory.
        state.limiter.exceeded = false;
        state.limiter.over_budget = false;
        if start_long {
            state.started = now.checked_sub(LONG_CALL).unwrap_or(now);
        }
        let lane = start_long.then(|| (state.runtime.long_lane.clone(), state.lane_slot.clone()));
        self.store.set_epoch_deadline(1);
        let mut results = vec![Val::Bool(false); result_count];
        let pre = module.instance_pre();
        let store: &mut Store<CallState> = &mut self.store;
        let funcs = &mut self.funcs;
        let run = async {
            if let Some((lane, slot)) = lane {
                if let Ok(permit) = lane.acquire_owned().await {
                    *lock(&slot) = Some(permit);
                }
            }
            let instance = match self.instance {
                Some(i) => i,
                None => {
                    let i = pre.instantiate_async(&mut *store).await?;
                    self.instance = Some(i);
                    i
                }
            };
            let func = match funcs.get(export.slot).copied().flatten() {
                Some(func) => func,
                None => {
                    let func = instance
                        .get_func(&mut *store, export.index)
                        .ok_or_else(|| wasmtime::format_err!("export `{name}` disappeared from its instance"))?;
                    if funcs.len() <= export.slot {
                        funcs.resize(export.slot + 1, None);
                    }
                    funcs[export.slot] = Some(func);
                    func
                }
            };
            func.call_async(&mut *store, params, &mut results).await
        };
        // Most calls finish within their first poll: only a call that waits (a sleep, a yield
        // at an epoch tick) pays for a timer. The deadline still counts from `now`.
        let mut busy = std::time::Duration::ZERO;
        let outcome = {
            let mut run = std::pin::pin!(run);
            // The time spent in the call's polls is the time it ran, not slept or waited.
            let timed = std::future::poll_fn(|cx| {
                let polled = Instant::now();
                let progress = run.as_mut().poll(cx);
                busy += polled.elapsed();
                progress
            });
            let mut timed = std::pin::pin!(timed);
            match std::future::poll_fn(|cx| Poll::Ready(timed.as_mut().poll(cx))).await {
                Poll::Ready(done) => Ok(done),
                Poll::Pending => {
                    let deadline = tokio::time::Instant::from_std(now + self.limits.deadline);
                    tokio::time::timeout_at(deadline, timed).await
                }
            }
        };
        self.busy = busy;
        drop(lock(&self.store.data().lane_slot).take());
        // Classify before logging: a panic's message is read from the captured stderr.
        let error = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(self.classify(name, e)),
            Err(_elapsed) => Some(CallError::Timeout { function: name.to_owned(), deadline: self.limits.deadline }),
        };
        self.log_output(module, name, namespace);
        match error {
            None => Ok(results),
            Some(error) => {
                self.poisoned = true;
                Err(error)
            }
        }
    }

    /// The limits the sandbox was made with.
    pub(super) fn limits(&self) -> CallLimits {
        self.limits
    }

    /// The deadline of the sandbox's next calls (memory and output stay as made).
    pub(super) fn set_deadline(&mut self, deadline: std::time::Duration) {
        self.limits.deadline = deadline;
    }

    /// Calls made on this instance so far.
    pub(super) fn calls(&self) -> u32 {
        self.calls
    }

    /// The largest linear memory this store's instances have had, in bytes.
    pub(super) fn peak_memory(&self) -> usize {
        self.store.data().limiter.peak
    }

    /// Makes this sandbox an open generator's: what its store holds of the guest memory budget,
    /// and all it grows by from now on, counts in the generators' share.
    pub(super) fn hold_for_generator(&mut self) -> Result<(), CallError> {
        let limiter = &mut self.store.data_mut().limiter;
        if limiter.generator {
            return Ok(());
        }
        if !limiter.budget.hold_for_generator(limiter.charged) {
            return Err(generators_share_used_up(&limiter.budget));
        }
        limiter.generator = true;
        Ok(())
    }

    /// Whether a call trapped or was cut off in this sandbox.
    pub(super) fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Instantiates ahead of the first call (within the sandbox's deadline), so that the call
    /// finds its instance ready. A sandbox that fails here is not to be used.
    pub(super) async fn instantiate(&mut self, module: &Module) -> Result<(), CallError> {
        let now = Instant::now();
        self.store.data_mut().deadline = now + self.limits.deadline;
        self.store.data_mut().started = now;
        self.store.set_epoch_deadline(1);
        let outcome =
            tokio::time::timeout(self.limits.deadline, module.instance_pre().instantiate_async(&mut *self.store)).await;
        drop(lock(&self.store.data().lane_slot).take());
        let error = match outcome {
            Ok(Ok(instance)) => {
                self.instance = Some(instance);
                None
            }
            Ok(Err(e)) => Some(self.classify("(instantiation)", e)),
            Err(_elapsed) => {
                Some(CallError::Timeout { function: "(instantiation)".to_owned(), deadline: self.limits.deadline })
            }
        };
        self.log_output(module, "(instantiation)", "-");
        match error {
            None => Ok(()),
            Some(error) => {
                self.poisoned = true;
                Err(error)
            }
        }
    }

    fn convert_result(&self, function: &ExportedFunction, mut results: Vec<Val>) -> Result<Value, CallError> {
        let name = &function.descriptor.name;
        let bad = |source| CallError::BadResult { function: name.clone(), source };
        match (&function.descriptor.result, results.pop()) {
            (None, _) | (_, None) => Ok(Value::None),
            (Some(WitType::Result { ok, err }), Some(Val::Result(r))) => match r {
                Ok(payload) => match (payload, ok) {
                    (Some(p), Some(t)) => from_val(&p, t).map_err(bad),
                    _ => Ok(Value::None),
                },
                Err(payload) => {
                    let error = match (payload, err) {
                        (Some(p), Some(t)) => from_val(&p, t).map_err(bad)?,
                        _ => Value::None,
                    };
                    Err(CallError::Failed { function: name.clone(), error })
                }
            },
            (Some(ty), Some(v)) => from_val(&v, ty).map_err(bad),
        }
    }

    fn classify(&self, function: &str, error: wasmtime::Error) -> CallError {
        let function = function.to_owned();
        let limiter = &self.store.data().limiter;
        if limiter.over_budget {
            return if limiter.generator {
                generators_share_used_up(&limiter.budget)
            } else {
                CallError::Busy {
                    reason: format!(
                        "the host's memory for guests is in use up to its budget of {} MiB; try again shortly",
                        limiter.budget.limit() >> 20
                    ),
                }
            };
        }
        if self.store.data().limiter.exceeded {
            return CallError::OutOfMemory { function, limit: self.limits.memory };
        }
        if error.downcast_ref::<wasmtime::PoolConcurrencyLimitError>().is_some() {
            return CallError::Busy { reason: "the host is at its limit of concurrent sandboxes".to_owned() };
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => CallError::Timeout { function, deadline: self.limits.deadline },
            Some(Trap::StackOverflow) => CallError::StackOverflow { function },
            Some(Trap::UnreachableCodeReached)
                if let Some(message) = panic_message(&self.store.data().stderr.peek()) =>
            {
                CallError::Panic { function, message }
            }
            // A Rust guest that overflows its linear-memory (shadow) stack wraps below address 0.
            Some(Trap::MemoryOutOfBounds) => CallError::Trap {
                function,
                message: "out of bounds memory access (also what a guest whose in-memory stack overflowed sees)"
                    .to_owned(),
                source: error.into(),
            },
            Some(trap) => CallError::Trap { function, message: trap.to_string(), source: error.into() },
            None => CallError::Trap { function, message: format!("{error:#}"), source: error.into() },
        }
    }

    /// Sends what the guest printed to the log, tagged with module and function.
    /// Logs what the call wrote to stdout and stderr, with its namespace (`-` when the
    /// sandbox is made ahead of any call), module and function.
    fn log_output(&self, module: &Module, function: &str, namespace: &str) {
        let state = self.store.data();
        for (stream, capture) in [("stdout", &state.stdout), ("stderr", &state.stderr)] {
            let (text, dropped) = capture.take();
            if !text.is_empty() || dropped > 0 {
                tracing::info!(
                    target: "easyrpc::guest",
                    namespace = %namespace,
                    module = %module.name(),
                    function,
                    stream,
                    dropped_bytes = dropped,
                    "{}",
                    crate::telemetry::LogText(text.trim_end())
                );
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // SAFETY: the store is taken exactly once, here, and never used again.
        let store = unsafe { ManuallyDrop::take(&mut self.store) };
        store.data().runtime.retired.release(self.retired as usize);
        if store.data().limiter.peak > BIG_MEMORY {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                // Freeing it is the caller's work: done in the long lane, like a long call.
                let lane = store.data().runtime.long_lane.clone();
                let handle = runtime.clone();
                runtime.spawn_blocking(move || {
                    let _turn = handle.block_on(lane.acquire_owned());
                    // At the lowest CPU priority: on a busy host the kernel's work of taking
                    // the memory back then waits for the workers serving calls, not they for it.
                    let _background = BackgroundPriority::enter();
                    drop(store);
                });
                return;
            }
        }
        drop(store);
    }
}

fn generators_share_used_up(budget: &MemoryBudget) -> CallError {
    CallError::Busy {
        reason: format!(
            "open generators hold their share of the host's memory for guests ({} MiB); close some or try again later",
            (budget.limit() / super::GENERATOR_SHARE_OF_BUDGET) >> 20
        ),
    }
}

/// The calling thread at the lowest CPU priority (nice 19) until dropped, then back at its
/// own. Where the priority cannot be changed, nothing changes.
struct BackgroundPriority {
    before: Option<i32>,
}

impl BackgroundPriority {
    fn enter() -> Self {
        // SAFETY: gettid, getpriority and setpriority take and return plain integers.
        let before = unsafe {
            let thread = libc::gettid() as libc::id_t;
            let before = libc::getpriority(libc::PRIO_PROCESS, thread);
            (libc::setpriority(libc::PRIO_PROCESS, thread, 19) == 0).then_some(before)
        };
        Self { before }
    }
}

impl Drop for BackgroundPriority {
    fn drop(&mut self) {
        if let Some(before) = self.before {
            // SAFETY: as in `enter`. Raising a priority back needs no privilege for a thread
            // that lowered it (RLIMIT_NICE permitting); if refused, the blocking thread simply
            // stays in the background.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, before) };
        }
    }
}

/// Locks `m`, also after a panic elsewhere poisoned it (the data stays usable).
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The message of a Rust guest's panic, from what its panic hook wrote to stderr:
/// `thread '<unnamed>' panicked at src/lib.rs:3:5:\n<message>\nnote: ...`.
fn panic_message(stderr: &str) -> Option<String> {
    let at = stderr.find("panicked at ")?;
    let (_, rest) = stderr[at..].split_once('\n')?;
    let lines: Vec<&str> = rest.lines().take_while(|l| !l.starts_with("note: ")).collect();
    Some(lines.join("\n").trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_panic_messages() {
        let stderr =
            "\nthread '<unnamed>' panicked at src/lib.rs:77:9:\nboom\nsecond line\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(panic_message(stderr).as_deref(), Some("boom\nsecond line"));
        assert_eq!(panic_message("memory allocation of 5 bytes failed"), None);
    }

    #[test]
    fn capture_is_bounded_and_counts_the_rest() {
        let c = OutputCapture::new(4);
        c.append(b"abc");
        c.append(b"defg");
        assert_eq!(c.take(), ("abcd".to_owned(), 3));
        assert_eq!(c.take(), (String::new(), 0));
    }
}
