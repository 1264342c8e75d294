//! What a function looks like to its callers: descriptors, WIT types, naming, argument binding.
//!
//! Owns [`FunctionDescriptor`] (name, parameters, result, kind, doc), the [`WitType`] tree it is
//! written in, the naming rule from WIT exports to caller-facing names, and [`bind_arguments`],
//! which applies Python's rules for `args`/`kwargs` (positional, keyword, defaults, `*args`,
//! `**kwargs`). Nothing here touches wasmtime: the runtime builds descriptors from components,
//! the wire turns them into easyrpc `sig` listings, and clients bind arguments against them, all
//! through this one model.

mod lower;

pub use lower::{check, inner_may_be_null, lower, Lowered, ValueError};

use crate::value::Value;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

/// A WIT value type as callers see it. Records and variants keep their WIT (kebab-case) names;
/// callers use the snake_case forms (see [`snake_case`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum WitType {
    Bool,
    S8,
    U8,
    S16,
    U16,
    S32,
    U32,
    S64,
    U64,
    F32,
    F64,
    Char,
    String,
    /// EasyRpc's `json` convention: a `string` holding any JSON value.
    Json,
    List {
        element: Box<WitType>,
    },
    Record {
        name: Option<String>,
        fields: Vec<Field>,
    },
    Tuple {
        elements: Vec<WitType>,
    },
    Variant {
        name: Option<String>,
        cases: Vec<Case>,
    },
    Enum {
        name: Option<String>,
        cases: Vec<String>,
    },
    Option {
        inner: Box<WitType>,
    },
    Result {
        ok: Option<Box<WitType>>,
        err: Option<Box<WitType>>,
    },
    Flags {
        name: Option<String>,
        flags: Vec<String>,
    },
    /// A type no caller can send or receive (resources, futures, streams, maps...).
    Unsupported {
        description: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    pub ty: WitType,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Case {
    pub name: String,
    pub ty: Option<WitType>,
}

impl WitType {
    /// True when callers may leave a value of this type out (it then means none).
    pub fn is_option(&self) -> bool {
        matches!(self, WitType::Option { .. })
    }

    /// Sets the name of a record/variant/enum/flags type (names come from the module's WIT text).
    pub fn set_name(&mut self, new_name: &str) {
        match self {
            WitType::Record { name, .. }
            | WitType::Variant { name, .. }
            | WitType::Enum { name, .. }
            | WitType::Flags { name, .. } => *name = Some(new_name.to_owned()),
            _ => {}
        }
    }
}

impl fmt::Display for WitType {
    /// WIT syntax; named types print their name, anonymous ones their structure.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WitType::Bool => f.write_str("bool"),
            WitType::S8 => f.write_str("s8"),
            WitType::U8 => f.write_str("u8"),
            WitType::S16 => f.write_str("s16"),
            WitType::U16 => f.write_str("u16"),
            WitType::S32 => f.write_str("s32"),
            WitType::U32 => f.write_str("u32"),
            WitType::S64 => f.write_str("s64"),
            WitType::U64 => f.write_str("u64"),
            WitType::F32 => f.write_str("f32"),
            WitType::F64 => f.write_str("f64"),
            WitType::Char => f.write_str("char"),
            WitType::String => f.write_str("string"),
            WitType::Json => f.write_str("json"),
            WitType::List { element } => write!(f, "list<{element}>"),
            WitType::Option { inner } => write!(f, "option<{inner}>"),
            WitType::Result { ok, err } => match (ok, err) {
                (None, None) => f.write_str("result"),
                (Some(ok), None) => write!(f, "result<{ok}>"),
                (None, Some(err)) => write!(f, "result<_, {err}>"),
                (Some(ok), Some(err)) => write!(f, "result<{ok}, {err}>"),
            },
            WitType::Tuple { elements } => {
                f.write_str("tuple<")?;
                for (i, e) in elements.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{e}")?;
                }
                f.write_str(">")
            }
            WitType::Record { name: Some(n), .. }
            | WitType::Variant { name: Some(n), .. }
            | WitType::Enum { name: Some(n), .. }
            | WitType::Flags { name: Some(n), .. } => f.write_str(n),
            WitType::Record { name: None, fields } => {
                f.write_str("record { ")?;
                for (i, fl) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}: {}", fl.name, fl.ty)?;
                }
                f.write_str(" }")
            }
            WitType::Variant { name: None, cases } => {
                f.write_str("variant { ")?;
                for (i, c) in cases.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    match &c.ty {
                        Some(t) => write!(f, "{}({t})", c.name)?,
                        None => f.write_str(&c.name)?,
                    }
                }
                f.write_str(" }")
            }
            WitType::Enum { name: None, cases } => write!(f, "enum {{ {} }}", cases.join(", ")),
            WitType::Flags { name: None, flags } => write!(f, "flags {{ {} }}", flags.join(", ")),
            WitType::Unsupported { description } => f.write_str(description),
        }
    }
}

