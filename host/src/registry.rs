//! Namespaces and namespace groups of callable functions, swapped atomically as a whole.
//!
//! Owns the [`Callable`] abstraction (something a namespace can list and call, from an
//! [`Origin`]: a function of a local module, or one another host offers over a cluster link),
//! [`Namespace`] (ordered, name-indexed callables plus its tenant [`NamespacePolicy`]: own
//! secret, limits, admission), namespace groups (a name for an ordered list of namespaces), and
//! the [`Registry`], an immutable [`RegistrySnapshot`] behind one pointer swap: a session takes
//! a snapshot per request, so a deploy never changes the world under a running call. The
//! registry composes what it serves from the modules' snapshot (published by `deploy`) and the
//! functions of the links that are up. Policies are shared between snapshots (also those made
//! for namespaces without one configured), so a swap keeps counting a tenant's running calls,
//! and so are the instances namespaces keep of modules a swap did not replace. It does not
//! parse frames or run wasm itself.

use crate::runtime::{
    CallEnv, CallError, CallLimits, CallerChain, GeneratorStream, Grant, GuestCapabilities, InstanceReuse, Module,
    TraceId, WarmInstances,
};
use crate::signature::FunctionDescriptor;
use crate::value::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

/// The namespace that modules at the top of a `--modules` directory go to.
pub const DEFAULT_NAMESPACE: &str = "DEFAULT";
/// Calls of one namespace running at once; more wait in its queue.
pub const DEFAULT_MAX_CONCURRENT_CALLS: usize = 64;
/// Calls of one namespace waiting for a slot; beyond it calls fail at once with `Busy`.
pub const DEFAULT_MAX_QUEUED_CALLS: usize = 256;
/// Generators of one namespace open at once (across its connections).
pub const DEFAULT_NAMESPACE_MAX_OPEN_GENERATORS: usize = 200;

/// Where a function of a namespace comes from: what removing that source removes, what a
/// listing for a linked host leaves out, and what logs and errors name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A module loaded into this host, by its name.
    Module(String),
    /// A function another host offers over a cluster link.
    Link(LinkId),
}

/// One cluster link of this host, as long as it is up: a parent it dialed or a child that
/// connected. A link that reconnects is a new link.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId {
    /// Unique among the host's links for the life of the process.
    pub id: u64,
    /// The other host, for logs and errors: the parent's URL or the child's address and id.
    pub peer: Arc<str>,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Module(name) => write!(f, "module {name}"),
            Origin::Link(link) => write!(f, "link {} to {}", link.id, link.peer),
        }
    }
}

/// What a call carries from host to host over cluster links: how many hosts passed it on, and
/// when its first caller stops waiting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Relay {
    pub hops: u8,
    pub deadline: Option<std::time::Instant>,
    /// How many calls this one is nested in on this host (a guest calling a function); 0 for
    /// a caller's own call.
    pub depth: u8,
    /// The namespaces of the calls it is nested in (see [`CallerChain`]).
    pub callers: CallerChain,
    /// The request id of the call's first caller (see [`TraceId`]).
    pub trace: TraceId,
    /// The exported span on the host that passed the call on, if that host exports spans.
    pub parent: Option<crate::telemetry::RemoteParent>,
}

/// Something a namespace lists and calls.
#[async_trait::async_trait]
pub trait Callable: Send + Sync {
    fn descriptor(&self) -> &FunctionDescriptor;
    fn origin(&self) -> &Origin;
    async fn call(&self, args: Vec<Value>, kwargs: Vec<(String, Value)>, relay: Relay) -> Result<Value, CallError>;
    /// Opens a generator (descriptor kind `generator`): a stream of values pulled one by one.
    async fn open(
        &self,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
        relay: Relay,
    ) -> Result<Box<dyn ValueStream>, CallError>;
    /// The generator a call's answer started although the descriptor did not say so (a
    /// Python host lists its generators as plain functions), if this function can pull it.
    fn adopt_generator(&self, _started: &Value) -> Option<Box<dyn ValueStream>> {
        None
    }
}

/// The items of an open generator, local or (later) behind a link.
#[async_trait::async_trait]
pub trait ValueStream: Send {
    /// The next item; none at the end. After an error the stream is over.
    async fn next(&mut self) -> Result<Option<Value>, CallError>;
}

#[async_trait::async_trait]
impl ValueStream for GeneratorStream {
    async fn next(&mut self) -> Result<Option<Value>, CallError> {
        GeneratorStream::next(self).await
    }
}

