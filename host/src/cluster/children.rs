//! The parent side of a link: a child host connected with `type: SERVER`. Its requests are
//! answered like any client's; this host learns the child's functions (`learn_functions`) and
//! offers them in the link's namespace while the link is up.

use super::{learn_functions, LinkHandle};
use crate::session::{self, Accepted, Shared, Transport};
use std::sync::Arc;
use tokio::sync::watch;

/// Serves a child host until its link closes, then takes its functions away.
pub async fn serve_child<S: Transport>(accepted: Accepted<S>, shared: Arc<Shared>, shutdown: watch::Receiver<bool>) {
    let claims = accepted.claims();
    let namespace = claims.namespace.clone();
    let peer = format!("child {} at {}", claims.id, accepted.peer());
    // A child that asked for notices is one of ours: it announces its changes too.
    let (link, part) = LinkHandle::new(&peer, claims.notify);
    let registry = shared.registry.clone();
    tracing::info!(link = link.id().id, %peer, %namespace, "child link up");
    let learning = tokio::spawn(learn_functions(link.clone(), registry.clone(), namespace.clone(), None));
    session::run(accepted, shared, shutdown, Some(part)).await;
    learning.abort();
    registry.remove_linked(link.id());
    tracing::info!(link = link.id().id, %peer, %namespace, "child link down; its functions are gone");
}
