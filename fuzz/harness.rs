//! What each fuzz target does with an input, and the bounds it must keep, shared by the
//! `cargo fuzz` targets (`fuzz_targets/`) and by the test suite, which runs every input of
//! `fuzz/corpus/` through the same checks (`tests/integration/fuzz_corpus.rs`).
//!
//! Every decoder a peer reaches must, on any input: not panic; take at most [`MS_PER_KB`] of
//! CPU per KiB of input (inputs under a KiB get [`MS_PER_KB`] in all; CPU time of the thread,
//! so that a busy machine's scheduling does not count); and allocate at most
//! [`ALLOCATION_FACTOR`] bytes per byte of input beyond [`ALLOCATION_FLOOR`] (the peak of live
//! bytes its thread holds while it runs, counted by [`Counting`], which the binary installs as
//! its allocator).

use easyrpc::runtime::convert;
use easyrpc::signature::{bind_arguments, Case, Field, ParamDescriptor, ParamKind, WitType};
use easyrpc::value::{json, Value};
use easyrpc::wire::{self, auth, pickle, Serialization};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

/// Time allowed per KiB of input.
pub const MS_PER_KB: u64 = 10;
/// Peak bytes allocated allowed per byte of input.
pub const ALLOCATION_FACTOR: usize = 128;
/// Peak bytes any input may allocate: the decoders' fixed costs (a pickle's 64 KiB
/// materializing floor, hash indexes, error messages).
pub const ALLOCATION_FLOOR: usize = 4 << 20;
/// The secret that setup tokens of the corpus are signed with.
pub const SECRET: &str = "fuzz-secret";

/// What a fuzz target runs on each input.
pub type Target = fn(&[u8]);

/// The fuzz targets, by the name of their corpus folder.
pub const TARGETS: [(&str, Target); 4] =
    [("setup", setup), ("json", json_frames), ("pickle", pickle_frames), ("convert", convert_values)];

/// A fuzz target's body: the counting allocator, and `harness::$target` run on each input
/// under the harness's bounds (a broken bound is a crash, for libFuzzer to keep).
#[allow(unused_macros)]
macro_rules! fuzz_target_of {
    ($target:ident) => {
        #[global_allocator]
        static ALLOCATOR: harness::Counting = harness::Counting;

        libfuzzer_sys::fuzz_target!(|input: &[u8]| {
            if let Err(broken) = harness::run_checked(harness::$target, input, 1) {
                panic!("{broken}");
            }
        });
    };
}

/// The global allocator of a fuzz or test binary, counting each thread's live bytes and their
/// peak. Per thread, because a decoder runs on the thread that calls it, while other tests of
/// the same binary allocate on theirs.
pub struct Counting;

thread_local! {
    /// Bytes this thread allocated minus those it freed (negative when it frees what another
    /// thread allocated).
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            counted(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        counted(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            counted(new_size as isize - layout.size() as isize);
        }
        p
    }
}

fn counted(bytes: isize) {
    // A thread being torn down has no counters left; its last frees count nowhere.
    let _ = LIVE.try_with(|live| {
        let now = live.get().wrapping_add(bytes);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

/// What running one input cost.
#[derive(Debug)]
pub struct Cost {
    /// CPU time it took.
    pub took: Duration,
    /// Peak bytes allocated above what was live before.
    pub allocated: usize,
}

/// Runs `target` on `input` and checks its bounds; the error says which it broke. `slowdown`
/// scales the time bound for unoptimized builds (the test suite's); the fuzz targets,
/// optimized, pass 1.
pub fn run_checked(target: Target, input: &[u8], slowdown: u32) -> Result<Cost, String> {
    let kib = (input.len() as u64).div_ceil(1024).max(1);
    let time_bound = Duration::from_millis(MS_PER_KB * kib) * slowdown;
    let mut cost = run_once(target, input);
    // A slow input is slow every time; a run the machine interrupted (a page-fault storm, a
    // reclaim) is not, so the best of three counts.
    for _ in 0..2 {
        if cost.took <= time_bound {
            break;
        }
        let again = run_once(target, input);
        cost.took = cost.took.min(again.took);
    }
    if cost.took > time_bound {
        return Err(format!("{} bytes took {:?}, over {time_bound:?}", input.len(), cost.took));
    }
    let allocation_bound = input.len() * ALLOCATION_FACTOR + ALLOCATION_FLOOR;
    if cost.allocated > allocation_bound {
        return Err(format!("{} bytes allocated {} bytes, over {allocation_bound}", input.len(), cost.allocated));
    }
    Ok(cost)
}

fn run_once(target: Target, input: &[u8]) -> Cost {
    let base = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(base));
    let started = thread_cpu_time();
    target(input);
    Cost {
        took: thread_cpu_time().saturating_sub(started),
        allocated: usize::try_from(PEAK.with(Cell::get).saturating_sub(base)).unwrap_or(0),
    }
}

/// CPU time this thread has used.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the struct passed to it.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// The text of an input, if it is UTF-8 (frames of text are).
fn text(input: &[u8]) -> Option<&str> {
    std::str::from_utf8(input).ok()
}

/// Before auth: a setup frame and its JWT, verified against [`SECRET`] and a tenant's secret.
pub fn setup(input: &[u8]) {
    let Some(frame) = text(input) else { return };
    let outcome =
        auth::read_setup(frame, "admin-secret", |namespace| (namespace == "tenant").then(|| SECRET.to_owned()));
    if let Ok(auth::Setup { claims, admin, secret }) = outcome {
        assert!(!admin, "only the admin secret makes an admin");
        assert_eq!(claims.namespace, "tenant", "a token verifies only with its namespace's secret");
        assert_eq!(secret, SECRET, "and that secret is the one that verified it");
    }
    // The token alone, as a wrapped request is read.
    if let Ok(Value::Dict(entries)) = json::parse(frame) {
        if let Some((_, Value::Str(token))) = entries.first() {
            let _ = auth::unwrap_request(token, SECRET);
        }
    }
}

/// A json connection's frames: the envelope reader (one pass, then the general one) and the
/// JSON codec, which must print what it parses so that it parses back the same.
pub fn json_frames(input: &[u8]) {
    let Some(frame) = text(input) else { return };
    let _ = wire::read_text(frame);
    if let Ok(value) = json::parse(frame) {
        let printed = json::to_string(&value);
        let again = json::parse(&printed).unwrap_or_else(|e| panic!("printed JSON does not parse back: {e}"));
        assert_eq!(json::to_string(&again), printed, "JSON does not round-trip");
        let _ = wire::listing::parse_listing(&value);
    }
}

/// A pickle connection's frames: the envelope and the codec, which must encode what it decodes
/// so that it decodes back the same.
pub fn pickle_frames(input: &[u8]) {
    let _ = wire::read_binary(Serialization::Pickle, input);
    if let Ok(decoded) = pickle::decode(input) {
        let encoded = pickle::encode(&decoded.value);
        let again = pickle::decode(&encoded).unwrap_or_else(|e| panic!("encoded pickle does not decode: {e}"));
        assert!(same(&again.value, &decoded.value), "pickle does not round-trip");
    }
}

/// Whether two values are equal, a NaN being equal to a NaN.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x == y || (x.is_nan() && y.is_nan()),
        (Value::List(xs), Value::List(ys)) => xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| same(x, y)),
        (Value::Dict(xs), Value::Dict(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|((kx, x), (ky, y))| kx == ky && same(x, y))
        }
        _ => a == b,
    }
}

