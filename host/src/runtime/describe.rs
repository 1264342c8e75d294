//! Builds [`FunctionDescriptor`]s from a compiled component: its exported types (the truth about
//! parameters and results) merged with its embedded WIT docs (doc text, `@` annotations, `json`
//! and type names).
//!
//! Owns the mapping from wasmtime's component types to [`WitType`] and the checks on annotations
//! (a `@default` must fit its type, `@varargs` must be a list, `@kwargs` must be `json` and
//! last, defaults must form a valid Python signature). It does not compile or run anything.

use super::convert::{from_val, to_val};
use super::witdoc::{FunctionDocs, TypeText, WitDocs};
use crate::signature::{
    export_name, interface_short_name, snake_case, Case, Field, FunctionDescriptor, FunctionKind, ParamDescriptor,
    ParamKind, WitType,
};
use crate::value::{json, Value};
use std::collections::HashMap;
use wasmtime::component::types::{ComponentFunc, ComponentItem, Type};
use wasmtime::component::Component;
use wasmtime::Engine;

/// Where a described function lives in the component: the exported interface (full name) that
/// holds it, if any, and its own export name.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportPath {
    pub interface: Option<String>,
    pub function: String,
    /// For a generator: the `[method]<resource>.next` export in the same interface.
    pub next: Option<String>,
}

/// EasyRpc's generator convention: a function returning `own<r>` where resource `r` has a
/// method `next: func() -> option<T>`. Returns that method's export name and `T`.
fn generator_next(func: &ComponentFunc, funcs: &[(&str, ComponentFunc)]) -> Option<(String, Type)> {
    let Some(Type::Own(resource)) = func.results().next() else { return None };
    funcs.iter().find_map(|(name, method)| {
        if !name.starts_with("[method]") || !name.ends_with(".next") {
            return None;
        }
        let mut params = method.params();
        let (_, Type::Borrow(self_ty)) = params.next()? else { return None };
        if self_ty != resource || params.next().is_some() {
            return None;
        }
        match method.results().next()? {
            Type::Option(o) => Some(((*name).to_owned(), o.ty())),
            _ => None,
        }
    })
}

/// Describes every exported function of `component`. Errors are messages for `LoadError`.
pub fn describe(
    engine: &Engine,
    component: &Component,
    docs: &WitDocs,
) -> Result<Vec<(FunctionDescriptor, ExportPath)>, String> {
    let mut out = Vec::new();
    let component_type = component.component_type();
    for (name, item) in component_type.exports(engine) {
        match item.ty {
            ComponentItem::ComponentFunc(func) => {
                let d = describe_function(None, name, &func, docs.get(&(None, name.to_owned())), None)?;
                out.push((d, ExportPath { interface: None, function: name.to_owned(), next: None }));
            }
            ComponentItem::ComponentInstance(instance) => {
                let short = interface_short_name(name).to_owned();
                let funcs: Vec<(&str, ComponentFunc)> = instance
                    .exports(engine)
                    .filter_map(|(n, item)| match item.ty {
                        ComponentItem::ComponentFunc(f) => Some((n, f)),
                        _ => None,
                    })
                    .collect();
                for (fname, func) in &funcs {
                    // `[constructor]r`, `[method]r.m`, `[static]r.s`: members of a resource, not
                    // functions of their own.
                    if fname.starts_with('[') {
                        continue;
                    }
                    let next = generator_next(func, &funcs);
                    let item = next.as_ref().map(|(method, item_ty)| {
                        let mut item = wit_type(item_ty);
                        let written =
                            docs.get(&(Some(short.clone()), method.clone())).and_then(|d| d.result_type.as_ref());
                        if let Some(TypeText { args, .. }) = written.filter(|t| t.name == "option") {
                            if let Some(inner) = args.first() {
                                apply_written_type(&mut item, inner);
                            }
                        }
                        item
                    });
                    let key = (Some(short.clone()), (*fname).to_owned());
                    let d = describe_function(Some(name), fname, func, docs.get(&key), item)?;
                    let path = ExportPath {
                        interface: Some(name.to_owned()),
                        function: (*fname).to_owned(),
                        next: next.map(|(method, _)| method),
                    };
                    out.push((d, path));
                }
            }
            _ => {}
        }
    }
    let mut seen: HashMap<&str, &ExportPath> = HashMap::new();
    for (d, path) in &out {
        if let Some(other) = seen.insert(&d.name, path) {
            return Err(format!(
                "two exports are both named `{}` for callers ({} and {}); rename one of the interfaces",
                d.name,
                other.interface.as_deref().unwrap_or("world"),
                path.interface.as_deref().unwrap_or("world"),
            ));
        }
    }
    Ok(out)
}

