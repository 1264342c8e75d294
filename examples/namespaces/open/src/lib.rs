//! `open_function(a, **kw)` of the seed's multiple-namespaces example: one module served in
//! both the `public` and the `private` namespace (see ../easyrpc.toml).
easyrpc_guest::wit_bindgen::generate!({
    world: "examples:open/open",
    path: ["../../../wit/guest", "wit"],
    runtime_path: "easyrpc_guest::wit_bindgen::rt",
    generate_all,
});
easyrpc_guest::embed_wit!(include_str!("../wit/world.wit"));

struct Open;

impl Guest for Open {
    fn open_function(a: String, kw: String) -> String {
        println!("open_function {a} {kw}");
        easyrpc_guest::json_object([("open_function", format!("[{a},{kw}]").as_str())])
    }
}

export!(Open);
