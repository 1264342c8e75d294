//! The peer-test functions as a WASM component: the same behaviour as the reference Python
//! functions in tests/peer/peer_client.py.
easyrpc_guest::wit_bindgen::generate!({
    world: "easyrpc-modules:peer/peer",
    path: ["../../wit/guest", "wit"],
    runtime_path: "easyrpc_guest::wit_bindgen::rt",
    generate_all,
});
easyrpc_guest::embed_wit!(include_str!("../wit/world.wit"));

use easyrpc_guest::{json_object, to_json};

struct Peer;

impl Guest for Peer {
    fn echo(x: String) -> String {
        x
    }

    fn add(a: i64, b: i64) -> i64 {
        a.wrapping_add(b)
    }

    fn concat(parts: Vec<String>, sep: String) -> String {
        parts.join(&sep)
    }

    fn kwecho(a: String, kwargs: String) -> String {
        json_object([("a", a.as_str()), ("kwargs", kwargs.as_str())])
    }

    fn maybe(x: Option<i64>) -> String {
        to_json(&x)
    }

    fn sum_list(xs: Vec<i64>) -> i64 {
        xs.iter().fold(0i64, |acc, x| acc.wrapping_add(*x))
    }

    fn fail(msg: String) -> Result<String, String> {
        Err(msg)
    }

    fn slow(delay: f64, tag: String) -> String {
        if delay.is_finite() && delay > 0.0 {
            // Through the host, not WASI clocks: peer then needs no WASI at all.
            easyrpc_guest::sleep(std::time::Duration::from_secs_f64(delay.min(1e9)));
        }
        tag
    }
}

use exports::easyrpc_modules::peer::generators::{GuestNumbers, Numbers};

impl exports::easyrpc_modules::peer::generators::Guest for Peer {
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

export!(Peer);