/// Describes one function; `generator_item` is the item type when it follows the generator
/// convention (then the descriptor's result is the item type).
fn describe_function(
    interface: Option<&str>,
    wit_name: &str,
    func: &ComponentFunc,
    docs: Option<&FunctionDocs>,
    generator_item: Option<WitType>,
) -> Result<FunctionDescriptor, String> {
    let renamed = docs.and_then(|d| d.annotations.iter().find(|(k, _)| k == "name")).map(|(_, v)| v.trim());
    let name = match renamed {
        Some(n) if !n.is_empty() && !n.contains(char::is_whitespace) => n.to_owned(),
        Some(n) => return Err(format!("{wit_name}: @name needs one word, got {n:?}")),
        None => export_name(interface, wit_name),
    };
    let mut params: Vec<ParamDescriptor> = func
        .params()
        .map(|(pname, ty)| {
            let mut ty = wit_type(&ty);
            if let Some(text) = docs.and_then(|d| d.param_types.get(pname)) {
                apply_written_type(&mut ty, text);
            }
            ParamDescriptor { name: snake_case(pname), ty, kind: ParamKind::Positional, default: None }
        })
        .collect();
    let kind = if generator_item.is_some() { FunctionKind::Generator } else { FunctionKind::Function };
    let result = match generator_item {
        Some(item) => Some(item),
        None => {
            let mut result = func.results().next().map(|t| wit_type(&t));
            if let (Some(ty), Some(text)) = (result.as_mut(), docs.and_then(|d| d.result_type.as_ref())) {
                apply_written_type(ty, text);
            }
            result
        }
    };
    if let Some(docs) = docs {
        apply_annotations(&name, &mut params, &docs.annotations)?;
    }
    apply_implicit_defaults(&name, &mut params)?;
    Ok(FunctionDescriptor {
        name,
        interface: interface.map(str::to_owned),
        wit_name: wit_name.to_owned(),
        params,
        result,
        kind,
        doc: docs.and_then(|d| d.doc.clone()),
    })
}

/// wasmtime's component type -> our [`WitType`] (anonymous; names come from the WIT text).
pub fn wit_type(ty: &Type) -> WitType {
    match ty {
        Type::Bool => WitType::Bool,
        Type::S8 => WitType::S8,
        Type::U8 => WitType::U8,
        Type::S16 => WitType::S16,
        Type::U16 => WitType::U16,
        Type::S32 => WitType::S32,
        Type::U32 => WitType::U32,
        Type::S64 => WitType::S64,
        Type::U64 => WitType::U64,
        Type::Float32 => WitType::F32,
        Type::Float64 => WitType::F64,
        Type::Char => WitType::Char,
        Type::String => WitType::String,
        Type::List(l) => WitType::List { element: Box::new(wit_type(&l.ty())) },
        Type::Record(r) => WitType::Record {
            name: None,
            fields: r.fields().map(|f| Field { name: f.name.to_owned(), ty: wit_type(&f.ty) }).collect(),
        },
        Type::Tuple(t) => WitType::Tuple { elements: t.types().map(|t| wit_type(&t)).collect() },
        Type::Variant(v) => WitType::Variant {
            name: None,
            cases: v.cases().map(|c| Case { name: c.name.to_owned(), ty: c.ty.as_ref().map(wit_type) }).collect(),
        },
        Type::Enum(e) => WitType::Enum { name: None, cases: e.names().map(str::to_owned).collect() },
        Type::Option(o) => WitType::Option { inner: Box::new(wit_type(&o.ty())) },
        Type::Result(r) => {
            WitType::Result { ok: r.ok().map(|t| Box::new(wit_type(&t))), err: r.err().map(|t| Box::new(wit_type(&t))) }
        }
        Type::Flags(f) => WitType::Flags { name: None, flags: f.names().map(str::to_owned).collect() },
        Type::Own(_) => WitType::Unsupported { description: "own<resource>".to_owned() },
        Type::Borrow(_) => WitType::Unsupported { description: "borrow<resource>".to_owned() },
        Type::Future(_) => WitType::Unsupported { description: "future".to_owned() },
        Type::Stream(_) => WitType::Unsupported { description: "stream".to_owned() },
        Type::ErrorContext => WitType::Unsupported { description: "error-context".to_owned() },
        Type::Map(_) => WitType::Unsupported { description: "map".to_owned() },
        Type::FixedLengthList(_) => WitType::Unsupported { description: "fixed-length list".to_owned() },
    }
}

/// WIT keywords that are not user type names.
const BUILTIN_TYPE_WORDS: &[&str] = &["list", "option", "result", "tuple", "borrow", "own", "future", "stream", "_"];

