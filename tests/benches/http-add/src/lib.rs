//! `GET /?a=1&b=2` answers `3`: math's `add` as a wasi:http handler, so that `wasmtime serve`
//! (a fresh instance per request) and our host (a fresh instance per call) run the same
//! trivial function in the benchmark that compares them.

use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct Add;

/// The integer after `name=` in a query string, 0 when absent or malformed.
fn argument(query: &str, name: &str) -> i32 {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0)
}

impl wasip2::exports::http::incoming_handler::Guest for Add {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let query = path.split_once('?').map_or("", |(_, q)| q);
        let sum = argument(query, "a").wrapping_add(argument(query, "b"));
        let body_text = sum.to_string();
        let headers = Fields::new();
        let _ = headers.set("content-length", &[body_text.len().to_string().into_bytes()]);
        let response = OutgoingResponse::new(headers);
        let Ok(body) = response.body() else { return };
        ResponseOutparam::set(response_out, Ok(response));
        if let Ok(out) = body.write() {
            let _ = out.blocking_write_and_flush(body_text.as_bytes());
        }
        let _ = OutgoingBody::finish(body, None);
    }
}

wasip2::http::proxy::export!(Add);
