//! `__easyrpc_generator_close__` (with `generator_id`): closes one of this connection's open
//! generators before its end, freeing its instance now instead of at the idle timeout. Sent
//! between our hosts when a relayed generator is given up (EasyRpc's extension; Python hosts
//! are never sent it).

use crate::session::reply::Reply;
use crate::session::Session;
use crate::value::Value;
use crate::wire;

pub struct GeneratorClose {
    id: Option<String>,
}

impl GeneratorClose {
    pub fn parse(call: wire::Call) -> Self {
        Self { id: call.generator_id }
    }

    pub fn apply(self, session: &Session) -> Reply {
        let Some(id) = self.id else {
            return Reply::error(&format!("{} needs a generator_id", wire::GENERATOR_CLOSE));
        };
        match session.generators_lock().remove(&id) {
            Some(_) => {
                tracing::debug!(namespace = %session.namespace, generator = %id, "generator closed by its puller");
                Reply::Value(Value::Str("closed".to_owned()))
            }
            None => Reply::error(&format!("no open generator {id} on this connection")),
        }
    }
}
