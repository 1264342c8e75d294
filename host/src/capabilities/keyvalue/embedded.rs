//! The embedded key-value backend: one redb database file under the host's data directory,
//! nothing to install, surviving restarts.
//!
//! Reads run where they are asked, on a snapshot of the last commit. Writes go to one writer
//! thread, which applies every write waiting at that moment in one transaction and commits it
//! durably before any of them is answered: a write that was answered survives a crash, and
//! many concurrent writers share one disk flush. Atomic operations (increment, compare-and-swap,
//! the quota checks) are atomic because that thread is the only writer.

use super::{add_to_counter, counter_value, Backend, Scope, PAGE_KEYS};
use crate::runtime::imports::{KeyPage, KvError, Swapped};
use redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition};
use std::path::Path;
use std::sync::{mpsc, Arc};
use tokio::sync::oneshot;

/// Every namespace's entries, keyed by (namespace, bucket, key).
const ENTRIES: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("entries");
/// What each namespace holds: (keys, bytes of keys and values).
const USAGE: TableDefinition<&str, (u64, u64)> = TableDefinition::new("usage");
/// Writes applied in one transaction at most.
const MAX_WRITES_PER_COMMIT: usize = 512;
/// The file's name in the data directory.
pub const FILE_NAME: &str = "keyvalue.redb";

/// The embedded store of a host: shared by every namespace whose config chooses it.
pub struct EmbeddedStore {
    db: Arc<Database>,
    writes: mpsc::Sender<Write>,
}

/// A write waiting for the writer thread, and where its answer goes.
struct Write {
    scope: Scope,
    bucket: String,
    key: String,
    op: WriteOp,
    answer: oneshot::Sender<Result<Written, KvError>>,
}

enum WriteOp {
    Set(Vec<u8>),
    Delete,
    Increment(i64),
    CompareAndSwap { expected: Option<Vec<u8>>, value: Vec<u8> },
}

enum Written {
    Done,
    Counter(i64),
    Swapped(Swapped),
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `data_dir`, and starts its writer thread.
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| anyhow::anyhow!("creating the data directory {}: {e}", data_dir.display()))?;
        let path = data_dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|e| {
            anyhow::anyhow!(
                "opening the key-value store {} (is another host using this data_dir?): {e}",
                path.display()
            )
        })?;
        let setup = db.begin_write()?;
        setup.open_table(ENTRIES)?;
        setup.open_table(USAGE)?;
        setup.commit()?;
        let db = Arc::new(db);
        let (writes, queue) = mpsc::channel();
        let writer_db = db.clone();
        std::thread::Builder::new().name("easyrpc-kv-writer".into()).spawn(move || write_loop(&writer_db, &queue))?;
        Ok(Self { db, writes })
    }

    async fn write(&self, scope: &Scope, bucket: &str, key: &str, op: WriteOp) -> Result<Written, KvError> {
        let (answer, answered) = oneshot::channel();
        let write = Write { scope: scope.clone(), bucket: bucket.to_owned(), key: key.to_owned(), op, answer };
        self.writes.send(write).map_err(|_| KvError::Other("the key-value store has stopped".into()))?;
        answered.await.map_err(|_| KvError::Other("the key-value store stopped before the write".into()))?
    }

    /// Queues every write at once, so that the writer applies them in as few commits as it
    /// can, and waits for each. Each write is applied or refused on its own (a batch is not
    /// atomic); the first refusal is the answer.
    async fn write_all(&self, scope: &Scope, bucket: &str, writes: Vec<(String, WriteOp)>) -> Result<(), KvError> {
        let mut answers = Vec::with_capacity(writes.len());
        for (key, op) in writes {
            let (answer, answered) = oneshot::channel();
            let write = Write { scope: scope.clone(), bucket: bucket.to_owned(), key, op, answer };
            self.writes.send(write).map_err(|_| KvError::Other("the key-value store has stopped".into()))?;
            answers.push(answered);
        }
        for answered in answers {
            answered.await.map_err(|_| KvError::Other("the key-value store stopped before the write".into()))??;
        }
        Ok(())
    }

    fn read<T>(
        &self,
        read: impl FnOnce(&redb::ReadOnlyTable<(&str, &str, &str), &[u8]>) -> redb::Result<T>,
    ) -> Result<T, KvError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(ENTRIES).map_err(storage)?;
        read(&table).map_err(storage)
    }
}

fn storage(e: impl std::fmt::Display) -> KvError {
    KvError::Other(format!("the embedded key-value store failed: {e}"))
}

#[async_trait::async_trait]
impl Backend for EmbeddedStore {
    async fn get(&self, scope: &Scope, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.read(|t| Ok(t.get((scope.namespace.as_str(), bucket, key))?.map(|v| v.value().to_vec())))
    }

    async fn set(&self, scope: &Scope, bucket: &str, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        self.write(scope, bucket, key, WriteOp::Set(value)).await.map(|_| ())
    }

    async fn delete(&self, scope: &Scope, bucket: &str, key: &str) -> Result<(), KvError> {
        self.write(scope, bucket, key, WriteOp::Delete).await.map(|_| ())
    }

    async fn list_keys(&self, scope: &Scope, bucket: &str, cursor: Option<String>) -> Result<KeyPage, KvError> {
        let ns = scope.namespace.as_str();
        let start = cursor.as_deref().unwrap_or("");
        self.read(|t| {
            let mut keys = Vec::new();
            let mut more = false;
            for entry in t.range((ns, bucket, start)..)? {
                let (k, _) = entry?;
                let (entry_ns, entry_bucket, key) = k.value();
                if entry_ns != ns || entry_bucket != bucket {
                    break;
                }
                if cursor.is_some() && key == start {
                    continue; // the cursor is the last key of the previous page
                }
                if keys.len() == PAGE_KEYS {
                    more = true;
                    break;
                }
                keys.push(key.to_owned());
            }
            let cursor = if more { keys.last().cloned() } else { None };
            Ok(KeyPage { keys, cursor })
        })
    }

