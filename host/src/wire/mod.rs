//! easyrpc 0.251's wire protocol (docs/protocol.md): frames in and out.
//!
//! Owns the shape of every frame: the setup and auth reply (always JSON text, quirk Q1), the
//! `ws_action` envelope of requests and responses, pings, and their encoding in the
//! connection's serialization (`json` text frames or `pickle` binary frames). Submodules: `auth`
//! (the setup JWT and the `encryption_enabled` wrapping), `listing` (descriptors as easyrpc
//! `sig` specs), `pickle` (the codec). It does not decide what a request does (`session`).

pub mod auth;
pub mod listing;
pub mod pickle;
pub mod tls;

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

/// Actions of EasyRpc's extension for admins: deploy a module (kwargs `namespace`, `name`,
/// `wasm`) and remove one (kwargs `namespace`, `name`). WIT names cannot start with `_`, so
/// these never shadow a function.
pub const DEPLOY: &str = "__easyrpc_deploy__";
pub const REMOVE: &str = "__easyrpc_remove__";
/// Admin action (optional kwarg `namespace`): the modules each namespace holds, as a list of
/// objects (namespace, name, hash, size, since, source).
pub const MODULES: &str = "__easyrpc_modules__";
/// Action of EasyRpc's extension between our hosts (kwarg-less, with `generator_id`): close a
/// generator of this connection before its end. Never sent to Python hosts, which would drop
/// the link on an action they do not know.
pub const GENERATOR_CLOSE: &str = "__easyrpc_generator_close__";

/// Error text the Python server sends for a setup it cannot verify; clients match on it.
pub const AUTH_ERROR: &str = "unable to decode auth, server_secret may not match with server";

/// Python's `repr` of a str, so error strings read like the Python server's (`ValueError('boom')`).
pub fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

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
    Response {
        request_id: String,
        response: Value,
        is_error: bool,
    },
    /// EasyRpc extension, only sent to clients that asked (setup claim `easyrpc_notify`):
    /// `{"ws_action": {"type": "notice", "notice": "functions_changed"}}`.
    Notice(String),
    /// Anything that is not a dict with `ws_action` (both sides ignore these).
    Ignored,
    /// A `ws_action` whose fields are unusable; answered with an error when it has an id.
    Malformed {
        request_id: Option<String>,
        reason: String,
    },
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
    /// A plain request object, already split (see [`read_text`]).
    Call(Call),
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
        _ => Message::Malformed {
            request_id: Some(request_id),
            reason: "ws_action type must be request or response".to_owned(),
        },
    }
}

/// A frame whose message cannot be read (not JSON or pickle, nested too deep, expanding past
/// its budget), with the request id of its `ws_action` where that could still be found, so
/// that the caller gets an error instead of waiting for an answer that never comes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}")]
pub struct Undecodable {
    pub reason: String,
    pub request_id: Option<String>,
}

/// Reads a text frame's message. The usual envelopes (a request or a response as our client,
/// the Python client and the Python server write them) are read in one pass, without building
/// the envelope as a value; anything else goes the general way ([`decode_text`], then
/// [`parse_message`]), so that both agree on what a frame says.
pub fn read_text(text: &str) -> Result<Message, Undecodable> {
    if let Some(message) = read_usual_envelope(text) {
        return Ok(message);
    }
    match json::parse(text) {
        Ok(value) => Ok(parse_message(value)),
        Err(e) => Err(Undecodable { reason: e.to_string(), request_id: request_id_of_text(text) }),
    }
}

/// Reads a binary frame's message (pickle), with the name of any pickled Python object in it
/// that was decoded as none.
pub fn read_binary(ser: Serialization, bytes: &[u8]) -> Result<(Message, Option<String>), Undecodable> {
    match ser {
        Serialization::Pickle => match pickle::decode(bytes) {
            Ok(decoded) => Ok((parse_message(decoded.value), decoded.unsupported)),
            Err(e) => Err(Undecodable { request_id: e.request_id.clone(), reason: e.to_string() }),
        },
        Serialization::Json => {
            Err(Undecodable { reason: "binary frame on a json connection".to_owned(), request_id: None })
        }
    }
}

