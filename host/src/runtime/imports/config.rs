//! `wasi:config/store`: the namespace's `[namespace.config]` table, read-only.

use super::wasi::config::store::{Error, Host};
use super::Grant;
use crate::runtime::sandbox::CallState;

impl Host for CallState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, Error>> {
        let config = self.env().granted(Grant::Config)?.config.as_deref().unwrap_or_default();
        let found = config.binary_search_by(|(k, _)| k.as_str().cmp(&key)).ok().map(|i| config[i].1.clone());
        Ok(Ok(found))
    }

    async fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, Error>> {
        let config = self.env().granted(Grant::Config)?.config.as_deref().unwrap_or_default();
        Ok(Ok(config.to_vec()))
    }
}
