//! A caller's [`Value`] checked against a parameter's [`WitType`], and built into whatever the
//! caller of [`lower`] needs: the guest's value (the runtime, through [`Lowered`]) or nothing
//! at all (a client checking arguments before it sends them, through [`check`]).
//!
//! Owns the JSON mapping of every WIT type (documented in wit/README.md) as the rules of
//! acceptance, and the error that names the parameter and the path inside it
//! (`point.x: expected u8, got 300`). Both sides run the same rules, so a value the client
//! accepts is a value the host accepts. It knows nothing of wasmtime.
//!
//! Mapping: bool <-> bool; integers <-> int (range-checked; Python's bools count as 0/1);
//! floats <-> float (ints accepted); char <-> one-character str; string <-> str; `json` <-> any
//! value; list <-> list (bytes accepted for `list<u8>`); record <-> dict by snake_case field
//! name (missing option fields are none); tuple <-> list of the exact length; variant <->
//! `{"case": payload}`, or `"case"` without payload; enum <-> `"case"`; option <-> null or the
//! value, except when the inner type can itself be null (option, json): then some(v) is
//! `{"some": v}`; result <-> `{"ok": v}` / `{"err": e}`; flags <-> list of flag names.

use super::{names, snake_case, WitType};
use crate::value::Value;

/// A value that does not fit its parameter's type: `path: message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ValueError {
    /// Parameter name and the way into the value: `points[2].x`.
    pub path: String,
    pub message: String,
}

/// What [`lower`] builds from an accepted value, one constructor per WIT value kind. Names of
/// record fields, variant cases, enum cases and flags are the type's own (kebab-case).
pub trait Lowered: Sized {
    fn bool(b: bool) -> Self;
    fn s8(i: i8) -> Self;
    fn u8(i: u8) -> Self;
    fn s16(i: i16) -> Self;
    fn u16(i: u16) -> Self;
    fn s32(i: i32) -> Self;
    fn u32(i: u32) -> Self;
    fn s64(i: i64) -> Self;
    fn u64(i: u64) -> Self;
    fn f32(x: f32) -> Self;
    fn f64(x: f64) -> Self;
    fn char(c: char) -> Self;
    fn string(s: &str) -> Self;
    /// Any value, for a `json` parameter (the guest takes its JSON text).
    fn json(value: &Value) -> Self;
    fn list(items: Vec<Self>) -> Self;
    /// A `list<u8>` given as bytes.
    fn bytes(bytes: &[u8]) -> Self;
    fn record(fields: Vec<(&str, Self)>) -> Self;
    fn tuple(items: Vec<Self>) -> Self;
    fn variant(case: &str, payload: Option<Self>) -> Self;
    fn enum_case(case: &str) -> Self;
    fn option(inner: Option<Self>) -> Self;
    fn result(outcome: Result<Option<Self>, Option<Self>>) -> Self;
    fn flags(set: Vec<&str>) -> Self;
}

/// A check builds nothing: no copy of a string argument, no JSON printed, no list allocated.
impl Lowered for () {
    fn bool(_: bool) {}
    fn s8(_: i8) {}
    fn u8(_: u8) {}
    fn s16(_: i16) {}
    fn u16(_: u16) {}
    fn s32(_: i32) {}
    fn u32(_: u32) {}
    fn s64(_: i64) {}
    fn u64(_: u64) {}
    fn f32(_: f32) {}
    fn f64(_: f64) {}
    fn char(_: char) {}
    fn string(_: &str) {}
    fn json(_: &Value) {}
    fn list(_: Vec<()>) {}
    fn bytes(_: &[u8]) {}
    fn record(_: Vec<(&str, ())>) {}
    fn tuple(_: Vec<()>) {}
    fn variant(_: &str, _: Option<()>) {}
    fn enum_case(_: &str) {}
    fn option(_: Option<()>) {}
    fn result(_: Result<Option<()>, Option<()>>) {}
    fn flags(_: Vec<&str>) {}
}

