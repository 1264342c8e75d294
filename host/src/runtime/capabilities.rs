//! The host functions a guest may import besides WASI: the `easyrpc:guest/host` interface
//! (wit/guest/host.wit), wrapped for guests by `easyrpc_guest::sleep` and friends.
//!
//! Owns their implementations and their registration in the runtime's linker. It must not
//! reach outside the calling instance: every function here acts on the call that made it, under
//! that call's deadline and limits (enforced by the sandbox, which owns the store). Guest
//! capabilities that reach further (calling other functions, shared state) will be added here
//! with the tenant's namespace in the store data, never ambient.

use super::sandbox::CallState;
use std::time::Duration;
use wasmtime::component::Linker;

/// The interface's name as guests import it.
pub const HOST_INTERFACE: &str = "easyrpc:guest/host@0.1.0";

/// Defines `easyrpc:guest/host` in `linker`.
pub(super) fn add_to_linker(linker: &mut Linker<CallState>) -> anyhow::Result<()> {
    let mut host = linker.instance(HOST_INTERFACE)?;
    // The sandbox's deadline timer covers the sleep (the call future is pending while it
    // sleeps), so a guest cannot sleep past its deadline; the worker is free meanwhile.
    host.func_wrap_async("sleep", |store, (nanoseconds,): (u64,)| {
        // A long call asleep needs no core: its long-lane slot goes to the next long call.
        store.data().leave_long_lane();
        Box::new(async move {
            tokio::time::sleep(Duration::from_nanos(nanoseconds)).await;
            Ok(())
        })
    })?;
    Ok(())
}
