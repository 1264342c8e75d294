//! Namespaces of callable functions, swapped atomically as a whole.
//!
//! Owns the [`Callable`] abstraction (something a namespace can list and call: a function of a
//! local module today, a function behind a cluster link later), [`Namespace`] (ordered,
//! name-indexed callables) and the [`Registry`], an immutable [`RegistrySnapshot`] behind one
//! lock-free-to-read pointer swap: a session takes a snapshot per request, so a deploy never
//! changes the world under a running call. It does not parse frames or run wasm itself.

use crate::runtime::{CallError, CallLimits, GeneratorStream, Module};
use crate::signature::FunctionDescriptor;
use crate::value::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

/// The namespace that modules at the top of a `--modules` directory go to.
pub const DEFAULT_NAMESPACE: &str = "DEFAULT";

/// Something a namespace lists and calls.
#[async_trait::async_trait]
pub trait Callable: Send + Sync {
    fn descriptor(&self) -> &FunctionDescriptor;
    /// Where the function comes from, for logs and errors (`module peer`, later `link to ...`).
    fn origin(&self) -> String;
    async fn call(&self, args: Vec<Value>, kwargs: Vec<(String, Value)>) -> Result<Value, CallError>;
    /// Opens a generator (descriptor kind `generator`): a stream of values pulled one by one.
    async fn open(&self, args: Vec<Value>, kwargs: Vec<(String, Value)>) -> Result<Box<dyn ValueStream>, CallError>;
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

/// A function of a module loaded into this host: each call runs in a fresh sandbox.
pub struct LocalFunction {
    module: Arc<Module>,
    descriptor: FunctionDescriptor,
    limits: CallLimits,
}

impl LocalFunction {
    /// Every function of `module`, called with `limits`.
    pub fn all(module: &Arc<Module>, limits: CallLimits) -> Vec<Arc<dyn Callable>> {
        module
            .descriptors()
            .map(|d| Arc::new(LocalFunction { module: module.clone(), descriptor: d.clone(), limits }) as Arc<dyn Callable>)
            .collect()
    }
}

#[async_trait::async_trait]
impl Callable for LocalFunction {
    fn descriptor(&self) -> &FunctionDescriptor {
        &self.descriptor
    }
    fn origin(&self) -> String {
        format!("module {}", self.module.name())
    }
    async fn call(&self, args: Vec<Value>, kwargs: Vec<(String, Value)>) -> Result<Value, CallError> {
        self.module.call(&self.descriptor.name, args, kwargs, self.limits).await
    }
    async fn open(&self, args: Vec<Value>, kwargs: Vec<(String, Value)>) -> Result<Box<dyn ValueStream>, CallError> {
        let stream = self.module.open_generator(&self.descriptor.name, args, kwargs, self.limits).await?;
        Ok(Box::new(stream))
    }
}

/// The functions callers of one namespace see, in listing order.
#[derive(Clone, Default)]
pub struct Namespace {
    functions: Vec<Arc<dyn Callable>>,
    by_name: HashMap<String, usize>,
}

impl Namespace {
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

/// Every namespace at one moment. Immutable once published.
#[derive(Clone, Default)]
pub struct RegistrySnapshot {
    namespaces: BTreeMap<String, Namespace>,
}

impl RegistrySnapshot {
    pub fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.namespaces.get(name)
    }

    pub fn namespace_mut(&mut self, name: &str) -> &mut Namespace {
        self.namespaces.entry(name.to_owned()).or_default()
    }

    pub fn namespaces(&self) -> impl Iterator<Item = (&str, &Namespace)> {
        self.namespaces.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Adds every function of `module` to `namespace`.
    pub fn add_module(&mut self, namespace: &str, module: &Arc<Module>, limits: CallLimits) {
        let ns = self.namespace_mut(namespace);
        for f in LocalFunction::all(module, limits) {
            ns.insert(f);
        }
    }
}

/// The current snapshot, replaced as a whole.
#[derive(Default)]
pub struct Registry {
    current: RwLock<Arc<RegistrySnapshot>>,
}

impl Registry {
    pub fn new(snapshot: RegistrySnapshot) -> Self {
        Self { current: RwLock::new(Arc::new(snapshot)) }
    }

    /// The snapshot to serve one request from.
    pub fn snapshot(&self) -> Arc<RegistrySnapshot> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Publishes a new snapshot; requests already running keep the one they took.
    pub fn publish(&self, snapshot: RegistrySnapshot) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
    }
}
