//! One client connection, from the setup frame to the close.
//!
//! Owns the per-connection protocol state: setup and auth (quirks Q1, Q14), the serialization
//! chosen by the client, the json keep-alive pong (Q7), calls running concurrently and answered
//! by request id (unlike the Python server, which serialises them), the in-flight bound that
//! turns into backpressure, and the close (a client that goes away aborts its calls; a host
//! shutdown lets them finish within the grace period). What a call does is the registry's
//! business; how frames look is `wire`'s.

use crate::registry::Registry;
use crate::runtime::CallError;
use crate::server::{PathConfig, Shared};
use crate::value::Value;
use crate::wire::{self, auth, Frame, Message, RequestBody, Serialization};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

/// Frames queued for one connection's writer before senders wait.
const OUTBOUND_QUEUE: usize = 1024;

fn to_ws(frame: Frame) -> WsMessage {
    match frame {
        Frame::Text(t) => WsMessage::text(t),
        Frame::Binary(b) => WsMessage::binary(b),
    }
}

/// What one connection is, once set up.
struct Session {
    serialization: Serialization,
    namespace: String,
    path: Arc<PathConfig>,
    registry: Arc<Registry>,
    max_response_frame: usize,
}

/// Serves one accepted websocket until it closes or the host shuts down.
pub(crate) async fn serve(
    mut ws: WebSocketStream<TcpStream>,
    peer: SocketAddr,
    path: Arc<PathConfig>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let limits = shared.config.limits;
    let setup = tokio::time::timeout(limits.setup_timeout, ws.next()).await;
    let claims = match setup {
        Ok(Some(Ok(WsMessage::Text(text)))) => read_setup(text.as_str(), &path.secret),
        Ok(Some(Ok(_))) => Err("the first frame must be a text setup frame".to_owned()),
        Ok(Some(Err(e))) => Err(format!("websocket error before setup: {e}")),
        Ok(None) => return,
        Err(_) => Err(format!("no setup frame within {:?}", limits.setup_timeout)),
    };
    let claims = match claims {
        Ok(c) => c,
        Err(reason) => {
            tracing::info!(%peer, path = %path.path, %reason, "connection refused");
            // The error frame first (what Python clients read), then a real close so that
            // clients which would wait fail fast.
            let _ = ws.send(to_ws(wire::auth_error(wire::AUTH_ERROR))).await;
            let _ = ws
                .close(Some(CloseFrame { code: CloseCode::Policy, reason: "authentication failed".into() }))
                .await;
            return;
        }
    };
    if ws.send(to_ws(wire::auth_ok(&shared.config.server_id))).await.is_err() {
        return;
    }
    let session = Arc::new(Session {
        serialization: claims.serialization,
        namespace: claims.namespace.clone(),
        path: path.clone(),
        registry: shared.registry.clone(),
        max_response_frame: limits.max_response_frame,
    });
    let opened = Instant::now();
    tracing::info!(
        %peer, path = %path.path, namespace = %claims.namespace, client = %claims.kind, id = %claims.id,
        serialization = claims.serialization.as_claim(), "connection open"
    );

    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<WsMessage>(OUTBOUND_QUEUE);
    let writer = tokio::spawn(async move {
        // Feed everything queued, then flush once: fewer syscalls under load.
        while let Some(first) = rx.recv().await {
            let mut closing = matches!(first, WsMessage::Close(_));
            if sink.feed(first).await.is_err() {
                return;
            }
            while let Ok(next) = rx.try_recv() {
                closing |= matches!(next, WsMessage::Close(_));
                if sink.feed(next).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() || closing {
                return;
            }
        }
    });

    let in_flight = Arc::new(Semaphore::new(limits.max_in_flight));
    let mut calls = JoinSet::new();
    let mut requests: u64 = 0;
    let shutting_down = loop {
        while calls.try_join_next().is_some() {}
        let frame = tokio::select! {
            _ = shutdown.changed() => break true,
            frame = stream.next() => frame,
        };
        let frame = match frame {
            Some(Ok(WsMessage::Text(text))) => {
                if session.serialization == Serialization::Json && text.as_str().contains("ping") {
                    // Quirk Q7: the Python server answers any text frame containing "ping".
                    let _ = tx.send(to_ws(wire::pong())).await;
                }
                Frame::Text(text.as_str().to_owned())
            }
            Some(Ok(WsMessage::Binary(bytes))) => Frame::Binary(bytes.to_vec()),
            Some(Ok(WsMessage::Close(_))) | None => break false,
            Some(Ok(_)) => continue, // websocket ping/pong: answered by tungstenite
            Some(Err(e)) => {
                tracing::info!(%peer, error = %e, "connection error");
                break false;
            }
        };
        let decoded = match wire::decode(session.serialization, &frame) {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "ignoring undecodable frame");
                continue;
            }
        };
        let request = match wire::parse_message(decoded.value) {
            Message::Request(r) => r,
            Message::Malformed { request_id: Some(id), reason } => {
                let reply = error_dict(&reason);
                let _ = tx.send(to_ws(wire::response(session.serialization, &id, &reply, true))).await;
                continue;
            }
            _ => continue,
        };
        requests += 1;
        let Ok(permit) = in_flight.clone().acquire_owned().await else { break false };
        let session = session.clone();
        let tx = tx.clone();
        let unsupported = decoded.unsupported;
        calls.spawn(async move {
            let expected = request.response_expected;
            let id = request.request_id.clone();
            let (value, is_error) = session.handle(request, unsupported).await;
            if expected {
                let _ = tx.send(session.encode_response(&id, &value, is_error)).await;
            }
            drop(permit);
        });
    };

    if shutting_down {
        // Let running calls finish (their responses still go out), then close cleanly.
        let grace = limits.shutdown_grace;
        if tokio::time::timeout(grace, async { while calls.join_next().await.is_some() {} }).await.is_err() {
            tracing::info!(%peer, "calls still running after the shutdown grace period; stopping them");
        }
        let _ = tx.send(WsMessage::Close(Some(CloseFrame { code: CloseCode::Away, reason: "server shutting down".into() }))).await;
    }
    calls.abort_all();
    drop(tx);
    let _ = writer.await;
    tracing::info!(%peer, namespace = %claims.namespace, requests, duration = ?opened.elapsed(), "connection closed");
}

