//! The WASM runtime: turns `.wasm` component files into described, callable, sandboxed
//! functions.
//!
//! Owns the one shared wasmtime [`Engine`] (pooling allocator, epoch interruption, async calls so
//! sleeping or busy guests yield to tokio), the epoch ticker thread, the linker (WASI with
//! nothing granted, EasyRpc's own host functions and the capabilities namespaces grant), loading and caching of
//! components, the per-call limits, and each module's few sandboxes instantiated ahead of
//! calls (never used before: a call gets an instance no call used before, unless its namespace
//! opted into reusing instances, see `reuse`; under load, in the store of a used one, see
//! `Sandbox::renew`). It must not know about namespaces, the wire protocol or sessions: the
//! registry decides which module serves a name and hands in a namespace's [`WarmInstances`]
//! and [`GuestCapabilities`] (backends behind traits); the runtime only loads and runs.
//!
//! Submodules: `describe` (component types -> descriptors), `witdoc` (embedded WIT docs),
//! `convert` (values), `sandbox` (one instance and its calls), `budget` (guest memory
//! host-wide), `reuse` (instances kept between
//! one namespace's calls), `imports` (what guests import from the host: its functions and the
//! capabilities a namespace grants), `cache` (compiled
//! components on disk), `error` (typed errors).

mod budget;
mod cache;
pub mod convert;
mod describe;
mod error;
pub mod imports;
mod reuse;
mod sandbox;
pub mod witdoc;

pub use budget::{MemoryBudget, DEFAULT_GUEST_MEMORY, GENERATOR_SHARE_OF_BUDGET};
pub use cache::{content_hash, CacheOutcome};
pub use error::{CallError, LoadError, ValueError};
pub use imports::{CallEnv, CallerChain, Grant, GuestCapabilities, TraceId};
pub use reuse::{InstanceReuse, WarmInstances, DEFAULT_MAX_CALLS_PER_INSTANCE, MAX_WARM_MEMORY, WARM_PER_NAMESPACE};
pub use sandbox::Sandbox;

use crate::signature::{bind_arguments, FunctionDescriptor};
use crate::value::Value;
use cache::ComponentCache;
use sandbox::CallState;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, ComponentExportIndex, InstancePre, Linker, Val};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How long one call may run (wall clock, including time asleep in WASI) before it is stopped.
pub const DEFAULT_CALL_DEADLINE: Duration = Duration::from_secs(10);
/// Linear memory one call's instance may grow to.
pub const DEFAULT_MEMORY_LIMIT: usize = 64 << 20;
/// Ceiling for any configured memory limit: the size of one pooling-allocator memory slot.
pub const MAX_MEMORY_LIMIT: usize = 1 << 30;
/// Bytes of stdout and of stderr kept per call for the log; the rest is counted and dropped.
pub const DEFAULT_OUTPUT_LIMIT: usize = 64 << 10;
/// Instances alive at once across the host (pooling allocator slots); beyond it calls are busy.
pub const DEFAULT_MAX_INSTANCES: u32 = 1000;
/// Bytes of each linear memory (and table) that are reset in place when an instance ends
/// instead of being given back to the kernel: with the kernel's PAGEMAP_SCAN, the first this
/// many bytes of pages the instance wrote; without it, the first this many bytes of the memory.
/// The next instance in the slot then starts without page faults. A guest built with a 64 KiB
/// stack (as modules/ are, see .cargo/config.toml) keeps its stack, data and first heap pages
/// within this, so a fresh call skips the page faults that are a large share of its cost.
pub const KEEP_RESIDENT: usize = 128 << 10;
/// Slots whose memory is decommitted together, one batch of syscalls instead of one per call.
/// With PAGEMAP_SCAN a used slot usually has nothing left to decommit, yet it still waits in
/// the batch before it can be reused; returning slots at once (a batch of 1 or 8) makes no
/// difference, in a tight loop or under load.
pub const DECOMMIT_BATCH: usize = 64;
/// Epoch tick: how often a running guest checks its deadline and yields to other tasks.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);
/// Instantiated, never-called sandboxes a module keeps ready once it has been called. Each call
/// still gets an instance nobody used before; it only skips the instantiation, which is made
/// (with the used sandbox's teardown) after the call, off its latency. Also the most refills
/// (teardown and instantiation) pending per module: 4 rather than 2 gives one connection with
/// many calls in flight more calls/s, and changes nothing for several connections or for
/// sequential latency.
pub const READY_SANDBOXES: usize = 4;
/// Share of the instance pool that ready sandboxes may hold, host-wide (1/50: 20 of the default
/// 1000, each a component instance of several core instances), so that they never crowd out calls.
const READY_SHARE_OF_POOL: usize = 50;
/// Instances one store may hold when refills fall behind: the used ones are retired (left in
/// the store, unreachable) and the next is made in the same store, until the store is dropped
/// with all of them (see `Sandbox::renew`). A refill that makes the next ready instance in the
/// used store gives one connection with many calls in flight more calls/s; a used store kept for
/// a call that makes its own instance (under several connections almost no call finds a ready
/// sandbox) gives several connections more calls/s.
pub const INSTANCES_PER_STORE: u32 = 4;
/// Share of the instance pool that retired instances may hold, host-wide (1/50, as ready ones).
const RETIRED_SHARE_OF_POOL: usize = 50;