/// Refines a type with what the source wrote: `json` marks a JSON string, and user type names
/// (`point`) name records, variants, enums and flags.
fn apply_written_type(ty: &mut WitType, text: &TypeText) {
    let arg = |i: usize| text.args.get(i).filter(|a| a.name != "_");
    match ty {
        WitType::String if text.name == "json" => *ty = WitType::Json,
        WitType::List { element } if text.name == "list" => {
            if let Some(a) = arg(0) {
                apply_written_type(element, a)
            }
        }
        WitType::Option { inner } if text.name == "option" => {
            if let Some(a) = arg(0) {
                apply_written_type(inner, a)
            }
        }
        WitType::Result { ok, err } if text.name == "result" => {
            // `result<_, e>` skips ok; `result<t>` has no err.
            let mut args = text.args.iter();
            if let Some(first) = args.next() {
                if let (Some(ok), true) = (ok.as_deref_mut(), first.name != "_") {
                    apply_written_type(ok, first);
                }
            }
            if let (Some(err), Some(second)) = (err.as_deref_mut(), args.next()) {
                apply_written_type(err, second);
            }
        }
        WitType::Tuple { elements } if text.name == "tuple" => {
            for (e, a) in elements.iter_mut().zip(&text.args) {
                apply_written_type(e, a);
            }
        }
        WitType::Record { .. } | WitType::Variant { .. } | WitType::Enum { .. } | WitType::Flags { .. }
            if text.args.is_empty() && !BUILTIN_TYPE_WORDS.contains(&text.name.as_str()) =>
        {
            ty.set_name(&text.name)
        }
        _ => {}
    }
}

fn find_param<'a>(
    function: &str,
    params: &'a mut [ParamDescriptor],
    name: &str,
    annotation: &str,
) -> Result<(usize, &'a mut ParamDescriptor), String> {
    let wanted = snake_case(name);
    params
        .iter_mut()
        .enumerate()
        .find(|(_, p)| p.name == wanted)
        .ok_or_else(|| format!("{function}: @{annotation} names `{name}`, which is not a parameter"))
}

fn apply_annotations(
    function: &str,
    params: &mut [ParamDescriptor],
    annotations: &[(String, String)],
) -> Result<(), String> {
    for (key, rest) in annotations {
        match key.as_str() {
            "default" => {
                let (pname, value_text) = rest
                    .split_once('=')
                    .ok_or_else(|| format!("{function}: write defaults as `@default name = <json value>`"))?;
                let (_, param) = find_param(function, params, pname.trim(), key)?;
                let value = json::parse(value_text.trim())
                    .map_err(|e| format!("{function}: @default {}: {e}", pname.trim()))?;
                let guest_value = to_val(&value, &param.ty, &param.name)
                    .map_err(|e| format!("{function}: @default does not fit its parameter: {e}"))?;
                // The default as the function sees it (`2` for a float is `2.0`): callers that
                // check a default against the parameter's type, as the Python client does
                // against its annotation, get a value of that type.
                let canonical = from_val(&guest_value, &param.ty)
                    .map_err(|e| format!("{function}: @default does not fit its parameter: {e}"))?;
                param.default = Some(canonical);
            }
            "varargs" => {
                let (index, param) = find_param(function, params, rest.trim(), key)?;
                if !matches!(param.ty, WitType::List { .. }) {
                    return Err(format!("{function}: @varargs `{}` must be a list, not {}", param.name, param.ty));
                }
                param.kind = ParamKind::VarArgs;
                for later in &mut params[index + 1..] {
                    if later.kind == ParamKind::Positional {
                        later.kind = ParamKind::KeywordOnly;
                    }
                }
            }
            "kwargs" => {
                let count = params.len();
                let (index, param) = find_param(function, params, rest.trim(), key)?;
                if param.ty != WitType::Json || index + 1 != count {
                    return Err(format!(
                        "{function}: @kwargs `{}` must be the last parameter and of type json",
                        param.name
                    ));
                }
                param.kind = ParamKind::VarKwargs;
            }
            "name" => {} // applied by describe_function
            other => {
                return Err(format!(
                    "{function}: unknown annotation @{other} (known: @default, @varargs, @kwargs, @name)"
                ))
            }
        }
    }
    if params.iter().filter(|p| p.kind == ParamKind::VarArgs).count() > 1 {
        return Err(format!("{function}: at most one @varargs parameter"));
    }
    Ok(())
}

