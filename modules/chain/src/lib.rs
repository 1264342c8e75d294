//! Function chaining: a guest calls other functions through the host (easyrpc:guest/call).
easyrpc_guest::wit_bindgen::generate!({
    world: "easyrpc-modules:chain/chain",
    path: ["../../wit/guest", "wit"],
    runtime_path: "easyrpc_guest::wit_bindgen::rt",
    generate_all,
});
easyrpc_guest::embed_wit!(include_str!("../wit/world.wit"));

use easyrpc_guest::call::call;

struct Chain;

impl Guest for Chain {
    fn forward(namespace: String, function: String, args: String, kwargs: String) -> Result<String, String> {
        call(&namespace, &function, &args, &kwargs).map_err(|e| e.to_string())
    }

    fn recurse(namespace: String, n: i64) -> Result<i64, String> {
        if n <= 0 {
            return Ok(0);
        }
        let args = format!("[{}, {}]", easyrpc_guest::to_json(&namespace), n - 1);
        let below = call(&namespace, "recurse", &args, "{}").map_err(|e| e.to_string())?;
        below.parse::<i64>().map(|calls| calls + 1).map_err(|e| format!("recurse answered {below}: {e}"))
    }
}

export!(Chain);
