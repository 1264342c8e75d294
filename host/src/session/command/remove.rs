//! `__easyrpc_remove__` (kwargs `namespace`, `name`): an admin removes a deployed module
//! (EasyRpc's extension; connections signed with the admin secret only).

use super::{deployer_for, text_kwarg};
use crate::session::reply::Reply;
use crate::session::Session;
use crate::value::Value;
use crate::wire;

/// The request's keyword arguments, read once the session is known to be an admin's.
pub struct Remove {
    kwargs: Vec<(String, Value)>,
}

impl Remove {
    pub fn parse(call: wire::Call) -> Self {
        Self { kwargs: call.kwargs }
    }

    pub async fn apply(self, session: &Session) -> Reply {
        let deployer = match deployer_for(session, wire::REMOVE) {
            Ok(deployer) => deployer,
            Err(refused) => return refused,
        };
        let (Some(namespace), Some(name)) = (text_kwarg(&self.kwargs, "namespace"), text_kwarg(&self.kwargs, "name"))
        else {
            return Reply::error(&format!("{} needs the keyword arguments namespace and name", wire::REMOVE));
        };
        match tokio::task::spawn_blocking(move || deployer.remove(&namespace, &name)).await {
            Ok(Ok(())) => Reply::Value(Value::Str("removed".to_owned())),
            Ok(Err(e)) => Reply::error(&e),
            Err(e) => Reply::error(&e.to_string()),
        }
    }
}