/// The `ws_action.request_id` string of a JSON frame that does not parse as a whole (too deep,
/// an integer too long, broken after the id), found by skipping every other value unread.
fn request_id_of_text(text: &str) -> Option<String> {
    let mut cursor = json::Cursor::new(text);
    let mut id = None;
    let _ = cursor.object(|cursor, key| {
        if key != "ws_action" || !cursor.at_object() {
            return cursor.skip();
        }
        cursor.object(|cursor, key| {
            if key == "request_id" {
                if let Some(found) = cursor.string()? {
                    id = Some(found.into_owned());
                    return Ok(());
                }
            }
            cursor.skip()
        })
    });
    id
}

/// The frame is not of the usual shape (or not JSON): the general path decides.
struct Unusual;

impl From<json::JsonError> for Unusual {
    fn from(_: json::JsonError) -> Self {
        Unusual
    }
}

/// `{"ws_action": {...}}` with a request or response inside, each field once and of the usual
/// type; none for anything else.
fn read_usual_envelope(text: &str) -> Option<Message> {
    let mut cursor = json::Cursor::new(text);
    let mut fields = EnvelopeFields::default();
    let mut seen = false;
    cursor
        .object(|cursor, key| {
            if key != "ws_action" || std::mem::replace(&mut seen, true) {
                return Err(Unusual);
            }
            cursor.object(|cursor, key| fields.read(cursor, &key))
        })
        .ok()?;
    cursor.finish().ok()?;
    fields.into_message()
}

/// The `type` of a usual `ws_action`.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Request,
    Response,
}

/// The fields of a `ws_action` read so far.
#[derive(Default)]
struct EnvelopeFields {
    kind: Option<Kind>,
    request_id: Option<String>,
    response_expected: Option<bool>,
    request: Option<Call>,
    response: Option<Value>,
    error: Option<bool>,
}

/// Sets `slot` once; a repeated key is unusual (the general path keeps the last value).
fn once<T>(slot: &mut Option<T>, value: T) -> Result<(), Unusual> {
    match slot.replace(value) {
        None => Ok(()),
        Some(_) => Err(Unusual),
    }
}

fn read_string(cursor: &mut json::Cursor<'_>) -> Result<String, Unusual> {
    cursor.string()?.map(std::borrow::Cow::into_owned).ok_or(Unusual)
}

fn read_bool(cursor: &mut json::Cursor<'_>) -> Result<bool, Unusual> {
    match cursor.value()? {
        Value::Bool(b) => Ok(b),
        _ => Err(Unusual),
    }
}

impl EnvelopeFields {
    fn read(&mut self, cursor: &mut json::Cursor<'_>, key: &str) -> Result<(), Unusual> {
        match key {
            "type" => {
                let kind = match cursor.string()?.as_deref() {
                    Some("request") => Kind::Request,
                    Some("response") => Kind::Response,
                    _ => return Err(Unusual),
                };
                once(&mut self.kind, kind)
            }
            "request_id" => once(&mut self.request_id, read_string(cursor)?),
            "response_expected" => once(&mut self.response_expected, read_bool(cursor)?),
            "error" => once(&mut self.error, read_bool(cursor)?),
            "response" => once(&mut self.response, cursor.value()?),
            "request" => once(&mut self.request, read_call(cursor)?),
            _ => Err(Unusual),
        }
    }

    fn into_message(self) -> Option<Message> {
        let request_id = self.request_id?;
        match self.kind? {
            Kind::Request if self.response.is_none() && self.error.is_none() => Some(Message::Request(Request {
                request_id,
                response_expected: self.response_expected.unwrap_or(true),
                body: RequestBody::Call(self.request?),
            })),
            Kind::Response if self.request.is_none() && self.response_expected.is_none() => Some(Message::Response {
                request_id,
                response: self.response.unwrap_or(Value::None),
                is_error: self.error == Some(true),
            }),
            _ => None,
        }
    }
}

