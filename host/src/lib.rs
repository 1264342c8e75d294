//! # EasyRpc host
//!
//! Serves functions compiled to WebAssembly components to easyrpc callers. Each call runs in a
//! fresh sandboxed instance with its own deadline and memory limit and no ambient access to
//! files, network or environment.
//!
//! ## Layout
//! The data path of one call is the spine of the code; each station is one module:
//!
//! * [`server`]: listening, path routing, connection limit, graceful shutdown.
//! * [`session`]: one connection: setup and auth, concurrent calls by request id, generators,
//!   keep-alive, close.
//! * [`wire`]: easyrpc's frames in json and pickle, the setup JWT, `sig` listings.
//! * [`registry`]: namespaces, groups and tenant policies of [`registry::Callable`]s (local
//!   module functions now, cluster links later), in snapshots swapped atomically.
//! * [`runtime`]: wasmtime: load components, describe them from their types and embedded WIT
//!   docs, convert values, run each call in a sandbox, the host functions guests import
//!   (`easyrpc:guest/host`), cache compiled components.
//! * [`signature`]: what a function looks like to callers: descriptors, WIT types, the naming
//!   rule, binding `args`/`kwargs` to parameters the way Python does.
//! * [`value`]: the dynamic [`value::Value`] every argument and result passes through, and its
//!   JSON text codec (Python's dialect: NaN, big integers).
//! * [`client`]: the Rust client proxy (the same wire seen from outside).
//! * [`config`]: where modules come from (directories, TOML) and tenants, groups, limits.
//! * [`deploy`]: the host's modules over time: watched directories, admin deploys, swaps.
//! * [`cli`]: the `easyrpc` command line (thin: parses flags, calls the library).
//!
//! Coming next: cluster links (sessions in the other direction, registered as callables) and
//! guest capabilities (calling other functions, key-value state, logging).

pub mod cli;
pub mod client;
pub mod config;
pub mod deploy;
pub mod registry;
pub mod runtime;
pub mod server;
pub mod session;
pub mod signature;
pub mod value;
pub mod wire;
