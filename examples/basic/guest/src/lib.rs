//! The seed's Basic Usage function as a WASM component:
//!
//! ```python
//! @ws_server_a.origin(namespace='public')
//! def good_func_a(a, b, c):
//!     print(f"good_func_a {a} {b} {c}")
//!     return {"good_func_a": [a, b, c]}
//! ```
//!
//! Build: `cargo xtask examples` (from the project root).
easyrpc_guest::wit_bindgen::generate!({
    world: "examples:basic/basic",
    path: ["../../../wit/guest", "wit"],
    runtime_path: "easyrpc_guest::wit_bindgen::rt",
    generate_all,
});
easyrpc_guest::embed_wit!(include_str!("../wit/world.wit"));

struct Basic;

impl Guest for Basic {
    fn good_func_a(a: String, b: String, c: String) -> String {
        // Guest output goes to the host's log, tagged with module and function.
        println!("good_func_a {a} {b} {c}");
        easyrpc_guest::json_object([("good_func_a", format!("[{a},{b},{c}]").as_str())])
    }
}

export!(Basic);
