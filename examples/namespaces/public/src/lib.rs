//! `public_func` of the seed's multiple-namespaces example, served in namespace `public`.
easyrpc_guest::wit_bindgen::generate!({
    world: "examples:public/public",
    path: ["../../../wit/guest", "wit"],
    runtime_path: "easyrpc_guest::wit_bindgen::rt",
    generate_all,
});
easyrpc_guest::embed_wit!(include_str!("../wit/world.wit"));

struct Public;

impl Guest for Public {
    fn public_func(a: String, b: String, c: String) -> String {
        println!("public_func {a} {b} {c}");
        easyrpc_guest::json_object([("public_func", format!("[{a},{b},{c}]").as_str())])
    }
}

export!(Public);