/// How a parameter takes its argument, in Python's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParamKind {
    /// Positional or keyword (the default for WIT parameters).
    Positional,
    /// `*name`: a `list<T>` parameter that collects the extra positional arguments.
    VarArgs,
    /// After a `*args` parameter: may only be passed by keyword.
    KeywordOnly,
    /// `**name`: a `json` object parameter that collects the unknown keyword arguments.
    VarKwargs,
}

/// Whether calling the function returns a value or opens a stream of values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FunctionKind {
    Function,
    Generator,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParamDescriptor {
    /// Caller-facing (snake_case) name.
    pub name: String,
    pub ty: WitType,
    pub kind: ParamKind,
    /// The value used when the caller leaves the parameter out, if it may be left out.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "value_as_json")]
    pub default: Option<Value>,
}

/// One callable export of a module.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionDescriptor {
    /// Caller-facing name (see [`export_name`]).
    pub name: String,
    /// The exporting interface's WIT name, none for a top-level export.
    pub interface: Option<String>,
    /// The function's WIT (kebab-case) name inside its interface or world.
    pub wit_name: String,
    pub params: Vec<ParamDescriptor>,
    /// The result type; for `result<T, E>` this is the whole result (ok is the return value);
    /// for a generator, the type of each item.
    pub result: Option<WitType>,
    pub kind: FunctionKind,
    /// The WIT doc comment, without `@` annotation lines.
    pub doc: Option<String>,
}

impl FunctionDescriptor {
    /// The type of the value a successful call returns: `T` of a `result<T, E>`.
    pub fn return_type(&self) -> Option<&WitType> {
        match &self.result {
            Some(WitType::Result { ok, .. }) => ok.as_deref(),
            other => other.as_ref(),
        }
    }
}

impl fmt::Display for FunctionDescriptor {
    /// A readable signature: `add(a: s64, b: s64 = 2) -> s64`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(", self.name)?;
        for (i, p) in self.params.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match p.kind {
                ParamKind::VarArgs => write!(f, "*{}: {}", p.name, element_type(&p.ty))?,
                ParamKind::VarKwargs => write!(f, "**{}: {}", p.name, p.ty)?,
                ParamKind::Positional | ParamKind::KeywordOnly => write!(f, "{}: {}", p.name, p.ty)?,
            }
            if let Some(d) = &p.default {
                write!(f, " = {d}")?;
            }
        }
        f.write_str(")")?;
        match (&self.result, self.kind) {
            (Some(item), FunctionKind::Generator) => write!(f, " -> generator<{item}>"),
            (Some(r), FunctionKind::Function) => write!(f, " -> {r}"),
            (None, _) => Ok(()),
        }
    }
}

/// The element type of a `*args` list parameter.
pub fn element_type(ty: &WitType) -> &WitType {
    match ty {
        WitType::List { element } => element,
        other => other,
    }
}

