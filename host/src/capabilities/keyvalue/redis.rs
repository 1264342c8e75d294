//! The Redis key-value backend: state shared by every host that names the same server.
//!
//! A bucket is one Redis hash, `easyrpc:kv:{namespace length}:{namespace}:{bucket}`; the
//! length keeps any namespace and bucket names apart. Its keys are also in a sorted set beside
//! it (`easyrpc:kv-keys:...`), so that `list-keys` reads pages of keys in order, never values.
//! A namespace's usage (keys, bytes) is a hash beside them. Every write runs as a Lua script that checks the quotas and changes the
//! entry and the usage together, so that quotas hold across hosts; counters use Redis's own
//! 64-bit `HINCRBY`.

use super::{Backend, Scope, PAGE_KEYS};
use crate::runtime::imports::{KeyPage, KvError, Swapped};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};
use std::time::Duration;
use tokio::sync::OnceCell;

/// How long connecting to Redis may take before an operation fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long Redis may take to answer one operation.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Scripts answer 0 for done, or one of these for the quota a write would break.
const OVER_KEYS: i64 = -1;
const OVER_BYTES: i64 = -2;

/// Sets ARGV[1] to ARGV[2] in hash KEYS[1] (its keys listed in sorted set KEYS[3]) within the
/// quotas (ARGV[3] keys, ARGV[4] bytes) counted in hash KEYS[2].
const SET: &str = r#"
local existed = redis.call('HEXISTS', KEYS[1], ARGV[1])
local old = redis.call('HSTRLEN', KEYS[1], ARGV[1])
local keys = tonumber(redis.call('HGET', KEYS[2], 'keys') or '0')
local bytes = tonumber(redis.call('HGET', KEYS[2], 'bytes') or '0')
local add_keys, add_bytes = 0, #ARGV[2] - old
if existed == 0 then add_keys, add_bytes = 1, add_bytes + #ARGV[1] end
if add_keys > 0 and keys + add_keys > tonumber(ARGV[3]) then return {-1, keys + add_keys} end
if add_bytes > 0 and bytes + add_bytes > tonumber(ARGV[4]) then return {-2, bytes + add_bytes} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if existed == 0 then redis.call('ZADD', KEYS[3], 0, ARGV[1]) end
redis.call('HINCRBY', KEYS[2], 'keys', add_keys)
redis.call('HINCRBY', KEYS[2], 'bytes', add_bytes)
return {0, 0}
"#;