    async fn increment(&self, scope: &Scope, bucket: &str, key: &str, delta: i64) -> Result<i64, KvError> {
        match self.write(scope, bucket, key, WriteOp::Increment(delta)).await? {
            Written::Counter(n) => Ok(n),
            _ => Err(KvError::Other("the key-value store answered an increment with something else".into())),
        }
    }

    async fn compare_and_swap(
        &self,
        scope: &Scope,
        bucket: &str,
        key: &str,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> Result<Swapped, KvError> {
        match self.write(scope, bucket, key, WriteOp::CompareAndSwap { expected, value }).await? {
            Written::Swapped(swapped) => Ok(swapped),
            _ => Err(KvError::Other("the key-value store answered a swap with something else".into())),
        }
    }

    async fn set_many(&self, scope: &Scope, bucket: &str, pairs: Vec<(String, Vec<u8>)>) -> Result<(), KvError> {
        self.write_all(scope, bucket, pairs.into_iter().map(|(k, v)| (k, WriteOp::Set(v))).collect()).await
    }

    async fn delete_many(&self, scope: &Scope, bucket: &str, keys: Vec<String>) -> Result<(), KvError> {
        self.write_all(scope, bucket, keys.into_iter().map(|k| (k, WriteOp::Delete)).collect()).await
    }

    async fn get_many(&self, scope: &Scope, bucket: &str, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        let ns = scope.namespace.as_str();
        self.read(|t| keys.iter().map(|k| Ok(t.get((ns, bucket, k.as_str()))?.map(|v| v.value().to_vec()))).collect())
    }
}

/// The writer thread: takes every write waiting, applies them in one transaction, commits,
/// answers. Ends when the store is dropped.
fn write_loop(db: &Database, queue: &mpsc::Receiver<Write>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_WRITES_PER_COMMIT {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        match apply_batch(db, &mut batch) {
            Ok(results) => {
                for (write, result) in batch.into_iter().zip(results) {
                    let _ = write.answer.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "the embedded key-value store failed to commit");
                for write in batch {
                    let _ = write.answer.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Applies `batch` in one durable transaction: each write's own result (a write refused by a
/// quota changes nothing), or the error that kept the whole batch from committing.
fn apply_batch(db: &Database, batch: &mut [Write]) -> Result<Vec<Result<Written, KvError>>, KvError> {
    let txn = db.begin_write().map_err(storage)?;
    let results = {
        let mut entries = txn.open_table(ENTRIES).map_err(storage)?;
        let mut usage = txn.open_table(USAGE).map_err(storage)?;
        let mut results = Vec::with_capacity(batch.len());
        for write in batch.iter_mut() {
            let op = std::mem::replace(&mut write.op, WriteOp::Delete);
            results.push(apply(&mut entries, &mut usage, write, op));
        }
        results
    };
    txn.commit().map_err(storage)?;
    Ok(results)
}

type Entries<'t> = Table<'t, (&'static str, &'static str, &'static str), &'static [u8]>;
type Usage<'t> = Table<'t, &'static str, (u64, u64)>;

fn apply(entries: &mut Entries<'_>, usage: &mut Usage<'_>, write: &Write, op: WriteOp) -> Result<Written, KvError> {
    let Write { scope, bucket, key, .. } = write;
    let id = (scope.namespace.as_str(), bucket.as_str(), key.as_str());
    let current = entries.get(id).map_err(storage)?.map(|v| v.value().to_vec());
    let (new_value, answer) = match op {
        WriteOp::Set(value) => (Some(value), Written::Done),
        WriteOp::Delete => (None, Written::Done),
        WriteOp::Increment(delta) => {
            let sum = add_to_counter(counter_value(current.as_deref(), key)?, delta, key)?;
            (Some(sum.to_string().into_bytes()), Written::Counter(sum))
        }
        WriteOp::CompareAndSwap { expected, value } => {
            if expected != current {
                return Ok(Written::Swapped(Swapped::Changed(current)));
            }
            (Some(value), Written::Swapped(Swapped::Done))
        }
    };
    let (keys, bytes) = usage.get(scope.namespace.as_str()).map_err(storage)?.map_or((0, 0), |u| u.value());
    let size = |v: &Option<Vec<u8>>| v.as_ref().map_or(0, |v| (key.len() + v.len()) as u64);
    let new_keys = (keys + u64::from(new_value.is_some())).saturating_sub(u64::from(current.is_some()));
    let new_bytes = (bytes + size(&new_value)).saturating_sub(size(&current));
    let quotas = scope.quotas;
    if new_keys > keys && new_keys > quotas.max_keys {
        return Err(scope.over_quota("keys", new_keys, quotas.max_keys));
    }
    if new_bytes > bytes && new_bytes > quotas.max_bytes {
        return Err(scope.over_quota("bytes", new_bytes, quotas.max_bytes));
    }
    match &new_value {
        Some(value) => entries.insert(id, value.as_slice()).map(drop).map_err(storage)?,
        None if current.is_some() => entries.remove(id).map(drop).map_err(storage)?,
        None => return Ok(answer),
    }
    usage.insert(scope.namespace.as_str(), (new_keys, new_bytes)).map_err(storage)?;
    Ok(answer)
}
