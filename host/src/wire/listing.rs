//! Function descriptors as easyrpc listings: the `get_registered_functions` entries with their
//! `sig` specs (docs/protocol.md, section 4), and back.
//!
//! Owns the mapping from WIT types to Python annotations that the unchanged Python client can
//! import and check (builtins only, so no listing ever fails to decode), defaults as `JV`
//! values, parameter kinds, and the `wit` extension key that carries our full descriptor for
//! Rust clients (Python ignores extra keys). It does not decide which functions are listed.

use crate::signature::{element_type, FunctionDescriptor, FunctionKind, ParamDescriptor, ParamKind, WitType};
use crate::value::{json, Value};

fn s(text: &str) -> Value {
    Value::Str(text.to_owned())
}

fn dict(entries: Vec<(&str, Value)>) -> Value {
    Value::Dict(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn builtin(name: &str) -> Value {
    dict(vec![("kind", s("type")), ("module", s("builtins")), ("qualname", s(name))])
}

fn empty() -> Value {
    dict(vec![("kind", s("empty"))])
}

fn is_empty(annotation: &Value) -> bool {
    annotation.get("kind").and_then(Value::as_str) == Some("empty")
}

/// The Python annotation a caller's value must satisfy, chosen so the Python client's local
/// check accepts exactly the values the host converts (or, where Python cannot say it, checks
/// nothing and leaves it to the host).
pub fn annotation(ty: &WitType) -> Value {
    match ty {
        WitType::Bool => builtin("bool"),
        WitType::S8
        | WitType::U8
        | WitType::S16
        | WitType::U16
        | WitType::S32
        | WitType::U32
        | WitType::S64
        | WitType::U64 => builtin("int"),
        WitType::F32 | WitType::F64 => builtin("float"),
        WitType::Char | WitType::String => builtin("str"),
        WitType::List { element } => {
            let inner = annotation(element);
            if is_empty(&inner) {
                builtin("list")
            } else {
                dict(vec![("kind", s("generic")), ("origin", builtin("list")), ("args", Value::List(vec![inner]))])
            }
        }
        WitType::Option { inner } if !matches!(**inner, WitType::Option { .. } | WitType::Json) => {
            let inner = annotation(inner);
            if is_empty(&inner) {
                inner
            } else {
                dict(vec![("kind", s("union")), ("args", Value::List(vec![inner, dict(vec![("kind", s("none"))])]))])
            }
        }
        WitType::Record { .. } | WitType::Result { .. } => builtin("dict"),
        // JSON turns tuples into lists and pickle keeps them: accept both.
        WitType::Tuple { .. } => {
            dict(vec![("kind", s("union")), ("args", Value::List(vec![builtin("list"), builtin("tuple")]))])
        }
        WitType::Enum { cases, .. } => dict(vec![
            ("kind", s("literal")),
            ("values", Value::List(cases.iter().map(|c| jv(&Value::Str(crate::signature::snake_case(c)))).collect())),
        ]),
        WitType::Flags { .. } => builtin("list"),
        WitType::Json | WitType::Option { .. } | WitType::Variant { .. } | WitType::Unsupported { .. } => empty(),
    }
}

/// A default value in the `JV` encoding.
fn jv(value: &Value) -> Value {
    match value {
        Value::List(items) => dict(vec![("k", s("list")), ("v", Value::List(items.iter().map(jv).collect()))]),
        Value::Dict(entries) => {
            dict(vec![("k", s("dict")), ("v", Value::Dict(entries.iter().map(|(k, v)| (k.clone(), jv(v))).collect()))])
        }
        prim => dict(vec![("k", s("prim")), ("v", prim.clone())]),
    }
}

fn param_kind(kind: ParamKind) -> &'static str {
    match kind {
        ParamKind::Positional => "POSITIONAL_OR_KEYWORD",
        ParamKind::VarArgs => "VAR_POSITIONAL",
        ParamKind::KeywordOnly => "KEYWORD_ONLY",
        ParamKind::VarKwargs => "VAR_KEYWORD",
    }
}

fn param_spec(p: &ParamDescriptor) -> Value {
    let annotation = match p.kind {
        ParamKind::VarArgs => annotation(element_type(&p.ty)),
        ParamKind::VarKwargs => empty(),
        _ => annotation(&p.ty),
    };
    let default = match &p.default {
        Some(v) => dict(vec![("kind", s("value")), ("value", jv(v))]),
        None => empty(),
    };
    dict(vec![("name", s(&p.name)), ("kind", s(param_kind(p.kind))), ("default", default), ("annotation", annotation)])
}

/// The listing entry `{name: {"sig":..., "name":..., "doc":..., "is_async": false, "wit": ...}}`.
pub fn listing_entry(d: &FunctionDescriptor) -> Value {
    let doc = d.doc.as_deref().map_or(Value::None, s);
    let return_annotation = match (d.kind, d.return_type()) {
        (FunctionKind::Generator, _) => empty(),
        (FunctionKind::Function, Some(ty)) => annotation(ty),
        (FunctionKind::Function, None) => dict(vec![("kind", s("none"))]),
    };
    let sig = dict(vec![
        ("version", Value::Int(1)),
        ("name", s(&d.name)),
        ("parameters", Value::List(d.params.iter().map(param_spec).collect())),
        ("return_annotation", return_annotation),
        ("doc", doc.clone()),
    ]);
    let wit = serde_json::to_string(d).ok().and_then(|t| json::parse(&t).ok()).unwrap_or(Value::None);
    let config =
        dict(vec![("sig", sig), ("name", s(&d.name)), ("doc", doc), ("is_async", Value::Bool(false)), ("wit", wit)]);
    Value::Dict(vec![(d.name.clone(), config)])
}

/// The response value of `get_registered_functions`: `{"funcs": [entry, ...]}`.
pub fn listing<'a>(descriptors: impl IntoIterator<Item = &'a FunctionDescriptor>) -> Value {
    dict(vec![("funcs", Value::List(descriptors.into_iter().map(listing_entry).collect()))])
}