fn read_setup(text: &str, secret: &str) -> Result<auth::SetupClaims, String> {
    let value = crate::value::json::parse(text).map_err(|e| format!("setup frame is not JSON: {e}"))?;
    let token = value.get("setup").and_then(Value::as_str).ok_or("setup frame lacks `setup`")?;
    auth::verify_setup(token, secret).map_err(|e| e.to_string())
}

/// `{"error": message}`: protocol-level errors travel as a normal response holding a dict.
fn error_dict(message: &str) -> Value {
    Value::Dict(vec![("error".to_owned(), Value::Str(message.to_owned()))])
}

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

/// A call's error as the wire carries it (quirk Q2): a repr-style string, e.g.
/// `Timeout('spin exceeded its deadline of 1s and was stopped')`.
pub fn error_string(error: &CallError) -> String {
    let message = match error {
        // The guest's own error: its text is the message.
        CallError::Failed { error, .. } => match error {
            Value::Str(s) => s.clone(),
            other => other.to_json(),
        },
        other => other.to_string(),
    };
    format!("{}({})", error.kind(), py_repr(&message))
}

/// Marker strings the Python client interprets inside results (quirk Q8).
const GENERATOR_START: &str = "GENERATOR_START";

impl Session {
    /// Answers one request: the response value and whether it reports an error.
    async fn handle(&self, request: wire::Request, unsupported: Option<String>) -> (Value, bool) {
        let body = match (request.body, self.path.encryption) {
            (RequestBody::Plain(v), false) => v,
            (RequestBody::Wrapped(token), true) => match auth::unwrap_request(&token, &self.path.secret) {
                Ok(v) => v,
                Err(e) => return (error_dict(&format!("cannot unwrap the encrypted request: {e}")), true),
            },
            // What the Python server answers when the request is a string it does not expect.
            (RequestBody::Wrapped(_), false) => return (error_dict("missing expected input: 'action' "), true),
            (RequestBody::Plain(_), true) => {
                return (error_dict("this server has encryption_enabled: requests must be wrapped"), true)
            }
        };
        let call = match wire::parse_call(body) {
            Ok(c) => c,
            Err(e) => return (error_dict(&e), true),
        };
        let Some(action) = call.action else { return (error_dict("missing expected input: 'action' "), true) };
        let snapshot = self.registry.snapshot();
        let namespace = snapshot.namespace(&self.namespace);
        if action == "get_registered_functions" {
            let listing = wire::listing::listing(namespace.into_iter().flat_map(|ns| ns.descriptors()));
            return (listing, false);
        }
        let Some(function) = namespace.and_then(|ns| ns.get(&action)) else {
            let names: Vec<String> =
                namespace.map(|ns| ns.names().into_iter().map(py_repr).collect()).unwrap_or_default();
            let message = format!("no action {action} registered for origin within [{}]", names.join(", "));
            return (error_dict(&message), true);
        };
        if let Some(object) = unsupported {
            let message = format!(
                "an argument holds a pickled Python object ({object}), which a WASM function cannot take; send plain data"
            );
            return (Value::Str(format!("TypeError({})", py_repr(&message))), true);
        }
        let started = Instant::now();
        let result = function.call(call.args, call.kwargs).await;
        match result {
            Ok(value) => {
                tracing::debug!(namespace = %self.namespace, function = %action, took = ?started.elapsed(), "call");
                match reserved_marker(&value) {
                    None => (value, false),
                    Some(why) => (Value::Str(format!("ValueError({})", py_repr(why))), true),
                }
            }
            Err(error) => {
                tracing::info!(namespace = %self.namespace, function = %action, kind = error.kind(), %error, "call failed");
                (Value::Str(error_string(&error)), true)
            }
        }
    }

