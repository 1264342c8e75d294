//! [`Value`] <-> component [`Val`], checked against the parameter's [`WitType`].
//!
//! Owns building the guest's values from callers' values (the rules of acceptance are
//! `signature::lower`'s, shared with the client's argument check) and reading results back. It
//! does not bind arguments to parameters (`signature`) or run anything (`sandbox`).

use crate::signature::{inner_may_be_null, lower, snake_case, Lowered, ValueError, WitType};
use crate::value::{json, Value};
use wasmtime::component::Val;

/// The guest's value of an accepted argument.
impl Lowered for Val {
    fn bool(b: bool) -> Self {
        Val::Bool(b)
    }
    fn s8(i: i8) -> Self {
        Val::S8(i)
    }
    fn u8(i: u8) -> Self {
        Val::U8(i)
    }
    fn s16(i: i16) -> Self {
        Val::S16(i)
    }
    fn u16(i: u16) -> Self {
        Val::U16(i)
    }
    fn s32(i: i32) -> Self {
        Val::S32(i)
    }
    fn u32(i: u32) -> Self {
        Val::U32(i)
    }
    fn s64(i: i64) -> Self {
        Val::S64(i)
    }
    fn u64(i: u64) -> Self {
        Val::U64(i)
    }
    fn f32(x: f32) -> Self {
        Val::Float32(x)
    }
    fn f64(x: f64) -> Self {
        Val::Float64(x)
    }
    fn char(c: char) -> Self {
        Val::Char(c)
    }
    fn string(s: &str) -> Self {
        Val::String(s.to_owned())
    }
    fn json(value: &Value) -> Self {
        Val::String(json::to_string(value))
    }
    fn list(items: Vec<Self>) -> Self {
        Val::List(items)
    }
    fn bytes(bytes: &[u8]) -> Self {
        Val::List(bytes.iter().map(|b| Val::U8(*b)).collect())
    }
    fn record(fields: Vec<(&str, Self)>) -> Self {
        Val::Record(fields.into_iter().map(|(name, v)| (name.to_owned(), v)).collect())
    }
    fn tuple(items: Vec<Self>) -> Self {
        Val::Tuple(items)
    }
    fn variant(case: &str, payload: Option<Self>) -> Self {
        Val::Variant(case.to_owned(), payload.map(Box::new))
    }
    fn enum_case(case: &str) -> Self {
        Val::Enum(case.to_owned())
    }
    fn option(inner: Option<Self>) -> Self {
        Val::Option(inner.map(Box::new))
    }
    fn result(outcome: Result<Option<Self>, Option<Self>>) -> Self {
        Val::Result(outcome.map(|v| v.map(Box::new)).map_err(|e| e.map(Box::new)))
    }
    fn flags(set: Vec<&str>) -> Self {
        Val::Flags(set.into_iter().map(str::to_owned).collect())
    }
}

/// Converts a caller's value for a parameter of type `ty`; `path` starts as the parameter name.
pub fn to_val(value: &Value, ty: &WitType, path: &str) -> Result<Val, ValueError> {
    lower(value, ty, path)
}

/// Converts a function's result back to a [`Value`]. Fails only when the guest broke a
/// convention (invalid text in a `json` result) or sent a value its type does not allow.
pub fn from_val(val: &Val, ty: &WitType) -> Result<Value, ValueError> {
    from_val_at(val, ty, "result")
}

