//! `wasi:keyvalue` (store, atomics, batch): the guest's buckets, through the namespace's
//! [`KeyValue`] backend.
//!
//! Bucket and compare-and-swap handles live in the call's resource table and die with the
//! instance (a store holding any is not renewed for another); what they hold in host memory (names, the values compare-and-swap handles
//! remember) is counted against [`MAX_HANDLES`] and [`MAX_HANDLE_BYTES`] per instance, so that
//! a guest opening handles in a loop meets an error, not the host's memory. The backend scopes
//! every bucket to the namespace and enforces its quotas; this side bounds what one request
//! may ask for: a batch names at most [`MAX_BATCH_KEYS`] keys (the store reads at most
//! [`MAX_BATCH_BYTES`] for one).

use super::wasi::keyvalue::atomics::{self, CasError};
use super::wasi::keyvalue::batch;
use super::wasi::keyvalue::store::{self, Error, KeyResponse};
use super::{Grant, GuestCapabilities};
use crate::runtime::sandbox::CallState;
use wasmtime::component::Resource;

/// Longest bucket name a guest may open.
pub const MAX_BUCKET_NAME: usize = 256;
/// Most keys one batch request may name.
pub const MAX_BATCH_KEYS: usize = 1000;
/// Most value bytes one batch request may read (the store stops reading past it).
pub const MAX_BATCH_BYTES: usize = 16 << 20;
/// Bucket and compare-and-swap handles one instance may hold open at once.
pub const MAX_HANDLES: usize = 4096;
/// Host memory those handles may hold, per instance.
pub const MAX_HANDLE_BYTES: usize = 16 << 20;
/// What a handle costs besides the bytes it keeps.
const HANDLE_OVERHEAD: usize = 64;

/// What one instance's key-value handles hold in host memory.
#[derive(Debug, Default)]
pub struct HandleBudget {
    handles: usize,
    bytes: usize,
}

impl HandleBudget {
    /// Counts a handle of `bytes`, or refuses it past the bounds.
    /// Whether no handle is open.
    pub(crate) fn is_empty(&self) -> bool {
        self.handles == 0
    }

    fn hold(&mut self, bytes: usize) -> Result<(), Error> {
        let bytes = bytes + HANDLE_OVERHEAD;
        if self.handles + 1 > MAX_HANDLES || self.bytes + bytes > MAX_HANDLE_BYTES {
            return Err(Error::Other(format!(
                "too many key-value handles open in this call ({} holding {} bytes; at most {MAX_HANDLES} and \
                 {MAX_HANDLE_BYTES} bytes): drop the ones no longer needed",
                self.handles, self.bytes
            )));
        }
        self.handles += 1;
        self.bytes += bytes;
        Ok(())
    }

    fn release(&mut self, bytes: usize) {
        self.handles = self.handles.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(bytes + HANDLE_OVERHEAD);
    }
}

/// Why a key-value operation failed: the interface's own error cases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    #[error("no such store")]
    NoSuchStore,
    #[error("access denied")]
    AccessDenied,
    #[error("{0}")]
    Other(String),
}

/// One page of a bucket's keys and where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPage {
    pub keys: Vec<String>,
    pub cursor: Option<String>,
}

/// What a compare-and-swap did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Swapped {
    /// The key held what was expected and now holds the new value.
    Done,
    /// The key held something else (this, none: absent); nothing changed.
    Changed(Option<Vec<u8>>),
}

