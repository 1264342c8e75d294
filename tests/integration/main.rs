//! The integration tests: a real host in this process on 127.0.0.1, real `.wasm` modules built
//! from `modules/`, real clients (the Rust proxy, raw websockets, the Python `easyrpc` client).
//! One binary, each file a module of it, so that wasmtime is linked once for all of them. Tests
//! that read process-wide figures run alone in a child process (`alone_in_process!`).

/// The fuzz targets' harness: the suite runs every corpus input through it.
#[path = "../../fuzz/harness.rs"]
mod harness;

/// Counts each thread's allocations for the harness's bounds.
#[global_allocator]
static ALLOCATOR: harness::Counting = harness::Counting;

mod attacks;
mod capabilities;
mod cluster;
mod deployment;
mod deploys_kept;
mod examples;
mod formatting;
mod fuzz_corpus;
mod generator_memory;
mod generators;
mod guest_output;
mod guide;
mod hostile_input;
mod hotswap;
mod layout;
mod metrics;
mod python_peer;
mod runtime;
mod sandbox;
mod sdk;
mod server;
mod tenancy;
mod tls;
