//! `wasi:keyvalue` (store, atomics, batch): the guest's buckets, through the namespace's
//! [`KeyValue`] backend.
//!
//! Bucket and compare-and-swap handles live in the call's resource table and die with the
//! instance. The backend scopes every bucket to the namespace and enforces its quotas; this
//! side bounds what one request may ask for, so that a guest's batch cannot make the host
//! hold more than [`MAX_BATCH_KEYS`] keys or [`MAX_BATCH_BYTES`] bytes for it.

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
/// Most value bytes one batch request may read.
pub const MAX_BATCH_BYTES: usize = 16 << 20;

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
    async fn get_many(&self, bucket: &str, keys: Vec<String>) -> Result<Vec<Option<(String, Vec<u8>)>>, KvError>;
    async fn set_many(&self, bucket: &str, pairs: Vec<(String, Vec<u8>)>) -> Result<(), KvError>;
    async fn delete_many(&self, bucket: &str, keys: Vec<String>) -> Result<(), KvError>;
}

/// An open bucket: its name within the namespace.
pub struct Bucket {
    name: String,
}

/// A compare-and-swap handle: the key and what it held when the handle was made.
pub struct Cas {
    bucket: String,
    key: String,
    current: Option<Vec<u8>>,
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

/// The namespace's store, or the trap for a namespace without the grant.
fn store(state: &CallState) -> wasmtime::Result<std::sync::Arc<dyn KeyValue>> {
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
        Ok(Ok(self.table.push(Bucket { name: identifier })?))
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
        self.table.delete(bucket)?;
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
        let Cas { bucket, key, current } = self.table.delete(cas)?;
        match kv.compare_and_swap(&bucket, &key, current, value).await {
            Ok(Swapped::Done) => Ok(Ok(())),
            Ok(Swapped::Changed(now)) => {
                let fresh = self.table.push(Cas { bucket, key, current: now })?;
                Ok(Err(CasError::CasFailed(fresh)))
            }
            Err(e) => Ok(Err(CasError::StoreError(e.into()))),
        }
    }
}

impl atomics::HostCas for CallState {
    async fn new(&mut self, bucket: Resource<Bucket>, key: String) -> wasmtime::Result<Result<Resource<Cas>, Error>> {
        let (kv, name) = (store(self)?, self.bucket_name(&bucket)?);
        match kv.get(&name, &key).await {
            Ok(current) => Ok(Ok(self.table.push(Cas { bucket: name, key, current })?)),
            Err(e) => Ok(Err(e.into())),
        }
    }

    async fn current(&mut self, cas: Resource<Cas>) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        Ok(Ok(self.table.get(&cas)?.current.clone()))
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
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
        let found = match kv.get_many(&name, keys).await {
            Ok(found) => found,
            Err(e) => return Ok(Err(e.into())),
        };
        let bytes: usize = found.iter().flatten().map(|(_, v)| v.len()).sum();
        if bytes > MAX_BATCH_BYTES {
            return Ok(Err(Error::Other(format!(
                "the values asked for hold {bytes} bytes; one get-many reads at most {MAX_BATCH_BYTES}"
            ))));
        }
        Ok(Ok(found))
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
