//! Version 2 of the hot-swap test module.
easyrpc_guest::wit_bindgen::generate!({
    world: "easyrpc-modules:swap/swap",
    path: "wit",
    runtime_path: "easyrpc_guest::wit_bindgen::rt",
});
easyrpc_guest::embed_wit!(include_str!("../wit/world.wit"));

struct Swap;

impl Guest for Swap {
    fn version() -> String {
        "v2".to_owned()
    }
    fn scale(x: i64) -> i64 {
        x.wrapping_mul(20)
    }
    fn extra() -> String {
        "only in v2".to_owned()
    }
}

export!(Swap);
