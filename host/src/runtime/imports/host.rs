//! `easyrpc:guest/host`: plain host functions every guest may import.

use super::easyrpc::guest::host::Host;
use crate::runtime::sandbox::CallState;
use std::time::Duration;

impl Host for CallState {
    /// The sandbox's deadline timer covers the sleep (the call future is pending while it
    /// sleeps), so a guest cannot sleep past its deadline; the worker is free meanwhile.
    async fn sleep(&mut self, nanoseconds: u64) -> wasmtime::Result<()> {
        // A long call asleep needs no core: its long-lane slot goes to the next long call.
        self.leave_long_lane();
        tokio::time::sleep(Duration::from_nanos(nanoseconds)).await;
        Ok(())
    }
}