/// A function of a module loaded into this host: each call runs in a sandbox of its own, fresh
/// or (when its namespace reuses instances) kept from an earlier call of that namespace.
pub struct LocalFunction {
    module: Arc<Module>,
    /// The function's position in `module` (see [`Module::call_at`]).
    position: usize,
    descriptor: FunctionDescriptor,
    origin: Origin,
    limits: CallLimits,
    /// The namespace's idle instances of this module, shared by the module's functions there.
    warm: Option<Arc<WarmInstances>>,
    /// What the namespace grants its guests.
    capabilities: Option<Arc<GuestCapabilities>>,
    /// The namespace it serves in (for the log lines of its calls' output).
    namespace: Arc<str>,
}

impl LocalFunction {
    /// Every function of `module` for one namespace, called with `limits`, in fresh instances
    /// or (with `warm`) in the namespace's kept ones.
    pub fn all(
        module: &Arc<Module>,
        namespace: &str,
        limits: CallLimits,
        warm: Option<Arc<WarmInstances>>,
        capabilities: Option<Arc<GuestCapabilities>>,
    ) -> Vec<Arc<dyn Callable>> {
        let namespace: Arc<str> = namespace.into();
        module
            .descriptors()
            .enumerate()
            .map(|(position, d)| {
                let f = LocalFunction {
                    module: module.clone(),
                    position,
                    descriptor: d.clone(),
                    origin: Origin::Module(module.name().to_owned()),
                    limits,
                    warm: warm.clone(),
                    capabilities: capabilities.clone(),
                    namespace: namespace.clone(),
                };
                Arc::new(f) as Arc<dyn Callable>
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl Callable for LocalFunction {
    fn descriptor(&self) -> &FunctionDescriptor {
        &self.descriptor
    }
    fn origin(&self) -> &Origin {
        &self.origin
    }
    async fn call(&self, args: Vec<Value>, kwargs: Vec<(String, Value)>, relay: Relay) -> Result<Value, CallError> {
        let limits = within(self.limits, relay);
        let env = self.env(relay);
        self.module.call_at(self.warm.as_deref(), self.position, args, kwargs, limits, &env, &self.namespace).await
    }
    async fn open(
        &self,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
        relay: Relay,
    ) -> Result<Box<dyn ValueStream>, CallError> {
        let limits = within(self.limits, relay);
        let env = self.env(relay);
        let stream =
            self.module.open_generator(&self.descriptor.name, args, kwargs, limits, &env, &self.namespace).await?;
        Ok(Box::new(stream))
    }
}

impl LocalFunction {
    /// What one call may reach: the namespace's capabilities, and the call's place in a chain.
    fn env(&self, relay: Relay) -> CallEnv {
        CallEnv {
            capabilities: self.capabilities.clone(),
            depth: relay.depth,
            hops: relay.hops,
            callers: relay.callers,
            trace: relay.trace,
        }
    }
}

/// `limits` with a deadline no later than the one the call carries from another host.
fn within(mut limits: CallLimits, relay: Relay) -> CallLimits {
    if let Some(deadline) = relay.deadline {
        limits.deadline = limits.deadline.min(deadline.saturating_duration_since(std::time::Instant::now()));
    }
    limits
}

/// A tenant's settings for one namespace (or the secret of a group).
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyConfig {
    /// The namespace's own secret; connections naming it may sign with it (or the admin secret).
    pub secret: Option<String>,
    pub limits: CallLimits,
    /// Whether calls may run in instances earlier calls of this namespace used.
    pub instances: InstanceReuse,
    pub max_concurrent_calls: usize,
    pub max_queued_calls: usize,
    pub max_open_generators: usize,
    /// Largest frame a connection of this namespace may send (none: the server's limit).
    pub max_frame: Option<usize>,
    /// What its guests may reach beyond their instance (none: nothing).
    pub capabilities: Option<Arc<GuestCapabilities>>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            secret: None,
            limits: CallLimits::default(),
            instances: InstanceReuse::Fresh,
            max_concurrent_calls: DEFAULT_MAX_CONCURRENT_CALLS,
            max_queued_calls: DEFAULT_MAX_QUEUED_CALLS,
            max_open_generators: DEFAULT_NAMESPACE_MAX_OPEN_GENERATORS,
            max_frame: None,
            capabilities: None,
        }
    }
}

/// A namespace's policy with its live counters (shared by every snapshot).
pub struct NamespacePolicy {
    pub config: PolicyConfig,
    running: Arc<Semaphore>,
    queued: AtomicUsize,
    generators: Arc<Semaphore>,
    /// Turns on the host's cores: a call of the namespace is polled only while it holds one.
    turns: Arc<Semaphore>,
}

impl NamespacePolicy {
    pub fn new(config: PolicyConfig) -> Arc<Self> {
        Arc::new(Self {
            running: Arc::new(Semaphore::new(config.max_concurrent_calls.max(1))),
            generators: Arc::new(Semaphore::new(config.max_open_generators)),
            queued: AtomicUsize::new(0),
            turns: Arc::new(Semaphore::new(turns_per_namespace())),
            config,
        })
    }

    /// `call`, polled only while it holds one of the namespace's turns (see [`InTurns`]).
    pub fn in_turns<F: Future>(&self, call: F) -> InTurns<F> {
        InTurns { call, turns: self.turns.clone(), waiting: None }
    }

    /// Waits for a call slot: at once if one is free, in the queue if it has room, else `Busy`.
    pub async fn admit(&self, namespace: &str) -> Result<OwnedSemaphorePermit, CallError> {
        if let Ok(permit) = self.running.clone().try_acquire_owned() {
            return Ok(permit);
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.config.max_queued_calls {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(CallError::Busy {
                reason: format!(
                    "namespace {namespace} has {} calls running and {} waiting, its limits",
                    self.config.max_concurrent_calls, self.config.max_queued_calls
                ),
            });
        }
        let permit = self.running.clone().acquire_owned().await;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        permit.map_err(|_| CallError::Busy { reason: format!("namespace {namespace} is closing") })
    }

    /// A call slot if one is free now, else `Busy` (for a nested call, which must not wait
    /// while its caller holds a slot of its own).
    pub fn try_admit(&self, namespace: &str) -> Result<OwnedSemaphorePermit, CallError> {
        self.running.clone().try_acquire_owned().map_err(|_| CallError::Busy {
            reason: format!(
                "namespace {namespace} has {} calls running, its limit; a nested call does not wait for a slot",
                self.config.max_concurrent_calls
            ),
        })
    }

    /// A slot for one open generator of this namespace, or `Busy`.
    pub fn admit_generator(&self, namespace: &str) -> Result<OwnedSemaphorePermit, CallError> {
        self.generators.clone().try_acquire_owned().map_err(|_| CallError::Busy {
            reason: format!("namespace {namespace} has {} open generators, its limit", self.config.max_open_generators),
        })
    }
}

/// How many of one namespace's calls may be polled at once: one per core, so that a tenant
/// alone can use the whole host.
fn turns_per_namespace() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

pin_project_lite::pin_project! {
    /// A call of a namespace that runs (is polled) only while it holds one of the namespace's
    /// turns, one per core, and gives it back after each poll. The calls of a tenant that
    /// keeps many in flight then wait for their turns in the namespace's own line, not in
    /// the runtime's run queues, where every other tenant's call would wait behind all of
    /// them: each tenant has at most a turn per core queued ahead of the others.
    pub struct InTurns<F> {
        #[pin]
        call: F,
        turns: Arc<Semaphore>,
        // Our place in the line, kept while we wait so that the line stays first come,
        // first served.
        waiting: Option<Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>>,
    }
}

impl<F: Future> Future for InTurns<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        // A free turn is taken at once unless we already wait in line.
        let free = if this.waiting.is_none() { this.turns.clone().try_acquire_owned().ok() } else { None };
        let turn = match free {
            Some(turn) => Some(turn),
            None => {
                let turns = this.turns;
                let waiting = this.waiting.get_or_insert_with(|| Box::pin(turns.clone().acquire_owned()));
                let Poll::Ready(turn) = waiting.as_mut().poll(cx) else { return Poll::Pending };
                *this.waiting = None;
                // A closed line (never, as the policy owns it) lets the call run unmetered.
                turn.ok()
            }
        };
        let progress = this.call.poll(cx);
        drop(turn);
        progress
    }
}

/// The functions callers of one namespace see, in listing order, and its tenant policy.
#[derive(Clone)]
pub struct Namespace {
    functions: Vec<Arc<dyn Callable>>,
    by_name: HashMap<String, usize>,
    pub policy: Arc<NamespacePolicy>,
}

impl Namespace {
    pub fn new(policy: Arc<NamespacePolicy>) -> Self {
        Self { functions: Vec::new(), by_name: HashMap::new(), policy }
    }

