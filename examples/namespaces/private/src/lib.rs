//! `private_function` of the seed's multiple-namespaces example, served in namespace `private`.
easyrpc_guest::wit_bindgen::generate!({
    world: "examples:private/private",
    path: ["../../../wit/guest", "wit"],
    runtime_path: "easyrpc_guest::wit_bindgen::rt",
    generate_all,
});
easyrpc_guest::embed_wit!(include_str!("../wit/world.wit"));

struct Private;

impl Guest for Private {
    fn private_function(a: String, b: String, c: String) -> String {
        println!("private_function {a} {b} {c}");
        easyrpc_guest::json_object([("private_function", format!("[{a},{b},{c}]").as_str())])
    }
}

export!(Private);
