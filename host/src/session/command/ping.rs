//! The json keep-alive: the Python server answers any text frame that contains "ping" with a
//! pong (quirk Q7), whatever else the frame is, so the session answers it as the frame
//! arrives, before decoding it.

use crate::wire::{self, Frame, Serialization};

/// The pong a text frame gets, if any.
pub fn pong_for(serialization: Serialization, text: &str) -> Option<Frame> {
    (serialization == Serialization::Json && text.contains("ping")).then(wire::pong)
}