    /// Adds a function; a later function with the same name replaces the earlier one in place.
    pub fn insert(&mut self, callable: Arc<dyn Callable>) {
        let name = callable.descriptor().name.clone();
        match self.by_name.get(&name) {
            Some(&i) => self.functions[i] = callable,
            None => {
                self.by_name.insert(name, self.functions.len());
                self.functions.push(callable);
            }
        }
    }

    /// Adds a function unless the namespace already has one of that name: functions of this
    /// host's modules come first, and a linked host's do not shadow them.
    pub fn insert_if_absent(&mut self, callable: Arc<dyn Callable>) {
        if !self.by_name.contains_key(&callable.descriptor().name) {
            self.insert(callable);
        }
    }

    /// Removes every function that `keep` rejects.
    pub fn retain(&mut self, keep: impl Fn(&Arc<dyn Callable>) -> bool) {
        self.functions.retain(|f| keep(f));
        self.by_name = self.functions.iter().enumerate().map(|(i, f)| (f.descriptor().name.clone(), i)).collect();
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Callable>> {
        self.by_name.get(name).map(|&i| &self.functions[i])
    }

    pub fn functions(&self) -> impl Iterator<Item = &Arc<dyn Callable>> {
        self.functions.iter()
    }

    pub fn descriptors(&self) -> impl Iterator<Item = &FunctionDescriptor> {
        self.functions.iter().map(|f| f.descriptor())
    }

    pub fn names(&self) -> Vec<&str> {
        self.functions.iter().map(|f| f.descriptor().name.as_str()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.functions.is_empty()
    }
}

/// A namespace group: reached like a namespace, served by its members in declared order.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub members: Vec<String>,
    /// The group's own secret, if any (else only the admin secret opens it).
    pub secret: Option<String>,
}

/// Every namespace and group at one moment. Immutable once published.
#[derive(Clone, Default)]
pub struct RegistrySnapshot {
    namespaces: BTreeMap<String, Namespace>,
    groups: BTreeMap<String, Group>,
    /// Policies configured for namespaces (kept even while a namespace has no function).
    policies: BTreeMap<String, Arc<NamespacePolicy>>,
    /// The policy a namespace gets when none was configured for it.
    default_policy: PolicyConfig,
    /// Shared by the snapshots cloned from one base, so that a deploy's new snapshot goes on
    /// with the old one's live state.
    carried: Arc<CarriedOver>,
}

/// What the snapshots of one base hand out and a snapshot built after a deploy gets again, so
/// that one tenant's deploy resets nothing of another's: the policies made for namespaces that
/// had none configured (their counts of running calls and open generators go on), and the
/// sets of kept instances, one per namespace and module still there under the same policy
/// (with the state their calls left in them). Sets are held weakly: one lives as long as some
/// snapshot's functions use it.
#[derive(Default)]
struct CarriedOver {
    default_policies: std::sync::Mutex<HashMap<String, Arc<NamespacePolicy>>>,
    kept_sets: std::sync::Mutex<Vec<(String, std::sync::Weak<WarmInstances>)>>,
}

impl CarriedOver {
    /// The policy made for `namespace` from `default` before, or a new one.
    fn default_policy(&self, namespace: &str, default: &PolicyConfig) -> Arc<NamespacePolicy> {
        let mut made = self.default_policies.lock().unwrap_or_else(|e| e.into_inner());
        made.entry(namespace.to_owned()).or_insert_with(|| NamespacePolicy::new(default.clone())).clone()
    }

