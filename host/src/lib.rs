//! # EasyRpc host
//!
//! Serves functions compiled to WebAssembly components to easyrpc callers. Each call runs in a
//! fresh sandboxed instance with its own deadline and memory limit and no ambient access to
//! files, network or environment.
//!
//! ## Layout
//! The data path of one call is the spine of the code; each station is one module, and a
//! module imports only modules further down the path, never one that imports it back
//! (`tests/integration/layout.rs` keeps it so):
//!
//! ```text
//! cli -> config -> server -> cluster -> session -> dispatch -> registry -> runtime -> signature -> value
//!          |                               `-> deploy --'                        wire --'
//!          `-> capabilities -> dispatch
//! ```
//!
//! * [`cli`]: the `easyrpc` command line (thin: parses flags, calls the library).
//! * [`config`]: the TOML config file and flags: paths, tenants, groups, limits, module sources.
//! * [`server`]: listening, path routing, connection limits, graceful shutdown.
//! * [`capabilities`]: what a namespace grants its guests (key-value state, logging, config,
//!   calling other functions) and the backends behind it: the embedded and Redis key-value
//!   stores, the caller that takes a guest's call back through `dispatch`.
//! * [`cluster`]: links between hosts: dialing a parent and accepting children, the other
//!   host's functions as callables while a link is up, the requests sent over a link.
//! * [`session`]: one connection: setup and auth, the loop that reads requests and writes
//!   answers (backpressure, slow readers), generators, close; each request kind is a
//!   [`session::command`] parsed from the request and applied, answering a [`session::Reply`].
//! * [`dispatch`]: the path of one call, for every caller: resolve the function, admit the
//!   call in its namespace, run it in the namespace's turns, check what it returns.
//! * [`deploy`]: the host's modules over time: module sources, watched directories, admin
//!   deploys, swaps.
//! * [`registry`]: namespaces, groups and tenant policies of [`registry::Callable`]s, each from
//!   a [`registry::Origin`] (a local module now, a cluster link later), in snapshots swapped
//!   atomically.
//! * [`runtime`]: wasmtime: load components, describe them from their types and embedded WIT
//!   docs, build guest values, run each call in a sandbox, the interfaces guests import
//!   (`runtime::imports`: `easyrpc:guest`, `wasi:keyvalue`, `wasi:logging`, `wasi:config`, each
//!   acting through the capabilities its call carries), cache compiled components.
//! * [`wire`]: easyrpc's frames in json and pickle, the setup JWT, `sig` listings (beside the
//!   path: the session and the client both speak it).
//! * [`signature`]: what a function looks like to callers: descriptors, WIT types, the naming
//!   rule, binding `args`/`kwargs` to parameters the way Python does, the rules a value must
//!   follow for its type.
//! * [`value`]: the dynamic [`value::Value`] every argument and result passes through, and its
//!   JSON text codec (Python's dialect: NaN, big integers).
//! * [`metrics`]: the process's metrics and the HTTP port that serves them with the health
//!   checks (a leaf: the modules that count call into it, it imports none of them).
//! * [`telemetry`]: the optional export of call spans over OTLP, and the span context a call
//!   carries from host to host (a leaf, like `metrics`).
//! * [`client`]: the Rust client proxy, the same wire seen from outside: it uses `wire`,
//!   `signature` and `value` only.

pub mod capabilities;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod deploy;
pub mod dispatch;
pub mod metrics;
pub mod registry;
pub mod runtime;
pub mod server;
pub mod session;
pub mod signature;
pub mod telemetry;
pub mod value;
pub mod wire;
