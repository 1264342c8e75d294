//! easyrpc 0.251's wire protocol (see `shared/spec/easyrpc-wire-protocol.md`): frames in and out.
//!
//! Owns the shape of every frame: the setup and auth reply (always JSON text, quirk Q1), the
//! `ws_action` envelope of requests and responses, pings, and their encoding in the
//! connection's serialization (`json` text frames or `pickle` binary frames). Submodules: `auth`
//! (the setup JWT and the `encryption_enabled` wrapping), `listing` (descriptors as easyrpc
//! `sig` specs), `pickle` (the codec). It does not decide what a request does (`session`).

pub mod auth;
pub mod listing;
pub mod pickle;

use crate::value::{json, Value};

/// How the frames of one connection are encoded after setup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serialization {
    Json,
    Pickle,
}

impl Serialization {
    /// The setup claim's value; like the Python server, anything but `json` means pickle.
    pub fn from_claim(claim: &str) -> Self {
        if claim == "json" {
            Serialization::Json
        } else {
            Serialization::Pickle
        }
    }

    pub fn as_claim(self) -> &'static str {
        match self {
            Serialization::Json => "json",
            Serialization::Pickle => "pickle",
        }
    }
}

/// An encoded frame, ready for the websocket.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
}

/// Error text the Python server sends for a setup it cannot verify; clients match on it.
pub const AUTH_ERROR: &str = "unable to decode auth, server_secret may not match with server";