    /// `namespace`'s set for `module` under `reuse`: the one handed out before if it is still
    /// used, else a new one. None when `reuse` keeps no instances.
    fn kept_set(&self, namespace: &str, module: &Arc<Module>, reuse: InstanceReuse) -> Option<Arc<WarmInstances>> {
        if reuse == InstanceReuse::Fresh {
            return None;
        }
        let mut sets = self.kept_sets.lock().unwrap_or_else(|e| e.into_inner());
        sets.retain(|(_, set)| set.strong_count() > 0);
        let known = sets
            .iter()
            .filter(|(ns, _)| ns == namespace)
            .filter_map(|(_, set)| set.upgrade())
            .find(|set| set.serves(module, reuse));
        if known.is_some() {
            return known;
        }
        let set = WarmInstances::for_policy(module, reuse)?;
        sets.push((namespace.to_owned(), Arc::downgrade(&set)));
        Some(set)
    }
}

impl RegistrySnapshot {
    /// An empty snapshot whose unconfigured namespaces get `default_policy`.
    pub fn with_default_policy(default_policy: PolicyConfig) -> Self {
        Self { default_policy, ..Self::default() }
    }

    pub fn default_policy(&self) -> &PolicyConfig {
        &self.default_policy
    }

    pub fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.namespaces.get(name)
    }

    /// The namespace `name`, created (with its configured policy, or the default) if needed.
    pub fn namespace_mut(&mut self, name: &str) -> &mut Namespace {
        let (default, carried) = (&self.default_policy, &self.carried);
        let policy =
            self.policies.entry(name.to_owned()).or_insert_with(|| carried.default_policy(name, default)).clone();
        self.namespaces.entry(name.to_owned()).or_insert_with(|| Namespace::new(policy))
    }