/// Whether `value` is accepted for a parameter of type `ty`; `path` starts as the parameter name.
pub fn check(value: &Value, ty: &WitType, path: &str) -> Result<(), ValueError> {
    lower::<()>(value, ty, path)
}

fn mismatch(path: &str, ty: &WitType, got: &Value) -> ValueError {
    ValueError { path: path.to_owned(), message: format!("expected {ty}, got {}", got.brief()) }
}

fn error(path: &str, message: String) -> ValueError {
    ValueError { path: path.to_owned(), message }
}

/// Checks a caller's value for a parameter of type `ty` and builds `L` from it; `path` starts
/// as the parameter name.
pub fn lower<L: Lowered>(value: &Value, ty: &WitType, path: &str) -> Result<L, ValueError> {
    Ok(match ty {
        WitType::Bool => match value {
            Value::Bool(b) => L::bool(*b),
            _ => return Err(mismatch(path, ty, value)),
        },
        WitType::S8 => L::s8(int_in_range(value, ty, path)?),
        WitType::U8 => L::u8(int_in_range(value, ty, path)?),
        WitType::S16 => L::s16(int_in_range(value, ty, path)?),
        WitType::U16 => L::u16(int_in_range(value, ty, path)?),
        WitType::S32 => L::s32(int_in_range(value, ty, path)?),
        WitType::U32 => L::u32(int_in_range(value, ty, path)?),
        WitType::S64 => L::s64(int_in_range(value, ty, path)?),
        WitType::U64 => L::u64(int_in_range(value, ty, path)?),
        WitType::F32 => {
            let x = float(value, ty, path)?;
            if x.is_finite() && x.abs() > f64::from(f32::MAX) {
                return Err(error(path, format!("{x} is out of range for f32")));
            }
            L::f32(x as f32)
        }
        WitType::F64 => L::f64(float(value, ty, path)?),
        WitType::Char => match value {
            Value::Str(s) => {
                let mut chars = s.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => L::char(c),
                    _ => return Err(mismatch(path, ty, value)),
                }
            }
            _ => return Err(mismatch(path, ty, value)),
        },
        WitType::String => match value {
            Value::Str(s) => L::string(s),
            _ => return Err(mismatch(path, ty, value)),
        },
        WitType::Json => L::json(value),
        WitType::List { element } => match value {
            Value::List(items) => L::list(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| lower(item, element, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Bytes(bytes) if **element == WitType::U8 => L::bytes(bytes),
            _ => return Err(mismatch(path, ty, value)),
        },
        WitType::Record { fields, .. } => {
            let Value::Dict(entries) = value else { return Err(mismatch(path, ty, value)) };
            // Each field has two names, so a dict (whose keys differ) with more entries than
            // that has an unknown one among its first 2n+1: both scans stay within the type's size.
            if let Some((unknown, _)) = entries.iter().find(|(k, _)| !fields.iter().any(|f| names(&f.name, k))) {
                return Err(error(path, format!("unknown field '{unknown}' for {ty}")));
            }
            let mut out = Vec::with_capacity(fields.len());
            for field in fields {
                let field_path = format!("{path}.{}", snake_case(&field.name));
                let given = entries.iter().find(|(k, _)| names(&field.name, k)).map(|(_, v)| v);
                let lowered = match given {
                    Some(v) => lower(v, &field.ty, &field_path)?,
                    None if field.ty.is_option() => L::option(None),
                    None => return Err(ValueError { path: field_path, message: "missing field".to_owned() }),
                };
                out.push((field.name.as_str(), lowered));
            }
            L::record(out)
        }
        WitType::Tuple { elements } => match value {
            Value::List(items) if items.len() == elements.len() => L::tuple(
                items
                    .iter()
                    .zip(elements)
                    .enumerate()
                    .map(|(i, (item, ety))| lower(item, ety, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
            _ => return Err(mismatch(path, ty, value)),
        },
        WitType::Variant { cases, .. } => {
            let (case_name, payload) = match value {
                Value::Str(s) => (s.as_str(), None),
                Value::Dict(entries) if entries.len() == 1 => (entries[0].0.as_str(), Some(&entries[0].1)),
                _ => return Err(mismatch(path, ty, value)),
            };
            let Some(case) = cases.iter().find(|c| names(&c.name, case_name)) else {
                return Err(error(path, format!("unknown case '{case_name}' for {ty}")));
            };
            let case_path = format!("{path}.{case_name}");
            let payload = match (&case.ty, payload) {
                (Some(pty), Some(p)) => Some(lower(p, pty, &case_path)?),
                (Some(pty), None) => {
                    return Err(ValueError { path: case_path, message: format!("missing {pty} payload") })
                }
                (None, None) | (None, Some(Value::None)) => None,
                (None, Some(p)) => {
                    return Err(ValueError {
                        path: case_path,
                        message: format!("case has no payload, got {}", p.brief()),
                    })
                }
            };
            L::variant(&case.name, payload)
        }
        WitType::Enum { cases, .. } => match value {
            Value::Str(s) => match cases.iter().find(|c| names(c, s)) {
                Some(c) => L::enum_case(c),
                None => return Err(error(path, format!("unknown case '{s}' for {ty}"))),
            },
            _ => return Err(mismatch(path, ty, value)),
        },
        WitType::Option { inner } => match value {
            Value::None => L::option(None),
            _ if inner_may_be_null(inner) => match value {
                Value::Dict(entries) if entries.len() == 1 && entries[0].0 == "some" => {
                    L::option(Some(lower(&entries[0].1, inner, &format!("{path}.some"))?))
                }
                _ => {
                    let message = format!("expected null or {{\"some\": ...}} for {ty}, got {}", value.brief());
                    return Err(error(path, message));
                }
            },
            _ => L::option(Some(lower(value, inner, path)?)),
        },
        WitType::Result { ok, err } => {
            let Value::Dict(entries) = value else { return Err(mismatch(path, ty, value)) };
            let [(key, payload)] = entries.as_slice() else { return Err(mismatch(path, ty, value)) };
            let (payload_ty, is_ok) = match key.as_str() {
                "ok" => (ok, true),
                "err" => (err, false),
                _ => return Err(mismatch(path, ty, value)),
            };
            let inner = match payload_ty {
                Some(t) => Some(lower(payload, t, &format!("{path}.{key}"))?),
                None => None,
            };
            L::result(if is_ok { Ok(inner) } else { Err(inner) })
        }
        WitType::Flags { flags, .. } => {
            let Value::List(items) = value else { return Err(mismatch(path, ty, value)) };
            let mut set: Vec<&str> = Vec::with_capacity(items.len());
            for item in items {
                let found = item.as_str().and_then(|s| flags.iter().find(|f| names(f, s)));
                match found {
                    Some(f) if !set.contains(&f.as_str()) => set.push(f),
                    Some(_) => {}
                    None => return Err(error(path, format!("unknown flag {} for {ty}", item.brief()))),
                }
            }
            L::flags(set)
        }
        WitType::Unsupported { description } => {
            return Err(error(path, format!("values of type {description} cannot be sent")))
        }
    })
}

/// True when the JSON form of `ty` can be null, so `option<ty>` needs the `{"some": v}` form.
pub fn inner_may_be_null(ty: &WitType) -> bool {
    matches!(ty, WitType::Option { .. } | WitType::Json)
}

fn int_in_range<T: TryFrom<i128>>(value: &Value, ty: &WitType, path: &str) -> Result<T, ValueError> {
    let i = match value {
        Value::Int(i) => *i,
        Value::Bool(b) => i128::from(*b),
        _ => return Err(mismatch(path, ty, value)),
    };
    T::try_from(i).map_err(|_| mismatch(path, ty, value))
}

fn float(value: &Value, ty: &WitType, path: &str) -> Result<f64, ValueError> {
    match value {
        Value::Float(x) => Ok(*x),
        Value::Int(i) => Ok(*i as f64),
        _ => Err(mismatch(path, ty, value)),
    }
}
