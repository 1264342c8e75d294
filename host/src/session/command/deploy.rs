//! `__easyrpc_deploy__` (kwargs `namespace`, `name`, `wasm`: base64 text or bytes): an admin
//! deploys a module over the wire (EasyRpc's extension; connections signed with the admin
//! secret only).

use super::{deployer_for, text_kwarg};
use crate::session::reply::Reply;
use crate::session::Session;
use crate::value::Value;
use crate::wire;

/// The request's keyword arguments, read once the session is known to be an admin's.
pub struct Deploy {
    kwargs: Vec<(String, Value)>,
}

impl Deploy {
    pub fn parse(call: wire::Call) -> Self {
        Self { kwargs: call.kwargs }
    }

    pub async fn apply(self, session: &Session) -> Reply {
        let deployer = match deployer_for(session, wire::DEPLOY) {
            Ok(deployer) => deployer,
            Err(refused) => return refused,
        };
        let kwargs = self.kwargs;
        let (Some(namespace), Some(name)) = (text_kwarg(&kwargs, "namespace"), text_kwarg(&kwargs, "name")) else {
            return Reply::error(&format!("{} needs the keyword arguments namespace and name", wire::DEPLOY));
        };
        let wasm = match kwargs.into_iter().find(|(k, _)| k == "wasm").map(|(_, v)| v) {
            Some(Value::Bytes(b)) => b,
            Some(Value::Str(b64)) => match base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64) {
                Ok(b) => b,
                Err(e) => return Reply::error(&format!("wasm is not valid base64: {e}")),
            },
            _ => return Reply::error("deploy needs the keyword argument wasm (base64 text or bytes)"),
        };
        match tokio::task::spawn_blocking(move || deployer.deploy(&namespace, &name, &wasm)).await {
            Ok(Ok(d)) => Reply::Value(Value::Dict(vec![
                ("module".to_owned(), Value::Str(d.module)),
                ("hash".to_owned(), Value::Str(d.hash)),
                ("functions".to_owned(), Value::List(d.functions.into_iter().map(Value::Str).collect())),
            ])),
            Ok(Err(e)) => Reply::error(&e.to_string()),
            Err(e) => Reply::error(&e.to_string()),
        }
    }
}