    /// Encodes a response; a result too large for easyrpc clients (quirk Q9) becomes an error.
    fn encode_response(&self, request_id: &str, value: &Value, is_error: bool) -> WsMessage {
        let frame = wire::response(self.serialization, request_id, value, is_error);
        let size = match &frame {
            Frame::Text(t) => t.len(),
            Frame::Binary(b) => b.len(),
        };
        if size > self.max_response_frame {
            let message = format!(
                "the result is {size} bytes encoded, over the {} byte frame limit of easyrpc clients",
                self.max_response_frame
            );
            let error = Value::Str(format!("ResultTooLarge({})", py_repr(&message)));
            return to_ws(wire::response(self.serialization, request_id, &error, true));
        }
        to_ws(frame)
    }
}

/// Results the Python client would misread as generator markers (quirk Q8).
fn reserved_marker(value: &Value) -> Option<&'static str> {
    match value {
        Value::Str(s) if s.contains(GENERATOR_START) => Some("the result text holds the reserved generator start marker"),
        Value::List(items) if items.iter().any(|v| v.as_str() == Some(GENERATOR_START)) => {
            Some("the result list holds the reserved generator start marker")
        }
        _ => None,
    }
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
    fn reserved_markers_are_caught() {
        assert!(reserved_marker(&Value::Str("xGENERATOR_STARTx".into())).is_some());
        assert!(reserved_marker(&Value::List(vec!["GENERATOR_START".into()])).is_some());
        assert!(reserved_marker(&Value::Str("fine".into())).is_none());
    }
}