/// Removes ARGV[1] from hash KEYS[1], counting it out of KEYS[2].
const DELETE: &str = r#"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
local old = redis.call('HSTRLEN', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HINCRBY', KEYS[2], 'keys', -1)
redis.call('HINCRBY', KEYS[2], 'bytes', -(old + #ARGV[1]))
return 1
"#;

/// Adds ARGV[2] to counter ARGV[1] of hash KEYS[1] within the quotas (ARGV[3] keys, ARGV[4]
/// bytes); a new counter is reckoned at its longest (20 digits) before it is made.
const INCREMENT: &str = r#"
local existed = redis.call('HEXISTS', KEYS[1], ARGV[1])
local old = redis.call('HSTRLEN', KEYS[1], ARGV[1])
if existed == 0 then
  local keys = tonumber(redis.call('HGET', KEYS[2], 'keys') or '0')
  local bytes = tonumber(redis.call('HGET', KEYS[2], 'bytes') or '0')
  if keys + 1 > tonumber(ARGV[3]) then return {-1, keys + 1} end
  if bytes + #ARGV[1] + 20 > tonumber(ARGV[4]) then return {-2, bytes + #ARGV[1] + 20} end
end
redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
-- The sum as text: a Lua number is a double and would round a sum past 2^53.
local sum = redis.call('HGET', KEYS[1], ARGV[1])
local new = #sum
local add_bytes = new - old
if existed == 0 then
  add_bytes = add_bytes + #ARGV[1]
  redis.call('HINCRBY', KEYS[2], 'keys', 1)
  redis.call('ZADD', KEYS[3], 0, ARGV[1])
end
redis.call('HINCRBY', KEYS[2], 'bytes', add_bytes)
return {0, sum}
"#;

/// Sets ARGV[1] to ARGV[4] if it holds ARGV[3] (ARGV[2] = '1') or is absent (ARGV[2] = '0');
/// else answers {1, what it holds} (or {1} when absent). Quotas as in SET (ARGV[5], ARGV[6]).
const COMPARE_AND_SWAP: &str = r#"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '1' then
  if current ~= ARGV[3] then
    if current then return {1, current} else return {1} end
  end
elseif current then
  return {1, current}
end
local old = 0
if current then old = #current end
local keys = tonumber(redis.call('HGET', KEYS[2], 'keys') or '0')
local bytes = tonumber(redis.call('HGET', KEYS[2], 'bytes') or '0')
local add_keys, add_bytes = 0, #ARGV[4] - old
if not current then add_keys, add_bytes = 1, add_bytes + #ARGV[1] end
if add_keys > 0 and keys + add_keys > tonumber(ARGV[5]) then return {-1, keys + add_keys} end
if add_bytes > 0 and bytes + add_bytes > tonumber(ARGV[6]) then return {-2, bytes + add_bytes} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
if not current then redis.call('ZADD', KEYS[3], 0, ARGV[1]) end
redis.call('HINCRBY', KEYS[2], 'keys', add_keys)
redis.call('HINCRBY', KEYS[2], 'bytes', add_bytes)
return {0}
"#;

/// A Redis server, connected on first use and reconnected when the connection drops.
pub struct RedisStore {
    /// The server's URL without credentials, for error texts.
    url: String,
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    set: Script,
    delete: Script,
    increment: Script,
    compare_and_swap: Script,
}

impl RedisStore {
    /// A store on the server at `url` (`redis://host:port[/db]`); nothing is connected yet.
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let shown = without_credentials(url);
        let client = redis::Client::open(url).map_err(|e| anyhow::anyhow!("Redis URL {shown}: {e}"))?;
        Ok(Self {
            url: shown,
            client,
            connection: OnceCell::new(),
            set: Script::new(SET),
            delete: Script::new(DELETE),
            increment: Script::new(INCREMENT),
            compare_and_swap: Script::new(COMPARE_AND_SWAP),
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, KvError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(2);
        let connected = self
            .connection
            .get_or_try_init(|| ConnectionManager::new_with_config(self.client.clone(), config))
            .await
            .map_err(|e| self.failed(e))?;
        Ok(connected.clone())
    }

    fn failed(&self, e: redis::RedisError) -> KvError {
        KvError::Other(format!("the Redis key-value store at {} failed: {e}", self.url))
    }

    fn quota_error(scope: &Scope, code: i64, would: i64) -> Option<KvError> {
        let would = u64::try_from(would).unwrap_or(0);
        match code {
            OVER_KEYS => Some(scope.over_quota("keys", would, scope.quotas.max_keys)),
            OVER_BYTES => Some(scope.over_quota("bytes", would, scope.quotas.max_bytes)),
            _ => None,
        }
    }
}

/// `url` without a user name or password: what guests and logs may see of it.
fn without_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, host)) => format!("{scheme}://{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// `script` invoked on the keys every write script takes: the bucket, the namespace's usage
/// counts, the bucket's sorted set of keys.
fn writing<'a>(script: &'a Script, scope: &Scope, bucket: &str) -> redis::ScriptInvocation<'a> {
    let mut invocation = script.key(bucket_key(scope, bucket));
    invocation.key(usage_key(scope)).key(index_key(scope, bucket));
    invocation
}

/// The Redis key of a namespace's bucket.
fn bucket_key(scope: &Scope, bucket: &str) -> String {
    let ns = &scope.namespace;
    format!("easyrpc:kv:{}:{ns}:{bucket}", ns.len())
}

/// The Redis key of the sorted set of a bucket's keys.
fn index_key(scope: &Scope, bucket: &str) -> String {
    let ns = &scope.namespace;
    format!("easyrpc:kv-keys:{}:{ns}:{bucket}", ns.len())
}

/// The Redis key of a namespace's usage counts.
fn usage_key(scope: &Scope) -> String {
    let ns = &scope.namespace;
    format!("easyrpc:kv-usage:{}:{ns}", ns.len())
}

#[async_trait::async_trait]
impl Backend for RedisStore {
    async fn get(&self, scope: &Scope, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let mut con = self.connection().await?;
        con.hget(bucket_key(scope, bucket), key).await.map_err(|e| self.failed(e))
    }

    async fn set(&self, scope: &Scope, bucket: &str, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        let mut con = self.connection().await?;
        let (code, would): (i64, i64) = writing(&self.set, scope, bucket)
            .arg(key)
            .arg(value)
            .arg(scope.quotas.max_keys)
            .arg(scope.quotas.max_bytes)
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.failed(e))?;
        Self::quota_error(scope, code, would).map_or(Ok(()), Err)
    }

    async fn delete(&self, scope: &Scope, bucket: &str, key: &str) -> Result<(), KvError> {
        let mut con = self.connection().await?;
        let _removed: i64 =
            writing(&self.delete, scope, bucket).arg(key).invoke_async(&mut con).await.map_err(|e| self.failed(e))?;
        Ok(())
    }

    async fn list_keys(&self, scope: &Scope, bucket: &str, cursor: Option<String>) -> Result<KeyPage, KvError> {
        let mut con = self.connection().await?;
        // Keys after the cursor (the last key of the previous page), in byte order; one more
        // than a page tells whether another page follows.
        let from = cursor.map_or_else(|| "-".to_owned(), |last| format!("({last}"));
        let mut keys: Vec<String> = redis::cmd("ZRANGEBYLEX")
            .arg(index_key(scope, bucket))
            .arg(from)
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(PAGE_KEYS + 1)
            .query_async(&mut con)
            .await
            .map_err(|e| self.failed(e))?;
        let more = keys.len() > PAGE_KEYS;
        keys.truncate(PAGE_KEYS);
        let cursor = if more { keys.last().cloned() } else { None };
        Ok(KeyPage { keys, cursor })
    }

    async fn increment(&self, scope: &Scope, bucket: &str, key: &str, delta: i64) -> Result<i64, KvError> {
        let mut con = self.connection().await?;
        let answer: Result<(i64, redis::Value), _> = writing(&self.increment, scope, bucket)
            .arg(key)
            .arg(delta)
            .arg(scope.quotas.max_keys)
            .arg(scope.quotas.max_bytes)
            .invoke_async(&mut con)
            .await;
        match answer {
            Ok((0, redis::Value::BulkString(sum))) => std::str::from_utf8(&sum)
                .ok()
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| KvError::Other(format!("Redis answered the increment of {key} with {sum:?}"))),
            Ok((code, redis::Value::Int(would))) => Err(Self::quota_error(scope, code, would)
                .unwrap_or_else(|| KvError::Other(format!("unexpected answer {code} from Redis")))),
            Ok((code, other)) => Err(KvError::Other(format!("unexpected answer {code}, {other:?} from Redis"))),
            Err(e) if e.to_string().contains("not an integer") => {
                Err(KvError::Other(format!("the value of {key} is not a decimal integer; increment cannot add to it")))
            }
            Err(e) if e.to_string().contains("overflow") => {
                Err(KvError::Other(format!("incrementing {key} by {delta} overflows 64 bits")))
            }
            Err(e) => Err(self.failed(e)),
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
        let mut con = self.connection().await?;
        let present = if expected.is_some() { "1" } else { "0" };
        let answer: Vec<redis::Value> = writing(&self.compare_and_swap, scope, bucket)
            .arg(key)
            .arg(present)
            .arg(expected.unwrap_or_default())
            .arg(value)
            .arg(scope.quotas.max_keys)
            .arg(scope.quotas.max_bytes)
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.failed(e))?;
        let int = |v: Option<&redis::Value>| match v {
            Some(redis::Value::Int(n)) => Some(*n),
            _ => None,
        };
        match (int(answer.first()), answer.get(1)) {
            (Some(0), _) => Ok(Swapped::Done),
            (Some(1), None) => Ok(Swapped::Changed(None)),
            (Some(1), Some(redis::Value::BulkString(now))) => Ok(Swapped::Changed(Some(now.clone()))),
            (Some(code), would) => Err(Self::quota_error(scope, code, int(would).unwrap_or(0))
                .unwrap_or_else(|| KvError::Other(format!("unexpected answer {answer:?} from Redis")))),
            (None, _) => Err(KvError::Other(format!("unexpected answer {answer:?} from Redis"))),
        }
    }

    async fn get_many(&self, scope: &Scope, bucket: &str, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut con = self.connection().await?;
        redis::cmd("HMGET")
            .arg(bucket_key(scope, bucket))
            .arg(keys)
            .query_async(&mut con)
            .await
            .map_err(|e| self.failed(e))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn credentials_never_reach_error_texts() {
        assert_eq!(super::without_credentials("redis://:hunter2@10.0.0.5:6379/0"), "redis://10.0.0.5:6379/0");
        assert_eq!(super::without_credentials("redis://user:pw@host"), "redis://host");
        assert_eq!(super::without_credentials("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
