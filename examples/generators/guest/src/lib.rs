//! The seed's Generators example as a WASM component:
//!
//! ```python
//! @easy_server.origin(namespace='private')
//! def private_generator(work: dict):
//!     for item in work:
//!         yield item
//! ```
//!
//! (`public_generator` is the same.) Build: `cargo xtask examples` (from the project root).
easyrpc_guest::wit_bindgen::generate!({
    world: "examples:generators/generators",
    path: ["../../../wit/guest", "wit"],
    runtime_path: "easyrpc_guest::wit_bindgen::rt",
    generate_all,
});
easyrpc_guest::embed_wit!(include_str!("../wit/world.wit"));

use exports::examples::generators::work::{Guest, GuestItems, Items};

struct Generators;

impl Guest for Generators {
    type Items = easyrpc_guest::Generator<String>;

    fn private_generator(work: Vec<String>) -> Items {
        Items::new(easyrpc_guest::Generator::new(work.into_iter()))
    }

    fn public_generator(work: Vec<String>) -> Items {
        Items::new(easyrpc_guest::Generator::new(work.into_iter()))
    }
}

impl GuestItems for easyrpc_guest::Generator<String> {
    fn next(&self) -> Option<String> {
        self.next_item()
    }
}

export!(Generators);
