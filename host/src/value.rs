//! The dynamic value every call argument and result passes through.
//!
//! Owns [`Value`], the host's one data model between the wire (json or pickle frames) and the
//! WASM runtime (component values). It is wider than JSON where the wire needs it (integers of
//! any size, NaN and infinities, bytes from pickle) and keeps dict order. It knows nothing about
//! WIT types: checking a value against a parameter type is `runtime::convert`'s job.

pub mod json;

use std::collections::HashMap;
use std::fmt;

/// Most decimal digits an integer may have: CPython's own limit for converting between an int
/// and its text (`sys.get_int_max_str_digits()`), so every integer we accept a Python peer can
/// print and read back. It also keeps conversions between digits and binary, which take time
/// quadratic in the length, within a bounded cost per integer.
pub const MAX_INT_DIGITS: usize = 4300;

/// Number of entries up to which a [`DictBuilder`] finds repeated keys by scanning; past it a
/// hash index is cheaper than the scan, and keeps a dict of many keys linear to build.
const SCANNED_KEYS: usize = 16;

/// Builds a dict's entries in first-insertion order, where a repeated key keeps its last value
/// (as Python's `dict` and `json.loads` do). Built in time linear in the number of entries,
/// whatever the keys: hostile input may hold many distinct keys or many repeats of one.
#[derive(Default)]
pub struct DictBuilder {
    entries: Vec<(String, Value)>,
    /// Position of each key in `entries`, kept once there are more than [`SCANNED_KEYS`].
    /// std's hasher is seeded per process, so chosen keys cannot make it collide.
    index: Option<HashMap<String, usize>>,
}

impl DictBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `key`, or replaces its value if it is already there.
    pub fn insert(&mut self, key: String, value: Value) {
        if let Some(index) = &mut self.index {
            match index.get(&key) {
                Some(&at) => self.entries[at].1 = value,
                None => {
                    index.insert(key.clone(), self.entries.len());
                    self.entries.push((key, value));
                }
            }
            return;
        }
        if let Some(slot) = self.entries.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = value;
            return;
        }
        self.entries.push((key, value));
        if self.entries.len() > SCANNED_KEYS {
            self.index = Some(self.entries.iter().enumerate().map(|(at, (k, _))| (k.clone(), at)).collect());
        }
    }

    pub fn finish(self) -> Vec<(String, Value)> {
        self.entries
    }
}

/// Bytes to reserve for writing a string or byte string of `len` bytes: the string and a
/// 1/64 more for what usually follows it (escapes, the rest of its envelope). Reserving only
/// the string leaves a full buffer that the envelope's last bytes then copy whole into a
/// bigger one, a copy that shows in the client's CPU when it sends a big string.
/// Short strings get no more than they need. For the json and pickle writers.
pub fn room_for_string(len: usize) -> usize {
    len + len / 64
}

/// A caller's argument or a function's result, independent of serialization.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    /// Any integer that fits i128 (so every s64 and u64 exactly).
    Int(i128),
    /// An integer beyond i128, kept as its decimal digits (optional leading `-`) so it
    /// round-trips exactly through pass-through functions.
    BigInt(String),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    /// A JSON object / Python dict with string keys, in insertion order.
    Dict(Vec<(String, Value)>),
}

impl Value {
    /// The Python-ish name of the value's kind, used in error messages ("expected s32, got str").
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
        }
    }

    /// Looks up a key of a dict value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Compact JSON text of the value (Python-compatible: `NaN`/`Infinity` tokens, raw UTF-8).
    pub fn to_json(&self) -> String {
        json::to_string(self)
    }
}

impl Value {
    /// The value as JSON text shortened to a readable length, for error messages.
    pub fn brief(&self) -> String {
        const MAX_SHOWN: usize = 80;
        let mut text = self.to_json();
        if text.len() > MAX_SHOWN {
            let mut cut = MAX_SHOWN;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("...");
        }
        text
    }
}

impl fmt::Display for Value {
    /// The value as compact JSON text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i.into())
    }
}
impl From<f64> for Value {
    fn from(x: f64) -> Self {
        Value::Float(x)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(items: Vec<T>) -> Self {
        Value::List(items.into_iter().map(Into::into).collect())
    }
}

impl From<&serde_json::Value> for Value {
    fn from(v: &serde_json::Value) -> Self {
        match v {
            serde_json::Value::Null => Value::None,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Value::Int(i.into())
                } else if let Some(u) = n.as_u64() {
                    Value::Int(u.into())
                } else {
                    Value::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            serde_json::Value::String(s) => Value::Str(s.clone()),
            serde_json::Value::Array(items) => Value::List(items.iter().map(Value::from).collect()),
            serde_json::Value::Object(map) => {
                Value::Dict(map.iter().map(|(k, v)| (k.clone(), Value::from(v))).collect())
            }
        }
    }
}
