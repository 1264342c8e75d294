//! # EasyRpc host
//!
//! Serves functions compiled to WebAssembly components to easyrpc callers. Each call runs in a
//! fresh sandboxed instance with its own deadline and memory limit and no ambient access to
//! files, network or environment.
//!
//! ## Layout
//! The data path of one call is the spine of the code; each station is one module:
//!
//! * [`value`]: the dynamic [`value::Value`] every argument and result passes through, and its
//!   JSON text codec (Python's dialect: NaN, big integers).
//! * [`signature`]: what a function looks like to callers: descriptors, WIT types, the naming
//!   rule, binding `args`/`kwargs` to parameters the way Python does.
//! * [`runtime`]: wasmtime: load components, describe them from their types and embedded WIT
//!   docs, convert values, run each call in a sandbox, cache compiled components.
//! * [`cli`]: the `easyrpc` command line (thin: parses flags, calls the library).
//!
//! Coming next (see the issues): `wire` (frames, json/pickle, JWT setup), `session` (one
//! connection), `registry` (namespaces and groups of callables: local modules now, cluster links
//! later), `server`, `client`.

pub mod cli;
pub mod client;
pub mod config;
pub mod registry;
pub mod runtime;
pub mod server;
pub mod session;
pub mod signature;
pub mod value;
pub mod wire;
