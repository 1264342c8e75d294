//! `get_registered_functions`: what the session's namespace (or group) offers, as `sig`
//! listings (the first member's function where members share a name). Over a cluster link it
//! leaves out what the other host offered over that link (the rule behind the Python
//! original's `upstream` and `trigger` flags), so the flags themselves change nothing.

use crate::session::reply::Reply;
use crate::session::Session;
use crate::wire;

/// The action's name on the wire.
pub const ACTION: &str = "get_registered_functions";

pub struct List;

impl List {
    pub fn apply(self, session: &Session) -> Reply {
        let snapshot = session.registry.snapshot();
        Reply::Value(wire::listing::listing(session.listing(&snapshot)))
    }
}