/// WIT kebab-case to the snake_case callers use: `sum-list` -> `sum_list`. WIT identifiers are
/// lower-case words joined by `-` (no `_`), so the mapping is one-to-one.
pub fn snake_case(wit_name: &str) -> String {
    wit_name.trim_start_matches('%').replace('-', "_")
}

/// Whether `given` names `wit_name`, in its snake_case form or as written: what
/// `snake_case(wit_name) == given || wit_name == given` says, without allocating (argument
/// conversion asks it for every field and case of every value).
pub fn names(wit_name: &str, given: &str) -> bool {
    if wit_name == given {
        return true;
    }
    let snake = wit_name.trim_start_matches('%');
    snake.len() == given.len()
        && snake.bytes().zip(given.bytes()).all(|(w, g)| if w == b'-' { g == b'_' } else { w == g })
}

/// The caller-facing name of an export. Naming rule:
/// * a function exported at the top level of the world: its snake_case name (`sum-list` ->
///   `sum_list`);
/// * a function inside an exported interface: `<interface>.<function>`, both snake_case, where
///   `<interface>` is the interface's short name without package or version
///   (`easyrpc-modules:math/shapes@0.1.0` exporting `area` -> `shapes.area`).
///
/// Two exported interfaces with the same short name would give the same names; the runtime
/// refuses such a module with an error naming both.
pub fn export_name(interface: Option<&str>, function: &str) -> String {
    match interface {
        None => snake_case(function),
        Some(iface) => format!("{}.{}", snake_case(interface_short_name(iface)), snake_case(function)),
    }
}

/// `ns:pkg/name@1.0.0` -> `name`; a plain `name` stays as it is.
pub fn interface_short_name(interface: &str) -> &str {
    let no_version = interface.split('@').next().unwrap_or(interface);
    no_version.rsplit('/').next().unwrap_or(no_version)
}

/// Why arguments could not be bound to a function's parameters. Messages follow Python's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    #[error("missing a required argument: '{0}'")]
    Missing(String),
    #[error("too many positional arguments")]
    TooManyPositional,
    #[error("got an unexpected keyword argument '{0}'")]
    UnexpectedKeyword(String),
    #[error("multiple values for argument '{0}'")]
    Duplicate(String),
}

/// Binds `args` and `kwargs` to the parameters the way Python binds a call, filling defaults
/// (trailing options default to none). Returns one value per parameter, in parameter order;
/// `*args` becomes a list and `**kwargs` a dict.
pub fn bind_arguments(
    params: &[ParamDescriptor],
    args: Vec<Value>,
    kwargs: Vec<(String, Value)>,
) -> Result<Vec<Value>, BindError> {
    bind(params, args, kwargs, Value::clone, Value::List, Value::Dict)
}

/// [`bind_arguments`] without taking the arguments: values passed are borrowed, only defaults
/// and `*args`/`**kwargs` collections are made. For checking a call before it is sent.
pub fn bind_borrowed<'a>(
    params: &'a [ParamDescriptor],
    args: &'a [Value],
    kwargs: &'a [(String, Value)],
) -> Result<Vec<Cow<'a, Value>>, BindError> {
    let owned = |values: Vec<Cow<'a, Value>>| values.into_iter().map(Cow::into_owned).collect::<Vec<_>>();
    bind(
        params,
        args.iter().map(Cow::Borrowed),
        kwargs.iter().map(|(k, v)| (k.as_str(), Cow::Borrowed(v))),
        Cow::Borrowed,
        |rest| Cow::Owned(Value::List(owned(rest))),
        |rest: Vec<(String, Cow<'a, Value>)>| {
            Cow::Owned(Value::Dict(rest.into_iter().map(|(k, v)| (k, v.into_owned())).collect()))
        },
    )
}