/// Limits applied to one call (later set per namespace).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallLimits {
    pub deadline: Duration,
    pub memory: usize,
    pub output: usize,
}

impl CallLimits {
    /// Whether an instance made for `other` serves a call with these limits: memory and
    /// output are fixed when the store is made; the deadline is each call's own (a call
    /// relayed from another host or nested in another call has what its caller has left).
    pub fn same_instance(&self, other: &CallLimits) -> bool {
        self.memory == other.memory && self.output == other.output
    }
}

impl Default for CallLimits {
    fn default() -> Self {
        Self { deadline: DEFAULT_CALL_DEADLINE, memory: DEFAULT_MEMORY_LIMIT, output: DEFAULT_OUTPUT_LIMIT }
    }
}

#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Directory for compiled components; none disables the cache.
    pub cache_dir: Option<PathBuf>,
    pub max_instances: u32,
    pub max_memory: usize,
    /// Guest linear memory across all instances (see [`MemoryBudget`]).
    pub guest_memory: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            max_instances: DEFAULT_MAX_INSTANCES,
            max_memory: MAX_MEMORY_LIMIT,
            guest_memory: DEFAULT_GUEST_MEMORY,
        }
    }
}

/// The shared engine and everything modules are loaded with. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    /// Slots for long-running calls (see `sandbox::LONG_CALL`): one core is always left for
    /// short calls and the network.
    long_lane: Arc<tokio::sync::Semaphore>,
    linker: Linker<CallState>,
    cache: Option<ComponentCache>,
    max_memory: usize,
    /// Every store's memory limiter charges its growth here.
    memory_budget: Arc<MemoryBudget>,
    ticker_stop: Arc<AtomicBool>,
    /// Ready sandboxes across all modules.
    ready: PoolShare,
    /// Instances kept between calls (namespaces that reuse them) across all modules.
    warm: PoolShare,
    /// Used instances left in renewed stores across all modules.
    retired: PoolShare,
}

/// Instances held for later (ready, kept warm, retired) across all modules, against their share
/// of the instance pool, so that they never crowd out calls.
struct PoolShare {
    held: std::sync::atomic::AtomicUsize,
    cap: usize,
}

impl PoolShare {
    /// A share of 1/`share_of_pool` of a pool of `max_instances`.
    fn new(max_instances: u32, share_of_pool: usize) -> Self {
        Self { held: std::sync::atomic::AtomicUsize::new(0), cap: max_instances as usize / share_of_pool }
    }