/// Reads a listing back into descriptors (the Rust client's side). Entries from EasyRpc hosts
/// carry the full descriptor under `wit`; entries from Python hosts only a `sig`, which gives
/// names, kinds and defaults, and `json` (any value) for every type. Later duplicates win, as in
/// the Python client.
pub fn parse_listing(listing: &Value) -> Result<Vec<FunctionDescriptor>, String> {
    let Some(Value::List(entries)) = listing.get("funcs") else {
        return Err(format!("listing has no funcs: {}", listing.brief()));
    };
    let mut out: Vec<FunctionDescriptor> = Vec::new();
    for entry in entries {
        let Value::Dict(pairs) = entry else { return Err("listing entry is not a dict".to_owned()) };
        for (name, config) in pairs {
            let d = descriptor_from_config(name, config)?;
            match out.iter_mut().find(|existing| existing.name == d.name) {
                Some(slot) => *slot = d,
                None => out.push(d),
            }
        }
    }
    Ok(out)
}

fn descriptor_from_config(name: &str, config: &Value) -> Result<FunctionDescriptor, String> {
    if let Some(wit) = config.get("wit").filter(|w| !matches!(w, Value::None)) {
        let text = json::to_string(wit);
        return serde_json::from_str(&text).map_err(|e| format!("bad descriptor for {name}: {e}"));
    }
    let sig = config.get("sig").ok_or_else(|| format!("{name} has no sig"))?;
    let Some(Value::List(params)) = sig.get("parameters") else { return Err(format!("{name}: sig has no parameters")) };
    let params = params
        .iter()
        .map(|p| {
            let kind = match p.get("kind").and_then(Value::as_str) {
                Some("VAR_POSITIONAL") => ParamKind::VarArgs,
                Some("KEYWORD_ONLY") => ParamKind::KeywordOnly,
                Some("VAR_KEYWORD") => ParamKind::VarKwargs,
                _ => ParamKind::Positional,
            };
            let default = p.get("default").filter(|d| d.get("kind").and_then(Value::as_str) == Some("value"));
            ParamDescriptor {
                name: p.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
                ty: if kind == ParamKind::VarArgs {
                    WitType::List { element: Box::new(WitType::Json) }
                } else {
                    WitType::Json
                },
                kind,
                default: default.and_then(|d| d.get("value")).map(from_jv),
            }
        })
        .collect();
    Ok(FunctionDescriptor {
        name: name.to_owned(),
        interface: None,
        wit_name: name.to_owned(),
        params,
        result: Some(WitType::Json),
        kind: FunctionKind::Function,
        doc: config.get("doc").and_then(Value::as_str).map(str::to_owned),
    })
}

