//! # easyrpc-guest: write EasyRpc functions in Rust
//!
//! This crate is what a guest module depends on. It owns the guest half of EasyRpc's WIT
//! conventions (the `json` type, the `@default` / `@varargs` / `@kwargs` doc annotations) and the
//! `embed_wit!` macro that hands the module's WIT docs to the host. It must not grow host-side
//! logic: everything here compiles to `wasm32-wasip2` and `wasm32-unknown-unknown`.
//!
//! ## From `cargo new` to a deployed function
//!
//! `easyrpc new NAME` writes steps 1 to 4 for you (and a generator, and a test); by hand:
//!
//! 1. `cargo new --lib hello && cd hello`, then in `Cargo.toml`:
//!    ```toml
//!    [lib]
//!    crate-type = ["cdylib"]
//!    [dependencies]
//!    easyrpc-guest = { path = "../easyrpc/guest-sdk" }   # not on crates.io yet: a path or
//!    # easyrpc-guest = { git = "<this repository's URL>" }   a git dependency
//!    ```
//! 2. Copy EasyRpc's `wit/guest/types.wit` to `wit/deps/easyrpc-guest/types.wit` and write
//!    `wit/world.wit`:
//!    ```wit
//!    package me:hello;
//!    world hello {
//!        use easyrpc:guest/types@0.1.0.{json};
//!        /// Greet someone.
//!        /// @default greeting = "hello"
//!        export greet: func(name: string, greeting: string) -> string;
//!    }
//!    ```
//! 3. In `src/lib.rs`:
//!    ```ignore
//!    easyrpc_guest::wit_bindgen::generate!({
//!        world: "hello",
//!        path: "wit",
//!        runtime_path: "easyrpc_guest::wit_bindgen::rt",
//!        generate_all,   // the json type comes from the easyrpc:guest package
//!    });
//!    easyrpc_guest::embed_wit!(include_str!("../wit/world.wit"));
//!
//!    struct Hello;
//!    impl Guest for Hello {
//!        fn greet(name: String, greeting: String) -> String { format!("{greeting}, {name}!") }
//!    }
//!    export!(Hello);
//!    ```
//! 4. `cargo build --release --target wasm32-wasip2` (`rustup target add wasm32-wasip2` once).
//!    Recommended: a 64 KiB guest stack, so a fresh instance per call costs no page faults
//!    (otherwise a large share of a call's cost on the host), in `.cargo/config.toml`:
//!    ```toml
//!    [target.wasm32-wasip2]
//!    rustflags = ["-C", "link-arg=-zstack-size=65536"]
//!    [target.wasm32-unknown-unknown]   # the same, for the WASI-free build below
//!    rustflags = ["-C", "link-arg=-zstack-size=65536"]
//!    ```
//!
//!    Faster, for a guest that needs nothing from WASI (no printing; a panic then traps
//!    without its message; [`sleep`] instead of `std::thread::sleep`): build for
//!    `wasm32-unknown-unknown`, linked into a component by the toolchain's
//!    `wasm-component-ld`. The component has no WASI imports, and a fresh instance per call
//!    costs less (see BENCHMARKS.md).
//!    On that target this crate installs the guest's allocator (`tail_first.rs`: dlmalloc
//!    serving the initial memory's tail before growing memory, which std's allocator does on
//!    the first allocation, at a cost on every call). `cargo xtask modules` builds this way the
//!    modules that `modules/Cargo.toml` does not list under `wasi`; by hand:
//!    ```sh
//!    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/host: //p')/bin/wasm-component-ld \
//!      cargo build --release --target wasm32-unknown-unknown
//!    ```
//! 5. `easyrpc inspect target/wasm32-wasip2/release/hello.wasm` shows
//!    `greet(name: string, greeting: string = "hello") -> string`.
//! 6. Serve and call it:
//!    ```sh
//!    easyrpc serve --secret s3cret target/wasm32-wasip2/release/hello.wasm   # namespace "hello"
//!    easyrpc call --secret s3cret -n hello greet ada                          # "hello, ada!"
//!    ```
//!    or deploy it into a running host (admin secret): `easyrpc deploy --secret s3cret -n hello
//!    target/wasm32-wasip2/release/hello.wasm`. A Python caller sees
//!    `greet(name: str, greeting: str = 'hello') -> str`.
//!
//! ## Generators
//! A function returning a resource that has a `next: func() -> option<T>` method is a
//! generator: callers iterate it (`async for` in Python, a `Stream` in Rust). Resources live in
//! interfaces, so put the generator in an exported interface and give it a top-level name with
//! `/// @name`. [`Generator`] turns any iterator into the resource's state.
//!
//! ## State, logs, settings and other functions
//! A guest reaches beyond its call only through what its namespace's config grants (see
//! wit/README.md, "Capabilities"); each module below re-exports the standard bindings, so code
//! written against the same packages and versions for other hosts ports as it is. Nothing
//! passes from one call to the next except through these: by default every call runs in a
//! fresh instance.
//!
//! **A counter** (grant `wasi:keyvalue`): `increment` is atomic, so concurrent callers never
//! lose a count.
//! ```no_run
//! use easyrpc_guest::keyvalue::{atomics, store};
//! fn hit(page: String) -> Result<i64, String> {
//!     let bucket = store::open("default").map_err(|e| format!("{e:?}"))?;
//!     atomics::increment(&bucket, &page, 1).map_err(|e| format!("{e:?}"))
//! }
//! ```
//!
//! **A shared work queue served by a pool of workers**: producers number each item with
//! `increment` on a `tail` counter and store it under its number; a worker claims the next
//! number by moving a `head` counter with a compare-and-swap, which exactly one of the workers
//! that read the same head wins, so no item is taken twice, and none is lost as long as the
//! calls that push and pop it finish (a producer that fails between numbering its item and
//! storing it leaves a gap, reported to the worker that claims it). The whole guest is
//! `modules/stateful` (`push`, `pop`); the heart of `pop`:
//! ```no_run
//! use easyrpc_guest::keyvalue::atomics::{self, Cas, CasError};
//! # use easyrpc_guest::keyvalue::store::Bucket;
//! # fn number(text: Option<Vec<u8>>) -> u64 {
//! #     text.and_then(|t| String::from_utf8(t).ok()?.parse().ok()).unwrap_or(0)
//! # }
//! # fn pop(bucket: &Bucket) -> Result<Option<u64>, String> {
//! let mut cas = Cas::new(&bucket, "head").map_err(|e| format!("{e:?}"))?;
//! let claimed = loop {
//!     let head = number(cas.current().map_err(|e| format!("{e:?}"))?);
//!     if head >= number(bucket.get("tail").map_err(|e| format!("{e:?}"))?) {
//!         return Ok(None); // empty
//!     }
//!     match atomics::swap(cas, (head + 1).to_string().as_bytes()) {
//!         Ok(()) => break head + 1,
//!         Err(CasError::CasFailed(fresh)) => cas = fresh, // another worker won: try again
//!         Err(CasError::StoreError(e)) => return Err(format!("{e:?}")),
//!     }
//! };
//! # Ok(Some(claimed))
//! # }
//! ```
//! Any number of workers call `pop` at once from any connection or host (with the Redis
//! backend, hosts share the queue).
//!
//! **A chain of functions** (grant `easyrpc:call`, and `call_namespaces` for namespaces other
//! than its own): arguments and result are JSON; the nested call ends by the caller's
//! deadline and nests at most 8 deep. `modules/chain` is the whole guest.
//! ```no_run
//! # fn total() -> Result<String, String> {
//! let total = easyrpc_guest::call::call("billing", "total", r#"["order-17"]"#, "{}")
//!     .map_err(|e| e.to_string())?;
//! # Ok(total)
//! # }
//! ```
//!
//! **Logs and settings** (grants `wasi:logging`, `wasi:config`):
//! ```no_run
//! use easyrpc_guest::logging::{log, Level};
//! let greeting = easyrpc_guest::config::get("greeting").ok().flatten().unwrap_or_default();
//! log(Level::Info, "greeter", &format!("greeting with {greeting:?}"));
//! ```
//!
//! ## Any-JSON values
//! A `json` parameter arrives as its JSON text (a `String`); [`from_json`] turns it into any serde
//! type and [`to_json`] back. Echoing needs no parsing at all: return the string you were given.