    /// Room for one more; false at the ceiling.
    fn claim(&self) -> bool {
        if self.held.fetch_add(1, Ordering::AcqRel) >= self.cap {
            self.held.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Gives back the room of `n`.
    fn release(&self, n: usize) {
        if n > 0 {
            self.held.fetch_sub(n, Ordering::AcqRel);
        }
    }

    fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Self> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(config.max_instances)
            .total_core_instances(config.max_instances)
            .total_memories(config.max_instances)
            .total_tables(config.max_instances)
            .total_stacks(config.max_instances)
            .max_memory_size(config.max_memory)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT)
            .decommit_batch_size(DECOMMIT_BATCH)
            // PAGEMAP_SCAN: reset only the pages a call wrote, instead of zeroing all of
            // KEEP_RESIDENT per instance. On a fast CPU it makes no difference, but where the
            // CPU is slow memset dominates the teardown, and skipping it makes fresh calls
            // markedly faster (tests/benches/compare-builds.sh compares the two). It leaves more
            // memory resident after many abandoned generators, still within the bound
            // tests/integration/generator_memory.rs checks. Without the ioctl (older kernels)
            // wasmtime zeroes KEEP_RESIDENT.
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut wasm = Config::new();
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .epoch_interruption(true)
            // No wasm backtrace is captured for a trap: the host reports the trap's kind and
            // message only, and walking a guest's deep stack (a recursion that overflows it)
            // holds a worker for milliseconds per trap, which other tenants' calls wait for.
            .wasm_backtrace_max_frames(None)
            .wasm_component_model(true);
        let engine = Engine::new(&wasm)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        imports::add_to_linker(&mut linker)?;
        let cache = match &config.cache_dir {
            Some(dir) => Some(ComponentCache::new(&engine, dir)?),
            None => None,
        };
        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.clone(), ticker_stop.clone())?;
        Ok(Self {
            inner: Arc::new(RuntimeInner {
                engine,
                long_lane: Arc::new(tokio::sync::Semaphore::new(long_lane_slots())),
                linker,
                cache,
                max_memory: config.max_memory,
                memory_budget: Arc::new(MemoryBudget::new(config.guest_memory)),
                ticker_stop,
                ready: PoolShare::new(config.max_instances, READY_SHARE_OF_POOL),
                warm: PoolShare::new(config.max_instances, reuse::WARM_SHARE_OF_POOL),
                retired: PoolShare::new(config.max_instances, RETIRED_SHARE_OF_POOL),
            }),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Sandboxes instantiated ahead of calls across all modules (at most 1/50 of the pool).
    pub fn ready_sandboxes(&self) -> usize {
        self.inner.ready.held()
    }

    /// Instances kept between calls, across all namespaces that reuse them (at most 1/25 of the
    /// pool).
    pub fn warm_instances(&self) -> usize {
        self.inner.warm.held()
    }

    /// Used instances left in renewed stores until those are dropped (at most 1/50 of the pool).
    pub fn retired_instances(&self) -> usize {
        self.inner.retired.held()
    }

    /// The largest memory limit a call may be given.
    pub fn max_memory(&self) -> usize {
        self.inner.max_memory
    }

    /// The host-wide budget of guest memory and what is granted of it now.
    pub fn memory_budget(&self) -> &MemoryBudget {
        &self.inner.memory_budget
    }

    /// Loads a component file; the module is named after the file stem.
    pub fn load_file(&self, path: impl AsRef<Path>) -> Result<Arc<Module>, LoadError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| LoadError::Io { path: path.display().to_string(), source })?;
        let name = path.file_stem().map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into_owned());
        self.load_bytes(&name, &bytes)
    }

    /// Loads a component from memory: check it is a component, compile (or take it from the
    /// cache), link against WASI and describe its exports.
    pub fn load_bytes(&self, name: &str, bytes: &[u8]) -> Result<Arc<Module>, LoadError> {
        let name = name.to_owned();
        if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
            return Err(LoadError::NotWasm { name });
        }
        if bytes[6..8] != [1, 0] {
            return Err(LoadError::CoreModule { name });
        }
        let hash = content_hash(bytes);
        let engine = &self.inner.engine;
        let started = Instant::now();
        let compile = || compile_telling(engine, &name, bytes);
        let (component, cache_outcome) = match &self.inner.cache {
            Some(cache) => cache.load_or_compile(engine, &hash, compile),
            None => compile().map(|c| (c, CacheOutcome::Compiled)),
        }
        .map_err(|source| LoadError::Compile { name: name.clone(), source })?;
        let compile_time = started.elapsed();
        let instance_pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|source| LoadError::Link { name: name.clone(), source: source.into() })?;
        let docs = witdoc::embedded_wit(bytes).map(|text| witdoc::scan(&text)).unwrap_or_default();
        let described = describe::describe(engine, &component, &docs)
            .map_err(|message| LoadError::Describe { name: name.clone(), message })?;
        let mut functions = Vec::with_capacity(described.len());
        for (position, (descriptor, path)) in described.into_iter().enumerate() {
            let iface_index = match &path.interface {
                Some(iface) => Some(component.get_export_index(None, iface.as_str()).ok_or_else(|| {
                    LoadError::Describe { name: name.clone(), message: format!("export {iface} not found") }
                })?),
                None => None,
            };
            let index = component.get_export_index(iface_index.as_ref(), path.function.as_str()).ok_or_else(|| {
                LoadError::Describe { name: name.clone(), message: format!("export {} not found", path.function) }
            })?;
            let index = Export { index, slot: 2 * position };
            let next_index = match &path.next {
                Some(method) => {
                    Some(component.get_export_index(iface_index.as_ref(), method.as_str()).ok_or_else(|| {
                        LoadError::Describe { name: name.clone(), message: format!("export {method} not found") }
                    })?)
                }
                None => None,
            };
            let next_index = next_index.map(|index| Export { index, slot: 2 * position + 1 });
            let result_count = usize::from(descriptor.result.is_some());
            functions.push(ExportedFunction {
                name: descriptor.name.as_str().into(),
                descriptor,
                index,
                next_index,
                result_count,
                long_strikes: AtomicU8::new(0),
            });
        }
        let by_name = functions.iter().enumerate().map(|(i, f)| (f.descriptor.name.clone(), i)).collect();
        tracing::debug!(module = %name, %hash, ?cache_outcome, ?compile_time, functions = functions.len(), "loaded module");
        Ok(Arc::new(Module {
            name: name.into(),
            hash,
            functions,
            by_name,
            instance_pre,
            runtime: self.inner.clone(),
            cache_outcome,
            compile_time,
            ready: std::sync::Mutex::new(Vec::new()),
            spare_stores: std::sync::Mutex::new(Vec::new()),
            no_ready: AtomicBool::new(false),
            refilling: std::sync::atomic::AtomicUsize::new(0),
        }))
    }
}

