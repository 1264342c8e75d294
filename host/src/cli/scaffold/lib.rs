//! {{name}}: EasyRpc functions in a WebAssembly component.
//!
//! Build: `cargo build --release --target wasm32-wasip2`
//! (once: `rustup target add wasm32-wasip2`), then serve `target/wasm32-wasip2/release/{{crate}}.wasm`:
//! `easyrpc serve --secret s3cret target/wasm32-wasip2/release/{{crate}}.wasm` and call it:
//! `easyrpc call --secret s3cret -n {{crate}} greet ada`. Its tests run on the host:
//! `cargo test --lib`.

easyrpc_guest::wit_bindgen::generate!({
    world: "{{name}}",
    path: "wit",
    runtime_path: "easyrpc_guest::wit_bindgen::rt",
    generate_all,
});
easyrpc_guest::embed_wit!(include_str!("../wit/world.wit"));

use exports::local::{{module}}::streams::{Guest as Streams, GuestNumbers, Numbers};

struct Component;

/// The greeting, apart from the bindings so that `cargo test` checks it on the host.
fn greeting(name: &str, greeting: &str) -> String {
    format!("{greeting}, {name}!")
}

impl Guest for Component {
    fn greet(name: String, greeting: String) -> String {
        self::greeting(&name, &greeting)
    }

    fn echo(value: String) -> String {
        value
    }
}

impl Streams for Component {
    type Numbers = easyrpc_guest::Generator<i64>;

    fn count(n: i64) -> Numbers {
        Numbers::new(easyrpc_guest::Generator::new(0..n.max(0)))
    }
}

impl GuestNumbers for easyrpc_guest::Generator<i64> {
    fn next(&self) -> Option<i64> {
        self.next_item()
    }
}

export!(Component);

#[cfg(test)]
mod tests {
    #[test]
    fn greets() {
        assert_eq!(super::greeting("ada", "hello"), "hello, ada!");
    }
}
