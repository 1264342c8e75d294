//! The requests a session understands (list, call, generator next and close, deploy, remove,
//! modules, and the ping beside them), one file each: each is parsed from a request and
//! applied to the session, giving a [`Reply`].
//!
//! [`Command::parse`] reads what every request shares (the encryption envelope, the action)
//! and picks the command; each command's own file reads its arguments and applies it. The
//! json keep-alive (`ping`) is the one exchange that is not a request: the session answers it
//! as the frame arrives, before decoding (see [`ping`]).

mod call;
mod deploy;
mod generator_close;
mod generator_next;
mod list;
mod modules;
pub mod ping;
mod remove;

use super::reply::Reply;
use super::Session;
use crate::wire::{self, auth, RequestBody};

pub use call::Call;
pub use deploy::Deploy;
pub use generator_close::GeneratorClose;
pub use generator_next::GeneratorNext;
pub use list::List;
pub use modules::Modules;
pub use remove::Remove;

/// One request, parsed.
pub enum Command {
    /// `get_registered_functions`: the namespace's functions and their signatures.
    List(List),
    /// Any other action: a function of the namespace, called or opened as a generator.
    Call(Call),
    /// `GENERATOR_NEXT`: the next item of an open generator.
    GeneratorNext(GeneratorNext),
    /// `__easyrpc_generator_close__`: a generator given up before its end (between our hosts).
    GeneratorClose(GeneratorClose),
    /// `__easyrpc_deploy__`: an admin deploys a module.
    Deploy(Deploy),
    /// `__easyrpc_remove__`: an admin removes a module.
    Remove(Remove),
    /// `__easyrpc_modules__`: an admin lists the modules each namespace holds.
    Modules(Modules),
}

impl Command {
    /// The command a request body holds, unwrapped from its JWT when the path encrypts
    /// (easyrpc's `encryption_enabled`). `unsupported` names a pickled Python object found in
    /// the arguments, which no function can take. A request that is no command gets its reply.
    pub fn parse(
        body: RequestBody,
        encryption: bool,
        secret: &str,
        unsupported: Option<String>,
    ) -> Result<Self, Reply> {
        let call = match (body, encryption) {
            (RequestBody::Call(call), false) => Ok(call),
            (RequestBody::Plain(v), false) => wire::parse_call(v),
            (RequestBody::Wrapped(token), true) => match auth::unwrap_request(&token, secret) {
                Ok(v) => wire::parse_call(v),
                Err(e) => return Err(Reply::error(&format!("cannot unwrap the encrypted request: {e}"))),
            },
            // What the Python server answers when the request is a string it does not expect.
            (RequestBody::Wrapped(_), false) => return Err(Reply::error("missing expected input: 'action' ")),
            (RequestBody::Plain(_) | RequestBody::Call(_), true) => {
                return Err(Reply::error("this server has encryption_enabled: requests must be wrapped"))
            }
        };
        let call = call.map_err(|e| Reply::error(&e))?;
        let Some(action) = call.action.as_deref() else {
            return Err(Reply::error("missing expected input: 'action' "));
        };
        Ok(match action {
            list::ACTION => Command::List(List),
            generator_next::ACTION => Command::GeneratorNext(GeneratorNext::parse(call)?),
            wire::GENERATOR_CLOSE => Command::GeneratorClose(GeneratorClose::parse(call)),
            wire::DEPLOY => Command::Deploy(Deploy::parse(call)),
            wire::REMOVE => Command::Remove(Remove::parse(call)),
            wire::MODULES => Command::Modules(Modules::parse(call)),
            _ => Command::Call(Call::parse(call, unsupported)),
        })
    }

    /// Applies the command for the request `request_id`.
    pub async fn apply(self, session: &Session, request_id: &str) -> Reply {
        match self {
            Command::List(list) => list.apply(session),
            Command::Call(call) => call.apply(session, request_id).await,
            Command::GeneratorNext(next) => next.apply(session).await,
            Command::GeneratorClose(close) => close.apply(session),
            Command::Deploy(deploy) => deploy.apply(session).await,
            Command::Remove(remove) => remove.apply(session).await,
            Command::Modules(modules) => modules.apply(session),
        }
    }
}

/// The keyword argument `key` of an admin action, as text.
fn text_kwarg(kwargs: &[(String, crate::value::Value)], key: &str) -> Option<String> {
    kwargs.iter().find(|(k, _)| k == key).and_then(|(_, v)| v.as_str()).map(str::to_owned)
}

/// The deployer of an admin's session, or the reply that refuses `action`.
fn deployer_for(session: &Session, action: &str) -> Result<std::sync::Arc<crate::deploy::Deployer>, Reply> {
    session.deployer.clone().filter(|_| session.admin).ok_or_else(|| {
        Reply::error(&format!("{action} needs a connection signed with the admin secret on a host that allows deploys"))
    })
}