fn from_jv(v: &Value) -> Value {
    match (v.get("k").and_then(Value::as_str), v.get("v")) {
        (Some("list" | "tuple"), Some(Value::List(items))) => Value::List(items.iter().map(from_jv).collect()),
        (Some("dict"), Some(Value::Dict(entries))) => {
            Value::Dict(entries.iter().map(|(k, v)| (k.clone(), from_jv(v))).collect())
        }
        (_, Some(prim)) => prim.clone(),
        _ => Value::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(name: &str, ty: WitType, kind: ParamKind, default: Option<Value>) -> ParamDescriptor {
        ParamDescriptor { name: name.into(), ty, kind, default }
    }

    fn add() -> FunctionDescriptor {
        FunctionDescriptor {
            name: "add".into(),
            interface: None,
            wit_name: "add".into(),
            params: vec![
                param("a", WitType::S64, ParamKind::Positional, None),
                param("b", WitType::S64, ParamKind::Positional, Some(Value::Int(2))),
            ],
            result: Some(WitType::S64),
            kind: FunctionKind::Function,
            doc: Some("add two ints".into()),
        }
    }

    #[test]
    fn sig_matches_the_python_servers() {
        let entry = listing_entry(&add());
        let sig = entry.get("add").unwrap().get("sig").unwrap();
        let expected = r#"{"version":1,"name":"add","parameters":[
            {"name":"a","kind":"POSITIONAL_OR_KEYWORD","default":{"kind":"empty"},"annotation":{"kind":"type","module":"builtins","qualname":"int"}},
            {"name":"b","kind":"POSITIONAL_OR_KEYWORD","default":{"kind":"value","value":{"k":"prim","v":2}},"annotation":{"kind":"type","module":"builtins","qualname":"int"}}],
            "return_annotation":{"kind":"type","module":"builtins","qualname":"int"},"doc":"add two ints"}"#;
        assert_eq!(json::to_string(sig), json::to_string(&json::parse(expected).unwrap()));
    }

    #[test]
    fn annotations_for_wit_types() {
        let t = |ty: WitType| json::to_string(&annotation(&ty));
        let opt = |ty: WitType| WitType::Option { inner: Box::new(ty) };
        assert_eq!(
            t(opt(WitType::S32)),
            r#"{"kind":"union","args":[{"kind":"type","module":"builtins","qualname":"int"},{"kind":"none"}]}"#
        );
        assert_eq!(t(opt(opt(WitType::S32))), r#"{"kind":"empty"}"#);
        assert_eq!(
            t(WitType::List { element: Box::new(WitType::Json) }),
            r#"{"kind":"type","module":"builtins","qualname":"list"}"#
        );
        assert_eq!(
            t(WitType::Enum { name: None, cases: vec!["dark-red".into()] }),
            r#"{"kind":"literal","values":[{"k":"prim","v":"dark_red"}]}"#
        );
    }

    #[test]
    fn listings_read_back_into_descriptors() {
        let listing = listing([&add()]);
        let back = parse_listing(&listing).unwrap();
        assert_eq!(back, vec![add()]);
        // A Python host's entry: sig only.
        let mut python = listing_entry(&add());
        if let Value::Dict(pairs) = &mut python {
            if let Value::Dict(config) = &mut pairs[0].1 {
                config.retain(|(k, _)| k != "wit");
            }
        }
        let back = parse_listing(&Value::Dict(vec![("funcs".into(), Value::List(vec![python]))])).unwrap();
        assert_eq!(back[0].params[1].default, Some(Value::Int(2)));
        assert_eq!(back[0].params[0].ty, WitType::Json);
    }
}