/// Python's binding rules, for owned or borrowed values: `default` makes a parameter's default
/// value, `list` and `dict` the `*args` and `**kwargs` collections.
fn bind<'d, V, K: AsRef<str> + Into<String>>(
    params: &'d [ParamDescriptor],
    args: impl IntoIterator<Item = V>,
    kwargs: impl IntoIterator<Item = (K, V)>,
    default: impl Fn(&'d Value) -> V,
    list: impl Fn(Vec<V>) -> V,
    dict: impl Fn(Vec<(String, V)>) -> V,
) -> Result<Vec<V>, BindError> {
    let mut slots: Vec<Option<V>> = params.iter().map(|_| None).collect();
    let mut extra_positional = Vec::new();
    let mut extra_keywords = Vec::new();

    let mut args = args.into_iter();
    for (slot, param) in slots.iter_mut().zip(params) {
        if param.kind != ParamKind::Positional {
            break;
        }
        match args.next() {
            Some(v) => *slot = Some(v),
            None => break,
        }
    }
    extra_positional.extend(args);
    if !extra_positional.is_empty() && !params.iter().any(|p| p.kind == ParamKind::VarArgs) {
        return Err(BindError::TooManyPositional);
    }

    for (key, value) in kwargs {
        let named = params
            .iter()
            .position(|p| p.name == key.as_ref() && matches!(p.kind, ParamKind::Positional | ParamKind::KeywordOnly));
        match named {
            Some(i) if slots[i].is_some() => return Err(BindError::Duplicate(key.into())),
            Some(i) => slots[i] = Some(value),
            None if params.iter().any(|p| p.kind == ParamKind::VarKwargs) => extra_keywords.push((key.into(), value)),
            None => return Err(BindError::UnexpectedKeyword(key.into())),
        }
    }

    let mut bound = Vec::with_capacity(params.len());
    for (param, slot) in params.iter().zip(slots) {
        bound.push(match (param.kind, slot) {
            (ParamKind::VarArgs, _) => list(std::mem::take(&mut extra_positional)),
            (ParamKind::VarKwargs, _) => dict(std::mem::take(&mut extra_keywords)),
            (_, Some(v)) => v,
            (_, None) => param.default.as_ref().map(&default).ok_or_else(|| BindError::Missing(param.name.clone()))?,
        });
    }
    Ok(bound)
}