/// A plain request object with fields of the usual types, each once.
fn read_call(cursor: &mut json::Cursor<'_>) -> Result<Call, Unusual> {
    let (mut action, mut args, mut kwargs, mut generator_id) = (None, None, None, None);
    cursor.object(|cursor, key| match &*key {
        "action" => once(&mut action, read_string(cursor)?),
        "generator_id" => once(&mut generator_id, read_string(cursor)?),
        "args" => match cursor.value()? {
            Value::List(items) => once(&mut args, items),
            _ => Err(Unusual),
        },
        "kwargs" => match cursor.value()? {
            Value::Dict(entries) => once(&mut kwargs, entries),
            _ => Err(Unusual),
        },
        _ => Err(Unusual),
    })?;
    Ok(Call {
        action,
        args: args.unwrap_or_default(),
        kwargs: kwargs.unwrap_or_default(),
        generator_id,
        hops: 0,
        deadline_ms: None,
        trace: None,
        traceparent: None,
    })
}

/// The parts of a request object: `{"action":..., "args":[...], "kwargs":{...}, "generator_id":...}`,
/// and the relay keys our hosts add to a call they pass on over a cluster link.
#[derive(Debug, PartialEq)]
pub struct Call {
    pub action: Option<String>,
    pub args: Vec<Value>,
    pub kwargs: Vec<(String, Value)>,
    pub generator_id: Option<String>,
    /// [`HOPS_KEY`]: how many hosts passed the call on before this one (0 from a client).
    pub hops: u8,
    /// [`DEADLINE_KEY`]: milliseconds the caller still waits, if it said so.
    pub deadline_ms: Option<u64>,
    /// [`TRACE_KEY`]: the request id of the call's first caller, if a host passed it on.
    pub trace: Option<String>,
    /// [`TRACEPARENT_KEY`]: the exported span that passed the call on, if spans are exported.
    pub traceparent: Option<String>,
}

/// The request key of a relayed call that counts the hosts it passed through. Python hosts
/// read only the keys they know, so a Python host in a chain passes the call on without it.
pub const HOPS_KEY: &str = "easyrpc_hops";
/// The request key of a relayed call that says how many milliseconds its caller still waits.
pub const DEADLINE_KEY: &str = "easyrpc_deadline_ms";
/// The request key of a relayed call that names the request id its first caller sent, so that
/// the logs and spans of every host it passes through name the same call.
pub const TRACE_KEY: &str = "easyrpc_trace";
/// The request key of a relayed call that names, as a W3C `traceparent`, the exported span of
/// the host that passed it on (only while that host exports spans).
pub const TRACEPARENT_KEY: &str = "easyrpc_traceparent";