pub use serde_json;
pub use wit_bindgen;

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod tail_first;

/// The SDK's bindings of everything the host offers (wit/guest/host.wit, world
/// `capabilities`), re-exported below. A module imports an interface only if it calls it.
mod host_bindings {
    wit_bindgen::generate!({
        world: "easyrpc:guest/capabilities",
        path: "wit",
        generate_all,
    });
}

/// Pauses the call for `duration` through the host, without WASI: a module that needs nothing
/// else from WASI can then be built without it (see step 4 above), cheaper per call.
/// The call's deadline still applies: sleeping past it ends the call with a timeout.
pub fn sleep(duration: std::time::Duration) {
    host_bindings::easyrpc::guest::host::sleep(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX));
}

/// Key-value state: the standard `wasi:keyvalue@0.2.0-draft2` (`store`, `atomics`, `batch`),
/// the same bindings a Spin or wasmCloud guest uses. Needs the `wasi:keyvalue` grant.
///
/// Buckets belong to the namespace the function serves in: `store::open("default")` in two
/// namespaces opens two buckets. Values are bytes; `atomics::increment` keeps a counter as
/// its decimal text, so `get` of a counter gives e.g. `b"42"`.
///
/// ```no_run
/// use easyrpc_guest::keyvalue::{atomics, store};
/// # fn hits() -> Result<i64, String> {
/// let bucket = store::open("default").map_err(|e| format!("{e:?}"))?;
/// let hits = atomics::increment(&bucket, "hits", 1).map_err(|e| format!("{e:?}"))?;
/// # Ok(hits)
/// # }
/// ```
pub mod keyvalue {
    pub use crate::host_bindings::wasi::keyvalue::{atomics, batch, store};
}