/// A module at least this large says so before it compiles: compiling takes a while (about a
/// second per few MiB here), and the operator should see that the host is working.
const LARGE_MODULE: usize = 1 << 20;

/// Compiles a component, saying in the log how long it took (and, for a large one, that it
/// started): the compile is the slow part of loading a module the cache has not seen.
fn compile_telling(engine: &Engine, name: &str, bytes: &[u8]) -> anyhow::Result<Component> {
    let kib = bytes.len() / 1024;
    if bytes.len() >= LARGE_MODULE {
        tracing::info!(module = %name, kib, "compiling a large module; this takes a moment");
    }
    let started = Instant::now();
    let component = Component::new(engine, bytes)?;
    tracing::info!(module = %name, kib, took = ?started.elapsed(), "compiled");
    Ok(component)
}

/// Long calls may use all cores but one (at least one).
fn long_lane_slots() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the runtime is dropped. A plain
/// thread, not a tokio task: it must keep ticking while every worker runs guest code.
fn spawn_epoch_ticker(engine: Engine, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    std::thread::Builder::new().name("easyrpc-epoch".into()).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(EPOCH_TICK);
            engine.increment_epoch();
        }
    })?;
    Ok(())
}

/// One exported function: its descriptor and where to find it in an instance.
pub struct ExportedFunction {
    pub descriptor: FunctionDescriptor,
    /// The descriptor's name, shared with the log lines of calls that have capabilities.
    name: Arc<str>,
    index: Export,
    /// A generator's `next` method.
    next_index: Option<Export>,
    result_count: usize,
    /// How many of the function's last calls in a row were long calls (see
    /// `sandbox::LONG_CALL`); at `sandbox::LONG_STRIKES` its calls start in the long lane.
    long_strikes: AtomicU8,
}

/// One export a sandbox calls: where the component has it, and its slot among the module's
/// exports (an instance keeps the functions it looked up by slot, so a kept instance looks
/// each up once).
pub(crate) struct Export {
    pub(crate) index: ComponentExportIndex,
    pub(crate) slot: usize,
}

impl ExportedFunction {
    fn export_index(&self) -> &Export {
        &self.index
    }

    fn next_index(&self) -> Option<&Export> {
        self.next_index.as_ref()
    }

    /// Whether the function's recent calls were long: its next call starts in the long lane.
    fn runs_long(&self) -> bool {
        self.long_strikes.load(Ordering::Relaxed) >= sandbox::LONG_STRIKES
    }

    /// Counts a call that was long, or clears the count after one that was not.
    fn note_call(&self, long: bool) {
        let strikes = if long {
            self.long_strikes.load(Ordering::Relaxed).saturating_add(1).min(sandbox::LONG_STRIKES)
        } else {
            0
        };
        self.long_strikes.store(strikes, Ordering::Relaxed);
    }
}

