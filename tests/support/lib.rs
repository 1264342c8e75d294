//! Shared helpers for the integration tests and benchmarks: the built guest modules and a
//! runtime to load them with. Tests use real `.wasm` files built from `modules/`.

use easyrpc::runtime::{Module, Runtime, RuntimeConfig};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// Path of a module built from `modules/` (built on first use).
pub fn module_path(name: &str) -> PathBuf {
    xtask::module_path(name).unwrap_or_else(|e| panic!("cannot build the guest modules: {e}"))
}

/// One runtime per test process, shared: it is what a host has too.
pub fn runtime() -> Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new(RuntimeConfig::default()).expect("runtime starts")).clone()
}

/// Loads a built module into the shared runtime.
pub fn load(name: &str) -> Arc<Module> {
    runtime().load_file(module_path(name)).unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// Parses JSON text (Python dialect) into a Value, for readable test arguments.
pub fn v(text: &str) -> easyrpc::value::Value {
    easyrpc::value::json::parse(text).unwrap_or_else(|e| panic!("bad test JSON {text}: {e}"))
}

/// A value as compact JSON text, for readable assertions.
pub fn j(value: &easyrpc::value::Value) -> String {
    value.to_json()
}