    pub fn namespaces(&self) -> impl Iterator<Item = (&str, &Namespace)> {
        self.namespaces.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Sets a namespace's tenant policy (its secret and limits).
    pub fn set_policy(&mut self, name: &str, policy: Arc<NamespacePolicy>) {
        self.policies.insert(name.to_owned(), policy.clone());
        if let Some(ns) = self.namespaces.get_mut(name) {
            ns.policy = policy;
        }
    }

    pub fn policy(&self, name: &str) -> Option<&Arc<NamespacePolicy>> {
        self.policies.get(name)
    }

    /// Declares a group. Its name must not be a namespace's (checked by the config loader).
    pub fn add_group(&mut self, name: &str, group: Group) {
        self.groups.insert(name.to_owned(), group);
    }

    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.get(name)
    }

    /// The namespaces a connection to `name` reaches: a group's members in order, or the
    /// namespace itself.
    pub fn members<'a>(&'a self, name: &'a str) -> Vec<&'a str> {
        match self.groups.get(name) {
            Some(g) => g.members.iter().map(String::as_str).collect(),
            None => vec![name],
        }
    }

    /// The secret a connection to `name` may sign with besides the admin secret.
    pub fn secret_for(&self, name: &str) -> Option<&str> {
        match self.groups.get(name) {
            Some(g) => g.secret.as_deref(),
            None => self.policies.get(name).and_then(|p| p.config.secret.as_deref()),
        }
    }

    /// The largest frame a connection to `name` may send: the smallest limit of its members'
    /// tenants (none: only the server's limit applies).
    pub fn max_frame_for(&self, name: &str) -> Option<usize> {
        self.members(name).into_iter().filter_map(|m| self.policies.get(m).and_then(|p| p.config.max_frame)).min()
    }

    /// What a connection to `name` lists: every member's functions in member order; where
    /// members share a name, the first member's function (the one that serves calls).
    pub fn listing(&self, name: &str) -> Vec<&FunctionDescriptor> {
        let mut seen = HashSet::new();
        self.members(name)
            .into_iter()
            .filter_map(|m| self.namespaces.get(m))
            .flat_map(|ns| ns.descriptors())
            .filter(|d| seen.insert(d.name.as_str()))
            .collect()
    }

    /// What a connection to `name` lists for the host at the other end of `link`: the same,
    /// without the functions that host offered over that link, so that no host learns its own
    /// functions back from the hosts it told.
    pub fn listing_for_link(&self, name: &str, link: &LinkId) -> Vec<&FunctionDescriptor> {
        let mut seen = HashSet::new();
        self.members(name)
            .into_iter()
            .filter_map(|m| self.namespaces.get(m))
            .flat_map(|ns| ns.functions())
            .filter(|f| !matches!(f.origin(), Origin::Link(from) if from == link))
            .map(|f| f.descriptor())
            .filter(|d| seen.insert(d.name.as_str()))
            .collect()
    }

    /// The function a call on `name` goes to: the first member (declared order) that has it
    /// now. A member whose module was removed or failed to load does not, so the call falls
    /// back to the next. Every call resolves, so this builds no list of members.
    pub fn resolve<'a>(
        &'a self,
        name: &'a str,
        function: &str,
    ) -> Option<(&'a str, &'a Namespace, &'a Arc<dyn Callable>)> {
        let in_member = |m: &'a str| self.namespaces.get(m).and_then(|ns| ns.get(function).map(|f| (m, ns, f)));
        match self.groups.get(name) {
            Some(g) => g.members.iter().find_map(|m| in_member(m.as_str())),
            None => in_member(name),
        }
    }

    /// Adds every function of `module` to `namespace`, or to every member when it names a group;
    /// each namespace's calls get that namespace's limits and instance policy (a namespace that
    /// reuses instances keeps its own).
    pub fn add_module(&mut self, namespace: &str, module: &Arc<Module>) {
        let targets: Vec<String> = self.members(namespace).into_iter().map(str::to_owned).collect();
        for target in targets {
            let carried = self.carried.clone();
            let ns = self.namespace_mut(&target);
            let config = &ns.policy.config;
            let warm = carried.kept_set(&target, module, config.instances);
            for f in LocalFunction::all(module, &target, config.limits, warm, config.capabilities.clone()) {
                ns.insert(f);
            }
        }
    }

