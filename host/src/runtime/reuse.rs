//! Instances kept between the calls of one namespace, for namespaces that opt in.
//!
//! Owns [`InstanceReuse`] (the per-namespace choice) and [`WarmInstances`] (one namespace's
//! idle instances of one module, and the rules for keeping one). By default every call gets an
//! instance no call used before; a namespace configured with `instances = "reused"` lets a call
//! run in an instance that an earlier call *of the same namespace* finished in cleanly, the way
//! a Python easyrpc server's functions share their process. Instances are never shared between
//! namespaces (each namespace has its own `WarmInstances`), never after a trap, timeout or
//! other failure of the instance, never past `max_calls`, and never once their memory grew big.
//! It does not run calls (the module does) and does not decide which namespaces reuse (the
//! registry passes the policy in).

use super::sandbox::{lock, Sandbox};
use super::{CallLimits, Module, RuntimeInner};
use std::sync::{Arc, Mutex, Weak};

/// Calls one instance serves, at most, before it is replaced, unless configured otherwise:
/// whatever a guest leaks or fragments is given back at this pace.
pub const DEFAULT_MAX_CALLS_PER_INSTANCE: u32 = 10_000;
/// Idle instances one namespace keeps per module. Calls that finish within their first poll
/// (most) need one instance per tokio worker; more concurrent calls make fresh instances.
pub const WARM_PER_NAMESPACE: usize = 4;
/// An instance whose memory grew past this is not kept: idle instances must stay cheap to hold.
pub const MAX_WARM_MEMORY: usize = 8 << 20;
/// Share of the instance pool that idle kept instances may hold, host-wide (1/25: 40 of the
/// default 1000), so that many tenants' idle instances never crowd out calls.
pub(super) const WARM_SHARE_OF_POOL: usize = 25;

/// How a namespace's calls get their instances.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InstanceReuse {
    /// Every call runs in an instance no call used before: nothing a call leaves in the guest's
    /// memory reaches the next call.
    #[default]
    Fresh,
    /// A call may run in an instance that an earlier call of the same namespace finished in
    /// cleanly: guest globals carry over between that namespace's calls (as module-level state
    /// does in the Python original). Each instance serves at most `max_calls` calls.
    Reused { max_calls: u32 },
}

impl InstanceReuse {
    /// Reuse with the default number of calls per instance.
    pub fn reused() -> Self {
        InstanceReuse::Reused { max_calls: DEFAULT_MAX_CALLS_PER_INSTANCE }
    }
}

/// One namespace's idle instances of one module.
pub struct WarmInstances {
    idle: Mutex<Vec<Sandbox>>,
    max_calls: u32,
    /// For the host-wide count of kept instances.
    runtime: Arc<RuntimeInner>,
    /// The module the instances are of: a sandbox of another module is never kept here. Weak:
    /// only its identity is needed.
    module: Weak<Module>,
}

/// How many calls one kept instance serves under `reuse` (at least one); none: not kept.
fn calls_per_instance(reuse: InstanceReuse) -> Option<u32> {
    match reuse {
        InstanceReuse::Fresh => None,
        InstanceReuse::Reused { max_calls } => Some(max_calls.max(1)),
    }
}

impl WarmInstances {
    /// An empty set for calls of `module` in one namespace; none when `reuse` is `Fresh`.
    pub fn for_policy(module: &Arc<Module>, reuse: InstanceReuse) -> Option<Arc<Self>> {
        Some(Arc::new(Self {
            idle: Mutex::new(Vec::new()),
            max_calls: calls_per_instance(reuse)?,
            runtime: module.runtime.clone(),
            module: Arc::downgrade(module),
        }))
    }

    fn is_of(&self, module: &Module) -> bool {
        std::ptr::eq(self.module.as_ptr(), module)
    }

    /// Whether these are `module`'s instances kept as `reuse` says (the same module loaded
    /// again is another module: its instances are never these).
    pub(crate) fn serves(&self, module: &Module, reuse: InstanceReuse) -> bool {
        calls_per_instance(reuse) == Some(self.max_calls) && self.is_of(module)
    }

    /// Idle instances held now.
    pub fn idle(&self) -> usize {
        lock(&self.idle).len()
    }

    /// The most recently used idle instance made with `limits`, if any (its memory is the most
    /// likely to still be in the CPU's caches).
    pub(super) fn take(&self, module: &Module, limits: CallLimits) -> Option<Sandbox> {
        if !self.is_of(module) {
            return None;
        }
        let mut idle = lock(&self.idle);
        let sandbox = idle.pop()?;
        self.runtime.warm.release(1);
        // One namespace calls with one set of limits; a change of limits starts afresh. The
        // deadline is the call's own.
        let mut sandbox = sandbox.limits().same_instance(&limits).then_some(sandbox)?;
        sandbox.set_deadline(limits.deadline);
        Some(sandbox)
    }

    /// Keeps `used` for a later call if it may serve one; otherwise hands it back to be torn
    /// down.
    pub(super) fn keep(&self, module: &Module, used: Sandbox) -> Option<Sandbox> {
        if !self.is_of(module)
            || used.is_poisoned()
            || used.calls() >= self.max_calls
            || used.peak_memory() > MAX_WARM_MEMORY
        {
            return Some(used);
        }
        let mut idle = lock(&self.idle);
        if idle.len() >= WARM_PER_NAMESPACE {
            return Some(used);
        }
        if !self.runtime.warm.claim() {
            return Some(used);
        }
        idle.push(used);
        None
    }
}

impl Drop for WarmInstances {
    fn drop(&mut self) {
        let idle = self.idle.get_mut().map_or(0, |idle| idle.len());
        self.runtime.warm.release(idle);
    }
}
