//! `wasi:keyvalue` backends: the embedded store (default, under the host's data directory) and
//! Redis (state shared by several hosts), chosen per namespace.
//!
//! Owns what both backends share: the scope (every bucket belongs to a namespace, and no name
//! a guest can write reaches another namespace's), the quotas each namespace's store keeps
//! (keys, bytes, value size), and the checks made before a backend is asked. Each backend
//! enforces the quotas atomically with its writes. It does not know about guests or calls: the
//! runtime's `imports::keyvalue` turns the interface into these operations.

pub mod embedded;
pub mod redis;

use crate::runtime::imports::{KeyPage, KeyValue, KvError, Swapped, MAX_BATCH_BYTES};
use std::sync::Arc;

/// Keys a namespace may hold across its buckets, unless its config says otherwise.
pub const DEFAULT_MAX_KEYS: u64 = 100_000;
/// Bytes of keys and values a namespace may hold across its buckets, unless configured.
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;
/// Largest value a namespace may store, unless configured.
pub const DEFAULT_MAX_VALUE_BYTES: u64 = 1 << 20;
/// Longest key.
pub const MAX_KEY_BYTES: usize = 1024;
/// Keys one `list-keys` page holds at most.
pub const PAGE_KEYS: usize = 1000;
/// Keys `get-many` reads at a time at most, checking the bytes read after each chunk (fewer
/// when values may be large: a chunk reads at most the batch's byte budget).
const GET_MANY_CHUNK: usize = 16;

/// A namespace's limits on what it stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quotas {
    pub max_keys: u64,
    /// Keys and values together, in bytes.
    pub max_bytes: u64,
    pub max_value_bytes: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        Self { max_keys: DEFAULT_MAX_KEYS, max_bytes: DEFAULT_MAX_BYTES, max_value_bytes: DEFAULT_MAX_VALUE_BYTES }
    }
}

/// Whose store it is and how much it may hold.
#[derive(Clone, Debug)]
pub struct Scope {
    pub namespace: String,
    pub quotas: Quotas,
}

impl Scope {
    /// The error for a write that would take the namespace past `what`.
    fn over_quota(&self, what: &str, would: u64, max: u64) -> KvError {
        KvError::Other(format!(
            "quota: namespace {} would hold {would} {what}, over its max_{what} of {max}",
            self.namespace
        ))
    }
}

