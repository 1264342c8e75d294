//! The runtime on real modules: loading, describing, calling, value conversion end to end, the
//! compile cache, and refusal of files that are not components.

use easyrpc::runtime::{CacheOutcome, CallError, CallLimits, LoadError, Runtime, RuntimeConfig};
use easyrpc::signature::{FunctionKind, ParamKind};
use easyrpc::value::Value;
use easyrpc_tests::{j, load, module_path, runtime, v};

fn sig(module: &easyrpc::runtime::Module, name: &str) -> String {
    module.descriptors().find(|d| d.name == name).map(|d| d.to_string()).unwrap_or_else(|| panic!("no {name}"))
}

async fn call(module: &std::sync::Arc<easyrpc::runtime::Module>, name: &str, args: &str) -> Result<Value, CallError> {
    let Value::List(args) = v(args) else { panic!("args must be a list") };
    module.call(name, args, vec![], CallLimits::default()).await
}

#[test]
fn peer_module_describes_the_python_signatures() {
    let peer = load("peer");
    assert_eq!(sig(&peer, "echo"), "echo(x: json) -> json");
    assert_eq!(sig(&peer, "add"), "add(a: s64, b: s64 = 2) -> s64");
    assert_eq!(sig(&peer, "concat"), r#"concat(*parts: string, sep: string = "-") -> string"#);
    assert_eq!(sig(&peer, "kwecho"), "kwecho(a: json, **kwargs: json) -> json");
    assert_eq!(sig(&peer, "maybe"), "maybe(x: option<s64> = null) -> json");
    assert_eq!(sig(&peer, "sum_list"), "sum_list(xs: list<s64>) -> s64");
    assert_eq!(sig(&peer, "fail"), r#"fail(msg: string = "boom") -> result<json, string>"#);
    assert_eq!(sig(&peer, "slow"), "slow(delay: f64, tag: string) -> string");
    let add = peer.function("add").unwrap();
    assert_eq!(add.descriptor.doc.as_deref(), Some("Return a + b."));
    assert_eq!(add.descriptor.kind, FunctionKind::Function);
    let concat = &peer.function("concat").unwrap().descriptor;
    assert_eq!(concat.params[0].kind, ParamKind::VarArgs);
    assert_eq!(concat.params[1].kind, ParamKind::KeywordOnly);
}

#[test]
fn math_module_names_interface_exports_and_records() {
    let math = load("math");
    let names: Vec<_> = math.descriptors().map(|d| d.name.clone()).collect();
    assert_eq!(
        names,
        [
            "add",
            "mul",
            "div",
            "distance",
            "centroid",
            "sum",
            "scale",
            "shapes.area",
            "shapes.largest",
            "kinds.echo_everything",
            "kinds.echo_u64",
            "kinds.echo_s64"
        ]
    );
    assert_eq!(sig(&math, "distance"), "distance(a: point, b: point) -> f64");
    assert_eq!(sig(&math, "shapes.area"), "shapes.area(s: shape) -> f64");
    let area = &math.function("shapes.area").unwrap().descriptor;
    assert_eq!(area.interface.as_deref(), Some("easyrpc-modules:math/shapes"));
    assert_eq!(area.wit_name, "area");
    assert_eq!(area.doc.as_deref(), Some("The area of a shape."));
    // The JSON form carries the full structure of each type.
    let json = serde_json::to_value(&math.function("distance").unwrap().descriptor).unwrap();
    assert_eq!(json["params"][0]["ty"]["kind"], "record");
    assert_eq!(json["params"][0]["ty"]["fields"][1]["name"], "y");
}

#[test]
fn modules_import_wasi_only_when_they_use_it() {
    // modules/Cargo.toml lists the modules that use WASI; the others are linked without it
    // (their docs above still arrive) and instantiate faster.
    let wasi = |name: &str| load(name).imports().into_iter().filter(|i| i.starts_with("wasi:")).collect::<Vec<_>>();
    assert_eq!(wasi("math"), Vec::<String>::new());
    assert_eq!(wasi("swap_v1"), Vec::<String>::new());
    // peer sleeps in `slow` through the host's own interface, not WASI clocks.
    assert_eq!(wasi("peer"), Vec::<String>::new());
    assert!(load("peer").imports().iter().any(|i| i == easyrpc::runtime::imports::HOST_INTERFACE));
    assert!(!load("math").imports().iter().any(|i| i == easyrpc::runtime::imports::HOST_INTERFACE));
    // hostile prints.
    assert!(wasi("hostile").iter().any(|i| i.starts_with("wasi:cli/stdout")), "{:?}", wasi("hostile"));
}

#[tokio::test]
async fn calls_convert_arguments_and_results() {
    let math = load("math");
    assert_eq!(j(&call(&math, "add", "[2, 40]").await.unwrap()), "42");
    assert_eq!(j(&call(&math, "add", "[2147483647, 1]").await.unwrap()), "-2147483648");
    assert_eq!(j(&call(&math, "mul", "[1.5, 2]").await.unwrap()), "3.0");
    assert_eq!(j(&call(&math, "distance", r#"[{"x":0,"y":0},{"x":3,"y":4}]"#).await.unwrap()), "5.0");
    assert_eq!(j(&call(&math, "centroid", "[[]]").await.unwrap()), "null");
    assert_eq!(
        j(&call(&math, "centroid", r#"[[{"x":0,"y":0},{"x":2,"y":4}]]"#).await.unwrap()),
        r#"{"x":1.0,"y":2.0}"#
    );
    assert_eq!(j(&call(&math, "scale", r#"[[{"x":1,"y":2}]]"#).await.unwrap()), r#"[{"x":1.0,"y":2.0}]"#);
    assert_eq!(j(&call(&math, "shapes.area", r#"[{"rect":[2,3]}]"#).await.unwrap()), "6.0");
    assert_eq!(j(&call(&math, "shapes.area", r#"["dot"]"#).await.unwrap()), "0.0");
    assert_eq!(
        j(&call(&math, "shapes.largest", r#"[[{"circle":1},{"rect":[1,1]}]]"#).await.unwrap()),
        r#"{"circle":1.0}"#
    );
    let max = u64::MAX.to_string();
    assert_eq!(j(&call(&math, "kinds.echo_u64", &format!("[{max}]")).await.unwrap()), max);
    assert_eq!(j(&call(&math, "kinds.echo_s64", "[-9223372036854775808]").await.unwrap()), "-9223372036854775808");
    let everything = r#"{"b":true,"int8":-128,"uint8":255,"int16":-32768,"uint16":65535,"int32":-2147483648,
        "uint32":4294967295,"int64":-9223372036854775808,"uint64":18446744073709551615,"float32":1.5,
        "float64":NaN,"c":"☃","s":"héllo","bytes":[0,255],"pair":[-1,""],"color":"blue",
        "perms":["read","exec"],"nested":{"some":null},"outcome":{"err":"no"},"pairs":[["😀","x"]]}"#;
    let back = call(&math, "kinds.echo_everything", &format!("[{everything}]")).await.unwrap();
    assert_eq!(j(&back), j(&v(everything)));
}

#[tokio::test]
async fn result_err_is_the_call_error() {
    let math = load("math");
    match call(&math, "div", "[1, 0]").await {
        Err(CallError::Failed { error, .. }) => assert_eq!(error, Value::Str("cannot divide 1 by 0".into())),
        other => panic!("expected the guest's error, got {other:?}"),
    }
    assert_eq!(j(&call(&math, "div", "[7, 2]").await.unwrap()), "3");
    let peer = load("peer");
    let e = call(&peer, "fail", "[]").await.unwrap_err();
    assert_eq!(e.to_string(), "fail failed: boom");
}

#[tokio::test]
async fn bad_arguments_name_the_parameter_and_path() {
    let math = load("math");
    let e = call(&math, "distance", r#"[{"x":1,"y":"a"},{"x":0,"y":0}]"#).await.unwrap_err();
    assert_eq!(e.to_string(), "bad argument for distance: a.y: expected f64, got \"a\"");
    let e = call(&math, "add", "[1, 2147483648]").await.unwrap_err();
    assert_eq!(e.to_string(), "bad argument for add: b: expected s32, got 2147483648");
    let e = call(&math, "add", "[1]").await.unwrap_err();
    assert_eq!(e.to_string(), "bad arguments for add: missing a required argument: 'b'");
    let e = call(&math, "kinds.echo_everything", r#"[{"b":true}]"#).await.unwrap_err();
    assert!(e.to_string().contains("e.int8: missing field"), "{e}");
    let e = call(&math, "nope", "[]").await.unwrap_err();
    assert!(matches!(e, CallError::UnknownFunction { .. }), "{e}");
}

#[tokio::test]
async fn peer_functions_behave_like_the_python_reference() {
    let peer = load("peer");
    assert_eq!(j(&call(&peer, "add", "[1]").await.unwrap()), "3");
    assert_eq!(j(&call(&peer, "add", "[true]").await.unwrap()), "3");
    let kw = peer.call("add", vec![1.into()], vec![("b".into(), 5.into())], CallLimits::default()).await.unwrap();
    assert_eq!(kw, Value::Int(6));
    let big = "1180591620717411303424";
    assert_eq!(j(&call(&peer, "echo", &format!("[{big}]")).await.unwrap()), big);
    let nested = r#"{"a":{"b":[1,{"c":null}]},"d":1.5,"e":[NaN,"h\u00e9llo ☃"]}"#;
    assert_eq!(j(&call(&peer, "echo", &format!("[{nested}]")).await.unwrap()), j(&v(nested)));
    assert_eq!(j(&call(&peer, "concat", r#"["a","b","c"]"#).await.unwrap()), r#""a-b-c""#);
    assert_eq!(j(&call(&peer, "concat", "[]").await.unwrap()), r#""""#);
    let sep =
        peer.call("concat", vec!["a".into(), "b".into()], vec![("sep".into(), "+".into())], CallLimits::default());
    assert_eq!(sep.await.unwrap(), Value::Str("a+b".into()));
    let kwecho = peer.call(
        "kwecho",
        vec![1.into()],
        vec![("z".into(), 2.into()), ("y".into(), v("[3]"))],
        CallLimits::default(),
    );
    assert_eq!(j(&kwecho.await.unwrap()), r#"{"a":1,"kwargs":{"z":2,"y":[3]}}"#);
    assert_eq!(j(&call(&peer, "maybe", "[]").await.unwrap()), "null");
    assert_eq!(j(&call(&peer, "maybe", "[7]").await.unwrap()), "7");
    assert_eq!(j(&call(&peer, "sum_list", "[[1,2,3]]").await.unwrap()), "6");
    let e = call(&peer, "sum_list", r#"[[1,"a"]]"#).await.unwrap_err();
    assert_eq!(e.to_string(), "bad argument for sum_list: xs[1]: expected s64, got \"a\"");
    let e = call(&peer, "fail", r#"["kaput"]"#).await.unwrap_err();
    assert_eq!(e.to_string(), "fail failed: kaput");
    let big_text = format!("[\"{}\"]", "x".repeat(1_000_000));
    assert_eq!(call(&peer, "echo", &big_text).await.unwrap(), Value::Str("x".repeat(1_000_000)));
}

/// Guests built without WASI use the SDK's allocator (guest-sdk/src/tail_first.rs): it serves
/// small requests from the initial memory's tail and grows memory past it. Allocations of every
/// size in one call, and many small ones that free and reuse, must keep their contents.
#[tokio::test]
async fn the_wasi_free_allocator_serves_every_size() {
    let peer = load("peer");
    for size in [0usize, 1, 100, 4_095, 4_097, 40_000, 70_000, 200_000, 3_000_000] {
        let text: String = (0..size).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let echoed = peer.call("echo", vec![Value::Str(text.clone())], vec![], CallLimits::default()).await.unwrap();
        assert_eq!(echoed, Value::Str(text), "echo of {size} bytes");
    }
    // Many parts (one allocation each), joined (one growing buffer), in one call.
    let parts: Vec<Value> = (0..20_000).map(|i| Value::Str(format!("p{i}"))).collect();
    let expected = (0..20_000).map(|i| format!("p{i}")).collect::<Vec<_>>().join("-");
    assert_eq!(peer.call("concat", parts, vec![], CallLimits::default()).await.unwrap(), Value::Str(expected));
    let xs: Vec<Value> = (0..100_000i64).map(Value::from).collect();
    assert_eq!(
        peer.call("sum_list", vec![Value::List(xs)], vec![], CallLimits::default()).await.unwrap(),
        Value::Int(4_999_950_000)
    );
}

/// A sleeping call (WASI clocks) must not hold up other calls, even on one thread.
#[tokio::test(flavor = "current_thread")]
async fn a_sleeping_call_does_not_block_others() {
    let peer = load("peer");
    let sleeper = {
        let peer = peer.clone();
        tokio::spawn(async move { call(&peer, "slow", r#"[0.5, "late"]"#).await })
    };
    tokio::task::yield_now().await;
    let quick = call(&peer, "add", "[1]").await.unwrap();
    assert_eq!(quick, Value::Int(3));
    assert!(!sleeper.is_finished(), "the quick call should finish while the slow one sleeps");
    assert_eq!(sleeper.await.unwrap().unwrap(), Value::Str("late".into()));
}

#[test]
fn files_that_are_not_components_are_refused_clearly() {
    let rt = runtime();
    let core_module = b"\0asm\x01\0\0\0";
    let e = rt.load_bytes("core", core_module).unwrap_err();
    assert!(matches!(e, LoadError::CoreModule { .. }), "{e}");
    assert!(e.to_string().contains("core WebAssembly module, not a component"), "{e}");
    let e = rt.load_bytes("junk", b"definitely not wasm").unwrap_err();
    assert!(matches!(e, LoadError::NotWasm { .. }), "{e}");
    let bytes = std::fs::read(module_path("math")).unwrap();
    let e = rt.load_bytes("truncated", &bytes[..bytes.len() / 2]).unwrap_err();
    assert!(matches!(e, LoadError::Compile { .. }), "{e}");
    let e = rt.load_file("/nonexistent/x.wasm").unwrap_err();
    assert!(matches!(e, LoadError::Io { .. }), "{e}");
}

#[tokio::test]
async fn compiled_components_are_cached_by_content() {
    let dir = std::env::temp_dir().join(format!("easyrpc-cache-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rt = Runtime::new(RuntimeConfig { cache_dir: Some(dir.clone()), ..Default::default() }).unwrap();
    let first = rt.load_file(module_path("math")).unwrap();
    assert_eq!(first.load_info().0, CacheOutcome::CompiledAndStored);
    let second = rt.load_file(module_path("math")).unwrap();
    assert_eq!(second.load_info().0, CacheOutcome::Hit);
    assert_eq!(first.hash(), second.hash());
    let r = second.call("add", vec![1.into(), 2.into()], vec![], CallLimits::default()).await.unwrap();
    assert_eq!(r, Value::Int(3));
    // A corrupt entry is recompiled, not trusted.
    for entry in std::fs::read_dir(&dir).unwrap() {
        std::fs::write(entry.unwrap().path(), b"corrupt").unwrap();
    }
    let third = rt.load_file(module_path("math")).unwrap();
    assert_eq!(third.load_info().0, CacheOutcome::CompiledAndStored);
    let _ = std::fs::remove_dir_all(&dir);
}