    /// Whether `module` may serve in `namespace` (every member, for a group): each capability
    /// it imports must be granted there. The error names the module, the namespace, the
    /// imports and the grant to add.
    pub fn check_grants(&self, namespace: &str, module: &Module) -> Result<(), String> {
        let imports = module.imports();
        for target in self.members(namespace) {
            let capabilities = self.policy(target).and_then(|p| p.config.capabilities.as_deref());
            let granted = |g: Grant| capabilities.is_some_and(|c| c.grants(g));
            let missing: Vec<(&str, Grant)> = imports
                .iter()
                .filter_map(|i| Grant::needed_by(i).map(|g| (i.as_str(), g)))
                .filter(|(_, g)| !granted(*g))
                .collect();
            if !missing.is_empty() {
                let mut grants: Vec<&str> = missing.iter().map(|(_, g)| g.name()).collect();
                grants.sort_unstable();
                grants.dedup();
                let imported: Vec<&str> = missing.iter().map(|(i, _)| *i).collect();
                return Err(format!(
                    "module {} imports {}, which namespace {target} does not grant; add {} to the grants of its [[namespace]] in the config",
                    module.name(),
                    imported.join(", "),
                    grants.iter().map(|g| format!("\"{g}\"")).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Adds `module` to `namespace` with explicit call limits (tests and tools).
    pub fn add_module_with_limits(&mut self, namespace: &str, module: &Arc<Module>, limits: CallLimits) {
        let ns = self.namespace_mut(namespace);
        for f in LocalFunction::all(module, namespace, limits, None, None) {
            ns.insert(f);
        }
    }

    /// Removes the functions of the module named `module` from every namespace.
    pub fn remove_module(&mut self, module: &str) {
        for ns in self.namespaces.values_mut() {
            ns.retain(|f| !matches!(f.origin(), Origin::Module(name) if name == module));
        }
    }
}

/// The current snapshot, replaced as a whole, and a generation counter sessions watch to tell
/// their clients that the functions changed. The snapshot served is composed of two sources:
/// the snapshot of this host's modules (published by `deploy`) and the functions each cluster
/// link offers, so that a deploy keeps the linked functions and a link going up or down keeps
/// the modules.
pub struct Registry {
    current: RwLock<Arc<RegistrySnapshot>>,
    /// The last snapshot published, without linked functions.
    modules: RwLock<Arc<RegistrySnapshot>>,
    /// Functions offered over each link that is up, by link.
    linked: std::sync::Mutex<Linked>,
    generation: tokio::sync::watch::Sender<u64>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new(RegistrySnapshot::default())
    }
}

impl Registry {
    pub fn new(snapshot: RegistrySnapshot) -> Self {
        let snapshot = Arc::new(snapshot);
        Self {
            current: RwLock::new(snapshot.clone()),
            modules: RwLock::new(snapshot),
            linked: std::sync::Mutex::new(BTreeMap::new()),
            generation: tokio::sync::watch::Sender::new(0),
        }
    }

    /// The snapshot to serve one request from.
    pub fn snapshot(&self) -> Arc<RegistrySnapshot> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Publishes a new snapshot of this host's modules, with the linked functions added;
    /// requests already running keep the snapshot they took.
    pub fn publish(&self, snapshot: RegistrySnapshot) {
        let snapshot = Arc::new(snapshot);
        *self.modules.write().unwrap_or_else(|e| e.into_inner()) = snapshot.clone();
        let linked = self.linked_lock();
        self.swap(compose(&snapshot, &linked));
    }

    /// Sets the functions `link` offers, joining `namespace` (beside this host's modules,
    /// which keep their names), and publishes the result.
    pub fn set_linked(&self, link: LinkId, namespace: &str, functions: Vec<Arc<dyn Callable>>) {
        let mut linked = self.linked_lock();
        linked.insert(link, (namespace.to_owned(), functions));
        self.swap(compose(&self.modules_snapshot(), &linked));
    }

    /// Takes away every function `link` offered (the link is down), and publishes the result.
    pub fn remove_linked(&self, link: &LinkId) {
        let mut linked = self.linked_lock();
        if linked.remove(link).is_some() {
            self.swap(compose(&self.modules_snapshot(), &linked));
        }
    }

    /// Changes whenever a new snapshot is published.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    fn swap(&self, snapshot: RegistrySnapshot) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
        self.generation.send_modify(|g| *g += 1);
    }

    fn modules_snapshot(&self) -> Arc<RegistrySnapshot> {
        self.modules.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn linked_lock(&self) -> std::sync::MutexGuard<'_, Linked> {
        self.linked.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The functions each link that is up offers, with the namespace (or group) they join.
type Linked = BTreeMap<LinkId, (String, Vec<Arc<dyn Callable>>)>;

/// `modules` with every link's functions added to their namespace (or to each member of their
/// group), after this host's own functions, which keep their names.
fn compose(modules: &RegistrySnapshot, linked: &Linked) -> RegistrySnapshot {
    let mut snapshot = modules.clone();
    for (namespace, functions) in linked.values() {
        let targets: Vec<String> = snapshot.members(namespace).into_iter().map(str::to_owned).collect();
        for target in targets {
            let ns = snapshot.namespace_mut(&target);
            for f in functions {
                ns.insert_if_absent(f.clone());
            }
        }
    }
    snapshot
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::FunctionKind;

    /// A function that answers with its origin's name, so a test sees which one a call reached.
    struct Fake {
        descriptor: FunctionDescriptor,
        origin: Origin,
    }

    #[async_trait::async_trait]
    impl Callable for Fake {
        fn descriptor(&self) -> &FunctionDescriptor {
            &self.descriptor
        }
        fn origin(&self) -> &Origin {
            &self.origin
        }
        async fn call(&self, _: Vec<Value>, _: Vec<(String, Value)>, _: Relay) -> Result<Value, CallError> {
            Ok(Value::Str(self.origin.to_string()))
        }
        async fn open(
            &self,
            _: Vec<Value>,
            _: Vec<(String, Value)>,
            _: Relay,
        ) -> Result<Box<dyn ValueStream>, CallError> {
            Err(CallError::Busy { reason: "fakes open no generators".into() })
        }
    }

    fn fake(name: &str, module: &str) -> Arc<dyn Callable> {
        let descriptor = FunctionDescriptor {
            name: name.into(),
            interface: None,
            wit_name: name.into(),
            params: Vec::new(),
            result: None,
            kind: FunctionKind::Function,
            doc: None,
        };
        Arc::new(Fake { descriptor, origin: Origin::Module(module.into()) })
    }

    /// Namespaces `a` (f, g from module ma) and `b` (g, h from module mb), group `ab` = [a, b].
    fn two_namespaces_and_a_group() -> RegistrySnapshot {
        let mut snapshot = RegistrySnapshot::default();
        snapshot.namespace_mut("a").insert(fake("f", "ma"));
        snapshot.namespace_mut("a").insert(fake("g", "ma"));
        snapshot.namespace_mut("b").insert(fake("g", "mb"));
        snapshot.namespace_mut("b").insert(fake("h", "mb"));
        snapshot.add_group("ab", Group { members: vec!["a".into(), "b".into()], secret: Some("group-secret".into()) });
        snapshot
    }

    fn resolved_origin(snapshot: &RegistrySnapshot, name: &str, function: &str) -> Option<(String, String)> {
        snapshot.resolve(name, function).map(|(member, _, f)| (member.to_owned(), f.origin().to_string()))
    }

    #[test]
    fn a_namespace_resolves_only_its_own_functions() {
        let snapshot = two_namespaces_and_a_group();
        assert_eq!(resolved_origin(&snapshot, "a", "f"), Some(("a".into(), "module ma".into())));
        assert_eq!(resolved_origin(&snapshot, "a", "h"), None, "h is b's");
        assert_eq!(resolved_origin(&snapshot, "nowhere", "f"), None);
    }

    #[test]
    fn a_group_resolves_to_its_first_member_that_has_the_function() {
        let mut snapshot = two_namespaces_and_a_group();
        assert_eq!(resolved_origin(&snapshot, "ab", "g"), Some(("a".into(), "module ma".into())), "a comes first");
        assert_eq!(resolved_origin(&snapshot, "ab", "h"), Some(("b".into(), "module mb".into())));
        snapshot.remove_module("ma");
        assert_eq!(
            resolved_origin(&snapshot, "ab", "g"),
            Some(("b".into(), "module mb".into())),
            "with a's module gone, g falls back to b"
        );
        assert_eq!(resolved_origin(&snapshot, "ab", "f"), None);
    }

    #[test]
    fn a_group_lists_each_name_once_in_member_order() {
        let snapshot = two_namespaces_and_a_group();
        let names = |name: &str| snapshot.listing(name).iter().map(|d| d.name.clone()).collect::<Vec<_>>();
        assert_eq!(names("ab"), ["f", "g", "h"]);
        assert_eq!(names("b"), ["g", "h"]);
        assert!(names("nowhere").is_empty());
    }

    #[test]
    fn a_later_function_of_the_same_name_replaces_the_earlier_in_place() {
        let mut snapshot = two_namespaces_and_a_group();
        snapshot.namespace_mut("a").insert(fake("f", "mc"));
        let listed: Vec<_> = snapshot.listing("a").iter().map(|d| d.name.clone()).collect();
        assert_eq!(listed, ["f", "g"], "same place in the listing");
        assert_eq!(resolved_origin(&snapshot, "a", "f"), Some(("a".into(), "module mc".into())));
    }

    #[test]
    fn secrets_and_frame_limits_follow_groups_and_tenants() {
        let mut snapshot = two_namespaces_and_a_group();
        let tenant = |secret: &str, max_frame: usize| {
            NamespacePolicy::new(PolicyConfig {
                secret: Some(secret.into()),
                max_frame: Some(max_frame),
                ..PolicyConfig::default()
            })
        };
        snapshot.set_policy("a", tenant("a-secret", 1000));
        snapshot.set_policy("b", tenant("b-secret", 500));
        assert_eq!(snapshot.secret_for("a"), Some("a-secret"));
        assert_eq!(snapshot.secret_for("ab"), Some("group-secret"), "a group has its own secret");
        assert_eq!(snapshot.secret_for("nowhere"), None);
        assert_eq!(snapshot.max_frame_for("a"), Some(1000));
        assert_eq!(snapshot.max_frame_for("ab"), Some(500), "the smallest of the members'");
    }

    #[tokio::test]
    async fn a_call_reaches_the_resolved_function() {
        let snapshot = two_namespaces_and_a_group();
        let (_, _, function) = snapshot.resolve("ab", "h").expect("resolves");
        assert_eq!(
            function.call(Vec::new(), Vec::new(), Relay::default()).await.expect("answers"),
            Value::Str("module mb".into())
        );
    }

    #[tokio::test]
    async fn a_namespace_admits_calls_up_to_its_limits_then_answers_busy() {
        let policy = NamespacePolicy::new(PolicyConfig {
            max_concurrent_calls: 1,
            max_queued_calls: 1,
            ..PolicyConfig::default()
        });
        let running = policy.admit("t").await.expect("a free slot");
        let policy2 = policy.clone();
        let queued = tokio::spawn(async move { policy2.admit("t").await.is_ok() });
        while policy.queued.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        let busy = policy.admit("t").await.expect_err("the queue is full");
        assert!(matches!(busy, CallError::Busy { .. }), "{busy:?}");
        drop(running);
        assert!(queued.await.expect("joins"), "the queued call gets the slot");
    }

    fn link(id: u64) -> LinkId {
        LinkId { id, peer: format!("host-{id}").into() }
    }

    fn fake_from(name: &str, origin: Origin) -> Arc<dyn Callable> {
        let f = fake(name, "unused");
        Arc::new(Fake { descriptor: f.descriptor().clone(), origin })
    }

    fn names_in(registry: &Registry, namespace: &str) -> Vec<String> {
        registry.snapshot().listing(namespace).iter().map(|d| d.name.clone()).collect()
    }

    #[test]
    fn linked_functions_join_a_namespace_after_the_host_s_own_and_survive_deploys() {
        let registry = Registry::new(two_namespaces_and_a_group());
        let parent = link(1);
        let offered = vec![fake_from("f", Origin::Link(parent.clone())), fake_from("p", Origin::Link(parent.clone()))];
        registry.set_linked(parent.clone(), "a", offered);
        assert_eq!(names_in(&registry, "a"), ["f", "g", "p"], "the host's own f keeps its name");
        assert_eq!(
            registry.snapshot().resolve("a", "f").map(|(_, _, f)| f.origin().clone()),
            Some(Origin::Module("ma".into()))
        );
        // A deploy publishes a new snapshot of the modules: the link's functions stay.
        let mut redeployed = two_namespaces_and_a_group();
        redeployed.remove_module("ma");
        registry.publish(redeployed);
        assert_eq!(names_in(&registry, "a"), ["f", "p"], "the link's f now serves");
        assert_eq!(
            registry.snapshot().resolve("a", "f").map(|(_, _, f)| f.origin().clone()),
            Some(Origin::Link(parent.clone()))
        );
        // The link goes down: its functions leave, the modules stay.
        registry.remove_linked(&parent);
        assert!(names_in(&registry, "a").is_empty());
        assert_eq!(names_in(&registry, "b"), ["g", "h"]);
    }

    #[test]
    fn functions_linked_to_a_group_join_every_member() {
        let registry = Registry::new(two_namespaces_and_a_group());
        registry.set_linked(link(2), "ab", vec![fake_from("x", Origin::Link(link(2)))]);
        assert_eq!(names_in(&registry, "a"), ["f", "g", "x"]);
        assert_eq!(names_in(&registry, "b"), ["g", "h", "x"]);
    }

    #[test]
    fn a_host_is_never_told_its_own_functions_back() {
        let registry = Registry::new(two_namespaces_and_a_group());
        let (parent, child) = (link(1), link(2));
        registry.set_linked(parent.clone(), "a", vec![fake_from("up", Origin::Link(parent.clone()))]);
        registry.set_linked(child.clone(), "a", vec![fake_from("down", Origin::Link(child.clone()))]);
        let listed = |to: &LinkId| -> Vec<String> {
            registry.snapshot().listing_for_link("a", to).iter().map(|d| d.name.clone()).collect()
        };
        assert_eq!(listed(&parent), ["f", "g", "down"], "the parent hears the host's and the child's");
        assert_eq!(listed(&child), ["f", "g", "up"], "the child hears the host's and the parent's");
        assert_eq!(names_in(&registry, "a"), ["f", "g", "up", "down"], "a client hears all");
    }
}