/// What a backend stores, for any namespace: every operation names its scope. The backend
/// checks the quotas atomically with the write that would break them.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    async fn get(&self, scope: &Scope, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    async fn set(&self, scope: &Scope, bucket: &str, key: &str, value: Vec<u8>) -> Result<(), KvError>;
    async fn delete(&self, scope: &Scope, bucket: &str, key: &str) -> Result<(), KvError>;
    async fn list_keys(&self, scope: &Scope, bucket: &str, cursor: Option<String>) -> Result<KeyPage, KvError>;
    async fn increment(&self, scope: &Scope, bucket: &str, key: &str, delta: i64) -> Result<i64, KvError>;
    async fn compare_and_swap(
        &self,
        scope: &Scope,
        bucket: &str,
        key: &str,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> Result<Swapped, KvError>;
    async fn get_many(&self, scope: &Scope, bucket: &str, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, KvError>;
    /// Stores every pair (checked already), in order; stops at the first failure.
    async fn set_many(&self, scope: &Scope, bucket: &str, pairs: Vec<(String, Vec<u8>)>) -> Result<(), KvError> {
        for (key, value) in pairs {
            self.set(scope, bucket, &key, value).await?;
        }
        Ok(())
    }
    /// Removes every key (checked already); stops at the first failure.
    async fn delete_many(&self, scope: &Scope, bucket: &str, keys: Vec<String>) -> Result<(), KvError> {
        for key in keys {
            self.delete(scope, bucket, &key).await?;
        }
        Ok(())
    }
}

/// One namespace's store on a backend: what the runtime's guests see.
pub struct ScopedStore {
    backend: Arc<dyn Backend>,
    scope: Scope,
}

impl ScopedStore {
    pub fn new(backend: Arc<dyn Backend>, scope: Scope) -> Self {
        Self { backend, scope }
    }

    fn check_key(key: &str) -> Result<(), KvError> {
        if key.len() > MAX_KEY_BYTES {
            return Err(KvError::Other(format!("keys are at most {MAX_KEY_BYTES} bytes; this one has {}", key.len())));
        }
        Ok(())
    }

    fn check_value(&self, value: &[u8]) -> Result<(), KvError> {
        let max = self.scope.quotas.max_value_bytes;
        if value.len() as u64 > max {
            return Err(KvError::Other(format!(
                "quota: a value of {} bytes is over namespace {}'s max_value_bytes of {max}",
                value.len(),
                self.scope.namespace
            )));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl KeyValue for ScopedStore {
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Self::check_key(key)?;
        self.backend.get(&self.scope, bucket, key).await
    }

    async fn set(&self, bucket: &str, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        Self::check_key(key)?;
        self.check_value(&value)?;
        self.backend.set(&self.scope, bucket, key, value).await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), KvError> {
        Self::check_key(key)?;
        self.backend.delete(&self.scope, bucket, key).await
    }

    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, KvError> {
        Ok(self.get(bucket, key).await?.is_some())
    }

    async fn list_keys(&self, bucket: &str, cursor: Option<String>) -> Result<KeyPage, KvError> {
        self.backend.list_keys(&self.scope, bucket, cursor).await
    }

    async fn increment(&self, bucket: &str, key: &str, delta: i64) -> Result<i64, KvError> {
        Self::check_key(key)?;
        self.backend.increment(&self.scope, bucket, key, delta).await
    }

    async fn compare_and_swap(
        &self,
        bucket: &str,
        key: &str,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> Result<Swapped, KvError> {
        Self::check_key(key)?;
        self.check_value(&value)?;
        self.backend.compare_and_swap(&self.scope, bucket, key, expected, value).await
    }

    async fn get_many(&self, bucket: &str, keys: Vec<String>) -> Result<Vec<Option<(String, Vec<u8>)>>, KvError> {
        keys.iter().try_for_each(|k| Self::check_key(k))?;
        // Read in small chunks and stop once past the budget: the values asked for may hold
        // far more than one request should make the host read.
        let mut values = Vec::with_capacity(keys.len());
        let mut bytes = 0;
        let max_value = usize::try_from(self.scope.quotas.max_value_bytes).unwrap_or(usize::MAX).max(1);
        let chunk = (MAX_BATCH_BYTES / max_value).clamp(1, GET_MANY_CHUNK);
        for chunk in keys.chunks(chunk) {
            let read = self.backend.get_many(&self.scope, bucket, chunk).await?;
            bytes += read.iter().flatten().map(Vec::len).sum::<usize>();
            if bytes > MAX_BATCH_BYTES {
                return Err(KvError::Other(format!(
                    "the values asked for hold more than {MAX_BATCH_BYTES} bytes, what one get-many reads at most"
                )));
            }
            values.extend(read);
        }
        Ok(keys.into_iter().zip(values).map(|(k, v)| v.map(|v| (k, v))).collect())
    }

    async fn set_many(&self, bucket: &str, pairs: Vec<(String, Vec<u8>)>) -> Result<(), KvError> {
        for (key, value) in &pairs {
            Self::check_key(key)?;
            self.check_value(value)?;
        }
        self.backend.set_many(&self.scope, bucket, pairs).await
    }

    async fn delete_many(&self, bucket: &str, keys: Vec<String>) -> Result<(), KvError> {
        keys.iter().try_for_each(|k| Self::check_key(k))?;
        self.backend.delete_many(&self.scope, bucket, keys).await
    }
}

/// The decimal integer a counter's value holds (absent: 0), as `increment` reads it: exactly
/// what Redis's `HINCRBY` takes (an optional `-`, digits, no leading zero, no spaces), so that
/// both backends agree on what a counter is.
fn counter_value(value: Option<&[u8]>, key: &str) -> Result<i64, KvError> {
    let Some(bytes) = value else { return Ok(0) };
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    let canonical = !digits.is_empty()
        && digits.iter().all(u8::is_ascii_digit)
        && (digits[0] != b'0' || (digits.len() == 1 && digits.len() == bytes.len()));
    canonical.then(|| std::str::from_utf8(bytes).ok()?.parse::<i64>().ok()).flatten().ok_or_else(|| {
        KvError::Other(format!("the value of {key} is not a decimal integer; increment cannot add to it"))
    })
}

/// `current + delta`, or the error for a counter that would overflow.
fn add_to_counter(current: i64, delta: i64, key: &str) -> Result<i64, KvError> {
    current.checked_add(delta).ok_or_else(|| KvError::Other(format!("incrementing {key} by {delta} overflows 64 bits")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_decimal_text() {
        assert_eq!(counter_value(None, "k"), Ok(0));
        assert_eq!(counter_value(Some(b"41"), "k"), Ok(41));
        assert_eq!(counter_value(Some(b"-7"), "k"), Ok(-7));
        assert!(counter_value(Some(b"4.5"), "k").is_err());
        assert_eq!(counter_value(Some(b"0"), "k"), Ok(0));
        for refused in [&b" 5"[..], b"+5", b"007", b"-0", b"-", b"", b"99999999999999999999"] {
            assert!(counter_value(Some(refused), "k").is_err(), "{:?}", String::from_utf8_lossy(refused));
        }
        assert!(counter_value(Some(&[0xff, 0]), "k").is_err());
        assert!(add_to_counter(i64::MAX, 1, "k").is_err());
        assert_eq!(add_to_counter(1, -3, "k"), Ok(-2));
    }
}