/// A loaded component: described and ready to instantiate.
pub struct Module {
    name: Arc<str>,
    hash: String,
    functions: Vec<ExportedFunction>,
    by_name: HashMap<String, usize>,
    instance_pre: InstancePre<CallState>,
    runtime: Arc<RuntimeInner>,
    cache_outcome: CacheOutcome,
    compile_time: Duration,
    /// Sandboxes instantiated ahead of calls (see [`READY_SANDBOXES`]).
    ready: std::sync::Mutex<Vec<Sandbox>>,
    /// Used sandboxes renewed for an instance that the next call without a ready sandbox makes
    /// itself: kept when refills are too far behind to take them (see
    /// [`replace_used`](Module::replace_used)), at most [`READY_SANDBOXES`].
    spare_stores: std::sync::Mutex<Vec<Sandbox>>,
    /// Set when instantiating ahead failed: the module's calls then instantiate as they go
    /// (and report why), rather than paying for a second failing instantiation each.
    no_ready: AtomicBool,
    /// Tasks pending that tear a used sandbox down and make a ready one.
    refilling: std::sync::atomic::AtomicUsize,
}

/// Takes a sandbox made for `limits` out of `list` (a module's ready sandboxes or spare stores).
fn take_with_limits(list: &std::sync::Mutex<Vec<Sandbox>>, limits: CallLimits) -> Option<Sandbox> {
    let mut list = sandbox::lock(list);
    let i = list.iter().position(|s| s.limits().same_instance(&limits))?;
    let mut sandbox = list.swap_remove(i);
    sandbox.set_deadline(limits.deadline);
    Some(sandbox)
}

impl Drop for Module {
    fn drop(&mut self) {
        let ready = self.ready.get_mut().map_or(0, |r| r.len());
        self.runtime.ready.release(ready);
    }
}

/// One of a module's pending refills, counted until dropped.
struct RefillSlot {
    module: Arc<Module>,
    /// Refills that were pending when this one was claimed.
    pending_before: usize,
}

impl RefillSlot {
    fn claim(module: &Arc<Module>) -> Self {
        let pending_before = module.refilling.fetch_add(1, Ordering::AcqRel);
        Self { module: module.clone(), pending_before }
    }
}