/// Arguments against descriptors: the first byte picks a parameter type, the rest is the JSON
/// of a value. Checking must agree with converting, a converted value must convert back, and
/// a `{"args": [...], "kwargs": {...}}` value binds against a signature of every parameter kind.
pub fn convert_values(input: &[u8]) {
    let Some((&pick, rest)) = input.split_first() else { return };
    let Some(Ok(value)) = text(rest).map(json::parse) else { return };
    let types = wit_types();
    let ty = &types[usize::from(pick) % types.len()];
    let checked = easyrpc::signature::check(&value, ty, "x");
    let converted = convert::to_val(&value, ty, "x");
    assert_eq!(checked.is_ok(), converted.is_ok(), "check and to_val disagree on {ty}");
    if let Ok(val) = converted {
        let back = convert::from_val(&val, ty)
            .unwrap_or_else(|e| panic!("a value converted to {ty} does not convert back: {e}"));
        assert!(convert::to_val(&back, ty, "x").is_ok(), "{ty}: what came back does not convert again");
    }
    if let (Some(Value::List(args)), kwargs) = (value.get("args"), value.get("kwargs")) {
        let kwargs = match kwargs {
            Some(Value::Dict(entries)) => entries.clone(),
            _ => Vec::new(),
        };
        if let Ok(bound) = bind_arguments(&params(), args.clone(), kwargs) {
            assert_eq!(bound.len(), params().len());
        }
    }
}

/// A type of every kind, nested as WIT allows.
fn wit_types() -> Vec<WitType> {
    let list = |t: WitType| WitType::List { element: Box::new(t) };
    let option = |t: WitType| WitType::Option { inner: Box::new(t) };
    let point = WitType::Record {
        name: Some("point".into()),
        fields: vec![
            Field { name: "x-pos".into(), ty: WitType::S32 },
            Field { name: "label".into(), ty: option(WitType::String) },
        ],
    };
    let shape = WitType::Variant {
        name: Some("shape".into()),
        cases: vec![
            Case { name: "circle".into(), ty: Some(WitType::F64) },
            Case { name: "dot".into(), ty: None },
            Case { name: "poly-line".into(), ty: Some(list(point.clone())) },
        ],
    };
    vec![
        WitType::Bool,
        WitType::S8,
        WitType::U8,
        WitType::S16,
        WitType::U16,
        WitType::S32,
        WitType::U32,
        WitType::S64,
        WitType::U64,
        WitType::F32,
        WitType::F64,
        WitType::Char,
        WitType::String,
        WitType::Json,
        list(WitType::U8),
        list(list(WitType::S64)),
        point.clone(),
        WitType::Tuple { elements: vec![WitType::String, WitType::F32, option(WitType::U16)] },
        shape.clone(),
        WitType::Enum { name: Some("color".into()), cases: vec!["red".into(), "dark-blue".into()] },
        option(option(WitType::S64)),
        option(shape),
        WitType::Result { ok: Some(Box::new(point)), err: Some(Box::new(WitType::String)) },
        WitType::Result { ok: None, err: None },
        WitType::Flags { name: Some("perms".into()), flags: vec!["read".into(), "write-all".into(), "exec".into()] },
        WitType::Unsupported { description: "stream<u8>".into() },
    ]
}

/// `f(a: s64, b: string = "x", *rest: list<s64>, only: bool = false, **extra: json)`.
fn params() -> Vec<ParamDescriptor> {
    let param = |name: &str, ty, kind, default| ParamDescriptor { name: name.into(), ty, kind, default };
    vec![
        param("a", WitType::S64, ParamKind::Positional, None),
        param("b", WitType::String, ParamKind::Positional, Some(Value::from("x"))),
        param("rest", WitType::List { element: Box::new(WitType::S64) }, ParamKind::VarArgs, None),
        param("only", WitType::Bool, ParamKind::KeywordOnly, Some(Value::Bool(false))),
        param("extra", WitType::Json, ParamKind::VarKwargs, None),
    ]
}