/// Writing to the host's log: the standard `wasi:logging@0.1.0-draft`. Needs the
/// `wasi:logging` grant. Lines carry the namespace, module, function and request id on the
/// host, and a namespace logs at most so many lines per second (the rest are counted and
/// dropped).
///
/// ```no_run
/// use easyrpc_guest::logging::{log, Level};
/// log(Level::Info, "orders", "order 17 accepted");
/// ```
pub mod logging {
    pub use crate::host_bindings::wasi::logging::logging::{log, Level};
}

/// The namespace's settings (`[namespace.config]` in the host's config): the standard
/// `wasi:config/store@0.2.0-draft`. Needs the `wasi:config` grant.
///
/// ```no_run
/// let greeting = easyrpc_guest::config::get("greeting").ok().flatten().unwrap_or_default();
/// ```
pub mod config {
    pub use crate::host_bindings::wasi::config::store::{get, get_all, Error};
}

/// Calling other functions, local or on linked hosts, with JSON arguments and result
/// (`easyrpc:guest/call`). Needs the `easyrpc:call` grant; besides its own namespace a
/// function may call those its namespace's `call_namespaces` lists.
///
/// ```no_run
/// # fn sum() -> Result<(), String> {
/// let sum = easyrpc_guest::call::call("math", "add", "[1, 2]", "{}").map_err(|e| format!("{e:?}"))?;
/// assert_eq!(sum, "3");
/// # Ok(())
/// # }
/// ```
pub mod call {
    pub use crate::host_bindings::easyrpc::guest::call::{call, CallError};

}

/// Name of the custom section that carries the module's WIT source (docs and `@` annotations).
/// The host looks for exactly this name.
pub const WIT_SECTION: &str = "easyrpc-wit";

/// Parses a `json` argument into any deserializable type, e.g. `serde_json::Value`.
pub fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|e| format!("invalid JSON argument: {e}"))
}

/// Serializes a value into the text of a `json` result.
pub fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    // Serializing plain data into a String cannot fail; a non-string map key would, and then the
    // caller gets JSON null rather than a trap.
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

/// Builds a JSON object from already-encoded JSON texts without re-parsing them, so values such
/// as big integers or NaN pass through untouched: `json_object([("a", &a), ("kwargs", &kw)])`.
pub fn json_object<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::from("{");
    for (i, (key, value_json)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&to_json(key));
        out.push(':');
        out.push_str(value_json);
    }
    out.push('}');
    out
}

/// The state behind a generator resource: wraps any iterator so the resource's `next` method is
/// one line. WIT (a generator is a function returning a resource with `next`):
///
/// ```wit
/// interface counting {
///     resource numbers { next: func() -> option<s64>; }
///     /// @name count
///     count: func(n: s64) -> numbers;
/// }
/// ```
///
/// Rust:
///
/// ```no_run
/// # easyrpc_guest::wit_bindgen::generate!({
/// #     inline: "package me:demo; interface counting { resource numbers { next: func() -> option<s64>; }
/// #              count: func(n: s64) -> numbers; } world demo { export counting; }",
/// #     runtime_path: "easyrpc_guest::wit_bindgen::rt",
/// # });
/// # struct Demo;
/// use exports::me::demo::counting::{Guest, GuestNumbers, Numbers};
/// impl Guest for Demo {
///     type Numbers = easyrpc_guest::Generator<i64>;
///     fn count(n: i64) -> Numbers { Numbers::new(easyrpc_guest::Generator::new(0..n)) }
/// }
/// impl GuestNumbers for easyrpc_guest::Generator<i64> {
///     fn next(&self) -> Option<i64> { self.next_item() }
/// }
/// # fn main() {}
/// ```
pub struct Generator<T> {
    items: std::cell::RefCell<Box<dyn Iterator<Item = T>>>,
}

impl<T> Generator<T> {
    pub fn new(items: impl Iterator<Item = T> + 'static) -> Self {
        Self { items: std::cell::RefCell::new(Box::new(items)) }
    }

    /// The next item, none at the end (what the resource's `next` returns).
    pub fn next_item(&self) -> Option<T> {
        self.items.borrow_mut().next()
    }
}

#[doc(hidden)]
pub const fn __bytes<const N: usize>(text: &str) -> [u8; N] {
    let bytes = text.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

/// Stores the module's WIT source in the `easyrpc-wit` custom section, where the host reads doc
/// comments and `@default` / `@varargs` / `@kwargs` annotations. Call it once per module:
/// `easyrpc_guest::embed_wit!(include_str!("../wit/world.wit"));`
#[macro_export]
macro_rules! embed_wit {
    ($text:expr) => {
        const _: () = {
            const TEXT: &str = $text;
            #[link_section = "easyrpc-wit"]
            #[used]
            static EASYRPC_WIT: [u8; TEXT.len()] = $crate::__bytes::<{ TEXT.len() }>(TEXT);
        };
    };
}
