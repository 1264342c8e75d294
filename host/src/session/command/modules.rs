//! `__easyrpc_modules__` (optional kwarg `namespace`): an admin asks which modules each
//! namespace holds, with their hash, size, when they came and where from (EasyRpc's
//! extension; connections signed with the admin secret only).

use super::{deployer_for, text_kwarg};
use crate::session::reply::Reply;
use crate::session::Session;
use crate::value::Value;
use crate::wire;

/// The request's keyword arguments, read once the session is known to be an admin's.
pub struct Modules {
    kwargs: Vec<(String, Value)>,
}

impl Modules {
    pub fn parse(call: wire::Call) -> Self {
        Self { kwargs: call.kwargs }
    }

    pub fn apply(self, session: &Session) -> Reply {
        let deployer = match deployer_for(session, wire::MODULES) {
            Ok(deployer) => deployer,
            Err(refused) => return refused,
        };
        let namespace = text_kwarg(&self.kwargs, "namespace");
        let modules = deployer
            .modules(namespace.as_deref())
            .into_iter()
            .map(|m| {
                Value::Dict(vec![
                    ("namespace".to_owned(), Value::Str(m.namespace)),
                    ("name".to_owned(), Value::Str(m.name)),
                    ("hash".to_owned(), Value::Str(m.hash)),
                    ("size".to_owned(), Value::Int(i128::from(m.size))),
                    ("since".to_owned(), m.since.map_or(Value::None, |s| Value::Int(i128::from(s)))),
                    ("source".to_owned(), Value::Str(m.source)),
                ])
            })
            .collect();
        Reply::Value(Value::List(modules))
    }
}
