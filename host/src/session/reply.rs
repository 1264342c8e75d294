//! What a command answers, and how an answer becomes a frame.
//!
//! A [`Reply`] is a result or an error, each carried as the Python server carries it: a
//! result as the value, an error as a normal response holding `{"error": message}` (protocol
//! errors) or a repr-style string such as `Timeout('...')` (a call's failure, quirk Q2).

use crate::dispatch::{DispatchError, GENERATOR_START};
use crate::runtime::CallError;
use crate::value::Value;
use crate::wire::{self, py_repr, Frame, Serialization};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// The answer to one request.
#[derive(Debug, PartialEq)]
pub enum Reply {
    /// The request's result.
    Value(Value),
    /// The request failed; the value says why, in the Python server's form.
    Error(Value),
}

impl Reply {
    /// A protocol error: `{"error": message}`.
    pub fn error(message: &str) -> Self {
        Reply::Error(Value::Dict(vec![("error".to_owned(), Value::Str(message.to_owned()))]))
    }

    /// A call that failed: `Kind('message')` (quirk Q2), e.g.
    /// `Timeout('spin exceeded its deadline of 1s and was stopped')`.
    pub fn failed(error: &CallError) -> Self {
        if let CallError::Relayed { answer, .. } = error {
            // Another host's error answer, already in the form callers read.
            return Reply::Error(answer.clone());
        }
        let message = match error {
            // The guest's own error: its text is the message.
            CallError::Failed { error, .. } => match error {
                Value::Str(s) => s.clone(),
                other => other.to_json(),
            },
            other => other.to_string(),
        };
        Self::exception(error.kind(), &message)
    }

    /// A Python exception's repr: `Kind('message')`. The Python client takes any answer
    /// holding the generator start marker for a generator (quirk Q8), and a guest's error text
    /// may hold anything, so the marker is written `GENERATOR-START` here.
    pub fn exception(kind: &str, message: &str) -> Self {
        let message = if message.contains(GENERATOR_START) {
            std::borrow::Cow::Owned(message.replace(GENERATOR_START, "GENERATOR-START"))
        } else {
            std::borrow::Cow::Borrowed(message)
        };
        Reply::Error(Value::Str(format!("{kind}({})", py_repr(&message))))
    }

    /// A dispatch that gave no result.
    pub fn from_dispatch(error: DispatchError) -> Self {
        match error {
            DispatchError::Unknown { function, known, .. } => {
                let names: Vec<String> = known.iter().map(|name| py_repr(name)).collect();
                Self::error(&format!("no action {function} registered for origin within [{}]", names.join(", ")))
            }
            DispatchError::Call(error) => Self::failed(&error),
            DispatchError::Reserved(why) => Self::exception("ValueError", why),
            error @ DispatchError::Loop { .. } => Self::exception("LoopRefused", &error.to_string()),
            error @ DispatchError::DeadlinePassed { .. } => Self::exception("Timeout", &error.to_string()),
        }
    }

    /// The response frame for `request_id`; a result too large for easyrpc clients (quirk Q9)
    /// becomes an error.
    pub fn encode(&self, serialization: Serialization, request_id: &str, max_frame: usize) -> WsMessage {
        let (value, is_error) = match self {
            Reply::Value(v) => (v, false),
            Reply::Error(v) => (v, true),
        };
        let frame = wire::response(serialization, request_id, value, is_error);
        let size = match &frame {
            Frame::Text(t) => t.len(),
            Frame::Binary(b) => b.len(),
        };
        if size > max_frame {
            let message =
                format!("the result is {size} bytes encoded, over the {max_frame} byte frame limit of easyrpc clients");
            let error = Self::exception("ResultTooLarge", &message);
            return error.encode(serialization, request_id, usize::MAX);
        }
        to_ws(frame)
    }
}

/// A frame as a websocket message.
pub fn to_ws(frame: Frame) -> WsMessage {
    match frame {
        Frame::Text(t) => WsMessage::text(t),
        Frame::Binary(b) => WsMessage::binary(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_texts_never_hold_the_generator_start_marker() {
        let error = CallError::Failed { function: "fail".into(), error: Value::Str("GENERATOR_START!".into()) };
        assert_eq!(Reply::failed(&error), Reply::Error(Value::Str("Error('GENERATOR-START!')".into())));
        assert_eq!(Reply::exception("Timeout", "fine"), Reply::Error(Value::Str("Timeout('fine')".into())));
    }
}