impl Drop for RefillSlot {
    fn drop(&mut self) {
        self.module.refilling.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("name", &self.name)
            .field("hash", &self.hash)
            .field("functions", &self.by_name.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Module {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Hex SHA-256 of the module's bytes.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Whether loading compiled the module or took it from the cache, and how long that took.
    pub fn load_info(&self) -> (CacheOutcome, Duration) {
        (self.cache_outcome, self.compile_time)
    }

    /// The interfaces and functions the component imports from the host (e.g.
    /// `wasi:cli/stdout@0.2.6`, `easyrpc:guest/host@0.1.0`); imported types are left out. A
    /// component without WASI imports instantiates faster: fewer core instances, no WASI context.
    pub fn imports(&self) -> Vec<String> {
        use wasmtime::component::types::ComponentItem;
        let engine = &self.runtime.engine;
        self.instance_pre
            .component()
            .component_type()
            .imports(engine)
            .filter(|(_, import)| {
                matches!(import.ty, ComponentItem::ComponentInstance(_) | ComponentItem::ComponentFunc(_))
            })
            .map(|(name, _)| name.to_owned())
            .collect()
    }

    pub fn descriptors(&self) -> impl Iterator<Item = &FunctionDescriptor> {
        self.functions.iter().map(|f| &f.descriptor)
    }

    pub fn function(&self, name: &str) -> Option<&ExportedFunction> {
        self.by_name.get(name).map(|&i| &self.functions[i])
    }

    fn engine(&self) -> &Engine {
        &self.runtime.engine
    }

    fn instance_pre(&self) -> &InstancePre<CallState> {
        &self.instance_pre
    }

    /// The index of function `name`, or `UnknownFunction`.
    fn index_of(&self, name: &str) -> Result<usize, CallError> {
        self.by_name
            .get(name)
            .copied()
            .ok_or_else(|| CallError::UnknownFunction { module: self.name.to_string(), name: name.to_owned() })
    }

    /// Binds `args`/`kwargs` to `name`'s parameters and converts them, without calling: the
    /// check a caller's arguments must pass.
    pub fn prepare(&self, name: &str, args: Vec<Value>, kwargs: Vec<(String, Value)>) -> Result<Vec<Val>, CallError> {
        self.prepare_at(self.index_of(name)?, args, kwargs)
    }

    fn prepare_at(&self, index: usize, args: Vec<Value>, kwargs: Vec<(String, Value)>) -> Result<Vec<Val>, CallError> {
        let d = &self.functions[index].descriptor;
        let bound = bind_arguments(&d.params, args, kwargs)
            .map_err(|source| CallError::BadArguments { function: d.name.clone(), source })?;
        bound
            .iter()
            .zip(&d.params)
            .map(|(v, p)| convert::to_val(v, &p.ty, &p.name))
            .collect::<Result<_, _>>()
            .map_err(|source| CallError::BadValue { function: d.name.clone(), source })
    }

    /// Opens generator `name` in a fresh sandboxed instance that lives as long as the returned
    /// stream; each `next` runs under `limits` (its own deadline).
    pub async fn open_generator(
        self: &Arc<Self>,
        name: &str,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
        limits: CallLimits,
        env: &CallEnv,
        namespace: &Arc<str>,
    ) -> Result<GeneratorStream, CallError> {
        let index = self.index_of(name)?;
        let function = &self.functions[index];
        if function.next_index.is_none() {
            return Err(CallError::UnknownFunction {
                module: self.name.to_string(),
                name: format!("{name} (not a generator)"),
            });
        }
        let params = self.prepare_at(index, args, kwargs)?;
        let mut sandbox = self.ready_sandbox(limits);
        sandbox.hold_for_generator()?;
        let stream = sandbox.open(self, function, &params, env, namespace).await?;
        Ok(GeneratorStream { module: self.clone(), index, sandbox, stream: Some(stream), namespace: namespace.clone() })
    }

    /// Calls `name` in a fresh sandboxed instance with `limits`.
    pub async fn call(
        self: &Arc<Self>,
        name: &str,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
        limits: CallLimits,
    ) -> Result<Value, CallError> {
        self.call_in(None, name, args, kwargs, limits).await
    }

    /// Calls `name` with `limits` in one of `warm`'s idle instances (kept from earlier calls of
    /// the same namespace), or without one (or none idle) in a fresh instance. Afterwards the
    /// instance goes back to `warm` if it may serve another call, else it is torn down.
    pub async fn call_in(
        self: &Arc<Self>,
        warm: Option<&WarmInstances>,
        name: &str,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
        limits: CallLimits,
    ) -> Result<Value, CallError> {
        self.call_at(warm, self.index_of(name)?, args, kwargs, limits, &CallEnv::default(), "-").await
    }

    /// [`call_in`](Self::call_in) for the function at `index`, its position in
    /// [`descriptors`](Self::descriptors), with what the call may reach (`env`) and the
    /// namespace it serves (for the log lines of its output): the registry's functions call
    /// this way, so that their calls need no lookup by name.
    // The registry's one call site passes each part of the call as it has it.
    #[allow(clippy::too_many_arguments)]
    pub async fn call_at(
        self: &Arc<Self>,
        warm: Option<&WarmInstances>,
        index: usize,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
        limits: CallLimits,
        env: &CallEnv,
        namespace: &str,
    ) -> Result<Value, CallError> {
        if index >= self.functions.len() {
            return Err(CallError::UnknownFunction {
                module: self.name.to_string(),
                name: format!("(function {index})"),
            });
        }
        let params = self.prepare_at(index, args, kwargs)?;
        let limits = self.capped(limits);
        let kept = warm.and_then(|w| w.take(self, limits));
        let mut sandbox = kept.unwrap_or_else(|| self.ready_sandbox(limits));
        let result = sandbox.call(self, &self.functions[index], &params, env, namespace).await;
        let used = match warm {
            Some(warm) => warm.keep(self, sandbox),
            None => Some(sandbox),
        };
        if let Some(used) = used {
            self.replace_used(used);
        }
        result
    }

    /// A sandbox instantiated ahead with these limits, or else a spare store or a new one
    /// (instantiated by its first call).
    fn ready_sandbox(self: &Arc<Self>, limits: CallLimits) -> Sandbox {
        let limits = self.capped(limits);
        if let Some(sandbox) = take_with_limits(&self.ready, limits) {
            self.runtime.ready.release(1);
            return sandbox;
        }
        take_with_limits(&self.spare_stores, limits).unwrap_or_else(|| Sandbox::new(self, limits))
    }

    /// After a call: tears the used sandbox down and instantiates a ready one in its place, in
    /// a task of its own, so that both happen after the caller has its answer. At most
    /// [`READY_SANDBOXES`] such tasks are pending per module (each holds a pool slot); beyond
    /// that, and when the module has enough ready, the used sandbox's store is kept as a spare
    /// for a call that makes its own instance, or torn down here. When refills are already
    /// pending (calls come faster than instances are made), the next instance is made in the
    /// used one's store ([`INSTANCES_PER_STORE`]). Not otherwise: renewing after every call
    /// makes sequential calls slower: its retired instances keep more memory slots in turn, so
    /// the next instance's memory is colder.
    fn replace_used(self: &Arc<Self>, used: Sandbox) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        if used.is_poisoned() || self.no_ready.load(Ordering::Relaxed) {
            return;
        }
        let ready = self.ready.lock().unwrap_or_else(|e| e.into_inner()).len();
        let slot = RefillSlot::claim(self);
        if ready + slot.pending_before >= READY_SANDBOXES {
            // Enough ready, or refills this far behind: calls then find no ready sandbox and
            // make their own instances. One of them gets the used store, renewed, instead of a
            // new store.
            drop(slot);
            let Some(renewed) = used.renew() else { return };
            let rejected = {
                let mut spare = self.spare_stores.lock().unwrap_or_else(|e| e.into_inner());
                if spare.len() < READY_SANDBOXES {
                    spare.push(renewed);
                    None
                } else {
                    Some(renewed)
                }
            };
            drop(rejected); // torn down outside the lock
            return;
        }
        let falling_behind = slot.pending_before > 0;
        runtime.spawn(async move {
            let limits = used.limits();
            let renewed = if falling_behind {
                used.renew()
            } else {
                drop(used);
                None
            };
            slot.module.make_ready(limits, renewed).await;
            drop(slot);
        });
    }

    /// Instantiates a ready sandbox, in `renewed`'s store if given, and puts it with the module's
    /// ready ones.
    async fn make_ready(self: &Arc<Self>, limits: CallLimits, renewed: Option<Sandbox>) {
        let share = &self.runtime.ready;
        if !share.claim() {
            return;
        }
        // The used sandbox's deadline was its call's, perhaps what a caller had left: making an
        // instance ahead gets the default time (each call sets its own deadline anyway).
        let limits = CallLimits { deadline: limits.deadline.max(DEFAULT_CALL_DEADLINE), ..limits };
        let mut sandbox = renewed.unwrap_or_else(|| Sandbox::new(self, limits));
        sandbox.set_deadline(limits.deadline);
        match sandbox.instantiate(self).await {
            Ok(()) => {}
            // The pool is full right now, or the machine too busy to instantiate in time: try
            // again after a later call.
            Err(CallError::Busy { .. } | CallError::Timeout { .. }) => {
                share.release(1);
                return;
            }
            Err(error) => {
                tracing::debug!(module = %self.name, %error, "instantiating ahead failed; calls instantiate as they go");
                self.no_ready.store(true, Ordering::Relaxed);
                share.release(1);
                return;
            }
        }
        let mut ready = self.ready.lock().unwrap_or_else(|e| e.into_inner());
        if ready.len() < READY_SANDBOXES {
            ready.push(sandbox);
        } else {
            share.release(1);
        }
    }

    fn capped(&self, mut limits: CallLimits) -> CallLimits {
        limits.memory = limits.memory.min(self.runtime.max_memory);
        limits
    }
}

/// An open generator: its sandbox (instance) and stream resource. Dropping it frees both.
pub struct GeneratorStream {
    module: Arc<Module>,
    index: usize,
    sandbox: Sandbox,
    /// None once the stream ended or failed.
    stream: Option<wasmtime::component::ResourceAny>,
    /// The namespace it was opened in, for the log lines of its steps.
    namespace: Arc<str>,
}

impl GeneratorStream {
    /// The next item, none at the end. After an error or the end, always none.
    pub async fn next(&mut self) -> Result<Option<Value>, CallError> {
        let Some(stream) = self.stream else { return Ok(None) };
        let function = &self.module.functions[self.index];
        match self.sandbox.next(&self.module, function, stream, &self.namespace).await {
            Ok(Some(item)) => Ok(Some(item)),
            other => {
                self.stream = None;
                other
            }
        }
    }
}