/// `{"auth":"ok","server_id":...}`: the reply to a good setup, JSON text in every mode.
pub fn auth_ok(server_id: &str) -> Frame {
    let mut out = String::from(r#"{"auth":"ok","server_id":"#);
    json::write_str(&mut out, server_id);
    out.push('}');
    Frame::Text(out)
}

/// `{"error": ...}`: the reply to a bad setup, JSON text in every mode (then the host closes).
pub fn auth_error(message: &str) -> Frame {
    let mut out = String::from(r#"{"error":"#);
    json::write_str(&mut out, message);
    out.push('}');
    Frame::Text(out)
}

/// The Python server's keep-alive answer on json connections (quirk Q7).
pub fn pong() -> Frame {
    Frame::Text(r#"{"pong":"pong"}"#.to_owned())
}

/// Decodes a frame's payload in the connection's serialization.
pub fn decode(ser: Serialization, frame: &Frame) -> Result<Decoded, String> {
    match frame {
        Frame::Text(text) => decode_text(text),
        Frame::Binary(bytes) => decode_binary(ser, bytes),
    }
}

/// Decodes a text frame's payload: JSON in either serialization (setup and keep-alives).
pub fn decode_text(text: &str) -> Result<Decoded, String> {
    json::parse(text).map(|value| Decoded { value, unsupported: None }).map_err(|e| e.to_string())
}

/// Decodes a binary frame's payload: pickle, which json connections do not accept.
pub fn decode_binary(ser: Serialization, bytes: &[u8]) -> Result<Decoded, String> {
    match ser {
        Serialization::Pickle => pickle::decode(bytes)
            .map(|d| Decoded { value: d.value, unsupported: d.unsupported })
            .map_err(|e| e.to_string()),
        Serialization::Json => Err("binary frame on a json connection".to_owned()),
    }
}

/// A decoded payload; `unsupported` names a pickled Python object that was decoded as none.
#[derive(Debug)]
pub struct Decoded {
    pub value: Value,
    pub unsupported: Option<String>,
}

/// Encodes a whole value (used for requests the host or client sends).
pub fn encode(ser: Serialization, value: &Value) -> Frame {
    match ser {
        Serialization::Json => Frame::Text(json::to_string(value)),
        Serialization::Pickle => Frame::Binary(pickle::encode(value)),
    }
}

/// One message of an established connection.
#[derive(Debug, PartialEq)]
pub enum Message {
    /// `{"ping": ...}` keep-alive.
    Ping,
    Request(Request),
    Response { request_id: String, response: Value, is_error: bool },
    /// EasyRpc extension, only sent to clients that asked (setup claim `easyrpc_notify`):
    /// `{"ws_action": {"type": "notice", "notice": "functions_changed"}}`.
    Notice(String),
    /// Anything that is not a dict with `ws_action` (both sides ignore these).
    Ignored,
    /// A `ws_action` whose fields are unusable; answered with an error when it has an id.
    Malformed { request_id: Option<String>, reason: String },
}

/// `ws_action` of type `request`.
#[derive(Debug, PartialEq)]
pub struct Request {
    pub request_id: String,
    pub response_expected: bool,
    pub body: RequestBody,
}

#[derive(Debug, PartialEq)]
pub enum RequestBody {
    Plain(Value),
    /// `encryption_enabled`: the request object wrapped in an HS256 JWT (see [`auth`]).
    Wrapped(String),
}

fn take(entries: &mut Vec<(String, Value)>, key: &str) -> Option<Value> {
    let i = entries.iter().position(|(k, _)| k == key)?;
    Some(entries.swap_remove(i).1)
}

/// Interprets a decoded payload.
pub fn parse_message(value: Value) -> Message {
    let Value::Dict(mut top) = value else { return Message::Ignored };
    let Some(action) = take(&mut top, "ws_action") else {
        return if top.iter().any(|(k, _)| k == "ping") { Message::Ping } else { Message::Ignored };
    };
    let Value::Dict(mut action) = action else {
        return Message::Malformed { request_id: None, reason: "ws_action must be a dict".to_owned() };
    };
    if action.iter().any(|(k, v)| k == "type" && v.as_str() == Some("notice")) {
        let notice = take(&mut action, "notice").and_then(|n| n.as_str().map(str::to_owned)).unwrap_or_default();
        return Message::Notice(notice);
    }
    let request_id = match take(&mut action, "request_id") {
        Some(Value::Str(id)) => id,
        Some(Value::Int(i)) => i.to_string(),
        _ => return Message::Malformed { request_id: None, reason: "missing request_id".to_owned() },
    };
    let kind = take(&mut action, "type");
    match kind.as_ref().and_then(Value::as_str) {
        Some("request") => {
            let response_expected = !matches!(take(&mut action, "response_expected"), Some(Value::Bool(false)));
            let body = match take(&mut action, "request") {
                Some(Value::Str(token)) => RequestBody::Wrapped(token),
                Some(v @ Value::Dict(_)) => RequestBody::Plain(v),
                _ => {
                    return Message::Malformed {
                        request_id: Some(request_id),
                        reason: "request must be a dict".to_owned(),
                    }
                }
            };
            Message::Request(Request { request_id, response_expected, body })
        }
        Some("response") => {
            let response = take(&mut action, "response").unwrap_or(Value::None);
            let is_error = matches!(take(&mut action, "error"), Some(Value::Bool(true)));
            Message::Response { request_id, response, is_error }
        }
        _ => Message::Malformed { request_id: Some(request_id), reason: "ws_action type must be request or response".to_owned() },
    }
}

/// The parts of a request object: `{"action":..., "args":[...], "kwargs":{...}, "generator_id":...}`.
#[derive(Debug, PartialEq)]
pub struct Call {
    pub action: Option<String>,
    pub args: Vec<Value>,
    pub kwargs: Vec<(String, Value)>,
    pub generator_id: Option<String>,
}

/// Splits a request object; missing `args`/`kwargs` mean none (as in Python).
pub fn parse_call(request: Value) -> Result<Call, String> {
    let Value::Dict(mut fields) = request else { return Err("request must be a dict".to_owned()) };
    let action = match take(&mut fields, "action") {
        Some(Value::Str(a)) => Some(a),
        None => None,
        Some(other) => return Err(format!("action must be a str, got {}", other.kind())),
    };
    let args = match take(&mut fields, "args") {
        Some(Value::List(items)) => items,
        None | Some(Value::None) => Vec::new(),
        Some(other) => return Err(format!("args must be a list, got {}", other.kind())),
    };
    let kwargs = match take(&mut fields, "kwargs") {
        Some(Value::Dict(entries)) => entries,
        None | Some(Value::None) => Vec::new(),
        Some(other) => return Err(format!("kwargs must be a dict, got {}", other.kind())),
    };
    let generator_id = match take(&mut fields, "generator_id") {
        Some(Value::Str(id)) => Some(id),
        _ => None,
    };
    Ok(Call { action, args, kwargs, generator_id })
}

/// Encodes a response envelope. `is_error` adds `"error": true` inside `ws_action`, which the
/// Python client ignores (it only reads the response, quirk Q2) and the Rust client uses to tell
/// a function's error text from a string result.
pub fn response(ser: Serialization, request_id: &str, value: &Value, is_error: bool) -> Frame {
    match ser {
        Serialization::Json => {
            let mut out = String::with_capacity(96);
            out.push_str(r#"{"ws_action":{"type":"response","response":"#);
            json::write_value(&mut out, value);
            out.push_str(r#","request_id":"#);
            json::write_str(&mut out, request_id);
            if is_error {
                out.push_str(r#","error":true"#);
            }
            out.push_str("}}");
            Frame::Text(out)
        }
        Serialization::Pickle => {
            let mut out = Vec::with_capacity(96);
            out.extend_from_slice(&[0x80, 4, b'}']);
            pickle::write_str(&mut out, "ws_action");
            out.extend_from_slice(b"}(");
            pickle::write_str(&mut out, "type");
            pickle::write_str(&mut out, "response");
            pickle::write_str(&mut out, "response");
            pickle::write_value(&mut out, value);
            pickle::write_str(&mut out, "request_id");
            pickle::write_str(&mut out, request_id);
            if is_error {
                pickle::write_str(&mut out, "error");
                out.push(0x88);
            }
            out.extend_from_slice(b"us.");
            Frame::Binary(out)
        }
    }
}

/// Encodes a request envelope: `request` is the request object (`{"action":..}`) or, with
/// `encryption_enabled`, its JWT string.
pub fn request(ser: Serialization, request_id: &str, request: Value, response_expected: bool) -> Frame {
    let envelope = Value::Dict(vec![(
        "ws_action".to_owned(),
        Value::Dict(vec![
            ("type".to_owned(), Value::Str("request".to_owned())),
            ("response_expected".to_owned(), Value::Bool(response_expected)),
            ("request".to_owned(), request),
            ("request_id".to_owned(), Value::Str(request_id.to_owned())),
        ]),
    )]);
    encode(ser, &envelope)
}

/// The change notice sent to clients that asked for it.
pub fn functions_changed(ser: Serialization) -> Frame {
    let notice = Value::Dict(vec![(
        "ws_action".to_owned(),
        Value::Dict(vec![
            ("type".to_owned(), Value::Str("notice".to_owned())),
            ("notice".to_owned(), Value::Str(FUNCTIONS_CHANGED.to_owned())),
        ]),
    )]);
    encode(ser, &notice)
}

/// The notice text of [`functions_changed`].
pub const FUNCTIONS_CHANGED: &str = "functions_changed";

/// The request object of a call: `{"action": name, "args": [...], "kwargs": {...}}`.
pub fn call_object(action: &str, args: Vec<Value>, kwargs: Vec<(String, Value)>) -> Value {
    Value::Dict(vec![
        ("action".to_owned(), Value::Str(action.to_owned())),
        ("args".to_owned(), Value::List(args)),
        ("kwargs".to_owned(), Value::Dict(kwargs)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_captured_request() {
        let text = r#"{"ws_action": {"type": "request", "response_expected": true, "request": {"action": "kwfunc", "args": [1, 2, 9, 8], "kwargs": {"c": "z", "extra": 5}}, "request_id": "d2faa324"}}"#;
        let Message::Request(r) = parse_message(json::parse(text).unwrap()) else { panic!() };
        assert_eq!(r.request_id, "d2faa324");
        assert!(r.response_expected);
        let RequestBody::Plain(body) = r.body else { panic!() };
        let call = parse_call(body).unwrap();
        assert_eq!(call.action.as_deref(), Some("kwfunc"));
        assert_eq!(call.args.len(), 4);
        assert_eq!(call.kwargs[1], ("extra".to_owned(), Value::Int(5)));
    }

    #[test]
    fn pings_and_foreign_frames() {
        assert_eq!(parse_message(json::parse(r#"{"ping": "ping"}"#).unwrap()), Message::Ping);
        assert_eq!(parse_message(json::parse(r#"[1, 2]"#).unwrap()), Message::Ignored);
        let m = parse_message(json::parse(r#"{"ws_action": {"type": "request", "request": 5, "request_id": "x"}}"#).unwrap());
        assert!(matches!(m, Message::Malformed { request_id: Some(_), .. }));
        let call = parse_call(json::parse(r#"{"action": "grouped"}"#).unwrap()).unwrap();
        assert!(call.args.is_empty() && call.kwargs.is_empty());
        assert!(parse_call(json::parse(r#"{"action": "x", "args": 5}"#).unwrap()).is_err());
    }

    #[test]
    fn responses_match_the_python_server_and_decode_back() {
        let f = response(Serialization::Json, "abc", &Value::Int(6), false);
        assert_eq!(f, Frame::Text(r#"{"ws_action":{"type":"response","response":6,"request_id":"abc"}}"#.to_owned()));
        for ser in [Serialization::Json, Serialization::Pickle] {
            let f = response(ser, "id-1", &Value::Str("E('x')".into()), true);
            let d = decode(ser, &f).unwrap();
            assert_eq!(parse_message(d.value), Message::Response {
                request_id: "id-1".into(),
                response: Value::Str("E('x')".into()),
                is_error: true
            });
        }
        assert_eq!(auth_ok("s-1"), Frame::Text(r#"{"auth":"ok","server_id":"s-1"}"#.into()));
    }
}