fn from_val_at(val: &Val, ty: &WitType, path: &str) -> Result<Value, ValueError> {
    let bad = || ValueError { path: path.to_owned(), message: format!("the function returned {val:?} for {ty}") };
    Ok(match (val, ty) {
        (Val::String(s), WitType::Json) => json::parse(s).map_err(|e| ValueError {
            path: path.to_owned(),
            message: format!("the function returned invalid JSON: {e}"),
        })?,
        (Val::Bool(b), _) => Value::Bool(*b),
        (Val::S8(i), _) => Value::Int((*i).into()),
        (Val::U8(i), _) => Value::Int((*i).into()),
        (Val::S16(i), _) => Value::Int((*i).into()),
        (Val::U16(i), _) => Value::Int((*i).into()),
        (Val::S32(i), _) => Value::Int((*i).into()),
        (Val::U32(i), _) => Value::Int((*i).into()),
        (Val::S64(i), _) => Value::Int((*i).into()),
        (Val::U64(i), _) => Value::Int((*i).into()),
        (Val::Float32(x), _) => Value::Float(f64::from(*x)),
        (Val::Float64(x), _) => Value::Float(*x),
        (Val::Char(c), _) => Value::Str(c.to_string()),
        (Val::String(s), _) => Value::Str(s.clone()),
        (Val::List(items), WitType::List { element }) => Value::List(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| from_val_at(v, element, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        (Val::Record(fields), WitType::Record { fields: tys, .. }) => Value::Dict(
            fields
                .iter()
                .zip(tys)
                .map(|((name, v), f)| {
                    let key = snake_case(name);
                    let field_path = format!("{path}.{key}");
                    Ok((key, from_val_at(v, &f.ty, &field_path)?))
                })
                .collect::<Result<_, ValueError>>()?,
        ),
        (Val::Tuple(items), WitType::Tuple { elements }) => Value::List(
            items
                .iter()
                .zip(elements)
                .enumerate()
                .map(|(i, (v, t))| from_val_at(v, t, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        (Val::Variant(name, payload), WitType::Variant { cases, .. }) => {
            let case = cases.iter().find(|c| c.name == *name).ok_or_else(bad)?;
            match (payload, &case.ty) {
                (Some(p), Some(t)) => {
                    let key = snake_case(name);
                    let inner = from_val_at(p, t, &format!("{path}.{key}"))?;
                    Value::Dict(vec![(key, inner)])
                }
                _ => Value::Str(snake_case(name)),
            }
        }
        (Val::Enum(name), _) => Value::Str(snake_case(name)),
        (Val::Option(None), _) => Value::None,
        (Val::Option(Some(v)), WitType::Option { inner }) => {
            let v = from_val_at(v, inner, path)?;
            if inner_may_be_null(inner) {
                Value::Dict(vec![("some".to_owned(), v)])
            } else {
                v
            }
        }
        (Val::Result(r), WitType::Result { ok, err }) => {
            let (key, payload, t) = match r {
                Ok(p) => ("ok", p, ok),
                Err(p) => ("err", p, err),
            };
            let inner = match (payload, t) {
                (Some(p), Some(t)) => from_val_at(p, t, &format!("{path}.{key}"))?,
                _ => Value::None,
            };
            Value::Dict(vec![(key.to_owned(), inner)])
        }
        (Val::Flags(names), _) => Value::List(names.iter().map(|n| Value::Str(snake_case(n))).collect()),
        _ => return Err(bad()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::check;
    use crate::signature::{Case, Field};

    fn v(text: &str) -> Value {
        json::parse(text).unwrap()
    }

    fn round_trip(text: &str, ty: &WitType) -> String {
        let val = to_val(&v(text), ty, "x").unwrap_or_else(|e| panic!("{text} as {ty}: {e}"));
        json::to_string(&from_val(&val, ty).unwrap())
    }

    fn err(text: &str, ty: &WitType) -> String {
        to_val(&v(text), ty, "x").unwrap_err().to_string()
    }

    fn list(t: WitType) -> WitType {
        WitType::List { element: Box::new(t) }
    }
    fn option(t: WitType) -> WitType {
        WitType::Option { inner: Box::new(t) }
    }

    #[test]
    fn integers_at_their_extremes() {
        let cases = [
            (WitType::S8, i128::from(i8::MIN), i128::from(i8::MAX)),
            (WitType::U8, 0, i128::from(u8::MAX)),
            (WitType::S16, i128::from(i16::MIN), i128::from(i16::MAX)),
            (WitType::U16, 0, i128::from(u16::MAX)),
            (WitType::S32, i128::from(i32::MIN), i128::from(i32::MAX)),
            (WitType::U32, 0, i128::from(u32::MAX)),
            (WitType::S64, i128::from(i64::MIN), i128::from(i64::MAX)),
            (WitType::U64, 0, i128::from(u64::MAX)),
        ];
        for (ty, min, max) in cases {
            assert_eq!(round_trip(&min.to_string(), &ty), min.to_string());
            assert_eq!(round_trip(&max.to_string(), &ty), max.to_string());
            assert_eq!(err(&(min - 1).to_string(), &ty), format!("x: expected {ty}, got {}", min - 1));
            assert_eq!(err(&(max + 1).to_string(), &ty), format!("x: expected {ty}, got {}", max + 1));
            assert_eq!(err("1.0", &ty), format!("x: expected {ty}, got 1.0"));
            assert_eq!(err("\"1\"", &ty), format!("x: expected {ty}, got \"1\""));
        }
        // Beyond 2^53 (where doubles lose digits) u64/s64 stay exact.
        assert_eq!(round_trip("18446744073709551615", &WitType::U64), "18446744073709551615");
        assert_eq!(round_trip("9007199254740993", &WitType::S64), "9007199254740993");
        assert_eq!(err("1180591620717411303424", &WitType::U64), "x: expected u64, got 1180591620717411303424");
        // Python's bool is an int.
        assert_eq!(round_trip("true", &WitType::S32), "1");
    }

    #[test]
    fn floats_nan_and_infinities() {
        assert_eq!(round_trip("1.5", &WitType::F64), "1.5");
        assert_eq!(round_trip("2", &WitType::F64), "2.0");
        assert_eq!(round_trip("NaN", &WitType::F64), "NaN");
        assert_eq!(round_trip("Infinity", &WitType::F32), "Infinity");
        assert_eq!(round_trip("-Infinity", &WitType::F64), "-Infinity");
        assert_eq!(round_trip("1.7976931348623157e308", &WitType::F64), "1.7976931348623157e308");
        assert_eq!(round_trip("3.4028234663852886e38", &WitType::F32), "3.4028234663852886e38");
        assert!(err("1e39", &WitType::F32).contains("out of range for f32"));
        assert_eq!(err("true", &WitType::F64), "x: expected f64, got true");
    }

    #[test]
    fn strings_chars_and_unicode() {
        assert_eq!(round_trip("\"h\u{e9}llo \u{2603} 😀\"", &WitType::String), "\"h\u{e9}llo \u{2603} 😀\"");
        assert_eq!(round_trip("\"\"", &WitType::String), "\"\"");
        assert_eq!(round_trip("\"😀\"", &WitType::Char), "\"😀\"");
        assert_eq!(err("\"ab\"", &WitType::Char), "x: expected char, got \"ab\"");
        assert_eq!(err("5", &WitType::String), "x: expected string, got 5");
        assert_eq!(round_trip("true", &WitType::Bool), "true");
        assert_eq!(err("1", &WitType::Bool), "x: expected bool, got 1");
    }

    #[test]
    fn check_answers_as_to_val_does() {
        let list = WitType::List { element: Box::new(WitType::String) };
        for (text, ty) in [
            ("\"a\"", &WitType::String),
            ("5", &WitType::String),
            ("[1, {}]", &WitType::Json),
            ("null", &WitType::Json),
        ]
        .into_iter()
        .chain([("[\"a\", 2]", &list), ("[\"a\"]", &list), ("300", &WitType::U8)])
        {
            assert_eq!(check(&v(text), ty, "x"), to_val(&v(text), ty, "x").map(drop), "{text} as {ty}");
        }
    }

    #[test]
    fn json_carries_anything() {
        let text = r#"{"a":[1,null,1180591620717411303424,NaN],"b":"é"}"#;
        let val = to_val(&v(text), &WitType::Json, "x").unwrap();
        assert_eq!(val, Val::String(text.to_owned()));
        assert_eq!(json::to_string(&from_val(&val, &WitType::Json).unwrap()), text);
        let e = from_val(&Val::String("{nope".into()), &WitType::Json).unwrap_err();
        assert!(e.message.contains("invalid JSON"), "{e}");
    }

    #[test]
    fn lists_tuples_and_paths() {
        let ty = list(WitType::U8);
        assert_eq!(round_trip("[]", &ty), "[]");
        assert_eq!(round_trip("[0,255]", &ty), "[0,255]");
        assert_eq!(to_val(&Value::Bytes(vec![0, 255]), &ty, "x").unwrap(), Val::List(vec![Val::U8(0), Val::U8(255)]));
        assert_eq!(err("[1,300]", &ty), "x[1]: expected u8, got 300");
        let tuple = WitType::Tuple { elements: vec![WitType::S32, WitType::String] };
        assert_eq!(round_trip("[1,\"a\"]", &tuple), "[1,\"a\"]");
        assert_eq!(err("[1]", &tuple), "x: expected tuple<s32, string>, got [1]");
        assert_eq!(err("[1,2]", &tuple), "x[1]: expected string, got 2");
    }

    fn point() -> WitType {
        WitType::Record {
            name: Some("point".into()),
            fields: vec![
                Field { name: "x".into(), ty: WitType::U8 },
                Field { name: "long-name".into(), ty: option(WitType::S32) },
            ],
        }
    }

    #[test]
    fn records_by_snake_case_field() {
        assert_eq!(round_trip(r#"{"x":1,"long_name":5}"#, &point()), r#"{"x":1,"long_name":5}"#);
        assert_eq!(round_trip(r#"{"x":1}"#, &point()), r#"{"x":1,"long_name":null}"#);
        assert_eq!(err(r#"{"x":300}"#, &point()), "x.x: expected u8, got 300");
        assert_eq!(err(r#"{"long_name":1}"#, &point()), "x.x: missing field");
        assert_eq!(err(r#"{"x":1,"z":2}"#, &point()), "x: unknown field 'z' for point");
        let nested = list(point());
        assert_eq!(err(r#"[{"x":1},{"x":-1}]"#, &nested), "x[1].x: expected u8, got -1");
    }

    #[test]
    fn variants_enums_flags() {
        let shape = WitType::Variant {
            name: Some("shape".into()),
            cases: vec![
                Case { name: "circle".into(), ty: Some(WitType::F64) },
                Case { name: "no-shape".into(), ty: None },
            ],
        };
        assert_eq!(round_trip(r#"{"circle":2.0}"#, &shape), r#"{"circle":2.0}"#);
        assert_eq!(round_trip(r#""no_shape""#, &shape), r#""no_shape""#);
        assert_eq!(round_trip(r#"{"no_shape":null}"#, &shape), r#""no_shape""#);
        assert_eq!(err(r#""square""#, &shape), "x: unknown case 'square' for shape");
        assert_eq!(err(r#""circle""#, &shape), "x.circle: missing f64 payload");
        assert_eq!(err(r#"{"circle":"big"}"#, &shape), "x.circle: expected f64, got \"big\"");
        let color = WitType::Enum { name: None, cases: vec!["dark-red".into(), "blue".into()] };
        assert_eq!(round_trip(r#""dark_red""#, &color), r#""dark_red""#);
        assert_eq!(err(r#""green""#, &color), "x: unknown case 'green' for enum { dark-red, blue }");
        let perms = WitType::Flags { name: None, flags: vec!["read".into(), "write-all".into()] };
        assert_eq!(round_trip(r#"["write_all","read"]"#, &perms), r#"["write_all","read"]"#);
        assert_eq!(round_trip("[]", &perms), "[]");
        assert!(err(r#"["exec"]"#, &perms).starts_with("x: unknown flag \"exec\""));
    }

    #[test]
    fn options_nested_options_and_results() {
        let ty = option(WitType::U8);
        assert_eq!(round_trip("null", &ty), "null");
        assert_eq!(round_trip("7", &ty), "7");
        assert_eq!(err("\"7\"", &ty), "x: expected u8, got \"7\"");
        let nested = option(option(WitType::U8));
        assert_eq!(round_trip("null", &nested), "null");
        assert_eq!(round_trip(r#"{"some":null}"#, &nested), r#"{"some":null}"#);
        assert_eq!(round_trip(r#"{"some":3}"#, &nested), r#"{"some":3}"#);
        assert!(err("3", &nested).contains("expected null or {\"some\": ...}"));
        let json_opt = option(WitType::Json);
        assert_eq!(round_trip(r#"{"some":null}"#, &json_opt), r#"{"some":null}"#);
        let res = WitType::Result { ok: Some(Box::new(WitType::U32)), err: Some(Box::new(WitType::String)) };
        assert_eq!(round_trip(r#"{"ok":5}"#, &res), r#"{"ok":5}"#);
        assert_eq!(round_trip(r#"{"err":"bad"}"#, &res), r#"{"err":"bad"}"#);
        assert_eq!(err(r#"{"ok":"x"}"#, &res), "x.ok: expected u32, got \"x\"");
        let empty = WitType::Result { ok: None, err: None };
        assert_eq!(round_trip(r#"{"ok":null}"#, &empty), r#"{"ok":null}"#);
    }

    #[test]
    fn unsupported_types_are_refused() {
        let ty = WitType::Unsupported { description: "own<thing>".into() };
        assert_eq!(err("1", &ty), "x: values of type own<thing> cannot be sent");
    }
}
