//! A counter, a shared work queue, settings and log lines: a guest's state through the
//! standard wasi:keyvalue, wasi:config and wasi:logging interfaces, from the SDK's bindings.
easyrpc_guest::wit_bindgen::generate!({
    world: "easyrpc-modules:stateful/stateful",
    path: ["../../wit/guest", "wit"],
    runtime_path: "easyrpc_guest::wit_bindgen::rt",
    generate_all,
});
easyrpc_guest::embed_wit!(include_str!("../wit/world.wit"));

use easyrpc_guest::keyvalue::atomics::{self, Cas, CasError};
use easyrpc_guest::keyvalue::{batch, store};
use easyrpc_guest::logging::{log, Level};
use easyrpc_guest::{from_json, to_json};

/// How long a worker that claimed a queue position waits for the producer that claimed it
/// to write the item: a producer numbers its item before it stores it.
const ITEM_WAIT_TRIES: u32 = 1000;

struct Stateful;

fn open(bucket: &str) -> Result<store::Bucket, String> {
    store::open(bucket).map_err(|e| format!("opening bucket {bucket:?}: {e:?}"))
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).into_owned()
}

fn counter(bytes: Option<Vec<u8>>) -> Result<i64, String> {
    bytes.map_or(Ok(0), |b| text(b).parse().map_err(|e| format!("not a counter: {e}")))
}

impl Guest for Stateful {
    fn incr(key: String, by: i64, bucket: String) -> Result<i64, String> {
        atomics::increment(&open(&bucket)?, &key, by).map_err(|e| format!("{e:?}"))
    }

    fn cas_incr(key: String, bucket: String) -> Result<String, String> {
        let bucket = open(&bucket)?;
        let mut cas = Cas::new(&bucket, &key).map_err(|e| format!("{e:?}"))?;
        for tries in 1.. {
            let next = counter(cas.current().map_err(|e| format!("{e:?}"))?)? + 1;
            match atomics::swap(cas, next.to_string().as_bytes()) {
                Ok(()) => return Ok(format!("{{\"value\":{next},\"tries\":{tries}}}")),
                Err(CasError::CasFailed(fresh)) => cas = fresh,
                Err(CasError::StoreError(e)) => return Err(format!("{e:?}")),
            }
        }
        unreachable!("the loop returns")
    }

    fn get(key: String, bucket: String) -> Result<Option<String>, String> {
        Ok(open(&bucket)?.get(&key).map_err(|e| format!("{e:?}"))?.map(text))
    }

    fn set(key: String, value: String, bucket: String) -> Result<bool, String> {
        open(&bucket)?.set(&key, value.as_bytes()).map_err(|e| format!("{e:?}"))?;
        Ok(true)
    }

    fn fill(key: String, size: u32, bucket: String) -> Result<bool, String> {
        open(&bucket)?.set(&key, &vec![b'x'; size as usize]).map_err(|e| format!("{e:?}"))?;
        Ok(true)
    }

    fn delete(key: String, bucket: String) -> Result<bool, String> {
        open(&bucket)?.delete(&key).map_err(|e| format!("{e:?}"))?;
        Ok(true)
    }

    fn keys(bucket: String) -> Result<Vec<String>, String> {
        let bucket = open(&bucket)?;
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let page = bucket.list_keys(cursor.as_deref()).map_err(|e| format!("{e:?}"))?;
            keys.extend(page.keys);
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(keys),
            }
        }
    }

    fn set_many(pairs: String, bucket: String) -> Result<bool, String> {
        let pairs: std::collections::BTreeMap<String, String> = from_json(&pairs)?;
        let pairs: Vec<(String, Vec<u8>)> = pairs.into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
        batch::set_many(&open(&bucket)?, &pairs).map_err(|e| format!("{e:?}"))?;
        Ok(true)
    }

    fn get_many(keys: Vec<String>, bucket: String) -> Result<String, String> {
        let found = batch::get_many(&open(&bucket)?, &keys).map_err(|e| format!("{e:?}"))?;
        let object: std::collections::BTreeMap<String, String> =
            found.into_iter().flatten().map(|(k, v)| (k, text(v))).collect();
        Ok(to_json(&object))
    }

    fn push(queue: String, item: String) -> Result<i64, String> {
        let bucket = open(&format!("queue:{queue}"))?;
        // Number the item first, then store it under its number: two producers never share one.
        let position = atomics::increment(&bucket, "tail", 1).map_err(|e| format!("{e:?}"))?;
        bucket.set(&format!("item:{position}"), item.as_bytes()).map_err(|e| format!("{e:?}"))?;
        Ok(position)
    }

    fn pop(queue: String) -> Result<String, String> {
        let bucket = open(&format!("queue:{queue}"))?;
        // Claim the next position by moving `head` past it with a compare-and-swap: of the
        // workers that read the same head, exactly one moves it.
        let mut cas = Cas::new(&bucket, "head").map_err(|e| format!("{e:?}"))?;
        let position = loop {
            let head = counter(cas.current().map_err(|e| format!("{e:?}"))?)?;
            let tail = counter(bucket.get("tail").map_err(|e| format!("{e:?}"))?)?;
            if head >= tail {
                return Ok("null".to_owned());
            }
            match atomics::swap(cas, (head + 1).to_string().as_bytes()) {
                Ok(()) => break head + 1,
                Err(CasError::CasFailed(fresh)) => cas = fresh,
                Err(CasError::StoreError(e)) => return Err(format!("{e:?}")),
            }
        };
        let key = format!("item:{position}");
        for _ in 0..ITEM_WAIT_TRIES {
            if let Some(item) = bucket.get(&key).map_err(|e| format!("{e:?}"))? {
                bucket.delete(&key).map_err(|e| format!("{e:?}"))?;
                return Ok(text(item));
            }
            easyrpc_guest::sleep(std::time::Duration::from_millis(1));
        }
        Err(format!("item {position} of queue {queue} was numbered but never stored"))
    }

    fn hoard(n: u32) -> Result<u32, String> {
        let mut held = Vec::new();
        for i in 0..n {
            match store::open(&format!("bucket-{i:0>200}")) {
                Ok(bucket) => held.push(bucket),
                Err(e) => return Err(format!("after {i} handles: {e:?}")),
            }
        }
        Ok(held.len() as u32)
    }

    fn setting(key: String) -> Result<Option<String>, String> {
        easyrpc_guest::config::get(&key).map_err(|e| format!("{e:?}"))
    }

    fn settings() -> Result<String, String> {
        let all: std::collections::BTreeMap<String, String> =
            easyrpc_guest::config::get_all().map_err(|e| format!("{e:?}"))?.into_iter().collect();
        Ok(to_json(&all))
    }

    fn log(level: String, message: String, times: u32) -> bool {
        let level = match level.as_str() {
            "trace" => Level::Trace,
            "debug" => Level::Debug,
            "warn" => Level::Warn,
            "error" => Level::Error,
            "critical" => Level::Critical,
            _ => Level::Info,
        };
        for _ in 0..times {
            log(level, "stateful", &message);
        }
        true
    }
}

export!(Stateful);