/// A namespace's key-value store: every bucket name is the namespace's own, and the quotas
/// are the namespace's. Implemented by the backends (`capabilities::keyvalue`).
#[async_trait::async_trait]
pub trait KeyValue: Send + Sync {
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    async fn set(&self, bucket: &str, key: &str, value: Vec<u8>) -> Result<(), KvError>;
    async fn delete(&self, bucket: &str, key: &str) -> Result<(), KvError>;
    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, KvError>;
    async fn list_keys(&self, bucket: &str, cursor: Option<String>) -> Result<KeyPage, KvError>;
    /// Adds `delta` to the decimal integer stored under `key` (absent: 0) and stores the sum,
    /// as decimal text, atomically.
    async fn increment(&self, bucket: &str, key: &str, delta: i64) -> Result<i64, KvError>;
    /// Stores `value` under `key` if the key holds `expected` (none: absent), atomically.
    async fn compare_and_swap(
        &self,
        bucket: &str,
        key: &str,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> Result<Swapped, KvError>;
    /// The values of `keys` in their order; fails once the values read pass
    /// [`MAX_BATCH_BYTES`], without reading much further.
    async fn get_many(&self, bucket: &str, keys: Vec<String>) -> Result<Vec<Option<(String, Vec<u8>)>>, KvError>;
    async fn set_many(&self, bucket: &str, pairs: Vec<(String, Vec<u8>)>) -> Result<(), KvError>;
    async fn delete_many(&self, bucket: &str, keys: Vec<String>) -> Result<(), KvError>;
}

/// An open bucket: its name within the namespace.
pub struct Bucket {
    name: String,
}

impl Bucket {
    fn held(&self) -> usize {
        self.name.len()
    }
}

/// A compare-and-swap handle: the key and what it held when the handle was made.
pub struct Cas {
    bucket: String,
    key: String,
    current: Option<Vec<u8>>,
}

impl Cas {
    fn held(&self) -> usize {
        self.bucket.len() + self.key.len() + self.current.as_ref().map_or(0, Vec::len)
    }
}

impl From<KvError> for Error {
    fn from(e: KvError) -> Self {
        match e {
            KvError::NoSuchStore => Error::NoSuchStore,
            KvError::AccessDenied => Error::AccessDenied,
            KvError::Other(message) => Error::Other(message),
        }
    }
}

/// The namespace's store, or the trap for a namespace without the grant. The call gives up its
/// long-lane slot: it waits for the store without a core, as a sleep does.
fn store(state: &CallState) -> wasmtime::Result<std::sync::Arc<dyn KeyValue>> {
    state.leave_long_lane();
    let caps: &GuestCapabilities = state.env().granted(Grant::KeyValue)?;
    caps.keyvalue.clone().ok_or_else(|| wasmtime::format_err!("wasi:keyvalue has no backend"))
}

impl CallState {
    fn bucket_name(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<String> {
        Ok(self.table.get(bucket)?.name.clone())
    }
}

impl store::Host for CallState {
    async fn open(&mut self, identifier: String) -> wasmtime::Result<Result<Resource<Bucket>, Error>> {
        store(self)?;
        if identifier.len() > MAX_BUCKET_NAME {
            return Ok(Err(Error::Other(format!("bucket names are at most {MAX_BUCKET_NAME} bytes"))));
        }
        let bucket = Bucket { name: identifier };
        if let Err(e) = self.handles.hold(bucket.held()) {
            return Ok(Err(e));
        }
        Ok(Ok(self.table.push(bucket)?))
    }
}

impl store::HostBucket for CallState {
    async fn get(&mut self, bucket: Resource<Bucket>, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let (kv, name) = (store(self)?, self.bucket_name(&bucket)?);
        Ok(kv.get(&name, &key).await.map_err(Error::from))
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let (kv, name) = (store(self)?, self.bucket_name(&bucket)?);
        Ok(kv.set(&name, &key, value).await.map_err(Error::from))
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> wasmtime::Result<Result<(), Error>> {
        let (kv, name) = (store(self)?, self.bucket_name(&bucket)?);
        Ok(kv.delete(&name, &key).await.map_err(Error::from))
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> wasmtime::Result<Result<bool, Error>> {
        let (kv, name) = (store(self)?, self.bucket_name(&bucket)?);
        Ok(kv.exists(&name, &key).await.map_err(Error::from))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<String>,
    ) -> wasmtime::Result<Result<KeyResponse, Error>> {
        let (kv, name) = (store(self)?, self.bucket_name(&bucket)?);
        Ok(kv
            .list_keys(&name, cursor)
            .await
            .map(|p| KeyResponse { keys: p.keys, cursor: p.cursor })
            .map_err(Error::from))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        let bucket = self.table.delete(bucket)?;
        self.handles.release(bucket.held());
        Ok(())
    }
}

impl atomics::Host for CallState {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, Error>> {
        let (kv, name) = (store(self)?, self.bucket_name(&bucket)?);
        Ok(kv.increment(&name, &key, delta).await.map_err(Error::from))
    }

    async fn swap(&mut self, cas: Resource<Cas>, value: Vec<u8>) -> wasmtime::Result<Result<(), CasError>> {
        let kv = store(self)?;
        let cas = self.table.delete(cas)?;
        self.handles.release(cas.held());
        let Cas { bucket, key, current } = cas;
        match kv.compare_and_swap(&bucket, &key, current, value).await {
            Ok(Swapped::Done) => Ok(Ok(())),
            Ok(Swapped::Changed(now)) => {
                let fresh = Cas { bucket, key, current: now };
                if let Err(e) = self.handles.hold(fresh.held()) {
                    return Ok(Err(CasError::StoreError(e)));
                }
                Ok(Err(CasError::CasFailed(self.table.push(fresh)?)))
            }
            Err(e) => Ok(Err(CasError::StoreError(e.into()))),
        }
    }
}

impl atomics::HostCas for CallState {
    async fn new(&mut self, bucket: Resource<Bucket>, key: String) -> wasmtime::Result<Result<Resource<Cas>, Error>> {
        let (kv, name) = (store(self)?, self.bucket_name(&bucket)?);
        let current = match kv.get(&name, &key).await {
            Ok(current) => current,
            Err(e) => return Ok(Err(e.into())),
        };
        let cas = Cas { bucket: name, key, current };
        if let Err(e) = self.handles.hold(cas.held()) {
            return Ok(Err(e));
        }
        Ok(Ok(self.table.push(cas)?))
    }

    async fn current(&mut self, cas: Resource<Cas>) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        Ok(Ok(self.table.get(&cas)?.current.clone()))
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        let cas = self.table.delete(cas)?;
        self.handles.release(cas.held());
        Ok(())
    }
}

impl batch::Host for CallState {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<(String, Vec<u8>)>>, Error>> {
        let (kv, name) = (store(self)?, self.bucket_name(&bucket)?);
        if let Err(e) = batch_size(keys.len()) {
            return Ok(Err(e));
        }
        Ok(kv.get_many(&name, keys).await.map_err(Error::from))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let (kv, name) = (store(self)?, self.bucket_name(&bucket)?);
        if let Err(e) = batch_size(key_values.len()) {
            return Ok(Err(e));
        }
        Ok(kv.set_many(&name, key_values).await.map_err(Error::from))
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let (kv, name) = (store(self)?, self.bucket_name(&bucket)?);
        if let Err(e) = batch_size(keys.len()) {
            return Ok(Err(e));
        }
        Ok(kv.delete_many(&name, keys).await.map_err(Error::from))
    }
}

fn batch_size(keys: usize) -> Result<(), Error> {
    if keys > MAX_BATCH_KEYS {
        return Err(Error::Other(format!("{keys} keys in one batch; a batch names at most {MAX_BATCH_KEYS}")));
    }
    Ok(())
}