/// A relay key's number: a non-negative int (anything else reads as absent).
fn relay_number(value: Option<Value>) -> Option<u64> {
    match value {
        Some(Value::Int(n)) => u64::try_from(n).ok(),
        _ => None,
    }
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
    let hops = relay_number(take(&mut fields, HOPS_KEY)).map_or(0, |h| u8::try_from(h).unwrap_or(u8::MAX));
    let deadline_ms = relay_number(take(&mut fields, DEADLINE_KEY));
    let mut text_of = |key| match take(&mut fields, key) {
        Some(Value::Str(text)) => Some(text),
        _ => None,
    };
    let (trace, traceparent) = (text_of(TRACE_KEY), text_of(TRACEPARENT_KEY));
    Ok(Call { action, args, kwargs, generator_id, hops, deadline_ms, trace, traceparent })
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
/// `encryption_enabled`, its JWT string. Written straight out, like [`response`]: the same
/// bytes as encoding the envelope as a value, without building one per call.
pub fn request(ser: Serialization, request_id: &str, request: &Value, response_expected: bool) -> Frame {
    request_envelope(
        ser,
        request_id,
        response_expected,
        |out| json::write_value(out, request),
        |out| pickle::write_value(out, request),
    )
}

/// The frame of a call of `action`: the same bytes as
/// `request(ser, id, &call_object(action, args, kwargs), expected)`, written from the borrowed
/// arguments instead of a call object built for the purpose (five allocations fewer per call
/// on the client's path).
pub fn call_request(
    ser: Serialization,
    request_id: &str,
    action: &str,
    args: &[Value],
    kwargs: &[(String, Value)],
    response_expected: bool,
) -> Frame {
    request_envelope(
        ser,
        request_id,
        response_expected,
        |out| {
            out.push_str(r#"{"action":"#);
            json::write_str(out, action);
            out.push_str(r#","args":"#);
            json::write_list(out, args);
            out.push_str(r#","kwargs":"#);
            json::write_dict(out, kwargs);
            out.push('}');
        },
        |out| {
            out.extend_from_slice(b"}(");
            pickle::write_str(out, "action");
            pickle::write_str(out, action);
            pickle::write_str(out, "args");
            pickle::write_list(out, args);
            pickle::write_str(out, "kwargs");
            pickle::write_dict(out, kwargs);
            out.push(b'u');
        },
    )
}

/// A request's envelope around the request written by `json_request` or `pickle_request`
/// (whichever `ser` uses).
fn request_envelope(
    ser: Serialization,
    request_id: &str,
    response_expected: bool,
    json_request: impl FnOnce(&mut String),
    pickle_request: impl FnOnce(&mut Vec<u8>),
) -> Frame {
    match ser {
        Serialization::Json => {
            // Room for a small call without growing (`add(1, b=2)` with a uuid-sized id is 164).
            let mut out = String::with_capacity(256);
            out.push_str(r#"{"ws_action":{"type":"request","response_expected":"#);
            out.push_str(if response_expected { "true" } else { "false" });
            out.push_str(r#","request":"#);
            json_request(&mut out);
            out.push_str(r#","request_id":"#);
            json::write_str(&mut out, request_id);
            out.push_str("}}");
            Frame::Text(out)
        }
        Serialization::Pickle => {
            let mut out = Vec::with_capacity(256);
            out.extend_from_slice(&[0x80, 4, b'}', b'(']);
            pickle::write_str(&mut out, "ws_action");
            out.extend_from_slice(b"}(");
            pickle::write_str(&mut out, "type");
            pickle::write_str(&mut out, "request");
            pickle::write_str(&mut out, "response_expected");
            out.push(if response_expected { 0x88 } else { 0x89 });
            pickle::write_str(&mut out, "request");
            pickle_request(&mut out);
            pickle::write_str(&mut out, "request_id");
            pickle::write_str(&mut out, request_id);
            out.extend_from_slice(b"uu.");
            Frame::Binary(out)
        }
    }
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
    fn repr_like_python() {
        assert_eq!(py_repr("boom"), "'boom'");
        assert_eq!(py_repr("it's"), "\"it's\"");
        assert_eq!(py_repr("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(py_repr("x\ny\\"), "'x\\ny\\\\'");
    }

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
        assert_eq!((call.hops, call.deadline_ms, call.trace, call.traceparent), (0, None, None, None));
    }

    #[test]
    fn parses_the_relay_keys_of_a_call_another_host_passed_on() {
        let text = r#"{"action": "echo", "args": [1], "easyrpc_hops": 2, "easyrpc_deadline_ms": 900, "easyrpc_trace": "abc-1"}"#;
        let call = parse_call(json::parse(text).unwrap()).unwrap();
        assert_eq!((call.hops, call.deadline_ms, call.trace.as_deref()), (2, Some(900), Some("abc-1")));
        let odd = r#"{"action": "echo", "easyrpc_hops": -1, "easyrpc_deadline_ms": "soon", "easyrpc_trace": 7}"#;
        let call = parse_call(json::parse(odd).unwrap()).unwrap();
        assert_eq!((call.hops, call.deadline_ms, call.trace), (0, None, None));
    }

    #[test]
    fn pings_and_foreign_frames() {
        assert_eq!(parse_message(json::parse(r#"{"ping": "ping"}"#).unwrap()), Message::Ping);
        assert_eq!(parse_message(json::parse(r#"[1, 2]"#).unwrap()), Message::Ignored);
        let m = parse_message(
            json::parse(r#"{"ws_action": {"type": "request", "request": 5, "request_id": "x"}}"#).unwrap(),
        );
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
            assert_eq!(
                parse_message(d.value),
                Message::Response { request_id: "id-1".into(), response: Value::Str("E('x')".into()), is_error: true }
            );
        }
        assert_eq!(auth_ok("s-1"), Frame::Text(r#"{"auth":"ok","server_id":"s-1"}"#.into()));
    }

    /// A request's body as a split call, however it was read.
    fn normalized(message: Message) -> Message {
        match message {
            Message::Request(Request { request_id, response_expected, body: RequestBody::Plain(v) }) => {
                match parse_call(v) {
                    Ok(call) => {
                        Message::Request(Request { request_id, response_expected, body: RequestBody::Call(call) })
                    }
                    Err(reason) => Message::Malformed { request_id: Some(request_id), reason },
                }
            }
            other => other,
        }
    }

    #[test]
    fn the_one_pass_reading_agrees_with_the_general_one() {
        let usual = [
            r#"{"ws_action": {"type": "request", "response_expected": true, "request": {"action": "kwfunc", "args": [1, 2, 9, 8], "kwargs": {"c": "z", "extra": 5}}, "request_id": "d2faa324"}}"#,
            r#"{"ws_action":{"type":"response","response":6,"request_id":"abc"}}"#,
            r#"{"ws_action":{"type":"response","response":"E('x')","request_id":"abc","error":true}}"#,
            r#" { "ws_action" : { "request_id" : "a\"b", "type" : "request", "request" : {"action": "GENERATOR_NEXT", "generator_id": "g\u00e9"} } } "#,
            r#"{"ws_action": {"type": "request", "response_expected": false, "request": {"action": "x", "kwargs": {"k\n": [1, {"a": null}]}}, "request_id": "1"}}"#,
            r#"{"ws_action": {"type": "response", "request_id": "r", "response": {"GENERATOR_START": "r"}}}"#,
        ];
        let unusual = [
            r#"{"ws_action": {"type": "request", "request": {"action": "x"}, "request_id": 7}}"#,
            r#"{"ws_action": {"type": "request", "request": {"action": "x", "args": null}, "request_id": "i"}}"#,
            r#"{"ws_action": {"type": "request", "request": {"action": 5}, "request_id": "i"}}"#,
            r#"{"ws_action": {"type": "request", "request": "eyJ0.eyJk.sig", "request_id": "i"}}"#,
            r#"{"ws_action": {"type": "request", "request": {"action": "x"}, "request_id": "i", "request_id": "j"}}"#,
            r#"{"ws_action": {"type": "request", "request": {"action": "x", "action": "y"}, "request_id": "i"}}"#,
            r#"{"ws_action": {"type": "request", "request": {"action": "x", "extra": 1}, "request_id": "i"}}"#,
            r#"{"ws_action": {"type": "request", "request": 5, "request_id": "x"}}"#,
            r#"{"ws_action": {"type": "notice", "notice": "functions_changed"}}"#,
            r#"{"ws_action": {"type": "response", "response": 1, "request_id": "i"}, "ping": 1}"#,
            r#"{"ws_action": {"type": "reply", "request_id": "i"}}"#,
            r#"{"ws_action": {"type": "request", "response_expected": 0, "request": {"action": "x"}, "request_id": "i"}}"#,
            r#"{"ws_action": {"type": "response", "response": 1}}"#,
            r#"{"ping": "ping"}"#,
            r#"[1, 2]"#,
            r#"{"ws_action": {"type": "response", "response": 1, "request_id": "i"}} x"#,
            r#"{"ws_action": {"type": "response", "response": 1, "request_id": "i"}"#,
        ];
        for (text, expect_fast) in usual.iter().map(|t| (t, true)).chain(unusual.iter().map(|t| (t, false))) {
            let fast = read_usual_envelope(text);
            assert_eq!(fast.is_some(), expect_fast, "{text}");
            let general = decode_text(text).map(|d| normalized(parse_message(d.value)));
            if let Some(fast) = fast {
                assert_eq!(Ok(normalized(fast)), general, "{text}");
            }
            assert_eq!(read_text(text).map(normalized).map_err(|e| e.reason), general, "{text}");
        }
    }

    #[test]
    fn undecodable_frames_keep_their_request_id() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        let big = "9".repeat(5000);
        for (request, id) in [
            (
                format!(
                    r#"{{"ws_action": {{"type": "request", "request": {{"args": {deep}}}, "request_id": "deep-1"}}}}"#
                ),
                Some("deep-1"),
            ),
            (
                format!(
                    r#"{{"ws_action": {{"request_id": "big-1", "type": "request", "request": {{"args": [{big}]}}}}}}"#
                ),
                Some("big-1"),
            ),
            (
                format!(r#"{{"ping": {deep}, "ws_action": {{"request_id": "p", "request": [1, ""]", {{}}]}}}}"#),
                Some("p"),
            ),
            (format!(r#"{{"ws_action": {{"request": {deep}}}}}"#), None),
            (r#"{"ws_action": {"request_id": "cut-1", "request": [1, 2"#.to_owned(), Some("cut-1")),
            ("[".repeat(100_000), None),
        ] {
            let e = read_text(&request).unwrap_err();
            assert_eq!(e.request_id.as_deref(), id, "{}", &request[..60.min(request.len())]);
        }
        let e = read_text(&format!(r#"{{"ws_action": {{"request": {{"args": {deep}}}, "request_id": "d"}}}}"#))
            .unwrap_err();
        assert!(e.reason.contains("nesting deeper than 512"), "{e}");
    }

    #[test]
    fn requests_are_the_bytes_of_their_envelope_encoded_as_a_value() {
        let call =
            call_object("add", vec![Value::Int(1), Value::Str("\"x\"".into())], vec![("b".into(), Value::Float(0.5))]);
        for ser in [Serialization::Json, Serialization::Pickle] {
            for expected in [true, false] {
                let envelope = Value::Dict(vec![(
                    "ws_action".to_owned(),
                    Value::Dict(vec![
                        ("type".to_owned(), Value::Str("request".to_owned())),
                        ("response_expected".to_owned(), Value::Bool(expected)),
                        ("request".to_owned(), call.clone()),
                        ("request_id".to_owned(), Value::Str("id-7".to_owned())),
                    ]),
                )]);
                let frame = request(ser, "id-7", &call, expected);
                assert_eq!(frame, encode(ser, &envelope));
                let args = [Value::Int(1), Value::Str("\"x\"".into())];
                let kwargs = [("b".to_owned(), Value::Float(0.5))];
                assert_eq!(
                    call_request(ser, "id-7", "add", &args, &kwargs, expected),
                    frame,
                    "written from borrowed parts"
                );
                let Message::Request(r) = parse_message(decode(ser, &frame).unwrap().value) else {
                    panic!("not a request")
                };
                assert_eq!(
                    (r.request_id.as_str(), r.response_expected, r.body),
                    ("id-7", expected, RequestBody::Plain(call.clone()))
                );
            }
        }
    }
}