/// Trailing `option<T>` parameters default to none; keyword-only options always may. Then
/// checks Python's rule that a positional parameter with a default is followed only by more.
fn apply_implicit_defaults(function: &str, params: &mut [ParamDescriptor]) -> Result<(), String> {
    for p in params.iter_mut().rev() {
        match p.kind {
            ParamKind::VarArgs | ParamKind::VarKwargs => continue,
            ParamKind::KeywordOnly if p.default.is_none() && p.ty.is_option() => p.default = Some(Value::None),
            ParamKind::KeywordOnly => {}
            ParamKind::Positional if p.default.is_some() => {}
            ParamKind::Positional if p.ty.is_option() => p.default = Some(Value::None),
            ParamKind::Positional => break,
        }
    }
    let mut defaulted: Option<&str> = None;
    for p in params.iter().filter(|p| p.kind == ParamKind::Positional) {
        match (&p.default, defaulted) {
            (Some(_), _) => defaulted = Some(&p.name),
            (None, Some(before)) => {
                return Err(format!(
                    "{function}: parameter `{}` has no default but follows `{before}`, which has one",
                    p.name
                ))
            }
            (None, None) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, ty: WitType) -> ParamDescriptor {
        ParamDescriptor { name: name.into(), ty, kind: ParamKind::Positional, default: None }
    }
    fn opt(t: WitType) -> WitType {
        WitType::Option { inner: Box::new(t) }
    }
    fn ann(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn trailing_options_default_to_none() {
        let mut ps =
            vec![p("a", opt(WitType::U8)), p("b", WitType::U8), p("c", opt(WitType::U8)), p("d", opt(WitType::U8))];
        apply_implicit_defaults("f", &mut ps).unwrap();
        let defaults: Vec<_> = ps.iter().map(|p| p.default.clone()).collect();
        assert_eq!(defaults, vec![None, None, Some(Value::None), Some(Value::None)]);
    }

    #[test]
    fn annotations_shape_the_signature() {
        let mut ps = vec![
            p("parts", WitType::List { element: Box::new(WitType::String) }),
            p("sep", WitType::String),
            p("kw", WitType::Json),
        ];
        apply_annotations(
            "concat",
            &mut ps,
            &ann(&[("varargs", "parts"), ("default", "sep = \"-\""), ("kwargs", "kw")]),
        )
        .unwrap();
        assert_eq!(
            ps.iter().map(|p| p.kind).collect::<Vec<_>>(),
            vec![ParamKind::VarArgs, ParamKind::KeywordOnly, ParamKind::VarKwargs]
        );
        assert_eq!(ps[1].default, Some(Value::Str("-".into())));
    }

    #[test]
    fn defaults_take_their_parameter_s_type() {
        let mut ps = vec![p("x", WitType::F64), p("n", WitType::S32)];
        apply_annotations("scale", &mut ps, &ann(&[("default", "x = 2"), ("default", "n = true")])).unwrap();
        assert_eq!(ps[0].default, Some(Value::Float(2.0)), "an integer default of a float is a float");
        assert_eq!(ps[1].default, Some(Value::Int(1)), "a bool default of an integer is an integer");
    }

    #[test]
    fn bad_annotations_are_load_errors() {
        let mut ps = vec![p("a", WitType::S64), p("b", WitType::S64)];
        let e = apply_annotations("add", &mut ps, &ann(&[("default", "b = \"x\"")])).unwrap_err();
        assert_eq!(e, "add: @default does not fit its parameter: b: expected s64, got \"x\"");
        let e = apply_annotations("add", &mut ps, &ann(&[("default", "z = 1")])).unwrap_err();
        assert!(e.contains("`z`, which is not a parameter"), "{e}");
        let e = apply_annotations("add", &mut ps, &ann(&[("varargs", "a")])).unwrap_err();
        assert!(e.contains("must be a list"), "{e}");
        let e = apply_annotations("add", &mut ps, &ann(&[("defualt", "a = 1")])).unwrap_err();
        assert!(e.contains("unknown annotation @defualt"), "{e}");
        let mut ps = vec![p("a", WitType::S64), p("b", WitType::S64)];
        apply_annotations("add", &mut ps, &ann(&[("default", "a = 1")])).unwrap();
        let e = apply_implicit_defaults("add", &mut ps).unwrap_err();
        assert!(e.contains("`b` has no default but follows `a`"), "{e}");
    }

    #[test]
    fn written_types_mark_json_and_names() {
        let mut ty =
            WitType::List { element: Box::new(WitType::Tuple { elements: vec![WitType::String, WitType::String] }) };
        let text = TypeText {
            name: "list".into(),
            args: vec![TypeText {
                name: "tuple".into(),
                args: vec![
                    TypeText { name: "json".into(), args: vec![] },
                    TypeText { name: "string".into(), args: vec![] },
                ],
            }],
        };
        apply_written_type(&mut ty, &text);
        assert_eq!(ty.to_string(), "list<tuple<json, string>>");
        let mut rec = WitType::Record { name: None, fields: vec![] };
        apply_written_type(&mut rec, &TypeText { name: "point".into(), args: vec![] });
        assert_eq!(rec.to_string(), "point");
    }
}