/// Serde helper: an optional [`Value`] stored as its JSON text's parsed form.
mod value_as_json {
    use crate::value::{json, Value};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Value>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => {
                let parsed: serde_json::Value =
                    serde_json::from_str(&json::to_string(v)).map_err(serde::ser::Error::custom)?;
                s.serialize_some(&parsed)
            }
            None => s.serialize_none(),
        }
    }

    /// Called only when the field is present (an absent field is `None` through
    /// `#[serde(default)]`), so a JSON null is a default of none, not "no default".
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Ok(Some(Value::from(&v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(name: &str, ty: WitType, kind: ParamKind, default: Option<Value>) -> ParamDescriptor {
        ParamDescriptor { name: name.into(), ty, kind, default }
    }

    fn add_params() -> Vec<ParamDescriptor> {
        vec![
            param("a", WitType::S64, ParamKind::Positional, None),
            param("b", WitType::S64, ParamKind::Positional, Some(Value::Int(2))),
        ]
    }

    fn kw(pairs: &[(&str, i64)]) -> Vec<(String, Value)> {
        pairs.iter().map(|(k, v)| (k.to_string(), Value::from(*v))).collect()
    }

    #[test]
    fn naming_rule() {
        assert_eq!(snake_case("sum-list"), "sum_list");
        assert_eq!(snake_case("%type"), "type");
        assert_eq!(export_name(None, "sum-list"), "sum_list");
        assert_eq!(export_name(Some("easyrpc-modules:math/shapes@0.1.0"), "area"), "shapes.area");
        assert_eq!(export_name(Some("my-api"), "get-all"), "my_api.get_all");
        assert_eq!(interface_short_name("a:b/c"), "c");
    }

    /// Binds with both binders, which must agree.
    fn both(p: &[ParamDescriptor], args: Vec<Value>, kwargs: Vec<(String, Value)>) -> Result<Vec<Value>, BindError> {
        let borrowed =
            bind_borrowed(p, &args, &kwargs).map(|values| values.into_iter().map(Cow::into_owned).collect::<Vec<_>>());
        let owned = bind_arguments(p, args, kwargs);
        assert_eq!(owned, borrowed);
        owned
    }

    #[test]
    fn binds_like_python() {
        let p = add_params();
        assert_eq!(both(&p, vec![1.into()], vec![]).unwrap(), vec![Value::Int(1), Value::Int(2)]);
        assert_eq!(both(&p, vec![1.into()], kw(&[("b", 5)])).unwrap(), vec![Value::Int(1), Value::Int(5)]);
        assert_eq!(both(&p, vec![], kw(&[("b", 3), ("a", 2)])).unwrap(), vec![Value::Int(2), Value::Int(3)]);
        assert_eq!(both(&p, vec![], vec![]), Err(BindError::Missing("a".into())));
        assert_eq!(both(&p, vec![1.into(), 2.into(), 3.into()], vec![]), Err(BindError::TooManyPositional));
        assert_eq!(both(&p, vec![1.into()], kw(&[("z", 2)])), Err(BindError::UnexpectedKeyword("z".into())));
        assert_eq!(both(&p, vec![1.into()], kw(&[("a", 2)])), Err(BindError::Duplicate("a".into())));
    }

    #[test]
    fn binds_varargs_and_kwargs() {
        let concat = vec![
            param("parts", WitType::List { element: Box::new(WitType::String) }, ParamKind::VarArgs, None),
            param("sep", WitType::String, ParamKind::KeywordOnly, Some("-".into())),
        ];
        let bound = both(&concat, vec!["a".into(), "b".into()], vec![]).unwrap();
        assert_eq!(bound, vec![Value::List(vec!["a".into(), "b".into()]), "-".into()]);
        let bound = both(&concat, vec![], vec![("sep".into(), "+".into())]).unwrap();
        assert_eq!(bound, vec![Value::List(vec![]), "+".into()]);

        let kwecho = vec![
            param("a", WitType::Json, ParamKind::Positional, None),
            param("kwargs", WitType::Json, ParamKind::VarKwargs, None),
        ];
        let bound = both(&kwecho, vec![1.into()], kw(&[("z", 2), ("y", 3)])).unwrap();
        assert_eq!(bound[1], Value::Dict(vec![("z".into(), Value::Int(2)), ("y".into(), Value::Int(3))]));
        assert_eq!(both(&kwecho, vec![1.into(), 2.into()], vec![]), Err(BindError::TooManyPositional));
    }

    #[test]
    fn displays_signatures() {
        let d = FunctionDescriptor {
            name: "concat".into(),
            interface: None,
            wit_name: "concat".into(),
            params: vec![
                param("parts", WitType::List { element: Box::new(WitType::String) }, ParamKind::VarArgs, None),
                param("sep", WitType::String, ParamKind::KeywordOnly, Some("-".into())),
            ],
            result: Some(WitType::String),
            kind: FunctionKind::Function,
            doc: None,
        };
        assert_eq!(d.to_string(), r#"concat(*parts: string, sep: string = "-") -> string"#);
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["params"][1]["default"], "-");
        let back: FunctionDescriptor = serde_json::from_value(json).unwrap();
        assert_eq!(back, d);
        // A default of none survives the trip (it is not "no default").
        let mut maybe = d.clone();
        maybe.params[1].default = Some(Value::None);
        let back: FunctionDescriptor = serde_json::from_value(serde_json::to_value(&maybe).unwrap()).unwrap();
        assert_eq!(back, maybe);
    }
}
