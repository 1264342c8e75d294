//! `GENERATOR_NEXT`: the next item of one of this connection's open generators, an error item,
//! or `"GENERATOR_END"` (quirk Q3; the Python protocol sends an error as an item, then the end).
//! A generator closed for want of pulls answers the same way: why, then the end.

use crate::dispatch::GENERATOR_END;
use crate::session::reply::Reply;
use crate::session::Session;
use crate::value::Value;
use crate::wire;
use std::time::Instant;

/// The action's name on the wire.
pub const ACTION: &str = "GENERATOR_NEXT";

pub struct GeneratorNext {
    id: String,
}

impl GeneratorNext {
    pub fn parse(call: wire::Call) -> Result<Self, Reply> {
        match call.generator_id {
            Some(id) => Ok(Self { id }),
            None => Err(Reply::error("GENERATOR_NEXT needs a generator_id")),
        }
    }

    pub async fn apply(self, session: &Session) -> Reply {
        let id = self.id;
        // Ids are only looked up on this connection, so no other connection (or tenant) can
        // step a generator, however it guesses.
        let Some(open) = session.generators_lock().get(&id).cloned() else {
            return session
                .pull_expired(&id)
                .unwrap_or_else(|| Reply::error(&format!("no open generator {id} on this connection")));
        };
        let mut open = open.lock().await;
        open.last_used = Instant::now();
        match open.generator.next().await {
            Ok(Some(item)) => Reply::Value(item),
            Ok(None) => {
                drop(open);
                session.generators_lock().remove(&id);
                Reply::Value(Value::Str(GENERATOR_END.to_owned()))
            }
            Err(error) => {
                tracing::info!(namespace = %session.namespace, generator = %id, %error, "generator failed");
                // The generator is over; its next pull answers the end.
                open._host_slot = None;
                Reply::from_dispatch(error)
            }
        }
    }
}
